"""Accuracy vs number of sampled programs (the paper's Fig. 3b analog), exact where possible.

Two methods need no run per budget:
  sampling   the answer is one unverified sample, so its accuracy at any budget k is pass@1,
             the mean reward of a pool of samples;
  best-of-N  at budget k: k programs drawn WITHOUT replacement from a scored pool of N, the
             answer is the best-scored one (ties: uniformly at random among the tied, which is
             what "first of the ties" means for a random draw order). `best_of_k` gives its
             expected reward exactly: a tie group G of size m with h programs scored above it
             holds the drawn maximum with probability [C(N-h, k) - C(N-h-m, k)] / C(N, k), and
             then each member is equally likely to be the answer.
For reference, "oracle" is best-of-k with a perfect verifier (the executed reward as the score):
pass@k for strict accuracy, the expected best reward of k draws for the test-case average.
The MCTS methods are run per budget; `aggregate` and `plot_curves` put everything together.
Curves are {method: {budget: value}} (one per seed); aggregates {method: {budget: (mean, std)}}.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from restrl_jax.evaluation.metrics import STRICT_THRESHOLD

Curve = Mapping[str, Mapping[int, float]]


def _comb_ratio(n_avail: int, k: int, total: int) -> float:
  """C(n_avail, k) / C(total, k) (0 when n_avail < k), without forming the binomials."""
  if n_avail < k:
    return 0.0
  return math.exp(math.lgamma(n_avail + 1) - math.lgamma(n_avail - k + 1)
                  - math.lgamma(total + 1) + math.lgamma(total - k + 1))


def selection_probabilities(scores: Sequence[float], k: int) -> np.ndarray:
  """P(program i is best-of-k's answer) for a uniform draw of k of the N programs.  # [N]"""
  scores = np.asarray(scores, np.float64)
  n = scores.shape[0]
  if scores.ndim != 1 or n == 0:
    raise ValueError(f"selection_probabilities: scores must be a non-empty [N] vector, got "
                     f"shape {scores.shape}")
  if not 1 <= k <= n:
    raise ValueError(f"selection_probabilities: budget k={k} must be in 1..N={n}")
  probs = np.zeros(n)
  levels = np.unique(scores)[::-1]  # distinct scores, best first
  above = 0
  for level in levels:
    group = np.flatnonzero(scores == level)
    m = len(group)
    p_max = _comb_ratio(n - above, k, n) - _comb_ratio(n - above - m, k, n)
    probs[group] = p_max / m
    above += m
  return probs


def best_of_k(scores: Sequence[float], rewards: Sequence[float], k: int) -> tuple[float, float]:
  """Expected (strict accuracy, test-case average) of best-of-k on one problem's pool."""
  rewards = np.asarray(rewards, np.float64)
  if rewards.shape != np.shape(scores):
    raise ValueError(f"best_of_k: rewards shape {rewards.shape} != scores shape "
                     f"{np.shape(scores)}")
  probs = selection_probabilities(scores, k)
  return float(probs @ (rewards > STRICT_THRESHOLD)), float(probs @ rewards)


def pool_curves(scores: Sequence[Sequence[float]], rewards: Sequence[Sequence[float]],
                budgets: Sequence[int]) -> dict[str, dict[str, dict[int, float]]]:
  """Sampling and best-of-N curves from per-problem pools (lists of [N_p] scores / rewards).

  Returns {metric: {method: {budget: value}}}, metric "strict_accuracy" / "test_case_average",
  averaged over problems (budgets above a problem's pool size are an error).
  """
  if len(scores) != len(rewards) or not scores:
    raise ValueError(f"pool_curves: need equally many (>0) score and reward pools, got "
                     f"{len(scores)} and {len(rewards)}")
  out = {m: {"sampling": {}, "best_of_n": {}, "oracle": {}}
         for m in ("strict_accuracy", "test_case_average")}
  r = [np.asarray(x, np.float64) for x in rewards]
  pass1_strict = float(np.mean([np.mean(x > STRICT_THRESHOLD) for x in r]))
  pass1_tca = float(np.mean([np.mean(x) for x in r]))
  for k in budgets:
    per = np.array([best_of_k(s, x, int(k)) for s, x in zip(scores, r)])  # [P, 2]
    best = np.array([best_of_k(x, x, int(k)) for x in r])  # [P, 2]
    out["strict_accuracy"]["oracle"][int(k)] = float(best[:, 0].mean())
    out["test_case_average"]["oracle"][int(k)] = float(best[:, 1].mean())
    out["strict_accuracy"]["best_of_n"][int(k)] = float(per[:, 0].mean())
    out["test_case_average"]["best_of_n"][int(k)] = float(per[:, 1].mean())
    out["strict_accuracy"]["sampling"][int(k)] = pass1_strict
    out["test_case_average"]["sampling"][int(k)] = pass1_tca
  return out


def aggregate(curves: Sequence[Curve]) -> dict[str, dict[int, tuple[float, float]]]:
  """Mean and sample std (ddof=1; 0 for one seed) over seeds of each (method, budget) point.

  A point missing from some seed is aggregated over the seeds that have it; its count is
  not returned, so callers that need complete grids should check them first.
  """
  if not curves:
    raise ValueError("aggregate: no curves")
  out: dict[str, dict[int, tuple[float, float]]] = {}
  methods = sorted({m for c in curves for m in c})
  for m in methods:
    budgets = sorted({int(b) for c in curves for b in c.get(m, {})})
    out[m] = {}
    for b in budgets:
      vals = np.array([c[m][b] for c in curves if b in c.get(m, {})], np.float64)
      std = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
      out[m][b] = (float(vals.mean()), std)
  return out


def plot_curves(agg: Mapping[str, Mapping[int, tuple[float, float]]], path: str | Path,
                ylabel: str, title: str = "") -> Path:
  """Mean +- std bands per method vs budget (log x axis), saved as a PNG."""
  try:
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  except ImportError as err:
    raise ImportError("plot_curves needs matplotlib (pip install matplotlib)") from err
  fig, ax = plt.subplots(figsize=(6, 4))
  for method, points in agg.items():
    budgets = sorted(points)
    mean = np.array([points[b][0] for b in budgets])
    std = np.array([points[b][1] for b in budgets])
    style = dict(linestyle="--", color="gray") if method == "oracle" else {}
    ax.plot(budgets, mean, marker="o", label=method, **style)
    ax.fill_between(budgets, mean - std, mean + std, alpha=0.2, color=style.get("color"))
  ax.set_xscale("log")
  ax.set_xlabel("sampled programs per problem")
  ax.set_ylabel(ylabel)
  if title:
    ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path


def _auc(pos: np.ndarray, neg: np.ndarray) -> tuple[float, int]:
  """P(score of a positive > score of a negative) + 0.5 P(tie), and the number of pairs."""
  if len(pos) == 0 or len(neg) == 0:
    return 0.0, 0
  diff = pos[:, None] - neg[None, :]  # [P, Q]
  return float(np.mean((diff > 0) + 0.5 * (diff == 0))), diff.size


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
  """Rank correlation (average ranks for ties); 0 when either side is constant."""
  def ranks(v):
    order = np.argsort(v, kind="stable")
    r = np.empty(len(v))
    r[order] = np.arange(len(v))
    for value in np.unique(v):  # average ranks of ties
      tie = v == value
      r[tie] = r[tie].mean()
    return r
  rx, ry = ranks(np.asarray(x, np.float64)), ranks(np.asarray(y, np.float64))
  if rx.std() == 0 or ry.std() == 0:
    return 0.0
  return float(np.corrcoef(rx, ry)[0, 1])


def pool_ranking(scores: Sequence[Sequence[float]], rewards: Sequence[Sequence[float]]
                 ) -> dict[str, float]:
  """How well the scores order programs: what best-of-N needs is the WITHIN-problem order.

  within_auc: over problems with both strictly-correct and other programs, the pair-weighted
  P(a correct program outscores a wrong one of the same problem) (0.5 = no better than chance);
  spearman_all: rank correlation of score and reward over all programs (mixes problems);
  spearman_problem_means: of per-problem mean score and mean reward (difficulty prediction).
  """
  hits, pairs, mixed = 0.0, 0, 0
  for s, r in zip(scores, rewards):
    s, r = np.asarray(s, np.float64), np.asarray(r, np.float64)
    auc, n = _auc(s[r > STRICT_THRESHOLD], s[r <= STRICT_THRESHOLD])
    hits, pairs, mixed = hits + auc * n, pairs + n, mixed + (n > 0)
  flat_s = np.concatenate([np.asarray(s, np.float64) for s in scores])
  flat_r = np.concatenate([np.asarray(r, np.float64) for r in rewards])
  return {"within_auc": hits / pairs if pairs else None,
          "problems_with_both": mixed, "num_problems": len(scores),
          "spearman_all": _spearman(flat_s, flat_r),
          "spearman_problem_means": _spearman([np.mean(s) for s in scores],
                                              [np.mean(r) for r in rewards]),
          "mean_score": float(flat_s.mean()), "mean_reward": float(flat_r.mean())}
