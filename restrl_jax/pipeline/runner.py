"""Runs the configured stages in order, skipping finished ones, and writes the run summary.

A stage's outputs are reused only under the config values they were made with: the values of
the keys the stage reads (`register_stage(..., reads=...)`) are recorded in
`<stage>/stage_config.json` when it starts and in `DONE.json` when it finishes. Before any stage
runs, a rerun compares them with the current config and stops with a `ConfigError` naming every
changed key of a finished or started stage; stages that never started (or failed before writing
anything) run with the new values.

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
from restrl_jax.pipeline import stage_inputs, stages, summary as summary_lib
from restrl_jax.pipeline.registry import STAGES, StageContext

DONE_FILE, STARTED_FILE = "DONE.json", "stage_config.json"


def check_stages(names) -> None:
  """ConfigError naming the unknown stages (cheap: no stage module is imported)."""
  known = set(stages.BUILTIN) | set(STAGES)
  unknown = [s for s in names if s not in known]
  if unknown:
    raise ConfigError(f"config.stages names unknown stage(s) {unknown}; known: {sorted(known)}")


def _recorded_inputs(stage_dir: Path) -> dict | None:
  """The config values a finished or started stage ran with (None: never started)."""
  done, started = stage_dir / DONE_FILE, stage_dir / STARTED_FILE
  if done.exists():
    return json.loads(done.read_text()).get("config")
  if started.exists():
    return json.loads(started.read_text())
  return None


def _forget_start_without_outputs(stage_dir: Path) -> None:
  """A stage that failed before writing anything (bad input, say) counts as never started, so
  the rerun after the fix may change its config values."""
  if [p.name for p in stage_dir.iterdir()] == [STARTED_FILE]:
    (stage_dir / STARTED_FILE).unlink()


def check_reuse(config: ml_collections.ConfigDict, workdir: Path) -> None:
  """ConfigError naming the changed keys of every stage whose outputs in `workdir` were made
  with other config values."""
  stale = []
  for name in config.stages:
    recorded = _recorded_inputs(workdir / name)
    if recorded is None:
      continue
    changed = stage_inputs.changes(recorded, stage_inputs.values(config, STAGES[name].reads))
    if changed:
      stale.append(f"{name} ({'; '.join(changed)})")
  if stale:
    raise ConfigError(
        f"workdir {workdir} holds outputs made with other config values, of stage(s) "
        f"{', '.join(stale)}. Use another --config.workdir, or delete those stage folders (and "
        "the folders of the stages after them, which used their outputs) to run them again")


def run_pipeline(config: ml_collections.ConfigDict) -> dict[str, dict]:
  """Run `config.stages`; returns {stage: summary}. Finished stages are read back, not re-run."""
  check_stages(config.stages)
  stages.load_builtin()   # importing the stage modules fills the registry
  workdir = Path(config.workdir)
  check_reuse(config, workdir)
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
    inputs = stage_inputs.values(config, STAGES[name].reads)
    if writer:
      io_utils.atomic_write_json(stage_dir / STARTED_FILE, inputs)
    logging.info("stage %s: running in %s", name, stage_dir)
    start = time.time()
    try:
      summary = STAGES[name].run(StageContext(config=config, workdir=workdir, stage_dir=stage_dir))
    except BaseException:
      if writer:
        _forget_start_without_outputs(stage_dir)
      raise
    if writer:
      io_utils.atomic_write_json(done, {"summary": summary, "seconds": time.time() - start,
                                        "config": inputs})
    distributed.sync(f"stage {name} done")
    results[name] = summary
  table = summary_lib.render(results)
  if writer:
    io_utils.atomic_write_text(workdir / "summary.md", table)
    print(table)
  return results
