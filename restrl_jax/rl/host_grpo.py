"""GRPO steps across hosts: each process samples, executes and scores only its own prompts.

    trainer = host_grpo.make_trainer(model_config, tokenizer, cfg, optimizer, pool, mesh,
                                     state_shardings)      # a GRPOTrainer on a HostRowFeed
    step = host_grpo.HostGRPO(trainer)
    state, metrics, rollouts = step(state, ref_params, next_requests, key)

Every process draws the same global prompts (`next_requests(B)`, same data and seed), keeps the
groups its devices hold on the batch axis (`host_shard.host_rows`, whole groups of G rows: group
advantages never cross a host), samples them through the global sampling program (its rows in,
its rows out), runs them in its own sandbox pool, and feeds its rows of the packed batch into the
jitted update, whose arrays `jax.make_array_from_process_local_data` assembles. The update then
sees exactly the batch one process would build. Afterwards the rollouts are gathered to every
process, so the metrics (and the samples process 0 writes) cover the whole batch; timings are
the slowest host's. With one process this is the plain `GRPOTrainer` step.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from restrl_jax import training
from restrl_jax.rl.advantages import compute_advantages
from restrl_jax.sampling.row_feed import HostRowFeed
from restrl_jax.rl.trainer import GRPOTrainer, Request, Rollouts, rollout_metrics
from restrl_jax.sampling import Sampler

ROW_FIELDS = ("prompts", "completions", "logps", "texts", "programs", "bonus", "closed",
              "finish", "exec_reward")
TIMINGS = ("sample_s", "ref_s", "exec_wait_s", "exec_s", "train_s", "step_s")

_advantages = jax.jit(compute_advantages, static_argnums=(1, 2))


def make_trainer(model_config: Any, tokenizer: Any, cfg: Any, optimizer: Any, pool: Any,
                 mesh: jax.sharding.Mesh, state_shardings: Any = None) -> GRPOTrainer:
  """A `GRPOTrainer` whose sampler and batches go through this host's `HostRowFeed`."""
  sampler = Sampler(model_config, None, tokenizer, mesh=mesh, feed=HostRowFeed(mesh))
  return GRPOTrainer(model_config, tokenizer, cfg, optimizer, pool, mesh, state_shardings,
                     sampler=sampler)


class HostGRPO:
  """One GRPO step per call on a trainer built by `make_trainer` (see the module docstring)."""

  def __init__(self, trainer: GRPOTrainer):
    cfg = trainer.cfg
    if trainer.mesh is None or not isinstance(trainer.feed, HostRowFeed):
      raise ValueError("HostGRPO needs a GRPOTrainer on a mesh whose sampler has a HostRowFeed "
                       "(build it with host_grpo.make_trainer)")
    if cfg.dynamic_sampling:
      raise ValueError("GRPOConfig.dynamic_sampling (DAPO) is not supported across hosts: each "
                       "host would stop drawing candidate batches at a different time")
    if not cfg.loss.kl_in_loss and cfg.loss.beta_kl > 0.0:
      raise ValueError("GRPOConfig.loss.kl_in_loss=False (KL in the reward) is not supported "
                       "across hosts; keep the KL in the loss")
    self.trainer, self.feed = trainer, trainer.feed
    self.total = cfg.prompts_per_step * cfg.group_size
    for p in range(self.feed.num_processes):      # every host holds whole groups, or say why
      self.feed.rows(self.total, cfg.group_size, process_index=p)

  def local_requests(self, requests: Sequence[Request]) -> list[Request]:
    """This host's prompts (groups) of the step's global prompts."""
    cfg = self.trainer.cfg
    if len(requests) != cfg.prompts_per_step:
      raise ValueError(f"HostGRPO: got {len(requests)} prompts for prompts_per_step="
                       f"{cfg.prompts_per_step}")
    return [requests[i] for i in self.feed.rows(self.total, cfg.group_size).groups(
        cfg.group_size)]

  def __call__(self, state: training.TrainState, ref_params: Any,
               next_requests: Callable[[int], list[Request]], key: jax.Array
               ) -> tuple[training.TrainState, dict, Rollouts]:
    b = self.trainer.cfg.prompts_per_step
    requests = list(next_requests(b))
    mine = self.local_requests(requests)

    def local(n: int) -> list[Request]:
      if n != b:
        raise ValueError(f"HostGRPO: the trainer asked for {n} prompts, expected {b}")
      return mine

    state, metrics, ro = self.trainer.step(state, ref_params, local, key)
    full = self.gather_rollouts(requests, ro)
    return state, self.global_metrics(metrics, full), full

  def gather_rollouts(self, requests: Sequence[Request], local: Rollouts) -> Rollouts:
    """Every host's rollouts as one global `Rollouts` (rows in global order), on every process."""
    rows = self.feed.gather_rows(list(zip(*(getattr(local, f) for f in ROW_FIELDS))), self.total)
    cols = dict(zip(ROW_FIELDS, zip(*rows)))
    arrays = {f: np.asarray(cols[f], dtype) for f, dtype in (
        ("bonus", np.float64), ("closed", bool), ("finish", np.int32),
        ("exec_reward", np.float64))}
    return Rollouts(requests=tuple(requests), **{f: tuple(cols[f]) for f in ROW_FIELDS
                                                 if f not in arrays}, **arrays)

  def global_metrics(self, metrics: dict, full: Rollouts) -> dict:
    """The step's metrics with rollout statistics over the whole batch and the slowest host's
    timings (the update's own metrics are global already)."""
    g = self.trainer.cfg.group_size
    adv = _advantages(jnp.asarray(full.reward, jnp.float32), g, self.trainer.cfg.advantage)
    out = dict(metrics, **rollout_metrics(full, np.ones(self.total, bool), g, np.asarray(adv)))
    names = [k for k in TIMINGS if k in metrics]
    slowest = self.feed.agree_max(np.asarray([metrics[k] for k in names], np.float64))
    out.update({k: float(v) for k, v in zip(names, slowest)})
    tokens = sum(len(c) for c in full.completions)
    out["tokens_per_s"] = tokens / max(out.get("step_s", 0.0), 1e-9)
    return out
