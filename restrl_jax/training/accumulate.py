"""Gradient accumulation over micro-batches with the full batch's loss normalisation.

A loss written as numerator / denominator (every GRPO aggregation mode, the DPO mean over valid
pairs) reports `metrics["loss_denominator"]`. Mean-of-micro-batch-losses is NOT the full-batch
loss (token-mean over the batch != mean of micro-batch token-means), so each micro-batch's
gradient is scaled back to its numerator (x max(den_k, 1)), the numerators' gradients are summed
by a `lax.scan`, and the sum is divided once by max(Σ_k den_k, 1): exactly the full-batch
gradient, up to float summation order.

Micro-batches take whole rows, strided: micro-batch j holds rows j, j + k, j + 2k, ... With the
batch laid out contiguously over the mesh's batch shards, every micro-batch then stays spread
over all devices (no resharding), provided rows / k is a multiple of the shard count.

Metrics of the step: `loss` = Σ numerators / max(Σ den, 1) (exact); counts (`num_tokens`,
`loss_denominator`, `tokens`) summed; `*_min` / `*_max` the min / max over non-empty
micro-batches; everything else the micro-batch values averaged with weights `num_tokens` (or
`loss_denominator` without it), which is exact for token means.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from restrl_jax import parallel
from restrl_jax.training.state import TrainState
from restrl_jax.training.step import LossFn, make_train_step

DENOMINATOR = "loss_denominator"
SUMMED = ("num_tokens", "tokens", DENOMINATOR)


def split_rows(x: jax.Array, steps: int) -> jax.Array:
  """[N, ...] -> [steps, N // steps, ...]; micro-batch j = rows j, j + steps, j + 2 steps, ..."""
  n = x.shape[0]
  if n % steps:
    raise ValueError(f"gradient accumulation: batch of {n} rows does not split into "
                     f"grad_accum_steps={steps} micro-batches of whole rows")
  return jnp.swapaxes(x.reshape((n // steps, steps) + x.shape[1:]), 0, 1)


def _numerator_loss(loss_fn: LossFn, params: Any, batch: dict) -> tuple[jax.Array, dict]:
  loss, metrics = loss_fn(params, batch)
  if DENOMINATOR not in metrics:
    raise ValueError(f"gradient accumulation needs the loss's metrics[{DENOMINATOR!r}] (the "
                     f"normaliser of the full-batch loss); got metrics {sorted(metrics)}")
  weight = jax.lax.stop_gradient(jnp.maximum(metrics[DENOMINATOR], 1.0))
  return loss * weight, metrics


def accumulated_grads(loss_fn: LossFn, params: Any, batch: dict,
                      steps: int) -> tuple[Any, dict]:
  """(full-batch gradient in fp32, combined metrics) from `steps` micro-batches of `batch`."""
  micro = jax.tree.map(lambda x: split_rows(x, steps), batch)
  grad_fn = jax.value_and_grad(lambda p, b: _numerator_loss(loss_fn, p, b), has_aux=True)
  zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)

  def body(acc, mb):
    mb = {k: parallel.constrain(v, ("batch",) + (None,) * (v.ndim - 1)) for k, v in mb.items()}
    (numerator, metrics), grads = grad_fn(params, mb)
    acc = jax.tree.map(lambda a, g: a + g.astype(jnp.float32), acc, grads)
    return acc, dict(metrics, _numerator=numerator)

  summed, per_micro = jax.lax.scan(body, zeros, micro)
  total = jnp.maximum(per_micro[DENOMINATOR].sum(), 1.0)
  grads = jax.tree.map(lambda g: g / total, summed)
  return grads, combine_metrics(per_micro)


def combine_metrics(per_micro: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """Step metrics from per-micro-batch metrics [k] (see the module docstring)."""
  den = per_micro[DENOMINATOR]                                              # [k]
  weights = per_micro.get("num_tokens", den).astype(jnp.float32)            # [k]
  seen = weights > 0
  out = {}
  for name, values in per_micro.items():
    if name == "_numerator":
      continue
    if name in SUMMED:
      out[name] = values.sum()
    elif name.endswith("_min"):
      out[name] = jnp.where(seen.any(), jnp.min(jnp.where(seen, values, jnp.inf)), values[0])
    elif name.endswith("_max"):
      out[name] = jnp.where(seen.any(), jnp.max(jnp.where(seen, values, -jnp.inf)), values[0])
    else:
      out[name] = jnp.sum(values * weights) / jnp.maximum(weights.sum(), 1e-30)
  out["loss"] = per_micro["_numerator"].sum() / jnp.maximum(den.sum(), 1.0)
  return out


def _accum_update(loss_fn: LossFn, optimizer: optax.GradientTransformation, steps: int,
                  state: TrainState, batch: dict) -> tuple[TrainState, dict]:
  grads, metrics = accumulated_grads(loss_fn, state.params, batch, steps)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = dict(metrics, grad_norm=optax.tree.norm(grads))
  return TrainState(state.step + 1, params, opt_state), metrics


def make_accum_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation,
                          steps: int = 1, mesh: jax.sharding.Mesh | None = None,
                          state_shardings: Any = None
                          ) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
  """`training.make_train_step` with the gradient accumulated over `steps` micro-batches.

  `steps == 1` returns `make_train_step` itself (bit-identical to no accumulation).
  """
  if steps < 1:
    raise ValueError(f"grad_accum_steps must be >= 1, got {steps}")
  if steps == 1:
    return make_train_step(loss_fn, optimizer, mesh, state_shardings)

  def step(state, batch):
    return _accum_update(loss_fn, optimizer, steps, state, batch)

  if mesh is None:
    return jax.jit(step, donate_argnums=0)

  def sharded_step(state, batch):
    with parallel.sharding_context(mesh):
      return step(state, batch)

  return jax.jit(sharded_step, donate_argnums=0,
                 in_shardings=(state_shardings, parallel.logical_to_sharding(("batch",), None,
                                                                            mesh)),
                 out_shardings=(state_shardings, parallel.replicated(mesh)))
