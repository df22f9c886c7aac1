"""Hidden states of the positions that predict a completion, with the prompt computed once per
group of rows that share it.

A batch of R = B * share rows `prompt (left-padded to P) + completion (right-padded to N)`:

  tokens          [R, P+N] int32
  attention_mask  [R, P+N] bool     real tokens
  rows k*share .. k*share + share - 1 hold the SAME prompt (tokens and mask of columns < P)

`completion_hidden_states` returns the final-normed hidden states [R, N, D] at positions
P-1 .. P+N-2, i.e. the states whose logits score completion tokens 0 .. N-1. It equals
`decoder.hidden_states(...)[:, P-1:P+N-1]` (the same masks, positions and RoPE), but the layers
run the prompt on B rows instead of R: the completion's queries attend to the group's prompt
keys/values (repeated over the group; their gradient sums over it) and to their own. A GRPO
group (one prompt, G completions) computes its prompt once instead of G times, and nothing is
computed for a prompt position beyond what the completion reads from it. The layers are the
decoder's own (`Decoder.completion_states`, each layer's `DecoderLayer.shared_prompt`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from restrl_jax.models import layers
from restrl_jax.models.config import ModelConfig
from restrl_jax.models.decoder import Params, _decoder, hidden_states


def completion_hidden_states(config: ModelConfig, params: Params, tokens: jax.Array,
                             attention_mask: jax.Array, completion_len: int, share: int = 1,
                             remat: bool = False, layer_loop: str = "auto") -> jax.Array:
  """[R, N, D] final-normed states predicting the N completion tokens (module docstring).

  `share` (static) is the number of consecutive rows with the same prompt; 1 runs the plain
  full-sequence forward and slices it.
  """
  r, t = tokens.shape
  n, p = int(completion_len), t - int(completion_len)
  if not 0 < n < t:
    raise ValueError(f"completion_len={n} must be in 1..{t - 1} for tokens of length {t}")
  if share < 1 or r % share:
    raise ValueError(f"share={share} must be >= 1 and divide the {r} rows")
  if share == 1:
    return hidden_states(config, params, tokens, attention_mask, remat, layer_loop)[:, p - 1:t - 1]
  mask = attention_mask.astype(bool)                                       # [R, P+N]
  positions = jnp.maximum(jnp.cumsum(mask.astype(jnp.int32), axis=1) - 1, 0)   # [R, P+N]
  first = lambda x: x.reshape((r // share, share) + x.shape[1:])[:, 0]     # [R, ...] -> [B, ...]
  prompt_mask = first(mask[:, :p])                                         # [B, P]
  inv_freq = layers.rope_inv_freq(config)
  cos_p, sin_p = layers.rope_cos_sin(first(positions[:, :p]), inv_freq, t)  # [B, P, Dh]
  cos_c, sin_c = layers.rope_cos_sin(positions[:, p:], inv_freq, t)        # [R, N, Dh]
  causal_p = jnp.tril(jnp.ones((p, p), bool))
  self_mask = causal_p[None] & prompt_mask[:, None, :]                     # [B, P, P]
  causal_c = jnp.tril(jnp.ones((n, n), bool))
  cross_mask = jnp.concatenate(                                            # [R, N, P+N]
      [jnp.broadcast_to(jnp.repeat(prompt_mask, share, axis=0)[:, None, :], (r, n, p)),
       causal_c[None] & mask[:, None, p:]], axis=-1)
  model = _decoder(config, params, layer_loop, remat)
  return model.apply({"params": params}, first(tokens[:, :p]), tokens[:, p:],
                     (cos_p, sin_p, cos_c, sin_c), self_mask, cross_mask,
                     method="completion_states")
