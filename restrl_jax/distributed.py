"""Multi-host helpers: start-up, which host feeds which rows, who writes, global batches.

Start-up (`initialize`) follows JAX's own `jax.distributed.initialize`; nothing home-made:

* `config.distributed.enabled=True` with a coordinator address, process count and id: those.
* `enabled=True` without them: the environment variables `RESTRL_COORDINATOR_ADDRESS`,
  `RESTRL_NUM_PROCESSES`, `RESTRL_PROCESS_ID` if set, else JAX's cluster auto-detection (Cloud
  TPU VMs and pod slices, SLURM, Open MPI, GKE).
* `enabled=False`: one process per host. On a recognised multi-host environment a warning says
  that each host would train alone.

Data: every process holds the same list of prompts (same seed); `local_slice(items)` keeps this
process's contiguous block, which it samples, runs in its own sandbox workers and scores.
`global_batch` assembles the per-process rows into one array over the mesh; rows are ordered by
process, matching `local_slice`. Only `is_writer()` (process 0) writes summaries and files;
orbax checkpoints are saved by every process (`restrl_jax.checkpoint`). `write_text`,
`write_json`, `write_jsonl` and `append_jsonl` write on the writer only (atomic, `io_utils`);
`sync` keeps the others from reading a file before it exists.

Work that needs no collective per step (the MCTS searches of the pipeline) is split by problem:
`round_shares` gives each process its block of every round of problems, which it works on with
its own devices and sandbox pool; `gather_lists` (pickles exchanged with JAX's
`multihost_utils.process_allgather`) then hands every process the round's results in problem
order, and process 0 writes them.

How a batch's rows reach the mesh and come back, per process, is `restrl_jax.sampling.row_feed`.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, TypeVar

import jax
import numpy as np

from restrl_jax import io_utils

T = TypeVar("T")

ENV_COORDINATOR = "RESTRL_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "RESTRL_NUM_PROCESSES"
ENV_PROCESS_ID = "RESTRL_PROCESS_ID"
# Markers of environments JAX's cluster detection handles (multi-host when the value says so).
_CLUSTER_MARKERS = ("TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS", "SLURM_NTASKS",
                    "OMPI_COMM_WORLD_SIZE")


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
  """Arguments for `jax.distributed.initialize`; all None means JAX's auto-detection."""
  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  source: str = "auto"          # "config" | "env" | "auto"

  def kwargs(self) -> dict[str, Any]:
    return {k: v for k, v in (("coordinator_address", self.coordinator_address),
                              ("num_processes", self.num_processes),
                              ("process_id", self.process_id)) if v is not None}


def _int_env(environ: Mapping[str, str], name: str) -> int:
  try:
    return int(environ[name])
  except ValueError:
    raise ValueError(f"environment variable {name}={environ[name]!r} is not an integer") from None


def cluster_spec(dist: Mapping[str, Any] | None,
                 environ: Mapping[str, str] = os.environ) -> ClusterSpec | None:
  """How to join the cluster (see the module docstring); None: run as a single process."""
  dist = dict(dist or {})
  if not dist.get("enabled", False):
    return None
  fields = ("coordinator_address", "num_processes", "process_id")
  given = {k: dist.get(k) for k in fields if dist.get(k) is not None}
  if given:
    missing = [k for k in fields if k not in given]
    if missing:
      raise ValueError(f"config.distributed: coordinator_address, num_processes and process_id "
                       f"go together; missing {missing}")
    return ClusterSpec(given["coordinator_address"], int(given["num_processes"]),
                       int(given["process_id"]), "config")
  if ENV_COORDINATOR in environ:
    missing = [n for n in (ENV_NUM_PROCESSES, ENV_PROCESS_ID) if n not in environ]
    if missing:
      raise ValueError(f"{ENV_COORDINATOR} is set but {missing} are not")
    return ClusterSpec(environ[ENV_COORDINATOR], _int_env(environ, ENV_NUM_PROCESSES),
                       _int_env(environ, ENV_PROCESS_ID), "env")
  return ClusterSpec()


def detected_multihost(environ: Mapping[str, str] = os.environ) -> str | None:
  """The name of a multi-host marker in the environment, if any (for the warning)."""
  for name in _CLUSTER_MARKERS:
    value = environ.get(name, "")
    if name == "TPU_WORKER_HOSTNAMES" and "," in value:
      return name
    if name != "TPU_WORKER_HOSTNAMES" and value and (not value.isdigit() or int(value) > 1):
      return name
  return None


def check_spec(spec: ClusterSpec) -> None:
  if spec.num_processes is not None and spec.num_processes < 1:
    raise ValueError(f"distributed num_processes must be >= 1, got {spec.num_processes}")
  if spec.process_id is not None and not 0 <= spec.process_id < (spec.num_processes or 1):
    raise ValueError(f"distributed process_id {spec.process_id} is outside "
                     f"[0, {spec.num_processes})")


def initialize(dist: Mapping[str, Any] | None) -> ClusterSpec | None:
  """Join the cluster as `config.distributed` says (once per process, before any JAX call)."""
  spec = cluster_spec(dist)
  if spec is None:
    marker = detected_multihost()
    if marker:
      logging.warning("%s says this is a multi-host job, but config.distributed.enabled=False: "
                      "every host will run alone. Pass --config.distributed.enabled=True.", marker)
    return None
  check_spec(spec)
  logging.info("jax.distributed.initialize(%s) from %s", spec.kwargs(), spec.source)
  jax.distributed.initialize(**spec.kwargs())
  return spec


# -- per-process data ---------------------------------------------------------------------------

def local_bounds(n: int, process_index: int | None = None,
                 process_count: int | None = None) -> tuple[int, int]:
  """[start, stop) of this process's contiguous block of n rows; n must divide evenly."""
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  if n % count:
    raise ValueError(f"{n} rows do not split evenly over {count} processes; pad the batch to a "
                     f"multiple of {count}")
  per = n // count
  return index * per, (index + 1) * per


def local_slice(items: Sequence[T], process_index: int | None = None,
                process_count: int | None = None) -> Sequence[T]:
  """This process's block of `items` (prompts, problems, batch rows); see `local_bounds`."""
  start, stop = local_bounds(len(items), process_index, process_count)
  return items[start:stop]


def round_shares(n: int, block: int, process_index: int | None = None,
                 process_count: int | None = None) -> list[range]:
  """This process's share of each round when n items (problems) are worked on `block` at a time
  by every process: round r covers items [r * block * P, (r + 1) * block * P) and process p takes
  its p-th block of `block` items (shorter or empty at the end). Every process gets the same
  number of rounds (a round may end in a collective such as `gather_lists`); with one process
  the shares are the consecutive blocks, so P processes work on exactly the blocks one process
  would, round r's blocks being one process's blocks r * P .. r * P + P - 1."""
  if block < 1:
    raise ValueError(f"round_shares: block must be >= 1, got {block}")
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  start = index * block
  return [range(min(s + start, n), min(s + start + block, n))
          for s in range(0, n, block * count)]


def is_writer() -> bool:
  """True on the one process that writes summaries, logs and exported files."""
  return jax.process_index() == 0


def global_batch(local: Mapping[str, np.ndarray], sharding: jax.sharding.Sharding
                 ) -> dict[str, jax.Array]:
  """Per-process rows [b, ...] -> global arrays [b * processes, ...] laid out by `sharding`.

  The mesh must list devices process by process along the batch axes (`parallel.make_mesh`
  over `jax.devices()` does), so that process p's rows are global rows [p*b, (p+1)*b).
  """
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local.items()}


def place(tree: Any, shardings: Any) -> Any:
  """Leaves every process holds alike (numpy, or arrays on this process's devices) -> global
  arrays laid out by `shardings` (each process fills its own devices' shards; a plain device_put
  refuses committed arrays across hosts). Leaves that already span processes are resharded."""
  def one(x, sharding):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return jax.device_put(x, sharding)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda i: host[i])
  return jax.tree.map(one, tree, shardings)


def gather(tree: Any) -> Any:
  """Every leaf as a host numpy array of its full global value, on every process (a leaf on this
  process's devices alone is its own value: nothing is exchanged for it)."""
  if jax.process_count() == 1:
    return jax.tree.map(np.asarray, jax.device_get(tree))
  from jax.experimental import multihost_utils

  def one(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))
  return jax.tree.map(one, tree)


def gather_objects(obj: Any) -> list[Any]:
  """[obj of process 0, obj of process 1, ...] on every process (picklable objects: records,
  answers). Each process's pickle is padded to a power-of-two number of bytes (few distinct
  shapes) and exchanged with `multihost_utils.process_allgather`."""
  if jax.process_count() == 1:
    return [obj]
  from jax.experimental import multihost_utils
  data = np.frombuffer(pickle.dumps(obj), np.uint8)
  sizes = np.asarray(multihost_utils.process_allgather(np.int64(len(data)))).reshape(-1)  # [P]
  buf = np.zeros(1 << int(sizes.max() - 1).bit_length(), np.uint8)
  buf[:len(data)] = data
  every = np.asarray(multihost_utils.process_allgather(buf))             # [P, padded size]
  return [pickle.loads(every[p, :sizes[p]].tobytes()) for p in range(len(sizes))]


def gather_lists(local: Sequence[T]) -> list[T]:
  """Every process's list, concatenated in process order, on every process (one process: a
  copy of `local`). With `round_shares`, a round's items come back in item order."""
  return [item for part in gather_objects(list(local)) for item in part]


def replicated_value(x: jax.Array) -> np.ndarray:
  """The host value of a replicated array (e.g. step metrics) from this process's own copy."""
  if not x.sharding.is_fully_replicated:
    raise ValueError(f"replicated_value: array of shape {x.shape} is sharded ({x.sharding}); "
                     f"use gather()")
  return np.asarray(x.addressable_data(0))


def sync(name: str) -> None:
  """Barrier across processes (no-op for one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


# -- files, written by the writer only ------------------------------------------------------

def write_text(path: Path, text: str) -> None:
  if is_writer():
    io_utils.atomic_write_text(path, text)


def write_json(path: Path, obj: Any) -> None:
  if is_writer():
    io_utils.atomic_write_json(path, obj)


def write_jsonl(path: Path, rows: Iterable[Any]) -> None:
  write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def append_jsonl(path: Path, rows: list[dict]) -> None:
  if is_writer():
    io_utils.append_jsonl(path, rows)
