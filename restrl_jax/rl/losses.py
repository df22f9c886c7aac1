"""The GRPO policy loss (docs/method.md §4.3), composed from registered pieces.

Per token, with ρ = exp(clip(logp - old_logp, ±max_log_ratio)) (tunix clamps the log-ratio at 20):

    pg = max(-A ρ, -A clip(ρ, 1 - ε_low, 1 + ε_high))       PPO clip; ε_high > ε_low is DAPO's
                                                            clip-higher (0.28), TRL epsilon_high
    pg = min(pg, -A c)  where A < 0                         optional dual-clip (verl clip_ratio_c,
                                                            tunix epsilon_c), c > 1
    l  = pg + β_KL · KL(logp, ref_logp)                     when the KL is in the loss

then aggregated over the batch (aggregation.py). The paper: ε = 0.2, β_KL = 0.04, k3, "token-mean",
μ = 1 so old_logp = stop_gradient(logp), ρ ≡ 1 and ∇L = -A ∇logπ per token (+ the KL term).
Metrics use TRL's names where TRL has one (clip_ratio/low_mean, .../high_mean, .../region_mean).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from restrl_jax.rl.aggregation import LOSS_AGGREGATION, aggregate_loss, aggregate_parts
from restrl_jax.rl.kl import KL_ESTIMATOR, MAX_LOG_RATIO, kl_estimate
from restrl_jax.rl.registry import Registry


class PolicyLossOut(NamedTuple):
  loss: jnp.ndarray          # [B, T] per-token policy-gradient loss
  ratio: jnp.ndarray         # [B, T] importance ratio ρ
  clipped_low: jnp.ndarray   # [B, T] bool: ρ < 1 - ε_low with A < 0 (gradient cut)
  clipped_high: jnp.ndarray  # [B, T] bool: ρ > 1 + ε_high with A > 0 (gradient cut)
  dual_clipped: jnp.ndarray  # [B, T] bool: ρ > c with A < 0 (gradient cut)


@dataclasses.dataclass(frozen=True)
class GRPOLossConfig:
  policy_loss: str = "ppo-clip"
  epsilon_low: float = 0.2
  epsilon_high: float | None = None      # None: = epsilon_low (symmetric clip)
  dual_clip_c: float | None = None       # None: no dual-clip
  max_log_ratio: float = MAX_LOG_RATIO
  beta_kl: float = 0.04
  kl_estimator: str = "k3"
  kl_clamp: float | None = None
  kl_in_loss: bool = True                # False: KL only logged (put it in the reward instead)
  loss_aggregation: str = "token-mean"
  norm_length: int | None = None         # L of "seq-mean-token-sum-norm"; None: T

  def __post_init__(self):
    POLICY_LOSS.check(self.policy_loss, "policy_loss")
    KL_ESTIMATOR.check(self.kl_estimator, "kl_estimator")
    LOSS_AGGREGATION.check(self.loss_aggregation, "loss_aggregation")
    if not 0.0 <= self.epsilon_low < 1.0 or self.eps_high < 0.0:
      raise ValueError(f"epsilon_low={self.epsilon_low} must be in [0, 1) and "
                       f"epsilon_high={self.epsilon_high} >= 0")
    if self.dual_clip_c is not None and self.dual_clip_c <= 1.0:
      raise ValueError(f"dual_clip_c={self.dual_clip_c} must be > 1")
    if self.beta_kl < 0.0:
      raise ValueError(f"beta_kl={self.beta_kl} must be >= 0")

  @property
  def eps_high(self) -> float:
    return self.epsilon_low if self.epsilon_high is None else self.epsilon_high


PolicyLossFn = Callable[[jnp.ndarray, jnp.ndarray, jnp.ndarray, GRPOLossConfig], PolicyLossOut]
POLICY_LOSS: Registry[PolicyLossFn] = Registry("policy_loss")


@POLICY_LOSS.register("ppo-clip", "grpo", "ppo")
def ppo_clip_loss(logp: jnp.ndarray, old_logp: jnp.ndarray, adv: jnp.ndarray,
                  cfg: GRPOLossConfig) -> PolicyLossOut:
  """Clipped surrogate per token; `adv` broadcasts against logp [B, T]."""
  log_ratio = jnp.clip(logp - old_logp, -cfg.max_log_ratio, cfg.max_log_ratio)
  ratio = jnp.exp(log_ratio)                                               # [B, T]
  lo, hi = 1.0 - cfg.epsilon_low, 1.0 + cfg.eps_high
  loss = jnp.maximum(-adv * ratio, -adv * jnp.clip(ratio, lo, hi))
  dual = jnp.zeros(ratio.shape, bool)
  if cfg.dual_clip_c is not None:
    dual = (adv < 0) & (ratio > cfg.dual_clip_c)
    loss = jnp.where(adv < 0, jnp.minimum(loss, -adv * cfg.dual_clip_c), loss)
  return PolicyLossOut(loss, ratio, (ratio < lo) & (adv < 0), (ratio > hi) & (adv > 0), dual)


def _masked_mean(x: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
  return jnp.sum(x * mask) / jnp.maximum(mask.sum(), 1.0)


def _masked_min(x: jnp.ndarray, mask: jnp.ndarray, fill: float) -> jnp.ndarray:
  return jnp.where(mask.sum() > 0, jnp.min(jnp.where(mask > 0, x, jnp.inf)), fill)


def _masked_max(x: jnp.ndarray, mask: jnp.ndarray, fill: float) -> jnp.ndarray:
  return jnp.where(mask.sum() > 0, jnp.max(jnp.where(mask > 0, x, -jnp.inf)), fill)


def _advantage_stats(adv: jnp.ndarray, mask: jnp.ndarray) -> dict[str, jnp.ndarray]:
  """Stats over the sequences with at least one token; adv [B] or [B, T]."""
  seq_adv = adv if adv.ndim == 1 else adv[:, 0]
  rows = (mask.sum(axis=-1) > 0).astype(jnp.float32)                      # [B]
  mean = _masked_mean(seq_adv, rows)
  return {"advantage_mean": mean,
          "advantage_std": jnp.sqrt(_masked_mean(jnp.square(seq_adv - mean), rows)),
          "advantage_min": _masked_min(seq_adv, rows, 0.0),
          "advantage_max": _masked_max(seq_adv, rows, 0.0)}


def _policy_metrics(out: PolicyLossOut, mask: jnp.ndarray) -> dict[str, jnp.ndarray]:
  low, high = out.clipped_low.astype(jnp.float32), out.clipped_high.astype(jnp.float32)
  return {"clip_ratio/low_mean": _masked_mean(low, mask),
          "clip_ratio/high_mean": _masked_mean(high, mask),
          "clip_ratio/region_mean": _masked_mean(jnp.maximum(low, high), mask),
          "clip_ratio/dual_mean": _masked_mean(out.dual_clipped.astype(jnp.float32), mask),
          "ratio_mean": _masked_mean(out.ratio, mask),
          "ratio_min": _masked_min(out.ratio, mask, 1.0),
          "ratio_max": _masked_max(out.ratio, mask, 1.0)}


def grpo_loss(logp: jnp.ndarray, old_logp: jnp.ndarray | None, ref_logp: jnp.ndarray | None,
              advantages: jnp.ndarray, mask: jnp.ndarray, cfg: GRPOLossConfig,
              entropy: jnp.ndarray | None = None) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
  """Scalar loss and metrics. logp/old_logp/ref_logp/mask/entropy [B, T]; advantages [B] or [B, T].

  old_logp None means μ = 1 (old = stop_gradient(logp)); ref_logp None means no KL term.
  old_logp, ref_logp and advantages are treated as constants.
  """
  if logp.ndim != 2 or mask.shape != logp.shape:
    raise ValueError(f"logp {logp.shape} and mask {mask.shape} must both be [B, T]")
  if advantages.shape not in ((logp.shape[0],), logp.shape):
    raise ValueError(f"advantages {advantages.shape} must be [B] or [B, T] for logp {logp.shape}")
  logp = logp.astype(jnp.float32)
  mask = mask.astype(jnp.float32)
  old = jax.lax.stop_gradient(logp if old_logp is None else old_logp.astype(jnp.float32))
  adv = jax.lax.stop_gradient(advantages.astype(jnp.float32))
  out = POLICY_LOSS.get(cfg.policy_loss)(logp, old, adv if adv.ndim == 2 else adv[:, None], cfg)
  per_token = out.loss                                                     # [B, T]
  metrics = {"loss/policy": aggregate_loss(out.loss, mask, cfg.loss_aggregation, cfg.norm_length),
             "num_tokens": mask.sum(), **_policy_metrics(out, mask), **_advantage_stats(adv, mask)}
  if ref_logp is not None:
    kl = kl_estimate(logp, jax.lax.stop_gradient(ref_logp), cfg.kl_estimator, cfg.kl_clamp)
    metrics["kl"] = _masked_mean(kl, mask)
    if cfg.kl_in_loss and cfg.beta_kl > 0.0:
      per_token = per_token + cfg.beta_kl * kl
  if entropy is not None:
    metrics["entropy"] = _masked_mean(entropy.astype(jnp.float32), mask)
  numerator, denominator = aggregate_parts(per_token, mask, cfg.loss_aggregation, cfg.norm_length)
  loss = numerator / jnp.maximum(denominator, 1.0)
  metrics.update(loss=loss, loss_denominator=denominator)   # weight for gradient accumulation
  return loss, metrics
