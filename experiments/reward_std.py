"""The reward-std statistics (the paper's variance figure): how much execution-reward variance the
prompts that naive GRPO (every training problem) and ReST-GRPO (σ0-filtered problems + partial
states) train on carry, measured on the GRPO groups actually trained on.

Source: one RL cell's round folder (`<workdir>/rest_grpo/round_0/`):
  - `train_samples.jsonl`: one row per completion (step, group, problem_id, state, exec_reward).
    Each GRPO group (one prompt, G completions, keyed by (step, group)) gives one population
    std (ddof 0) of its execution rewards; a group with std 0 has zero advantage and teaches
    nothing.
  - `rows.jsonl`: the assembled prompts with their kind ("original" / "partial"), joined to the
    groups on (problem_id, state).
  - `collect.jsonl`: the N collection rewards of every training problem; their per-problem
    population std is the statistic the σ0 filter reads.

`cell_summary` reduces these to a few KB (counts on fixed bins, shares, means, per step window),
kept in the learning experiment's per-seed records; `across_seeds` and `histogram_shares`
combine the records of a method (`experiments.learning report`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from restrl_jax import io_utils

ZERO_STD = 1e-9       # a std at or below this is zero (identical rewards up to rounding)
SIGMA0 = 0.05         # the σ0 filter's threshold (config rest.sigma0)
# bin edges of the std histograms: the first bin holds exactly the zero-std prompts; rewards lie
# in [0, 1], so a population std is at most 0.5 (the last bin is closed)
STD_EDGES = (0.0, ZERO_STD, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
STEP_WINDOW = 50      # GRPO steps per window of `by_step_window`
STATS = ("mean_std", "zero_std_share", "all_fail_share", "share_ge_sigma0")


def group_rewards(rows: Sequence[dict]) -> dict[tuple[int, int], list[float]]:
  """{(step, group): execution rewards of its completions} from train_samples rows."""
  groups: dict[tuple[int, int], list[float]] = {}
  for r in rows:
    for f in ("step", "group", "exec_reward"):
      if f not in r:
        raise ValueError(f"train_samples row lacks field {f!r}: {sorted(r)}")
    groups.setdefault((int(r["step"]), int(r["group"])), []).append(float(r["exec_reward"]))
  return groups


def rows_by_kind(rows: Sequence[dict], assembled: Sequence[dict]) -> dict[str, list[dict]]:
  """train_samples rows split by the kind of their prompt, joined with the assembled rows
  (rows.jsonl) on (problem_id, state)."""
  kinds = {(r["problem_id"], r["state"]): r["kind"] for r in assembled}
  out: dict[str, list[dict]] = {}
  for r in rows:
    kind = kinds.get((r["problem_id"], r["state"]))
    if kind is None:
      raise ValueError(f"a training group (problem {r['problem_id']!r}) has a state that "
                       "rows.jsonl does not hold")
    out.setdefault(kind, []).append(r)
  return dict(sorted(out.items()))


def describe(reward_lists: Sequence[Sequence[float]], sigma0: float = SIGMA0) -> dict:
  """Of prompts given by their samples' rewards: count, mean population std, share of
  zero-std prompts, share of prompts whose samples all score 0 (part of the zero-std ones),
  share with std >= σ0, and the std counts on STD_EDGES."""
  if not reward_lists:
    return {"n": 0, "histogram": [0] * (len(STD_EDGES) - 1)}
  stds = np.array([np.std(np.asarray(r, np.float64)) for r in reward_lists])   # [prompts]
  counts, _ = np.histogram(np.clip(stds, 0.0, STD_EDGES[-1]), bins=np.asarray(STD_EDGES))
  return {"n": int(stds.size), "mean_std": float(stds.mean()),
          "zero_std_share": float(np.mean(stds <= ZERO_STD)),
          "all_fail_share": float(np.mean([max(r) <= 0.0 for r in reward_lists])),
          "share_ge_sigma0": float(np.mean(stds >= sigma0)),
          "histogram": [int(c) for c in counts]}


def describe_groups(rows: Sequence[dict]) -> dict:
  """`describe` of the GRPO groups of train_samples rows."""
  return describe([v for _, v in sorted(group_rewards(rows).items())])


def by_step_window(rows: Sequence[dict], window: int = STEP_WINDOW) -> list[dict]:
  """Per window of `window` GRPO steps (steps 1..window, window+1..2*window, ...): its groups'
  count, mean std and zero-std share."""
  windows: dict[int, list[list[float]]] = {}
  for (step, _), rewards in sorted(group_rewards(rows).items()):
    windows.setdefault((step - 1) // window, []).append(rewards)
  out = []
  for w, groups in sorted(windows.items()):
    d = describe(groups)
    out.append({"first_step": w * window + 1, "last_step": (w + 1) * window, "n": d["n"],
                "mean_std": d["mean_std"], "zero_std_share": d["zero_std_share"]})
  return out


def cell_summary(round_dir: Path) -> dict:
  """The reward-std statistics of one RL cell's round folder (a few KB)."""
  round_dir = Path(round_dir)
  rows = io_utils.read_jsonl(round_dir / "train_samples.jsonl")
  kinds = rows_by_kind(rows, io_utils.read_jsonl(round_dir / "rows.jsonl"))
  collected = io_utils.read_jsonl(round_dir / "collect.jsonl")
  return {"edges": list(STD_EDGES), "sigma0": SIGMA0, "step_window": STEP_WINDOW,
          "training_groups": describe_groups(rows),
          "training_groups_by_kind": {k: describe_groups(v) for k, v in kinds.items()},
          "by_step_window": by_step_window(rows),
          "collection_problems": describe([r["rewards"] for r in collected]),
          "collection_samples_per_problem": max((len(r["rewards"]) for r in collected),
                                                default=0)}


def mean_and_spread(values: Sequence[float]) -> dict:
  """Mean and sample std (ddof 1; 0 for one value) over seeds."""
  v = np.asarray(values, np.float64)
  return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
          "seeds": int(v.size)}


def across_seeds(described: Sequence[dict]) -> dict:
  """`describe` outputs of one population in several seeds -> per statistic, mean and spread
  over seeds (the count `n` too)."""
  present = [d for d in described if d["n"] > 0]
  if not present:
    return {}
  out = {s: mean_and_spread([d[s] for d in present]) for s in STATS}
  out["n"] = mean_and_spread([d["n"] for d in present])
  return out


def histogram_shares(described: Sequence[dict]) -> list[tuple[float, float]]:
  """Per STD_EDGES bin: (mean, std over seeds) of the share of prompts in that bin."""
  present = [d for d in described if d["n"] > 0]
  if not present:
    return []
  shares = np.array([np.asarray(d["histogram"], np.float64) / d["n"]
                     for d in present])                               # [seeds, bins]
  spread = shares.std(axis=0, ddof=1) if len(shares) > 1 else np.zeros(shares.shape[1])
  return [(float(m), float(s)) for m, s in zip(shares.mean(axis=0), spread)]


def window_curve(summaries: Sequence[dict], stat: str) -> list[tuple[float, float, float]]:
  """(window's last step, mean, std over seeds) of `stat` per step window shared by all seeds."""
  per_seed = [{w["last_step"]: w[stat] for w in s["by_step_window"]} for s in summaries]
  steps = sorted(set.intersection(*[set(p) for p in per_seed])) if per_seed else []
  out = []
  for step in steps:
    d = mean_and_spread([p[step] for p in per_seed])
    out.append((float(step), d["mean"], d["std"]))
  return out


def method_summary(summaries: Sequence[dict]) -> dict:
  """The `cell_summary`s of one method's seeds -> mean and spread over seeds of each population
  (groups trained on, per prompt kind, collection problems) and its histogram shares."""
  def both(described: Sequence[dict]) -> dict:
    return dict(across_seeds(described), histogram_share=histogram_shares(described))
  kinds = sorted({k for s in summaries for k in s["training_groups_by_kind"]})
  return {"training_groups": both([s["training_groups"] for s in summaries]),
          "training_groups_by_kind": {k: both([s["training_groups_by_kind"][k]
                                               for s in summaries
                                               if k in s["training_groups_by_kind"]])
                                      for k in kinds},
          "collection_problems": both([s["collection_problems"] for s in summaries]),
          "collection_samples_per_problem": max(s["collection_samples_per_problem"]
                                                for s in summaries),
          "zero_std_share_by_step": window_curve(summaries, "zero_std_share")}


def bin_labels(edges: Sequence[float] = STD_EDGES) -> list[str]:
  """'0' for the zero-std bin, '(0, hi)' for the next, '[lo, hi)' after, the last closed."""
  labels = ["0"]
  for lo, hi in zip(edges[1:-1], edges[2:]):
    close = "]" if hi == edges[-1] else ")"
    labels.append(f"(0, {hi:g})" if lo == ZERO_STD else f"[{lo:g}, {hi:g}{close}")
  return labels
