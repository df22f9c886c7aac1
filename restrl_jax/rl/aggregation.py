"""Loss aggregation: per-token losses [B, T] and a 0/1 mask -> one scalar (docs/method.md §4.3).

Each mode is a ratio numerator / denominator (`aggregate_parts`), so micro-batches combine exactly.

Registry `LOSS_AGGREGATION`, names as verl's `loss_agg_mode` (aliases: TRL `loss_type`):

  "token-mean"               Σ_bt l·m / Σ_bt m. The paper's (TRL 0.18 `bnpo`; DAPO; TRL "dapo").
  "seq-mean-token-mean"      mean over sequences of (Σ_t l·m / Σ_t m). TRL "grpo", tunix default.
  "seq-mean-token-sum"       mean over sequences of Σ_t l·m.
  "seq-mean-token-sum-norm"  Σ_bt l·m / (B · L) with a constant L (Dr.GRPO; TRL "dr_grpo"
                             divides by B · max_completion_length). verl divides by L only, i.e.
                             sums over sequences; we keep the "seq-mean" in the name literal.

"Sequences" are the rows with at least one unmasked token, so fully masked padding rows (e.g.
the invalid slots of dynamic sampling) change none of the modes. L defaults to T, the padded
completion length, which is constant when completions are padded to a fixed maximum.
"""
from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

from restrl_jax.rl.registry import Registry

AggFn = Callable[[jnp.ndarray, jnp.ndarray, "int | None"], tuple[jnp.ndarray, jnp.ndarray]]
LOSS_AGGREGATION: Registry[AggFn] = Registry("loss_aggregation")


def _num_rows(mask: jnp.ndarray) -> jnp.ndarray:
  return jnp.sum(mask.sum(axis=-1) > 0).astype(jnp.float32)


@LOSS_AGGREGATION.register("token-mean", "bnpo", "dapo")
def token_mean(loss: jnp.ndarray, mask: jnp.ndarray, norm_length: int | None = None):
  return jnp.sum(loss * mask), mask.sum()


@LOSS_AGGREGATION.register("seq-mean-token-mean", "grpo")
def seq_mean_token_mean(loss: jnp.ndarray, mask: jnp.ndarray, norm_length: int | None = None):
  per_seq = jnp.sum(loss * mask, axis=-1) / jnp.maximum(mask.sum(axis=-1), 1.0)   # [B]
  return per_seq.sum(), _num_rows(mask)


@LOSS_AGGREGATION.register("seq-mean-token-sum")
def seq_mean_token_sum(loss: jnp.ndarray, mask: jnp.ndarray, norm_length: int | None = None):
  return jnp.sum(loss * mask), _num_rows(mask)


@LOSS_AGGREGATION.register("seq-mean-token-sum-norm", "dr_grpo")
def seq_mean_token_sum_norm(loss: jnp.ndarray, mask: jnp.ndarray,
                            norm_length: int | None = None):
  length = loss.shape[-1] if norm_length is None else norm_length
  if length < 1:
    raise ValueError(f"norm_length={length} must be >= 1")
  return jnp.sum(loss * mask), _num_rows(mask) * length


def aggregate_parts(loss: jnp.ndarray, mask: jnp.ndarray, mode: str = "token-mean",
                    norm_length: int | None = None) -> tuple[jnp.ndarray, jnp.ndarray]:
  """(numerator, denominator) of the named mode for `loss`, `mask` [B, T].

  Summing both over micro-batches and dividing once gives exactly the full-batch value, which is
  what gradient accumulation needs (tunix keeps the two apart for the same reason).
  """
  if loss.shape != mask.shape or loss.ndim != 2:
    raise ValueError(f"loss {loss.shape} and mask {mask.shape} must both be [B, T]")
  return LOSS_AGGREGATION.get(mode)(loss, mask.astype(loss.dtype), norm_length)


def aggregate_loss(loss: jnp.ndarray, mask: jnp.ndarray, mode: str = "token-mean",
                   norm_length: int | None = None) -> jnp.ndarray:
  """Scalar loss from per-token `loss` [B, T] and `mask` [B, T] by the named mode (0 if empty)."""
  numerator, denominator = aggregate_parts(loss, mask, mode, norm_length)
  return numerator / jnp.maximum(denominator, 1.0)
