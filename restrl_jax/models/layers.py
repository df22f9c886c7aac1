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

from restrl_jax.models import matmul
from restrl_jax.models.config import ModelConfig
from restrl_jax.parallel import constrain

MASK_VALUE = -0.7 * float(np.finfo(np.float32).max)  # finite: fully masked rows stay NaN-free


def rms_norm(x: jax.Array, scale: jax.Array, eps: float) -> jax.Array:
  """HF-style RMSNorm: normalise in float32, multiply by `scale`, cast back. (HF casts back
  before the multiply; in float32 the two are the same, in bf16 this keeps the scale's gradient
  a float32 sum instead of one rounded to bf16 at every addition.)"""
  x32 = x.astype(jnp.float32)
  normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + eps)
  return (scale.astype(jnp.float32) * normed).astype(x.dtype)


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


def dense(x: jax.Array, kernel: jax.Array, dtype, bias: jax.Array | None = None) -> jax.Array:
  """x [..., K] @ kernel [K, N] -> [..., N] as ONE 2-D matmul [M, K] @ [K, N]: on CPU a
  contraction over several leading dims (e.g. "btd,df->btf") made XLA transpose the activations
  for the weight gradient, ~2x the cost of the whole backward pass of the MLP. Low-precision
  compute accumulates in float32 (`matmul.linear`)."""
  y = matmul.linear(x.reshape(-1, x.shape[-1]), kernel, dtype, bias=bias)  # [M, N]
  return y.reshape(*x.shape[:-1], kernel.shape[-1])


def project(p: dict, x: jax.Array, dtype, bias: jax.Array | None = None) -> jax.Array:
  """x [..., K] through one projection's params (plus `bias` [N] if given) -> [..., N].

  `p["kernel"]` is used as [K, N] (its leading dims flattened: q's [D, H, Dh] as [D, H * Dh],
  o's [H, Dh, D] as [H * Dh, D]; free reshapes). Decode params on CPU
  (`decoder.decode_params`) hold `p["kernel_t"]` [N, K] instead, used in an NT matmul: at a
  decode step's few rows XLA:CPU streams the weights faster that way (bench/sampler.py).
  """
  if "kernel_t" in p:
    kernel_t = p["kernel_t"]  # [N, K]
    y = matmul.linear(x.reshape(-1, x.shape[-1]), kernel_t, dtype, layout="nk", bias=bias)
    return y.reshape(*x.shape[:-1], kernel_t.shape[0])
  return dense(x, p["kernel"].reshape(x.shape[-1], -1), dtype, bias)


def qkv_projection(config: ModelConfig, p: dict, h: jax.Array, dtype):
  """q [B, T, H, Dh], k/v [B, T, KVH, Dh] from the normed hidden state h [B, T, D]."""
  out = []
  heads = {"q": config.num_heads, "k": config.num_kv_heads, "v": config.num_kv_heads}
  for name in ("q", "k", "v"):
    bias = p[name]["bias"].reshape(-1) if config.attention_bias else None  # [N]
    y = project(p[name], h, dtype, bias).reshape(*h.shape[:2], heads[name], config.head_dim)
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

  q [B, T, H, Dh]; k, v [B, KVH, S, Dh] ("bhsd"), [B, S, KVH, Dh] ("bshd"), or k [B, KVH, Dh, S]
  and v [B, KVH, S, Dh] ("bhsd_kt", the CPU decode cache); mask [B, T, S] bool (True = may
  attend). Returns [B, T, H, Dh] in q's dtype. The query groups are moved next to the kv heads
  ([B, KVH, G, T, Dh]) so that both matmuls have leading batch dims; with "bhsd" the gradient is
  `grouped_attention`'s hand-written one.
  """
  b, t, h, dh = q.shape
  kvh = k.shape[2] if layout == "bshd" else k.shape[1]
  qg = (q * jnp.asarray(1.0 / math.sqrt(dh), q.dtype)).reshape(b, t, kvh, h // kvh, dh)
  qg = qg.transpose(0, 2, 3, 1, 4)  # [B, KVH, G, T, Dh]
  if layout == "bhsd":
    out = grouped_attention(qg, k.astype(q.dtype), v, mask)
  else:  # a decode cache: attend in its dtype (a float32 cache under bf16 compute on CPU)
    ct = jnp.promote_types(q.dtype, k.dtype)
    spec = "bkgtd,bkds->bkgts" if layout == "bhsd_kt" else "bkgtd,bskd->bkgts"
    scores = jnp.einsum(spec, qg.astype(ct), k.astype(ct),
                        preferred_element_type=jnp.float32)  # [B, KVH, G, T, S]
    probs = _masked_softmax(scores, mask).astype(v.dtype)
    spec = "bkgts,bksd->bkgtd" if layout == "bhsd_kt" else "bkgts,bskd->bkgtd"
    out = jnp.einsum(spec, probs, v)  # [B, KVH, G, T, Dh]
  return out.transpose(0, 3, 1, 2, 4).reshape(b, t, h, dh).astype(q.dtype)


def _masked_softmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
  """softmax over S of scores [B, KVH, G, T, S] float32 where mask [B, T, S]; fully masked rows
  come out uniform (finite MASK_VALUE), not NaN."""
  return jax.nn.softmax(jnp.where(mask[:, None, None, :, :], scores, MASK_VALUE), axis=-1)


def _probs(qg: jax.Array, k: jax.Array, mask: jax.Array) -> jax.Array:
  scores = jnp.einsum("bkgtd,bksd->bkgts", qg, k, preferred_element_type=jnp.float32)
  return _masked_softmax(scores, mask)  # [B, KVH, G, T, S] float32


@jax.custom_vjp
def grouped_attention(qg: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
  """softmax(qg k^T masked) v for pre-scaled queries qg [B, KVH, G, T, Dh], k, v [B, KVH, S, Dh],
  mask [B, T, S] -> [B, KVH, G, T, Dh].

  The custom gradient keeps every matmul in a form XLA's CPU backend runs without transposing
  the [.., T, S] score gradient (autodiff's dK = dS^T q and dV = P^T dO did), and it reuses the
  saved probabilities; it equals autodiff's gradient (masked scores get none).
  """
  return jnp.einsum("bkgts,bksd->bkgtd", _probs(qg, k, mask).astype(v.dtype), v)


def _grouped_attention_fwd(qg, k, v, mask):
  probs = _probs(qg, k, mask)
  out = jnp.einsum("bkgts,bksd->bkgtd", probs.astype(v.dtype), v)
  return out, (qg, k, v, mask, probs)


def _grouped_attention_bwd(res, d_out):
  qg, k, v, mask, probs = res
  b, kvh, g, t, dh = qg.shape
  s = k.shape[2]
  d_out = d_out.reshape(b, kvh, g * t, dh)                 # [B, KVH, Q, Dh], Q = G * T
  p = probs.reshape(b, kvh, g * t, s)                      # [B, KVH, Q, S]
  dp = jnp.einsum("bkqd,bksd->bkqs", d_out, v, preferred_element_type=jnp.float32)
  ds = p * (dp - jnp.sum(dp * p, axis=-1, keepdims=True))  # softmax backward
  ds = jnp.where(mask[:, None, None], ds.reshape(probs.shape), 0.0).reshape(p.shape)
  # dV = P^T dO and dK = dS^T q as (dO^T P)^T and (q^T dS)^T: the small operand is transposed
  dv = jnp.einsum("bkqd,bkqs->bkds", d_out, p.astype(d_out.dtype)).swapaxes(2, 3)
  dk = jnp.einsum("bkqd,bkqs->bkds", qg.reshape(b, kvh, g * t, dh), ds.astype(qg.dtype))
  dq = jnp.einsum("bkqs,bksd->bkqd", ds.astype(k.dtype), k).reshape(qg.shape)
  return dq.astype(qg.dtype), dk.swapaxes(2, 3).astype(k.dtype), dv.astype(v.dtype), None


grouped_attention.defvjp(_grouped_attention_fwd, _grouped_attention_bwd)


def attention_output(p: dict, attn: jax.Array, dtype) -> jax.Array:
  """[B, T, H, Dh] -> [B, T, D], as ONE contraction over H * Dh: contracting (H, Dh) as two
  dims let XLA on CPU reorder them and transpose the kernel on every call."""
  b, t, h, dh = attn.shape
  return project(p["o"], attn.reshape(b, t, h * dh), dtype)  # kernel [H, Dh, D]


def swiglu_mlp(p: dict, h: jax.Array, dtype) -> jax.Array:
  """down(silu(gate(h)) * up(h)) for h [B, T, D]."""
  gate = project(p["gate"], h, dtype)
  up = project(p["up"], h, dtype)
  act = constrain(jax.nn.silu(gate) * up, ("batch", "seq", "mlp"))
  return project(p["down"], act, dtype)
