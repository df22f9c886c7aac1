"""Orbax checkpoints of training state plus a JSON record of pipeline position.

A checkpoint holds a pytree `state` (params, optimizer state, step, RNG key data, ...) and a JSON
`meta` dict (round, data position, ...). Saves are atomic (orbax writes to a temporary folder and
renames it), the last `max_to_keep` are kept, and `restore_latest` resumes from the newest. Every
process calls save/restore (orbax coordinates multi-host writes).
"""
from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from restrl_jax import crash_points


class Checkpointer:
  """Thin wrapper over `ocp.CheckpointManager` with a fixed (state, meta) layout."""

  def __init__(self, directory: str | os.PathLike, max_to_keep: int = 3):
    directory = os.fspath(directory)
    # remote paths (gs://...) go to orbax/tensorstore as they are
    self.directory = directory if "://" in directory else os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def save(self, step: int, state: Any, meta: dict | None = None, wait: bool = True) -> None:
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta or {})))
    crash_points.reached("checkpoint", self.directory)
    if wait:
      self._manager.wait_until_finished()

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def restore(self, step: int, like: Any) -> tuple[Any, dict]:
    """Restore `step` into the structure, dtypes and shardings of `like` (arrays or ShapeDtypeStructs)."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    return restored.state, dict(restored.meta or {})

  def restore_latest(self, like: Any) -> tuple[Any, dict, int] | None:
    step = self.latest_step()
    if step is None:
      return None
    state, meta = self.restore(step, like)
    return state, meta, step

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()

  def __enter__(self) -> "Checkpointer":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

