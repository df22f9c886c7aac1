"""The paper's Table 2 and Fig. 3b analogs: VM-MCTS and its baselines on the RL'd policy, per seed.

  python -m experiments.table2 run --learning runs/learning/main --out runs/table2 \
      --record docs/runs/table2 --seeds 0,1,2
  python -m experiments.table2 report --record docs/runs/table2 --docs docs

`run`, per seed s (every step resumes or is skipped once finished):
  policy  the learning experiment's naive-GRPO policy of seed s
          (`<learning>/grpo/seed<s>/rest_grpo/policy`): the RL'd policy whose programs the value
          model has to rank (docs/method.md §5-§7);
  value   one value model per seed: the pipeline's `collect_values` and `train_value` stages with
          that policy as `model.hf_path`, in `<out>/seed<s>/value` (collection on the first
          `--collect_problems` train problems, `--collect_iterations` x `--collect_samples`;
          `--value_kind` mse or implicit_prm);
  pool    `--pool_size` samples of the policy per problem of the in-distribution test split
          (first `--num_test`), executed and scored by the value model: sampling (pass@1),
          best-of-N at every budget (exact expectation, `budget_curve.best_of_k`), the perfect
          verifier, and the value model's within-problem ranking; beside it, as a reference
          scorer, the policy's own log-likelihood of each program (its ranking and best-of-N);
  mcts    ORM-MCTS and VM-MCTS at each of `--mcts_budgets` sampled programs per problem, all
          trees together; the samples each tree actually drew are kept.
The seed's record `<record>/seed<s>.json` holds per-problem figures only (rewards and scores
rounded to 4 decimals); a record that exists is not recomputed.

`report` reads only the records: the table at `--budget` (mean +- std over seeds, the samples
each method drew, paired differences against best-of-N and sampling), the budget curve (table and
`budget_curve.png`) and the ranking, written into `<docs>/results.md` between markers and into
`<docs>/results.json` (`value_auc_within_problem_heldout_mse`, `table2`). Records of the
implicit PRM (`--value_kind implicit_prm`, docs/method.md §6) go to their own block, figure and
keys, suffixed `_implicit_prm`. The headline `value_auc_within_problem_heldout` is the pipeline's
value model for the embedded suite: the implicit PRM's entry where it was reported (the MSE
value model ranks near chance there, docs/results.md), else the MSE one's; its `kind` says which.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from experiments import budget_curve
from restrl_jax import io_utils
from restrl_jax.evaluation.metrics import within_problem_auc

MCTS_METHODS = ("orm_mcts", "vm_mcts")
CURVE_METHODS = ("sampling", "best_of_n", "best_of_n_likelihood", "orm_mcts", "vm_mcts",
                 "oracle")
SELECTIONS = MCTS_METHODS + ("best_of_n", "best_of_n_likelihood")   # compared with the baselines
NAMES = {"sampling": "sampling (pass@1)", "best_of_n": "best-of-N (value model as ORM)",
         "best_of_n_likelihood": "reference: best-of-N by the policy's log-likelihood",
         "orm_mcts": "ORM-MCTS", "vm_mcts": "VM-MCTS",
         "oracle": "reference: perfect verifier (pass@k)"}
STRICT = budget_curve.STRICT_THRESHOLD
POOL_PART = 20   # a pool is drawn (and cached) in parts of this many samples per problem
CRASH_STATUSES = ("error", "timeout")


@dataclasses.dataclass(frozen=True)
class Settings:
  """Sizes of one seed's run (defaults: what fits the 2-core CPU machine)."""
  num_test: int = 200             # in-distribution test problems (id_test, first N)
  pool_size: int = 20             # policy samples per problem (sampling / best-of-N / ranking),
                                  # drawn in parts of POOL_PART
  mcts_budgets: tuple[int, ...] = (5, 10, 20)
  collect_problems: int = 1600    # value-target collection: train problems ...
  collect_iterations: int = 2     # ... MCTS iterations ...
  collect_samples: int = 5        # ... and samples per expansion
  value_epochs: int = 2
  value_batch_size: int = 32
  value_learning_rate: float = 5e-4
  value_kind: str = "mse"         # or "implicit_prm" (config.value.kind) ...
  implicit_steps: int = 750       # ... trained with these `value.implicit_*` settings
  implicit_learning_rate: float = 1e-4
  implicit_pairs_per_step: int = 32

  def __post_init__(self):
    for name in ("num_test", "pool_size", "collect_problems", "collect_iterations",
                 "collect_samples", "value_epochs", "value_batch_size"):
      if int(getattr(self, name)) < 1:
        raise ValueError(f"Settings.{name} must be >= 1, got {getattr(self, name)}")
    if self.value_kind not in ("mse", "implicit_prm"):
      raise ValueError(f"Settings.value_kind must be 'mse' or 'implicit_prm', got "
                       f"{self.value_kind!r}")
    if self.pool_size % POOL_PART:
      raise ValueError(f"Settings.pool_size must be a multiple of {POOL_PART} (the pool is drawn "
                       f"in parts of {POOL_PART}), got {self.pool_size}")
    if not self.mcts_budgets or min(self.mcts_budgets) < 5:
      raise ValueError(f"Settings.mcts_budgets: give budgets >= 5 (one expansion of 5 "
                       f"samples), got {self.mcts_budgets}")


# -- one seed ------------------------------------------------------------------------------------

def value_config(settings: Settings, seed: int, policy: Path, workdir: Path):
  """The demo config's sections for collection + value training with `policy`."""
  # pylint: disable=import-outside-toplevel
  from configs import demo
  from restrl_jax import config_defaults
  c = config_defaults.base()
  c.workdir, c.seed, c.stages = str(workdir), seed, ("collect_values", "train_value")
  c.model.hf_path = str(policy)
  c.mcts, c.value = demo.mcts(), demo.value()
  c.sampling.max_new_tokens, c.sampling.batch_size = 128, 256
  c.mcts.collect_num_problems = settings.collect_problems
  c.mcts.collect_iterations = settings.collect_iterations
  c.mcts.collect_samples = settings.collect_samples
  c.mcts.batch_trees = 64
  c.value.epochs, c.value.learning_rate = settings.value_epochs, settings.value_learning_rate
  c.value.batch_size = settings.value_batch_size
  c.value.dedupe = True
  c.value.kind = settings.value_kind
  c.value.implicit_steps = settings.implicit_steps
  c.value.implicit_learning_rate = settings.implicit_learning_rate
  c.value.implicit_pairs_per_step = settings.implicit_pairs_per_step
  return c


def train_value_model(settings: Settings, seed: int, policy: Path, workdir: Path) -> dict:
  """Runs (or resumes) the seed's collection + value training; returns both stages' summaries."""
  from restrl_jax.pipeline.runner import run_pipeline  # pylint: disable=import-outside-toplevel
  run_pipeline(value_config(settings, seed, policy, workdir))
  out = {}
  for stage in ("collect_values", "train_value"):
    done = json.loads((workdir / stage / "DONE.json").read_text())
    summary = done.get("summary", done)
    out[stage] = {k: v for k, v in summary.items() if isinstance(v, (int, float))}
  return out


def round4(values: Sequence[float]) -> list[float]:
  return [round(float(v), 4) for v in values]


def sample_pool(sampler: Any, pool: Any, problems: Sequence, size: int, seed: int,
                sampling_params: Any) -> list:
  """`size` executed samples per problem (a function of `seed`): the rollout records, per
  problem."""
  from restrl_jax.rollout import group_records, rollout  # pylint: disable=import-outside-toplevel
  return group_records(rollout(sampler, pool, problems, sampling_params, size, rng=seed,
                               chunk_size=512, request_ids=list(range(len(problems)))))


def pool_cell(sampler: Any, vm: Any, pool: Any, problems: Sequence, size: int, seed: int,
              sampling_params: Any) -> dict:
  """`size` executed samples per problem, scored by the value model."""
  start = time.perf_counter()
  groups = sample_pool(sampler, pool, problems, size, seed, sampling_params)
  flat = [(p, r.program) for p, g in zip(problems, groups) for r in g]
  scores = np.asarray(vm.score_states([p for p, _ in flat], [s for _, s in flat]))
  scores = scores.reshape(len(problems), size)
  return {"problem_ids": [p.id for p in problems],
          "rewards": [round4(r.reward for r in g) for g in groups],
          "scores": [round4(s) for s in scores],
          # reference scorer: the policy's own log-likelihood of each program (the sum of the
          # log-probs the sampler recorded for its sampled tokens, at the sampling temperature)
          "likelihood": [[round(float(np.sum(r.logprobs)), 3) for r in g] for g in groups],
          "clean": [[int(not any(s in CRASH_STATUSES for s in r.statuses)) for r in g]
                    for g in groups],
          "seconds": round(time.perf_counter() - start, 1)}


def training_ranking_cell(vm: Any, values_path: Path, problems: dict,
                          num_problems: int = 200) -> dict:
  """The value model's ranking of the executed programs of its own first `num_problems`
  collection problems (seen in training; `problems` by id), beside the held-out pool's: how far
  it generalises."""
  by_problem: dict[str, list[dict]] = {}
  for r in io_utils.read_jsonl(values_path):
    if r["kind"] == "program" and (r["problem_id"] in by_problem or
                                   len(by_problem) < num_problems):
      by_problem.setdefault(r["problem_id"], []).append(r)
  groups = list(by_problem.values())
  scores = vm.score_states([problems[r["problem_id"]] for g in groups for r in g],
                           [r["state"] for g in groups for r in g])
  out, k = [], 0
  for g in groups:
    out.append(scores[k:k + len(g)])
    k += len(g)
  auc, pairs = within_problem_auc(out, [[r["value"] for r in g] for g in groups])
  return {"num_problems": len(groups), "auc": auc, "pairs": pairs}


def mcts_cell(sampler: Any, vm: Any, pool: Any, problems: Sequence, method: str, budget: int,
              seed: int, sampling_params: Any, mcts: Any) -> dict:
  """One MCTS method at `budget` on every problem (all trees together), executed."""
  from restrl_jax.search import answer_selection  # pylint: disable=import-outside-toplevel
  start = time.perf_counter()
  answers = answer_selection.decode(method, problems, sampler, sampling_params, budget,
                                    vm.scorer(), mcts.decode_samples, mcts.decode_width,
                                    mcts.decode_c, mcts.eps, seed,
                                    tree_ids=list(range(len(problems))),
                                    max_steps_factor=mcts.max_steps_factor)
  rewards = answer_selection.execute_answers(pool, problems, answers)
  return {"rewards": round4(r[0] for r in rewards), "samples": [a.num_samples for a in answers],
          "seconds": round(time.perf_counter() - start, 1)}


def run_seed(settings: Settings, seed: int, policy: Path, workdir: Path) -> dict:
  """Every cell of one seed; cells are cached under `workdir/cells` as they finish."""
  # pylint: disable=import-outside-toplevel
  from restrl_jax.data.registry import load_problems
  from restrl_jax.execution import ExecutionPool
  from restrl_jax.pipeline.stages.common import sampling_params
  from restrl_jax.sampling import Sampler
  from restrl_jax import models
  from restrl_jax.tokenizer import load_tokenizer
  from restrl_jax.value.model import load_value_model
  value = train_value_model(settings, seed, policy, workdir / "value")
  config = value_config(settings, seed, policy, workdir / "value")
  sp = sampling_params(config.sampling)
  model_config, params = models.load_hf(policy)
  sampler = Sampler(model_config, params, load_tokenizer(policy), max_batch=256)
  vm = load_value_model(workdir / "value" / "train_value" / "best", batch_size=64,
                        tokenizer=sampler.tokenizer)
  problems = load_problems("synthetic", None, split="id_test", limit=settings.num_test)
  cells = workdir / "cells"
  with ExecutionPool() as pool:
    pool_data = merge_pools([
        cached(cells / pool_part_name(i), lambda i=i: pool_cell(
            sampler, vm, pool, problems, POOL_PART, pool_part_seed(seed, i), sp))
        for i in range(settings.pool_size // POOL_PART)])
    seen = cached(cells / "training_ranking.json", lambda: training_ranking_cell(
        vm, workdir / "value" / "collect_values" / "values.jsonl",
        {p.id: p for p in load_problems("synthetic", None, split="train",
                                        limit=min(200, settings.collect_problems))}))
    mcts = {}
    for budget in sorted(settings.mcts_budgets):
      for method in MCTS_METHODS:
        logging.info("seed %d: %s at budget %d", seed, method, budget)
        mcts.setdefault(method, {})[str(budget)] = cached(
            cells / f"{method}_b{budget}.json", lambda: mcts_cell(
                sampler, vm, pool, problems, method, budget, seed, sp, config.mcts))
  return {"seed": seed, "policy": str(policy), "settings": dataclasses.asdict(settings),
          "value": value, "training_ranking": seen, "pool": pool_data, "mcts": mcts}


def pool_part_name(i: int) -> str:
  return f"pool_n{POOL_PART}.json" if i == 0 else f"pool_n{POOL_PART}_part{i}.json"


def pool_part_seed(seed: int, i: int) -> int:
  """Part i's sampling seed (part 0: the seed itself, as pools of one part were drawn)."""
  return seed + 1000 * i


def merge_pools(parts: Sequence[dict]) -> dict:
  """One pool from parts drawn on the same problems: each problem's samples side by side."""
  ids = parts[0]["problem_ids"]
  if any(p["problem_ids"] != ids for p in parts):
    raise ValueError("merge_pools: the pool parts hold different problems")
  merged = {"problem_ids": ids, "seconds": round(sum(p["seconds"] for p in parts), 1)}
  for key in ("rewards", "scores", "likelihood", "clean"):
    if all(key in p for p in parts):
      merged[key] = [sum(rows, []) for rows in zip(*(p[key] for p in parts))]
  return merged


def cached(path: Path, compute) -> dict:
  """The JSON at `path` if a finished run left it, else `compute()` written there atomically."""
  if path.is_file():
    return json.loads(path.read_text())
  result = compute()
  path.parent.mkdir(parents=True, exist_ok=True)
  io_utils.atomic_write_json(path, result)
  return result


def run(args: argparse.Namespace) -> None:
  settings = Settings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)
                         if f.name != "mcts_budgets"},
                      mcts_budgets=tuple(int(b) for b in args.mcts_budgets.split(",")))
  record_seeds(args, lambda seed, policy, workdir: run_seed(settings, seed, policy, workdir))


def record_seeds(args: argparse.Namespace, run_one) -> None:
  """`run_one(seed, RL'd policy, workdir)` for every seed of `args.seeds` without a record at
  `<args.record>/seed<s>.json` (the learning experiment's naive-GRPO policy of that seed, the
  workdir `<args.out>/seed<s>`), its result written there."""
  for seed in [int(s) for s in args.seeds.split(",")]:
    record = Path(args.record) / f"seed{seed}.json"
    if record.is_file():
      continue
    policy = Path(args.learning) / "grpo" / f"seed{seed}" / "rest_grpo" / "policy"
    if not (policy / "config.json").is_file():
      raise FileNotFoundError(f"no RL'd policy for seed {seed} at {policy}: run `python -m "
                              "experiments.learning run --methods grpo` first")
    result = run_one(seed, policy, Path(args.out) / f"seed{seed}")
    record.parent.mkdir(parents=True, exist_ok=True)
    io_utils.atomic_write_text(record, json.dumps(result, separators=(",", ":")) + "\n")


# -- report --------------------------------------------------------------------------------------

def pass_at_1(pool: dict) -> np.ndarray:
  """Per problem, the strictly correct share of its pool: sampling's accuracy.  # [P]"""
  return np.array([np.mean(np.asarray(r) > STRICT) for r in pool["rewards"]])


def mcts_budgets(records: Sequence[dict]) -> list[int]:
  """The budgets at which some record holds an MCTS cell."""
  return sorted({int(b) for r in records for m in MCTS_METHODS for b in r["mcts"].get(m, {})})


def per_problem(record: dict, budget: int) -> dict[str, np.ndarray]:
  """Per-problem strict accuracy of every method at `budget` (sampling: pass@1 of the pool;
  best-of-N and the oracle: exact expectations over the pool).  # {method: [P]}"""
  pool = record["pool"]
  out = {"sampling": pass_at_1(pool)}
  if budget <= len(pool["rewards"][0]):
    out["best_of_n"] = np.array([budget_curve.best_of_k(s, r, budget)[0]
                                 for s, r in zip(pool["scores"], pool["rewards"])])
    out["oracle"] = np.array([budget_curve.best_of_k(r, r, budget)[0] for r in pool["rewards"]])
    if "likelihood" in pool:
      out["best_of_n_likelihood"] = np.array([
          budget_curve.best_of_k(s, r, budget)[0]
          for s, r in zip(pool["likelihood"], pool["rewards"])])
  for method in MCTS_METHODS:
    cell = record["mcts"].get(method, {}).get(str(budget))
    if cell is not None:
      out[method] = np.asarray(cell["rewards"]) > STRICT
  return out


def matched_differences(record: dict, method: str, budget: int) -> dict[str, np.ndarray] | None:
  """Per problem, the MCTS method at `budget` minus best-of-N over as many programs as its tree
  drew (the exact expectation over the pool) and minus sampling; None where a tree drew more
  programs than the pool holds.  # {"best_of_n": [P], "sampling": [P]}"""
  cell, pool = record["mcts"].get(method, {}).get(str(budget)), record["pool"]
  if cell is None or max(cell["samples"]) > len(pool["rewards"][0]):
    return None
  mcts = (np.asarray(cell["rewards"]) > STRICT).astype(np.float64)
  best = np.array([budget_curve.best_of_k(s, r, max(int(k), 1))[0]
                   for s, r, k in zip(pool["scores"], pool["rewards"], cell["samples"])])
  return {"best_of_n": mcts - best, "sampling": mcts - pass_at_1(pool)}


def matched_rows(records: Sequence[dict]) -> dict:
  """{method: {budget: {"drawn", "minus_best_of_n", "minus_sampling"}}}, each a mean ± std over
  seeds of the per-seed means over problems (drawn: programs per problem)."""
  out: dict = {}
  for method in MCTS_METHODS:
    for b in mcts_budgets(records):
      diffs = [matched_differences(r, method, b) for r in records]
      if any(d is None for d in diffs):
        continue
      out.setdefault(method, {})[b] = {
          "drawn": mean_std([samples_drawn(r, method, b) for r in records]),
          **{f"minus_{k}": mean_std([d[k].mean() for d in diffs])
             for k in ("best_of_n", "sampling")}}
  return out


def samples_drawn(record: dict, method: str, budget: int) -> float:
  if method in MCTS_METHODS:
    return float(np.mean(record["mcts"][method][str(budget)]["samples"]))
  return 1.0 if method == "sampling" else float(budget)


def mean_std(values: Sequence[float | None]) -> tuple[float, float] | None:
  """Mean and ddof=1 std (0 for one value) of the values that exist; None if none does."""
  v = np.asarray([x for x in values if x is not None], np.float64)
  if not len(v):
    return None
  return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def summarize(records: Sequence[dict], budget: int) -> dict:
  """Ranking, the table at `budget` with paired differences, and the budget curves."""
  ranking = []
  for rec in records:
    pool = rec["pool"]
    auc, pairs = within_problem_auc(pool["scores"], pool["rewards"])
    clean_auc, clean_pairs = within_problem_auc(pool["scores"], pool["rewards"], pool["clean"])
    seen = rec.get("training_ranking", {})
    ranking.append({"seed": rec["seed"], "auc": auc, "pairs": pairs, "auc_clean": clean_auc,
                    "pairs_clean": clean_pairs, "training_auc": seen.get("auc"),
                    "training_pairs": seen.get("pairs")})
    if "likelihood" in pool:
      ranking[-1]["likelihood_auc"] = within_problem_auc(pool["likelihood"], pool["rewards"])[0]
      ranking[-1]["likelihood_auc_clean"] = within_problem_auc(
          pool["likelihood"], pool["rewards"], pool["clean"])[0]
  table = {}
  per_seed = [per_problem(rec, budget) for rec in records]
  for method in CURVE_METHODS:
    if not all(method in p for p in per_seed):
      continue
    row = {"strict_accuracy": mean_std([p[method].mean() for p in per_seed]),
           "samples_per_problem": mean_std([samples_drawn(r, method, budget) for r in records])}
    for other in ("best_of_n", "sampling"):
      if other != method and method in SELECTIONS:
        row[f"minus_{other}"] = mean_std([(p[method] - p[other]).mean() for p in per_seed])
        row[f"minus_{other}_problem_se"] = [float((p[method] - p[other]).std(ddof=1)
                                                  / np.sqrt(len(p[method]))) for p in per_seed]
    table[method] = row
  budgets = sorted(set(mcts_budgets(records)) | {1, 2, 5, 10, 20}
                   | {len(records[0]["pool"]["rewards"][0])})
  curve = {}
  for b in budgets:
    points = [per_problem(rec, b) for rec in records]
    for method in CURVE_METHODS:
      if all(method in p for p in points):
        curve.setdefault(method, {})[b] = mean_std([p[method].mean() for p in points])
  return {"budget": budget, "seeds": [r["seed"] for r in records], "ranking": ranking,
          "auc": mean_std([r["auc"] for r in ranking]),
          "auc_clean": mean_std([r["auc_clean"] for r in ranking]),
          "likelihood_auc": mean_std([r.get("likelihood_auc") for r in ranking]),
          "likelihood_auc_clean": mean_std([r.get("likelihood_auc_clean") for r in ranking]),
          "table": table, "curve": curve, "matched": matched_rows(records)}


def fmt(ms: tuple[float, float] | None, sign: bool = False) -> str:
  if ms is None:
    return "n/a"
  return f"{ms[0]:+.3f} ± {ms[1]:.3f}" if sign else f"{ms[0]:.3f} ± {ms[1]:.3f}"


def markdown(summary: dict, records: Sequence[dict]) -> str:
  s, n = summary, len(summary["seeds"])
  settings = records[0]["settings"]
  lines = [f"| method ({s['budget']} sampled programs / problem) | strict accuracy | "
           "programs drawn / problem | minus best-of-N (paired) | minus sampling (paired) |",
           "|---|---|---|---|---|"]
  for method, row in s["table"].items():
    diffs = [diff_cell(row, k, n) for k in ("minus_best_of_n", "minus_sampling")]
    acc = fmt(row["strict_accuracy"]) if n > 1 else f"{row['strict_accuracy'][0]:.3f}"
    lines.append(f"| {NAMES[method]} | {acc} | "
                 f"{row['samples_per_problem'][0]:.1f} | {diffs[0]} | {diffs[1]} |")
  lines += ["", "| strict accuracy at k programs | " + " | ".join(
      str(b) for b in sorted({b for c in s["curve"].values() for b in c})) + " |"]
  budgets = sorted({b for c in s["curve"].values() for b in c})
  lines.append("|---|" + "---|" * len(budgets))
  for method, points in s["curve"].items():
    lines.append(f"| {NAMES[method]} | " + " | ".join(
        ("" if b not in points else fmt(points[b]) if n > 1 else f"{points[b][0]:.3f}")
        for b in budgets) + " |")
  lines += matched_markdown(s["matched"], n)
  over_seeds = fmt if n > 1 else (lambda ms: fmt1(None if ms is None else ms[0]))  # no ± of one
  auc = ", ".join(f"{fmt1(r['auc'])} ({r['pairs']} pairs)" for r in s["ranking"])
  clean = ", ".join(f"{fmt1(r['auc_clean'])} ({r['pairs_clean']})" for r in s["ranking"])
  lines += ["", f"Value model ranking (within-problem AUC on the pools, per seed): {auc}; on "
            f"the pairs where both programs ran without an exception: {clean}. Mean over "
            f"{n} seed(s): {over_seeds(s['auc'])} (all pairs), {over_seeds(s['auc_clean'])} (no "
            "exception). "
            "On the executed programs of its own first collection problems (seen in training): "
            + ", ".join(f"{fmt1(r.get('training_auc'))} ({r.get('training_pairs')} pairs)"
                        for r in s["ranking"]) + "."
            + ("" if s["likelihood_auc"] is None else
               f" For reference, the policy's own log-likelihood of each sampled program (the "
               f"sum of its sampled tokens' log-probs) ranks the same pools at "
               + ", ".join(fmt1(r.get("likelihood_auc")) for r in s["ranking"])
               + f" (mean {over_seeds(s['likelihood_auc'])}; no exception: "
               f"{over_seeds(s['likelihood_auc_clean'])})."),
            "", f"Setting: RL'd policy = naive GRPO of the learning experiment (one per seed); "
            f"{settings['num_test']} id_test problems, a pool of {settings['pool_size']} samples "
            f"per problem; value model per seed from collection on "
            f"{settings['collect_problems']} train problems x {settings['collect_iterations']} "
            f"iterations x {settings['collect_samples']} samples, " + value_training(settings)
            + "; mean ± std over seeds; paired differences"
            " are per seed the mean over problems of (method - baseline); with one seed the ±"
            " of a difference is its standard error over problems (SE)."]
  return "\n".join(lines) + "\n"


def matched_markdown(matched: dict, seeds: int) -> list[str]:
  """The MCTS rows at every budget against best-of-N over as many programs as each tree drew
  (paired per problem) and against sampling; no lines where no budget fits the pool."""
  budgets = sorted({b for rows in matched.values() for b in rows})
  if not budgets:
    return []
  diff = (lambda ms: fmt(ms, sign=True)) if seeds > 1 else (lambda ms: f"{ms[0]:+.3f}")
  lines = ["", "| MCTS budget (programs per problem) | " + " | ".join(map(str, budgets)) + " |",
           "|---|" + "---|" * len(budgets)]
  for method, rows in matched.items():
    for key, label in (("drawn", "programs drawn / problem"),
                       ("minus_best_of_n", "minus best-of-N over as many programs (paired)"),
                       ("minus_sampling", "minus sampling (paired)")):
      lines.append(f"| {NAMES[method]}: {label} | " + " | ".join(
          "" if b not in rows else f"{rows[b]['drawn'][0]:.1f}" if key == "drawn"
          else diff(rows[b][key]) for b in budgets) + " |")
  return lines


def value_kind(settings: dict) -> str:
  return settings.get("value_kind", "mse")     # records before the implicit PRM: "mse"


def value_training(settings: dict) -> str:
  if value_kind(settings) == "implicit_prm":
    return (f"the implicit PRM (DPO, {settings['implicit_steps']} steps of "
            f"{settings['implicit_pairs_per_step']} pairs at LR "
            f"{settings['implicit_learning_rate']}, step chosen on 200 held-out collection "
            f"problems)")
  return (f"{settings['value_epochs']} epochs of batch {settings['value_batch_size']} at LR "
          f"{settings['value_learning_rate']}")


def diff_cell(row: dict, key: str, seeds: int) -> str:
  """A paired difference: ± its std over seeds, or with one seed ± its standard error over
  problems."""
  if key not in row:
    return "-"
  if seeds > 1:
    return fmt(row[key], sign=True)
  return f"{row[key][0]:+.3f} ± {row[key + '_problem_se'][0]:.3f} (SE)"


def fmt1(x: float | None) -> str:
  return "n/a" if x is None else f"{x:.3f}"


BEGIN, END = "<!-- table2:begin -->", "<!-- table2:end -->"


HEADLINE_KINDS = ("implicit_prm", "mse")   # the headline AUC: the first kind reported


def suffix(kind: str) -> str:
  """What names a value-model kind's docs block, figure and results.json keys ("" for mse)."""
  return "" if kind == "mse" else f"_{kind}"


def replace_between(text: str, body: str, kind: str = "mse") -> str:
  begin, end = (BEGIN, END) if kind == "mse" else (f"<!-- table2{suffix(kind)}:begin -->",
                                                   f"<!-- table2{suffix(kind)}:end -->")
  return io_utils.replace_marked_block(text, begin, end, body, append=True)


def load_records(root: Path) -> list[dict]:
  return [json.loads(p.read_text()) for p in sorted(Path(root).glob("seed*.json"))]


def headline_auc(results: dict) -> dict:
  """The per-kind AUC entry of the first of HEADLINE_KINDS that `results` holds."""
  return next(results[f"value_auc_within_problem_heldout_{kind}"] for kind in HEADLINE_KINDS
              if f"value_auc_within_problem_heldout_{kind}" in results)


def report(args: argparse.Namespace) -> dict:
  records, docs = load_records(Path(args.record)), Path(args.docs)
  if not records:
    raise FileNotFoundError(f"no seed records under {args.record}: run `table2 run` first")
  kinds = {value_kind(r["settings"]) for r in records}
  if len(kinds) != 1:
    raise ValueError(f"records under {args.record} mix value-model kinds {sorted(kinds)}")
  kind = kinds.pop()
  summary = summarize(records, args.budget)
  budget_curve.plot_curves(summary["curve"], docs / f"budget_curve{suffix(kind)}.png",
                           "strict accuracy",
                           f"id_test ({records[0]['settings']['num_test']} problems), "
                           f"{len(records)} seed(s), mean ± std")
  results_path = docs / "results.json"
  results = json.loads(results_path.read_text()) if results_path.is_file() else {}
  auc = summary["auc"] or (None, None)
  results[f"value_auc_within_problem_heldout_{kind}"] = {
      "mean": auc[0], "std": auc[1], "split": "id_test",
      "pairs": [r["pairs"] for r in summary["ranking"]],
      "mean_no_exception": (summary["auc_clean"] or (None,))[0],
      "pairs_no_exception": [r["pairs_clean"] for r in summary["ranking"]],
      "seeds": len(records), "kind": kind}
  results["value_auc_within_problem_heldout"] = headline_auc(results)
  table = results[f"table2{suffix(kind)}"] = {k: summary[k] for k in ("budget", "seeds",
                                                                    "ranking", "table")}
  table["curve"] = {m: {str(b): v for b, v in pts.items()} for m, pts in summary["curve"].items()}
  io_utils.atomic_write_text(results_path, json.dumps(results, indent=1, sort_keys=True) + "\n")
  md = docs / "results.md"
  io_utils.atomic_write_text(md, replace_between(md.read_text() if md.is_file() else "",
                                                 markdown(summary, records), kind))
  return summary


def main(argv: Sequence[str] | None = None) -> None:
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
  d = Settings()
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)
  r = sub.add_parser("run")
  r.add_argument("--learning", default="runs/learning/main",
                 help="the learning experiment's cells (<learning>/grpo/seed<s>)")
  r.add_argument("--out", default="runs/table2")
  r.add_argument("--seeds", default="0,1,2")
  r.add_argument("--mcts_budgets", default=",".join(map(str, d.mcts_budgets)))
  for f in dataclasses.fields(Settings):
    if f.name != "mcts_budgets":
      r.add_argument(f"--{f.name}", type=type(f.default), default=f.default)
  rep = sub.add_parser("report")
  rep.add_argument("--docs", default="docs")
  rep.add_argument("--budget", type=int, default=20)
  for p in (r, rep):
    p.add_argument("--record", default="docs/runs/table2")
  args = parser.parse_args(argv)
  run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
  main()
