"""GRPO trainer engineering switches that must not change the result: sampling in chunks that
execute while the next chunk is generated (`overlap_chunks`), and gradient accumulation
(`grad_accum_steps`)."""
import concurrent.futures as cf
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from restrl_jax import config_defaults, models, training
from restrl_jax.data.synthetic import load_synthetic
from restrl_jax.pipeline.stages import rest_grpo as stage
from restrl_jax.rl.trainer import DPOConfig, DPOTrainer, GRPOConfig, GRPOTrainer, Request
from restrl_jax.rollout import JoinedFuture
from restrl_jax.tokenizer import embedded_tokenizer
from restrl_jax.warmstart import policy_config

G, B, N = 4, 4, 16


class _Result:
  def __init__(self, reward):
    self.reward = reward


class ContentPool:
  """Duck-typed ExecutionPool: the reward is a function of the program text only."""

  def __init__(self):
    self.calls = []

  def submit(self, programs, suites):
    self.calls.append(list(programs))
    future = cf.Future()
    future.set_result([_Result((zlib.crc32(p.encode()) % 5) / 4) for p in programs])
    return future


@pytest.fixture(scope="module")
def setup():
  tok = embedded_tokenizer()
  config = policy_config(tok)
  params = models.init_params(config, jax.random.key(0))
  requests = [Request(p, p.starter_code) for p in load_synthetic("train", B, verify=False)]
  return tok, config, params, requests


def _cfg(**kw):
  return GRPOConfig(group_size=G, prompts_per_step=B, max_new_tokens=N, max_prompt_tokens=128,
                    beta_kl=0.04, **kw)


def _step(trainer, params, requests, key=7):
  state = training.init_train_state(jax.tree.map(jnp.copy, params), optax.sgd(0.05))
  return trainer.step(state, params, lambda n: list(requests[:n]), jax.random.key(key))


def test_overlap_and_accumulation_give_the_same_step(setup):
  tok, config, params, requests = setup
  pool = ContentPool()
  plain = GRPOTrainer(config, tok, _cfg(), optax.sgd(0.05), pool)
  s1, m1, ro1 = _step(plain, params, requests)
  assert len(pool.calls) == 1 and len(pool.calls[0]) == B * G

  # overlap alone (host-side switch, same compiled update): bitwise the same step
  plain.cfg = _cfg(overlap_chunks=2)
  s2, m2, ro2 = _step(plain, params, requests)
  assert [len(c) for c in pool.calls[1:]] == [B * G // 2, B * G // 2]   # two chunks, in order
  assert pool.calls[1] + pool.calls[2] == pool.calls[0]
  assert ro2.completions == ro1.completions and ro2.texts == ro1.texts
  np.testing.assert_array_equal(ro2.exec_reward, ro1.exec_reward)
  np.testing.assert_array_equal(ro2.finish, ro1.finish)
  for a, b in zip(ro1.logps, ro2.logps):
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)
  assert ro1.exec_reward.std() > 0                               # a non-trivial update
  same = jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), s1.params, s2.params)
  assert all(jax.tree.leaves(same))
  assert m2["loss"] == m1["loss"] and m2["exec_s"] >= 0.0

  # accumulation over 4 micro-batches (+ overlap; the compiled sampler is shared): the same
  # update to 1e-5
  accum = GRPOTrainer(config, tok, _cfg(overlap_chunks=2, grad_accum_steps=4), optax.sgd(0.05),
                      pool, sampler=plain.sampler)
  s3, m3, ro3 = _step(accum, params, requests)
  assert ro3.completions == ro1.completions
  d1 = jax.tree.map(lambda a, b: np.asarray(a - b), s1.params, params)
  d3 = jax.tree.map(lambda a, b: np.asarray(a - b), s3.params, params)
  scale = max(float(np.abs(x).max()) for x in jax.tree.leaves(d1))
  assert scale > 0.0
  for a, b, p in zip(jax.tree.leaves(d1), jax.tree.leaves(d3), jax.tree.leaves(params)):
    # new params are rounded to float32 before the difference is taken: one ulp of the
    # parameter's magnitude on top of the 1e-5 relative tolerance on the update itself
    ulp = float(np.spacing(np.abs(np.asarray(p, np.float32))).max())
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * scale + ulp)
  for key in ("loss", "kl", "grad_norm", "num_tokens", "entropy"):   # loss ~ 0: Σ A = 0 per group
    assert m3[key] == pytest.approx(m1[key], rel=1e-5, abs=1e-6), key


def test_joined_future_keeps_chunk_order():
  joined, pending = JoinedFuture(), cf.Future()
  assert joined.span_s == 0.0
  for values in ([1, 2], [3]):
    f = cf.Future()
    f.set_result(values)
    joined.add(f)
  joined.add(pending)
  first_done = joined.done_at
  pending.set_result([4, 5])
  assert joined.result() == [1, 2, 3, 4, 5]
  assert joined.done_at >= first_done and joined.span_s == joined.done_at - joined.start


def test_bad_switch_values_are_named(setup):
  tok, config, params, requests = setup
  for field in ("grad_accum_steps", "overlap_chunks"):
    with pytest.raises(ValueError, match=field):
      _cfg(**{field: 0})
  with pytest.raises(ValueError, match="grad_accum_steps"):
    GRPOTrainer(config, tok, _cfg(grad_accum_steps=3), optax.sgd(0.1), ContentPool())
  with pytest.raises(ValueError, match="pairs_per_step"):
    DPOTrainer(config, tok, DPOConfig(pairs_per_step=2, grad_accum_steps=4), optax.sgd(0.1), {})


def test_config_keys_reach_the_trainers():
  grpo = config_defaults.grpo()
  assert grpo.grad_accum_steps == 1 and grpo.overlap_chunks >= 1
  grpo.grad_accum_steps, grpo.overlap_chunks = 2, 3
  cfg = stage.grpo_config(grpo)
  assert (cfg.grad_accum_steps, cfg.overlap_chunks) == (2, 3)
  assert stage.dpo_config(config_defaults.rest(), grpo).grad_accum_steps == 2
