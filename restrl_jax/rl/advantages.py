"""Group-relative advantages for GRPO (docs/method.md §4.3) and their reward metrics.

Rewards arrive flat, `[num_groups * G]`, the G completions of a prompt contiguous; G is static
(a Python int), so everything jits. Estimators (registry `ADVANTAGE`):

  "grpo"            A = (r - mean_g) / (std + eps); the paper/TRL 0.18: std unbiased (ddof=1)
                    within the group, eps = 1e-4 (tunix uses 1e-6).
  "drgrpo"          A = r - mean_g, never divided by a std (Dr.GRPO; TRL scale_rewards="none").
  "rloo"            A = r - mean of the other G-1 rewards of the group (leave-one-out; verl/tunix);
                    scaled like "grpo" unless scale="none".

`scale` matches TRL's `scale_rewards`: "group" (per-group std), "batch" (one std over the whole
batch, still group-centred) or "none". A zero-variance group gets advantage exactly 0.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax.numpy as jnp

from restrl_jax.rl.registry import Registry

SCALES = ("group", "batch", "none")


@dataclasses.dataclass(frozen=True)
class AdvantageConfig:
  estimator: str = "grpo"
  scale: str = "group"       # "group" | "batch" | "none"
  ddof: int = 1              # 1: unbiased std (TRL); 0: population std
  eps: float = 1e-4

  def __post_init__(self):
    ADVANTAGE.check(self.estimator, "estimator")
    if self.scale not in SCALES:
      raise ValueError(f"scale={self.scale!r}; choose from {SCALES}")
    if self.ddof not in (0, 1):
      raise ValueError(f"ddof={self.ddof} must be 0 or 1")


AdvantageFn = Callable[[jnp.ndarray, int, "AdvantageConfig | None"], jnp.ndarray]
ADVANTAGE: Registry[AdvantageFn] = Registry("advantage")


def grouped(rewards: jnp.ndarray, group_size: int) -> jnp.ndarray:
  """[num_groups * G] -> [num_groups, G], with a clear error on a bad shape."""
  rewards = jnp.asarray(rewards, jnp.float32)
  if rewards.ndim != 1 or group_size < 1 or rewards.shape[0] % group_size:
    raise ValueError(f"rewards of shape {rewards.shape} are not a flat [num_groups * G] array "
                     f"with G = group_size = {group_size}")
  return rewards.reshape(-1, group_size)


def _std(x: jnp.ndarray, ddof: int, axis=None) -> jnp.ndarray:
  n = x.size if axis is None else x.shape[axis]
  if n - ddof < 1:
    raise ValueError(f"a std with ddof={ddof} needs more than {ddof} value(s) per group, got {n}")
  return jnp.std(x, axis=axis, ddof=ddof, keepdims=axis is not None)


def _scaled(centred: jnp.ndarray, groups: jnp.ndarray, cfg: AdvantageConfig) -> jnp.ndarray:
  """centred / (std + eps) per cfg.scale, exactly 0 in all-equal groups; [num_groups, G]."""
  flat = groups.max(axis=-1, keepdims=True) == groups.min(axis=-1, keepdims=True)   # [N, 1]
  if cfg.scale != "none":
    std = _std(groups, cfg.ddof, axis=-1) if cfg.scale == "group" else _std(groups, cfg.ddof)
    centred = centred / (std + cfg.eps)
  return jnp.where(flat, 0.0, centred)


@ADVANTAGE.register("grpo")
def grpo_advantages(rewards: jnp.ndarray, group_size: int,
                    cfg: AdvantageConfig | None = None) -> jnp.ndarray:
  groups = grouped(rewards, group_size)                       # [N, G]
  centred = groups - groups.mean(axis=-1, keepdims=True)
  return _scaled(centred, groups, cfg or AdvantageConfig()).reshape(-1)


@ADVANTAGE.register("drgrpo", "dr_grpo")
def drgrpo_advantages(rewards: jnp.ndarray, group_size: int,
                      cfg: AdvantageConfig | None = None) -> jnp.ndarray:
  return grpo_advantages(rewards, group_size,
                         dataclasses.replace(cfg or AdvantageConfig(), scale="none"))


@ADVANTAGE.register("rloo")
def rloo_advantages(rewards: jnp.ndarray, group_size: int,
                    cfg: AdvantageConfig | None = None) -> jnp.ndarray:
  if group_size < 2:
    raise ValueError(f"rloo needs group_size >= 2, got {group_size}")
  groups = grouped(rewards, group_size)                       # [N, G]
  others = (groups.sum(axis=-1, keepdims=True) - groups) / (group_size - 1)
  return _scaled(groups - others, groups, cfg or AdvantageConfig()).reshape(-1)


def compute_advantages(rewards: jnp.ndarray, group_size: int,
                       cfg: AdvantageConfig | None = None) -> jnp.ndarray:
  """Advantages [num_groups * G] by the estimator named in `cfg`."""
  cfg = cfg or AdvantageConfig()
  return ADVANTAGE.get(cfg.estimator)(rewards, group_size, cfg)


def zero_std_groups(rewards: jnp.ndarray, group_size: int, atol: float = 1e-8) -> jnp.ndarray:
  """[num_groups] bool: groups whose rewards are all equal (std <= atol), i.e. zero advantage."""
  return jnp.std(grouped(rewards, group_size), axis=-1) <= atol


def reward_metrics(rewards: jnp.ndarray, advantages: jnp.ndarray, group_size: int,
                   atol: float = 1e-8) -> dict[str, jnp.ndarray]:
  """Scalars for logging, incl. TRL's `frac_reward_zero_std` (fraction of zero-variance groups)."""
  groups = grouped(rewards, group_size)
  return {"reward_mean": groups.mean(), "reward_std": jnp.std(groups),
          "reward_group_std_mean": jnp.std(groups, axis=-1).mean(),
          "frac_reward_zero_std": zero_std_groups(rewards, group_size, atol).mean(),
          "advantage_mean": jnp.mean(advantages), "advantage_std": jnp.std(advantages),
          "advantage_min": jnp.min(advantages), "advantage_max": jnp.max(advantages)}
