"""ReST-DPO baseline (docs/method.md §4.4): preference pairs from the N samples, and the DPO loss.

Pairs (host side): for every problem whose rewards are not all equal, chosen = the highest-reward
sample and rejected = the lowest-reward one, each with the closing marker ("```" for APPS/BCB)
re-appended. Ties break as in the original (a stable sort by reward): rejected = the FIRST
minimum, chosen = the LAST maximum.

Loss (TRL DPOTrainer "sigmoid", β = 0.1): with z = (π_c - ref_c) - (π_r - ref_r) over summed
sequence log-probs, loss = -(1 - ls)·log σ(βz) - ls·log σ(-βz) (ls = label smoothing, 0 default),
averaged over the valid pairs. Metrics use TRL's names (rewards/chosen, rewards/accuracies, ...).
"""
from __future__ import annotations

import dataclasses
from typing import Iterable

import jax
import jax.numpy as jnp

from restrl_jax.rl.rest_data import ProblemSamples

CLOSING_MARKER = "```"


@dataclasses.dataclass(frozen=True)
class DPOPair:
  problem_id: str
  state: str               # the prompt's initial state (the pair continues from it)
  chosen: str
  rejected: str
  chosen_reward: float
  rejected_reward: float


def pair_indices(rewards: tuple[float, ...]) -> tuple[int, int] | None:
  """(chosen, rejected) sample indices, or None when no pair exists (fewer than 2 distinct)."""
  if not rewards:
    return None
  order = sorted(range(len(rewards)), key=lambda i: rewards[i])     # stable
  rejected, chosen = order[0], order[-1]
  return (chosen, rejected) if rewards[rejected] < rewards[chosen] else None


def dpo_pairs(problems: Iterable[ProblemSamples],
              closing_marker: str = CLOSING_MARKER) -> list[DPOPair]:
  """One pair per problem with min reward < max reward, in input order."""
  pairs = []
  for p in problems:
    idx = pair_indices(p.rewards)
    if idx is None:
      continue
    c, r = idx
    pairs.append(DPOPair(p.problem_id, p.init_state, p.samples[c] + closing_marker,
                         p.samples[r] + closing_marker, p.rewards[c], p.rewards[r]))
  return pairs


def sequence_logps(token_logps: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
  """Σ_t log π(o_t) over the completion tokens: [B, T] -> [B]."""
  return jnp.sum(token_logps.astype(jnp.float32) * mask.astype(jnp.float32), axis=-1)


def dpo_loss(policy_chosen: jnp.ndarray, policy_rejected: jnp.ndarray, ref_chosen: jnp.ndarray,
             ref_rejected: jnp.ndarray, beta: float = 0.1, label_smoothing: float = 0.0,
             valid: jnp.ndarray | None = None) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
  """Sigmoid DPO loss and metrics from summed log-probs, all [B]; `valid` [B] masks padding."""
  shapes = {a.shape for a in (policy_chosen, policy_rejected, ref_chosen, ref_rejected)}
  if len(shapes) != 1 or len(next(iter(shapes))) != 1:
    raise ValueError(f"DPO log-probs must all be [B], got shapes {sorted(shapes)}")
  if not 0.0 <= label_smoothing < 0.5:
    raise ValueError(f"label_smoothing={label_smoothing} must be in [0, 0.5)")
  ref_c, ref_r = jax.lax.stop_gradient(ref_chosen), jax.lax.stop_gradient(ref_rejected)
  chosen = beta * (policy_chosen - ref_c)                                   # [B]
  rejected = beta * (policy_rejected - ref_r)                               # [B]
  logits = chosen - rejected
  losses = (-(1.0 - label_smoothing) * jax.nn.log_sigmoid(logits)
            - label_smoothing * jax.nn.log_sigmoid(-logits))
  w = jnp.ones_like(losses) if valid is None else valid.astype(losses.dtype)
  mean = lambda x: jnp.sum(x * w) / jnp.maximum(w.sum(), 1.0)
  loss = mean(losses)
  metrics = {"loss": loss, "rewards/chosen": mean(chosen), "rewards/rejected": mean(rejected),
             "rewards/accuracies": mean((chosen > rejected).astype(losses.dtype)),
             "rewards/margins": mean(chosen - rejected),
             "logps/chosen": mean(policy_chosen), "logps/rejected": mean(policy_rejected)}
  return loss, metrics
