"""A sweep of pipeline runs: one cell = a method with config overrides and a seed.

A cell trains with the pipeline's `rest_grpo` stage (any `rest.method`; method "base" trains
nothing), then evaluates the policy after every round with the `evaluate` stage, each in its own
workdir under `<root>/<cell name>/seed<seed>/`:

  train/                 the training run (rest_grpo/round_<r>/... as rounds.py writes it)
  eval_round<k>/         the `evaluate` stage on the policy after k rounds (k = 0: base policy)
  result.json            scores per round + the generated tokens per round (written last)
  log.txt                the cell process's output

A cell runs in its own process (`python -m experiments.sweep CELL_JSON`), so a crash
or a leak stays inside it. A cell with `result.json` is finished and skipped; an unfinished one
resumes (the runner skips finished stages, the rounds resume from their checkpoints).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import ml_collections

from restrl_jax import io_utils
from restrl_jax.config_checks import ConfigError, get_field

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "configs" / "demo.py"
DEMO_POLICY = REPO / "restrl_jax" / "assets" / "demo_policy"
RESULT_FILE = "result.json"
CELL_FILE = "cell.json"
BASE = "base"
RESULT_FIELDS = ("name", "method", "seed", "evals", "rounds")
EVAL_FIELDS = ("strict_accuracy", "test_case_average")


@dataclasses.dataclass(frozen=True)
class Cell:
  """One pipeline run: `method` is a `rest.method` or "base" (evaluate the start policy only)."""
  name: str
  method: str
  seed: int
  overrides: tuple[tuple[str, Any], ...] = ()   # (dotted config path, value), training side

  @property
  def key(self) -> str:
    return f"{self.name}/seed{self.seed}"


@dataclasses.dataclass(frozen=True)
class SweepSpec:
  """What every cell shares."""
  root: Path
  config_file: Path = DEMO_CONFIG
  start_policy: Path = DEMO_POLICY
  common: tuple[tuple[str, Any], ...] = ()       # training overrides for every cell
  eval_overrides: tuple[tuple[str, Any], ...] = ()


def cell_dir(root: Path, cell: Cell) -> Path:
  return Path(root) / cell.name / f"seed{cell.seed}"


def is_finished(root: Path, cell: Cell) -> bool:
  return (cell_dir(root, cell) / RESULT_FILE).is_file()


# -- configs -------------------------------------------------------------------------------------

def load_config(path: Path) -> ml_collections.ConfigDict:
  spec = importlib.util.spec_from_file_location("sweep_config", str(path))
  if spec is None or spec.loader is None:
    raise ConfigError(f"config file {str(path)!r} cannot be loaded")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Sequence[tuple[str, Any]]) -> ml_collections.ConfigDict:
  """Set each dotted path (it must exist; a ConfigError names the one that does not)."""
  for path, value in overrides:
    parent, _, leaf = path.rpartition(".")
    node = get_field(config, parent) if parent else config
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
      raise ConfigError(f"override {path}={value!r}: config has no field {path!r}")
    node[leaf] = tuple(value) if isinstance(value, list) else value
  return config


def train_config(spec: SweepSpec, cell: Cell) -> ml_collections.ConfigDict:
  config = apply_overrides(load_config(spec.config_file), spec.common + cell.overrides)
  return apply_overrides(config, (
      ("workdir", str(cell_dir(spec.root, cell) / "train")), ("stages", ("rest_grpo",)),
      ("model.hf_path", str(spec.start_policy)), ("rest.method", cell.method),
      ("rest.seed", cell.seed), ("seed", cell.seed)))


def eval_config(spec: SweepSpec, cell: Cell, policy: Path, k: int) -> ml_collections.ConfigDict:
  config = apply_overrides(load_config(spec.config_file), spec.eval_overrides)
  return apply_overrides(config, (
      ("workdir", str(cell_dir(spec.root, cell) / f"eval_round{k}")), ("stages", ("evaluate",)),
      ("model.hf_path", str(policy)), ("evaluate.seed", cell.seed), ("seed", cell.seed)))


def num_rounds(spec: SweepSpec, cell: Cell) -> int:
  return 0 if cell.method == BASE else int(train_config(spec, cell).rest.rounds)


# -- one cell (inside its process) ---------------------------------------------------------------

def round_tokens(round_dir: Path, rows_per_step: int) -> dict:
  """Generated tokens of one round: the collection pass (samples.jsonl) and the GRPO rollouts
  (metrics.jsonl: completion tokens per step; with DAPO dynamic sampling every candidate batch
  counts, estimated as batches x rows_per_step x mean completion length of the kept groups)."""
  collection = sum(int(r["num_tokens"]) for r in io_utils.read_jsonl(round_dir / "samples.jsonl"))
  rollout, steps = 0.0, 0
  metrics = round_dir / "metrics.jsonl"
  for m in (io_utils.read_jsonl(metrics) if metrics.is_file() else []):
    steps += 1
    if "dynamic_sampling/num_batches" in m:
      rollout += m["dynamic_sampling/num_batches"] * rows_per_step * m.get("completion_len_mean", 0)
    else:
      rollout += m.get("num_tokens", 0.0) if "completion_len_mean" in m else 0.0
  facts = json.loads((round_dir / "round.json").read_text())
  return {"collection_tokens": collection, "rollout_tokens": int(round(rollout)),
          "steps": steps, "rows": facts.get("data/rows", 0),
          "collect_reward_std_share": facts.get("collect/reward_std_share", 0.0),
          "collect_test_case_average": facts.get("collect/test_case_average", 0.0)}


def run_cell(spec: SweepSpec, cell: Cell, run: Callable | None = None) -> dict:
  """Train (unless base), evaluate after every round, write result.json; returns it."""
  from restrl_jax.pipeline import run_pipeline
  run = run or run_pipeline
  out = cell_dir(spec.root, cell)
  evals, rounds = {}, []
  if cell.method == BASE:
    policies = [(0, spec.start_policy)]
  else:
    config = train_config(spec, cell)
    run(config)
    stage = Path(config.workdir) / "rest_grpo"
    rows_per_step = int(config.grpo.prompts_per_step) * int(config.grpo.group_size)
    policies = [(r + 1, stage / f"round_{r}" / "policy") for r in range(int(config.rest.rounds))]
    rounds = [round_tokens(stage / f"round_{r}", rows_per_step)
              for r in range(int(config.rest.rounds))]
  for k, policy in policies:
    summary = run(eval_config(spec, cell, Path(policy), k))["evaluate"]
    evals[str(k)] = {f: summary[f] for f in summary if isinstance(summary[f], (int, float))}
  result = {"name": cell.name, "method": cell.method, "seed": cell.seed, "evals": evals,
            "rounds": rounds, "overrides": [list(o) for o in spec.common + cell.overrides]}
  io_utils.atomic_write_json(out / RESULT_FILE, result)
  return result


# -- the sweep -----------------------------------------------------------------------------------

def _cell_json(spec: SweepSpec, cell: Cell) -> dict:
  return {"root": str(spec.root), "config_file": str(spec.config_file),
          "start_policy": str(spec.start_policy), "common": [list(o) for o in spec.common],
          "eval_overrides": [list(o) for o in spec.eval_overrides],
          "cell": {"name": cell.name, "method": cell.method, "seed": cell.seed,
                   "overrides": [list(o) for o in cell.overrides]}}


def _from_cell_json(obj: dict) -> tuple[SweepSpec, Cell]:
  pairs = lambda xs: tuple((str(p), v) for p, v in xs)
  c = obj["cell"]
  cell = Cell(c["name"], c["method"], int(c["seed"]), pairs(c["overrides"]))
  spec = SweepSpec(Path(obj["root"]), Path(obj["config_file"]), Path(obj["start_policy"]),
                   pairs(obj["common"]), pairs(obj["eval_overrides"]))
  return spec, cell


def subprocess_runner(cell_file: Path, log: Path) -> int:
  """Run one cell in a fresh Python process; returns its exit status."""
  env = dict(os.environ)
  env.setdefault("JAX_COMPILATION_CACHE_DIR", str(cell_file.parents[2] / "jax_cache"))
  env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
  with open(log, "a", encoding="utf-8") as f:
    return subprocess.call([sys.executable, "-m", "experiments.sweep", str(cell_file)],
                           stdout=f, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))


def run_sweep(spec: SweepSpec, cells: Sequence[Cell],
              runner: Callable[[Path, Path], int] = subprocess_runner,
              log: Callable[[str], None] = print) -> list[str]:
  """Run every unfinished cell (finished ones are skipped); returns the keys that failed."""
  failed = []
  for cell in cells:
    if is_finished(spec.root, cell):
      log(f"[sweep] {cell.key}: finished earlier, skipped")
      continue
    out = cell_dir(spec.root, cell)
    out.mkdir(parents=True, exist_ok=True)
    io_utils.atomic_write_json(out / CELL_FILE, _cell_json(spec, cell))
    log(f"[sweep] {cell.key}: running (log: {out / 'log.txt'})")
    status = runner(out / CELL_FILE, out / "log.txt")
    if status != 0 or not is_finished(spec.root, cell):
      failed.append(cell.key)
      log(f"[sweep] {cell.key}: FAILED (exit {status}); see {out / 'log.txt'}")
  return failed


# -- reading results -----------------------------------------------------------------------------

def read_result(path: Path) -> dict:
  """A cell's result.json, checked; a ValueError names the file and the missing/bad field."""
  path = Path(path)
  try:
    result = json.loads(path.read_text())
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f"cell result {path}: cannot be read as JSON ({e})") from e
  if not isinstance(result, dict):
    raise ValueError(f"cell result {path}: expected a JSON object")
  missing = [f for f in RESULT_FIELDS if f not in result]
  if missing:
    raise ValueError(f"cell result {path}: missing field(s) {missing}")
  for k, scores in result["evals"].items():
    bad = [f for f in EVAL_FIELDS if not isinstance(scores.get(f), (int, float))]
    if bad:
      raise ValueError(f"cell result {path}: evals[{k!r}] lacks numeric {bad}")
  for i, r in enumerate(result["rounds"]):
    if not isinstance(r.get("collection_tokens"), int) or not isinstance(
        r.get("rollout_tokens"), int):
      raise ValueError(f"cell result {path}: rounds[{i}] lacks integer collection_tokens / "
                       "rollout_tokens")
  return result


def read_results(root: Path, cells: Sequence[Cell]) -> list[dict]:
  """Results of the finished cells, in `cells` order (unfinished ones are left out)."""
  return [read_result(cell_dir(root, c) / RESULT_FILE) for c in cells if is_finished(root, c)]


def main(argv: list[str]) -> None:
  if len(argv) != 2:
    sys.exit("usage: python -m experiments.sweep CELL_JSON")
  spec, cell = _from_cell_json(json.loads(Path(argv[1]).read_text()))
  from absl import logging
  logging.set_verbosity(logging.INFO)
  logging.use_absl_handler()
  print(json.dumps(run_cell(spec, cell)["evals"]))


if __name__ == "__main__":
  main(sys.argv)
