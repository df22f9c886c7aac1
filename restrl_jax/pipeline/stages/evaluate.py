"""Stage `evaluate`: sample the policy on a benchmark, run the programs in the sandbox and
report pass@k, test-case average and strict accuracy (a summary row per policy).

Samples and per-sample results are written to `<stage_dir>/samples.jsonl`, the scores to
`<stage_dir>/scores.json`. With `evaluate.compare_base` (and a trained policy newer than the
base) the base policy (the warm start's, else `model.hf_path`) is sampled too, on the same
problems with the same sampling seed (`<stage_dir>/base_samples.jsonl`), and a row
"trained - base" gives the paired differences of strict accuracy and test-case average with their
standard errors over problems (`<stage_dir>/gain.json`). Settings: `config.evaluate`,
`config.sampling`.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from restrl_jax import config_defaults, io_utils
from restrl_jax.evaluation import metrics
from restrl_jax.pipeline.policy_source import base_policy, resolve_policy, weights_digest
from restrl_jax.pipeline.registry import StageContext, register_stage
from restrl_jax.pipeline.stages.common import (benchmark_problems, execution_pool, sampler_for,
                                               sampling_params)
from restrl_jax.rollout import rollout, summarize_records

STAGE = "evaluate"
READS = ("seed", "model", "evaluate", "sampling", "execution.isolation")


def _sample_row(record, isolation: str) -> dict:
  row = dataclasses.asdict(record)
  row.pop("prompt_tokens"), row.pop("tokens")
  row["logprob_sum"] = float(row.pop("logprobs").sum())
  row["num_tokens"] = len(record.tokens)
  return row | {"isolation": isolation}


def _score_policy(config, policy: Path, problems, pool) -> list:
  return rollout(sampler_for(config, policy), pool, problems,
                 sampling_params(config.sampling), config.evaluate.num_samples,
                 rng=config_defaults.fill_seeds(config, "evaluate", config.evaluate).seed)


def write_samples(path: Path, records, isolation: str) -> None:
  io_utils.atomic_write_text(path, "".join(
      json.dumps(_sample_row(r, isolation), default=str) + "\n" for r in records))


def _row(method: str, cfg, scores: dict) -> dict:
  return {"method": method, "benchmark": cfg.benchmark,
          **{k: scores[k] for k in ("strict_accuracy", "test_case_average") if k in scores},
          **{k: v for k, v in scores.items() if k.startswith("pass@")}}


def _rewards(records) -> dict[str, list[float]]:
  out: dict[str, list[float]] = {}
  for r in records:
    out.setdefault(r.problem_id, []).append(float(r.reward))
  return out


def paired_gain(trained, base) -> dict:
  """Paired differences trained - base of strict accuracy and test-case average."""
  t, b = _rewards(trained), _rewards(base)
  strict = metrics.paired_difference(metrics.per_problem_strict(t),
                                     metrics.per_problem_strict(b))
  mean = lambda rs: {p: float(sum(v) / len(v)) for p, v in rs.items()}
  tca = metrics.paired_difference(mean(t), mean(b))
  return {"gain_strict": strict["mean"], "gain_strict_se": strict["se"],
          "gain_test_case_average": tca["mean"], "gain_test_case_average_se": tca["se"],
          "gain_num_problems": strict["num_problems"]}


def _gain_row(gain: dict) -> dict:
  pm = lambda k: f"{gain[k]:+.3f} ± {gain[k + '_se']:.3f}"
  return {"method": "trained - base (paired, ± 1 SE over problems)",
          "strict_accuracy": pm("gain_strict"), "test_case_average": pm("gain_test_case_average")}


@register_stage(STAGE, reads=READS)
def run(ctx: StageContext) -> dict:
  """Summary: the scores, the policy, the sandbox level and the rows (with the base's and the
  paired gain under `compare_base`)."""
  config, cfg = ctx.config, ctx.config.evaluate
  policy = resolve_policy(config, ctx.workdir)
  problems = benchmark_problems(cfg.benchmark, cfg.data_path, cfg.split, cfg.num_problems)
  base = base_policy(config, Path(ctx.workdir)) if cfg.compare_base else None
  with execution_pool(config) as pool:
    records = _score_policy(config, policy, problems, pool)
    compared = base is not None and base.resolve() != policy.resolve()
    base_records = _score_policy(config, base, problems, pool) if compared else None
    isolation = pool.isolation
  stage_dir = Path(ctx.stage_dir)
  write_samples(stage_dir / "samples.jsonl", records, isolation)
  scores = summarize_records(records, tuple(cfg.ks))
  io_utils.atomic_write_json(stage_dir / "scores.json", scores)
  rows, extra = [_row(cfg.method, cfg, scores)], {}
  if base_records is not None:
    write_samples(stage_dir / "base_samples.jsonl", base_records, isolation)
    base_scores = summarize_records(base_records, tuple(cfg.ks))
    extra = {"base_policy": str(base), **paired_gain(records, base_records),
             **{f"base_{k}": base_scores[k] for k in ("strict_accuracy", "test_case_average")}}
    io_utils.atomic_write_json(stage_dir / "gain.json", extra)
    rows = [_row("base", cfg, base_scores), *rows, _gain_row(extra)]
  return {"policy": str(policy), "policy_sha256": weights_digest(policy), "isolation": isolation,
          "rows": rows, **scores, **extra}
