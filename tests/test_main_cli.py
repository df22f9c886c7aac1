"""The entry point's config handling: overrides, unknown keys, missing fields, bad stages."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_main(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "restrl_jax.main", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=timeout)


def test_unknown_override_names_the_key():
  out = run_main("--config=configs/demo.py", "--config.sampling.temprature=0.5")
  assert out.returncode != 0
  assert "unknown config key 'sampling.temprature'" in out.stderr
  assert "temperature" in out.stderr  # the known keys are listed


def test_missing_required_path_names_the_field(tmp_path):
  out = run_main("--config=configs/humaneval.py", f"--config.workdir={tmp_path}")
  assert out.returncode != 0
  assert "model.hf_path" in out.stderr and "--config.model.hf_path=" in out.stderr


def test_nonexistent_path_is_reported(tmp_path):
  out = run_main("--config=configs/humaneval.py", f"--config.workdir={tmp_path}",
                 f"--config.model.hf_path={tmp_path}/nowhere")
  assert out.returncode != 0 and "no such file or folder" in out.stderr
  assert "model.hf_path" in out.stderr


def test_unknown_stage_is_named(tmp_path):
  out = run_main("--config=configs/demo.py", f"--config.workdir={tmp_path}",
                 "--config.stages=('warmstart','train_everything')")
  assert out.returncode != 0
  assert "train_everything" in out.stderr and "warmstart" in out.stderr


def test_hardware_preset_on_wrong_device_count_is_a_clean_error(tmp_path):
  out = run_main("--config=configs/demo.py", f"--config.workdir={tmp_path}",
                 "--config.mesh.preset=v5e-16")
  assert out.returncode != 0 and "Traceback" not in out.stderr
  assert "error: config.mesh.preset='v5e-16' expects 16 devices" in out.stderr
  out = run_main("--config=configs/demo.py", f"--config.workdir={tmp_path}",
                 "--config.mesh.preset=v9z-8")
  assert out.returncode != 0 and "Traceback" not in out.stderr
  assert "unknown hardware preset 'v9z-8'" in out.stderr


def test_bad_override_type_is_reported():
  out = run_main("--config=configs/demo.py", "--config.seed=abc")
  assert out.returncode != 0 and "config.seed" in out.stderr


def test_config_files_load_and_validate():
  sys.path.insert(0, str(REPO))
  from restrl_jax import setup_runtime
  from restrl_jax.config_checks import ConfigError
  import importlib.util
  for name in ("demo", "apps", "humaneval"):
    spec = importlib.util.spec_from_file_location(name, REPO / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    if name == "demo":
      setup_runtime.validate(config)
    else:
      with pytest.raises(ConfigError, match="model.hf_path"):
        setup_runtime.validate(config)


def _demo_config():
  import importlib.util
  spec = importlib.util.spec_from_file_location("demo", REPO / "configs" / "demo.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


@pytest.mark.parametrize("path", ["rest.sigma", "colour", "sampling.max_prompt_tokens",
                                  "execution.timeout_s", "host_memory"])
def test_a_config_key_without_a_default_is_an_error(path):
  """A key no default section has (misspelt in a config file, or a removed setting) stops the
  run before any stage, named; overrides are refused earlier (the config is locked)."""
  from restrl_jax import setup_runtime
  from restrl_jax.config_checks import ConfigError
  config = _demo_config()
  section, _, key = path.rpartition(".")
  (config[section] if section else config)[key] = 1
  with pytest.raises(ConfigError, match=rf"unknown config key\(s\): {path} \(known: "):
    setup_runtime.validate(config)


def test_a_partial_section_is_no_error():
  from restrl_jax import setup_runtime
  config = _demo_config()
  config.rest = type(config.rest)({"rounds": 1})
  setup_runtime.validate(config)
