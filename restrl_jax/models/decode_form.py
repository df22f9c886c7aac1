"""The decode form of the params: what the CPU decode loop reads on every generated token.

Params proper (`Decoder.init`, `load_hf`, checkpoints, train states) keep the layer weights
stacked under `layers` ([L, ...] per leaf). A decode step on CPU instead runs its layers as a
Python loop over separate weights: slicing layer i out of the stacked arrays inside the decode
`while_loop` would copy every layer's weights on every token. The decode form is prepared once
per weight update, outside that loop (`Sampler`):

  layers_0 ... layers_{L-1}   one layer's weights each (no [L] axis): the submodule names of a
                              `Decoder(unstacked=True)`, which runs them one after the other;
  kernel_t [N, K]             in place of `kernel` for large projections (`decode_params`).
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np

Params = dict[str, Any]

# Kernels from this size up are transposed for decoding: on 2 CPU cores the NT matmul was
# faster for the ~100M config's 1.5M-element kernels and slower for the demo's 50K-element ones
# (`bench/sampler.py --decode_transpose_min 0` vs `... 1000000000`, docs/benchmarks.md).
TRANSPOSE_MIN_ELEMENTS = 1 << 18

PROJECTIONS = (("attn", "q"), ("attn", "k"), ("attn", "v"), ("attn", "o"), ("mlp", "gate"),
               ("mlp", "up"), ("mlp", "down"))


def layer_name(i: int) -> str:
  """The key of layer i's weights in the decode form (flax's name for a list submodule)."""
  return f"layers_{i}"


def is_unstacked(params: Params) -> bool:
  """True for the decode form (per-layer weights), False for stacked params."""
  return "layers" not in params and layer_name(0) in params


def unstack_layers(params: Params) -> Params:
  """`params` with the stacked `layers` split into `layers_0` ... `layers_{L-1}` (unchanged
  when already so). Under jit, keep this out of loops: each slice is a copy."""
  if is_unstacked(params):
    return params
  stacked = params["layers"]
  num_layers = jax.tree.leaves(stacked)[0].shape[0]
  out = {name: value for name, value in params.items() if name != "layers"}
  for i in range(num_layers):
    out[layer_name(i)] = jax.tree.map(lambda a, i=i: a[i], stacked)
  return out


def num_layers(params: Params) -> int:
  """The number of layers of stacked or decode-form params."""
  if not is_unstacked(params):
    return jax.tree.leaves(params["layers"])[0].shape[0]
  return sum(1 for name in params if name.startswith("layers_"))


def _transposed(entry: dict, in_dims: int, min_elements: int) -> dict:
  """A projection's params with `kernel` [K..., N...] stored as `kernel_t` [N, K] when it has
  at least `min_elements` entries."""
  if entry["kernel"].size < min_elements:
    return entry
  entry = dict(entry)
  kernel = entry.pop("kernel")
  k = int(np.prod(kernel.shape[:in_dims]))
  return {**entry, "kernel_t": kernel.reshape(k, -1).T}


def decode_params(params: Params, min_elements: int = TRANSPOSE_MIN_ELEMENTS) -> Params:
  """Params for generation on CPU: per layer (`unstack_layers`), each projection kernel (and an
  untied lm_head) of at least `min_elements` entries stored transposed as `kernel_t` [N, K]
  (see `blocks.Projection`). A one-off copy per weight update; the decoder accepts both forms."""
  params = unstack_layers(params)

  def layer(lp: Params) -> Params:
    lp = {**lp, "attn": dict(lp["attn"]), "mlp": dict(lp["mlp"])}
    for block, name in PROJECTIONS:
      if "kernel" in lp[block][name]:
        lp[block][name] = _transposed(lp[block][name], 2 if name == "o" else 1, min_elements)
    return lp

  out = {name: layer(value) if name.startswith("layers_") else value
         for name, value in params.items()}
  if "lm_head" in params and "kernel" in params["lm_head"]:
    out["lm_head"] = _transposed(params["lm_head"], 1, min_elements)
  return out
