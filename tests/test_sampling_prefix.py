"""Prefix caching: a prompt continued from a cached prefix (`Sampler.cache_prefixes`,
`generate(prefix=...)`) draws exactly what the whole prompt draws."""
import dataclasses

import jax
import numpy as np
import pytest

from restrl_jax import models
from restrl_jax.sampling import Buckets, Sampler, SamplingParams
from restrl_jax.sampling.sampler import kept_prefix
from test_sampling_units import CharTokenizer

TOK = CharTokenizer()
PREFIXES = ["def f(x):\n", "the quick brown fox "]
# prompts that extend a prefix, equal it, share only part of it, or share nothing with it
PROMPTS = [PREFIXES[0] + "  re", PREFIXES[1] + "jumps", PREFIXES[0], "xyz",
           PREFIXES[1][:6] + "ick", PREFIXES[0] + "  return x"] * 2
PREFIX_OF = [0, 1, 0, 0, 1, 0] * 2
GREEDY = SamplingParams(max_new_tokens=24, temperature=0.0)
# a vowel stops a row (stop checks, compaction and shared prefills all take part)
SAMPLED = SamplingParams(max_new_tokens=24, temperature=1.0, seed=3,
                         stop_strings=tuple("aeiou"), stop_check_interval=4)


@pytest.fixture(scope="module")
def sampler():
  config = dataclasses.replace(models.get_preset("tiny"), vocab_size=len(TOK.vocab),
                               eos_token_id=None)
  params = models.init_params(config, jax.random.key(0), std=0.5)
  return Sampler(config, params, TOK,
                 buckets=Buckets(min_prompt=16, min_new_tokens=16, batch_linear_above=4))


def test_kept_prefix_is_the_common_start_less_the_fed_token():
  assert kept_prefix([1, 2, 3], [1, 2, 3, 4]) == 3
  assert kept_prefix([1, 2, 3], [1, 2, 3]) == 2  # the last prompt token is fed to the decode
  assert kept_prefix([1, 2, 3], [1, 5, 3, 4]) == 1
  assert kept_prefix([1, 2, 3], [7]) == 0


@pytest.mark.parametrize("sp", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_cached_prefix_draws_what_the_whole_prompt_draws(sampler, sp):
  want = sampler.generate(PROMPTS, sp, rng=jax.random.key(1))
  cache = sampler.cache_prefixes(PREFIXES)
  kept = sampler.stats["prefix_tokens_kept"]
  got = sampler.generate(PROMPTS, sp, rng=jax.random.key(1), prefix=cache, prefix_of=PREFIX_OF)
  keep = [kept_prefix(TOK.encode(PREFIXES[v]), TOK.encode(p)) for v, p in zip(PREFIX_OF, PROMPTS)]
  full = [len(TOK.encode(PREFIXES[v])) for v in PREFIX_OF]
  # prompts 0 and 5 tokenize "\n " as one token, where the prefix ends in "\n"; prompt 2 is
  # its prefix (its last token is fed to the decode loop); prompt 3 shares nothing with it
  assert keep[:6] == [full[0] - 1, full[1], full[2] - 1, 0, keep[4], full[5] - 1]
  assert 0 < keep[4] < full[4]  # a prompt that shares part of its prefix
  assert sampler.stats["prefix_tokens_kept"] - kept == sum(keep)
  assert [c.tokens for c in got] == [c.tokens for c in want]
  assert [c.text for c in got] == [c.text for c in want]
  assert [c.finish_reason for c in got] == [c.finish_reason for c in want]
  assert [c.prompt_tokens for c in got] == [c.prompt_tokens for c in want]
  assert len({tuple(c.tokens) for c in got}) > 4  # not one degenerate completion
  for g, w in zip(got, want):  # float rounding differs with the cache layout
    np.testing.assert_allclose(g.logprobs, w.logprobs, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(g.raw_logprobs, w.raw_logprobs, atol=1e-4, rtol=1e-4)


def test_prefix_arguments_are_checked(sampler):
  cache = sampler.cache_prefixes(PREFIXES)
  with pytest.raises(ValueError, match="prefix_of"):
    sampler.generate(PROMPTS[:2], GREEDY, prefix=cache)
  with pytest.raises(ValueError, match="prefix_of"):
    sampler.generate(PROMPTS[:2], GREEDY, prefix=cache, prefix_of=[0, 2])
  with pytest.raises(ValueError, match="without a prefix cache"):
    sampler.generate(PROMPTS[:2], GREEDY, prefix_of=[0, 1])
