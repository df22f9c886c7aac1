"""The pipeline's stages, one adapter module each: it reads its config sections, calls the domain
packages with plain values, writes its outputs under `ctx.stage_dir` and returns its summary.

Full method (docs/method.md §1): warmstart -> rest_grpo -> collect_values -> train_value ->
decode; `evaluate` scores a policy on a benchmark, `evaluate_suite` on the six of the paper's
Table 1 (its row with the paper's Avg.). Each module registers its stage with the
config keys its outputs depend on (`register_stage(name, reads=...)`; a key that changes only
the speed, execution.num_workers, is left out). `load_builtin()` imports them (the runner calls
it); they are not imported here, so that `python -m restrl_jax.pipeline.stages.rest_grpo` runs
its module once.
"""
from __future__ import annotations

import importlib

BUILTIN = ("warmstart", "rest_grpo", "collect_values", "train_value", "decode", "evaluate",
           "evaluate_suite")


def load_builtin() -> None:
  """Import every builtin stage module, which registers its stage."""
  for name in BUILTIN:
    importlib.import_module(f"{__name__}.{name}")
