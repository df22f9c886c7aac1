"""Every stage killed with SIGKILL mid-write resumes to bitwise the outputs of an uninterrupted run.

Two tiny pipelines (warmstart trained; and rest_grpo with method rest_dpo -> collect_values ->
train_value -> decode) run twice through `python -m restrl_jax.main`: straight, and as chains of
runs each SIGKILLed by `restrl_jax.crash_points` (RESTRL_KILL_AT) inside a checkpoint save or an
atomic file write of one stage, each rerun resuming the killed stage, the last one finishing.
All five stages are deterministic on CPU with fixed seeds (batches and sampling keys are
functions of the step / tree id / seed, the sandbox's rewards of the program), so every output is
compared bitwise. (The existing tests/test_rl_trainer_resume.py covers method rest_grpo.)

The second pipeline starts from the shipped demo policy (`model.hf_path`) in a workdir of its own
(in one workdir the later stages would use the newest policy, the warm start's): a 4-step warm
start samples no program that passes a test, and ReST-DPO needs samples whose rewards differ.
"""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp
import pytest

REPO = Path(__file__).resolve().parents[1]
DEMO_POLICY = REPO / "restrl_jax" / "assets" / "demo_policy"

CONFIG = """
from configs import demo
from restrl_jax import config_defaults

def get_config():
  c = config_defaults.base()
  c.workdir = "unset"
  c.stages = ()   # run_main names the pipeline's stages
  c.model.hf_path = {policy!r}
  c.execution.num_workers = 1
  c.sampling.update(dict(max_new_tokens=32, batch_size=8))
  c.warmstart = config_defaults.warmstart()
  c.warmstart.update(dict(use_shipped=False, num_train_problems=16, steps=4, batch_size=4,
                          checkpoint_every=2, log_every=1, max_len=128, pad_multiple=128,
                          eval_num_problems=2,
                          eval_samples=1))
  c.rest = demo.rest()
  c.rest.update(dict(method="rest_dpo", rounds=1, num_problems=8, num_samples=4,
                     max_new_tokens=32, max_steps_per_round=3, checkpoint_every=1,
                     tensorboard=False, dpo_max_completion_tokens=32))
  c.grpo = demo.grpo()
  c.grpo.update(dict(epochs=4.0, max_new_tokens=32, max_prompt_tokens=256))
  c.mcts = demo.mcts()
  c.mcts.update(dict(collect_iterations=2, collect_samples=2, collect_num_problems=4,
                     batch_trees=2, decode_iterations=2, decode_samples=2,
                     decode_num_problems=2, decode_methods=("sampling", "best_of_n")))
  c.value = demo.value()
  c.value.update(dict(epochs=1, batch_size=4, evals=2, min_eval=2, max_length=256,
                      pad_multiple=256, score_batch_size=8))
  return c
"""

# (stage killed, RESTRL_KILL_AT): inside the 2nd checkpoint save (the 1st is complete), or
# inside the atomic write of a file (the new text not yet renamed over it).
KILLS = (
    ("warmstart", "checkpoint:warmstart/checkpoints:2"),
    ("rest_grpo", "checkpoint:rest_grpo/round_0/checkpoints:2"),
    ("collect_values", "atomic_write:collect_values/progress.json:2"),
    ("train_value", "checkpoint:train_value/checkpoints:2"),
    ("decode", "atomic_write:decode/best_of_n.jsonl:1"),
)


PIPELINES = {"warm": ("warmstart",),
             "rest": ("rest_grpo", "collect_values", "train_value", "decode")}


def pipeline_of(stage: str) -> str:
  return next(name for name, stages in PIPELINES.items() if stage in stages)


def run_main(config: Path, workdir: Path, cache: Path, kill_at: str | None = None,
             extra: tuple[str, ...] = ()):
  """The pipeline of `workdir`'s name ("warm" / "rest") run in `workdir` (`extra`: more flags)."""
  env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(cache),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
  env.pop("XLA_FLAGS", None)        # one CPU device, the same for every run
  env.pop("RESTRL_KILL_AT", None)
  if kill_at:
    env["RESTRL_KILL_AT"] = kill_at
  return subprocess.run([sys.executable, "-m", "restrl_jax.main", f"--config={config}",
                         f"--config.workdir={workdir}",
                         f"--config.stages={PIPELINES[workdir.name]!r}", *extra], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=600)


def steps_in(checkpoints: Path) -> list[int]:
  return sorted(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())


def value_params(root: Path):
  with ocp.StandardCheckpointer() as ckpt:
    return ckpt.restore((root / "rest" / "train_value" / "best" / "params").absolute())


def same_tree(a, b) -> bool:
  import jax
  return jax.tree.structure(a) == jax.tree.structure(b) and all(
      np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


BITWISE_FILES = ("warmstart/policy/model.safetensors", "warmstart/eval.json",
                 "rest_grpo/round_0/rows.jsonl", "rest_grpo/policy/model.safetensors",
                 "collect_values/values.jsonl", "decode/sampling.jsonl", "decode/sampling.json",
                 "decode/best_of_n.jsonl", "decode/best_of_n.json")


def losses(path: Path) -> list:
  return [(r["step"], r.get("loss"), r.get("eval_loss"))
          for r in map(json.loads, path.read_text().splitlines())]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
  """(config file, XLA cache, folder of the uninterrupted runs of both pipelines at seed 0)."""
  root = tmp_path_factory.mktemp("kill_resume")
  config = root / "kill_config.py"
  config.write_text(CONFIG.format(policy=str(DEMO_POLICY)))
  cache = root / "xla_cache"
  for name in PIPELINES:
    out = run_main(config, root / "straight" / name, cache)
    assert out.returncode == 0, out.stderr[-3000:]
  return config, cache, root / "straight"


@pytest.mark.slow
def test_each_stage_killed_mid_write_resumes_bitwise(straight, tmp_path):
  config, cache, straight = straight
  killed = tmp_path / "killed"

  for stage, kill_at in KILLS:
    workdir = killed / pipeline_of(stage)
    out = run_main(config, workdir, cache, kill_at)
    assert out.returncode == -signal.SIGKILL, (kill_at, out.stderr[-3000:])
    assert not (workdir / stage / "DONE.json").exists(), kill_at
    if kill_at.startswith("checkpoint"):   # the first checkpoint is there, whole
      assert steps_in(workdir / kill_at.split(":")[1]), kill_at
  for name, stages in PIPELINES.items():
    out = run_main(config, killed / name, cache)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stderr.count("finished earlier, skipping") == len(stages) - 1, name

  for name in BITWISE_FILES:
    path = Path(pipeline_of(name.split("/")[0])) / name
    assert (killed / path).read_bytes() == (straight / path).read_bytes(), name
  assert not list(killed.rglob("*.tmp")) and not list(killed.rglob("*.old"))
  facts = json.loads((killed / "rest" / "rest_grpo" / "round_0" / "round.json").read_text())
  assert facts["resumed_from"] >= 1 and facts["steps"] >= 2   # resumed, not redone
  for metrics in ("warm/warmstart/metrics.jsonl", "rest/rest_grpo/round_0/metrics.jsonl",
                  "rest/train_value/metrics.jsonl"):            # no duplicated records
    assert losses(killed / metrics) == losses(straight / metrics), metrics
  done = json.loads((killed / "rest" / "train_value" / "DONE.json").read_text())["summary"]
  assert done["resumed_from"] >= 1
  assert same_tree(value_params(killed), value_params(straight))


# What each stage writes that the seed must change: its trained weights or its sampled programs.
SEEDED_OUTPUTS = {"warmstart": ("warm/warmstart/policy/model.safetensors",),
                  "rest_grpo": ("rest/rest_grpo/round_0/rows.jsonl",
                                "rest/rest_grpo/policy/model.safetensors"),
                  "collect_values": ("rest/collect_values/values.jsonl",),
                  "decode": ("rest/decode/sampling.jsonl", "rest/decode/best_of_n.jsonl")}


@pytest.mark.slow
def test_every_stage_output_depends_on_the_top_level_seed(straight, tmp_path):
  """`--config.seed=1` reaches every stage's randomness: each stage's outputs differ from the
  seed-0 run of the same config (the value model: its trained parameters)."""
  config, cache, seed0 = straight
  seed1 = tmp_path / "seed1"
  for name in PIPELINES:
    out = run_main(config, seed1 / name, cache, extra=("--config.seed=1",))
    assert out.returncode == 0, out.stderr[-3000:]
  for stage, files in SEEDED_OUTPUTS.items():
    for name in files:
      assert (seed1 / name).read_bytes() != (seed0 / name).read_bytes(), (stage, name)
  assert not same_tree(value_params(seed1), value_params(seed0))      # train_value
  for stage in ("warmstart", "rest_grpo", "collect_values", "train_value", "decode"):
    inputs = json.loads((seed1 / pipeline_of(stage) / stage / "stage_config.json").read_text())
    assert inputs["seed"] == 1, stage
