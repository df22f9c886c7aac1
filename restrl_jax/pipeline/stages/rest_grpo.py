"""Stage `rest_grpo`: ReST rounds of GRPO (or a baseline) from the newest policy.

`config.rest.method` picks the variant: "rest_grpo" (the paper), "grpo" (naive GRPO), "dapo"
(naive data + dynamic sampling) or "rest_dpo". The sections `config.rest` / `config.grpo` are
read over `config_defaults.rest()` / `grpo()`, so a config sets only what it changes (a field
the defaults do not know is an error naming it), and become the plain dataclasses of
`restrl_jax.rl` (RoundsConfig, GRPOConfig, DPOConfig), whose fields are their keys (the map
below). The training problems are those of
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
from restrl_jax.pipeline.sections import dataclass_from, section
from restrl_jax.pipeline.stages.common import execution_pool
from restrl_jax.pipeline.stages.learning_curve import plot_curve
from restrl_jax.rl.rounds import CurveEval, RoundsConfig, Setup, run_rounds
from restrl_jax.rl.trainer import DPOConfig, GRPOConfig
from restrl_jax.sampling import SamplingParams

STAGE = "rest_grpo"
READS = ("seed", "model", "rest", "grpo", "execution.isolation")


# How the two sections fill the dataclasses of restrl_jax.rl, each key in one place
# (tests/test_config_sections.py checks that every key lands in exactly one):
#   rest.<field>      -> RoundsConfig.<field>
#   rest.dpo_<field>  -> DPOConfig.<field>
#   model.dtype       -> RoundsConfig.dtype
#   grpo.<field>      -> GRPOConfig.<field>, but for:
GRPO_KEYS_OF_ROUNDS = ("epochs", "learning_rate", "schedule", "warmup_steps", "weight_decay",
                       "grad_clip")    # the optimiser of each round, which the ReST loop builds
GRPO_KEYS_OF_DPO = ("max_prompt_tokens", "remat", "grad_accum_steps")   # shared with ReST-DPO
DPO_PREFIX = "dpo_"
# fields no section sets: their defaults hold (the rounds set `dynamic_sampling` for "dapo")
ROUNDS_UNSET, GRPO_UNSET = ("collect_batch", "adam_eps"), ("dynamic_sampling",)
# `rest` keys in no dataclass: the training sets, loaded here (`training_problems`), and the
# held-out learning curve, whose problems this stage loads (`curve_eval`).
STAGE_KEYS = ("benchmark", "data_path", "split", "num_problems", "extra_benchmarks",
              "extra_data_paths", "held_out", "held_out_paths", "curve_every", "curve_split",
              "curve_num_problems", "curve_num_samples", "curve_max_new_tokens")


def rounds_config(rest: ml_collections.ConfigDict, grpo: ml_collections.ConfigDict,
                  dtype: str) -> RoundsConfig:
  return dataclass_from(rest, RoundsConfig, unset=ROUNDS_UNSET, dtype=dtype,
                        **{key: grpo[key] for key in GRPO_KEYS_OF_ROUNDS})


def grpo_config(grpo: ml_collections.ConfigDict) -> GRPOConfig:
  return dataclass_from(grpo, GRPOConfig, unset=GRPO_UNSET)


def dpo_config(rest: ml_collections.ConfigDict, grpo: ml_collections.ConfigDict) -> DPOConfig:
  return dataclass_from(rest, DPOConfig, prefix=DPO_PREFIX,
                        **{key: grpo[key] for key in GRPO_KEYS_OF_DPO})


def curve_eval(rest: ml_collections.ConfigDict) -> CurveEval | None:
  """The held-out learning-curve evaluation (`rest.curve_*`), or None when `curve_every` is 0."""
  if not rest.curve_every:
    return None
  problems = tuple(load_problems(rest.benchmark, rest.data_path, split=rest.curve_split,
                                 limit=rest.curve_num_problems))
  sampling = SamplingParams(max_new_tokens=rest.curve_max_new_tokens, temperature=0.7)
  return CurveEval(problems=problems, every=rest.curve_every,
                   num_samples=rest.curve_num_samples, sampling=sampling, seed=rest.seed)


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
