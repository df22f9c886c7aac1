"""The optimizer factory: AdamW with global-norm clipping, a linear or constant schedule (or the
learning rate as optimizer state), and an fp32 master copy for low-precision parameters.

`make_optimizer` is the one place an optimizer is built (warm start, value model, ReST rounds).
With `inject_learning_rate=True` the learning rate is a leaf of the optimizer state
(`optax.inject_hyperparams`): `learning_rate_of` reads it and `with_learning_rate` sets each
step's value, so runs of different lengths (the ReST rounds) share one compiled train step.
"""
from __future__ import annotations

import jax
import numpy as np
import optax

from restrl_jax import distributed
from restrl_jax.training import master_weights
from restrl_jax.training.state import TrainState


def make_schedule(learning_rate: float, total_steps: int, warmup_steps: int = 0,
                  kind: str = "linear") -> optax.Schedule:
  """'linear': warm-up then linear decay to 0 at total_steps (HF default); 'constant': flat."""
  if kind == "constant":
    decay = optax.constant_schedule(learning_rate)
  elif kind == "linear":
    decay = optax.linear_schedule(learning_rate, 0.0, max(1, total_steps - warmup_steps))
  else:
    raise ValueError(f"unknown schedule {kind!r}; choose 'linear' or 'constant'")
  if warmup_steps <= 0:
    return decay
  warmup = optax.linear_schedule(0.0, learning_rate, warmup_steps)
  return optax.join_schedules([warmup, decay], [warmup_steps])


def make_optimizer(learning_rate: float, total_steps: int | None = None, warmup_steps: int = 0,
                   schedule: str = "linear", weight_decay: float = 0.0, grad_clip: float = 1.0,
                   b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                   param_dtype: str | np.dtype | None = None,
                   inject_learning_rate: bool = False) -> optax.GradientTransformation:
  """AdamW as in the paper's DeepSpeed config (beta 0.9/0.999, eps 1e-8, clip 1.0, wd 0).

  `schedule` over `total_steps` (`make_schedule`), or with `inject_learning_rate` the learning
  rate as optimizer state starting at `learning_rate` (the caller sets each step's value with
  `with_learning_rate`; `total_steps`, `warmup_steps` and `schedule` then do not apply).
  `param_dtype` low precision (bf16 / fp16): the optimizer updates an fp32 master copy of the
  params (`master_weights.fp32_master`); fp32 or None: the plain optimizer.
  """
  if inject_learning_rate:
    adamw = optax.inject_hyperparams(optax.adamw, static_args=("b1", "b2", "eps", "weight_decay"))(
        learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
  else:
    if total_steps is None and schedule != "constant":
      raise ValueError(f"schedule {schedule!r} needs total_steps")
    lr = make_schedule(learning_rate, total_steps or 0, warmup_steps, schedule)
    adamw = optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
  clip = [optax.clip_by_global_norm(grad_clip)] if grad_clip and grad_clip > 0 else []
  optimizer = optax.chain(*clip, adamw)
  return optimizer if param_dtype is None else master_weights.for_dtype(optimizer, param_dtype)


def _injected(opt_state):
  """The `inject_hyperparams` state of a `make_optimizer(inject_learning_rate=True)` state."""
  inject = master_weights.inner_state(opt_state)[-1]
  if not hasattr(inject, "hyperparams"):
    raise ValueError("the optimizer has no injected learning rate; build it with "
                     "make_optimizer(..., inject_learning_rate=True)")
  return inject


def learning_rate_of(opt_state) -> float:
  """The injected learning rate of an optimizer state (this process's copy)."""
  lr = _injected(opt_state).hyperparams["learning_rate"]
  return float(distributed.replicated_value(lr))


def with_learning_rate(state: TrainState, lr: float) -> TrainState:
  """`state` with the injected learning rate set to `lr` (same dtype and placement)."""
  def set_lr(chain_state):
    inject = _injected(chain_state)
    old = inject.hyperparams["learning_rate"]
    new = _put_like(np.asarray(lr, old.dtype), old.sharding)
    return (*chain_state[:-1], inject._replace(hyperparams={**inject.hyperparams,
                                                             "learning_rate": new}))
  return state._replace(opt_state=master_weights.replace_inner(state.opt_state, set_lr))


def _put_like(value: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
  """`value` (the same on every process) placed with `sharding`."""
  if jax.process_count() == 1:
    return jax.device_put(value, sharding)
  return distributed.place(value, sharding)
