"""Training state: step, parameters and optimizer state, as one pytree."""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from restrl_jax import parallel


class TrainState(NamedTuple):
  step: jax.Array          # [] int32
  params: Any
  opt_state: Any


def _onto_mesh(x: jax.Array, mesh: jax.sharding.Mesh) -> jax.Array:
  """Leaves not laid out over the whole mesh (scalars, counters) become replicated on it."""
  if set(x.sharding.device_set) == set(mesh.devices.flat):
    return x
  return jax.device_put(x, parallel.replicated(mesh))


def init_train_state(params: Any, optimizer: optax.GradientTransformation,
                     mesh: jax.sharding.Mesh | None = None) -> TrainState:
  """Optimizer state is created under jit so it inherits the parameters' shardings."""
  state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                     opt_state=jax.jit(optimizer.init)(params))
  if mesh is not None:
    state = jax.tree.map(lambda x: _onto_mesh(x, mesh), state)
  else:   # committed like the train step's outputs (mixed inputs compile the step twice)
    state = jax.device_put(state, jax.devices()[0])
  return state


def state_shardings(state: TrainState) -> TrainState:
  return jax.tree.map(lambda x: x.sharding, state)
