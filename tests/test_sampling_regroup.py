"""Regrouping rows inside a sampler call: shared prefill of repeated prompts and compaction of
the batch to its running rows. Both must leave every row's result exactly as without them."""
import dataclasses

import jax
import numpy as np
import pytest

from restrl_jax import models, parallel
from restrl_jax.sampling.row_feed import HostRowFeed
from restrl_jax.sampling import Buckets, Sampler, SamplingParams
from restrl_jax.sampling.sampler import RowBook, shared_prompts
from test_sampling_units import CharTokenizer

TOK = CharTokenizer()
# 4 prompts x 4 samples each, as an MCTS expansion asks for n samples of each leaf
PROMPTS = [p for p in ["def f(x):\n  re", "ab", "x = 1\n", "the "] for _ in range(4)]
# a vowel stops a row: rows end after 0 to 48 tokens, most after a few
SP = SamplingParams(max_new_tokens=48, temperature=1.0, seed=3,
                    stop_strings=tuple("aeiou"), stop_check_interval=4)


@pytest.fixture(scope="module")
def model():
  config = dataclasses.replace(models.get_preset("tiny"), vocab_size=len(TOK.vocab),
                               eos_token_id=None)
  return config, models.init_params(config, jax.random.key(0), std=0.5)


def _sampler(model, mesh=None, **flags):
  config, params = model
  return Sampler(config, params, TOK, mesh=mesh, **flags,
                 buckets=Buckets(min_prompt=16, min_new_tokens=16, batch_linear_above=4))


@pytest.fixture(scope="module")
def plain(model):
  return _sampler(model, share_prefill=False, compact=False).generate(PROMPTS, SP)


def _assert_same(got, want):
  assert [c.tokens for c in got] == [c.tokens for c in want]
  assert [c.text for c in got] == [c.text for c in want]
  assert [c.finish_reason for c in got] == [c.finish_reason for c in want]
  for g, w in zip(got, want):  # float rounding differs with the batch size and the mesh
    np.testing.assert_allclose(g.logprobs, w.logprobs, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(g.raw_logprobs, w.raw_logprobs, atol=1e-4, rtol=1e-4)


def test_plain_run_has_rows_of_very_different_lengths(plain):
  lengths = sorted(len(c.tokens) for c in plain)
  assert lengths[0] <= 4 and lengths[-1] > 12, lengths  # so compaction has something to do
  assert {c.finish_reason for c in plain} <= {"stop", "length"}


def test_compaction_keeps_every_row(model, plain):
  sampler = _sampler(model, share_prefill=False, compact=True)
  got = sampler.generate(PROMPTS, SP)
  assert sampler.stats["compactions"] >= 2, sampler.stats  # 16 -> 8 -> 4 rows at least
  _assert_same(got, plain)


def test_shared_prefill_keeps_every_row(model, plain):
  sampler = _sampler(model, share_prefill=True, compact=False)
  got = sampler.generate(PROMPTS, SP)
  assert sampler.stats["prefill_rows_saved"] == 12, sampler.stats  # 16 rows, 4 prompts
  _assert_same(got, plain)


def test_both_on_a_mesh_keep_every_row(model, plain):
  mesh = parallel.make_mesh((2, 2, 2))
  sampler = _sampler(model, mesh=mesh)  # batches rounded to multiples of 4 batch shards
  got = sampler.generate(PROMPTS, SP)
  assert sampler.stats["compactions"] >= 1 and sampler.stats["prefill_rows_saved"] == 12
  _assert_same(got, plain)


def test_shared_prompts_groups_equal_rows_whatever_the_padding():
  tokens = np.array([[0, 5, 6], [7, 5, 6], [0, 5, 6], [0, 0, 6]], np.int32)
  mask = np.array([[0, 1, 1], [1, 1, 1], [0, 1, 1], [0, 0, 1]], bool)
  unique, index = shared_prompts(tokens, mask)
  np.testing.assert_array_equal(unique, [0, 1, 3])
  np.testing.assert_array_equal(index, [0, 1, 0, 2])


def test_row_book_maps_device_rows_to_call_rows():
  book = RowBook(batch=4, num_new=2)
  book.absorb({"lengths": np.array([1, 2, 3, 4]), "done": np.array([True, False, True, False])})
  book.slots = np.array([3, 1, -1, -1])  # after compaction to rows 3 and 1 plus fillers
  book.absorb({"lengths": np.array([9, 8, 7, 7]), "done": np.array([True, False, False, False])})
  np.testing.assert_array_equal(book.lengths, [1, 8, 3, 9])
  np.testing.assert_array_equal(book.device_done(), [True, False, True, True])


def test_per_host_rows_are_never_regrouped(model):
  mesh = parallel.make_mesh((2, 2, 2))
  sampler = _sampler(model, mesh=mesh, feed=HostRowFeed(mesh, process_index=0))
  assert not sampler.share_prefill and not sampler.compact
