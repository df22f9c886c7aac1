"""The `evaluate` stage: sample the policy on a benchmark, run the programs in the sandbox and
report pass@k, test-case average and strict accuracy (a summary row per policy).

Samples and per-sample results are written to `<stage_dir>/samples.jsonl`.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import ml_collections

from restrl_jax import io_utils, models
from restrl_jax.data.registry import load_problems
from restrl_jax.execution import ExecutionPool
from restrl_jax.pipeline.policy_source import policy_tokenizer, resolve_policy
from restrl_jax.pipeline.stages import StageContext
from restrl_jax.rollout import rollout, summarize_records
from restrl_jax.sampling import Sampler
from restrl_jax.sampling.params import from_config as sampling_from_config


def _load_problems(cfg: ml_collections.ConfigDict):
  split = cfg.split if cfg.benchmark == "synthetic" else None
  return load_problems(cfg.benchmark, cfg.data_path, split=split, limit=cfg.num_problems)


def _sample_row(record, isolation: str) -> dict:
  row = dataclasses.asdict(record)
  row.pop("prompt_tokens"), row.pop("tokens")
  row["logprob_sum"] = float(row.pop("logprobs").sum())
  row["num_tokens"] = len(record.tokens)
  return row | {"isolation": isolation}


def evaluate_stage(ctx: StageContext) -> dict:
  config, cfg = ctx.config, ctx.config.evaluate
  policy = resolve_policy(config, ctx.workdir)
  tokenizer = policy_tokenizer(config, policy)
  problems = _load_problems(cfg)
  model_config, params = models.load_hf(policy, dtype=config.model.dtype)
  sampler = Sampler(model_config, params, tokenizer, max_batch=config.sampling.batch_size)
  with ExecutionPool(num_workers=config.execution.num_workers or None,
                     isolation=config.execution.isolation) as pool:
    records = rollout(sampler, pool, problems, sampling_from_config(config.sampling),
                      cfg.num_samples, rng=cfg.seed)
    isolation = pool.isolation
  io_utils.atomic_write_text(Path(ctx.stage_dir) / "samples.jsonl", "".join(
      json.dumps(_sample_row(r, isolation), default=str) + "\n" for r in records))
  scores = summarize_records(records, tuple(cfg.ks))
  io_utils.atomic_write_json(Path(ctx.stage_dir) / "scores.json", scores)
  row = {"method": cfg.method, "benchmark": cfg.benchmark,
         **{k: scores[k] for k in ("strict_accuracy", "test_case_average") if k in scores},
         **{k: v for k, v in scores.items() if k.startswith("pass@")}}
  return {"policy": str(policy), "isolation": isolation, "rows": [row], **scores}
