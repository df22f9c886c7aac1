"""Decoder building blocks as pure functions over parameter dicts.

RMSNorm, rotary position embeddings (default / linear / llama3 scaling, HF "rotate_half"
convention), grouped-query attention over a masked key set, and the SwiGLU MLP. Norms, RoPE and
softmax are computed in float32; matmuls run in the config's compute dtype.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from restrl_jax.models.config import ModelConfig
from restrl_jax.parallel import constrain

MASK_VALUE = -0.7 * float(np.finfo(np.float32).max)  # finite: fully masked rows stay NaN-free


def rms_norm(x: jax.Array, scale: jax.Array, eps: float) -> jax.Array:
  """HF-style RMSNorm: normalise in float32, cast back, multiply by `scale`."""
  x32 = x.astype(jnp.float32)
  normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
  return scale.astype(x.dtype) * normed.astype(x.dtype)


def rope_inv_freq(config: ModelConfig) -> np.ndarray:
  """Inverse frequencies [head_dim // 2] incl. rope scaling; a trace-time numpy constant."""
  dim = config.head_dim
  inv_freq = 1.0 / (config.rope_theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
  scaling = config.rope_scaling_dict
  if config.rope_type == "linear":
    return (inv_freq / float(scaling["factor"])).astype(np.float32)
  if config.rope_type == "llama3":
    return _llama3_inv_freq(inv_freq, scaling).astype(np.float32)
  return inv_freq.astype(np.float32)


def _llama3_inv_freq(inv_freq: np.ndarray, scaling: dict) -> np.ndarray:
  factor = float(scaling["factor"])
  low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
  old_len = float(scaling["original_max_position_embeddings"])
  wavelen = 2 * math.pi / inv_freq
  scaled = np.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
  smooth = (old_len / wavelen - low) / (high - low)
  smoothed = (1 - smooth) * scaled / factor + smooth * scaled
  medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
  return np.where(medium, smoothed, scaled)


def rope_cos_sin(positions: jax.Array, inv_freq: np.ndarray) -> tuple[jax.Array, jax.Array]:
  """cos, sin [B, T, head_dim] float32 for integer positions [B, T]."""
  angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)  # [B, T, Dh/2]
  angles = jnp.concatenate([angles, angles], axis=-1)  # [B, T, Dh]
  return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
  """Rotate x [B, T, N, Dh] by cos/sin [B, T, Dh] (HF rotate_half convention)."""
  x32 = x.astype(jnp.float32)
  half = x.shape[-1] // 2
  rotated = jnp.concatenate([-x32[..., half:], x32[..., :half]], axis=-1)
  out = x32 * cos[:, :, None, :] + rotated * sin[:, :, None, :]
  return out.astype(x.dtype)


def dense(x: jax.Array, kernel: jax.Array, subscripts: str, dtype) -> jax.Array:
  return jnp.einsum(subscripts, x, kernel.astype(dtype))


def qkv_projection(config: ModelConfig, p: dict, h: jax.Array, dtype):
  """q [B, T, H, Dh], k/v [B, T, KVH, Dh] from the normed hidden state h [B, T, D]."""
  out = []
  for name in ("q", "k", "v"):
    y = dense(h, p[name]["kernel"], "btd,dnh->btnh", dtype)
    if config.attention_bias:
      y = y + p[name]["bias"].astype(dtype)
    out.append(y)
  q, k, v = out
  if config.qk_norm:
    q = rms_norm(q, p["q_norm"]["scale"], config.rms_norm_eps)
    k = rms_norm(k, p["k_norm"]["scale"], config.rms_norm_eps)
  q = constrain(q, ("batch", "seq", "heads", "head_dim"))
  k = constrain(k, ("batch", "seq", "kv_heads", "head_dim"))
  v = constrain(v, ("batch", "seq", "kv_heads", "head_dim"))
  return q, k, v


def attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, layout: str) -> jax.Array:
  """Grouped-query attention without repeating k/v.

  q [B, T, H, Dh]; k, v [B, KVH, S, Dh] ("bhsd") or [B, S, KVH, Dh] ("bshd"); mask [B, T, S]
  bool (True = may attend). Returns [B, T, H, Dh] in q's dtype.
  """
  b, t, h, dh = q.shape
  kvh = k.shape[1] if layout == "bhsd" else k.shape[2]
  kv = "bksd" if layout == "bhsd" else "bskd"
  qg = (q * jnp.asarray(1.0 / math.sqrt(dh), q.dtype)).reshape(b, t, kvh, h // kvh, dh)
  scores = jnp.einsum(f"btkgd,{kv}->bkgts", qg, k.astype(q.dtype),
                      preferred_element_type=jnp.float32)  # [B, KVH, G, T, S]
  scores = jnp.where(mask[:, None, None, :, :], scores, MASK_VALUE)
  probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
  out = jnp.einsum(f"bkgts,{kv}->btkgd", probs, v)  # [B, T, KVH, G, Dh]
  return out.reshape(b, t, h, dh).astype(q.dtype)


def attention_output(p: dict, attn: jax.Array, dtype) -> jax.Array:
  """[B, T, H, Dh] -> [B, T, D]."""
  return dense(attn, p["o"]["kernel"], "btnh,nhd->btd", dtype)


def swiglu_mlp(p: dict, h: jax.Array, dtype) -> jax.Array:
  """down(silu(gate(h)) * up(h)) for h [B, T, D]."""
  gate = dense(h, p["gate"]["kernel"], "btd,df->btf", dtype)
  up = dense(h, p["up"]["kernel"], "btd,df->btf", dtype)
  act = constrain(jax.nn.silu(gate) * up, ("batch", "seq", "mlp"))
  return dense(act, p["down"]["kernel"], "btf,fd->btd", dtype)
