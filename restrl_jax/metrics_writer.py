"""Metrics to JSON lines and TensorBoard events, written by process 0 only."""
from __future__ import annotations

import json
import numbers
import os
import time
from pathlib import Path
from typing import Any, Mapping

import jax


def _scalar(value: Any) -> float | None:
  if isinstance(value, numbers.Number):
    return float(value)
  if hasattr(value, "shape") and getattr(value, "shape") == ():
    return float(value)
  return None


class MetricsWriter:
  """Appends `{"step": s, **metrics}` to metrics.jsonl and scalars to TensorBoard."""

  def __init__(self, directory: str | os.PathLike, tensorboard: bool = True):
    self.directory = Path(directory)
    self.enabled = jax.process_index() == 0
    self._tb = None
    if self.enabled:
      self.directory.mkdir(parents=True, exist_ok=True)
      if tensorboard:
        from tensorboardX import SummaryWriter  # lazy: only the writer process needs it
        self._tb = SummaryWriter(str(self.directory / "tb"))

  def write(self, step: int, metrics: Mapping[str, Any]) -> None:
    if not self.enabled:
      return
    record = {"step": int(step), "time": time.time()}
    for key, value in metrics.items():
      scalar = _scalar(value)
      record[key] = scalar if scalar is not None else value
      if scalar is not None and self._tb is not None:
        self._tb.add_scalar(key, scalar, step)
    with open(self.directory / "metrics.jsonl", "a", encoding="utf-8") as f:
      f.write(json.dumps(record) + "\n")

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
      self._tb = None

  def __enter__(self) -> "MetricsWriter":
    return self

  def __exit__(self, *exc) -> None:
    self.close()
