"""Runs the configured stages in order, skipping finished ones, and writes the run summary."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import ml_collections

from restrl_jax import io_utils
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
    io_utils.atomic_write_json(done, {"summary": summary, "seconds": time.time() - start})
    results[name] = summary
  table = summary_lib.render(results)
  io_utils.atomic_write_text(workdir / "summary.md", table)
  print(table)
  return results
