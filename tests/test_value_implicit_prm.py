"""The implicit PRM (restrl_jax.value.implicit_prm, train_implicit, preferences): its scores are
beta * (log pi - log pi_ref) of the state's tokens after the policy's prompt, checked against a
full-sequence forward pass (`training.token_logprobs`, another code path than the completion-only
one it uses); save / load through `load_value_model`; the pairs; the pipeline stage's kind switch.
Whether it learns to rank is tests/test_known_answer.py's."""
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flat_init import flat_init_params  # tests/ is on sys.path under pytest

from restrl_jax import models
from restrl_jax.data.problem import Problem
from restrl_jax.execution.spec import TestSuite
from restrl_jax.rollout import encode_prompt
from restrl_jax.tokenizer import embedded_tokenizer
from restrl_jax.training.token_logprobs import token_logprobs
from restrl_jax.value import load_value_model, preferences
from restrl_jax.value.implicit_prm import (ImplicitPRM, implicit_reward, save_implicit_prm,
                                           state_completion)
from restrl_jax.warmstart import export_policy, policy_config

SUITE = TestSuite(kind="stdio", inputs=("",), outputs=("",))
PROBLEMS = (Problem("p/0", "synthetic", "Print the sum of two numbers.", "", SUITE),
            Problem("p/1", "synthetic", "Return twice n.", "def solve(n):\n", SUITE))
STATES = ("a, b = map(int, input().split())\nprint(a + b)\n", "x = 1\n",
          "def solve(n):\n  return 2 * n\n", "def solve(n):\n")


@pytest.fixture(scope="module")
def tokenizer():
  return embedded_tokenizer()


@pytest.fixture(scope="module")
def model(tokenizer):
  config = dataclasses.replace(policy_config(tokenizer), num_layers=2)
  return config, flat_init_params(config, jax.random.key(0)), flat_init_params(
      config, jax.random.key(1))


def pairs():
  return [PROBLEMS[0], PROBLEMS[0], PROBLEMS[1], PROBLEMS[1]], list(STATES)


def full_sequence_logp(config, params, tokenizer, problem, state) -> float:
  """sum log pi(state tokens) from one unpadded forward pass over prompt + state."""
  prompt = encode_prompt(tokenizer, problem, problem.starter_code)
  completion = list(tokenizer.encode(state_completion(problem, state)))
  tokens = jnp.asarray([prompt + completion], jnp.int32)
  lp = token_logprobs(config, params, tokens, jnp.ones_like(tokens, bool))[0]   # [T-1]
  return float(jnp.sum(lp[len(prompt) - 1:]))


def test_state_tokens_are_what_follows_the_starter_code():
  assert state_completion(PROBLEMS[1], STATES[2]) == "  return 2 * n\n"
  assert state_completion(PROBLEMS[1], STATES[3]) == ""
  assert state_completion(PROBLEMS[0], STATES[0]) == STATES[0]
  assert state_completion(PROBLEMS[1], "x = 1\n") == "x = 1\n"     # no starter code in it


def test_sequence_logps_match_a_full_forward_pass(model, tokenizer):
  config, params, _ = model
  prm = ImplicitPRM(config, params, params, tokenizer, beta=0.1, batch_size=3)
  problems, states = pairs()
  got = prm.sequence_logps(params, problems, states)                          # [4], 2 batches
  want = [full_sequence_logp(config, params, tokenizer, p, s) for p, s in zip(problems, states)]
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  assert got[3] == 0.0 and all(g < -1.0 for g in got[:3])        # the empty state has no tokens


def test_scores_are_the_sigmoid_of_beta_times_the_log_ratio(model, tokenizer):
  config, params, other = model
  problems, states = pairs()
  same = ImplicitPRM(config, params, params, tokenizer, beta=0.5)
  np.testing.assert_array_equal(same.score_states(problems, states), 0.5)   # pi == pi_ref
  prm = ImplicitPRM(config, other, params, tokenizer, beta=0.5)
  r = 0.5 * (prm.sequence_logps(other, problems, states)
             - prm.sequence_logps(params, problems, states))
  np.testing.assert_allclose(prm.rewards(problems, states), r, rtol=1e-6)
  np.testing.assert_allclose(prm.score_states(problems, states), 1 / (1 + np.exp(-r)),
                             rtol=1e-5)
  np.testing.assert_array_equal(implicit_reward([1.0, -2.0], [0.5, -1.0], 2.0), [1.0, -2.0])
  with pytest.raises(ValueError, match="2 problems but 1 states"):
    prm.score_states(PROBLEMS, STATES[:1])


def test_save_and_load_through_load_value_model(model, tokenizer, tmp_path):
  config, params, other = model
  ref = export_policy(config, params, tokenizer, tmp_path / "ref")
  path = save_implicit_prm(tmp_path / "prm", config, other, tokenizer, ref, beta=0.3,
                           max_prompt_tokens=48, max_length=60, extra={"step": 7})
  meta = json.loads((path / "value_model.json").read_text())
  assert (meta["kind"], meta["beta"], meta["step"]) == ("implicit_prm", 0.3, 7)
  loaded = load_value_model(path, batch_size=4)
  assert isinstance(loaded, ImplicitPRM)
  assert (loaded.max_prompt_tokens, loaded.max_completion_tokens) == (48, 12)  # the saved budgets
  problems, states = pairs()
  want = ImplicitPRM(config, other, params, tokenizer, beta=0.3, max_prompt_tokens=48,
                     max_length=60)
  np.testing.assert_allclose(loaded.scorer()(problems, states),
                             want.score_states(problems, states), rtol=1e-6)


def test_correct_wrong_pairs_are_distinct_texts_capped_per_problem():
  records = [{"kind": "program", "problem_id": "a", "state": s, "value": v}
             for s, v in [("x", 1.0), ("y", 0.5), ("y", 0.5), ("z", 0.0), ("w", 1.0)]]
  records += [{"kind": "node", "problem_id": "a", "state": "x", "value": 0.3},
              {"kind": "program", "problem_id": "b", "state": "u", "value": 1.0},
              {"kind": "program", "problem_id": "b", "state": "v", "value": 1.0}]
  groups = preferences.group_program_records(records)
  assert [g.problem_id for g in groups] == ["a", "b"] and len(groups[0].texts) == 5
  every = preferences.correct_wrong_pairs(groups, per_problem=10, seed=0)
  assert sorted(every) == [("a", c, w) for c in ("w", "x") for w in ("y", "z")]  # b: no wrong
  capped = preferences.correct_wrong_pairs(groups, per_problem=3, seed=1)
  assert len(capped) == 3 and set(capped) <= set(every)
  assert capped == preferences.correct_wrong_pairs(groups, per_problem=3, seed=1)
