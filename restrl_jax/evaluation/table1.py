"""The paper's Table 1 row: pass@1 on six benchmarks and their "Avg." (docs/method.md §8).

Columns, in the paper's order: HumanEval, HumanEval+, MBPP, MBPP+, APPS-500, BCB, then
Avg = 1/4 [(HE + HE+)/2 + (MBPP + MBPP+)/2 + APPS-500 + BCB] (`metrics.paper_average`).
"""
from __future__ import annotations

from typing import Mapping

from restrl_jax.evaluation.metrics import paper_average

# benchmark (restrl_jax.data.registry name) -> its column in Table 1
COLUMNS = {"humaneval": "HumanEval", "humanevalplus": "HumanEval+", "mbpp": "MBPP",
           "mbppplus": "MBPP+", "apps": "APPS-500", "bigcodebench": "BCB"}
AVG = "Avg"


def table1_row(pass_at_1: Mapping[str, float]) -> dict[str, float]:
  """{column: pass@1} of the benchmarks given (keys: benchmark names), plus "Avg" when all six
  are there. An unknown benchmark is a ValueError naming it."""
  unknown = sorted(set(pass_at_1) - set(COLUMNS))
  if unknown:
    raise ValueError(f"not a Table 1 benchmark: {unknown}; known: {list(COLUMNS)}")
  row = {COLUMNS[b]: float(pass_at_1[b]) for b in COLUMNS if b in pass_at_1}
  if len(row) == len(COLUMNS):
    row[AVG] = paper_average(*(row[COLUMNS[b]] for b in COLUMNS))
  return row


def table1_markdown(method: str, row: Mapping[str, float]) -> str:
  """A markdown table of one Table-1 row, columns in the paper's order, values in percent."""
  columns = [c for c in (*COLUMNS.values(), AVG) if c in row]
  return "\n".join(("| method | " + " | ".join(columns) + " |",
                    "|---|" + "---:|" * len(columns),
                    f"| {method} | " + " | ".join(f"{100 * row[c]:.1f}" for c in columns) + " |",
                    ""))
