"""Pure sampling math on a batch of next-token logits: temperature, top-k, top-p, draw, log-probs.

Log-prob convention (as TRL / verl use for RL): `logprobs` is log pi_T(token) =
log_softmax(logits / T)[token] of the *untruncated* tempered distribution, i.e. top-k / top-p are
NOT applied to it (they only restrict which tokens can be drawn). `raw_logprobs` is the same at
T = 1, log_softmax(logits)[token]. For greedy decoding (T = 0) both are log_softmax(logits)[token].

Truncation: top-k keeps the k largest tempered logits (`lax.top_k`, no full sort); top-p then
keeps every token whose logit is >= the smallest logit of the shortest prefix of the sorted,
top-k-renormalised distribution whose mass reaches `top_p` (exact ties at that threshold are all
kept, a measure-zero event for real logits). Without top-k, top-p sorts the whole vocabulary.
The draw is from the renormalised kept set, by inverse CDF with one uniform per row
(`categorical.py`).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from restrl_jax.sampling.categorical import sample_index

NEG_INF = -jnp.inf


class SamplingMode(NamedTuple):
  """The static (compile-time) part of the sampling settings."""
  greedy: bool
  top_k: int          # 0 = off
  use_top_p: bool     # False when top_p == 1 and top_k == 0 (no sort at all)


class Draw(NamedTuple):
  tokens: jax.Array        # [B] int32
  logprobs: jax.Array      # [B] float32, log pi_T(token), untruncated
  raw_logprobs: jax.Array  # [B] float32, log pi_1(token)


def _token_logprob(logits: jax.Array, tokens: jax.Array) -> jax.Array:
  """log_softmax(logits)[b, tokens[b]] without materialising the full log-softmax."""
  picked = jnp.take_along_axis(logits, tokens[:, None], axis=-1)[:, 0]  # [B]
  return picked - jax.nn.logsumexp(logits, axis=-1)


def _sorted_desc(logits: jax.Array, top_k: int) -> jax.Array:
  """The largest `top_k` logits (all when top_k == 0), sorted descending. [B, K]."""
  if top_k:
    return jax.lax.top_k(logits, top_k)[0]
  return jnp.flip(jnp.sort(logits, axis=-1), axis=-1)


def top_p_threshold(sorted_logits: jax.Array, top_p: jax.Array) -> jax.Array:
  """Smallest kept logit for nucleus sampling; `sorted_logits` [B, K] descending. -> [B, 1]."""
  probs = jax.nn.softmax(sorted_logits, axis=-1)                   # [B, K]
  mass_before = jnp.cumsum(probs, axis=-1) - probs                  # [B, K]
  keep = (mass_before < top_p) | (top_p >= 1.0)                     # [B, K]
  num_keep = jnp.maximum(jnp.sum(keep, axis=-1), 1)                 # [B]
  return jnp.take_along_axis(sorted_logits, (num_keep - 1)[:, None], axis=-1)


def truncate(scaled: jax.Array, top_p: jax.Array, mode: SamplingMode) -> jax.Array:
  """Tempered logits [B, V] with every token outside top-k / top-p set to -inf."""
  if not mode.top_k and not mode.use_top_p:
    return scaled
  sorted_vals = _sorted_desc(scaled, mode.top_k)                    # [B, K]
  if mode.use_top_p:
    threshold = top_p_threshold(sorted_vals, top_p)                 # [B, 1]
  else:
    threshold = sorted_vals[:, -1:]                                 # [B, 1] k-th largest
  return jnp.where(scaled >= threshold, scaled, NEG_INF)


def row_keys(key: jax.Array, row_ids: jax.Array) -> jax.Array:
  """One key per row, folded from its global index row_ids [B]: a row's draws do not depend on
  the batch size, the other rows, the padding or the sharding. -> [B] keys."""
  return jax.vmap(lambda r: jax.random.fold_in(key, r))(row_ids.astype(jnp.uint32))


def draw(keys: jax.Array, logits: jax.Array, temperature: jax.Array, top_p: jax.Array,
         mode: SamplingMode) -> Draw:
  """Pick one token per row from float32 logits [B, V] with per-row `keys` [B]."""
  logits = logits.astype(jnp.float32)
  if mode.greedy:
    tokens = jnp.argmax(logits, axis=-1).astype(jnp.int32)          # [B]
    lp = _token_logprob(logits, tokens)
    return Draw(tokens, lp, lp)
  scaled = logits / temperature                                     # [B, V]
  u = jax.vmap(jax.random.uniform)(keys)                            # [B]
  if mode.top_k:  # draw among the k largest only
    vals, idx = jax.lax.top_k(scaled, mode.top_k)                   # [B, K] descending
    if mode.use_top_p:
      vals = jnp.where(vals >= top_p_threshold(vals, top_p), vals, NEG_INF)
    tokens = jnp.take_along_axis(idx, sample_index(vals, u)[:, None], axis=-1)[:, 0]
  else:
    tokens = sample_index(truncate(scaled, top_p, mode), u)
  tokens = tokens.astype(jnp.int32)
  return Draw(tokens, _token_logprob(scaled, tokens), _token_logprob(logits, tokens))


def mode_of(params, vocab_size: int) -> SamplingMode:
  """The static part of a `SamplingParams` (top_k >= vocab_size is the same as off)."""
  greedy = params.temperature == 0.0
  top_k = 0 if greedy or params.top_k >= vocab_size else int(params.top_k)
  # with top-k on, top-p only sorts k values: cheap, so it stays on (top_p is traced) and
  # changing top_p does not recompile
  return SamplingMode(greedy=greedy, top_k=top_k,
                      use_top_p=(not greedy) and (params.top_p < 1.0 or top_k > 0))
