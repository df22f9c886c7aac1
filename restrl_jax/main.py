"""Entry point: `python -m restrl_jax.main --config=configs/demo.py [--config.a.b=value ...]`.

Reads an ml_collections config file (overrides through absl flags), validates it, sets up JAX
(multi-host start-up when configured) and runs the configured stages (see restrl_jax.pipeline).
A bad config (`ConfigError`) or bad input (`DataError`: a data file's row, a missing file, a
tokenizer of another model) stops with one line, `error: <what>`, and a non-zero exit.
"""
from __future__ import annotations

import logging as std_logging
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from restrl_jax.config_checks import ConfigError, describe_unknown_override
from restrl_jax.errors import DataError
from restrl_jax.execution import SandboxUnavailable

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Pipeline config file, e.g. configs/demo.py", lock_config=True)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing with readable messages for unknown config keys."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:
    bad = next((a for a in argv[1:] if a.startswith("--config.") and _is_unknown(a)), None)
    if bad is None:
      raise
    sys.exit(f"error: {describe_unknown_override(_load_base_config(argv), bad)}")
  except flags.Error as e:
    sys.exit(f"error: {e}")


def _load_base_config(argv: list[str]):
  """The config as its file defines it, before overrides (to explain a bad override)."""
  import importlib.util
  path = next(a.split("=", 1)[1] for a in argv if a.startswith("--config="))
  spec = importlib.util.spec_from_file_location("restrl_config", path.split(":")[0])
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def _is_unknown(arg: str) -> bool:
  try:
    from restrl_jax.config_checks import get_field
    get_field(_load_base_config(sys.argv), arg.split("=", 1)[0].removeprefix("--config."))
    return False
  except ConfigError:
    return True


class _QuietLibraries(std_logging.Filter):
  """Drops INFO chatter of checkpoint/compilation libraries; their warnings still show."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    noisy = any(part in record.pathname for part in ("/orbax/", "/jax/_src/"))
    return record.levelno >= std_logging.WARNING or not noisy


def main(argv: list[str]) -> None:
  del argv
  logging.get_absl_handler().addFilter(_QuietLibraries())
  config = _CONFIG.value
  if config is None:
    sys.exit("error: --config=<file> is required, e.g. --config=configs/demo.py")
  from restrl_jax import setup_runtime  # heavy imports only after flags are valid
  from restrl_jax.pipeline import run_pipeline
  try:
    setup_runtime.validate(config)
    setup_runtime.check_sandbox(config)
    setup_runtime.apply_quick(config)
    setup_runtime.initialize(config)
    run_pipeline(config)
  except SandboxUnavailable as e:
    sys.exit(f"error: {e}")
  except (ConfigError, DataError) as e:
    logging.error("%s", e)
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
