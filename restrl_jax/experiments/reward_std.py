"""The reward-std figure (the paper's variance figure): how much reward variance the training
prompts of naive GRPO (every training problem) and ReST-GRPO (σ0-filtered problems + partial
states) give, measured on the GRPO groups actually trained on.

  python -m restrl_jax.experiments.reward_std --runs runs/table1 --out docs/reward_std.png

Source: `<runs>/<method>/seed*/train/rest_grpo/round_<r>/train_samples.jsonl` of the Table 1
sweep (one row per completion: step, group, execution reward). Each GRPO group (one prompt, G
completions) gives one population std of its execution rewards; a group with std 0 has zero
advantage and teaches nothing. Also plotted: the per-problem std of the N collection samples
over all training problems (`collect.jsonl`), the statistic the σ0 filter reads.

`--resample FILE` (computed when FILE does not exist, read otherwise) re-samples the assembled
prompts of the first round of the first ReST-GRPO seed with the start policy (G samples each, as
the paper's analysis script does): naive (every training problem), ReST originals, ReST partial
states as assembled (ending in "\n") and the same partial states without their final newline
(the policy's tokenizer merges a newline with the next line's indentation, so a state ending in a
lone "\n" token is off-distribution).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from restrl_jax import io_utils

SERIES = (("grpo", "naive GRPO (all problems)"),
          ("rest_grpo", "ReST-GRPO (σ0-filtered + partial states)"))


def group_stds(rows: Sequence[dict]) -> np.ndarray:
  """[num_groups] population std of `exec_reward` per (step, group) of train_samples rows."""
  groups: dict[tuple[int, int], list[float]] = {}
  for r in rows:
    for f in ("step", "group", "exec_reward"):
      if f not in r:
        raise ValueError(f"train_samples row lacks field {f!r}: {sorted(r)}")
    groups.setdefault((int(r["step"]), int(r["group"])), []).append(float(r["exec_reward"]))
  return np.array([np.std(v) for _, v in sorted(groups.items())], np.float64)


def round_dirs(runs: Path, method: str, round_index: int) -> list[Path]:
  return sorted(Path(runs).glob(f"{method}/seed*/train/rest_grpo/round_{round_index}"))


def training_stds(runs: Path, method: str, round_index: int) -> np.ndarray:
  """Group stds of every seed's round `round_index` of `method`, pooled."""
  parts = [group_stds(io_utils.read_jsonl(d / "train_samples.jsonl"))
           for d in round_dirs(runs, method, round_index)
           if (d / "train_samples.jsonl").is_file()]
  return np.concatenate(parts) if parts else np.zeros(0)


def kind_stds(round_dir: Path) -> dict[str, np.ndarray]:
  """Group stds of one ReST round split by prompt kind ("original" / "partial"), joining
  train_samples.jsonl with rows.jsonl on (problem_id, state)."""
  kinds = {(r["problem_id"], r["state"]): r["kind"]
           for r in io_utils.read_jsonl(round_dir / "rows.jsonl")}
  rows = io_utils.read_jsonl(round_dir / "train_samples.jsonl")
  out: dict[str, list[dict]] = {}
  for r in rows:
    kind = kinds.get((r["problem_id"], r["state"]))
    if kind is None:
      raise ValueError(f"{round_dir}: a training group (problem {r['problem_id']!r}) has a state "
                       "that rows.jsonl does not hold")
    out.setdefault(kind, []).append(r)
  return {k: group_stds(v) for k, v in out.items()}


def training_stds_by_kind(runs: Path, method: str, round_index: int) -> dict[str, np.ndarray]:
  parts: dict[str, list[np.ndarray]] = {}
  for d in round_dirs(runs, method, round_index):
    if (d / "train_samples.jsonl").is_file():
      for kind, stds in kind_stds(d).items():
        parts.setdefault(kind, []).append(stds)
  return {k: np.concatenate(v) for k, v in sorted(parts.items())}


def collection_stds(runs: Path, method: str, round_index: int) -> np.ndarray:
  """Per-problem population std of the collection rewards (all training problems), pooled."""
  out = [float(np.std(r["rewards"])) for d in round_dirs(runs, method, round_index)
         if (d / "collect.jsonl").is_file() for r in io_utils.read_jsonl(d / "collect.jsonl")]
  return np.array(out, np.float64)


def resample_requests(runs: Path, max_seeds: int = 1) -> dict[str, list[tuple[str, str]]]:
  """(problem_id, state) requests per series from round 1 of the first `max_seeds` ReST-GRPO
  seeds."""
  series: dict[str, list[tuple[str, str]]] = {"naive": [], "original": [], "partial": [],
                                               "partial, no final newline": []}
  for d in round_dirs(runs, "rest_grpo", 0)[:max_seeds]:
    series["naive"] += [(r["problem_id"], r["init_state"])
                        for r in io_utils.read_jsonl(d / "collect.jsonl")]
    for r in io_utils.read_jsonl(d / "rows.jsonl"):
      series[r["kind"]].append((r["problem_id"], r["state"]))
      if r["kind"] == "partial":
        series["partial, no final newline"].append((r["problem_id"], r["state"].rstrip("\n")))
  return series


def resample(runs: Path, policy: Path, group_size: int = 4, max_new_tokens: int = 64,
             seed: int = 0) -> dict[str, dict]:
  """Sample `group_size` continuations of every request of `resample_requests` with `policy`;
  per series: describe(std per request) + mean reward."""
  from restrl_jax import models
  from restrl_jax.data.registry import load_problems
  from restrl_jax.execution import ExecutionPool
  from restrl_jax.rollout import rollout
  from restrl_jax.sampling import Sampler, SamplingParams
  from restrl_jax.tokenizer import load_tokenizer
  config, params = models.load_hf(policy)
  sampler = Sampler(config, params, load_tokenizer(policy), max_batch=256)
  by_id = {p.id: p for p in load_problems("synthetic", split="train")}
  sp = SamplingParams(max_new_tokens=max_new_tokens, temperature=0.7)
  out = {}
  with ExecutionPool() as pool:
    for name, requests in resample_requests(runs).items():
      missing = [pid for pid, _ in requests if pid not in by_id]
      if missing:
        raise ValueError(f"resample: problem {missing[0]!r} is not in the synthetic train split")
      records = rollout(sampler, pool, [by_id[pid] for pid, _ in requests], sp, group_size,
                        states=[s for _, s in requests], rng=seed)
      rewards = np.array([r.reward for r in records]).reshape(len(requests), group_size)
      out[name] = dict(describe(rewards.std(axis=1)), mean_reward=float(rewards.mean()),
                       all_zero_share=float(np.mean(rewards.max(axis=1) == 0)),
                       stds=rewards.std(axis=1).tolist())
  return out


def describe(stds: np.ndarray, sigma0: float = 0.05) -> dict:
  """Count, mean std, share of zero-std groups and share with std >= σ0."""
  if stds.size == 0:
    return {"n": 0}
  return {"n": int(stds.size), "mean_std": float(stds.mean()),
          "zero_std_share": float(np.mean(stds <= 1e-12)),
          "share_ge_sigma0": float(np.mean(stds >= sigma0))}


def plot(panels: Sequence[tuple[str, dict[str, np.ndarray]]], out: Path) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  cols = min(2, len(panels))
  rows = -(-len(panels) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, 4.2 * rows), squeeze=False)
  bins = np.linspace(0.0, 0.5, 21)
  for ax in axes.flat[len(panels):]:
    ax.axis("off")
  for ax, (title, series) in zip(axes.flat, panels):
    for label, stds in series.items():
      if stds.size == 0:
        continue
      d = describe(stds)
      weights = np.full(stds.size, 1.0 / stds.size)
      ax.hist(np.clip(stds, 0, 0.5), bins=bins, weights=weights, histtype="step", linewidth=1.6,
              label=f"{label}\n n={d['n']}, mean={d['mean_std']:.3f}, "
                    f"zero-std {d['zero_std_share']:.0%}")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("reward std within a prompt's samples")
    ax.set_ylabel("share of prompts")
    ax.legend(fontsize=7)
  fig.tight_layout()
  Path(out).parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(out, dpi=120)
  plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--runs", default="runs/table1", help="the Table 1 sweep folder")
  p.add_argument("--out", default="docs/reward_std.png")
  p.add_argument("--rounds", default="0,1", help="round indices (0 = first round)")
  p.add_argument("--resample", default=None,
                 help="re-sampling diagnostic JSON: computed and written when the file does not "
                      "exist, read otherwise")
  p.add_argument("--policy", default=None, help="start policy for --resample (default: demo)")
  args = p.parse_args(argv)
  if args.resample and not Path(args.resample).is_file():
    from restrl_jax.experiments.sweep import DEMO_POLICY
    facts = resample(Path(args.runs), Path(args.policy or DEMO_POLICY))
    io_utils.atomic_write_json(args.resample, facts)
  resampled = json.loads(Path(args.resample).read_text()) if args.resample else None
  if resampled:
    print(json.dumps({k: {f: v for f, v in d.items() if f != "stds"}
                      for k, d in resampled.items()}, indent=2))
  rounds = [int(r) for r in args.rounds.split(",")]
  panels, facts = [], {}
  collect = {"all training problems (collection, N samples)": collection_stds(
      Path(args.runs), "rest_grpo", 0)}
  panels.append(("per-problem std at collection, round 1", collect))
  for r in rounds:
    series = {label: training_stds(Path(args.runs), m, r) for m, label in SERIES}
    for kind, stds in training_stds_by_kind(Path(args.runs), "rest_grpo", r).items():
      series[f"ReST-GRPO, {kind} prompts only"] = stds
    panels.append((f"GRPO groups trained on, round {r + 1}", series))
  if resampled:
    panels.append(("ReST round-1 prompts re-sampled with the base policy (G=4)",
                   {k: np.array(v["stds"]) for k, v in resampled.items()}))
  for title, series in panels:
    facts[title] = {label: describe(s) for label, s in series.items()}
  if all(s.size == 0 for _, series in panels for s in series.values()):
    print(f"no collection or training records under {args.runs}", file=sys.stderr)
    return 1
  plot(panels, Path(args.out))
  print(json.dumps(facts, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
