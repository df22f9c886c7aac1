"""Stage registry. A stage is a function `StageContext -> dict` of summary metrics, registered
with the config keys it reads (`reads`: sections, dotted keys or patterns; see stage_inputs.py).

Each stage writes its outputs under `ctx.stage_dir` (= workdir/<stage name>) and resumes from what
is there when it is re-run after an interruption; the runner marks it finished by writing
`DONE.json` with the returned summary and the values of its `reads`, and skips it on later runs
with the same values.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import ml_collections


@dataclasses.dataclass(frozen=True)
class StageContext:
  config: ml_collections.ConfigDict
  workdir: Path
  stage_dir: Path

  def stage_output(self, stage: str) -> Path:
    """The folder of another (earlier) stage, to read its outputs."""
    return self.workdir / stage


StageFn = Callable[[StageContext], dict]


@dataclasses.dataclass(frozen=True)
class Stage:
  run: StageFn
  reads: tuple[str, ...]   # config keys whose values the stage's outputs depend on


STAGES: dict[str, Stage] = {}


def register_stage(name: str, *, reads: tuple[str, ...]) -> Callable[[StageFn], StageFn]:
  def decorate(fn: StageFn) -> StageFn:
    if name in STAGES:
      raise ValueError(f"stage {name!r} registered twice")
    STAGES[name] = Stage(fn, tuple(reads))
    return fn
  return decorate
