"""Per-token log-probabilities of a sequence under the policy, and the SFT loss built on them."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from restrl_jax import models
from restrl_jax.models import decoder


def token_logprobs(config: models.ModelConfig, params, tokens: jax.Array,
                   attention_mask: jax.Array, temperature: float = 1.0,
                   remat: bool = False) -> jax.Array:
  """log pi(tokens[:, t+1] | tokens[:, :t+1]) for t < T-1 -> [B, T-1] float32.

  `temperature` divides the logits (the distribution the sampler drew from).
  """
  h = models.hidden_states(config, params, tokens, attention_mask, remat=remat)[:, :-1]
  return target_logprobs(config, params, h, tokens[:, 1:], temperature)


def target_logprobs(config: models.ModelConfig, params, h: jax.Array, targets: jax.Array,
                    temperature: float = 1.0) -> jax.Array:
  """log pi(targets) [B, T] float32 from final-normed hidden states h [B, T, D]: the LM head
  and the log-softmax over the vocabulary."""
  logits = decoder.unembed(config, params, h) / temperature             # [B, T, V]
  picked = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  return picked - jax.nn.logsumexp(logits, axis=-1)


def sft_loss(config: models.ModelConfig, params, batch: dict, remat: bool = False):
  """Mean negative log-likelihood over target tokens.

  batch: tokens [B, T] int32, attention_mask [B, T], loss_mask [B, T] (1 on tokens to learn,
  e.g. the solution; position t's loss predicts tokens[:, t]).
  """
  logp = token_logprobs(config, params, batch["tokens"], batch["attention_mask"], remat=remat)
  weights = batch["loss_mask"][:, 1:].astype(jnp.float32)                   # [B, T-1]
  count = jnp.maximum(weights.sum(), 1.0)
  loss = -(logp * weights).sum() / count
  return loss, {"loss": loss, "tokens": weights.sum()}
