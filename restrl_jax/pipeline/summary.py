"""The end-of-run summary table (markdown): one row per evaluated method, then per-stage facts.

Stages that evaluate something return `{"rows": [{"method": ..., <metric>: value, ...}], ...}`;
rows of all stages are gathered into one table (base vs trained vs decoding methods).
"""
from __future__ import annotations

from typing import Any, Mapping


def _fmt(value: Any) -> str:
  if isinstance(value, float):
    return f"{value:.3f}"
  return str(value)


def _rows_table(rows: list[Mapping[str, Any]]) -> list[str]:
  columns: list[str] = []
  for row in rows:
    columns += [k for k in row if k not in columns]
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
  return "\n".join(lines) + "\n"
