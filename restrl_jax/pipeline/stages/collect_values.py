"""Stage `collect_values`: value targets from execution-scored MCTS (docs/method.md §5).

Searches B = `config.mcts.batch_trees` trees at a time over training problems with the newest
policy and writes the records of `search.collect` to `<stage_dir>/values.jsonl`; finished
problems are listed in `<stage_dir>/progress.json`, so a rerun resumes batch by batch (records of
an unfinished batch are dropped first). Settings: `config.mcts` (over `config_defaults.mcts()`),
`config.sampling`.

With several processes each searches its batch of every round of B x processes problems
(`common.batches`) on its own devices and runs the programs in its own sandbox pool; the records
are gathered in problem order and process 0 writes them. Trees draw their randomness from their
problem's index (`tree_ids`), so the records equal those of one process.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

from restrl_jax import distributed, io_utils
from restrl_jax.pipeline.policy_source import weights_digest
from restrl_jax.pipeline.registry import StageContext, register_stage
from restrl_jax.pipeline.sections import dataclass_from, section
from restrl_jax.pipeline.stages.common import (batches, benchmark_problems, execution_pool,
                                               policy_sampler, sampling_params)
from restrl_jax.search import collect as collect_lib
from restrl_jax.search.mcts_config import MCTSConfig

STAGE = "collect_values"
READS = ("seed", "model", "sampling", "execution.isolation", "mcts.collect_*", "mcts.eps",
         "mcts.seed", "mcts.batch_trees")
# `mcts` keys in no MCTSConfig field: the training problems, loaded here, and the trees searched
# together (`batches`)
STAGE_KEYS = ("collect_benchmark", "collect_data_path", "collect_split", "collect_num_problems",
              "batch_trees")
VALUES_FILE, PROGRESS_FILE = "values.jsonl", "progress.json"
TIMING_KEYS = ("generation", "execution", "value", "bookkeeping", "total", "expansions")


def _resume_values(stage_dir: Path) -> set[str]:
  """Problem ids finished by an earlier run; records of unfinished problems are dropped (by
  process 0; every process reads the same progress file)."""
  progress = stage_dir / PROGRESS_FILE
  done = set(json.loads(progress.read_text())["done"]) if progress.exists() else set()
  values = stage_dir / VALUES_FILE
  if values.exists() and distributed.is_writer():
    kept = [r for r in io_utils.read_jsonl(values) if r["problem_id"] in done]
    io_utils.atomic_write_text(values, "".join(json.dumps(r) + "\n" for r in kept))
  return done


class Searched(NamedTuple):
  """One process's part of a round: its problems' records, their ids, its search timing."""
  records: list[dict[str, Any]]
  problem_ids: list[str]
  timing: dict[str, float]


def _search_share(problems, rows, sampler, pool, sp, search) -> Searched:
  """The collection search on this process's unfinished problems `rows` (maybe none)."""
  if not rows:
    return Searched([], [], {})
  batch = [problems[i] for i in rows]
  records, result = collect_lib.collect_values(batch, sampler, pool, sp, search,
                                               tree_ids=list(rows))
  return Searched(records, [p.id for p in batch], result.timing)


@register_stage(STAGE, reads=READS)
def run(ctx: StageContext) -> dict[str, Any]:
  """Summary: record counts, the sandbox level and where the search's time went (summed over
  processes)."""
  config, stage_dir = ctx.config, Path(ctx.stage_dir)
  cfg = section(config, "mcts")
  sampler, policy = policy_sampler(config, ctx.workdir)
  problems = benchmark_problems(cfg.collect_benchmark, cfg.collect_data_path, cfg.collect_split,
                                cfg.collect_num_problems)
  search = dataclass_from(cfg, MCTSConfig).collect_search
  sp = sampling_params(config.sampling)
  done = _resume_values(stage_dir)
  timing = dict.fromkeys(TIMING_KEYS, 0.0)
  with execution_pool(config) as pool:
    isolation = pool.isolation
    for share in batches(len(problems), cfg.batch_trees):
      rows = [i for i in share if problems[i].id not in done]
      parts = distributed.gather_objects(_search_share(problems, rows, sampler, pool, sp, search))
      ids = [i for part in parts for i in part.problem_ids]
      if not ids:
        continue
      done |= set(ids)
      if distributed.is_writer():
        io_utils.append_jsonl(stage_dir / VALUES_FILE, [r for part in parts for r in part.records])
        io_utils.atomic_write_text(stage_dir / PROGRESS_FILE,
                                   json.dumps({"done": sorted(done)}) + "\n")
      for k in TIMING_KEYS:
        timing[k] += sum(part.timing.get(k, 0.0) for part in parts)
  distributed.sync(f"{STAGE} written")
  summary = collect_lib.summarize_records(io_utils.read_jsonl(stage_dir / VALUES_FILE))
  return {"policy": str(policy), "policy_sha256": weights_digest(policy),
          "values_path": str(stage_dir / VALUES_FILE), **summary,
          "isolation": isolation,
          **{f"seconds_{k}" if k != "expansions" else k: round(v, 3) for k, v in timing.items()}}
