"""Every stage uses the newest policy an earlier stage wrote; `model.hf_path` is the base only."""
import json

import pytest

from restrl_jax import config_defaults
from restrl_jax.config_checks import ConfigError
from restrl_jax.pipeline.policy_source import resolve_policy


def _policy(folder):
  folder.mkdir(parents=True)
  (folder / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
  return folder


def _config(hf_path=None):
  c = config_defaults.base()
  c.model.hf_path = None if hf_path is None else str(hf_path)
  return c


def test_the_base_policy_serves_until_a_stage_writes_one(tmp_path):
  base = _policy(tmp_path / "base")
  assert resolve_policy(_config(base), tmp_path / "run") == base


def test_the_newest_stage_policy_wins_over_the_base(tmp_path):
  base, run = _policy(tmp_path / "base"), tmp_path / "run"
  warm = _policy(run / "warmstart" / "policy")
  assert resolve_policy(_config(base), run) == warm
  trained = _policy(run / "rest_grpo" / "policy")
  assert resolve_policy(_config(base), run) == trained
  assert resolve_policy(_config(), run) == trained


def test_no_policy_at_all_names_the_setting(tmp_path):
  with pytest.raises(ConfigError, match="model.hf_path"):
    resolve_policy(_config(), tmp_path / "run")
  with pytest.raises(ConfigError, match="no config.json there"):
    resolve_policy(_config(tmp_path / "nowhere"), tmp_path / "run")
