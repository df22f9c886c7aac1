"""A jitted optimizer step for any loss `loss_fn(params, batch) -> (loss, metrics)`.

The state is donated (updated in place); with a mesh, state and batch shardings are explicit
in/out shardings of the jitted step, so the same code runs on one device and on a pod.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import optax

from restrl_jax import parallel
from restrl_jax.training.state import TrainState

LossFn = Callable[[Any, dict], tuple[jax.Array, dict]]


def _update(loss_fn: LossFn, optimizer: optax.GradientTransformation, state: TrainState,
            batch: dict) -> tuple[TrainState, dict]:
  (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = dict(metrics, grad_norm=optax.tree.norm(grads))
  return TrainState(state.step + 1, params, opt_state), metrics


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation,
                    mesh: jax.sharding.Mesh | None = None,
                    state_shardings: Any = None) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
  """Returns step(state, batch) -> (state, metrics); `state_shardings` as a TrainState of shardings."""
  def step(state, batch):
    return _update(loss_fn, optimizer, state, batch)

  if mesh is None:
    return jax.jit(step, donate_argnums=0)

  batch_sharding = parallel.logical_to_sharding(("batch",), None, mesh)

  def sharded_step(state, batch):
    with parallel.sharding_context(mesh):
      return step(state, batch)

  jitted = jax.jit(sharded_step, donate_argnums=0,
                   in_shardings=(state_shardings, batch_sharding),
                   out_shardings=(state_shardings, parallel.replicated(mesh)))
  return jitted
