"""The value model: a bias-free linear head on the final hidden state of the last real token.

Value-model parameters are `{"backbone": policy_params, "head": {"kernel": [D, 1]}}`.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from restrl_jax.models.config import ModelConfig
from restrl_jax.models.decoder import hidden_states


def init_value_head(config: ModelConfig, rng: jax.Array, std: float = 0.02) -> dict:
  kernel = std * jax.random.normal(rng, (config.hidden_size, 1), jnp.float32)
  return {"kernel": kernel.astype(config.param_dtype)}


def value_head_logical_axes(config: ModelConfig) -> dict:
  return {"kernel": ("embed", None)}


def last_real_index(attention_mask: jax.Array) -> jax.Array:
  """Index [B] of the last position whose mask is 1 (works for left and right padding)."""
  t = attention_mask.shape[1]
  flipped = jnp.flip(attention_mask.astype(bool), axis=1)
  return (t - 1 - jnp.argmax(flipped, axis=1)).astype(jnp.int32)


def values(config: ModelConfig, params: dict, head_params: dict, tokens: jax.Array,
           attention_mask: jax.Array | None = None, remat: bool = False) -> jax.Array:
  """Scalar values [B] float32 for tokens [B, T]."""
  if attention_mask is None:
    attention_mask = jnp.ones(tokens.shape, bool)
  h = hidden_states(config, params, tokens, attention_mask, remat)  # [B, T, D]
  idx = last_real_index(attention_mask)
  last = jnp.take_along_axis(h, idx[:, None, None], axis=1)[:, 0]  # [B, D]
  kernel = head_params["kernel"]
  return jnp.einsum("bd,dk->bk", last.astype(jnp.float32), kernel.astype(jnp.float32))[:, 0]


def value_from(config: ModelConfig, vparams: dict[str, Any], tokens: jax.Array,
               attention_mask: jax.Array | None = None, remat: bool = False) -> jax.Array:
  """`values` for value-model params {"backbone": ..., "head": ...}."""
  return values(config, vparams["backbone"], vparams["head"], tokens, attention_mask, remat)
