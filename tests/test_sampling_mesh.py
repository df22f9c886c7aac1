"""Sampling on a device mesh (and in the other KV-cache layout) gives the single-device results.

Runs on the 8 simulated CPU devices of tests/conftest.py.
"""
import dataclasses

import jax
import numpy as np
import pytest

from restrl_jax import models, parallel
from restrl_jax.sampling import Buckets, Sampler, SamplingParams
from test_sampling_units import CharTokenizer

TOK = CharTokenizer()
PROMPTS = ["def f(x):\n  re", "ab", "x = 1\n```", "the ", "a", "in on", "    st", "xy = ("]


@pytest.fixture(scope="module")
def model():
  config = dataclasses.replace(models.get_preset("tiny"), vocab_size=len(TOK.vocab),
                               eos_token_id=None)
  return config, models.init_params(config, jax.random.key(0), std=0.5)


@pytest.mark.parametrize("shape", [(8, 1, 1), (2, 2, 2), (1, 4, 2)])
def test_mesh_matches_single_device(model, shape):
  config, params = model
  buckets = Buckets(min_prompt=16, min_new_tokens=16, min_batch=4)
  # the reference runs in batches of 4 (the mesh run: one of 8): a row's tokens must not
  # depend on the batch it is in
  single = Sampler(config, params, TOK, buckets=buckets, max_batch=4)
  mesh = parallel.make_mesh(shape)
  # another cache layout on the mesh side ("bhsd_kt" is the CPU default), same params
  other = "bshd" if models.resolve_cache_layout(config) != "bshd" else "bhsd_kt"
  sharded = Sampler(dataclasses.replace(config, cache_layout=other), params, TOK, mesh=mesh,
                    buckets=buckets)
  emb = sharded.params["embed"]["embedding"]
  assert len(emb.sharding.device_set) == 8
  # pure data parallelism keeps parameters replicated; fsdp/tensor axes shard them
  assert emb.sharding.is_fully_replicated == (shape[1] * shape[2] == 1)
  sp = SamplingParams(max_new_tokens=10, temperature=0.7, top_k=10, top_p=0.9, seed=5)
  free = single.generate(PROMPTS, sp)
  stop = free[0].text[3:5]  # a stop string that row 0 is known to produce
  sp = dataclasses.replace(sp, stop_strings=(stop, "\x00never"), stop_check_interval=3)
  ref, got = single.generate(PROMPTS, sp), sharded.generate(PROMPTS, sp)
  for f, r, g in zip(free, ref, got):
    assert (g.tokens, g.text, g.finish_reason) == (r.tokens, r.text, r.finish_reason)
    np.testing.assert_allclose(g.logprobs, r.logprobs, atol=1e-3)  # sharded sums
    assert g.tokens == f.tokens[:len(g.tokens)] and g.text == f.text[:len(g.text)]
  assert got[0].finish_reason == "stop" and got[0].text == free[0].text[:free[0].text.find(stop)]
  assert single.num_compilations == {"prefill": 1, "decode": 1}  # batches of 4 only
