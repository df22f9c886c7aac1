"""Stage `rest_grpo`: ReST rounds of GRPO (or a baseline) from the newest policy.

`config.rest.method` picks the variant: "rest_grpo" (the paper), "grpo" (naive GRPO), "dapo"
(naive data + dynamic sampling) or "rest_dpo". The sections `config.rest` / `config.grpo` are
read over `config_defaults.rest()` / `grpo()`, so a config sets only what it changes (a field
the defaults do not know is an error naming it) and become the plain dataclasses of
`restrl_jax.rl` (RoundsConfig, GRPOConfig, DPOConfig). The training problems are those of
`rest.benchmark` and of each `rest.extra_benchmarks` (files in `rest.extra_data_paths`, filled
from the data root), less those whose task text is that of a problem of the `rest.held_out`
evaluation sets (`data.holdout`; counts in the summary). The start policy is the newest policy an
earlier stage wrote, else the base `config.model.hf_path` (`resolve_policy`), recorded in
`<stage_dir>/start_policy.json` so a resumed run starts from the same one; the summary records
the sha256 of the start and trained weights. Outputs:
`<stage_dir>/round_<r>/...` (see rl/rounds.py) and the trained policy at `<stage_dir>/policy`;
with `rest.curve_every` the held-out learning curve at `<workdir>/plots/learning_curve.png`
(learning_curve.py).

Also runnable on its own (used by the kill-and-resume test):
  python -m restrl_jax.pipeline.stages.rest_grpo CONFIG_JSON WORKDIR
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jax
import ml_collections

from restrl_jax import distributed, parallel
from restrl_jax.config_checks import ConfigError
from restrl_jax.pipeline.data_paths import paired_files
from restrl_jax.data.holdout import drop_held_out
from restrl_jax.data.registry import load_problems
from restrl_jax.pipeline.policy_source import policy_tokenizer, resolve_policy, weights_digest
from restrl_jax.pipeline.registry import StageContext, register_stage
from restrl_jax.pipeline.sections import section
from restrl_jax.pipeline.stages.common import execution_pool
from restrl_jax.pipeline.stages.learning_curve import plot_curve
from restrl_jax.rl import rest_data
from restrl_jax.rl.advantages import AdvantageConfig
from restrl_jax.rl.losses import GRPOLossConfig
from restrl_jax.rl.rounds import CurveEval, RoundsConfig, Setup, run_rounds
from restrl_jax.rl.trainer import DPOConfig, GRPOConfig
from restrl_jax.sampling import SamplingParams

STAGE = "rest_grpo"
READS = ("seed", "model", "rest", "grpo", "execution.isolation")


def _beta(value: Any) -> float | int:
  """rest.beta: a float ratio in (0, 1] or an int count (an integral float >= 1 counts)."""
  if isinstance(value, float) and value > 1.0 and value.is_integer():
    return int(value)
  return value


def rounds_config(rest: ml_collections.ConfigDict, grpo: ml_collections.ConfigDict,
                  dtype: str) -> RoundsConfig:
  dpo = rest.method == "rest_dpo"
  data = rest_data.RestDataConfig(sigma0=rest.sigma0, r0=rest.r0, alpha=rest.alpha,
                                  beta=_beta(rest.beta), mode=rest.mode, dedup=rest.dedup,
                                  state_end=rest.state_end)
  collect = SamplingParams(max_new_tokens=rest.max_new_tokens, temperature=rest.temperature,
                           top_p=rest.top_p, top_k=rest.top_k, seed=rest.seed)
  return RoundsConfig(
      method=rest.method, rounds=rest.rounds, num_samples=rest.num_samples, collect=collect,
      data=data, shuffle_seed=rest.shuffle_seed, seed=rest.seed, epochs=grpo.epochs,
      max_steps_per_round=rest.max_steps_per_round,
      learning_rate=rest.dpo_learning_rate if dpo else grpo.learning_rate,
      schedule=grpo.schedule, warmup_steps=grpo.warmup_steps, weight_decay=grpo.weight_decay,
      grad_clip=grpo.grad_clip, checkpoint_every=rest.checkpoint_every,
      keep_checkpoints=rest.keep_checkpoints, tensorboard=rest.tensorboard, dtype=dtype)


def grpo_config(grpo: ml_collections.ConfigDict) -> GRPOConfig:
  loss = GRPOLossConfig(
      policy_loss=grpo.policy_loss, epsilon_low=grpo.epsilon, epsilon_high=grpo.epsilon_high,
      dual_clip_c=grpo.dual_clip_c, beta_kl=grpo.beta_kl, kl_estimator=grpo.kl_estimator,
      kl_clamp=grpo.kl_clamp, kl_in_loss=grpo.kl_in_loss,
      loss_aggregation=grpo.loss_aggregation, norm_length=grpo.max_new_tokens)
  advantage = AdvantageConfig(estimator=grpo.advantage, scale=grpo.advantage_scale,
                              ddof=grpo.advantage_ddof, eps=grpo.advantage_eps)
  return GRPOConfig(
      group_size=grpo.group_size, prompts_per_step=grpo.prompts_per_step,
      max_prompt_tokens=grpo.max_prompt_tokens, max_new_tokens=grpo.max_new_tokens,
      temperature=grpo.temperature, top_p=grpo.top_p, top_k=grpo.top_k,
      stop_at_fence=grpo.stop_at_fence, num_iterations=grpo.num_iterations,
      old_logprobs=grpo.old_logprobs, loss=loss, advantage=advantage,
      kl_reward_reduce=grpo.kl_reward_reduce, symbol_reward=grpo.symbol_reward,
      trailing_penalty=grpo.trailing_penalty,
      max_candidate_batches=grpo.dynamic_max_candidate_batches,
      dynamic_min_std=grpo.dynamic_min_std, remat=grpo.remat,
      grad_accum_steps=grpo.grad_accum_steps, overlap_chunks=grpo.overlap_chunks)


def dpo_config(rest: ml_collections.ConfigDict, grpo: ml_collections.ConfigDict) -> DPOConfig:
  return DPOConfig(beta=rest.dpo_beta, label_smoothing=rest.dpo_label_smoothing,
                   pairs_per_step=rest.dpo_pairs_per_step,
                   max_prompt_tokens=grpo.max_prompt_tokens,
                   max_completion_tokens=rest.dpo_max_completion_tokens, remat=grpo.remat,
                   grad_accum_steps=grpo.grad_accum_steps)


def curve_eval(rest: ml_collections.ConfigDict) -> CurveEval | None:
  """The held-out learning-curve evaluation (`rest.curve_*`), or None when `curve_every` is 0."""
  if not rest.curve_every:
    return None
  problems = tuple(load_problems(rest.benchmark, rest.data_path, split=rest.curve_split,
                                 limit=rest.curve_num_problems))
  sampling = SamplingParams(max_new_tokens=rest.curve_max_new_tokens, temperature=0.7)
  return CurveEval(problems=problems, every=rest.curve_every,
                   num_samples=rest.curve_num_samples, sampling=sampling)


def start_policy(ctx: StageContext) -> Path:
  """The policy round 0 starts from, fixed at the stage's first run."""
  record = Path(ctx.stage_dir) / "start_policy.json"
  if record.is_file():
    return Path(json.loads(record.read_text())["path"])
  policy = resolve_policy(ctx.config, Path(ctx.workdir))
  distributed.write_json(record, {"path": str(policy)})   # process 0 only
  return policy


def _mesh(config: ml_collections.ConfigDict):
  if jax.device_count() == 1:
    return None
  return parallel.make_mesh(tuple(config.mesh.shape))


def _summary(result: dict) -> dict:
  out = {k: result[k] for k in ("method", "rounds", "steps", "policy_path")}
  for facts in result["per_round"]:
    r = facts["round"]
    out[f"round{r}/rows"] = facts.get("data/rows", 0)
    out[f"round{r}/collect_test_case_average"] = facts.get("collect/test_case_average", 0.0)
    out[f"round{r}/collect_reward_std_share"] = facts.get("collect/reward_std_share", 0.0)
  return out


def _paired(rest: ml_collections.ConfigDict, names_key: str, paths_key: str
            ) -> list[tuple[str, str]]:
  return paired_files("rest", names_key, paths_key, rest[names_key], rest[paths_key])


def training_problems(rest: ml_collections.ConfigDict) -> tuple[tuple, dict[str, Any]]:
  """(problems, facts): the problems of `rest.benchmark` and of each `rest.extra_benchmarks`
  (each limited to `rest.num_problems`), less those whose task text is that of a problem of the
  `rest.held_out` evaluation sets (`data.holdout`)."""
  sets = [(rest.benchmark, rest.data_path)] + _paired(rest, "extra_benchmarks",
                                                      "extra_data_paths")
  problems, facts = [], {}
  for benchmark, path in sets:
    split = rest.split if benchmark in ("synthetic", "apps") else None
    loaded = load_problems(benchmark, path, split=split, limit=rest.num_problems)
    facts[f"train_problems/{benchmark}"] = len(loaded)
    problems += loaded
  held = [p for benchmark, path in _paired(rest, "held_out", "held_out_paths")
          for p in load_problems(benchmark, path)]
  problems, dropped = drop_held_out(problems, held)
  if not problems:
    raise ConfigError(f"no training problems left: all {len(dropped)} are problems of the "
                      f"held-out evaluation sets {list(rest.held_out)} (config.rest.held_out)")
  return tuple(problems), {**facts, "held_out": len(dropped), "train_problems": len(problems)}


@register_stage(STAGE, reads=READS)
def run(ctx: StageContext) -> dict:
  """Summary facts (method, steps, per-round data sizes, training sets, the weights' digests)."""
  config = ctx.config
  rest, grpo = section(config, "rest"), section(config, "grpo")
  problems, data_facts = training_problems(rest)   # bad data stops before any output
  curve = curve_eval(rest)
  policy = start_policy(ctx)
  tokenizer = policy_tokenizer(config, policy)
  with execution_pool(config) as pool:
    setup = Setup(problems=problems, tokenizer=tokenizer, pool=pool,
                  cfg=rounds_config(rest, grpo, config.model.dtype), grpo=grpo_config(grpo),
                  dpo=dpo_config(rest, grpo), mesh=_mesh(config), curve=curve)
    result = run_rounds(setup, policy, Path(ctx.stage_dir))
  curve_facts = plot_curve(Path(ctx.stage_dir), Path(ctx.workdir), rest.method)
  return {**_summary(result), **data_facts, **curve_facts, "isolation": pool.isolation,
          "start_policy": str(policy), "start_policy_sha256": weights_digest(policy),
          "policy_sha256": weights_digest(Path(result["policy_path"]))}


def main(argv: list[str]) -> None:
  if len(argv) != 3:
    sys.exit("usage: python -m restrl_jax.pipeline.stages.rest_grpo CONFIG_JSON WORKDIR")
  config = ml_collections.ConfigDict(json.loads(Path(argv[1]).read_text()))
  workdir = Path(argv[2])
  stage_dir = workdir / STAGE
  stage_dir.mkdir(parents=True, exist_ok=True)
  summary = run(StageContext(config=config, workdir=workdir, stage_dir=stage_dir))
  print(json.dumps(summary))


if __name__ == "__main__":
  main(sys.argv)
