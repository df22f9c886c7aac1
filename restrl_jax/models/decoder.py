"""The decoder: parameters, full-sequence forward and the incremental (KV-cached) step.

Parameter pytree (plain nested dicts; layer weights are STACKED on a leading [L] axis and the
forward runs `jax.lax.scan` over them):

  embed/embedding            [V, D]
  layers/attn_norm/scale     [L, D]
  layers/attn/q/kernel       [L, D, H, Dh]      (+ q/bias [L, H, Dh] when attention_bias)
  layers/attn/k/kernel       [L, D, KVH, Dh]    (+ k/bias [L, KVH, Dh])
  layers/attn/v/kernel       [L, D, KVH, Dh]    (+ v/bias [L, KVH, Dh])
  layers/attn/o/kernel       [L, H, Dh, D]
  layers/attn/q_norm/scale   [L, Dh]            (qk_norm / Qwen3 only; also k_norm)
  layers/mlp_norm/scale      [L, D]
  layers/mlp/gate/kernel     [L, D, F]; up/kernel [L, D, F]; down/kernel [L, F, D]
  final_norm/scale           [D]
  lm_head/kernel             [D, V]             (absent when tie_word_embeddings)

The forward is a rolled `jax.lax.scan` over the stacked layers: one compiled layer body (fast
compiles for 7B models). On CPU, XLA copies each layer's weight slice before the matmul; in a
micro-benchmark separate per-layer arrays were ~20% faster per decode step, while a Python loop
over static slices of the stacked arrays was ~3x slower than the scan, so the scan stays.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from restrl_jax.models import layers
from restrl_jax.models.config import ModelConfig, resolve_cache_layout
from restrl_jax.parallel import constrain

Params = dict[str, Any]


class KVCache(NamedTuple):
  """Keys/values stacked over layers: [L, B, KVH, S, Dh] ("bhsd") or [L, B, S, KVH, Dh]."""
  k: jax.Array
  v: jax.Array


def _param_specs(config: ModelConfig) -> dict:
  """(shape, logical axes, init kind) for every parameter; the single source of structure."""
  d, h, kvh, dh = config.hidden_size, config.num_heads, config.num_kv_heads, config.head_dim
  f, v, nl = config.intermediate_size, config.vocab_size, config.num_layers
  attn = {
      "q": {"kernel": ((nl, d, h, dh), ("layers", "embed", "heads", "head_dim"), "normal")},
      "k": {"kernel": ((nl, d, kvh, dh), ("layers", "embed", "kv_heads", "head_dim"), "normal")},
      "v": {"kernel": ((nl, d, kvh, dh), ("layers", "embed", "kv_heads", "head_dim"), "normal")},
      "o": {"kernel": ((nl, h, dh, d), ("layers", "heads", "head_dim", "embed"), "normal")},
  }
  if config.attention_bias:
    attn["q"]["bias"] = ((nl, h, dh), ("layers", "heads", "head_dim"), "zeros")
    attn["k"]["bias"] = ((nl, kvh, dh), ("layers", "kv_heads", "head_dim"), "zeros")
    attn["v"]["bias"] = ((nl, kvh, dh), ("layers", "kv_heads", "head_dim"), "zeros")
  if config.qk_norm:
    attn["q_norm"] = {"scale": ((nl, dh), ("layers", "head_dim"), "ones")}
    attn["k_norm"] = {"scale": ((nl, dh), ("layers", "head_dim"), "ones")}
  specs = {
      "embed": {"embedding": ((v, d), ("vocab", "embed"), "normal")},
      "layers": {
          "attn_norm": {"scale": ((nl, d), ("layers", "embed"), "ones")},
          "attn": attn,
          "mlp_norm": {"scale": ((nl, d), ("layers", "embed"), "ones")},
          "mlp": {
              "gate": {"kernel": ((nl, d, f), ("layers", "embed", "mlp"), "normal")},
              "up": {"kernel": ((nl, d, f), ("layers", "embed", "mlp"), "normal")},
              "down": {"kernel": ((nl, f, d), ("layers", "mlp", "embed"), "normal")},
          },
      },
      "final_norm": {"scale": ((d,), ("embed",), "ones")},
  }
  if not config.tie_word_embeddings:
    specs["lm_head"] = {"kernel": ((d, v), ("embed", "vocab"), "normal")}
  return specs


def _is_spec(x) -> bool:
  return isinstance(x, tuple) and len(x) == 3 and isinstance(x[2], str)


_FLAT_INIT_LIMIT = 1 << 28  # below this many weights, draw all normals at once


def init_params(config: ModelConfig, rng: jax.Array, std: float = 0.02) -> Params:
  """Random parameters: N(0, std) kernels/embeddings, unit norm scales, zero biases.

  Small models draw every normal weight from ONE flat `jax.random.normal` call (one threefry to
  compile instead of ~20: seconds saved per test); large ones draw per parameter.
  """
  specs = _param_specs(config)
  leaves, treedef = jax.tree.flatten(specs, is_leaf=_is_spec)
  dtype = jnp.dtype(config.param_dtype)
  sizes = [math.prod(s[0]) if s[2] == "normal" else 0 for s in leaves]
  if sum(sizes) <= _FLAT_INIT_LIMIT:
    flat = std * jax.random.normal(rng, (sum(sizes),), jnp.float32)
    offsets = np.cumsum([0] + sizes)
    draw = lambda i, shape: flat[offsets[i]:offsets[i + 1]].reshape(shape)
  else:
    keys = jax.random.split(rng, len(leaves))
    draw = lambda i, shape: std * jax.random.normal(keys[i], shape, jnp.float32)

  def make(i, spec):
    shape, _, kind = spec
    if kind == "ones":
      return jnp.ones(shape, dtype)
    if kind == "zeros":
      return jnp.zeros(shape, dtype)
    return draw(i, shape).astype(dtype)

  return jax.tree.unflatten(treedef, [make(i, s) for i, s in enumerate(leaves)])


def param_logical_axes(config: ModelConfig) -> dict:
  """Logical axis names per parameter (same structure as `init_params`)."""
  return jax.tree.map(lambda s: s[1], _param_specs(config), is_leaf=_is_spec)


def param_shapes(config: ModelConfig) -> dict:
  return jax.tree.map(lambda s: s[0], _param_specs(config), is_leaf=_is_spec)


def _embed(config: ModelConfig, params: Params, tokens: jax.Array) -> jax.Array:
  if tokens.ndim != 2:
    raise ValueError(f"tokens must be [B, T], got shape {tokens.shape}")
  x = jnp.take(params["embed"]["embedding"], tokens, axis=0).astype(config.dtype)  # [B, T, D]
  return constrain(x, ("batch", "seq", "act_embed"))


def _mlp_residual(config: ModelConfig, lp: Params, x: jax.Array) -> jax.Array:
  h = layers.rms_norm(x, lp["mlp_norm"]["scale"], config.rms_norm_eps)
  x = x + layers.swiglu_mlp(lp["mlp"], h, config.dtype)
  return constrain(x, ("batch", "seq", "act_embed"))


def _unembed(config: ModelConfig, params: Params, h: jax.Array) -> jax.Array:
  """h [B, T, D] (final-normed) -> logits [B, T, V] float32."""
  if config.tie_word_embeddings:
    out = jnp.einsum("btd,vd->btv", h, params["embed"]["embedding"].astype(config.dtype),
                     preferred_element_type=jnp.float32)
  else:
    out = jnp.einsum("btd,dv->btv", h, params["lm_head"]["kernel"].astype(config.dtype),
                     preferred_element_type=jnp.float32)
  return constrain(out, ("batch", "seq", "vocab"))


def _full_mask(attention_mask: jax.Array | None, tokens: jax.Array):
  """positions [B, T] (cumsum(mask) - 1, clipped at 0) and attention mask [B, T, T]."""
  b, t = tokens.shape
  if attention_mask is None:
    attention_mask = jnp.ones((b, t), bool)
  if attention_mask.shape != (b, t):
    raise ValueError(f"attention_mask shape {attention_mask.shape} != tokens shape {(b, t)}")
  m = attention_mask.astype(bool)
  positions = jnp.maximum(jnp.cumsum(m.astype(jnp.int32), axis=1) - 1, 0)
  causal = jnp.tril(jnp.ones((t, t), bool))
  return positions, causal[None] & m[:, None, :]


def hidden_states(config: ModelConfig, params: Params, tokens: jax.Array,
                  attention_mask: jax.Array | None = None, remat: bool = False) -> jax.Array:
  """Final-normed hidden states [B, T, D] for tokens [B, T] (left padding supported).

  `remat=True` rematerialises each layer in the backward pass (training memory).
  """
  positions, mask = _full_mask(attention_mask, tokens)
  cos, sin = layers.rope_cos_sin(positions, layers.rope_inv_freq(config))
  x = _embed(config, params, tokens)

  def body(x, lp):
    h = layers.rms_norm(x, lp["attn_norm"]["scale"], config.rms_norm_eps)
    q, k, v = layers.qkv_projection(config, lp["attn"], h, config.dtype)
    q, k = layers.apply_rope(q, cos, sin), layers.apply_rope(k, cos, sin)
    attn = layers.attend(q, k, v, mask, "bshd")
    x = x + layers.attention_output(lp["attn"], attn, config.dtype)
    return _mlp_residual(config, lp, x), None

  if remat:
    body = jax.checkpoint(body)
  x, _ = jax.lax.scan(body, x, params["layers"])
  return layers.rms_norm(x, params["final_norm"]["scale"], config.rms_norm_eps)


def logits(config: ModelConfig, params: Params, tokens: jax.Array,
           attention_mask: jax.Array | None = None, remat: bool = False) -> jax.Array:
  """Next-token logits [B, T, V] float32 for tokens [B, T]."""
  return _unembed(config, params, hidden_states(config, params, tokens, attention_mask, remat))


def init_cache(config: ModelConfig, batch_size: int, max_len: int, dtype=None) -> KVCache:
  """An all-zero cache with capacity `max_len` in the config's resolved layout."""
  nl, kvh, dh = config.num_layers, config.num_kv_heads, config.head_dim
  if resolve_cache_layout(config) == "bhsd":
    shape = (nl, batch_size, kvh, max_len, dh)
  else:
    shape = (nl, batch_size, max_len, kvh, dh)
  dtype = jnp.dtype(dtype or config.dtype)
  return KVCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype))


def _cache_axes(layout: str) -> tuple[str, ...]:
  if layout == "bhsd":
    return ("layers", "batch", "kv_heads", "cache_seq", "head_dim")
  return ("layers", "batch", "cache_seq", "kv_heads", "head_dim")


def _write_layer(cache: jax.Array, new: jax.Array, layer, index, layout: str) -> jax.Array:
  """Write new [B, T, KVH, Dh] into cache[layer] at slots [index, index + T)."""
  zero = jnp.zeros((), jnp.int32)
  if layout == "bhsd":
    new = jnp.swapaxes(new, 1, 2)  # [B, KVH, T, Dh]
    start = (layer, zero, zero, index, zero)
  else:
    start = (layer, zero, index, zero, zero)
  return jax.lax.dynamic_update_slice(cache, new[None].astype(cache.dtype), start)


def _read_layer(cache: jax.Array, layer) -> jax.Array:
  return jax.lax.dynamic_index_in_dim(cache, layer, axis=0, keepdims=False)


def _check_step_inputs(cache: KVCache, tokens, positions, kv_mask, layout: str) -> None:
  b, t = tokens.shape
  cap = cache.k.shape[3] if layout == "bhsd" else cache.k.shape[2]
  if positions.shape != (b, t):
    raise ValueError(f"forward_step: positions shape {positions.shape} != tokens {(b, t)}")
  if kv_mask.shape != (b, cap):
    raise ValueError(f"forward_step: kv_mask shape {kv_mask.shape} != (batch, cache slots) "
                     f"{(b, cap)}; cache.k shape {cache.k.shape} (layout {layout})")


def forward_step(config: ModelConfig, params: Params, tokens: jax.Array, positions: jax.Array,
                 cache: KVCache, cache_index: jax.Array, kv_mask: jax.Array
                 ) -> tuple[jax.Array, KVCache]:
  """Incremental forward for prefill (T = prompt length) and decode (T = 1).

  Writes the new keys/values at cache slots [cache_index, cache_index + T); query t attends to
  slot s iff kv_mask[b, s] and s <= cache_index + t. Returns logits [B, T, V] float32 and the
  updated cache.
  """
  layout = resolve_cache_layout(config)
  _check_step_inputs(cache, tokens, positions, kv_mask, layout)
  t, cap = tokens.shape[1], kv_mask.shape[1]
  index = jnp.asarray(cache_index, jnp.int32)
  slots = jnp.arange(cap, dtype=jnp.int32)
  causal = slots[None, :] <= index + jnp.arange(t, dtype=jnp.int32)[:, None]  # [T, S]
  mask = kv_mask.astype(bool)[:, None, :] & causal[None]  # [B, T, S]
  cos, sin = layers.rope_cos_sin(positions, layers.rope_inv_freq(config))
  x = _embed(config, params, tokens)
  axes = _cache_axes(layout)

  def body(carry, inputs):
    x, ck, cv = carry
    lp, i = inputs
    h = layers.rms_norm(x, lp["attn_norm"]["scale"], config.rms_norm_eps)
    q, k, v = layers.qkv_projection(config, lp["attn"], h, config.dtype)
    q, k = layers.apply_rope(q, cos, sin), layers.apply_rope(k, cos, sin)
    ck = constrain(_write_layer(ck, k, i, index, layout), axes)
    cv = constrain(_write_layer(cv, v, i, index, layout), axes)
    attn = layers.attend(q, _read_layer(ck, i), _read_layer(cv, i), mask, layout)
    x = x + layers.attention_output(lp["attn"], attn, config.dtype)
    return (_mlp_residual(config, lp, x), ck, cv), None

  layer_ids = jnp.arange(config.num_layers, dtype=jnp.int32)
  (x, ck, cv), _ = jax.lax.scan(body, (x, cache.k, cache.v), (params["layers"], layer_ids))
  h = layers.rms_norm(x, params["final_norm"]["scale"], config.rms_norm_eps)
  return _unembed(config, params, h), KVCache(ck, cv)
