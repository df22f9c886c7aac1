"""The KV cache of the decoder's incremental step: its arrays, layouts, dtype and slot writes.

A cache holds every layer's keys and values, either stacked on a leading [L] axis (what the
scanned layer stack carries) or per layer (tuples of L arrays, what the unrolled decode loop on
CPU uses: `unstack_cache`). One layer's layout is `resolve_cache_layout(config)`:
"bshd" [B, S, KVH, Dh], "bhsd" [B, KVH, S, Dh], or "bhsd_kt" with the keys transposed to
[B, KVH, Dh, S].
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from restrl_jax.models import matmul
from restrl_jax.models.config import ModelConfig, resolve_cache_layout


class KVCache(NamedTuple):
  """Keys/values stacked over layers, [L, ...] + one layer's layout (e.g. [L, B, KVH, S, Dh]
  for "bhsd", keys [L, B, KVH, Dh, S] for "bhsd_kt"); or, per layer (`unstack_cache`), tuples
  of L arrays in the layer layout."""
  k: jax.Array
  v: jax.Array


def cache_dtype(config: ModelConfig) -> jnp.dtype:
  """The KV cache's dtype: the compute dtype, except float32 for 16-bit compute in the CPU
  layout ("bhsd_kt", what "auto" resolves to on CPU).

  XLA:CPU's float normalisation runs a bf16 `dynamic_update_slice` as convert-to-f32, update,
  convert back, over the WHOLE cache: 24 whole-cache round trips per decode step at ~100M
  (12 layers, keys and values). A float32 cache is updated in place, and a decode step reads
  the cache once either way (small next to the weights it reads). A layout set explicitly for
  TPU/GPU ("bshd", as `memory_plan` compiles on CPU) keeps the compute dtype.
  """
  if resolve_cache_layout(config) == "bhsd_kt" and matmul.is_low_precision_dtype(config.dtype):
    return jnp.dtype(jnp.float32)
  return jnp.dtype(config.dtype)


def cache_layer_shape(layout: str, kind: str, batch: int, slots: int, kv_heads: int,
                      head_dim: int) -> tuple[int, ...]:
  """Shape of one layer's keys (kind "k") or values ("v") in `layout`."""
  return {"bshd": (batch, slots, kv_heads, head_dim), "bhsd": (batch, kv_heads, slots, head_dim),
          "bhsd_kt": (batch, kv_heads, head_dim, slots) if kind == "k" else (
              batch, kv_heads, slots, head_dim)}[layout]


def init_cache(config: ModelConfig, batch_size: int, max_len: int, dtype=None) -> KVCache:
  """An all-zero stacked cache with capacity `max_len` in the config's resolved layout, in
  `dtype` (default `cache_dtype(config)`)."""
  layout = resolve_cache_layout(config)
  shape = lambda kind: (config.num_layers,) + cache_layer_shape(
      layout, kind, batch_size, max_len, config.num_kv_heads, config.head_dim)
  dtype = jnp.dtype(dtype or cache_dtype(config))
  return KVCache(jnp.zeros(shape("k"), dtype), jnp.zeros(shape("v"), dtype))


def cache_axes(layout: str, kind: str) -> tuple[str, ...]:
  """Logical axes of a stacked cache's keys ("k") or values ("v") in `layout`."""
  return ("layers",) + {
      "bshd": ("batch", "cache_seq", "kv_heads", "head_dim"),
      "bhsd": ("batch", "kv_heads", "cache_seq", "head_dim"),
      "bhsd_kt": ("batch", "kv_heads", "head_dim", "cache_seq") if kind == "k" else (
          "batch", "kv_heads", "cache_seq", "head_dim")}[layout]


def is_per_layer(cache: KVCache) -> bool:
  return isinstance(cache.k, (tuple, list))


def unstack_cache(cache: KVCache) -> KVCache:
  """Per-layer caches: k, v as tuples of L arrays (unchanged when already unstacked)."""
  if is_per_layer(cache):
    return cache
  n = cache.k.shape[0]
  return KVCache(tuple(cache.k[i] for i in range(n)), tuple(cache.v[i] for i in range(n)))


def stack_cache(cache: KVCache) -> KVCache:
  """The inverse of `unstack_cache`: k, v stacked over layers [L, ...]."""
  if not is_per_layer(cache):
    return cache
  return KVCache(jnp.stack(cache.k), jnp.stack(cache.v))


def slot_axis(layout: str, kind: str) -> int:
  """The slot axis S of one layer's keys ("k") or values ("v") in `layout`."""
  return {"bshd": 1, "bhsd": 2, "bhsd_kt": 3 if kind == "k" else 2}[layout]


def grow_slots(cache: KVCache, layout: str, slots: int) -> KVCache:
  """A stacked or per-layer cache with `slots` slots: the old ones first, zeros after them."""
  def grow(x: jax.Array, kind: str, stacked: bool) -> jax.Array:
    axis = slot_axis(layout, kind) + int(stacked)
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, slots - x.shape[axis])
    return jnp.pad(x, pad)
  if is_per_layer(cache):
    return KVCache(tuple(grow(x, "k", False) for x in cache.k),
                   tuple(grow(x, "v", False) for x in cache.v))
  return KVCache(grow(cache.k, "k", True), grow(cache.v, "v", True))


def capacity(cache: KVCache, layout: str) -> int:
  """The number of slots S of a stacked or per-layer cache."""
  v = cache.v[0][None] if is_per_layer(cache) else cache.v  # [L, ...]
  return v.shape[2] if layout == "bshd" else v.shape[3]


def write_slots(cache: jax.Array, new: jax.Array, index, layout: str, kind: str,
                layer=None) -> jax.Array:
  """Write new [B, T, KVH, Dh] keys (kind "k") or values ("v") at slots [index, index + T) of
  one layer's cache, or of layer `layer` of a stacked cache (leading [L] axis)."""
  zero = jnp.zeros((), jnp.int32)
  if layout == "bhsd_kt" and kind == "k":
    new = new.transpose(0, 2, 3, 1)  # [B, KVH, Dh, T]
    start = (zero, zero, zero, index)
  elif layout in ("bhsd", "bhsd_kt"):
    new = jnp.swapaxes(new, 1, 2)  # [B, KVH, T, Dh]
    start = (zero, zero, index, zero)
  else:
    start = (zero, index, zero, zero)
  new = new.astype(cache.dtype)
  if layer is not None:
    new, start = new[None], (layer,) + start
  return jax.lax.dynamic_update_slice(cache, new, start)


def read_layer(cache: jax.Array, layer) -> jax.Array:
  """Layer `layer` of a stacked cache [L, ...] -> [...]."""
  return jax.lax.dynamic_index_in_dim(cache, layer, axis=0, keepdims=False)
