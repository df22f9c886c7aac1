"""Per-token KL(π_θ || π_ref) estimators and the KL-in-reward penalty (docs/method.md §4.3).

Registry `KL_ESTIMATOR` (Schulman's k1/k2/k3; names as in verl's `kl_penalty` / tunix's
`kl_loss_mode`), each `(logp [B, T], ref_logp [B, T]) -> [B, T]` with d = ref_logp - logp:

  "k1"  (verl "kl", tunix "kl")               logp - ref_logp = -d
  "k2"  (verl "mse", tunix "mse_kl")          0.5 d²
  "k3"  (verl "low_var_kl", TRL, the paper)   exp(d) - d - 1  >= 0, = 0 iff logp == ref_logp

d is clamped to ±`max_log_ratio` (20) before the exponential of k3 so a far-off reference cannot
overflow; `kl_estimate` optionally clamps the estimate itself to ±`clamp` (verl clamps k3 to ±10).

The KL enters either the loss (β_KL · KL per token; TRL/tunix "use_kl_loss", the paper) or the
reward (verl `use_kl_in_reward`): `kl_reward_penalty` turns per-token KL into one penalty per
sequence that the caller subtracts from the outcome reward before computing advantages.
"""
from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

from restrl_jax.rl.registry import Registry

MAX_LOG_RATIO = 20.0

KLFn = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]
KL_ESTIMATOR: Registry[KLFn] = Registry("kl_estimator")


@KL_ESTIMATOR.register("k1", "kl")
def k1(logp: jnp.ndarray, ref_logp: jnp.ndarray) -> jnp.ndarray:
  return logp - ref_logp


@KL_ESTIMATOR.register("k2", "mse", "mse_kl")
def k2(logp: jnp.ndarray, ref_logp: jnp.ndarray) -> jnp.ndarray:
  return 0.5 * jnp.square(logp - ref_logp)


@KL_ESTIMATOR.register("k3", "low_var_kl")
def k3(logp: jnp.ndarray, ref_logp: jnp.ndarray) -> jnp.ndarray:
  d = jnp.clip(ref_logp - logp, -MAX_LOG_RATIO, MAX_LOG_RATIO)
  return jnp.exp(d) - d - 1.0


def kl_estimate(logp: jnp.ndarray, ref_logp: jnp.ndarray, estimator: str = "k3",
                clamp: float | None = None) -> jnp.ndarray:
  """Per-token KL [B, T] by the named estimator, optionally clamped to [-clamp, clamp]."""
  if logp.shape != ref_logp.shape:
    raise ValueError(f"logp {logp.shape} and ref_logp {ref_logp.shape} differ in shape")
  kl = KL_ESTIMATOR.get(estimator)(logp.astype(jnp.float32), ref_logp.astype(jnp.float32))
  return kl if clamp is None else jnp.clip(kl, -clamp, clamp)


def kl_reward_penalty(kl: jnp.ndarray, mask: jnp.ndarray, beta: float,
                      reduce: str = "sum") -> jnp.ndarray:
  """β · (Σ_t or mean_t of the masked per-token KL) per sequence: [B, T] -> [B]."""
  mask = mask.astype(jnp.float32)
  total = jnp.sum(kl * mask, axis=-1)
  if reduce == "sum":
    return beta * total
  if reduce == "mean":
    return beta * total / jnp.maximum(mask.sum(axis=-1), 1.0)
  raise ValueError(f"reduce={reduce!r}; choose 'sum' or 'mean'")


def apply_kl_to_rewards(rewards: jnp.ndarray, kl: jnp.ndarray, mask: jnp.ndarray, beta: float,
                        reduce: str = "sum") -> jnp.ndarray:
  """Outcome rewards [B] minus the sequence KL penalty (use with β_KL = 0 in the loss)."""
  return rewards - kl_reward_penalty(kl, mask, beta, reduce)
