"""The runner reuses a stage's outputs only under the config values they were made with.

Toy stages (registered for this test, no JAX work) read declared keys; the builtin stages'
declarations are checked against the demo config.
"""
import importlib.util
import json
from pathlib import Path

import ml_collections
import pytest

from restrl_jax.config_checks import ConfigError
from restrl_jax.pipeline import STAGES, register_stage, runner, stage_inputs, stages

REPO = Path(__file__).resolve().parents[1]
CALLS: list[str] = []
FAIL: set[str] = set()            # stages that fail after writing a partial output
FAIL_AT_ONCE: set[str] = set()    # stages that fail before writing anything


def _toy(name: str):
  def run(ctx):
    CALLS.append(name)
    if name in FAIL_AT_ONCE:
      raise RuntimeError(f"{name}: bad input")
    if name in FAIL:
      (Path(ctx.stage_dir) / "partial.txt").write_text("half done")
      raise RuntimeError(f"{name} interrupted")
    return {"ran": name}
  return run


@pytest.fixture(autouse=True)
def toy_stages():
  register_stage("toy_first", reads=("first", "shared.x"))(_toy("toy_first"))
  register_stage("toy_later", reads=("later.*",))(_toy("toy_later"))
  CALLS.clear(), FAIL.clear(), FAIL_AT_ONCE.clear()
  yield
  del STAGES["toy_first"], STAGES["toy_later"]


def config(workdir: Path, stages=("toy_first", "toy_later"), **changes) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict({
      "workdir": str(workdir), "stages": stages,
      "first": {"steps": 4, "lr": 0.1}, "shared": {"x": (1, 2), "speed": 1},
      "later": {"n": 3}})
  for key, value in changes.items():
    section, field = key.split("__")
    c[section][field] = value
  return c


def test_finished_stages_rerun_with_the_same_values_are_skipped(tmp_path):
  runner.run_pipeline(config(tmp_path))
  runner.run_pipeline(config(tmp_path, shared__speed=8))   # a key no stage reads
  assert CALLS == ["toy_first", "toy_later"]
  done = json.loads((tmp_path / "toy_first" / "DONE.json").read_text())
  assert done["config"] == {"first.lr": 0.1, "first.steps": 4, "shared.x": [1, 2]}


def test_changed_keys_of_a_finished_stage_are_refused_by_name(tmp_path):
  runner.run_pipeline(config(tmp_path))
  with pytest.raises(ConfigError) as e:
    runner.run_pipeline(config(tmp_path, first__steps=8, shared__x=(1, 3), later__n=5))
  message = str(e.value)
  assert "toy_first (first.steps: 4 -> 8; shared.x: [1, 2] -> [1, 3])" in message
  assert "toy_later (later.n: 3 -> 5)" in message
  assert str(tmp_path) in message and "--config.workdir" in message
  assert CALLS == ["toy_first", "toy_later"]                    # nothing ran again


def test_changed_keys_of_later_stages_run_only_those(tmp_path):
  runner.run_pipeline(config(tmp_path, stages=("toy_first",)))
  runner.run_pipeline(config(tmp_path, later__n=5))
  assert CALLS == ["toy_first", "toy_later"]                    # toy_first reused
  done = json.loads((tmp_path / "toy_later" / "DONE.json").read_text())
  assert done["config"] == {"later.n": 5}


def test_an_interrupted_stage_resumes_only_with_its_values(tmp_path):
  FAIL.add("toy_later")
  with pytest.raises(RuntimeError):
    runner.run_pipeline(config(tmp_path))
  FAIL.clear()
  with pytest.raises(ConfigError, match=r"toy_later \(later.n: 3 -> 4\)"):
    runner.run_pipeline(config(tmp_path, later__n=4))
  runner.run_pipeline(config(tmp_path))
  assert CALLS == ["toy_first", "toy_later", "toy_later"]


def test_a_stage_that_failed_before_writing_anything_takes_new_values(tmp_path):
  """E.g. a missing data file: the rerun after the fix is not refused."""
  FAIL_AT_ONCE.add("toy_later")
  with pytest.raises(RuntimeError):
    runner.run_pipeline(config(tmp_path))
  assert not (tmp_path / "toy_later" / runner.STARTED_FILE).exists()
  FAIL_AT_ONCE.clear()
  runner.run_pipeline(config(tmp_path, later__n=4))
  assert CALLS == ["toy_first", "toy_later", "toy_later"]


def test_builtin_stages_declare_keys_of_the_config():
  spec = importlib.util.spec_from_file_location("demo", REPO / "configs" / "demo.py")
  demo = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(demo)
  c = demo.get_config()
  runner.check_stages(c.stages)
  stages.load_builtin()
  for name in ("warmstart", "rest_grpo", "collect_values", "train_value", "decode", "evaluate"):
    for read in STAGES[name].reads:
      assert stage_inputs.values(c, (read,)), f"{name} reads {read!r}: no such config key"
  collect, decode = (set(stage_inputs.values(c, STAGES[s].reads))
                     for s in ("collect_values", "decode"))
  assert "mcts.decode_iterations" in decode - collect
  assert "mcts.collect_iterations" in collect - decode


def test_a_record_with_a_retired_key_is_still_reused():
  """A stage finished before an unread setting was removed ran with the same values."""
  recorded = {"sampling.temperature": 0.7, "sampling.max_prompt_tokens": 1024}
  assert stage_inputs.changes(recorded, {"sampling.temperature": 0.7}) == []
  assert stage_inputs.changes(recorded, {"sampling.temperature": 0.5}) == [
      "sampling.temperature: 0.7 -> 0.5"]
