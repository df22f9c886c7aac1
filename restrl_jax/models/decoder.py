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

How the layers run (`layer_loop`): "scan" is a rolled `jax.lax.scan` over the stacked arrays
(one compiled layer body: fast compiles for 7B models on TPU/GPU); "unroll" is a Python loop over
per-layer arrays (`unstack_layers`). On CPU, XLA copies each layer's weight slice inside a scan
and keeps the scan's saved activations in stacked [L, ...] buffers (dynamic slices/updates and
their zero fills in the backward pass), so "auto" unrolls there and scans elsewhere; a
`layer_loop` argument, then `ModelConfig.layer_loop`, fixes one (`memory_plan` compiles the TPU
"scan" on CPU). The decode
loop unstacks the weights and the KV cache ONCE, outside its while loop (`sampling/decode.py`).
`params["layers"]` may be given already unstacked: a tuple of per-layer dicts (no [L] axis;
`layer_layout`), the form train states keep on CPU (`params_layout`).
"""
from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from restrl_jax.models import layer_layout, layers, matmul
from restrl_jax.models.config import LAYER_LOOPS, ModelConfig, resolve_cache_layout
from restrl_jax.parallel import constrain

Params = dict[str, Any]


class KVCache(NamedTuple):
  """Keys/values stacked over layers, [L, ...] + one layer's layout (`resolve_cache_layout`:
  e.g. [L, B, KVH, S, Dh] for "bhsd", keys [L, B, KVH, Dh, S] for "bhsd_kt"); or, per layer
  (`unstack_cache`), tuples of L arrays in the layer layout."""
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


def param_logical_axes(config: ModelConfig, like: Params | None = None) -> dict:
  """Logical axis names per parameter: the structure of `init_params` (stacked layers), or of
  `like` when given (e.g. per-layer params, `layer_layout.match_axes`)."""
  axes = jax.tree.map(lambda s: s[1], _param_specs(config), is_leaf=_is_spec)
  return axes if like is None else layer_layout.match_axes(axes, like)


def param_shapes(config: ModelConfig) -> dict:
  return jax.tree.map(lambda s: s[0], _param_specs(config), is_leaf=_is_spec)


def unstack_layers(params: Params) -> Params:
  """`params` with `layers` as a tuple of per-layer dicts (`layer_layout`, "per_layer");
  unchanged when already so. Under jit, keep this out of loops: each slice is a copy."""
  return layer_layout.to_layout(params, "per_layer")


_PROJECTIONS = (("attn", "q"), ("attn", "k"), ("attn", "v"), ("attn", "o"), ("mlp", "gate"),
                ("mlp", "up"), ("mlp", "down"))


# Kernels from this size up are transposed for decoding: on 2 CPU cores the NT matmul was
# faster for the ~100M config's 1.5M-element kernels and slower for the demo's 50K-element ones
# (`bench/sampler.py --decode_transpose_min 0` vs `... 1000000000`, docs/benchmarks.md).
TRANSPOSE_MIN_ELEMENTS = 1 << 18


def decode_params(params: Params, min_elements: int = TRANSPOSE_MIN_ELEMENTS) -> Params:
  """Params for generation on CPU: per layer (`unstack_layers`), each projection kernel (and an
  untied lm_head) of at least `min_elements` entries stored transposed as `kernel_t` [N, K] (see
  `layers.project`). A one-off copy per weight update; the forward functions accept both forms."""
  params = unstack_layers(params)

  def transposed(entry: dict, in_dims: int) -> dict:
    if entry["kernel"].size < min_elements:
      return entry
    entry = dict(entry)
    kernel = entry.pop("kernel")
    k = int(np.prod(kernel.shape[:in_dims]))
    return {**entry, "kernel_t": kernel.reshape(k, -1).T}

  def layer(lp: Params) -> Params:
    lp = {**lp, "attn": dict(lp["attn"]), "mlp": dict(lp["mlp"])}
    for block, name in _PROJECTIONS:
      if "kernel" in lp[block][name]:
        lp[block][name] = transposed(lp[block][name], 2 if name == "o" else 1)
    return lp

  out = {**params, "layers": tuple(layer(lp) for lp in params["layers"])}
  if "lm_head" in params and "kernel" in params["lm_head"]:
    out["lm_head"] = transposed(params["lm_head"], 1)
  return out


def resolve_layer_loop(layer_loop: str = "auto", config: ModelConfig | None = None) -> str:
  """The loop the layers run in: `layer_loop` if it is not "auto", else `config.layer_loop` if
  that is not, else "unroll" on CPU and "scan" on TPU/GPU."""
  if layer_loop not in LAYER_LOOPS:
    raise ValueError(f"layer_loop must be one of {LAYER_LOOPS}, got {layer_loop!r}")
  if layer_loop == "auto" and config is not None:
    layer_loop = config.layer_loop
  if layer_loop != "auto":
    return layer_loop
  return "unroll" if jax.default_backend() == "cpu" else "scan"


def _is_unstacked(params: Params) -> bool:
  return layer_layout.layout_of(params) == "per_layer"


def params_layout(config: ModelConfig, layer_loop: str = "auto") -> str:
  """The layer layout (`layer_layout.LAYOUTS`) the resolved loop consumes without conversion:
  "per_layer" for "unroll", "stacked" for "scan". Train states keep their params (and so the
  optimizer's moments) in it."""
  return "per_layer" if resolve_layer_loop(layer_loop, config) == "unroll" else "stacked"


def _loop_params(config: ModelConfig, params: Params, layer_loop: str) -> Params:
  """Params in the form the chosen loop consumes (per-layer for "unroll", stacked for "scan")."""
  explicit = layer_loop if layer_loop != "auto" else config.layer_loop
  if _is_unstacked(params):
    if explicit == "scan":
      raise ValueError("layer_loop='scan' needs stacked params['layers'], got a tuple of layers")
    return params
  return layer_layout.to_layout(params, params_layout(config, layer_loop))


def _embed(config: ModelConfig, params: Params, tokens: jax.Array) -> jax.Array:
  if tokens.ndim != 2:
    raise ValueError(f"tokens must be [B, T], got shape {tokens.shape}")
  x = jnp.take(params["embed"]["embedding"], tokens, axis=0).astype(config.dtype)  # [B, T, D]
  return constrain(x, ("batch", "seq", "act_embed"))


def _attention_inputs(config: ModelConfig, lp: Params, x: jax.Array, cos: jax.Array,
                      sin: jax.Array):
  """One layer's normed, projected and rotated q [B, T, H, Dh] and k, v [B, T, KVH, Dh]."""
  h = layers.rms_norm(x, lp["attn_norm"]["scale"], config.rms_norm_eps)
  q, k, v = layers.qkv_projection(config, lp["attn"], h, config.dtype)
  return layers.apply_rope(q, cos, sin), layers.apply_rope(k, cos, sin), v


def _layer_output(config: ModelConfig, lp: Params, x: jax.Array, attn: jax.Array) -> jax.Array:
  """The residual stream x [B, T, D] after one layer's attention output and MLP."""
  x = x + layers.attention_output(lp["attn"], attn, config.dtype)
  h = layers.rms_norm(x, lp["mlp_norm"]["scale"], config.rms_norm_eps)
  x = x + layers.swiglu_mlp(lp["mlp"], h, config.dtype)
  return constrain(x, ("batch", "seq", "act_embed"))


def _unembed(config: ModelConfig, params: Params, h: jax.Array) -> jax.Array:
  """h [B, T, D] (final-normed) -> logits [B, T, V] float32, as one 2-D matmul (see
  `layers.dense`)."""
  b, t, d = h.shape
  if config.tie_word_embeddings or "kernel_t" in params["lm_head"]:  # [V, D]
    table = (params["embed"]["embedding"] if config.tie_word_embeddings else
             params["lm_head"]["kernel_t"])
    out = matmul.linear(h.reshape(b * t, d), table, config.dtype, layout="nk",
                        out_dtype=jnp.float32)
  else:
    out = matmul.linear(h.reshape(b * t, d), params["lm_head"]["kernel"], config.dtype,
                        out_dtype=jnp.float32)
  return constrain(out.reshape(b, t, -1), ("batch", "seq", "vocab"))


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
                  attention_mask: jax.Array | None = None, remat: bool = False,
                  layer_loop: str = "auto") -> jax.Array:
  """Final-normed hidden states [B, T, D] for tokens [B, T] (left padding supported).

  `remat=True` rematerialises each layer in the backward pass (training memory); `layer_loop`
  as in the module docstring.
  """
  params = _loop_params(config, params, layer_loop)
  positions, mask = _full_mask(attention_mask, tokens)                   # positions < T
  cos, sin = layers.rope_cos_sin(positions, layers.rope_inv_freq(config), tokens.shape[1])
  x = _embed(config, params, tokens)

  def body(x, lp):
    q, k, v = _attention_inputs(config, lp, x, cos, sin)
    # keys/values head-major [B, KVH, T, Dh]: batch-leading matmuls in the attention (on CPU
    # the grouped einsum straight over [B, T, KVH, Dh] made the backward pass several x slower)
    attn = layers.attend(q, jnp.swapaxes(k, 1, 2), jnp.swapaxes(v, 1, 2), mask, "bhsd",
                         causal=True)
    return _layer_output(config, lp, x, attn), None

  if remat:
    body = jax.checkpoint(body)
  if _is_unstacked(params):
    for lp in params["layers"]:
      x, _ = body(x, lp)
  else:
    x, _ = jax.lax.scan(body, x, params["layers"])
  return layers.rms_norm(x, params["final_norm"]["scale"], config.rms_norm_eps)


def logits(config: ModelConfig, params: Params, tokens: jax.Array,
           attention_mask: jax.Array | None = None, remat: bool = False,
           layer_loop: str = "auto") -> jax.Array:
  """Next-token logits [B, T, V] float32 for tokens [B, T]."""
  h = hidden_states(config, params, tokens, attention_mask, remat, layer_loop)
  return _unembed(config, params, h)


def unembed(config: ModelConfig, params: Params, h: jax.Array) -> jax.Array:
  """Logits [B, T, V] float32 from final-normed hidden states h [B, T, D] (`hidden_states`);
  slice h, not the logits, when only some positions are needed."""
  return _unembed(config, params, h)


def cache_dtype(config: ModelConfig) -> jnp.dtype:
  """The KV cache's dtype: the compute dtype, except float32 for 16-bit compute in the CPU
  layout ("bhsd_kt", what "auto" resolves to on CPU).

  XLA:CPU's float normalisation runs a bf16 `dynamic_update_slice` as convert-to-f32, update,
  convert back, over the WHOLE cache: 24 whole-cache round trips per decode step at ~100M
  (12 layers, keys and values). A float32 cache is updated in place, and a decode step reads the cache once either way
  (small next to the weights it reads). A layout set explicitly for TPU/GPU ("bshd", as
  `memory_plan` compiles on CPU) keeps the compute dtype.
  """
  if resolve_cache_layout(config) == "bhsd_kt" and matmul.is_low_precision_dtype(config.dtype):
    return jnp.dtype(jnp.float32)
  return jnp.dtype(config.dtype)


def init_cache(config: ModelConfig, batch_size: int, max_len: int, dtype=None) -> KVCache:
  """An all-zero cache with capacity `max_len` in the config's resolved layout, in `dtype`
  (default `cache_dtype(config)`)."""
  layout = resolve_cache_layout(config)
  shape = lambda kind: (config.num_layers,) + cache_layer_shape(
      layout, kind, batch_size, max_len, config.num_kv_heads, config.head_dim)
  dtype = jnp.dtype(dtype or cache_dtype(config))
  return KVCache(jnp.zeros(shape("k"), dtype), jnp.zeros(shape("v"), dtype))


def cache_layer_shape(layout: str, kind: str, batch: int, slots: int, kv_heads: int,
                      head_dim: int) -> tuple[int, ...]:
  """Shape of one layer's keys (kind "k") or values ("v") in `layout`."""
  return {"bshd": (batch, slots, kv_heads, head_dim), "bhsd": (batch, kv_heads, slots, head_dim),
          "bhsd_kt": (batch, kv_heads, head_dim, slots) if kind == "k" else (
              batch, kv_heads, slots, head_dim)}[layout]


def cache_axes(layout: str, kind: str) -> tuple[str, ...]:
  """Logical axes of a stacked cache's keys ("k") or values ("v") in `layout`."""
  return ("layers",) + {
      "bshd": ("batch", "cache_seq", "kv_heads", "head_dim"),
      "bhsd": ("batch", "kv_heads", "cache_seq", "head_dim"),
      "bhsd_kt": ("batch", "kv_heads", "head_dim", "cache_seq") if kind == "k" else (
          "batch", "kv_heads", "cache_seq", "head_dim")}[layout]


def unstack_cache(cache: KVCache) -> KVCache:
  """Per-layer caches: k, v as tuples of L arrays (unchanged when already unstacked)."""
  if isinstance(cache.k, (tuple, list)):
    return cache
  n = cache.k.shape[0]
  return KVCache(tuple(cache.k[i] for i in range(n)), tuple(cache.v[i] for i in range(n)))


def stack_cache(cache: KVCache) -> KVCache:
  """The inverse of `unstack_cache`: k, v stacked over layers [L, ...]."""
  if not isinstance(cache.k, (tuple, list)):
    return cache
  return KVCache(jnp.stack(cache.k), jnp.stack(cache.v))


def _write_slots(cache: jax.Array, new: jax.Array, index, layout: str, kind: str,
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


def _cache_capacity(cache: KVCache, layout: str) -> int:
  v = cache.v[0][None] if isinstance(cache.v, (tuple, list)) else cache.v
  return v.shape[2] if layout == "bshd" else v.shape[3]


def _check_step_inputs(cache: KVCache, tokens, positions, kv_mask, layout: str) -> None:
  b, t = tokens.shape
  cap = _cache_capacity(cache, layout)
  if positions.shape != (b, t):
    raise ValueError(f"forward_step: positions shape {positions.shape} != tokens {(b, t)}")
  if kv_mask.shape != (b, cap):
    shape = cache.k[0].shape if isinstance(cache.k, (tuple, list)) else cache.k.shape
    raise ValueError(f"forward_step: kv_mask shape {kv_mask.shape} != (batch, cache slots) "
                     f"{(b, cap)}; cache.k shape {shape} (layout {layout})")


def forward_step(config: ModelConfig, params: Params, tokens: jax.Array, positions: jax.Array,
                 cache: KVCache, cache_index: jax.Array, kv_mask: jax.Array,
                 layer_loop: str = "auto") -> tuple[jax.Array, KVCache]:
  """Incremental forward for prefill (T = prompt length) and decode (T = 1).

  Writes the new keys/values at cache slots [cache_index, cache_index + T); query t attends to
  slot s iff kv_mask[b, s] and s <= cache_index + t. Returns logits [B, T, V] float32 and the
  updated cache, stacked or per-layer (`unstack_cache`) like the given one.
  """
  layout = resolve_cache_layout(config)
  _check_step_inputs(cache, tokens, positions, kv_mask, layout)
  params = _loop_params(config, params, layer_loop)
  t, cap = tokens.shape[1], kv_mask.shape[1]
  index = jnp.asarray(cache_index, jnp.int32)
  slots = jnp.arange(cap, dtype=jnp.int32)
  causal = slots[None, :] <= index + jnp.arange(t, dtype=jnp.int32)[:, None]  # [T, S]
  mask = kv_mask.astype(bool)[:, None, :] & causal[None]  # [B, T, S]
  cos, sin = layers.rope_cos_sin(positions, layers.rope_inv_freq(config))
  x = _embed(config, params, tokens)
  step = functools.partial(_layers_step, config, x=x, cos=cos, sin=sin, mask=mask, index=index,
                           layout=layout)
  if _is_unstacked(params):
    x, cache = step(params["layers"], cache)
  else:
    x, cache = step(params["layers"], stack_cache(cache), scan=True)
  h = layers.rms_norm(x, params["final_norm"]["scale"], config.rms_norm_eps)
  return _unembed(config, params, h), cache


def _layers_step(config: ModelConfig, layer_params, cache: KVCache, *, x, cos, sin, mask, index,
                 layout: str, scan: bool = False) -> tuple[jax.Array, KVCache]:
  """All layers of `forward_step`: a scan over stacked params and cache, or a Python loop over
  per-layer params (the cache is used per layer and returned in the form it came in)."""
  k_axes, v_axes = cache_axes(layout, "k"), cache_axes(layout, "v")
  if scan:
    def body(carry, inputs):
      x, ck, cv = carry
      lp, i = inputs
      q, k, v = _attention_inputs(config, lp, x, cos, sin)
      ck = constrain(_write_slots(ck, k, index, layout, "k", layer=i), k_axes)
      cv = constrain(_write_slots(cv, v, index, layout, "v", layer=i), v_axes)
      attn = layers.attend(q, _read_layer(ck, i), _read_layer(cv, i), mask, layout)
      return (_layer_output(config, lp, x, attn), ck, cv), None

    layer_ids = jnp.arange(config.num_layers, dtype=jnp.int32)
    (x, ck, cv), _ = jax.lax.scan(body, (x, cache.k, cache.v), (layer_params, layer_ids))
    return x, KVCache(ck, cv)
  stacked = not isinstance(cache.k, (tuple, list))
  per_layer = unstack_cache(cache)
  ks, vs = [], []
  for lp, ck, cv in zip(layer_params, per_layer.k, per_layer.v):
    q, k, v = _attention_inputs(config, lp, x, cos, sin)
    ck = constrain(_write_slots(ck, k, index, layout, "k"), k_axes[1:])
    cv = constrain(_write_slots(cv, v, index, layout, "v"), v_axes[1:])
    x = _layer_output(config, lp, x, layers.attend(q, ck, cv, mask, layout))
    ks.append(ck)
    vs.append(cv)
  out = KVCache(tuple(ks), tuple(vs))
  return x, (stack_cache(out) if stacked else out)


def _read_layer(cache: jax.Array, layer) -> jax.Array:
  return jax.lax.dynamic_index_in_dim(cache, layer, axis=0, keepdims=False)
