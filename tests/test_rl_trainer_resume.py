"""The `rest_grpo` stage killed with SIGKILL mid-round resumes to bitwise the same policy.

Run A goes through uninterrupted (in this process); run B runs
`python -m restrl_jax.pipeline.stages.rest_grpo`
in a subprocess that is SIGKILLed right after its first checkpoint in round 0, then resumes here.
Both use the 8-device CPU mesh of conftest.py, the real sandbox, and an APPS-format file of
synthetic problems whose initial state is a correct program followed by "#" (so a random
policy's rewards vary).
"""
import contextlib
import dataclasses
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jax.experimental.compilation_cache import compilation_cache as cc

from restrl_jax import config_defaults, io_utils, models
from restrl_jax.config_checks import ConfigError
from restrl_jax.data.synthetic import load_synthetic, to_apps_row
from restrl_jax.pipeline import StageContext
from restrl_jax.pipeline.sections import section
from restrl_jax.pipeline.stages.rest_grpo import STAGE, grpo_config, rounds_config
from restrl_jax.pipeline.stages.rest_grpo import run as rest_grpo_stage
from restrl_jax.tokenizer import embedded_tokenizer
from restrl_jax.warmstart import policy_config

REPO = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def compilation_cache(path: Path):
  """A persistent XLA cache for the three runs of the same programs (the subprocess fills it;
  this process reads it), switched off again afterwards."""
  previous = (jax.config.jax_compilation_cache_dir,
              jax.config.jax_persistent_cache_min_compile_time_secs)
  cc.reset_cache()
  jax.config.update("jax_compilation_cache_dir", str(path))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  try:
    yield
  finally:
    jax.config.update("jax_compilation_cache_dir", previous[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", previous[1])
    cc.reset_cache()


def make_config(tmp: Path):
  tok = embedded_tokenizer()
  config = policy_config(tok)
  policy = tmp / "start_policy"
  models.save_hf(config, models.init_params(config, jax.random.key(0)), policy)
  tok.save_pretrained(str(policy))
  problems = [dataclasses.replace(p, starter_code=p.solutions[0] + "#")
              for p in load_synthetic("train", 4, verify=False)]
  data = tmp / "train.jsonl"
  data.write_text("".join(json.dumps(to_apps_row(p)) + "\n" for p in problems))
  c = config_defaults.base()
  c.model.hf_path = str(policy)
  c.execution.num_workers = 2
  c.rest = config_defaults.rest()
  c.rest.update(dict(benchmark="apps", data_path=str(data), rounds=2, num_samples=4,
                     temperature=1.0, max_new_tokens=16, max_steps_per_round=3,
                     checkpoint_every=1, tensorboard=False))
  c.grpo = config_defaults.grpo()
  c.grpo.update(dict(group_size=4, prompts_per_step=2, max_new_tokens=16, max_prompt_tokens=256,
                     temperature=1.0, learning_rate=1e-3, schedule="linear", epochs=3.0))
  return c


def run_stage(config, workdir: Path) -> dict:
  stage_dir = workdir / STAGE
  stage_dir.mkdir(parents=True, exist_ok=True)
  return rest_grpo_stage(StageContext(config=config, workdir=workdir, stage_dir=stage_dir))


def finished_steps(checkpoints: Path) -> list[int]:
  if not checkpoints.is_dir():
    return []
  return sorted(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())


def kill_after_first_checkpoint(config_path: Path, workdir: Path, cache: Path,
                                limit_s: float = 300.0) -> None:
  env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
             JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  proc = subprocess.Popen([sys.executable, "-m", "restrl_jax.pipeline.stages.rest_grpo",
                           str(config_path), str(workdir)], cwd=REPO, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  checkpoints = workdir / STAGE / "round_0" / "checkpoints"
  deadline = time.time() + limit_s
  try:
    while not finished_steps(checkpoints):
      if proc.poll() is not None:
        pytest.fail(f"stage subprocess exited early: {proc.stderr.read().decode()[-2000:]}")
      if time.time() > deadline:
        pytest.fail("no checkpoint from the stage subprocess in time")
      time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_killed_stage_resumes_to_identical_params(tmp_path):
  config = make_config(tmp_path)
  config_path = tmp_path / "config.json"
  config_path.write_text(config.to_json_best_effort())
  killed = tmp_path / "killed"
  kill_after_first_checkpoint(config_path, killed, tmp_path / "xla_cache")
  round0 = killed / STAGE / "round_0"
  assert not (round0 / "policy").exists()     # killed mid-round
  assert finished_steps(round0 / "checkpoints")[0] < 3

  with compilation_cache(tmp_path / "xla_cache"):
    straight = run_stage(config, tmp_path / "straight")
    resumed = run_stage(config, killed)
  assert straight == {k: v.replace(str(killed), str(tmp_path / "straight"))
                      if isinstance(v, str) else v for k, v in resumed.items()}
  facts = json.loads((round0 / "round.json").read_text())
  assert facts["resumed_from"] >= 1 and facts["steps"] >= 2
  _, a = models.load_hf(tmp_path / "straight" / STAGE / "policy")
  _, b = models.load_hf(killed / STAGE / "policy")
  _, start = models.load_hf(tmp_path / "start_policy")
  assert jax.tree.all(jax.tree.map(np.array_equal, a, b))          # bitwise
  assert not jax.tree.all(jax.tree.map(np.array_equal, a, start))  # and training moved them
  for r in range(2):
    steps = json.loads((killed / STAGE / f"round_{r}" / "round.json").read_text())["steps"]
    if steps:
      ma = io_utils.read_jsonl(tmp_path / "straight" / STAGE / f"round_{r}" / "metrics.jsonl")
      mb = io_utils.read_jsonl(killed / STAGE / f"round_{r}" / "metrics.jsonl")
      assert [m["step"] for m in mb] == list(range(1, steps + 1))   # no duplicated records
      assert [m["loss"] for m in ma] == [m["loss"] for m in mb]


def test_sections_reject_unknown_fields():
  c = config_defaults.base()
  c.rest = config_defaults.rest()
  c.rest.sigma_0 = 0.1
  with pytest.raises(ConfigError, match="config.rest.sigma_0"):
    section(c, "rest")
  c = config_defaults.base()   # a config without the sections gets the paper's defaults
  assert section(c, "grpo").group_size == 8 and section(c, "rest").sigma0 == 0.05
  spec = importlib.util.spec_from_file_location("apps_config", REPO / "configs" / "apps.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  apps = module.get_config()    # the paper's recipe reads over the defaults unchanged
  rounds = rounds_config(section(apps, "rest"), section(apps, "grpo"), "bfloat16")
  assert (rounds.rounds, rounds.num_samples, rounds.learning_rate) == (2, 5, 1e-7)
  assert grpo_config(section(apps, "grpo")).loss.beta_kl == 0.04
