"""Pipeline stages of Stage 2 (docs/method.md §1): collect_values -> train_value -> decode.

  collect_values  execution-scored MCTS on training problems (B trees at a time) ->
                  `<stage_dir>/values.jsonl` (records of `search.collect`), resumable per batch.
  train_value     the value model on those records -> `<stage_dir>/best` (orbax + json).
  decode          sampling / best-of-N / ORM-MCTS / VM-MCTS on test problems at an equal budget
                  of sampled programs; answers executed in the sandbox; one summary row per
                  method; `<stage_dir>/<method>.jsonl` per method (finished methods are skipped).
Settings: `config.mcts` and `config.value` (defaults `config_defaults.mcts()` / `value()`, any
subset may be given), the policy from `policy_source.resolve_policy`, `config.sampling`.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

import ml_collections

from restrl_jax import config_defaults, io_utils, models, parallel
from restrl_jax.data.registry import load_problems
from restrl_jax.execution import ExecutionPool
from restrl_jax.sampling.params import from_config as sampling_from_config
from restrl_jax.pipeline.policy_source import policy_tokenizer, resolve_policy
from restrl_jax.sampling import Sampler
from restrl_jax.search import collect as collect_lib
from restrl_jax.search import decode as decode_lib
from restrl_jax.value import data as value_data
from restrl_jax.value.model import load_value_model
from restrl_jax.value.train import BEST_DIR, train_value

VALUES_FILE, PROGRESS_FILE = "values.jsonl", "progress.json"
TIMING_KEYS = ("generation", "execution", "value", "bookkeeping", "total", "expansions")


def section(config: ml_collections.ConfigDict, name: str,
            defaults: Callable[[], ml_collections.ConfigDict]) -> ml_collections.ConfigDict:
  """`defaults()` updated with `config.<name>` (a partial section is fine; unknown keys fail)."""
  out = defaults()
  if name in config:
    unknown = sorted(set(config[name].keys()) - set(out.keys()))
    if unknown:
      raise ValueError(f"config.{name} has unknown field(s) {unknown}; known: {sorted(out)}")
    out.update(config[name].to_dict())
  return out


def _policy_sampler(config: ml_collections.ConfigDict, workdir: Path) -> tuple[Sampler, Path]:
  policy = resolve_policy(config, workdir)
  tokenizer = policy_tokenizer(config, policy)
  model_config, params = models.load_hf(policy, dtype=config.model.dtype)
  return Sampler(model_config, params, tokenizer, max_batch=config.sampling.batch_size), policy


def _pool(config: ml_collections.ConfigDict) -> ExecutionPool:
  return ExecutionPool(num_workers=config.execution.num_workers or None,
                       isolation=config.execution.isolation)


def _problems(benchmark: str, path: str | None, split: str, limit: int | None):
  return load_problems(benchmark, path, split=split if benchmark == "synthetic" else None,
                       limit=limit)


def _batches(n: int, size: int):
  if size < 1:
    raise ValueError(f"config.mcts.batch_trees must be >= 1, got {size}")
  return [range(s, min(s + size, n)) for s in range(0, n, size)]


def _resume_values(stage_dir: Path) -> set[str]:
  """Problem ids finished by an earlier run; records of unfinished problems are dropped."""
  progress = stage_dir / PROGRESS_FILE
  done = set(json.loads(progress.read_text())["done"]) if progress.exists() else set()
  values = stage_dir / VALUES_FILE
  if values.exists():
    kept = [r for r in io_utils.read_jsonl(values) if r["problem_id"] in done]
    io_utils.atomic_write_text(values, "".join(json.dumps(r) + "\n" for r in kept))
  return done


def collect_values_stage(ctx) -> dict[str, Any]:
  """Stage `collect_values`: value targets from execution-scored MCTS (docs/method.md §5)."""
  config, stage_dir = ctx.config, Path(ctx.stage_dir)
  cfg = section(config, "mcts", config_defaults.mcts)
  sampler, policy = _policy_sampler(config, ctx.workdir)
  problems = _problems(cfg.collect_benchmark, cfg.collect_data_path, cfg.collect_split,
                       cfg.collect_num_problems)
  search = collect_lib.collect_config(cfg.collect_iterations, cfg.collect_samples,
                                      cfg.collect_width, cfg.collect_c, cfg.eps, cfg.seed)
  done = _resume_values(stage_dir)
  timing = dict.fromkeys(TIMING_KEYS, 0.0)
  with _pool(config) as pool:
    isolation = pool.isolation
    for rows in _batches(len(problems), cfg.batch_trees):
      batch = [problems[i] for i in rows]
      if all(p.id in done for p in batch):
        continue
      sp = sampling_from_config(config.sampling)
      records, result = collect_lib.collect_values(batch, sampler, pool, sp, search,
                                                   tree_ids=list(rows))
      io_utils.append_jsonl(stage_dir / VALUES_FILE, records)
      done |= {p.id for p in batch}
      io_utils.atomic_write_text(stage_dir / PROGRESS_FILE,
                                 json.dumps({"done": sorted(done)}) + "\n")
      for k in TIMING_KEYS:
        timing[k] += result.timing[k]
  summary = collect_lib.summarize_records(io_utils.read_jsonl(stage_dir / VALUES_FILE))
  return {"policy": str(policy), "values_path": str(stage_dir / VALUES_FILE), **summary,
          "isolation": isolation,
          **{f"seconds_{k}" if k != "expansions" else k: round(v, 3) for k, v in timing.items()}}


def train_value_stage(ctx) -> dict[str, Any]:
  """Stage `train_value`: the value model on the collected records (docs/method.md §6)."""
  config, stage_dir = ctx.config, Path(ctx.stage_dir)
  cfg = section(config, "value", config_defaults.value)
  if cfg.dtype is None:
    cfg.dtype = config.model.dtype
  records = Path(ctx.stage_output("collect_values")) / VALUES_FILE
  examples = value_data.read_examples(records, tuple(cfg.kinds))
  if cfg.dedupe:
    examples = value_data.dedupe_examples(examples)
  policy = resolve_policy(config, ctx.workdir)
  mesh = parallel.make_mesh(tuple(config.mesh.shape)) if cfg.shard else None
  summary = train_value(cfg, examples, policy, stage_dir, mesh=mesh)
  return {"policy": str(policy), "records": str(records), **summary}


def _answer_rows(answers, rewards) -> list[dict]:
  return [dict(dataclasses.asdict(a), candidates=len(a.candidates), rewards=r)
          for a, r in zip(answers, rewards)]


def decode_stage(ctx) -> dict[str, Any]:
  """Stage `decode`: VM-MCTS and the baselines at an equal budget (docs/method.md §7, §7.1)."""
  config, stage_dir = ctx.config, Path(ctx.stage_dir)
  cfg = section(config, "mcts", config_defaults.mcts)
  vcfg = section(config, "value", config_defaults.value)
  sampler, policy = _policy_sampler(config, ctx.workdir)
  vm_path = Path(ctx.stage_output("train_value")) / BEST_DIR
  vm = load_value_model(vm_path, dtype=vcfg.dtype or config.model.dtype,
                        batch_size=vcfg.score_batch_size, tokenizer=sampler.tokenizer)
  problems = _problems(cfg.decode_benchmark, cfg.decode_data_path, cfg.decode_split,
                       cfg.decode_num_problems)
  budget = cfg.decode_budget or cfg.decode_iterations * cfg.decode_samples
  rows = []
  with _pool(config) as pool:
    isolation = pool.isolation
    for method in cfg.decode_methods:
      out = stage_dir / f"{method}.json"
      if not out.exists():
        answers = []
        for ids in _batches(len(problems), cfg.batch_trees):
          answers += decode_lib.decode(
              method, [problems[i] for i in ids], sampler, sampling_from_config(config.sampling),
              budget,
              vm.scorer(), cfg.decode_samples, cfg.decode_width, cfg.decode_c, cfg.eps,
              cfg.seed, tree_ids=list(ids), max_steps_factor=cfg.max_steps_factor)
        rewards = decode_lib.execute_answers(pool, problems, answers)
        io_utils.atomic_write_text(stage_dir / f"{method}.jsonl", "".join(
            json.dumps(r) + "\n" for r in _answer_rows(answers, rewards)))
        io_utils.atomic_write_json(out, decode_lib.answer_metrics(answers, rewards))
      scores = json.loads(out.read_text())
      rows.append({"method": f"{method} ({budget} samples)", "benchmark": cfg.decode_benchmark,
                   **scores})
  return {"policy": str(policy), "value_model": str(vm_path), "budget": budget,
          "isolation": isolation, "rows": rows}
