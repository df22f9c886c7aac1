"""What several stage adapters build from the config the same way: the host mesh, the policy's
sampler and its sampling settings, the sandbox pool, a benchmark's problems, this process's
batches of trees."""
from __future__ import annotations

from pathlib import Path

import ml_collections
from jax.sharding import Mesh

from restrl_jax import distributed, models, parallel
from restrl_jax.data.registry import load_problems
from restrl_jax.execution import ExecutionPool
from restrl_jax.pipeline.policy_source import policy_tokenizer, resolve_policy
from restrl_jax.sampling import Sampler, SamplingParams


def host_mesh(config: ml_collections.ConfigDict) -> Mesh | None:
  """The mesh over this process's own devices that `config.mesh.host_shape` names (None: one
  device): where the stages that sample or search this process's problems hold their models."""
  shape = config.mesh.get("host_shape", None)
  return parallel.host_mesh(tuple(shape) if shape is not None else None)


def load_on_host(config: ml_collections.ConfigDict, policy: Path, dtype: str
                 ) -> tuple[models.ModelConfig, dict, Mesh | None]:
  """(model config, params, mesh): the HF folder `policy` in `dtype`, each weight read straight
  into its shards on the host mesh (`host_mesh`), else onto this process's first device."""
  mesh = host_mesh(config)
  shardings = None if mesh is None else (lambda c: models.param_shardings(c, mesh))
  model_config, params = models.load_hf(policy, dtype=dtype, shardings=shardings)
  return model_config, params, mesh


def sampler_for(config: ml_collections.ConfigDict, policy: Path) -> Sampler:
  """A sampler over the HF folder `policy` (`config.model.dtype`, on the host mesh) with its
  checked tokenizer."""
  tokenizer = policy_tokenizer(config, policy)
  model_config, params, mesh = load_on_host(config, policy, config.model.dtype)
  return Sampler(model_config, params, tokenizer, mesh=mesh, max_batch=config.sampling.batch_size)


def policy_sampler(config: ml_collections.ConfigDict, workdir: Path) -> tuple[Sampler, Path]:
  """A sampler over the newest policy (`resolve_policy`), and that policy's folder."""
  policy = resolve_policy(config, workdir)
  return sampler_for(config, policy), policy


def sampling_params(sampling: ml_collections.ConfigDict) -> SamplingParams:
  """SamplingParams from the `sampling` section (max_new_tokens, temperature, top_p, top_k); the
  one mapping every stage that samples with `config.sampling` uses."""
  return SamplingParams(max_new_tokens=sampling.max_new_tokens, temperature=sampling.temperature,
                        top_p=sampling.top_p, top_k=sampling.top_k)


def execution_pool(config: ml_collections.ConfigDict) -> ExecutionPool:
  """The sandbox pool of `config.execution` (num_workers 0: one per core)."""
  return ExecutionPool(num_workers=config.execution.num_workers or None,
                       isolation=config.execution.isolation)


def benchmark_problems(benchmark: str, path: str | None, split: str, limit: int | None):
  """Problems of a benchmark; `split` applies to the synthetic suite only."""
  return load_problems(benchmark, path, split=split if benchmark == "synthetic" else None,
                       limit=limit)


def batches(n: int, size: int) -> list[range]:
  """The index ranges of up to `size` (config.mcts.batch_trees) of `n` items this process
  searches, one per round (`distributed.round_shares`; one process: consecutive ranges covering
  all n). A range may be empty on some processes in the last round."""
  if size < 1:
    raise ValueError(f"config.mcts.batch_trees must be >= 1, got {size}")
  return distributed.round_shares(n, size)
