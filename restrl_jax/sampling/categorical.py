"""Categorical draws by inverse CDF from ONE uniform per row (instead of a Gumbel per logit).

`jax.random.categorical` needs a random number per vocabulary entry: for a 150k vocabulary that
is 150k threefry draws per row and step, which dominates a small model's decode step on CPU.
Here each row draws a single u ~ U[0, 1) and picks the token where the cumulative (unnormalised)
probability first exceeds u * total. To keep float32 rounding small for large vocabularies the
search has two levels: blocks of ~sqrt(V) tokens, then the tokens of the chosen block, so every
cumulative sum runs over ~sqrt(V) terms. Zero-probability tokens (logit -inf) are never picked.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def _pick(weights: jax.Array, target: jax.Array) -> tuple[jax.Array, jax.Array]:
  """First index whose inclusive cumsum exceeds `target` (clamped to the last positive weight).

  weights [B, K] >= 0, target [B] >= 0 -> (index [B] int32, target minus the mass before it).
  """
  k = weights.shape[-1]
  cums = jnp.cumsum(weights, axis=-1)                                       # [B, K]
  index = jnp.sum(cums <= target[:, None], axis=-1)                         # [B]
  last_positive = k - 1 - jnp.argmax(jnp.flip(weights > 0, axis=-1), axis=-1)
  index = jnp.minimum(index, last_positive).astype(jnp.int32)
  take = lambda x: jnp.take_along_axis(x, index[:, None], axis=-1)[:, 0]
  before = take(cums) - take(weights)
  return index, jnp.maximum(target - before, 0.0)


def block_size(vocab: int) -> int:
  return max(8, 1 << math.ceil(math.log2(math.sqrt(vocab))))


def sample_index(logits: jax.Array, u: jax.Array) -> jax.Array:
  """Draw one index per row of logits [B, V] (-inf = excluded) with uniforms u [B] in [0, 1)."""
  b, v = logits.shape
  block = block_size(v)
  groups = -(-v // block)
  w = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))           # [B, V]
  w = jnp.pad(w, ((0, 0), (0, groups * block - v))).reshape(b, groups, block)
  sums = jnp.sum(w, axis=-1)                                                # [B, G]
  group, rest = _pick(sums, u * jnp.sum(sums, axis=-1))                     # [B], [B]
  inner = jnp.take_along_axis(w, group[:, None, None], axis=1)[:, 0]       # [B, block]
  index, _ = _pick(inner, rest)
  return group * block + index
