"""DAPO dynamic sampling with static shapes (host side; ANCHORS.md §0, verl `filter_groups`).

Groups whose rewards are all equal have zero GRPO advantage and only dilute the batch. DAPO drops
them and keeps sampling until the train batch holds `num_groups` informative groups. Here the
trainer feeds candidate batches (rewards [C, G]) into an immutable `GroupSelection`; each call
keeps the groups with reward std > `min_std` (population std; DAPO: > 0) until the batch is full.
`finalize` returns fixed-size [num_groups] (candidate batch, row) indices plus a validity mask:
when the candidates run out, the missing slots point at (0, 0) and are marked invalid, so the
jitted step keeps one shape and masks those slots out of the loss.

Filter on the verifiable outcome (execution reward), not on the shaped reward: the 1e-6-per-char
trailing penalty would make almost every group look informative (verl-recipe PR #125).
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple, Sequence

import numpy as np


def informative_groups(rewards: np.ndarray, min_std: float = 0.0) -> np.ndarray:
  """[C] bool: groups of `rewards` [C, G] whose population std exceeds `min_std`."""
  rewards = np.asarray(rewards, dtype=np.float64)
  if rewards.ndim != 2 or rewards.shape[1] < 1:
    raise ValueError(f"rewards must be [num_candidates, G], got shape {rewards.shape}")
  return rewards.std(axis=1) > min_std


@dataclasses.dataclass(frozen=True)
class GroupSelection:
  """Groups kept so far, as (candidate batch, row) pairs in arrival order."""
  num_groups: int
  kept: tuple[tuple[int, int], ...] = ()
  num_seen: int = 0
  num_dropped: int = 0
  num_batches: int = 0

  def __post_init__(self):
    if self.num_groups < 1:
      raise ValueError(f"num_groups={self.num_groups} must be >= 1")

  @property
  def full(self) -> bool:
    return len(self.kept) >= self.num_groups


class BatchIndices(NamedTuple):
  batch: np.ndarray   # [num_groups] int: which candidate batch each slot comes from
  row: np.ndarray     # [num_groups] int: the row (group) within that batch
  valid: np.ndarray   # [num_groups] bool: False for padding slots


def add_candidates(sel: GroupSelection, rewards: np.ndarray,
                   min_std: float = 0.0) -> GroupSelection:
  """Consider one more candidate batch; keeps informative groups until the batch is full."""
  keep = informative_groups(rewards, min_std)
  room = sel.num_groups - len(sel.kept)
  new = tuple((sel.num_batches, int(i)) for i in np.flatnonzero(keep))[:max(room, 0)]
  return dataclasses.replace(sel, kept=sel.kept + new, num_seen=sel.num_seen + keep.size,
                             num_dropped=sel.num_dropped + int((~keep).sum()),
                             num_batches=sel.num_batches + 1)


def finalize(sel: GroupSelection) -> BatchIndices:
  """Fixed-size indices and validity mask; padding slots point at (0, 0)."""
  batch = np.zeros(sel.num_groups, np.int32)
  row = np.zeros(sel.num_groups, np.int32)
  valid = np.zeros(sel.num_groups, bool)
  for slot, (b, r) in enumerate(sel.kept):
    batch[slot], row[slot], valid[slot] = b, r, True
  return BatchIndices(batch, row, valid)


def select_groups(rewards: np.ndarray, num_groups: int, min_std: float = 0.0) -> BatchIndices:
  """One-shot selection from a single candidate pool [C, G] (all `batch` indices are 0)."""
  return finalize(add_candidates(GroupSelection(num_groups), rewards, min_std))


def gather(candidates: Sequence[np.ndarray], idx: BatchIndices) -> np.ndarray:
  """Stack the selected groups: candidates[b] is [C_b, G, ...]; returns [num_groups, G, ...]."""
  return np.stack([np.asarray(candidates[b])[r] for b, r in zip(idx.batch, idx.row)])


def completion_mask(valid: np.ndarray, group_size: int) -> np.ndarray:
  """[num_groups] -> [num_groups * G] validity of each completion."""
  return np.repeat(np.asarray(valid, bool), group_size)


def selection_metrics(sel: GroupSelection) -> dict[str, float]:
  return {"dynamic_sampling/num_batches": float(sel.num_batches),
          "dynamic_sampling/frac_dropped": sel.num_dropped / max(sel.num_seen, 1),
          "dynamic_sampling/frac_filled": len(sel.kept) / sel.num_groups}
