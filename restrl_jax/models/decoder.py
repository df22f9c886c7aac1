"""The decoder (Llama / Qwen2 / Qwen3) as a flax.linen module, and the functional API over its
parameter tree that the rest of the package calls (`init_params`, `logits`, `hidden_states`,
`unembed`, `forward_step`).

Parameter tree (`Decoder.init` unboxed; also what `load_hf` builds and checkpoints hold):

  embed/embedding            [V, D]
  layers/...                 one `DecoderLayer`'s tree (decoder_layer.py) with every leaf
                             stacked on a leading [L] axis: an `nn.scan` over the layers
  final_norm/scale           [D]
  lm_head/kernel             [D, V]             (absent when tie_word_embeddings)

`Decoder.init` returns every leaf boxed with its logical axes (`nn.with_logical_partitioning`;
the scan prepends "layers"); `param_logical_axes` / `param_shardings` read the mesh layout from
that tree, and `apply` takes the plain arrays.

How the layers run (`config.resolve_layer_loop`): the scan rolled ("scan", TPU/GPU) or fully
unrolled into static per-layer slices ("unroll", CPU). Params in the decode form
(`decode_form`: `layers_0` ... `layers_{L-1}`, prepared once outside the decode loop) run as
a `Decoder(unstacked=True)`, one `DecoderLayer` after the other.
"""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from restrl_jax import parallel
from restrl_jax.models import decode_form, kv_cache, layers
from restrl_jax.models.blocks import Embed, Projection, RMSNorm
from restrl_jax.models.config import ModelConfig, resolve_cache_layout, resolve_layer_loop
from restrl_jax.models.decoder_layer import DecoderLayer
from restrl_jax.models.kv_cache import KVCache
from restrl_jax.parallel import constrain

Params = dict[str, Any]

__all__ = ["Decoder", "init_params", "init_boxed_params", "abstract_params",
           "param_logical_axes", "param_shapes", "param_shardings", "hidden_states", "logits",
           "unembed", "forward_step", "resolve_layer_loop"]


LAYER_METHODS = ("__call__", "step", "shared_prompt")  # DecoderLayer's scan bodies


def _layer_stack(layer: type[nn.Module], num_layers: int, unroll: bool) -> type[nn.Module]:
  """`layer` scanned over `num_layers` stacked copies of its params (leading axis "layers"),
  for each of its scan-body methods: `__call__` (cos, sin, mask broadcast), `step` (the layer
  ids scanned; cos, sin, mask, cache index broadcast) and `shared_prompt` (its rotations and
  masks broadcast)."""
  common = dict(variable_axes={"params": 0}, split_rngs={"params": True}, length=num_layers,
                unroll=num_layers if unroll else 1,
                metadata_params={nn.PARTITION_NAME: "layers"})
  return nn.scan(layer, methods={
      "__call__": dict(common, in_axes=(nn.broadcast,) * 3),
      "step": dict(common, in_axes=(0,) + (nn.broadcast,) * 4),
      "shared_prompt": dict(common, in_axes=(nn.broadcast,) * 6)})


def causal_mask(attention_mask: jax.Array | None, tokens: jax.Array):
  """positions [B, T] (cumsum(mask) - 1, clipped at 0) and the attention mask [B, T, T] of
  causal self-attention over tokens [B, T] with padding mask `attention_mask` [B, T]."""
  b, t = tokens.shape
  if attention_mask is None:
    attention_mask = jnp.ones((b, t), bool)
  if attention_mask.shape != (b, t):
    raise ValueError(f"attention_mask shape {attention_mask.shape} != tokens shape {(b, t)}")
  m = attention_mask.astype(bool)
  positions = jnp.maximum(jnp.cumsum(m.astype(jnp.int32), axis=1) - 1, 0)
  causal = jnp.tril(jnp.ones((t, t), bool))
  return positions, causal[None] & m[:, None, :]


def _check_step_inputs(cache: KVCache, tokens, positions, kv_mask, layout: str) -> None:
  b, t = tokens.shape
  cap = kv_cache.capacity(cache, layout)
  if positions.shape != (b, t):
    raise ValueError(f"forward_step: positions shape {positions.shape} != tokens {(b, t)}")
  if kv_mask.shape != (b, cap):
    shape = cache.k[0].shape if kv_cache.is_per_layer(cache) else cache.k.shape
    raise ValueError(f"forward_step: kv_mask shape {kv_mask.shape} != (batch, cache slots) "
                     f"{(b, cap)}; cache.k shape {shape} (layout {layout})")


class Decoder(nn.Module):
  """Embedding, L pre-norm decoder layers, final RMSNorm and the (tied or own) LM head.

  `remat` rematerialises each layer in the backward pass (training memory); `unroll` unrolls
  the layer scan; `unstacked` runs per-layer submodules `layers_i` instead of the scan (the
  decode form's params, `decode_form`)."""
  config: ModelConfig
  init_std: float = 0.02
  remat: bool = False
  unroll: bool = False
  unstacked: bool = False

  def setup(self):
    c = self.config
    self.embed = Embed(c.vocab_size, c.hidden_size, c.dtype, c.param_dtype, self.init_std)
    layer = nn.remat(DecoderLayer, methods=LAYER_METHODS) if self.remat else DecoderLayer
    if self.unstacked:
      self.layers = [layer(c, self.init_std) for _ in range(c.num_layers)]  # layers_0, ...
    else:
      self.layers = _layer_stack(layer, c.num_layers, self.unroll)(c, self.init_std)
    self.final_norm = RMSNorm(c.hidden_size, "embed", c.rms_norm_eps, c.param_dtype)
    if not c.tie_word_embeddings:
      self.lm_head = Projection((c.hidden_size, c.vocab_size), ("embed", "vocab"),
                                dtype=c.dtype, param_dtype=c.param_dtype,
                                out_dtype=jnp.float32, init_std=self.init_std)

  def __call__(self, tokens: jax.Array, attention_mask: jax.Array | None = None) -> jax.Array:
    """Next-token logits [B, T, V] float32 for tokens [B, T] (left padding supported)."""
    return self.unembed(self.hidden_states(tokens, attention_mask))

  def hidden_states(self, tokens: jax.Array,
                    attention_mask: jax.Array | None = None) -> jax.Array:
    """Final-normed hidden states [B, T, D] for tokens [B, T]."""
    positions, mask = causal_mask(attention_mask, tokens)                 # positions < T
    cos, sin = layers.rope_cos_sin(positions, layers.rope_inv_freq(self.config), tokens.shape[1])
    x = self.embed(tokens)                                                 # [B, T, D]
    if self.unstacked:
      for layer in self.layers:
        x, _ = layer(x, cos, sin, mask)
    else:
      x, _ = self.layers(x, cos, sin, mask)
    return self.final_norm(x)

  def completion_states(self, prompt_tokens: jax.Array, completion_tokens: jax.Array,
                        rotations: tuple[jax.Array, ...], self_mask: jax.Array,
                        cross_mask: jax.Array) -> jax.Array:
    """Final-normed states [R, N, D] at the positions that predict the completion tokens
    [R, N], the B prompts [B, P] computed once for their groups of share = R / B rows
    (`models.completion_states` builds the inputs: rotations = (cos_p, sin_p [B, P, Dh],
    cos_c, sin_c [R, N, Dh]); masks as in `DecoderLayer.shared_prompt`)."""
    carry = (self.embed(prompt_tokens), self.embed(completion_tokens))    # [B, P, D], [R, N, D]
    if self.unstacked:
      for layer in self.layers:
        carry, _ = layer.shared_prompt(carry, *rotations, self_mask, cross_mask)
    else:
      carry, _ = self.layers.shared_prompt(carry, *rotations, self_mask, cross_mask)
    x_p, x_c = carry
    share = x_c.shape[0] // x_p.shape[0]
    last_prompt = jnp.repeat(x_p[:, -1:], share, axis=0)                   # [R, 1, D]
    return self.final_norm(jnp.concatenate([last_prompt, x_c[:, :-1]], axis=1))  # [R, N, D]

  def unembed(self, h: jax.Array) -> jax.Array:
    """Logits [B, T, V] float32 from final-normed hidden states h [B, T, D], as one 2-D
    matmul (`blocks.dense`); slice h, not the logits, when only some positions are needed."""
    b, t, d = h.shape
    flat = h.reshape(b * t, d)                                             # [B * T, D]
    out = self.embed.attend(flat) if self.config.tie_word_embeddings else self.lm_head(flat)
    return constrain(out.reshape(b, t, -1), ("batch", "seq", "vocab"))

  def step(self, tokens: jax.Array, positions: jax.Array, cache: KVCache, cache_index,
           kv_mask: jax.Array) -> tuple[jax.Array, KVCache]:
    """The incremental forward of `forward_step` (see there)."""
    c = self.config
    layout = resolve_cache_layout(c)
    _check_step_inputs(cache, tokens, positions, kv_mask, layout)
    t, cap = tokens.shape[1], kv_mask.shape[1]
    index = jnp.asarray(cache_index, jnp.int32)
    slots = jnp.arange(cap, dtype=jnp.int32)
    causal = slots[None, :] <= index + jnp.arange(t, dtype=jnp.int32)[:, None]  # [T, S]
    mask = kv_mask.astype(bool)[:, None, :] & causal[None]                     # [B, T, S]
    cos, sin = layers.rope_cos_sin(positions, layers.rope_inv_freq(c))        # [B, T, Dh]
    x = self.embed(tokens)                                                     # [B, T, D]
    if self.unstacked:
      per_layer = kv_cache.unstack_cache(cache)
      ks, vs = [], []
      for layer, ck, cv in zip(self.layers, per_layer.k, per_layer.v):
        (x, ck, cv), _ = layer.step((x, ck, cv), None, cos, sin, mask, index)
        ks.append(ck)
        vs.append(cv)
      out = KVCache(tuple(ks), tuple(vs))
      cache = out if kv_cache.is_per_layer(cache) else kv_cache.stack_cache(out)
    else:
      stacked = kv_cache.stack_cache(cache)
      layer_ids = jnp.arange(c.num_layers, dtype=jnp.int32)
      (x, ck, cv), _ = self.layers.step((x, stacked.k, stacked.v), layer_ids, cos, sin, mask,
                                        index)
      cache = KVCache(ck, cv)
    return self.unembed(self.final_norm(x)), cache


# -- parameters ----------------------------------------------------------------------------

_INIT_TOKENS = np.zeros((1, 1), np.int32)  # [B, T]: init only needs the shapes of the params

# The config fields the parameter tree depends on; `_structure_of` resets the others (compute
# dtype, cache layout, RoPE, token ids, ...), so configs that differ only there share one
# compiled init.
_STRUCTURE_FIELDS = ("family", "vocab_size", "hidden_size", "num_layers", "num_heads",
                     "num_kv_heads", "head_dim", "intermediate_size", "tie_word_embeddings",
                     "attention_bias", "qk_norm", "param_dtype")


def _structure_of(config: ModelConfig) -> ModelConfig:
  return ModelConfig(**{name: getattr(config, name) for name in _STRUCTURE_FIELDS})


def boxed_init(config: ModelConfig, rng: jax.Array, std: float = 0.02) -> Params:
  """`Decoder.init`'s params, each leaf boxed (`nn.LogicallyPartitioned`) with its axes."""
  return Decoder(config, init_std=std).init(rng, _INIT_TOKENS)["params"]


@functools.lru_cache(maxsize=None)
def _jitted_init(structure: ModelConfig, std: float):
  return jax.jit(functools.partial(boxed_init, structure, std=std))


def init_boxed_params(config: ModelConfig, rng: jax.Array, std: float = 0.02) -> Params:
  """Random parameters from `Decoder.init`, boxed with their logical axes: N(0, std)
  kernels/embeddings, unit norm scales, zero biases. One compiled init per parameter
  structure and std (each normal draw is a threefry kernel: seconds of XLA:CPU compile)."""
  return _jitted_init(_structure_of(config), float(std))(rng)


def init_params(config: ModelConfig, rng: jax.Array, std: float = 0.02) -> Params:
  """`init_boxed_params` unboxed: the plain parameter tree."""
  return nn.meta.unbox(init_boxed_params(config, rng, std))


def abstract_params(config: ModelConfig) -> Params:
  """`boxed_init` as ShapeDtypeStructs (nothing computed): shapes, dtypes, logical axes."""
  return _abstract_params(_structure_of(config))


@functools.lru_cache(maxsize=None)
def _abstract_params(structure: ModelConfig) -> Params:
  return jax.eval_shape(functools.partial(boxed_init, structure), jax.random.key(0))


def param_logical_axes(config: ModelConfig) -> dict:
  """Logical axis names per parameter, read from `Decoder.init`'s boxed tree."""
  return parallel.logical_axes(abstract_params(config))


def param_shapes(config: ModelConfig) -> dict:
  return jax.tree.map(lambda x: tuple(x.shape), nn.meta.unbox(abstract_params(config)))


def param_shardings(config: ModelConfig, mesh: jax.sharding.Mesh) -> dict:
  """NamedShardings of the params on `mesh`, from their logical axes (`parallel.LOGICAL_RULES`;
  a dim the mesh axes do not divide stays unsharded)."""
  return parallel.boxed_shardings(abstract_params(config), mesh)


# -- the functional API ----------------------------------------------------------------------

def _decoder(config: ModelConfig, params: Params, layer_loop: str = "auto",
             remat: bool = False) -> Decoder:
  """The `Decoder` that applies `params` (stacked or decode form) with `layer_loop`."""
  loop = resolve_layer_loop(layer_loop, config)
  unstacked = decode_form.is_unstacked(params)
  explicit = layer_loop if layer_loop != "auto" else config.layer_loop
  if unstacked and explicit == "scan":
    raise ValueError("layer_loop='scan' needs stacked params['layers'], got per-layer params "
                     "(layers_0, ...: the decode form)")
  return Decoder(config, remat=remat, unroll=loop == "unroll", unstacked=unstacked)


def hidden_states(config: ModelConfig, params: Params, tokens: jax.Array,
                  attention_mask: jax.Array | None = None, remat: bool = False,
                  layer_loop: str = "auto") -> jax.Array:
  """Final-normed hidden states [B, T, D] for tokens [B, T] (left padding supported)."""
  model = _decoder(config, params, layer_loop, remat)
  return model.apply({"params": params}, tokens, attention_mask, method="hidden_states")


def logits(config: ModelConfig, params: Params, tokens: jax.Array,
           attention_mask: jax.Array | None = None, remat: bool = False,
           layer_loop: str = "auto") -> jax.Array:
  """Next-token logits [B, T, V] float32 for tokens [B, T]."""
  return _decoder(config, params, layer_loop, remat).apply({"params": params}, tokens,
                                                           attention_mask)


def unembed(config: ModelConfig, params: Params, h: jax.Array) -> jax.Array:
  """Logits [B, T, V] float32 from final-normed hidden states h [B, T, D] (`hidden_states`)."""
  return _decoder(config, params).apply({"params": params}, h, method="unembed")


def forward_step(config: ModelConfig, params: Params, tokens: jax.Array, positions: jax.Array,
                 cache: KVCache, cache_index: jax.Array, kv_mask: jax.Array,
                 layer_loop: str = "auto") -> tuple[jax.Array, KVCache]:
  """Incremental forward for prefill (T = prompt length) and decode (T = 1).

  Writes the new keys/values at cache slots [cache_index, cache_index + T); query t attends to
  slot s iff kv_mask[b, s] and s <= cache_index + t. Returns logits [B, T, V] float32 and the
  updated cache: stacked after the layer scan; per layer (`kv_cache.unstack_cache`) or stacked
  like the given one for decode-form params.
  """
  return _decoder(config, params, layer_loop).apply(
      {"params": params}, tokens, positions, cache, cache_index, kv_mask, method="step")
