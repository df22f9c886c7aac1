"""(correct, wrong) program pairs of the same problem: the training data of the implicit PRM."""
from __future__ import annotations

from typing import Iterable, NamedTuple, Sequence

import numpy as np

from restrl_jax.evaluation.metrics import STRICT_THRESHOLD


class ProgramGroup(NamedTuple):
  """One problem's executed programs: their texts and rewards (fraction of tests passed)."""
  problem_id: str
  texts: Sequence[str]
  rewards: Sequence[float]


def group_program_records(records: Iterable[dict]) -> list[ProgramGroup]:
  """`collect_values` records of kind "program" as one group per problem (first-seen order)."""
  texts: dict[str, list[str]] = {}
  rewards: dict[str, list[float]] = {}
  for r in records:
    if r.get("kind") != "program":
      continue
    texts.setdefault(r["problem_id"], []).append(r["state"])
    rewards.setdefault(r["problem_id"], []).append(float(r["value"]))
  return [ProgramGroup(pid, texts[pid], rewards[pid]) for pid in texts]


def correct_wrong_pairs(groups: Iterable[ProgramGroup], per_problem: int,
                        seed: int) -> list[tuple[str, str, str]]:
  """(problem id, strictly correct text, wrong text) pairs of distinct texts, at most
  `per_problem` per problem drawn at random (a function of `seed`), in problem order."""
  rng = np.random.default_rng(seed)
  out = []
  for pid, texts, rewards in groups:
    right = sorted({t for t, r in zip(texts, rewards) if r > STRICT_THRESHOLD})
    wrong = sorted({t for t, r in zip(texts, rewards) if r <= STRICT_THRESHOLD})
    pairs = [(pid, c, w) for c in right for w in wrong]
    for i in rng.permutation(len(pairs))[:per_problem]:
      out.append(pairs[i])
  return out
