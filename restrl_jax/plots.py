"""Figures written from run outputs (matplotlib, headless): learning curves."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np


def _pyplot():
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def learning_curves(panels: Mapping[str, Mapping[str, Sequence[tuple[float, float, float]]]],
                    path: str | Path, xlabel: str = "GRPO step", title: str = "") -> Path:
  """One panel per metric name; in each, one line per series of (x, mean, spread) points, the
  spread drawn as a band mean ± spread (0: no band). Writes `path` (png) and returns it."""
  plt = _pyplot()
  fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
  for ax, (metric, series) in zip(axes[0], panels.items()):
    for name, points in series.items():
      x, y, s = (np.asarray(v, np.float64) for v in zip(*sorted(points)))   # [P] each
      ax.plot(x, y, marker="o", markersize=3, label=name)
      if np.any(s > 0):
        ax.fill_between(x, y - s, y + s, alpha=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
