"""Orbax checkpoints of training state plus a JSON record of pipeline position.

A checkpoint holds a pytree `state` (params, optimizer state, step, RNG key data, ...) and a JSON
`meta` dict (round, data position, ...). Saves are atomic (orbax writes to a temporary folder and
renames it), the last `max_to_keep` are kept, and `restore_latest` resumes from the newest. Every
process calls save/restore (orbax coordinates multi-host writes).

Model layers are always saved stacked (`models.layer_layout`): a state kept per layer (CPU) is
stacked for the save and restored into its own layout, so a checkpoint resumes on any backend.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from restrl_jax import crash_points
from restrl_jax.models import layer_layout


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
    state = layer_layout.to_layout(state, "stacked")
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
        state=ocp.args.StandardRestore(layer_layout.to_layout(abstract, "stacked")),
        meta=ocp.args.JsonRestore()))
    return _into_layout(restored.state, abstract), dict(restored.meta or {})

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


def _into_layout(state: Any, abstract: Any) -> Any:
  """A restored (stacked) state in the layout and shardings of `abstract`."""
  if layer_layout.layout_of(abstract) != "per_layer":
    return state
  state = layer_layout.to_layout(state, "per_layer")
  return jax.tree.map(lambda x, a: x if x.sharding == a.sharding else jax.device_put(x, a.sharding),
                      state, abstract)
