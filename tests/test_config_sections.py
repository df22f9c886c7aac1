"""Config sections mirror the domain dataclasses: every key of a section is a field of the
dataclass its stage fills (under the same name, or `rest.dpo_<field>` for DPOConfig and
`value.implicit_<field>` for ImplicitPRMConfig), a key
another section's dataclass takes, or one of the stage's own keys (STAGE_KEYS, each stage
saying why); the dataclasses' defaults are the config's defaults; and the stages fill them with
the section's values unchanged."""
import dataclasses

import pytest

from restrl_jax import config_defaults
from restrl_jax.pipeline.sections import section
from restrl_jax.pipeline.stages import collect_values, decode, rest_grpo, train_value, warmstart
from restrl_jax.rl.rounds import RoundsConfig
from restrl_jax.rl.trainer import DPOConfig, GRPOConfig
from restrl_jax.search.mcts_config import MCTSConfig
from restrl_jax.value import ValueTrainConfig
from restrl_jax.value.train_implicit import ImplicitPRMConfig
from restrl_jax.warmstart import WarmstartConfig


def fields(cls) -> set[str]:
  return {f.name for f in dataclasses.fields(cls)}


def defaults(cls) -> dict:
  return {f.name: f.default for f in dataclasses.fields(cls)}


def keys(name: str) -> set[str]:
  return set(config_defaults.OPTIONAL_SECTIONS[name]().keys())


# Where each dataclass field comes from: (section, key); the fields a stage sets otherwise
# (`model.dtype`) or leaves at their defaults (ROUNDS_UNSET, ...) are absent.
ROUNDS_FROM = {**{f: ("rest", f) for f in fields(RoundsConfig)
                  - set(rest_grpo.GRPO_KEYS_OF_ROUNDS) - set(rest_grpo.ROUNDS_UNSET) - {"dtype"}},
               **{k: ("grpo", k) for k in rest_grpo.GRPO_KEYS_OF_ROUNDS}}
GRPO_FROM = {f: ("grpo", f) for f in fields(GRPOConfig) - set(rest_grpo.GRPO_UNSET)}
DPO_FROM = {**{f: ("rest", rest_grpo.DPO_PREFIX + f)
               for f in fields(DPOConfig) - set(rest_grpo.GRPO_KEYS_OF_DPO)},
            **{k: ("grpo", k) for k in rest_grpo.GRPO_KEYS_OF_DPO}}
IMPLICIT_FROM = {**{f: ("value", train_value.IMPLICIT_PREFIX + f)
                    for f in fields(ImplicitPRMConfig) - set(train_value.SHARED_WITH_IMPLICIT)},
                 **{k: ("value", k) for k in train_value.SHARED_WITH_IMPLICIT}}
SOURCES = {RoundsConfig: ROUNDS_FROM, GRPOConfig: GRPO_FROM, DPOConfig: DPO_FROM,
           ImplicitPRMConfig: IMPLICIT_FROM,
           MCTSConfig: {f: ("mcts", f) for f in fields(MCTSConfig)},
           ValueTrainConfig: {f: ("value", f) for f in fields(ValueTrainConfig)},
           WarmstartConfig: {f: ("warmstart", f) for f in fields(WarmstartConfig)}}
STAGE_KEYS = {"rest": set(rest_grpo.STAGE_KEYS),
              "mcts": set(collect_values.STAGE_KEYS) | set(decode.STAGE_KEYS),
              "value": set(train_value.STAGE_KEYS), "warmstart": set(warmstart.STAGE_KEYS),
              "grpo": set()}


@pytest.mark.parametrize("name", sorted(STAGE_KEYS))
def test_every_key_of_a_section_lands_in_one_dataclass_field_or_is_the_stages_own(name):
  landed = [key for source in SOURCES.values() for section_name, key in source.values()
            if section_name == name]
  shared = {"grpo": set(rest_grpo.GRPO_KEYS_OF_DPO),                     # GRPO's and DPO's
            "value": set(train_value.SHARED_WITH_IMPLICIT)}.get(name, set())  # both kinds'
  assert len(landed) == len(set(landed)) + len(shared), sorted(landed)
  assert not set(landed) & STAGE_KEYS[name], sorted(set(landed) & STAGE_KEYS[name])
  assert set(landed) | STAGE_KEYS[name] == keys(name)


def test_the_fields_no_key_sets_are_named_by_the_stage():
  assert set(fields(RoundsConfig)) - set(ROUNDS_FROM) == {*rest_grpo.ROUNDS_UNSET, "dtype"}
  assert set(fields(GRPOConfig)) - set(GRPO_FROM) == set(rest_grpo.GRPO_UNSET)
  assert set(DPO_FROM) == fields(DPOConfig)


@pytest.mark.parametrize("cls", list(SOURCES), ids=lambda c: c.__name__)
def test_the_dataclass_defaults_are_the_config_defaults(cls):
  """One source of defaults: an unset seed is `config.seed` (0), value's dtype None is the
  policy's (float32 by default)."""
  base = config_defaults.base()
  filled = {name: section(base, name) for name in STAGE_KEYS}
  want = {f: filled[name][key] for f, (name, key) in SOURCES[cls].items()}
  if cls in (ValueTrainConfig, ImplicitPRMConfig):
    want["dtype"] = base.model.dtype
  if cls is RoundsConfig:
    want["dtype"] = base.model.dtype
  got = {f: v for f, v in defaults(cls).items() if f in want}
  assert got == want


def test_the_stages_fill_the_dataclasses_with_the_section_values():
  """A config with every changed value reaches the dataclasses unchanged."""
  c = config_defaults.base()
  c.rest = dict(method="rest_dpo", num_samples=7, temperature=0.9, sigma0=0.1, beta=3.0,
                dpo_beta=0.3, dpo_learning_rate=1e-5, seed=5)
  c.grpo = dict(epsilon=0.3, epsilon_high=0.28, advantage="rloo", advantage_ddof=0,
                dynamic_max_candidate_batches=6, learning_rate=3e-6, max_prompt_tokens=512,
                max_new_tokens=96, remat=True)
  rest, grpo = section(c, "rest"), section(c, "grpo")
  rounds = rest_grpo.rounds_config(rest, grpo, "bfloat16")
  assert (rounds.num_samples, rounds.seed, rounds.learning_rate, rounds.dtype) == (
      7, 5, 3e-6, "bfloat16")
  assert rounds.train_learning_rate == 1e-5   # ReST-DPO's
  assert rounds.collect.temperature == 0.9 and rounds.collect.seed == 5
  assert rounds.data.sigma0 == 0.1 and rounds.data.beta == 3   # an integral float: a count
  gcfg = rest_grpo.grpo_config(grpo)
  assert (gcfg.loss.epsilon_low, gcfg.loss.epsilon_high, gcfg.loss.norm_length) == (0.3, 0.28, 96)
  assert gcfg.advantage_config.estimator == "rloo" and gcfg.advantage_config.ddof == 0
  assert gcfg.dynamic_max_candidate_batches == 6 and not gcfg.dynamic_sampling
  dpo = rest_grpo.dpo_config(rest, grpo)
  assert (dpo.beta, dpo.max_prompt_tokens, dpo.remat) == (0.3, 512, True)


def test_the_train_value_stage_fills_the_implicit_prm_config():
  c = config_defaults.base()
  c.value = dict(kind="implicit_prm", implicit_beta=0.2, implicit_steps=30, max_length=512,
                 score_batch_size=8, seed=3, implicit_max_prompt_tokens=256)
  cfg = train_value.implicit_config(section(c, "value"), "bfloat16")
  assert (cfg.beta, cfg.steps, cfg.max_length, cfg.score_batch_size, cfg.seed, cfg.dtype,
          cfg.max_prompt_tokens) == (0.2, 30, 512, 8, 3, "bfloat16", 256)
