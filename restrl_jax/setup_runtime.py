"""Process-level set-up before any stage runs: config validation and JAX start-up.

Multi-host: when `config.distributed.enabled` is true (or "auto" on a TPU VM pod), JAX's own
`jax.distributed.initialize` joins the processes; nothing home-made replaces it.
"""
from __future__ import annotations

import logging
import os

import ml_collections

from restrl_jax import config_defaults
from restrl_jax.config_checks import ConfigError, check_known_keys, check_required, get_field

# Fields every pipeline config must set (placeholders in configs/*.py).
REQUIRED = ("workdir", "stages", "seed")


def validate(config: ml_collections.ConfigDict) -> None:
  """Stop on a bad config (`ConfigError`) or a missing / malformed file of the data root
  (`DataError`), before any stage runs; fills data paths from `config.data_dir`."""
  check_known_keys(config, config_defaults.known_keys())
  for name in config_defaults.SEED_FIELDS:   # recorded as resolved: a finished stage's seeds
    if config.get(name) is not None:         # are compared on a rerun
      config_defaults.fill_seeds(config, name, config[name])
  # every unset field at once, local paths included (data paths may still come from data_dir)
  paths = tuple(p for p in config.get("required_paths", ()) if not p.endswith("data_path"))
  check_required(config, REQUIRED + tuple(config.get("required_fields", ())) + paths)
  if not config.stages:
    raise ConfigError("config.stages is empty: name at least one stage")
  if isinstance(config.stages, str):
    raise ConfigError(f"config.stages must be a tuple of stage names, got the string {config.stages!r}")
  from restrl_jax.pipeline.runner import check_stages
  check_stages(config.stages)
  from restrl_jax.pipeline import data_paths  # pylint: disable=import-outside-toplevel
  data_paths.apply(config)   # unset data paths from config.data_dir; DataError if a file is bad
  for path in config.get("required_paths", ()):
    value = get_field(config, path)
    if value is None:   # only data paths get here unset (the others were checked above)
      raise ConfigError(f"config field {path} is not set: give a local path with "
                        f"--config.{path}=... (or a data root with --config.data_dir=DIR)")
    if not os.path.exists(os.path.expanduser(str(value))):
      raise ConfigError(f"config field {path}={value!r}: no such file or folder")


def check_sandbox(config: ml_collections.ConfigDict) -> None:
  """Stop before any stage when the configured sandbox level cannot run here: raises
  `execution.SandboxUnavailable` (one line: what failed, the fix, and
  `--config.execution.isolation=rlimits` to accept the weaker level), ConfigError for a bad level."""
  if "execution" not in config:
    return
  from restrl_jax import execution  # pylint: disable=import-outside-toplevel
  try:
    execution.resolve_isolation(config.execution.isolation)
  except ValueError as err:
    raise ConfigError(f"config.execution.isolation: {err}") from None


# `--config.quick=True`: the same stages at a size that finishes in a few minutes on 2 CPU cores
# (the end-to-end tests run it). Each entry: field path -> the largest value a quick run keeps
# (a number already smaller, or 0 = off, stays; None = all becomes the value); a tuple replaces.
QUICK_OVERRIDES = {
    "warmstart.eval_num_problems": 16,
    "warmstart.eval_samples": 2,
    "warmstart.steps": 40,
    "evaluate.num_problems": 16,
    "evaluate.num_samples": 2,
    "evaluate.ks": (1, 2),
    "rest.rounds": 1,
    "rest.num_problems": 8,
    "rest.max_steps_per_round": 2,
    "rest.curve_every": 1,
    "rest.curve_num_problems": 8,
    "mcts.collect_iterations": 2,
    "mcts.collect_num_problems": 4,
    "mcts.decode_iterations": 2,
    "mcts.decode_num_problems": 4,
    "value.epochs": 1,
    "value.max_length": 512,
    "sampling.max_new_tokens": 128,
    "rest.max_new_tokens": 128,
    "grpo.max_new_tokens": 128,
    "grpo.max_prompt_tokens": 512,
    "suite.num_problems": 2,
    "suite.apps_num_problems": 4,
}


# `--config.quick=True` also pads every sampled batch to at least 32 rows and every prompt to at
# least 256 tokens (`sampling.buckets.set_minimums`): the stages' small calls then share one
# compiled prefill and decode per prompt length, and GRPO one train step, instead of compiling one
# per power of two (compiling, not computing, is most of a quick run's time on a CPU).
QUICK_BUCKETS = {"min_batch": 32, "min_prompt": 256}


def _shrunk(current, quick):
  """The value a quick run uses for a field set to `current` (QUICK_OVERRIDES)."""
  if isinstance(quick, tuple) or current is None:
    return quick
  return min(current, quick)


def apply_quick(config: ml_collections.ConfigDict) -> None:
  """Shrink the run in place when `config.quick` is set (fields a config lacks are skipped), and
  raise the process's smallest shape buckets (QUICK_BUCKETS)."""
  if not config.get("quick", False):
    return
  from restrl_jax.sampling import buckets  # pylint: disable=import-outside-toplevel
  buckets.set_minimums(**QUICK_BUCKETS)
  for path, value in QUICK_OVERRIDES.items():
    section, _, key = path.rpartition(".")
    node = config
    for part in section.split("."):
      node = node.get(part) if node is not None else None
    if node is not None and key in node:
      node[key] = _shrunk(node[key], value)


def initialize(config: ml_collections.ConfigDict) -> None:
  import jax
  from restrl_jax import distributed, mesh_presets
  distributed.initialize(config.get("distributed", None))
  hardware = mesh_presets.apply(config)  # --config.mesh.preset=v5e-16 -> mesh shape, remat, bf16
  if hardware is not None:
    mesh_presets.check_devices(hardware, jax.device_count())
  logging.info("JAX %s: %d process(es), %d device(s) (%s)", jax.__version__,
               jax.process_count(), jax.device_count(), jax.default_backend())
