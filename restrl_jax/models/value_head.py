"""The value model: a bias-free linear head (a flax.linen module) on the final hidden state of
the last real token of the policy backbone (`decoder.Decoder`).

Value-model parameters are `{"backbone": policy_params, "head": {"kernel": [D, 1]}}`: the
decoder's tree and `ValueHead.init`'s, each with the logical axes its module gives it.
"""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from restrl_jax import parallel
from restrl_jax.models.blocks import logical_param, normal_init
from restrl_jax.models.config import ModelConfig
from restrl_jax.models.decoder import abstract_params, hidden_states, param_logical_axes


class ValueHead(nn.Module):
  """last hidden state [B, D] -> value [B] float32 through `kernel` [D, 1] ("embed", None)."""
  hidden_size: int
  param_dtype: Any = jnp.float32
  init_std: float = 0.02

  @nn.compact
  def __call__(self, last: jax.Array) -> jax.Array:
    kernel = logical_param(self, "kernel", normal_init(self.init_std), (self.hidden_size, 1),
                           ("embed", None), self.param_dtype)              # [D, 1]
    return jnp.einsum("bd,dk->bk", last.astype(jnp.float32), kernel.astype(jnp.float32))[:, 0]


def _head(config: ModelConfig, std: float = 0.02) -> ValueHead:
  return ValueHead(config.hidden_size, config.param_dtype, std)


def _boxed_head(config: ModelConfig, rng: jax.Array, std: float = 0.02) -> dict:
  return _head(config, std).init(rng, np.zeros((1, config.hidden_size), np.float32))["params"]


def init_value_head(config: ModelConfig, rng: jax.Array, std: float = 0.02) -> dict:
  """`ValueHead.init`'s params, unboxed: {"kernel": [D, 1]} drawn N(0, std)."""
  return nn.meta.unbox(_boxed_head(config, rng, std))


def _abstract_head(config: ModelConfig) -> dict:
  """`ValueHead.init`'s boxed params as ShapeDtypeStructs (nothing computed)."""
  return jax.eval_shape(functools.partial(_boxed_head, config), jax.random.key(0))


def value_head_logical_axes(config: ModelConfig) -> dict:
  """The head's logical axes, read from `ValueHead.init`'s boxed tree."""
  return parallel.logical_axes(_abstract_head(config))


def value_logical_axes(config: ModelConfig) -> dict:
  """Logical axes of value-model params {"backbone": ..., "head": ...}."""
  return {"backbone": param_logical_axes(config), "head": value_head_logical_axes(config)}


def value_param_shardings(config: ModelConfig, mesh: jax.sharding.Mesh) -> dict:
  """NamedShardings of value-model params {"backbone": ..., "head": ...} on `mesh`, from the
  boxed trees of `Decoder.init` and `ValueHead.init` (as `decoder.param_shardings`)."""
  return parallel.boxed_shardings({"backbone": abstract_params(config),
                                   "head": _abstract_head(config)}, mesh)


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
  h = hidden_states(config, params, tokens, attention_mask, remat)        # [B, T, D]
  idx = last_real_index(attention_mask)                                    # [B]
  last = jnp.take_along_axis(h, idx[:, None, None], axis=1)[:, 0]         # [B, D]
  return _head(config).apply({"params": head_params}, last)


def value_from(config: ModelConfig, vparams: dict[str, Any], tokens: jax.Array,
               attention_mask: jax.Array | None = None, remat: bool = False) -> jax.Array:
  """`values` for value-model params {"backbone": ..., "head": ...}."""
  return values(config, vparams["backbone"], vparams["head"], tokens, attention_mask, remat)
