"""fp32 master weights for low-precision (bf16 / fp16) parameters, as an optax wrapper.

At the paper's learning rate (1e-7) an AdamW step is far below bf16's spacing (~1e-4 near a
weight of 0.02), so a bf16-only update rounds back to the old weight and training stands still
(found by `memory_plan`). `fp32_master(inner)` keeps an fp32 copy of the params in the optimizer
state, runs `inner` on that copy (so Adam's moments are fp32 too), and returns the update
`round(master') - params`: `optax.apply_updates` then lands the params on the rounded master.
The update is fp32: the difference of two bf16 numbers is exact in fp32 (unless their exponents
differ by more than 16), `apply_updates` adds it in fp32 and rounds back to bf16, so the params
equal `master.astype(bf16)` after every step. (A bf16 difference is not exact when a tiny
weight changes by a large fraction, which a 7B model has somewhere at every step.) The fp32
update is elementwise work that XLA fuses into the parameter write.

The forward/backward runs on the low-precision params as before; nothing in the train step
changes (`training.make_train_step` passes `params` to `optimizer.update`, which this needs).
fp32 leaves pass through unchanged (their update is the inner one, bit for bit), and
`with_master_weights` wraps only when some leaf is low precision, so fp32 runs are identical.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from restrl_jax.models.matmul import is_low_precision_dtype


class MasterState(NamedTuple):
  master: Any   # fp32 copy of the params (same tree, same shardings)
  inner: Any    # the wrapped optimizer's state, built on the fp32 copy


def _is_low(x) -> bool:
  return jnp.issubdtype(x.dtype, jnp.floating) and np.dtype(x.dtype).itemsize < 4


def is_low_precision(params: Any) -> bool:
  """True when any floating leaf of `params` is narrower than fp32."""
  return any(_is_low(x) for x in jax.tree.leaves(params))


def _follow(master: jax.Array, param: jax.Array, inner_update: jax.Array) -> jax.Array:
  """The update that takes `param` to `master` rounded to its dtype (fp32 leaves: unchanged)."""
  if not _is_low(param):
    return inner_update
  return master.astype(param.dtype).astype(jnp.float32) - param.astype(jnp.float32)


def fp32_master(inner: optax.GradientTransformation) -> optax.GradientTransformation:
  """Run `inner` on an fp32 copy of the params; the params follow the copy, rounded."""
  def init(params):
    master = jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params)
    return MasterState(master, inner.init(master))

  def update(grads, state, params=None):
    if params is None:
      raise ValueError("fp32_master.update needs params (the low-precision weights)")
    grads = jax.tree.map(lambda g: g.astype(jnp.float32), grads)
    updates, inner_state = inner.update(grads, state.inner, state.master)
    master = optax.apply_updates(state.master, updates)
    out = jax.tree.map(_follow, master, params, updates)
    return out, MasterState(master, inner_state)

  return optax.GradientTransformation(init, update)


def for_dtype(optimizer: optax.GradientTransformation,
              dtype: str | np.dtype) -> optax.GradientTransformation:
  """`optimizer` wrapped in `fp32_master` when params of `dtype` are low precision."""
  return fp32_master(optimizer) if is_low_precision_dtype(dtype) else optimizer


def with_master_weights(optimizer: optax.GradientTransformation,
                        params: Any) -> optax.GradientTransformation:
  """`optimizer` wrapped in `fp32_master` when some leaf of `params` is low precision."""
  return fp32_master(optimizer) if is_low_precision(params) else optimizer


def inner_state(opt_state: Any) -> Any:
  """The wrapped optimizer's state (`opt_state` itself when there is no master copy)."""
  return opt_state.inner if isinstance(opt_state, MasterState) else opt_state


def replace_inner(opt_state: Any, fn: Callable[[Any], Any]) -> Any:
  """`opt_state` with the wrapped optimizer's state replaced by `fn(inner state)`."""
  if isinstance(opt_state, MasterState):
    return opt_state._replace(inner=fn(opt_state.inner))
  return fn(opt_state)
