"""Rollouts: sampled completions become executed, scored programs (random and shipped policies)."""
import concurrent.futures as cf
import dataclasses
from typing import NamedTuple

import jax
import numpy as np
import pytest

from restrl_jax import models
from restrl_jax.data.prompts import assemble_program, build_prompt, template_for
from restrl_jax.data.synthetic import load_synthetic
from restrl_jax.evaluation.metrics import pass_at_k
from restrl_jax.execution import ExecutionPool
from restrl_jax.rollout import (encode_prompt, group_records, policy_scores, rollout,
                                start_rollout, summarize_records)
from restrl_jax.sampling import Sampler, SamplingParams
from restrl_jax.tokenizer import embedded_tokenizer, load_tokenizer
from restrl_jax.warmstart import policy_config
from restrl_jax.warmstart import shipped_policy_path


@pytest.fixture(scope="module")
def pool():
  with ExecutionPool(num_workers=2) as p:
    yield p


@pytest.fixture(scope="module")
def problems():
  return load_synthetic("test", 20, verify=False)


@pytest.fixture(scope="module")
def random_sampler():
  tok = embedded_tokenizer()
  config = policy_config(tok)
  return Sampler(config, models.init_params(config, jax.random.key(1)), tok)


def test_random_policy_records_are_consistent(random_sampler, pool, problems):
  chosen = problems[:4]
  states = [p.starter_code for p in chosen[:3]] + [chosen[3].starter_code + "    pass\n"]
  sp = SamplingParams(max_new_tokens=24, temperature=1.0)
  records = rollout(random_sampler, pool, chosen, sp, num_samples=3, states=states, rng=5,
                    chunk_size=5)  # chunks split requests: folded keys must still differ
  assert len(records) == 12
  tok = random_sampler.tokenizer
  for k, r in enumerate(records):
    i, p = k // 3, chosen[k // 3]
    assert (r.request_index, r.sample_index, r.problem_id, r.state) == (i, k % 3, p.id, states[i])
    assert r.prompt_tokens == tok.encode(build_prompt(p, states[i], tok))
    assert r.program == assemble_program(states[i], r.completion) and r.program.startswith(r.state)
    assert len(r.tokens) == len(r.logprobs) and np.all(r.logprobs <= 0)
    assert 0.0 <= r.reward <= 1.0 and len(r.statuses) == len(p.tests.inputs)
    assert r.reward == np.mean([s == "pass" for s in r.statuses]) and r.strict == (r.reward == 1)
    assert r.finish_reason in ("stop", "eos", "length")
    assert r.finish_reason != "length" or len(r.tokens) == 24
  texts = [r.completion for r in records]
  assert len(set(texts)) > 6  # distinct draws across samples and chunks
  groups = group_records(records[::-1])
  assert [[r.sample_index for r in g] for g in groups] == [[0, 1, 2]] * 4
  assert [g[0].request_index for g in groups] == [0, 1, 2, 3]


def test_rollout_is_deterministic_and_evaluate_matches(random_sampler, pool, problems):
  sp = SamplingParams(max_new_tokens=16, temperature=1.0)
  a = rollout(random_sampler, pool, problems[:3], sp, num_samples=2, rng=9)
  b = rollout(random_sampler, pool, problems[:3], sp, num_samples=2, rng=9)
  assert [r.tokens for r in a] == [r.tokens for r in b]
  assert policy_scores(random_sampler, pool, problems[:3], sp, 2, ks=(1, 2), rng=9) == (
      summarize_records(a, ks=(1, 2)))


def test_rollout_rejects_mismatched_states(random_sampler, pool, problems):
  with pytest.raises(ValueError, match="one state per problem"):
    rollout(random_sampler, pool, problems[:2], SamplingParams(), states=["x"])
  with pytest.raises(ValueError, match="one state per problem"):
    rollout(random_sampler, pool, problems[:2], SamplingParams(), states="x")


class _Result(NamedTuple):
  reward: float
  strict: bool
  statuses: tuple[str, ...]
  detail: str


class HeldPool:
  """Duck-typed ExecutionPool whose results (reward = len(program) / 100) wait for `release`."""

  def __init__(self):
    self.calls, self.futures = [], []

  def submit(self, programs, suites):
    self.calls.append(list(programs))
    self.futures.append((cf.Future(), list(programs)))
    return self.futures[-1][0]

  def release(self):
    for future, programs in self.futures:
      if not future.done():
        future.set_result([_Result(len(p) / 100, False, ("fail",), "") for p in programs])


class Seen(NamedTuple):
  program: str
  args: tuple


def test_start_rollout_executes_the_callers_extraction(random_sampler, problems):
  chosen = [problems[0], dataclasses.replace(problems[1], source="ds1000"), problems[2]]
  extract = lambda *args: Seen(f"print({len(args[1])})", args)
  pool, sp = HeldPool(), SamplingParams(max_new_tokens=8, temperature=1.0)
  pending = start_rollout(random_sampler, pool, chosen, sp, 2, extract=extract, rng=3,
                          chunk_size=3)
  # every row is sampled and submitted before any result exists
  assert not any(f.done() for f, _ in pool.futures) and len(pool.calls) == 3  # 2 marker passes
  for k, s in enumerate(pending.samples):
    p = chosen[k // 2]
    assert (s.request_index, s.sample_index) == (k // 2, k % 2)
    assert s.extracted.args == (p.starter_code, s.completion, template_for(p).stops,
                                s.finish_reason)
    assert s.program == f"print({len(s.completion)})"
  submitted = [p for call in pool.calls for p in call]
  assert sorted(submitted) == sorted(s.program for s in pending.samples)
  pool.release()
  records = pending.records()
  assert [r.program for r in records] == [s.program for s in pending.samples]
  assert [r.reward for r in records] == [len(s.program) / 100 for s in pending.samples]
  # rollout: the same rows with the assembled program
  again = rollout(random_sampler, ContentFreePool(), chosen, sp, 2, rng=3, chunk_size=3)
  assert [r.tokens for r in again] == [s.tokens for s in pending.samples]
  assert [r.program for r in again] == [
      assemble_program(p.starter_code, r.completion, template_for(p).stops)
      for p, r in zip([c for c in chosen for _ in range(2)], again)]


class ContentFreePool(HeldPool):
  def submit(self, programs, suites):
    future = super().submit(programs, suites)
    self.release()
    return future


def test_global_ids_and_longest_padding_make_the_chunking_invisible(random_sampler, problems):
  chosen = problems[:3]
  states = [chosen[0].starter_code, "x = 1\n" * 30, chosen[2].starter_code]   # a long prompt
  sp = SamplingParams(max_new_tokens=8, temperature=1.0)
  runs = [start_rollout(random_sampler, ContentFreePool(), chosen, sp, 2, states=states,
                        rng=jax.random.key(2), chunk_size=size, request_ids=[4, 1, 7],
                        max_prompt_tokens=100, split_by_markers=False, pad_to_longest=True)
          for size in (6, 4, 3)]
  tok = random_sampler.tokenizer
  for s in runs[0].samples:
    i = s.request_index
    assert s.prompt_tokens == encode_prompt(tok, chosen[i], states[i])[-100:]
  assert len(runs[0].samples[2].prompt_tokens) == 100 < len(encode_prompt(tok, chosen[1],
                                                                          states[1]))
  for run in runs[1:]:
    assert [s.tokens for s in run.samples] == [s.tokens for s in runs[0].samples]


def test_shipped_policy_solves_some_test_problems(pool, problems):
  path = shipped_policy_path()
  config, params = models.load_hf(path)
  sampler = Sampler(config, params, load_tokenizer(path))
  sp = SamplingParams(max_new_tokens=128, temperature=0.7)
  records = rollout(sampler, pool, problems, sp, num_samples=2, rng=0)
  scores = summarize_records(records, ks=(1, 2))
  assert scores["strict_accuracy"] > 0.0
  assert scores["num_problems"] == 20 and scores["num_samples"] == 40
  # the summary against a direct computation from the records
  by_problem = [[r for r in records if r.problem_id == p.id] for p in problems]
  assert scores["strict_accuracy"] == pytest.approx(np.mean([r.strict for r in records]))
  assert scores["test_case_average"] == pytest.approx(np.mean([r.reward for r in records]))
  assert scores["pass@2"] == pytest.approx(np.mean(
      [pass_at_k(2, sum(r.strict for r in rs), 2) for rs in by_problem]))
  assert scores["reward_std_share"] == pytest.approx(np.mean(
      [np.std([r.reward for r in rs]) >= 0.05 for rs in by_problem]))
  # most completions end at the closing fence, as trained
  assert sum(r.finish_reason == "stop" for r in records) > len(records) / 2
  greedy = summarize_records(rollout(
      sampler, pool, problems, SamplingParams(max_new_tokens=128, temperature=0.0)), ks=(1,))
  assert greedy["test_case_average"] > 0.0 and greedy["num_samples"] == 20
