"""The ReST rounds (rl/rounds.py) across hosts: split collection, writer-only files, placement.

With one process every helper here is the plain single-process operation (or nothing), so the
rounds behave bit for bit as before. With `jax.process_count() > 1`:

* collection: the Sampler feeds rows through a `HostRowFeed`; `rollout(..., split=HostSplit)`
  samples each chunk of rows as one global program in which every process feeds (and runs in its
  own sandbox pool) only its block of the chunk, padded to the mesh's batch shards; row ids are
  the rows' positions in the chunk, so every sample draws what it draws in a one-process run.
  `HostSplit.gather` then hands every process all records;
* training: `rl.host_grpo.HostGRPO` (each host samples and scores its own prompts);
* files: only process 0 (`distributed.is_writer()`) writes JSONL / JSON / exported policies;
  `barrier` keeps the others from reading a file before it exists. Orbax checkpoints are saved
  by every process (`restrl_jax.checkpoint`);
* arrays: host values are placed with `jax.make_array_from_callback` (every process holds the
  same value) and read back with `distributed.gather` (a plain device_get fails across hosts).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import jax
import numpy as np

from restrl_jax import distributed, io_utils, parallel
from restrl_jax.sampling.row_feed import HostRowFeed
from restrl_jax.sampling import Sampler


def multi_host() -> bool:
  return jax.process_count() > 1


def make_sampler(model_config: Any, tokenizer: Any, mesh: jax.sharding.Mesh | None) -> Sampler:
  """The rounds' Sampler: per-host rows (`HostRowFeed`) when there are several processes."""
  if not multi_host():
    return Sampler(model_config, None, tokenizer, mesh=mesh)
  if mesh is None:
    raise ValueError("a multi-process rest_grpo run needs a mesh over every process's devices")
  return Sampler(model_config, None, tokenizer, mesh=mesh, feed=HostRowFeed(mesh))


def check_method(method: str) -> None:
  """Methods whose steps run across hosts (DAPO is refused by HostGRPO itself)."""
  if multi_host() and method == "rest_dpo":
    raise ValueError("rest.method='rest_dpo' is not supported with several processes (its "
                     "batches are built on one host); run it as one process")


class HostSplit:
  """Which rows of each rollout chunk this process samples, and the gather of the records."""

  def __init__(self, feed: HostRowFeed):
    self.feed, self.shards = feed, len(feed.owners)

  def positions(self, n: int) -> np.ndarray:
    """[k] positions in an n-row chunk (padded to a multiple of the batch shards) this process
    feeds; positions >= n are padding (sampled, then dropped)."""
    total = -(-n // self.shards) * self.shards
    return self.feed.rows(total).indices

  def gather(self, records: Sequence[Any]) -> list[Any]:
    """Records with this process's entries filled (others None) -> every entry, everywhere."""
    out = list(records)
    for part in self.feed.gather_objects([(k, r) for k, r in enumerate(records)
                                          if r is not None]):
      for k, r in part:
        out[k] = r
    missing = [k for k, r in enumerate(out) if r is None]
    if missing:
      raise ValueError(f"HostSplit.gather: no process returned records {missing[:10]}")
    return out


def collect_split(sampler: Sampler) -> HostSplit | None:
  return HostSplit(sampler.feed) if isinstance(sampler.feed, HostRowFeed) else None


# -- arrays --------------------------------------------------------------------------------------

def place(host_tree: Any, shardings: Any) -> Any:
  """Host (numpy) leaves, the same on every process -> global arrays laid out by `shardings`
  (`distributed.place`)."""
  return distributed.place(host_tree, shardings)


def put_like(value: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
  """`value` (the same on every process) placed with `sharding`."""
  if not multi_host():
    return jax.device_put(value, sharding)
  return place(value, sharding)


def key_leaf(key: jax.Array, mesh: jax.sharding.Mesh | None) -> jax.Array:
  """A PRNG key as a checkpoint leaf: its key data (replicated over the mesh across hosts: orbax
  does not save a host-local array from several processes)."""
  data = jax.random.key_data(key)
  if not multi_host():
    return data
  return place(np.asarray(data), parallel.replicated(mesh))


def key_from_leaf(leaf: jax.Array) -> jax.Array:
  """The PRNG key of a (restored) `key_leaf`, local to this process."""
  if not multi_host():
    return jax.random.wrap_key_data(leaf)
  return jax.random.wrap_key_data(distributed.replicated_value(leaf))


# -- files ---------------------------------------------------------------------------------------

def barrier(name: str) -> None:
  distributed.sync(name)


def write_text(path: Path, text: str) -> None:
  if distributed.is_writer():
    io_utils.atomic_write_text(path, text)


def write_json(path: Path, obj: Any) -> None:
  if distributed.is_writer():
    io_utils.atomic_write_json(path, obj)


def write_jsonl(path: Path, rows: Iterable[Any]) -> None:
  write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def append_jsonl(path: Path, rows: list[dict]) -> None:
  if distributed.is_writer():
    io_utils.append_jsonl(path, rows)
