"""Registers the pipeline's stages. Each wrapper imports its stage lazily, so that listing or
validating stages stays cheap.

Stages of the full method (README, issue tracker): warmstart -> rest_grpo -> collect_values ->
train_value -> evaluate. Only stages that exist are registered; config validation names the
known ones.
"""
from __future__ import annotations

from restrl_jax.pipeline.stages import StageContext, register_stage


@register_stage("warmstart")
def _warmstart(ctx: StageContext) -> dict:
  from restrl_jax.warmstart.stage import warmstart_stage
  return warmstart_stage(ctx)


@register_stage("evaluate")
def _evaluate(ctx: StageContext) -> dict:
  from restrl_jax.pipeline.evaluate_stage import evaluate_stage
  return evaluate_stage(ctx)


@register_stage("collect_values")
def _collect_values(ctx: StageContext) -> dict:
  from restrl_jax.search.stages import collect_values_stage
  return collect_values_stage(ctx)


@register_stage("train_value")
def _train_value(ctx: StageContext) -> dict:
  from restrl_jax.search.stages import train_value_stage
  return train_value_stage(ctx)


@register_stage("decode")
def _decode(ctx: StageContext) -> dict:
  from restrl_jax.search.stages import decode_stage
  return decode_stage(ctx)


@register_stage("rest_grpo")
def _rest_grpo(ctx: StageContext) -> dict:
  from restrl_jax.rl.stage import rest_grpo_stage
  return rest_grpo_stage(ctx)
