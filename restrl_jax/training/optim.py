"""Optimizer from config: AdamW with global-norm clipping and a linear or constant schedule."""
from __future__ import annotations

import optax


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


def make_optimizer(learning_rate: float, total_steps: int, warmup_steps: int = 0,
                   schedule: str = "linear", weight_decay: float = 0.0, grad_clip: float = 1.0,
                   b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
                   ) -> optax.GradientTransformation:
  """AdamW as in the paper's DeepSpeed config (beta 0.9/0.999, eps 1e-8, clip 1.0, wd 0)."""
  lr = make_schedule(learning_rate, total_steps, warmup_steps, schedule)
  parts = [optax.clip_by_global_norm(grad_clip)] if grad_clip and grad_clip > 0 else []
  parts.append(optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay))
  return optax.chain(*parts)
