"""One transformer block as flax.linen modules: grouped-query attention, the SwiGLU MLP, and
the pre-norm residual layer that joins them.

Parameters of one layer (logical axes in brackets; `decoder.Decoder` stacks L of them):

  attn_norm/scale      [D]             ("embed")
  attn/q/kernel        [D, H, Dh]      ("embed", "heads", "head_dim")   (+ bias [H, Dh])
  attn/k/kernel        [D, KVH, Dh]    ("embed", "kv_heads", "head_dim") (+ bias [KVH, Dh])
  attn/v/kernel        [D, KVH, Dh]    (as k)
  attn/o/kernel        [H, Dh, D]      ("heads", "head_dim", "embed")
  attn/q_norm/scale    [Dh]            ("head_dim"; Qwen3 only, also k_norm)
  mlp_norm/scale       [D]
  mlp/gate/kernel      [D, F]          ("embed", "mlp"); up as gate; down [F, D] ("mlp", "embed")
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from restrl_jax.models import kv_cache, layers
from restrl_jax.models.blocks import Projection, RMSNorm
from restrl_jax.models.config import ModelConfig, resolve_cache_layout
from restrl_jax.parallel import constrain


def _projection(config: ModelConfig, init_std: float, **fields) -> Projection:
  return Projection(dtype=config.dtype, param_dtype=config.param_dtype, init_std=init_std,
                    **fields)


class Attention(nn.Module):
  """q/k/v/o projections (optional q/k/v biases and q/k RMSNorm); the attention itself is
  `layers.attend`, over the layer's own keys or its KV cache."""
  config: ModelConfig
  init_std: float = 0.02

  def setup(self):
    c = self.config
    d, h, kvh, dh = c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim
    proj = functools.partial(_projection, c, self.init_std)
    bias = lambda heads: (heads, "head_dim") if c.attention_bias else None
    self.q = proj(kernel_shape=(d, h, dh), kernel_axes=("embed", "heads", "head_dim"),
                  bias_axes=bias("heads"))
    self.k = proj(kernel_shape=(d, kvh, dh), kernel_axes=("embed", "kv_heads", "head_dim"),
                  bias_axes=bias("kv_heads"))
    self.v = proj(kernel_shape=(d, kvh, dh), kernel_axes=("embed", "kv_heads", "head_dim"),
                  bias_axes=bias("kv_heads"))
    self.o = proj(kernel_shape=(h, dh, d), kernel_axes=("heads", "head_dim", "embed"), in_dims=2)
    if c.qk_norm:
      self.q_norm = RMSNorm(dh, "head_dim", c.rms_norm_eps, c.param_dtype)
      self.k_norm = RMSNorm(dh, "head_dim", c.rms_norm_eps, c.param_dtype)

  def qkv(self, h: jax.Array, cos: jax.Array, sin: jax.Array):
    """q [B, T, H, Dh] and k, v [B, T, KVH, Dh] from the normed hidden state h [B, T, D]; q and
    k rotated by cos/sin [B, T, Dh]."""
    c = self.config
    b, t, _ = h.shape
    q = self.q(h).reshape(b, t, c.num_heads, c.head_dim)                  # [B, T, H, Dh]
    k = self.k(h).reshape(b, t, c.num_kv_heads, c.head_dim)               # [B, T, KVH, Dh]
    v = self.v(h).reshape(b, t, c.num_kv_heads, c.head_dim)               # [B, T, KVH, Dh]
    if c.qk_norm:
      q, k = self.q_norm(q), self.k_norm(k)
    q = constrain(q, ("batch", "seq", "heads", "head_dim"))
    k = constrain(k, ("batch", "seq", "kv_heads", "head_dim"))
    v = constrain(v, ("batch", "seq", "kv_heads", "head_dim"))
    return layers.apply_rope(q, cos, sin), layers.apply_rope(k, cos, sin), v

  def output(self, attn: jax.Array) -> jax.Array:
    """attn [B, T, H, Dh] -> [B, T, D], as ONE contraction over H * Dh: contracting (H, Dh) as
    two dims let XLA on CPU reorder them and transpose the kernel on every call."""
    b, t, h, dh = attn.shape
    return self.o(attn.reshape(b, t, h * dh))


class MLP(nn.Module):
  """down(silu(gate(h)) * up(h))."""
  config: ModelConfig
  init_std: float = 0.02

  def setup(self):
    c = self.config
    d, f = c.hidden_size, c.intermediate_size
    proj = functools.partial(_projection, c, self.init_std)
    self.gate = proj(kernel_shape=(d, f), kernel_axes=("embed", "mlp"))
    self.up = proj(kernel_shape=(d, f), kernel_axes=("embed", "mlp"))
    self.down = proj(kernel_shape=(f, d), kernel_axes=("mlp", "embed"))

  def __call__(self, h: jax.Array) -> jax.Array:
    """h [B, T, D] -> [B, T, D]."""
    act = constrain(jax.nn.silu(self.gate(h)) * self.up(h), ("batch", "seq", "mlp"))  # [B, T, F]
    return self.down(act)


class DecoderLayer(nn.Module):
  """x + attn(attn_norm(x)), then + mlp(mlp_norm(.)). `__call__` is causal self-attention over
  the whole sequence (training, scoring); `step` attends through a KV cache (prefill, decode).
  `shared_prompt` runs prompts once per group of completions (`models.completion_states`). All
  three have the signature of a scan body: (carry, *inputs) -> (carry, None)."""
  config: ModelConfig
  init_std: float = 0.02

  def setup(self):
    c = self.config
    self.attn_norm = RMSNorm(c.hidden_size, "embed", c.rms_norm_eps, c.param_dtype)
    self.attn = Attention(c, self.init_std)
    self.mlp_norm = RMSNorm(c.hidden_size, "embed", c.rms_norm_eps, c.param_dtype)
    self.mlp = MLP(c, self.init_std)

  def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array, mask: jax.Array):
    """x [B, T, D], cos/sin [B, T, Dh], mask [B, T, T] -> (x [B, T, D], None)."""
    q, k, v = self.attn.qkv(self.attn_norm(x), cos, sin)
    # keys/values head-major [B, KVH, T, Dh]: batch-leading matmuls in the attention (on CPU
    # the grouped einsum straight over [B, T, KVH, Dh] made the backward pass several x slower)
    attn = layers.attend(q, jnp.swapaxes(k, 1, 2), jnp.swapaxes(v, 1, 2), mask, "bhsd",
                         causal=True)                                      # [B, T, H, Dh]
    return self._residual(x, attn), None

  def step(self, carry, layer, cos: jax.Array, sin: jax.Array, mask: jax.Array,
           index: jax.Array):
    """One layer of the cached step: carry = (x [B, T, D], keys, values) where keys/values are
    this layer's own caches (`layer` None) or the caches of all layers stacked [L, ...] (`layer`
    this layer's index in them). Writes the new keys/values at slots [index, index + T);
    mask [B, T, S]. Returns ((x, keys, values), None)."""
    x, ck, cv = carry
    layout = resolve_cache_layout(self.config)
    k_axes, v_axes = kv_cache.cache_axes(layout, "k"), kv_cache.cache_axes(layout, "v")
    if layer is None:
      k_axes, v_axes = k_axes[1:], v_axes[1:]
    q, k, v = self.attn.qkv(self.attn_norm(x), cos, sin)
    ck = constrain(kv_cache.write_slots(ck, k, index, layout, "k", layer), k_axes)
    cv = constrain(kv_cache.write_slots(cv, v, index, layout, "v", layer), v_axes)
    keys, values = (ck, cv) if layer is None else (kv_cache.read_layer(ck, layer),
                                                   kv_cache.read_layer(cv, layer))
    attn = layers.attend(q, keys, values, mask, layout)                    # [B, T, H, Dh]
    return (self._residual(x, attn), ck, cv), None

  def shared_prompt(self, carry, cos_p: jax.Array, sin_p: jax.Array, cos_c: jax.Array,
                    sin_c: jax.Array, self_mask: jax.Array, cross_mask: jax.Array):
    """The layer on B prompts and the R = B * share completions that follow them
    (`models.completion_states`): carry = (x_p [B, P, D], x_c [R, N, D]); the prompts attend
    causally to themselves (self_mask [B, P, P]), each completion to its group's prompt keys and
    values (repeated over the group) and to its own (cross_mask [R, N, P+N]); cos/sin [B, P, Dh]
    and [R, N, Dh]. Returns ((x_p, x_c), None)."""
    x_p, x_c = carry
    share = x_c.shape[0] // x_p.shape[0]
    heads = lambda a: jnp.swapaxes(a, 1, 2)                  # [., S, KVH, Dh] -> [., KVH, S, Dh]
    q_p, k_p, v_p = self.attn.qkv(self.attn_norm(x_p), cos_p, sin_p)
    attn_p = layers.attend(q_p, heads(k_p), heads(v_p), self_mask, "bhsd", causal=True)
    q_c, k_c, v_c = self.attn.qkv(self.attn_norm(x_c), cos_c, sin_c)
    k = jnp.concatenate([jnp.repeat(heads(k_p), share, axis=0), heads(k_c)], axis=2)  # [R, KVH, P+N, Dh]
    v = jnp.concatenate([jnp.repeat(heads(v_p), share, axis=0), heads(v_c)], axis=2)
    attn_c = layers.attend(q_c, k, v, cross_mask, "bhsd")                  # [R, N, H, Dh]
    return (self._residual(x_p, attn_p), self._residual(x_c, attn_c)), None

  def _residual(self, x: jax.Array, attn: jax.Array) -> jax.Array:
    """The residual stream x [B, T, D] after the attention output and the MLP."""
    x = x + self.attn.output(attn)
    x = x + self.mlp(self.mlp_norm(x))
    return constrain(x, ("batch", "seq", "act_embed"))
