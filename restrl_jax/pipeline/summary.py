"""The end-of-run summary table (markdown): one row per evaluated method, then per-stage facts.

Stages that evaluate something return `{"rows": [{"method": ..., <metric>: value, ...}], ...}`;
rows of all stages are gathered into one table (base vs trained vs decoding methods).
"""
from __future__ import annotations

from typing import Any, Mapping

from restrl_jax.evaluation.table1 import AVG, COLUMNS


def _fmt(value: Any) -> str:
  if isinstance(value, float):
    return f"{value:.3f}"
  return str(value)


# then the paper's Table 1 columns in its order (an `evaluate_suite` row)
LEADING_COLUMNS = ("method", "strict_accuracy", "test_case_average", *COLUMNS.values(), AVG)
FIGURE_KEYS = ("curve_plot",)   # stage facts naming a figure the run wrote


def _column_key(name: str) -> tuple[int, str]:
  """Leading columns first, the rest by name: the order does not depend on how a stage's result
  was stored (DONE.json is written with sorted keys, so a resumed run reads them sorted)."""
  if name in LEADING_COLUMNS:
    return LEADING_COLUMNS.index(name), ""
  return len(LEADING_COLUMNS), name


def _rows_table(rows: list[Mapping[str, Any]]) -> list[str]:
  columns = sorted({k for row in rows for k in row}, key=_column_key)
  lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  for row in rows:
    lines.append("| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |")
  return lines


def render(results: Mapping[str, Mapping[str, Any]]) -> str:
  rows = [row for summary in results.values() for row in summary.get("rows", [])]
  lines = ["# restrl_jax run summary", ""]
  if rows:
    lines += _rows_table(rows) + [""]
  lines += ["| stage | facts |", "|---|---|"]
  for stage, summary in results.items():
    facts = ", ".join(f"{k}={_fmt(v)}" for k, v in summary.items() if k != "rows")
    lines.append(f"| {stage} | {facts} |")
  figures = [str(s[k]) for s in results.values() for k in FIGURE_KEYS if s.get(k)]
  if figures:
    lines += ["", "Figures: " + ", ".join(figures)]
  return "\n".join(lines) + "\n"
