"""Registers the pipeline's stages. Each wrapper imports its stage lazily, so that listing or
validating stages stays cheap.

Stages of the full method (README, issue tracker): warmstart -> rest_grpo -> collect_values ->
train_value -> evaluate. Only stages that exist are registered; config validation names the
known ones.

`reads` names the config keys each stage's outputs depend on: the runner refuses to reuse a
stage's outputs (finished, or left by an interrupted run) made with other values of them. A key
that changes only the speed (execution.num_workers) is left out.
"""
from __future__ import annotations

from restrl_jax.pipeline.stages import StageContext, register_stage


@register_stage("warmstart", reads=("warmstart", "sampling", "execution.isolation"))
def _warmstart(ctx: StageContext) -> dict:
  from restrl_jax.warmstart.stage import warmstart_stage
  return warmstart_stage(ctx)


@register_stage("evaluate", reads=("model", "evaluate", "sampling", "execution.isolation"))
def _evaluate(ctx: StageContext) -> dict:
  from restrl_jax.pipeline.evaluate_stage import evaluate_stage
  return evaluate_stage(ctx)


@register_stage("collect_values", reads=(
    "model", "sampling", "execution.isolation", "mcts.collect_*", "mcts.eps", "mcts.seed",
    "mcts.batch_trees"))
def _collect_values(ctx: StageContext) -> dict:
  from restrl_jax.search.stages import collect_values_stage
  return collect_values_stage(ctx)


@register_stage("train_value", reads=("model", "value", "mesh.shape"))
def _train_value(ctx: StageContext) -> dict:
  from restrl_jax.search.stages import train_value_stage
  return train_value_stage(ctx)


@register_stage("decode", reads=(
    "model", "sampling", "execution.isolation", "value.dtype", "value.score_batch_size",
    "mcts.decode_*", "mcts.eps", "mcts.seed", "mcts.batch_trees", "mcts.max_steps_factor"))
def _decode(ctx: StageContext) -> dict:
  from restrl_jax.search.stages import decode_stage
  return decode_stage(ctx)


@register_stage("rest_grpo", reads=("model", "rest", "grpo", "execution.isolation"))
def _rest_grpo(ctx: StageContext) -> dict:
  from restrl_jax.rl.stage import rest_grpo_stage
  return rest_grpo_stage(ctx)
