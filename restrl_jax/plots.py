"""Figures written from run outputs (matplotlib, headless): learning curves, and figures of bar
and curve panels side by side."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

# a series of a curve panel: (x, mean, spread) points, the spread drawn as a band mean ± spread
Points = Sequence[tuple[float, float, float]]


@dataclasses.dataclass(frozen=True)
class CurvePanel:
  series: Mapping[str, Points]
  xlabel: str
  ylabel: str
  title: str = ""


@dataclasses.dataclass(frozen=True)
class BarPanel:
  """Grouped bars: per series, one (value, error) per category (error 0: no error bar)."""
  categories: Sequence[str]
  series: Mapping[str, Sequence[tuple[float, float]]]
  xlabel: str
  ylabel: str
  title: str = ""


def _pyplot():
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  return plt


def _draw_curves(ax, panel: CurvePanel) -> None:
  for name, points in panel.series.items():
    x, y, s = (np.asarray(v, np.float64) for v in zip(*sorted(points)))   # [P] each
    ax.plot(x, y, marker="o", markersize=3, label=name)
    if np.any(s > 0):
      ax.fill_between(x, y - s, y + s, alpha=0.2)


def _draw_bars(ax, panel: BarPanel) -> None:
  width = 0.8 / max(1, len(panel.series))
  x = np.arange(len(panel.categories))
  for i, (name, bars) in enumerate(panel.series.items()):
    y, err = (np.asarray(v, np.float64) for v in zip(*bars))             # [categories] each
    ax.bar(x + (i - (len(panel.series) - 1) / 2) * width, y, width, label=name,
           yerr=err if np.any(err > 0) else None, capsize=2)
  ax.set_xticks(x)
  ax.set_xticklabels(panel.categories, rotation=45, ha="right", fontsize=7)


def panels_figure(panels: Sequence[CurvePanel | BarPanel], path: str | Path,
                  title: str = "", width: float = 5.2) -> Path:
  """One row of panels, `width` inches each. Writes `path` (png) and returns it."""
  plt = _pyplot()
  fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), 3.8), squeeze=False)
  for ax, panel in zip(axes[0], panels):
    (_draw_bars if isinstance(panel, BarPanel) else _draw_curves)(ax, panel)
    ax.set_xlabel(panel.xlabel)
    ax.set_ylabel(panel.ylabel)
    if panel.title:
      ax.set_title(panel.title, fontsize=9)
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


def learning_curves(panels: Mapping[str, Mapping[str, Points]], path: str | Path,
                    xlabel: str = "GRPO step", title: str = "") -> Path:
  """One curve panel per metric name (the panel's y label); in each, one line per series."""
  return panels_figure([CurvePanel(series, xlabel, metric) for metric, series in panels.items()],
                       path, title=title)
