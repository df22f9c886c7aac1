"""The GRPO batch computes only the tokens that exist (completions packed to a length bucket,
only completion positions scored, a group's prompt computed once) and still gives the numbers of
the fully padded computation: every completion right-padded to max_new_tokens and every position
of the full sequence scored, as the step did before bucketing."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from restrl_jax import models, training
from restrl_jax.models.completion_states import completion_hidden_states
from restrl_jax.rl import grpo_step
from restrl_jax.rl.losses import GRPOLossConfig, grpo_loss
from restrl_jax.rl.trainer import GRPOConfig, GRPOTrainer, micro_batch_share
from restrl_jax.tokenizer import embedded_tokenizer
from restrl_jax.warmstart import policy_config

B, G, MAX_NEW, TEMPERATURE = 2, 4, 64, 0.7
COMPLETION_LENGTHS = [5, 17, 0, 9, 20, 1, 12, 3]     # longest 20: the bucket is 32 < 64


@pytest.fixture(scope="module")
def setup():
  tok = embedded_tokenizer()
  config = dataclasses.replace(policy_config(tok), num_layers=2)
  params = models.init_params(config, jax.random.key(0))
  rng = np.random.default_rng(0)
  group_prompts = [list(rng.integers(3, 1000, n)) for n in (11, 6)]
  prompts = [p for p in group_prompts for _ in range(G)]
  completions = [list(rng.integers(3, 1000, n)) for n in COMPLETION_LENGTHS]
  return tok, config, params, prompts, completions


def _trainer(tok, config, **loss) -> GRPOTrainer:
  """A trainer with the GRPOConfig loss settings `loss` (same names as GRPOLossConfig's)."""
  cfg = GRPOConfig(group_size=G, prompts_per_step=B, max_new_tokens=MAX_NEW,
                   max_prompt_tokens=64, temperature=TEMPERATURE, **loss)
  return GRPOTrainer(config, tok, cfg, optax.sgd(1.0), pool=None)


def _padded(config, params, prompts, completions, p):
  """The reference computation: completions padded to max_new_tokens, every position scored.
  Returns (tokens, attention_mask, target mask [R, P+MAX_NEW-1], logp [R, P+MAX_NEW-1])."""
  r, t = len(prompts), p + MAX_NEW
  tokens, attn, target = np.zeros((r, t), np.int32), np.zeros((r, t), bool), np.zeros((r, t - 1))
  for i, (pr, c) in enumerate(zip(prompts, completions)):
    tokens[i, p - len(pr):p], tokens[i, p:p + len(c)] = pr, c
    attn[i, p - len(pr):p + len(c)] = True
    target[i, p - 1:p - 1 + len(c)] = 1.0                # logp[:, t] scores tokens[:, t + 1]
  logp = lambda prm: training.token_logprobs(config, prm, jnp.asarray(tokens), jnp.asarray(attn),
                                             TEMPERATURE)
  return tokens, attn, jnp.asarray(target, jnp.float32), logp


def test_the_completion_bucket_is_the_longest_rounded_up_and_capped(setup):
  tok, config, _, prompts, completions = setup
  trainer = _trainer(tok, config)
  assert trainer.lengths(prompts, completions) == (16, 32)
  assert trainer.lengths(prompts, [[1] * 40] * len(prompts))[1] == 64
  assert trainer.lengths(prompts, [[1] * 64] * len(prompts))[1] == MAX_NEW
  assert trainer.lengths(prompts, [[]] * len(prompts))[1] == 16
  capped = dataclasses.replace(trainer.cfg, max_new_tokens=10)
  trainer.cfg = capped
  assert trainer.lengths(prompts, [[1] * 10] * len(prompts))[1] == 10


def test_shared_prompt_states_equal_the_full_forward(setup):
  tok, config, params, prompts, completions = setup
  p, n = 16, 32
  arrays = grpo_step.pack_sequences(prompts, completions, p, n, 0)
  tokens, attn = jnp.asarray(arrays["tokens"]), jnp.asarray(arrays["attention_mask"])
  full = models.hidden_states(config, params, tokens, attn)[:, p - 1:p + n - 1]  # [R, N, D]
  for share in (1, 2, G):
    got = completion_hidden_states(config, params, tokens, attn, n, share)
    np.testing.assert_allclose(np.asarray(got), np.asarray(full), rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="share=3"):
    completion_hidden_states(config, params, tokens, attn, n, 3)
  with pytest.raises(ValueError, match="completion_len"):
    completion_hidden_states(config, params, tokens, attn, p + n, 1)


@pytest.mark.parametrize("aggregation", ["token-mean", "seq-mean-token-mean",
                                         "seq-mean-token-sum-norm"])
def test_bucketed_reference_loss_and_gradient_equal_the_padded_computation(setup, aggregation):
  tok, config, params, prompts, completions = setup
  loss = dict(beta_kl=0.1, epsilon_high=0.28, loss_aggregation=aggregation)
  loss_cfg = GRPOLossConfig(**loss)
  trainer = _trainer(tok, config, **loss)
  ref_params = jax.tree.map(lambda x: x * 1.02, params)
  p, n = trainer.lengths(prompts, completions)
  tokens, attn, target, padded_logp = _padded(config, params, prompts, completions, p)
  # the reference pass: the padded pass's log-probs at the completion tokens
  arrays = grpo_step.pack_sequences(prompts, completions, p, n, 0)
  batch = grpo_step.place_batch(arrays, None)
  ref = trainer.logprob_fn(ref_params, batch["tokens"], batch["attention_mask"], n)  # [R, N]
  padded_ref = padded_logp(ref_params)                                              # [R, P+64-1]
  mask = np.asarray(arrays["loss_mask"])
  np.testing.assert_allclose(np.asarray(ref)[mask],
                             np.asarray(padded_ref[:, p - 1:p - 1 + n])[mask], rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_array_equal(mask, np.asarray(target[:, p - 1:p - 1 + n]) > 0)
  # the loss and its gradient (one SGD step of rate 1: params - grad)
  adv = jnp.asarray(np.random.default_rng(1).normal(0.0, 1.0, B * G), jnp.float32)
  batch.update(ref_logp=ref, advantages=adv)
  state = training.init_train_state(jax.tree.map(jnp.copy, params), optax.sgd(1.0))
  new, metrics = trainer.train_step(state, batch)
  padded_cfg = dataclasses.replace(loss_cfg, norm_length=MAX_NEW)

  def padded_loss(prm):
    return grpo_loss(padded_logp(prm), None, padded_ref, adv, target, padded_cfg)[0]
  want_loss, want_grad = jax.value_and_grad(padded_loss)(params)
  assert float(metrics["loss"]) == pytest.approx(float(want_loss), rel=1e-5, abs=1e-7)
  assert float(metrics["num_tokens"]) == sum(COMPLETION_LENGTHS)
  got_grad = jax.tree.map(lambda a, b: np.asarray(a - b), params, new.params)
  scale = max(float(np.abs(x).max()) for x in jax.tree.leaves(want_grad))
  assert scale > 0.0
  for a, b in zip(jax.tree.leaves(want_grad), jax.tree.leaves(got_grad)):
    np.testing.assert_allclose(b, np.asarray(a), rtol=0, atol=1e-5 * scale)


def test_micro_batches_share_what_their_strided_rows_share():
  assert micro_batch_share(8, 1) == 8
  assert micro_batch_share(8, 4) == 2          # rows j, j+4 of each group of 8 -> 2 neighbours
  assert micro_batch_share(8, 3) == 1
  assert micro_batch_share(4, 8) == 1
