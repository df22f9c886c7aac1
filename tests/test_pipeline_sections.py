"""The stage adapters' config sections: defaults filled in, unknown fields named, and the plain
dataclasses of the domain packages filled from them with the same values as their own defaults."""
import pytest

from restrl_jax import config_defaults
from restrl_jax.config_checks import ConfigError
from restrl_jax.pipeline.sections import dataclass_from, section
from restrl_jax.value import ValueTrainConfig
from restrl_jax.warmstart import WarmstartConfig


def test_a_partial_or_missing_section_is_filled_from_the_defaults():
  c = config_defaults.base()
  assert section(c, "warmstart") == config_defaults.fill_seeds(c, "warmstart",
                                                               config_defaults.warmstart())
  c.warmstart = type(c)({"steps": 7})
  filled = section(c, "warmstart")
  assert filled.steps == 7 and filled.batch_size == config_defaults.warmstart().batch_size


def test_an_unknown_field_of_a_section_is_named():
  c = config_defaults.base()
  c.mcts = config_defaults.mcts()
  c.mcts.collect_iteration = 3
  with pytest.raises(ConfigError, match="config.mcts.collect_iteration is not a known field"):
    section(c, "mcts")


def test_domain_dataclass_defaults_are_the_config_defaults():
  """The warm-start CLI and the tests use the dataclasses' defaults, the pipeline the config's:
  the same values (value's dtype None means the policy's dtype in the pipeline)."""
  c = config_defaults.base()   # seed 0: the dataclasses' own seeds
  assert dataclass_from(section(c, "warmstart"), WarmstartConfig) == WarmstartConfig()
  assert dataclass_from(section(c, "value"), ValueTrainConfig,
                        dtype="float32") == ValueTrainConfig()


def test_a_dataclass_field_missing_from_the_section_is_an_error():
  values = config_defaults.value()
  del values["epochs"]
  with pytest.raises(KeyError):
    dataclass_from(values, ValueTrainConfig)


def test_unset_seeds_take_the_top_level_seed_and_a_section_seed_wins():
  """`--config.seed=S` reaches every stage's randomness: each section's seed fields left unset
  are S (also through setup_runtime.validate, which records them resolved); one set wins."""
  from restrl_jax import setup_runtime
  c = config_defaults.base()
  c.seed, c.workdir, c.stages = 3, "/tmp/unused", ("evaluate",)
  c.rest = config_defaults.rest()
  c.rest.seed = 11
  for name in config_defaults.OPTIONAL_SECTIONS:
    fields = config_defaults.SEED_FIELDS.get(name, ())
    assert all(section(c, name)[f] == (11 if name == "rest" else 3) for f in fields), name
  setup_runtime.validate(c)
  assert c.evaluate.seed == 3 and c.rest.seed == 11
  assert config_defaults.base().evaluate.seed is None   # nothing fixed in the defaults
