"""Where a model's layer weights sit in its pytree: stacked on a leading [L] axis, or per layer.

  "stacked":   params["layers"] is ONE dict of [L, ...] arrays: what `init_params` and `load_hf`
               return, what a `jax.lax.scan` over the layers consumes (TPU/GPU), what checkpoints
               and HF folders hold.
  "per_layer": params["layers"] is a tuple of L dicts of arrays without the [L] axis: what the
               unrolled layer loop consumes (CPU, `decoder.resolve_layer_loop`).

A train state kept per layer on CPU spares every step the slices of the stacked weights in the
forward pass and the assembly of stacked gradients, moments and updates after it. Measured, the
gain is small and within this machine's noise at ~100M bfloat16 (`bench/host_memory.py
--layout stacked` times the stacked form against it).

The conversions act on every dict with a "layers" entry anywhere in a pytree -- params, the
optimizer's moments (which mirror them), value params {"backbone": ..., "head": ...} -- so a
whole TrainState converts at once. They work on numpy arrays (views, no copies), on jax arrays
(copies) and under `jax.jit`.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

LAYOUTS = ("stacked", "per_layer")


def _is_layered(x: Any) -> bool:
  return isinstance(x, dict) and "layers" in x


def _is_per_layer(layers: Any) -> bool:
  return isinstance(layers, (tuple, list))


def layout_of(tree: Any) -> str | None:
  """"stacked" / "per_layer" for the first dict with a "layers" entry in `tree`, None if none."""
  for node in jax.tree.leaves(tree, is_leaf=_is_layered):
    if _is_layered(node):
      return "per_layer" if _is_per_layer(node["layers"]) else "stacked"
  return None


def _num_layers(stacked: dict) -> int:
  return jax.tree.leaves(stacked)[0].shape[0]


def _stack(arrays: list) -> Any:
  if all(isinstance(a, np.ndarray) for a in arrays):
    return np.stack(arrays)
  if isinstance(arrays[0], jax.ShapeDtypeStruct):
    return _stack_structs(arrays)
  return jnp.stack(arrays)


def _stack_structs(structs: list[jax.ShapeDtypeStruct]) -> jax.ShapeDtypeStruct:
  """The abstract stacked array of per-layer abstract arrays (a checkpoint's restore target):
  a named sharding gains an unsharded leading axis; a single-device one stays."""
  first = structs[0]
  sharding = first.sharding
  if isinstance(sharding, jax.sharding.NamedSharding):
    spec = tuple(sharding.spec) + (None,) * (len(first.shape) - len(sharding.spec))
    sharding = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec(None, *spec))
  return jax.ShapeDtypeStruct((len(structs),) + tuple(first.shape), first.dtype,
                              sharding=sharding)


def _convert(node: Any, layout: str) -> Any:
  if not _is_layered(node):
    return node
  layers = node["layers"]
  if layout == "per_layer" and not _is_per_layer(layers):
    layers = tuple(jax.tree.map(lambda a, i=i: a[i], layers) for i in range(_num_layers(layers)))
  elif layout == "stacked" and _is_per_layer(layers):
    layers = jax.tree.map(lambda *a: _stack(list(a)), *layers)
  return {**node, "layers": layers}


def to_layout(tree: Any, layout: str) -> Any:
  """`tree` with every "layers" entry in `layout` (entries already in it stay as they are)."""
  if layout not in LAYOUTS:
    raise ValueError(f"layer layout must be one of {LAYOUTS}, got {layout!r}")
  return jax.tree.map(lambda node: _convert(node, layout), tree, is_leaf=_is_layered)


def _is_axes(x: Any) -> bool:
  return isinstance(x, tuple) and all(a is None or isinstance(a, str) for a in x)


def match_axes(axes: Any, like: Any) -> Any:
  """Logical-axes tree `axes` (stacked form: each layer leaf starts with "layers") in the layout
  of `like`, a params-shaped tree: per layer, each layer's leaves drop their leading axis name."""
  if layout_of(like) != "per_layer":
    return axes

  def expand(node, like_node):
    if _is_layered(node) and not _is_per_layer(node["layers"]):
      one = jax.tree.map(lambda names: names[1:], node["layers"], is_leaf=_is_axes)
      rest = {k: expand(v, like_node[k]) for k, v in node.items() if k != "layers"}
      return {**rest, "layers": tuple(one for _ in like_node["layers"])}
    if isinstance(node, dict):
      return {k: expand(v, like_node[k]) for k, v in node.items()}
    return node

  return expand(axes, like)
