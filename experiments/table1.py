"""The Table 1 analog: base, naive GRPO, ReST-DPO, DAPO-filter and ReST-GRPO after one and two
ReST rounds, at (near) equal generated-token budgets, over seeds, on the synthetic test split.

  python -m experiments.table1 --out runs/table1 --seeds 0,1,2

Budget rule (generated tokens, what each method's algorithm needs to sample):
  ReST-GRPO  = collection pass (N samples x training problems) + GRPO rollout tokens
  ReST-DPO   = collection pass only (it trains on the collected samples)
  naive GRPO = GRPO rollout tokens (it needs no collection; the pipeline still runs one per round
               for the record, reported as uncounted)
  DAPO       = GRPO rollout tokens of every candidate batch, kept or dropped
Steps per round (and DPO's N) are set so these match ReST-GRPO's budget (`BUDGET_PLAN`, from a
pilot run; the table reports the budgets actually measured).

Investigation variants (`VARIANTS`, e.g. `--methods rest_grpo_nopartial`) share the sweep folder;
`--table-only --methods <all of them>` tabulates every finished cell. Results: docs/results.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from experiments import sweep
from experiments.sweep import Cell, SweepSpec
from restrl_jax import io_utils

LABELS = {"base": "base (demo policy)", "grpo": "naive GRPO", "rest_dpo": "ReST-DPO",
          "dapo": "DAPO-filter", "rest_grpo": "ReST-GRPO",
          "rest_grpo_nopartial": "ReST-GRPO, σ0 filter only (r0 > 1: no partial states)",
          "rest_grpo_x4": "ReST-GRPO, 64 steps/round (1.8x budget)",
          "rest_grpo_newline": "ReST-GRPO, partial states ending in a newline (the paper's cut)",
          "grpo_x4": "naive GRPO, 72 steps/round (1.8x budget)"}
COUNTED = {"rest_grpo": ("collection_tokens", "rollout_tokens"),
           "rest_dpo": ("collection_tokens",),
           "grpo": ("rollout_tokens",), "dapo": ("rollout_tokens",)}

# Shared by every training cell: the demo sizes (64 training problems, N = 4 collection samples
# of <= 64 tokens, GRPO 2 prompts x G = 4 per step, LR 5e-5 constant), 2 rounds, epochs high
# enough that `max_steps_per_round` sets the steps.
COMMON: tuple[tuple[str, Any], ...] = (
    ("rest.rounds", 2), ("rest.tensorboard", False), ("rest.checkpoint_every", 8),
    ("grpo.epochs", 4.0))

# Per method; pilot (seed 0, round 1): collection 256 x 43.9 = 11.2k tokens, ReST-GRPO rollouts
# ~232 tokens/step (partial states are short), naive rollouts ~351 tokens/step, DAPO ~1.8 candidate
# batches per step (~700 tokens; more in round 2). ReST-GRPO's 16 steps -> 14.9k tokens per round.
BUDGET_PLAN: dict[str, tuple[tuple[str, Any], ...]] = {
    "rest_grpo": (("rest.max_steps_per_round", 16),),
    "grpo": (("rest.max_steps_per_round", 42),),
    "dapo": (("rest.max_steps_per_round", 20),),
    "rest_dpo": (("rest.num_samples", 5), ("grpo.epochs", 1.0),
                 ("rest.max_steps_per_round", None)),
}

# Evaluation: 200 held-out test problems x 2 samples at T = 0.7, <= 128 new tokens.
EVAL: tuple[tuple[str, Any], ...] = (
    ("evaluate.num_problems", 200), ("evaluate.num_samples", 2), ("evaluate.ks", (1,)),
    ("evaluate.split", "test"))

METHODS = ("base", "grpo", "rest_dpo", "dapo", "rest_grpo")

# Investigation variants (name -> (rest.method, overrides)), run with --methods.
# No partial states: full-length rollouts (~376 tokens/step) -> 10 steps for the same budget.
VARIANTS: dict[str, tuple[str, tuple[tuple[str, Any], ...]]] = {
    "rest_grpo_newline": ("rest_grpo", (("rest.max_steps_per_round", 16),
                                        ("rest.state_end", "newline"))),
    "rest_grpo_nopartial": ("rest_grpo", (("rest.r0", 2.0), ("rest.max_steps_per_round", 10))),
    # 4x the GRPO steps of ReST-GRPO: 11.2k + 64 x ~250 = 27k tokens per round (1.8x the
    # table's budget) -> naive 72 steps
    "rest_grpo_x4": ("rest_grpo", (("rest.max_steps_per_round", 64),)),
    "grpo_x4": ("grpo", (("rest.max_steps_per_round", 72),)),
}


def cells(seeds: Sequence[int], methods: Sequence[str] = METHODS) -> list[Cell]:
  """Seed-major, so a partial sweep already holds whole comparisons."""
  unknown = [m for m in methods if m not in LABELS]
  if unknown:
    raise ValueError(f"--methods: unknown {unknown}; choose from {list(LABELS)}")
  plan = {m: VARIANTS.get(m, (m, BUDGET_PLAN.get(m, ()))) for m in methods}
  return [Cell(m, plan[m][0], int(s), plan[m][1]) for s in seeds for m in methods]


def spec(out: Path) -> SweepSpec:
  return SweepSpec(root=Path(out), common=COMMON, eval_overrides=EVAL)


# -- budgets -------------------------------------------------------------------------------------

def counted_tokens(method: str, round_facts: dict) -> int:
  """Generated tokens one round counts for `method` (the rule in the module docstring)."""
  if method not in COUNTED:
    raise ValueError(f"no budget rule for method {method!r}; known: {sorted(COUNTED)}")
  return int(sum(round_facts[k] for k in COUNTED[method]))


def budget_through(result: dict, k: int) -> int:
  """Counted tokens of the first k rounds of a cell (0 for the base policy)."""
  if k > len(result["rounds"]):
    raise ValueError(f"cell {result['name']}/seed{result['seed']}: has "
                     f"{len(result['rounds'])} rounds, asked for {k}")
  return sum(counted_tokens(result["method"], r) for r in result["rounds"][:k])


def uncounted_tokens(result: dict, k: int) -> int:
  """Tokens generated in the first k rounds but not counted (naive methods' collection)."""
  return sum(r["collection_tokens"] + r["rollout_tokens"] for r in result["rounds"][:k]) - \
      budget_through(result, k)


# -- aggregation ---------------------------------------------------------------------------------

def mean_std(values: Sequence[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (ddof = 1; 0 for a single value)."""
  x = np.asarray(values, np.float64)
  if x.size == 0:
    raise ValueError("mean_std needs at least one value")
  return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else 0.0


def aggregate(results: Sequence[dict]) -> list[dict]:
  """One row per (method, rounds): mean/std over seeds of the scores, mean budgets."""
  groups: dict[tuple[str, int], list[tuple[dict, int]]] = {}
  for res in results:
    for k in sorted(res["evals"], key=int):
      groups.setdefault((res["name"], int(k)), []).append((res, int(k)))
  rows = []
  for (name, k), items in sorted(groups.items(), key=lambda x: (_order(x[0][0]), x[0][1])):
    scores = [res["evals"][str(k)] for res, _ in items]
    row = {"name": name, "rounds": k, "seeds": sorted(res["seed"] for res, _ in items)}
    for f in ("strict_accuracy", "test_case_average"):
      row[f] = mean_std([s[f] for s in scores])
    row["budget"] = mean_std([budget_through(res, k) for res, _ in items])
    row["uncounted"] = float(np.mean([uncounted_tokens(res, k) for res, _ in items]))
    row["steps"] = float(np.mean([sum(r["steps"] for r in res["rounds"][:k]) for res, _ in items]))
    rows.append(row)
  return rows


def _order(name: str) -> int:
  names = METHODS + tuple(VARIANTS)
  return names.index(name) if name in names else len(names)


def _pm(ms: tuple[float, float], digits: int = 3) -> str:
  return f"{ms[0]:.{digits}f} ± {ms[1]:.{digits}f}"


def render(rows: Sequence[dict]) -> str:
  """The markdown table (mean ± sample std over seeds)."""
  head = ("| method | rounds | strict accuracy | test-case avg | counted gen. tokens | "
          "uncounted gen. tokens | train steps | seeds |\n|---|---|---|---|---|---|---|---|\n")
  lines = [f"| {LABELS.get(r['name'], r['name'])} | {r['rounds']} | {_pm(r['strict_accuracy'])} "
           f"| {_pm(r['test_case_average'])} | {r['budget'][0]:,.0f} ± {r['budget'][1]:,.0f} "
           f"| {r['uncounted']:,.0f} | {r['steps']:.0f} | {','.join(map(str, r['seeds']))} |"
           for r in rows]
  return head + "\n".join(lines) + "\n"


def render_rounds(results: Sequence[dict]) -> str:
  """Per-round detail: collection facts and generated tokens (mean over seeds)."""
  by: dict[tuple[str, int], list[dict]] = {}
  for res in results:
    for i, r in enumerate(res["rounds"]):
      by.setdefault((res["name"], i + 1), []).append(r)
  head = ("| method | round | collection tokens | rollout tokens | steps | train rows | "
          "collect test-case avg | share std >= σ0 |\n|---|---|---|---|---|---|---|---|\n")
  mean = lambda xs, f: float(np.mean([x[f] for x in xs]))
  lines = [f"| {LABELS.get(n, n)} | {k} | {mean(xs, 'collection_tokens'):,.0f} | "
           f"{mean(xs, 'rollout_tokens'):,.0f} | {mean(xs, 'steps'):.0f} | "
           f"{mean(xs, 'rows'):.0f} | "
           f"{mean(xs, 'collect_test_case_average'):.3f} | "
           f"{mean(xs, 'collect_reward_std_share'):.3f} |"
           for (n, k), xs in sorted(by.items(), key=lambda x: (_order(x[0][0]), x[0][1]))]
  return head + "\n".join(lines) + "\n"


def paired_differences(results: Sequence[dict], a: str, b: str) -> list[dict]:
  """Per rounds k: mean ± std over seeds of (a - b) for seeds where both cells finished."""
  by = {(r["name"], r["seed"]): r for r in results}
  seeds = sorted(s for n, s in by if n == a and (b, s) in by)
  out = []
  for k in sorted({int(k) for s in seeds for k in by[(a, s)]["evals"]}):
    pairs = [(by[(a, s)]["evals"].get(str(k)), by[(b, s)]["evals"].get(str(k))) for s in seeds]
    pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
    if pairs:
      out.append({"a": a, "b": b, "rounds": k, "n": len(pairs), **{
          f: mean_std([x[f] - y[f] for x, y in pairs])
          for f in ("strict_accuracy", "test_case_average")}})
  return out


def render_differences(results: Sequence[dict], pairs: Sequence[tuple[str, str]]) -> str:
  head = ("| difference (same seed) | rounds | strict accuracy | test-case avg | seeds |\n"
          "|---|---|---|---|---|\n")
  lines = [f"| {LABELS.get(d['a'], d['a'])} − {LABELS.get(d['b'], d['b'])} | {d['rounds']} | "
           f"{_pm(d['strict_accuracy'])} | {_pm(d['test_case_average'])} | {d['n']} |"
           for a, b in pairs for d in paired_differences(results, a, b)]
  return head + "\n".join(lines) + "\n"


DIFFERENCES = (("rest_grpo", "grpo"), ("rest_grpo", "dapo"), ("rest_grpo", "rest_dpo"),
               ("rest_grpo_nopartial", "grpo"), ("rest_grpo_nopartial", "rest_grpo"),
               ("rest_grpo_x4", "grpo_x4"), ("rest_grpo", "rest_grpo_newline"))


def write_tables(out: Path, cell_list: Sequence[Cell]) -> str:
  results = sweep.read_results(out, cell_list)
  if not results:
    raise ValueError(f"no finished cells under {out} (nothing to tabulate)")
  text = (render(aggregate(results)) + "\n" + render_rounds(results) + "\n" +
          render_differences(results, DIFFERENCES))
  io_utils.atomic_write_text(Path(out) / "table1.md", text)
  return text


def main(argv: Sequence[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--out", default="runs/table1", help="sweep root folder")
  p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
  p.add_argument("--methods", default=",".join(METHODS), help="comma-separated, of " +
                 ",".join(METHODS + tuple(VARIANTS)))
  p.add_argument("--table-only", action="store_true", help="only tabulate finished cells")
  args = p.parse_args(argv)
  seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
  cell_list = cells(seeds, [m for m in args.methods.split(",") if m.strip()])
  failed = [] if args.table_only else sweep.run_sweep(spec(Path(args.out)), cell_list)
  print(write_tables(Path(args.out), cell_list))
  if failed:
    print(f"failed cells: {failed}", file=sys.stderr)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
