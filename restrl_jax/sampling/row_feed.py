"""Row feeds: how the rows of a batch reach the mesh, come back, and are gathered to every process.

Samplers, rollouts and trainers see a batch as the rows this process holds. A feed says which
rows those are and moves them:

* `RowFeed`: this process holds every row (one process, or the same rows on every process): the
  selection is all rows and every gather is the identity;
* `HostRowFeed`: each process of a multi-host run holds only its own rows of a global batch. It
  feeds them into the global program (`put`), reads them back (`get`), draws them with their
  global row ids (`row_ids`, so a sample draws what it draws in a one-process run), makes host-side
  shape and loop decisions identical on every process (`agree_max` / `agree_all`) and gathers
  row-wise results to every process (`gather_rows`, `gather_filled`).

The operations both share: `groups` (the prompts of a GRPO step this process samples),
`chunk_positions` (the rows of a rollout chunk it samples), `put` / `replicate` / `get`,
`gather_rows` and `gather_filled`. `for_processes(mesh)` is the feed of this run.

Which rows a process holds: the batch axis is split over the mesh axes ("data", "fsdp")
(`parallel.LOGICAL_RULES`) into S = data * fsdp equal shards; shard s = data_index * fsdp +
fsdp_index holds global rows [s * R/S, (s+1) * R/S) of an R-row batch. The processes that feed
shard s are those owning the devices at mesh position [data_index, fsdp_index, :]. With
`parallel.make_mesh` over `jax.devices()` (listed process by process) and the tensor axis inside
a host, every process owns one contiguous block; other device orders give several blocks, and a
batch axis that is not split across hosts (e.g. mesh (1, 1, 8)) gives every process all rows.
This is the layout `jax.make_array_from_process_local_data` assumes: a process's local rows are
its blocks in order.

GRPO shards by prompt: advantages are normalised within a group of G completions of one prompt,
so every block a process holds must consist of whole groups (`host_rows(..., group_size=G)`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence, TypeVar

import jax
import numpy as np

from restrl_jax import distributed, parallel

T = TypeVar("T")


class RowFeed:
  """Rows of a batch <-> the mesh, when the host holds the whole batch (one process, or the same
  rows on every process). The per-host version is `HostRowFeed`."""

  # The host holds every row, so a sampler may regroup rows (share a prompt's prefill, drop
  # finished rows from the batch) on its own, and a caller has nothing to gather.
  rows_are_global = True

  def local_multiple(self, mesh: jax.sharding.Mesh) -> int:
    """A local batch is padded to a multiple of this (the batch shards it spans)."""
    return int(mesh.shape["data"] * mesh.shape["fsdp"])

  def row_ids(self, n: int) -> np.ndarray:
    """[n] global row index of each of n local rows (sampling draws row r with id r)."""
    return np.arange(n)

  def put(self, x: np.ndarray, mesh: jax.sharding.Mesh) -> jax.Array:
    """Host rows [b, ...] -> an array on the mesh, dim 0 over ("data", "fsdp") where it divides."""
    names = ("batch",) + (None,) * (np.ndim(x) - 1)
    return jax.device_put(x, parallel.logical_to_sharding(names, np.shape(x), mesh))

  def replicate(self, x: Any, mesh: jax.sharding.Mesh) -> jax.Array:
    """A value every process holds alike (scalar, PRNG key) -> replicated over the mesh."""
    return jax.device_put(x, parallel.replicated(mesh))

  def get(self, x: jax.Array) -> np.ndarray:
    """The rows of `x` this host holds, as numpy."""
    return np.asarray(jax.device_get(x))

  def agree_max(self, x: Any) -> Any:
    """Elementwise max of `x` over the processes that feed rows (here: `x`)."""
    return x

  def agree_all(self, flag: bool) -> bool:
    """True iff `flag` holds on every process (here: `flag`)."""
    return bool(flag)

  # -- which rows this process holds, and gathering them to every process ---------------------

  def groups(self, total: int, group_size: int) -> np.ndarray:
    """Indices of the groups (prompts) of `group_size` rows of a `total`-row batch held here."""
    return np.arange(total // group_size)

  def chunk_positions(self, n: int) -> np.ndarray:
    """[k] positions in an n-row chunk this process samples; positions >= n are padding."""
    return np.arange(n)

  def gather_rows(self, local: Sequence[T], total: int) -> list[T]:
    """This process's rows of a `total`-row batch -> all `total` rows, on every process."""
    return list(local)

  def gather_filled(self, entries: Sequence[Any]) -> list[Any]:
    """Entries with this process's filled (others None) -> every entry, on every process."""
    return list(entries)


def batch_shard_owners(devices: np.ndarray) -> tuple[frozenset[int], ...]:
  """A mesh's device grid [data, fsdp, tensor] -> for each batch shard, the processes feeding it."""
  grid = np.asarray(devices, dtype=object)
  if grid.ndim != len(parallel.MESH_AXES):
    raise ValueError(f"mesh devices must be a [data, fsdp, tensor] grid, got shape {grid.shape}")
  data, fsdp = grid.shape[:2]
  return tuple(frozenset(int(d.process_index) for d in grid[i, j].ravel())
               for i in range(data) for j in range(fsdp))


@dataclasses.dataclass(frozen=True)
class HostRows:
  """The rows of a `total`-row global batch that one process feeds: sorted [start, stop) blocks."""
  blocks: tuple[tuple[int, int], ...]
  total: int

  @property
  def indices(self) -> np.ndarray:
    """[size] global row indices, in local order."""
    return np.concatenate([np.arange(a, b) for a, b in self.blocks]).astype(np.int64)

  @property
  def size(self) -> int:
    return sum(b - a for a, b in self.blocks)

  def take(self, items: Sequence[T]) -> list[T]:
    """This process's rows of a global list (len `total`)."""
    if len(items) != self.total:
      raise ValueError(f"HostRows.take: {len(items)} items for a batch of {self.total} rows")
    return [items[i] for i in self.indices]

  def groups(self, group_size: int) -> np.ndarray:
    """Indices of the groups (prompts) of `group_size` rows this process holds."""
    return self.indices[::group_size] // group_size


def _merged_blocks(shards: Sequence[int], per: int) -> tuple[tuple[int, int], ...]:
  blocks: list[list[int]] = []
  for s in sorted(shards):
    if blocks and blocks[-1][1] == s * per:
      blocks[-1][1] = (s + 1) * per
    else:
      blocks.append([s * per, (s + 1) * per])
  return tuple((a, b) for a, b in blocks)


def host_rows(owners: Sequence[frozenset[int]], total: int, process_index: int,
              group_size: int = 1) -> HostRows:
  """The rows process `process_index` feeds of a `total`-row batch (see the module docstring).

  Raises ValueError naming the problem when the batch does not split over the batch shards, the
  process owns no shard, or (group_size > 1) a group of rows would be split between processes.
  """
  n = len(owners)
  if total < 1 or total % n:
    raise ValueError(f"a global batch of {total} rows does not split over the mesh's {n} batch "
                     f"shards (data * fsdp); make it a positive multiple of {n}")
  mine = [s for s, procs in enumerate(owners) if process_index in procs]
  if not mine:
    raise ValueError(f"process {process_index} owns no device on the mesh's batch axes; every "
                     f"process must feed rows (owners per shard: {[sorted(o) for o in owners]})")
  rows = HostRows(_merged_blocks(mine, total // n), total)
  if group_size > 1:
    split = [(a, b) for a, b in rows.blocks if a % group_size or b % group_size]
    if split:
      raise ValueError(
          f"groups of group_size={group_size} rows would be split between processes: process "
          f"{process_index} feeds rows {split} of {total} (blocks of {total // n} rows per batch "
          f"shard); each host must hold whole groups, e.g. make prompts_per_step a multiple of "
          f"the number of processes ({len(set().union(*owners))})")
  return rows


def rows_from_shards(shards: Sequence[tuple[tuple[slice, ...], np.ndarray]], shape: Sequence[int],
                     want: np.ndarray) -> np.ndarray:
  """Rows `want` [b] of a global array of `shape`, from (index, data) shards split along the
  leading axis only (replicas may repeat rows) -> [b, ...]."""
  out = None
  filled = np.zeros(len(want), bool)
  for index, data in shards:
    for s, n in zip(index[1:], shape[1:]):
      if s.indices(n) != (0, n, 1):
        raise ValueError(f"array {tuple(shape)} is split beyond its batch axis (shard index "
                         f"{index}); only the leading axis may be split across hosts")
    start, stop, _ = index[0].indices(shape[0])
    out = np.empty((len(want),) + tuple(shape[1:]), data.dtype) if out is None else out
    hit = (want >= start) & (want < stop)
    out[hit] = data[want[hit] - start]
    filled |= hit
  if out is None or not filled.all():
    raise ValueError(f"rows {want[~filled].tolist()} of an array {tuple(shape)} are not on this "
                     "process's devices")
  return out


class HostRowFeed(RowFeed):
  """`RowFeed` where each process passes and gets back only its own rows of a batch."""

  rows_are_global = False  # regrouping rows would need every process to agree on it

  def __init__(self, mesh: jax.sharding.Mesh, process_index: int | None = None):
    self.mesh = mesh
    self.process_index = jax.process_index() if process_index is None else process_index
    self.owners = batch_shard_owners(mesh.devices)
    held = {p: sum(p in o for o in self.owners) for p in set().union(*self.owners)}
    if self.process_index not in held:
      raise ValueError(f"process {self.process_index} owns no device on the mesh's batch axes")
    if len(set(held.values())) != 1:
      raise ValueError(f"processes own unequal numbers of batch shards {held}; per-host rows "
                       "need a mesh where every process holds as many shards as the others")
    self.shards_per_process = held[self.process_index]

  @property
  def num_processes(self) -> int:
    return len(set().union(*self.owners))

  def rows(self, total: int, group_size: int = 1, process_index: int | None = None) -> HostRows:
    p = self.process_index if process_index is None else process_index
    return host_rows(self.owners, total, p, group_size)

  def global_rows(self, n_local: int) -> int:
    """Global batch size when every process feeds `n_local` rows."""
    if n_local % self.shards_per_process:
      raise ValueError(f"{n_local} local rows do not split over this process's "
                       f"{self.shards_per_process} batch shards")
    return n_local // self.shards_per_process * len(self.owners)

  # -- RowFeed ---------------------------------------------------------------------------------

  def local_multiple(self, mesh: jax.sharding.Mesh) -> int:
    return self.shards_per_process

  def row_ids(self, n: int) -> np.ndarray:
    return self.rows(self.global_rows(n)).indices

  def put(self, x: np.ndarray, mesh: jax.sharding.Mesh) -> jax.Array:
    x = np.asarray(x)
    shape = (self.global_rows(len(x)),) + x.shape[1:]
    return jax.make_array_from_process_local_data(parallel.batch_sharding(mesh, x.ndim), x, shape)

  def replicate(self, x: Any, mesh: jax.sharding.Mesh) -> jax.Array:
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      data = self.replicate(np.asarray(jax.random.key_data(x)), mesh)
      return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    x = np.asarray(x)                        # the same on every process: no check, no transfer
    return jax.make_array_from_callback(x.shape, parallel.replicated(mesh), lambda i: x[i])

  def get(self, x: jax.Array) -> np.ndarray:
    if x.is_fully_addressable:
      return np.asarray(jax.device_get(x))
    shards = [(s.index, np.asarray(s.data)) for s in x.addressable_shards]
    return rows_from_shards(shards, x.shape, self.rows(x.shape[0]).indices)

  def agree_max(self, x: Any) -> Any:
    if jax.process_count() == 1:
      return x
    from jax.experimental import multihost_utils
    return np.max(multihost_utils.process_allgather(np.asarray(x)), axis=0)

  def agree_all(self, flag: bool) -> bool:
    return not bool(self.agree_max(np.int32(not flag)))

  # -- which rows this process holds, and gathering them to every process ---------------------

  def groups(self, total: int, group_size: int) -> np.ndarray:
    return self.rows(total, group_size).groups(group_size)

  def chunk_positions(self, n: int) -> np.ndarray:
    """The chunk is padded to a multiple of the mesh's batch shards (padding is sampled, then
    dropped); this process samples its block of it."""
    shards = len(self.owners)
    return self.rows(-(-n // shards) * shards).indices

  def gather_objects(self, obj: Any) -> list[Any]:
    """[obj of process 0, obj of process 1, ...] on every process (`distributed.gather_objects`)."""
    return distributed.gather_objects(obj)

  def gather_rows(self, local: Sequence[T], total: int) -> list[T]:
    out: list[Any] = [None] * total
    for p, part in enumerate(self.gather_objects(list(local))):
      idx = self.rows(total, process_index=p).indices
      if len(part) != len(idx):
        raise ValueError(f"gather_rows: process {p} sent {len(part)} rows, expected {len(idx)}")
      for i, item in zip(idx, part):
        out[i] = item
    return out

  def gather_filled(self, entries: Sequence[Any]) -> list[Any]:
    out = list(entries)
    for part in self.gather_objects([(k, e) for k, e in enumerate(entries) if e is not None]):
      for k, e in part:
        out[k] = e
    missing = [k for k, e in enumerate(out) if e is None]
    if missing:
      raise ValueError(f"gather_filled: no process returned entries {missing[:10]}")
    return out


def for_processes(mesh: jax.sharding.Mesh | None) -> RowFeed:
  """The feed of this run: every row here with one process, this process's rows with several."""
  if jax.process_count() == 1:
    return RowFeed()
  if mesh is None:
    raise ValueError("several processes feed rows only through a mesh over every process's "
                     "devices; give the run a mesh")
  return HostRowFeed(mesh)
