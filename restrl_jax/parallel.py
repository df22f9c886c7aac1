"""Device mesh, logical-axis rules and sharding helpers.

Every parameter and activation dimension carries a *logical* name ("batch", "embed", "heads", ...);
`LOGICAL_RULES` maps logical names to the mesh axes `data`, `fsdp`, `tensor`. A dimension whose size
the mesh axes do not divide is left unsharded, so tiny test models run on any mesh. Parameters get
their names where flax creates them (`nn.with_logical_partitioning` in `restrl_jax.models`);
`logical_axes` and `boxed_shardings` read them from the boxed tree that `Module.init` returns.

Activations are constrained with `constrain(x, names)` inside model code; it is a no-op unless a
`sharding_context(mesh)` is active while the function is traced, so the same model code runs on one
device and on a pod.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

# logical name -> mesh axis (or tuple of axes, or None = replicated)
LOGICAL_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("head_dim", None),
    ("seq", None),
    ("cache_seq", None),
    ("act_embed", None),
    ("layers", None),
)

_CONTEXT: contextvars.ContextVar[tuple[Mesh, tuple] | None] = contextvars.ContextVar(
    "restrl_jax_sharding_context", default=None)


def make_mesh(shape: Sequence[int], devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A mesh with axes (data, fsdp, tensor); `-1` in one place takes the remaining devices."""
  devices = list(devices if devices is not None else jax.devices())
  shape = list(shape)
  if len(shape) != len(MESH_AXES):
    raise ValueError(f"mesh shape needs {len(MESH_AXES)} entries {MESH_AXES}, got {shape}")
  if shape.count(-1) > 1:
    raise ValueError(f"at most one mesh axis may be -1, got {shape}")
  if -1 in shape:
    known = math.prod(s for s in shape if s != -1)
    if len(devices) % known:
      raise ValueError(f"{len(devices)} devices do not divide into mesh {shape}")
    shape[shape.index(-1)] = len(devices) // known
  if math.prod(shape) != len(devices):
    raise ValueError(
        f"mesh shape {tuple(shape)} needs {math.prod(shape)} devices, {len(devices)} available")
  return Mesh(np.asarray(devices).reshape(shape), MESH_AXES)


def host_mesh(shape: Sequence[int] | None) -> Mesh | None:
  """A mesh of `shape` over this process's own devices (the first `prod(shape)` of
  `jax.local_devices()`; -1 takes them all), on which a process computes alone (no collective
  crosses processes); None for no shape or a one-device shape."""
  if shape is None:
    return None
  devices = jax.local_devices()
  if -1 not in shape:
    if math.prod(shape) > len(devices):
      raise ValueError(f"host mesh {tuple(shape)} (config.mesh.host_shape) needs "
                       f"{math.prod(shape)} devices; this process has {len(devices)}")
    devices = devices[:math.prod(shape)]
  mesh = make_mesh(shape, devices)
  return mesh if mesh.devices.size > 1 else None


def _mesh_axes_for(name: str | None, rules) -> tuple[str, ...]:
  if name is None:
    return ()
  for logical, physical in rules:
    if logical == name:
      if physical is None:
        return ()
      return (physical,) if isinstance(physical, str) else tuple(physical)
  raise KeyError(f"logical axis {name!r} has no rule; known: {[r[0] for r in rules]}")


def logical_to_spec(names: Sequence[str | None], shape: Sequence[int] | None, mesh: Mesh,
                    rules=LOGICAL_RULES) -> PartitionSpec:
  """PartitionSpec for an array whose dims carry `names`; axes that do not divide stay unsharded."""
  used: set[str] = set()
  spec = []
  for i, name in enumerate(names):
    axes = tuple(a for a in _mesh_axes_for(name, rules) if a not in used and mesh.shape[a] > 1)
    if shape is not None and axes:
      # keep the longest prefix of axes whose product divides the dim
      while axes and shape[i] % math.prod(mesh.shape[a] for a in axes):
        axes = axes[:-1]
    used.update(axes)
    spec.append(None if not axes else axes[0] if len(axes) == 1 else axes)
  return PartitionSpec(*spec)


def logical_to_sharding(names, shape, mesh: Mesh, rules=LOGICAL_RULES) -> NamedSharding:
  return NamedSharding(mesh, logical_to_spec(names, shape, mesh, rules))


def tree_shardings(logical_tree, shape_tree, mesh: Mesh, rules=LOGICAL_RULES):
  """Shardings for a pytree (e.g. params) from a matching pytree of logical-name tuples."""
  return jax.tree.map(
      lambda names, x: logical_to_sharding(names, x.shape, mesh, rules),
      logical_tree, shape_tree, is_leaf=_is_axis_names)


def _is_axis_names(x) -> bool:
  """A leaf of a logical-axes tree: a tuple of names (not a tuple of subtrees, e.g. layers)."""
  return isinstance(x, tuple) and all(n is None or isinstance(n, str) for n in x)


def logical_axes(boxed_tree) -> Any:
  """The logical axis names (a tuple per leaf) of a tree whose leaves flax boxed with them
  (`nn.with_logical_partitioning`, as `Module.init` returns parameters); an unboxed leaf gets
  () (replicated)."""
  return jax.tree.map(tuple, nn.get_partition_spec(boxed_tree),
                      is_leaf=lambda x: isinstance(x, PartitionSpec))


def boxed_shardings(boxed_tree, mesh: Mesh, rules=LOGICAL_RULES):
  """NamedShardings for a boxed tree (arrays or ShapeDtypeStructs), from the logical axes in
  its boxes mapped by `rules` as `logical_to_spec` does (a dim the mesh axes do not divide stays
  unsharded: unlike `nn.logical_to_mesh_sharding`, so small models run on any mesh)."""
  return tree_shardings(logical_axes(boxed_tree), nn.meta.unbox(boxed_tree), mesh, rules)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


@contextlib.contextmanager
def sharding_context(mesh: Mesh, rules=LOGICAL_RULES):
  """Within this context, `constrain` pins activations to the mesh while tracing."""
  token = _CONTEXT.set((mesh, tuple(rules)))
  try:
    yield mesh
  finally:
    _CONTEXT.reset(token)


def current_mesh() -> Mesh | None:
  ctx = _CONTEXT.get()
  return None if ctx is None else ctx[0]


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
  """`with_sharding_constraint` by logical names; identity outside a sharding_context."""
  ctx = _CONTEXT.get()
  if ctx is None:
    return x
  mesh, rules = ctx
  if len(names) != x.ndim:
    raise ValueError(f"constrain: {len(names)} names {tuple(names)} for an array of rank {x.ndim}")
  return jax.lax.with_sharding_constraint(x, logical_to_sharding(names, x.shape, mesh, rules))


def shard_tree(tree, logical_tree, mesh: Mesh, rules=LOGICAL_RULES):
  """Place every leaf of `tree` on the mesh by its logical axis names."""
  return jax.device_put(tree, tree_shardings(logical_tree, tree, mesh, rules))


def batch_sharding(mesh: Mesh, rank: int = 2) -> NamedSharding:
  """Leading (batch) dimension over ('data', 'fsdp'), the rest replicated."""
  return NamedSharding(mesh, logical_to_spec(("batch",) + (None,) * (rank - 1), None, mesh))
