"""Stage `train_value`: the value model on the records of `collect_values` (docs/method.md §6).

Reads `<workdir>/collect_values/values.jsonl` (the record kinds in `config.value.kinds`, one
example per distinct text with `dedupe`), trains from the newest policy's backbone with
`value.train_value` (resumable) and keeps the best model at `<stage_dir>/best`. With
`value.kind="implicit_prm"` it instead trains the implicit PRM (`value.train_implicit`: the
policy trained with the DPO loss on (correct, wrong) pairs of the collected programs, settings
`value.implicit_*`, one process on one device), kept at the same place. `config.value`
(over `config_defaults.value()`) fills `value.ValueTrainConfig`; its dtype None means
`config.model.dtype`; `shard` trains on the `config.mesh.shape` mesh, which a run of several
processes always does: every process reads the same records and runs the same steps on the mesh
over all their devices (`value.train`), process 0 writes the files.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import jax

from restrl_jax import io_utils, parallel
from restrl_jax.pipeline.policy_source import resolve_policy, weights_digest
from restrl_jax.pipeline.registry import StageContext, register_stage
from restrl_jax.pipeline.sections import dataclass_from, section
from restrl_jax.pipeline.stages.collect_values import VALUES_FILE
from restrl_jax.pipeline.stages.common import benchmark_problems
from restrl_jax.value import data as value_data
from restrl_jax.value import preferences
from restrl_jax.value.train import ValueTrainConfig, train_value
from restrl_jax.value.train_implicit import ImplicitPRMConfig, train_implicit_prm

STAGE = "train_value"
READS = ("seed", "model", "value", "mesh.shape", "mcts.collect_*")
# `value` keys in no ValueTrainConfig field: which records become examples, read here, whether
# to train on the config's mesh, and which kind of value model to train
STAGE_KEYS = ("kinds", "dedupe", "shard", "kind")
KINDS = ("mse", "implicit_prm")
IMPLICIT_PREFIX = "implicit_"
# ImplicitPRMConfig fields set from the MSE model's keys of the same name
SHARED_WITH_IMPLICIT = ("max_length", "score_batch_size", "seed", "dtype")


def implicit_config(cfg: Any, dtype: str) -> ImplicitPRMConfig:
  return dataclass_from(cfg, ImplicitPRMConfig, prefix=IMPLICIT_PREFIX, dtype=dtype,
                        **{k: cfg[k] for k in SHARED_WITH_IMPLICIT if k != "dtype"})


def _train_implicit(config: Any, cfg: Any, dtype: str, records: Path, policy: Path,
                    stage_dir: Path) -> dict[str, Any]:
  """The implicit PRM on the collected programs of the collection's problems."""
  if jax.process_count() > 1:
    raise ValueError("value.kind='implicit_prm' trains on one process (each would write the same "
                     "files): run the train_value stage with one process, or use value.kind='mse'")
  mcts = section(config, "mcts")
  problems = benchmark_problems(mcts.collect_benchmark, mcts.collect_data_path,
                                mcts.collect_split, mcts.collect_num_problems)
  groups = preferences.group_program_records(io_utils.read_jsonl(records))
  return train_implicit_prm(implicit_config(cfg, dtype), groups, {p.id: p for p in problems},
                            policy, stage_dir)


@register_stage(STAGE, reads=READS)
def run(ctx: StageContext) -> dict[str, Any]:
  """Summary of `train_value` (best held-out metrics, the model's path) with its inputs."""
  config, stage_dir = ctx.config, Path(ctx.stage_dir)
  cfg = section(config, "value")
  dtype = config.model.dtype if cfg.dtype is None else cfg.dtype
  records = Path(ctx.stage_output("collect_values")) / VALUES_FILE
  if cfg.kind not in KINDS:
    raise ValueError(f"config field value.kind={cfg.kind!r} is not one of {KINDS}")
  policy = resolve_policy(config, ctx.workdir)
  if cfg.kind == "implicit_prm":
    summary = _train_implicit(config, cfg, dtype, records, policy, stage_dir)
    return {"policy": str(policy), "policy_sha256": weights_digest(policy),
            "records": str(records), **summary}
  examples = value_data.read_examples(records, tuple(cfg.kinds))
  if cfg.dedupe:
    examples = value_data.dedupe_examples(examples)
  # several processes train one model over all their devices (each alone would write the same
  # files); one process shards only when asked
  shard = cfg.shard or jax.process_count() > 1
  mesh = parallel.make_mesh(tuple(config.mesh.shape)) if shard else None
  summary = train_value(dataclass_from(cfg, ValueTrainConfig, dtype=dtype), examples, policy,
                        stage_dir, mesh=mesh)
  return {"policy": str(policy), "policy_sha256": weights_digest(policy), "records": str(records),
          **summary}
