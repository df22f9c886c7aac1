"""Stage `evaluate_suite`: the paper's Table 1 row of the newest policy (docs/method.md §8).

Samples the newest policy (`resolve_policy`) `suite.num_samples` times on every benchmark of
`config.suite.benchmarks` (by default the six of Table 1: HumanEval, HumanEval+, MBPP, MBPP+,
APPS-500, BigCodeBench), each from its file in `suite.data_paths` (filled from the data root's
`<benchmark>/test.jsonl` when left empty), with `config.sampling` (the paper: T = 0.7) and the
paper's prompt templates (`data.prompts.template_for`), runs every program in the sandbox and
scores pass@1. APPS is its first `suite.apps_num_problems` problems (APPS-500), every other
benchmark its first `suite.num_problems` (None: all). Outputs: `<stage_dir>/<benchmark>/samples.jsonl`
and `scores.json` (a rerun skips benchmarks scored earlier), `<stage_dir>/table1.json` and
`table1.md`, and a summary row with one column per benchmark and, when all six are there, the
paper's Avg. (`evaluation.table1`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from restrl_jax import io_utils
from restrl_jax.config_checks import ConfigError
from restrl_jax.evaluation.table1 import COLUMNS, table1_markdown, table1_row
from restrl_jax.pipeline.data_paths import paired_files
from restrl_jax.pipeline.policy_source import resolve_policy, weights_digest
from restrl_jax.pipeline.registry import StageContext, register_stage
from restrl_jax.pipeline.sections import section
from restrl_jax.pipeline.stages.common import (benchmark_problems, execution_pool, sampler_for,
                                               sampling_params)
from restrl_jax.pipeline.stages.evaluate import write_samples
from restrl_jax.rollout import rollout, summarize_records

STAGE = "evaluate_suite"
READS = ("seed", "model", "sampling", "suite", "execution.isolation")
SCORES_FILE, SAMPLES_FILE = "scores.json", "samples.jsonl"


def benchmark_files(suite) -> list[tuple[str, str]]:
  """(benchmark, file) of every benchmark of the suite, in order."""
  names, paths = tuple(suite.benchmarks), tuple(suite.data_paths)
  unknown = [b for b in names if b not in COLUMNS]
  if unknown:
    raise ConfigError(f"config.suite.benchmarks names {unknown}, not benchmarks of Table 1; "
                      f"known: {list(COLUMNS)}")
  return paired_files("suite", "benchmarks", "data_paths", names, paths)


def problem_limit(suite, benchmark: str) -> int | None:
  return suite.apps_num_problems if benchmark == "apps" else suite.num_problems


@register_stage(STAGE, reads=READS)
def run(ctx: StageContext) -> dict[str, Any]:
  """Summary: the Table-1 row, problems per benchmark, the policy and its weights' digest."""
  config, stage_dir = ctx.config, Path(ctx.stage_dir)
  suite = section(config, "suite")
  files = benchmark_files(suite)
  policy = resolve_policy(config, ctx.workdir)
  sampler, pass_at_1, counts = None, {}, {}
  with execution_pool(config) as pool:
    for benchmark, path in files:
      scores_path = stage_dir / benchmark / SCORES_FILE
      if not scores_path.exists():
        problems = benchmark_problems(benchmark, path, "test", problem_limit(suite, benchmark))
        sampler = sampler or sampler_for(config, policy)
        records = rollout(sampler, pool, problems, sampling_params(config.sampling),
                          suite.num_samples, rng=suite.seed)
        write_samples(stage_dir / benchmark / SAMPLES_FILE, records, pool.isolation)
        io_utils.atomic_write_json(scores_path, summarize_records(records, (1,)))
      scores = json.loads(scores_path.read_text())
      pass_at_1[benchmark], counts[benchmark] = scores["pass@1"], scores["num_problems"]
    isolation = pool.isolation
  row = table1_row(pass_at_1)
  digest = weights_digest(policy)
  io_utils.atomic_write_json(stage_dir / "table1.json", {
      "method": suite.method, "policy": str(policy), "policy_sha256": digest, "row": row,
      "num_problems": counts, "num_samples": suite.num_samples,
      "temperature": config.sampling.temperature})
  io_utils.atomic_write_text(stage_dir / "table1.md", table1_markdown(suite.method, row))
  return {"policy": str(policy), "policy_sha256": digest, "isolation": isolation,
          **{f"{b}/num_problems": n for b, n in counts.items()},
          "rows": [{"method": suite.method, **row}]}
