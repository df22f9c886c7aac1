"""Runs the configured stages in order, skipping finished ones, and writes the run summary.

With several processes every process runs every stage; only process 0
(`distributed.is_writer()`) writes config.json, DONE.json and summary.md (orbax checkpoints are
saved by all processes inside the stages).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import ml_collections

from restrl_jax import distributed, io_utils
from restrl_jax.config_checks import ConfigError
from restrl_jax.pipeline import summary as summary_lib
from restrl_jax.pipeline.stages import STAGES, StageContext

DONE_FILE = "DONE.json"


def _load_stage_modules() -> None:
  """Importing the stage modules fills the registry."""
  from restrl_jax.pipeline import builtin_stages  # noqa: F401


def check_stages(stages) -> None:
  _load_stage_modules()
  unknown = [s for s in stages if s not in STAGES]
  if unknown:
    raise ConfigError(f"config.stages names unknown stage(s) {unknown}; known: {sorted(STAGES)}")


def run_pipeline(config: ml_collections.ConfigDict) -> dict[str, dict]:
  """Run `config.stages`; returns {stage: summary}. Finished stages are read back, not re-run."""
  check_stages(config.stages)
  workdir = Path(config.workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  writer = distributed.is_writer()
  if writer:
    io_utils.atomic_write_text(workdir / "config.json", config.to_json_best_effort(indent=2))
  results: dict[str, dict] = {}
  for name in config.stages:
    stage_dir = workdir / name
    done = stage_dir / DONE_FILE
    if done.exists():
      logging.info("stage %s: finished earlier, skipping (%s)", name, done)
      results[name] = json.loads(done.read_text())["summary"]
      continue
    stage_dir.mkdir(parents=True, exist_ok=True)
    logging.info("stage %s: running in %s", name, stage_dir)
    start = time.time()
    summary = STAGES[name](StageContext(config=config, workdir=workdir, stage_dir=stage_dir))
    if writer:
      io_utils.atomic_write_json(done, {"summary": summary, "seconds": time.time() - start})
    distributed.sync(f"stage {name} done")
    results[name] = summary
  table = summary_lib.render(results)
  if writer:
    io_utils.atomic_write_text(workdir / "summary.md", table)
    print(table)
  return results
