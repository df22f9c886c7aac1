"""Shape bucketing and left padding, so a new batch reuses an already compiled program.

Prompt length, number of new tokens and batch size are rounded up: to the next power of two (at
least the bucket's minimum) up to `linear_above` (`batch_linear_above` for the batch), then to
the next multiple of it.
The batch is also rounded to a multiple of the mesh's batch shards. Filler rows hold one pad
token (mask 1, so no row attends to nothing) and are marked done before decoding starts.

`set_minimums` changes the smallest buckets of every `Buckets()` made afterwards in the process
(`--config.quick=True` raises them, so that the stages share a few compiled programs).
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np


# The smallest buckets a `Buckets()` made without them takes (`set_minimums`).
_MINIMUMS = {"min_prompt": 16, "min_new_tokens": 16, "min_batch": 1}


def set_minimums(**values: int) -> dict[str, int]:
  """Set the process-wide smallest buckets (`min_prompt`, `min_new_tokens`, `min_batch`) of every
  `Buckets()` made afterwards; returns the previous ones (to restore them)."""
  unknown = set(values) - set(_MINIMUMS)
  if unknown:
    raise ValueError(f"set_minimums: unknown field(s) {sorted(unknown)}; "
                     f"known: {sorted(_MINIMUMS)}")
  previous = dict(_MINIMUMS)
  _MINIMUMS.update({k: int(v) for k, v in values.items()})
  return previous


def _minimum(name: str):
  return dataclasses.field(default_factory=lambda: _MINIMUMS[name])


@dataclasses.dataclass(frozen=True)
class Buckets:
  min_prompt: int = _minimum("min_prompt")
  min_new_tokens: int = _minimum("min_new_tokens")
  min_batch: int = _minimum("min_batch")
  linear_above: int = 512
  batch_linear_above: int = 16  # batches grow in steps of 16 from there (80 rows stay 80)

  def prompt_len(self, n: int) -> int:
    return round_up(n, self.min_prompt, self.linear_above)

  def new_tokens(self, n: int) -> int:
    return round_up(n, self.min_new_tokens, self.linear_above)

  def batch(self, n: int, multiple: int = 1) -> int:
    b = round_up(n, self.min_batch, self.batch_linear_above)
    return -(-b // multiple) * multiple

  def compacted_batch(self, n: int, multiple: int = 1) -> int:
    """The batch a call's running rows shrink to: the next power of two (no new sizes besides
    the powers of two, so compaction adds few compiled shapes)."""
    b = round_up(n, self.min_batch, 1 << 30)
    return -(-b // multiple) * multiple


def round_up(n: int, minimum: int, linear_above: int) -> int:
  """Next power of two >= max(n, minimum) up to `linear_above`, then multiples of it."""
  n = max(int(n), int(minimum), 1)
  if n > linear_above:
    return -(-n // linear_above) * linear_above
  return 1 << (n - 1).bit_length()


def left_pad(prompts: Sequence[Sequence[int]], length: int, batch: int,
             pad_id: int) -> tuple[np.ndarray, np.ndarray]:
  """Left-pad token lists to tokens [batch, length] int32 and mask [batch, length] bool."""
  if len(prompts) > batch:
    raise ValueError(f"left_pad: {len(prompts)} prompts do not fit a batch of {batch}")
  tokens = np.full((batch, length), pad_id, np.int32)    # [B, P]
  mask = np.zeros((batch, length), bool)                  # [B, P]
  mask[len(prompts):, -1] = True  # filler rows: one pad token
  for i, p in enumerate(prompts):
    if len(p) == 0:
      raise ValueError(f"prompt {i} is empty; give at least one token (e.g. BOS)")
    if len(p) > length:
      raise ValueError(f"prompt {i} has {len(p)} tokens, more than the padded length {length}")
    tokens[i, length - len(p):] = np.asarray(p, np.int32)
    mask[i, length - len(p):] = True
  return tokens, mask


def repad(tokens: np.ndarray, mask: np.ndarray, length: int, batch: int,
          pad_id: int) -> tuple[np.ndarray, np.ndarray]:
  """Grow left-padded arrays [B0, P0] to [batch, length] (more left padding, filler rows)."""
  check_left_padded(tokens, mask)
  b0, p0 = tokens.shape
  out_t = np.full((batch, length), pad_id, np.int32)
  out_m = np.zeros((batch, length), bool)
  out_m[b0:, -1] = True
  out_t[:b0, length - p0:] = tokens
  out_m[:b0, length - p0:] = mask
  return out_t, out_m


def check_left_padded(tokens: np.ndarray, mask: np.ndarray) -> None:
  """Raise unless `prompt_tokens`/`prompt_mask` are [B, P], left-padded, >= 1 real token a row."""
  if tokens.ndim != 2 or tokens.shape != mask.shape:
    raise ValueError(
        f"prompt_tokens {tokens.shape} and prompt_mask {mask.shape} must both be [B, P]")
  m = mask.astype(bool)
  if not m[:, -1].all():
    rows = np.nonzero(~m[:, -1])[0].tolist()
    raise ValueError(f"prompt_mask rows {rows} do not end in a real token: prompts must be "
                     "LEFT-padded with at least one real token")
  if (m[:, 1:] < m[:, :-1]).any():
    rows = np.nonzero((m[:, 1:] < m[:, :-1]).any(axis=1))[0].tolist()
    raise ValueError(f"prompt_mask rows {rows} have padding after a real token: prompts must be "
                     "LEFT-padded")
