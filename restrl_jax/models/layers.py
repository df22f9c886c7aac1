"""The decoder's parameter-free arithmetic as pure functions (the flax modules in `blocks` and
`decoder_layer` hold the parameters and call these).

RMSNorm, rotary position embeddings (default / linear / llama3 scaling, HF "rotate_half"
convention) and grouped-query attention over a masked key set. Norms, RoPE and softmax are
computed in float32; matmuls run in the config's compute dtype.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from restrl_jax.models import matmul
from restrl_jax.models.config import ModelConfig

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


def rope_cos_sin(positions: jax.Array, inv_freq: np.ndarray,
                 num_positions: int | None = None) -> tuple[jax.Array, jax.Array]:
  """cos, sin [B, T, head_dim] float32 for integer positions [B, T].

  With `num_positions` (a static bound: every position is below it) they are looked up in
  tables built at trace time (float32 arithmetic, as computed at run time): computed at run
  time, XLA:CPU fuses cos/sin into each consumer and evaluates them once per head and per use
  (the RoPE backward products of every layer).
  """
  if num_positions is not None:
    angles = np.arange(num_positions, dtype=np.float32)[:, None] * inv_freq  # [P, Dh/2]
    angles = np.concatenate([angles, angles], axis=-1)                     # [P, Dh]
    index = jnp.clip(positions, 0, num_positions - 1)
    return (jnp.take(jnp.asarray(np.cos(angles)), index, axis=0),
            jnp.take(jnp.asarray(np.sin(angles)), index, axis=0))
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


def attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, layout: str,
           causal: bool = False) -> jax.Array:
  """Grouped-query attention without repeating k/v.

  q [B, T, H, Dh]; k, v [B, KVH, S, Dh] ("bhsd"), [B, S, KVH, Dh] ("bshd"), or k [B, KVH, Dh, S]
  and v [B, KVH, S, Dh] ("bhsd_kt", the CPU decode cache); mask [B, T, S] bool (True = may
  attend). Returns [B, T, H, Dh] in q's dtype. The query groups are moved next to the kv heads
  ([B, KVH, G, T, Dh]) so that both matmuls have leading batch dims; with "bhsd" the gradient is
  `grouped_attention`'s hand-written one. `causal=True` promises that `mask` hides every key
  after its query (T == S, query t is key t): "bhsd" then skips the hidden blocks
  (`causal_blocks`).
  """
  b, t, h, dh = q.shape
  kvh = k.shape[2] if layout == "bshd" else k.shape[1]
  qg = (q * jnp.asarray(1.0 / math.sqrt(dh), q.dtype)).reshape(b, t, kvh, h // kvh, dh)
  qg = qg.transpose(0, 2, 3, 1, 4)  # [B, KVH, G, T, Dh]
  if layout == "bhsd":
    blocks = causal_blocks(t, k.shape[2]) if causal else 1
    out = grouped_attention(qg, k.astype(q.dtype), v, mask, blocks)
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


CAUSAL_BLOCK_ROWS = 64   # query rows per block of causal attention
MAX_CAUSAL_BLOCKS = 8


def causal_blocks(t: int, s: int) -> int:
  """Query blocks for causal self-attention of T queries over S = T keys: blocks of
  `CAUSAL_BLOCK_ROWS` rows, at most `MAX_CAUSAL_BLOCKS` (more blocks skip more of the hidden
  upper triangle, (n - 1) / 2n of the scores, but each is a separate set of products)."""
  if t != s:
    return 1
  return max(1, min(MAX_CAUSAL_BLOCKS, t // CAUSAL_BLOCK_ROWS))


def _block_bounds(t: int, s: int, blocks: int) -> list[tuple[int, int, int]]:
  """(first query, end query, end key) per block: all S keys unless blocked (then S == T)."""
  if blocks == 1:
    return [(0, t, s)]
  return [(i * t // blocks, (i + 1) * t // blocks, (i + 1) * t // blocks) for i in range(blocks)]


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def grouped_attention(qg: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array,
                      blocks: int = 1) -> jax.Array:
  """softmax(qg k^T masked) v for pre-scaled queries qg [B, KVH, G, T, Dh], k, v [B, KVH, S, Dh],
  mask [B, T, S] -> [B, KVH, G, T, Dh].

  `blocks` > 1 (causal self-attention only: `mask` must hide every key after its query) splits
  the queries into that many row blocks; block [t0, t1) attends to keys [0, t1) only, skipping
  the hidden upper triangle. A fully masked row (e.g. left padding) gives the mean of v over all
  S keys whatever the blocking (the uniform softmax of the unblocked form).

  The hand-written gradient (equal to autodiff's; masked scores get none):
  * the softmax backward's row sums sum_s P dP are taken as dO . O (FlashAttention's D), from
    [.., T, Dh] arrays instead of a pass over the [.., T, S] scores;
  * the probabilities are kept in the compute dtype (the forward product rounds them to it);
  * dV = P^T dO and dK = dS^T q contract the query rows of both operands; on CPU the small
    operand (dO, q) is transposed to row-major first (`_contract_queries`): XLA:CPU runs a
    low-precision dot on its library kernels only when the left operand is [M, K] row-major
    (`models.matmul`), and upcast these two products to float32 otherwise.
  `bench/attention.py` times it against plain JAX and PyTorch attention (docs/benchmarks.md).
  """
  return _grouped_attention_fwd(qg, k, v, mask, blocks)[0]


def _grouped_attention_fwd(qg, k, v, mask, blocks):
  outs, probs = [], []
  for t0, t1, s1 in _block_bounds(qg.shape[3], k.shape[2], blocks):
    scores = jnp.einsum("bkgtd,bksd->bkgts", qg[:, :, :, t0:t1], k[:, :, :s1],
                        preferred_element_type=jnp.float32)                # [B, KVH, G, Tb, s1]
    scores = jnp.where(mask[:, None, None, t0:t1, :s1], scores, MASK_VALUE)
    p = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    probs.append(p)
    outs.append(jnp.einsum("bkgts,bksd->bkgtd", p, v[:, :, :s1],
                           preferred_element_type=jnp.float32))           # [B, KVH, G, Tb, Dh]
  live = jnp.any(mask, axis=-1)                                             # [B, T] row has a key
  mean_v = jnp.mean(v.astype(jnp.float32), axis=2)[:, :, None, None]       # [B, KVH, 1, 1, Dh]
  out = jnp.where(live[:, None, None, :, None], jnp.concatenate(outs, axis=3), mean_v)
  out = out.astype(v.dtype)                                                 # [B, KVH, G, T, Dh]
  return out, (qg, k, v, tuple(probs), out, live.astype(jnp.float32))


def _grouped_attention_bwd(blocks, res, d_out):
  qg, k, v, probs, out, live = res
  b, kvh, g, t, dh = qg.shape
  s = k.shape[2]
  f32 = jnp.float32
  d_out = d_out.astype(v.dtype)
  live_rows = live[:, None, None, :, None]                                  # [B, 1, 1, T, 1]
  # masked entries have P = 0; a fully masked row's output is mean(v): its dO goes to dV as
  # dO / S on every key (below), not through the softmax
  d_live = d_out * live_rows.astype(d_out.dtype)
  delta = jnp.sum(d_live.astype(f32) * out.astype(f32), axis=-1, keepdims=True)  # [B, KVH, G, T, 1]
  dead = jnp.sum(d_out.astype(f32) * (1.0 - live_rows), axis=(2, 3))      # [B, KVH, Dh]
  dq, dk, dv = [], jnp.zeros(k.shape, f32), jnp.zeros(v.shape, f32) + dead[:, :, None] / s
  for (t0, t1, s1), p in zip(_block_bounds(t, s, blocks), probs):
    d_block = d_live[:, :, :, t0:t1]                                        # [B, KVH, G, Tb, Dh]
    dp = jnp.einsum("bkgtd,bksd->bkgts", d_block, v[:, :, :s1], preferred_element_type=f32)
    ds = (p.astype(f32) * (dp - delta[:, :, :, t0:t1])).astype(qg.dtype)   # [B, KVH, G, Tb, s1]
    rows = lambda x: x.reshape(b, kvh, g * (t1 - t0), x.shape[-1])          # [B, KVH, G*Tb, .]
    keys = lambda x: jnp.pad(x, ((0, 0), (0, 0), (0, s - s1), (0, 0)))     # [.., s1, Dh] -> S
    dv = dv + keys(_contract_queries(rows(d_block), rows(p)))
    dk = dk + keys(_contract_queries(rows(qg[:, :, :, t0:t1]), rows(ds)))
    dq.append(jnp.einsum("bkgts,bksd->bkgtd", ds, k[:, :, :s1], preferred_element_type=f32))
  dq = jnp.concatenate(dq, axis=3)
  return dq.astype(qg.dtype), dk.astype(k.dtype), dv.astype(v.dtype), None


def _contract_queries(a: jax.Array, b: jax.Array) -> jax.Array:
  """b^T a over the query rows: a [B, KVH, Q, Dh], b [B, KVH, Q, S] -> [B, KVH, S, Dh] float32.

  On CPU as (a^T b)^T with a^T materialised row-major (`matmul.rows_to_columns`) and a barrier
  before the small result's transpose (folded into the dot, XLA would leave the library kernel
  again)."""
  if jax.default_backend() != "cpu":
    return jnp.einsum("bkqd,bkqs->bksd", a, b, preferred_element_type=jnp.float32)
  prod = jnp.einsum("bkdq,bkqs->bkds", matmul.rows_to_columns(a), b,
                    preferred_element_type=jnp.float32)                    # [B, KVH, Dh, S]
  return jnp.swapaxes(jax.lax.optimization_barrier(prod), 2, 3)


grouped_attention.defvjp(_grouped_attention_fwd, _grouped_attention_bwd)
