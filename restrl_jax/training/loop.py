"""One training loop: resume, steps, metrics rows, periodic evaluation and checkpoints.

Used by the warm start, the value model and every ReST round. A run is `plan.steps` optimizer
steps, counted 1.. (`done`, the number of steps taken; checkpoints and metrics rows carry it):

  start = loop.resume(plan, state)   # newest checkpoint under plan.checkpoint_dir, else `state`
  state = loop.run(plan, start, step_fn, batches, ...)

`resume` restores the newest orbax checkpoint (`checkpoint.Checkpointer`: the state pytree and
a JSON meta dict) and trims `metrics.jsonl` and `plan.step_files` in `plan.metrics_dir` to the
rows of steps <= the checkpoint's (of a fresh start: to none), so the steps run again write their
rows once. `run` then, for each step, calls `state, metrics = step_fn(state, batches(step))` and
after it, in this order: writes `row(done, metrics)` to metrics.jsonl (`metrics_writer`) where
`plan.log_at(done)` and calls `on_row(done, row)`; runs `evaluate(done, state)` where
`plan.eval_at(done)` (a returned dict is written as a metrics row); saves the state with
`meta(done)` where `plan.checkpoint_at(done)`. A fresh start evaluates before its first step
when `plan.eval_at(0)` (the start point of a learning curve).

Batches are a function of the step (and whatever the caller restores from the checkpoint), so a
resumed run repeats the interrupted one's steps exactly.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import numpy as np

from restrl_jax import distributed, io_utils
from restrl_jax.checkpoint import Checkpointer
from restrl_jax.metrics_writer import MetricsWriter

METRICS_FILE = "metrics.jsonl"
Due = Callable[[int], bool]          # done -> whether something happens after that step


def every(n: int, last: int) -> Due:
  """Every `n` steps and after the `last` one."""
  return lambda done: done % n == 0 or done == last


def always(done: int) -> bool:
  return True


def never(done: int) -> bool:
  return False


@dataclasses.dataclass(frozen=True)
class LoopPlan:
  """Where a run keeps its files and when it logs, evaluates and checkpoints."""
  steps: int                          # optimizer steps of the whole run
  checkpoint_dir: Path
  metrics_dir: Path                   # metrics.jsonl (and tb/ with tensorboard)
  checkpoint_at: Due
  log_at: Due = always
  eval_at: Due = never
  keep_checkpoints: int = 2
  tensorboard: bool = False
  step_files: tuple[str, ...] = ()    # more JSON-lines files in metrics_dir keyed by "step"


class Start(NamedTuple):
  state: Any    # the restored state (or the one passed to `resume` on a fresh start)
  meta: dict    # the checkpoint's meta ({} on a fresh start)
  step: int     # steps already taken (0 on a fresh start)


def resume(plan: LoopPlan, state: Any) -> Start:
  """The newest checkpoint restored into the structure and shardings of `state`, else `state`;
  rows of steps past it dropped from the run's step-keyed files (process 0 writes them)."""
  with Checkpointer(plan.checkpoint_dir, plan.keep_checkpoints) as ckpt:
    restored = ckpt.restore_latest(state)
  start = Start(state, {}, 0) if restored is None else Start(*restored)
  if distributed.is_writer():
    for name in (METRICS_FILE, *plan.step_files):
      io_utils.trim_jsonl(Path(plan.metrics_dir) / name, start.step if start.step else -1)
  return start


def host_row(done: int, metrics: dict) -> dict:
  """Step metrics on the host: jax arrays as floats (0-d) or lists, other values as they are."""
  def host(v):
    if not isinstance(v, jax.Array):
      return v
    value = distributed.replicated_value(v)
    return float(value) if np.ndim(value) == 0 else value.tolist()
  return {k: host(v) for k, v in metrics.items()}


def run(plan: LoopPlan, start: Start, step_fn: Callable[[Any, Any], tuple[Any, dict]],
        batches: Callable[[int], Any],
        row: Callable[[int, dict], dict] = host_row,
        evaluate: Callable[[int, Any], dict | None] | None = None,
        meta: Callable[[int], dict] = lambda done: {},
        on_row: Callable[[int, dict], None] | None = None) -> Any:
  """Steps `start.step` .. `plan.steps - 1` from `start.state`; returns the final state."""
  state = start.state
  with Checkpointer(plan.checkpoint_dir, plan.keep_checkpoints) as ckpt, \
      MetricsWriter(plan.metrics_dir, tensorboard=plan.tensorboard) as writer:

    def evaluated(done: int, state: Any) -> None:
      scores = evaluate(done, state)
      if scores is not None:
        writer.write(done, scores)

    if evaluate is not None and start.step == 0 and plan.eval_at(0):
      evaluated(0, state)
    for step in range(start.step, plan.steps):
      state, metrics = step_fn(state, batches(step))
      done = step + 1
      if plan.log_at(done):
        logged = row(done, metrics)
        writer.write(done, logged)
        if on_row is not None:
          on_row(done, logged)
      if evaluate is not None and plan.eval_at(done):
        evaluated(done, state)
      if plan.checkpoint_at(done):
        ckpt.save(done, state, meta(done))
  return state
