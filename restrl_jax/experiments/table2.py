"""The paper's Table 2 and Fig. 3b analogs on the embedded suite, over seeds, resumable per cell.

  python -m restrl_jax.experiments.table2 --out runs/table2 --seeds 0,1,2

Under <out>:
  value/         ONE value model for all seeds (pipeline stages collect_values + train_value with
                 the shipped base policy, seed `value_seed`; each stage resumes / is skipped once
                 DONE). Seeds vary the decoding randomness, not the value model (CPU budget).
  seed<s>/rest/  the seed's ReST-GRPO policy (stage rest_grpo), unless a finished Table-1 cell
                 under `table1_root` has one;
  seed<s>/cells/ one JSON file per decoding cell, written atomically when finished and skipped
                 on a re-run:
    pool_base_n<N>.json     N samples of the base policy per test problem, executed and scored
                            by the value model: the sampling row (pass@1 over the pool) and
                            best-of-N at every budget k <= N (exact expectation of a draw of k,
                            `budget_curve.best_of_k`);
    <policy>_<method>_b<k>  ORM-MCTS / VM-MCTS at budget k (all test problems' trees together);
                            policy "rest" + vm_mcts is the ReST-RL row.
Budgets are counted in sampled programs per problem (docs/method.md §7). Cells run Table-2 first for every
seed, then the curve's other budgets (`plan`). Outputs, rewritten after every cell: table2.md
(mean +- std over seeds of strict accuracy and test-case average), curve.json, budget_curve.png
(accuracy vs sampled programs) and ranking.json (how well the value model orders each pool).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import ml_collections
import numpy as np

from restrl_jax import config_defaults, io_utils, models
from restrl_jax.experiments import budget_curve
from restrl_jax.rollout import group_records, rollout
from restrl_jax.pipeline.stages.common import sampling_params as sampling_from_config

MCTS_METHODS = ("orm_mcts", "vm_mcts")
TABLE_ROWS = (("sampling", "base", "sampling (pass@1)"),
              ("best_of_n", "base", "best-of-N (VM as ORM)"),
              ("orm_mcts", "base", "ORM-MCTS"),
              ("vm_mcts", "base", "VM-MCTS"),
              ("vm_mcts", "rest", "ReST-RL (ReST-GRPO policy + VM-MCTS)"),
              ("oracle", "base", "reference: perfect verifier (pass@k of the base policy)"))
METRICS = ("strict_accuracy", "test_case_average")


@dataclasses.dataclass(frozen=True)
class Settings:
  """Sizes of the experiment (defaults: what fits ~50 min on the 2-core CPU machine)."""
  seeds: tuple[int, ...] = (0, 1, 2)
  num_test: int = 64              # test problems (synthetic test split, first N)
  budget: int = 20                # Table 2's sample budget per problem
  mcts_budgets: tuple[int, ...] = (5, 10, 20, 50)   # MCTS runs of the curve
  pool_size: int = 100            # base-policy samples per problem (sampling / best-of-N curve)
  collect_problems: int = 64      # value-target collection: train problems ...
  collect_iterations: int = 12    # ... and MCTS iterations per problem
  value_epochs: int = 2
  rest: bool = True               # also the ReST-RL row (ReST-GRPO policy + VM-MCTS)
  value_seed: int = 0             # seed of the one collection + value model all seeds share
  table1_root: str = "runs/table1"  # finished Table-1 ReST-GRPO cells are reused from here

  def __post_init__(self):
    if not self.seeds:
      raise ValueError("Settings.seeds: give at least one seed")
    for name in ("num_test", "budget", "pool_size", "collect_problems", "collect_iterations",
                 "value_epochs"):
      if int(getattr(self, name)) < 1:
        raise ValueError(f"Settings.{name} must be >= 1, got {getattr(self, name)}")
    if self.budget > self.pool_size:
      raise ValueError(f"Settings.budget={self.budget} exceeds pool_size={self.pool_size}: the "
                       "best-of-N row is computed from the pool")

  @property
  def curve_budgets(self) -> tuple[int, ...]:
    pts = {1, 2, 5, 10, 20, 50, 100, self.budget, *self.mcts_budgets}
    return tuple(sorted(k for k in pts if k <= self.pool_size))

  @property
  def all_mcts_budgets(self) -> tuple[int, ...]:
    return tuple(sorted({self.budget, *self.mcts_budgets}))


# -- resumable cells ----------------------------------------------------------------------------

def cached(path: str | Path, compute: Callable[[], dict]) -> dict:
  """The JSON at `path` if a finished run left it, else `compute()` written there atomically."""
  path = Path(path)
  if path.exists():
    return json.loads(path.read_text())
  result = compute()
  path.parent.mkdir(parents=True, exist_ok=True)
  io_utils.atomic_write_json(path, result)
  return result


def cell_name(policy: str, method: str, budget: int) -> str:
  return f"{policy}_{method}_b{budget}.json"


# -- pipeline runs (value model, ReST-GRPO policy) -----------------------------------------------

def shipped_policy() -> Path:
  from restrl_jax.warmstart import shipped_policy_path  # pylint: disable=import-outside-toplevel
  return shipped_policy_path()


def seed_config(settings: Settings, seed: int, workdir: Path,
                stages: Sequence[str]) -> ml_collections.ConfigDict:
  """The demo config (configs/demo.py) at this experiment's sizes, seeded by `seed`."""
  c = config_defaults.base()
  c.workdir, c.seed, c.stages = str(workdir), seed, tuple(stages)
  c.model.hf_path = str(shipped_policy())
  c.rest, c.grpo = config_defaults.demo_rest(), config_defaults.demo_grpo()
  c.mcts, c.value = config_defaults.demo_mcts(), config_defaults.demo_value()
  c.sampling.max_new_tokens, c.sampling.batch_size = 128, 256
  c.rest.seed, c.mcts.seed, c.value.seed = seed, seed, seed
  c.mcts.collect_num_problems = settings.collect_problems
  c.mcts.collect_iterations = settings.collect_iterations
  c.mcts.batch_trees = settings.collect_problems
  c.value.epochs, c.value.dedupe = settings.value_epochs, True
  return c


def value_model(settings: Settings, out: Path) -> Path:
  """Collection + value training with the base policy (seed `value_seed`), run or resumed."""
  from restrl_jax.pipeline.runner import run_pipeline  # pylint: disable=import-outside-toplevel
  workdir = out / "value"
  run_pipeline(seed_config(settings, settings.value_seed, workdir,
                           ("collect_values", "train_value")))
  return workdir / "train_value" / "best"


def rest_policy(settings: Settings, seed: int, out: Path) -> Path:
  """The seed's ReST-GRPO policy: a finished Table-1 cell's if there is one, else trained here."""
  table1 = Path(settings.table1_root) / "rest_grpo" / f"seed{seed}"
  if (table1 / "result.json").is_file() and (table1 / "train" / "rest_grpo" / "policy").is_dir():
    return table1 / "train" / "rest_grpo" / "policy"
  from restrl_jax.pipeline.runner import run_pipeline  # pylint: disable=import-outside-toplevel
  workdir = out / f"seed{seed}" / "rest"
  run_pipeline(seed_config(settings, seed, workdir, ("rest_grpo",)))
  return workdir / "rest_grpo" / "policy"


# -- decoding cells -----------------------------------------------------------------------------

class Models:
  """Policies (Samplers, loaded on first use) and the value model."""

  def __init__(self, vm_path: Path, sampling: ml_collections.ConfigDict,
               score_batch_size: int = 64):
    from restrl_jax.value.model import load_value_model  # pylint: disable=import-outside-toplevel
    self.batch_size = sampling.batch_size
    self.sp = sampling_from_config(sampling)
    self._samplers: dict[str, Any] = {}
    self.base = self.sampler(shipped_policy())
    self.vm = load_value_model(vm_path, batch_size=score_batch_size,
                               tokenizer=self.base.tokenizer)

  def sampler(self, path: Path):
    from restrl_jax.sampling import Sampler  # pylint: disable=import-outside-toplevel
    from restrl_jax.tokenizer import load_tokenizer  # pylint: disable=import-outside-toplevel
    if str(path) not in self._samplers:
      config, params = models.load_hf(path)
      self._samplers[str(path)] = Sampler(config, params, load_tokenizer(path),
                                          max_batch=self.batch_size)
    return self._samplers[str(path)]


def pool_cell(mdl: Models, pool: Any, problems: Sequence, pool_size: int, seed: int) -> dict:
  """`pool_size` executed samples per problem of the base policy, scored by the value model."""
  start = time.perf_counter()
  records = rollout(mdl.base, pool, problems, mdl.sp, pool_size, rng=seed, chunk_size=512,
                    request_ids=list(range(len(problems))))
  groups = group_records(records)
  gen_s = time.perf_counter() - start
  flat = [(p, r.program) for p, g in zip(problems, groups) for r in g]
  scores = mdl.vm.scorer()([p for p, _ in flat], [s for _, s in flat])
  scores = np.asarray(scores, np.float64).reshape(len(problems), pool_size)
  return {"problem_ids": [p.id for p in problems],
          "rewards": [[float(r.reward) for r in g] for g in groups],
          "scores": scores.round(6).tolist(),
          "seconds_sampling_execution": round(gen_s, 2),
          "seconds_value": round(time.perf_counter() - start - gen_s, 2)}


def mcts_cell(sampler: Any, mdl: Models, pool: Any, problems: Sequence, method: str,
              budget: int, seed: int, mcts: ml_collections.ConfigDict) -> dict:
  """One MCTS decoding method at `budget` on every problem (all trees together), executed."""
  from restrl_jax.search import decode as decode_lib  # pylint: disable=import-outside-toplevel
  start = time.perf_counter()
  answers = decode_lib.decode(
      method, problems, sampler, mdl.sp, budget, mdl.vm.scorer(),
      mcts.decode_samples, mcts.decode_width, mcts.decode_c, mcts.eps, seed,
      tree_ids=list(range(len(problems))), max_steps_factor=mcts.max_steps_factor)
  seconds = time.perf_counter() - start
  rewards = decode_lib.execute_answers(pool, problems, answers)
  return {"problem_ids": [a.problem_id for a in answers],
          "rewards": [float(r[0]) for r in rewards],
          "scores": [a.score for a in answers],
          "samples": [a.num_samples for a in answers],
          "programs": [a.program for a in answers],
          **decode_lib.answer_metrics(answers, rewards), "seconds": round(seconds, 2)}


def strict(rewards: Sequence[float]) -> float:
  return float(np.mean(np.asarray(rewards) > budget_curve.STRICT_THRESHOLD))


def seed_results(settings: Settings, pool_data: dict | None,
                 cells: dict[tuple[str, str, int], dict]) -> dict[str, dict]:
  """{metric: {row name: {budget: value}}} of one seed (sampling / best-of-N from the pool)."""
  if pool_data is None:
    out: dict[str, dict] = {m: {} for m in METRICS}
  else:
    out = budget_curve.pool_curves(pool_data["scores"], pool_data["rewards"],
                                   settings.curve_budgets)
  for (policy, method, budget), cell in cells.items():
    name = method if policy == "base" else f"{policy}_{method}"
    out["strict_accuracy"].setdefault(name, {})[budget] = strict(cell["rewards"])
    out["test_case_average"].setdefault(name, {})[budget] = float(np.mean(cell["rewards"]))
  if pool_data is not None:
    out["ranking"] = budget_curve.pool_ranking(pool_data["scores"], pool_data["rewards"])
  return out


def plan(settings: Settings) -> list[tuple[int, str, str, int]]:
  """(seed, policy, method, budget) cells in run order: for every seed the pool ("pool" = the
  scored samples) and ORM-/VM-MCTS at the Table-2 budget, then every seed's ReST-RL cell, then
  the curve's other MCTS budgets (cheapest first)."""
  table = [(s, "base", m, settings.budget) for s in settings.seeds
           for m in ("pool",) + MCTS_METHODS]
  table = [(s, p, m, settings.pool_size if m == "pool" else b) for s, p, m, b in table]
  rest = [(s, "rest", "vm_mcts", settings.budget) for s in settings.seeds] if settings.rest else []
  others = [b for b in settings.all_mcts_budgets if b != settings.budget]
  curve = [(s, "base", m, b) for b in others for s in settings.seeds for m in MCTS_METHODS]
  return table + rest + curve


def cell_path(out: Path, seed: int, policy: str, method: str, budget: int) -> Path:
  name = f"pool_base_n{budget}.json" if method == "pool" else cell_name(policy, method, budget)
  return out / f"seed{seed}" / "cells" / name


def collect_results(out: Path, settings: Settings) -> list[dict]:
  """`seed_results` of every seed from the finished cell files (missing cells are left out)."""
  per_seed = []
  for seed in settings.seeds:
    cells, pool_data = {}, None
    for s, policy, method, budget in plan(settings):
      path = cell_path(out, s, policy, method, budget)
      if s != seed or not path.exists():
        continue
      data = json.loads(path.read_text())
      if method == "pool":
        pool_data = data
      else:
        cells[(policy, method, budget)] = data
    if pool_data is not None or cells:
      per_seed.append({"seed": seed, **seed_results(settings, pool_data, cells)})
  return per_seed


def run_all(settings: Settings, out: Path, problems: Sequence) -> list[dict]:
  """Every cell of `plan` (finished ones are skipped); outputs rewritten after each cell."""
  from restrl_jax.execution import ExecutionPool  # pylint: disable=import-outside-toplevel
  cfg = seed_config(settings, settings.value_seed, out, ())
  mdl = Models(value_model(settings, out), cfg.sampling)
  with ExecutionPool() as pool:
    for seed, policy, method, budget in plan(settings):
      path = cell_path(out, seed, policy, method, budget)
      if path.exists():
        continue
      logging.info("cell seed %d %s %s budget %d", seed, policy, method, budget)
      if method == "pool":
        cached(path, lambda: pool_cell(mdl, pool, problems, budget, seed))
      else:
        sampler = mdl.base if policy == "base" else mdl.sampler(rest_policy(settings, seed, out))
        cached(path, lambda: mcts_cell(sampler, mdl, pool, problems, method, budget, seed,
                                       cfg.mcts))
      write_outputs(out, settings, collect_results(out, settings))
  return collect_results(out, settings)


# -- aggregation --------------------------------------------------------------------------------

def table_markdown(per_seed: Sequence[dict], settings: Settings) -> str:
  """Table 2 analog: rows x metrics, mean +- std over seeds at `settings.budget`."""
  lines = [f"| method ({settings.budget} sampled programs / problem) | strict accuracy | "
           "test-case average | seeds |", "|---|---|---|---|"]
  for method, policy, label in TABLE_ROWS:
    name = method if policy == "base" else f"{policy}_{method}"
    cols, seeds = [], 0
    for metric in METRICS:
      vals = [r[metric].get(name, {}).get(settings.budget) for r in per_seed]
      vals = [v for v in vals if v is not None]
      seeds = len(vals)
      if not vals:
        cols.append("n/a")
        continue
      std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
      cols.append(f"{np.mean(vals):.3f} +- {std:.3f}")
    lines.append(f"| {label} | {cols[0]} | {cols[1]} | {seeds} |")
  return "\n".join(lines) + "\n"


def curve_points(per_seed: Sequence[dict], metric: str) -> dict:
  methods = ("sampling", "best_of_n", "orm_mcts", "vm_mcts", "oracle")
  return budget_curve.aggregate([{m: r[metric][m] for m in methods if m in r[metric]}
                                 for r in per_seed])


def write_outputs(out: Path, settings: Settings, per_seed: Sequence[dict]) -> str:
  table = table_markdown(per_seed, settings)
  curves = {metric: {m: {str(b): v for b, v in pts.items()}
                     for m, pts in curve_points(per_seed, metric).items()} for metric in METRICS}
  ranking = [{"seed": r["seed"], **r["ranking"]} for r in per_seed if "ranking" in r]
  io_utils.atomic_write_text(out / "table2.md", table)
  io_utils.atomic_write_json(out / "curve.json", {"settings": dataclasses.asdict(settings),
                                                  "curves": curves, "per_seed": per_seed})
  io_utils.atomic_write_json(out / "ranking.json", ranking)
  if not per_seed:
    return table
  try:
    budget_curve.plot_curves(curve_points(per_seed, "strict_accuracy"), out / "budget_curve.png",
                             "strict accuracy", f"synthetic test ({settings.num_test} problems), "
                             f"{len(per_seed)} seeds, mean +- std")
  except ImportError as err:
    logging.warning("no figure: %s", err)
  return table


# -- command line -------------------------------------------------------------------------------

def _ints(text: str) -> tuple[int, ...]:
  return tuple(int(x) for x in text.split(",") if x.strip())


def parse_args(argv: Sequence[str] | None = None) -> tuple[Path, Settings, bool]:
  d = Settings()
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--out", required=True, type=Path)
  p.add_argument("--seeds", default=",".join(map(str, d.seeds)), type=_ints)
  p.add_argument("--mcts_budgets", default=",".join(map(str, d.mcts_budgets)), type=_ints)
  p.add_argument("--no_rest", action="store_true", help="skip the ReST-RL row")
  p.add_argument("--aggregate_only", action="store_true",
                 help="run nothing: rewrite the outputs from the finished cells")
  p.add_argument("--value_seed", type=int, default=d.value_seed)
  p.add_argument("--table1_root", default=d.table1_root)
  for name in ("num_test", "budget", "pool_size", "collect_problems", "collect_iterations",
               "value_epochs"):
    p.add_argument(f"--{name}", type=int, default=getattr(d, name))
  a = p.parse_args(argv)
  return a.out, Settings(seeds=a.seeds, num_test=a.num_test, budget=a.budget,
                         mcts_budgets=a.mcts_budgets, pool_size=a.pool_size,
                         collect_problems=a.collect_problems,
                         collect_iterations=a.collect_iterations, value_epochs=a.value_epochs,
                         rest=not a.no_rest, value_seed=a.value_seed,
                         table1_root=a.table1_root), a.aggregate_only


def main(argv: Sequence[str] | None = None) -> str:
  out, settings, aggregate_only = parse_args(argv)
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
  for handler in logging.getLogger().handlers:  # orbax / jax internals: warnings only
    handler.addFilter(lambda r: r.levelno >= logging.WARNING or not any(
        part in r.pathname for part in ("/orbax/", "/jax/_src/")))
  from restrl_jax.data.synthetic import load_synthetic  # pylint: disable=import-outside-toplevel
  out.mkdir(parents=True, exist_ok=True)
  io_utils.atomic_write_json(out / "settings.json", dataclasses.asdict(settings))
  problems = load_synthetic("test", settings.num_test, verify=False)
  per_seed = collect_results(out, settings) if aggregate_only else run_all(settings, out,
                                                                           problems)
  table = write_outputs(out, settings, per_seed)
  print(table, flush=True)
  return table


if __name__ == "__main__":
  main()
