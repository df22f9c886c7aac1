"""The device side of generation: prefill and a decode loop, as pure functions to be jitted.

`prefill` writes the prompt's first P-1 tokens into a fresh KV cache (its logits are unused, so
XLA drops the vocabulary projection); every generated token, the first included, then comes from
the same one-token `decode_body`, fed the last prompt token first. `decode_chunk` runs
`decode_body` in a `jax.lax.while_loop` until every row is done, `max_new` tokens were made, or the
step reaches `chunk_end` (the host-side stop-string check runs between chunks). All state is one
`DecodeState` pytree, donated to `decode_chunk` so the cache is updated in place.

How the layers run: on CPU (`models.resolve_layer_loop`) the weights and the KV cache are used
per layer (`decode_form.unstack_layers` / `kv_cache.unstack_cache`), unstacked before the while
loop (the `Sampler` prepares the decode form of the weights once per call): slicing layer i out
of stacked [L, ...] arrays inside the loop would copy every layer's weights on every generated
token.

Cache slots: [0, P) hold the left-padded prompt, slot P-1+i the i-th generated token (with a
cached prefix, Pp slots come first: see below).
Row states: `finish` is RUNNING until the row emits an end-of-sequence id (EOS, kept in `tokens`)
or reaches `max_new` tokens (LENGTH). Rows that are done keep computing (the batch is static
inside `decode_chunk`) but write PAD / 0 into their outputs; between chunks the sampler may drop
them from the batch (`take_rows`). `prefill(source=...)` gives rows that share a prompt one
prefill.

Prefix caching: `cache_prompts` computes the KV cache of whole prompts once (e.g. the prompt of
an MCTS tree up to its partial program); `prefill(prefix=...)` then starts each row from the
first `keep` tokens of one cached prefix and prefills only the rest of its prompt. The cache
then holds [0, Pp) the left-padded prefix (slots past `keep` masked), [Pp, Pp+P) the rest of the
prompt, left-padded, then the generated tokens; RoPE positions continue from `keep`, so a row
computes what it would from its whole prompt.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from restrl_jax import models
from restrl_jax.models import decode_form, kv_cache
from restrl_jax.parallel import constrain
from restrl_jax.sampling.transforms import SamplingMode, draw, row_keys

RUNNING, EOS, LENGTH, STOP = 0, 1, 2, 3


class DecodeState(NamedTuple):
  cache: models.KVCache    # stacked, or per layer (tuples) when the layers are unrolled
  kv_mask: jax.Array       # [B, S] bool, slots holding real tokens
  last_token: jax.Array    # [B] int32, the token fed at the next step
  position: jax.Array      # [B] int32, its RoPE position
  step: jax.Array          # [] int32, tokens generated so far
  tokens: jax.Array        # [B, N] int32
  logprobs: jax.Array      # [B, N] float32, log pi_T (untruncated)
  raw_logprobs: jax.Array  # [B, N] float32, log pi_1
  lengths: jax.Array       # [B] int32
  done: jax.Array          # [B] bool
  finish: jax.Array        # [B] int32: RUNNING / EOS / LENGTH
  rng: jax.Array           # PRNG key
  row_ids: jax.Array       # [B] int32, global row index: row r draws with fold_in(key, row_ids[r])
  temperature: jax.Array   # [] float32
  top_p: jax.Array         # [] float32
  max_new: jax.Array       # [] int32 (<= N)
  eos_ids: jax.Array       # [E] int32 end-of-sequence ids, padded with -1


class Prefix(NamedTuple):
  """Cached prompt prefixes (`cache_prompts`) and the one each prompt row of `prefill` continues."""
  cache: models.KVCache    # V prefixes' keys / values, Pp slots (left-padded)
  mask: jax.Array          # [V, Pp] bool, slots holding real tokens
  rows: jax.Array          # [U] int32, the prefix of each prompt row
  keep: jax.Array          # [U] int32, how many of its first tokens the row keeps (>= 0)


def _constrain_cache(config: models.ModelConfig, cache: models.KVCache) -> models.KVCache:
  layout = models.resolve_cache_layout(config)
  k_names, v_names = (kv_cache.cache_axes(layout, kind) for kind in ("k", "v"))
  if isinstance(cache.k, (tuple, list)):
    per_layer = lambda xs, names: tuple(constrain(x, names[1:]) for x in xs)
    return models.KVCache(per_layer(cache.k, k_names), per_layer(cache.v, v_names))
  return models.KVCache(constrain(cache.k, k_names), constrain(cache.v, v_names))


def _unrolled(config: models.ModelConfig) -> bool:
  return models.resolve_layer_loop(config=config) == "unroll"


def _constrain_state(config: models.ModelConfig, s: DecodeState) -> DecodeState:
  cache = _constrain_cache(config, s.cache)
  rows = lambda x: constrain(x, ("batch",) + (None,) * (x.ndim - 1))
  return s._replace(cache=cache, kv_mask=rows(s.kv_mask), last_token=rows(s.last_token),
                    position=rows(s.position), tokens=rows(s.tokens), logprobs=rows(s.logprobs),
                    raw_logprobs=rows(s.raw_logprobs), lengths=rows(s.lengths),
                    done=rows(s.done), finish=rows(s.finish), row_ids=rows(s.row_ids))


def cache_prompts(config: models.ModelConfig, params, prompt_tokens: jax.Array,
                  prompt_mask: jax.Array) -> models.KVCache:
  """The KV cache of whole left-padded prompts [V, P] (every token, slots [0, P)): the
  `Prefix.cache` that `prefill` continues."""
  v, p = prompt_tokens.shape
  mask = prompt_mask.astype(bool)                                           # [V, P]
  positions = jnp.maximum(jnp.cumsum(mask.astype(jnp.int32), axis=1) - 1, 0)  # [V, P]
  cache = models.init_cache(config, v, p)
  if _unrolled(config):
    params, cache = decode_form.unstack_layers(params), kv_cache.unstack_cache(cache)
  cache = _constrain_cache(config, cache)
  _, cache = models.forward_step(config, params, prompt_tokens, positions, cache, jnp.int32(0),
                                 mask)
  return cache


def _start_cache(config: models.ModelConfig, prefix: Prefix | None, u: int,
                 slots: int) -> tuple[models.KVCache, jax.Array, jax.Array]:
  """(cache with `slots` slots for U prompt rows, its first slots' mask [U, Pp], the number of
  tokens before each row's prompt [U]); without a prefix, an empty cache, Pp = 0."""
  if prefix is None:
    return models.init_cache(config, u, slots), jnp.zeros((u, 0), bool), jnp.zeros((u,), jnp.int32)
  mask = prefix.mask[prefix.rows]                                           # [U, Pp]
  mask = mask & (jnp.cumsum(mask.astype(jnp.int32), axis=1) <= prefix.keep[:, None])
  layout = models.resolve_cache_layout(config)
  cache = kv_cache.grow_slots(_take_cache_rows(prefix.cache, prefix.rows), layout,
                              mask.shape[1] + slots)
  return cache, mask, prefix.keep.astype(jnp.int32)


def prefill(config: models.ModelConfig, params, prompt_tokens: jax.Array,
            prompt_mask: jax.Array, done: jax.Array, row_ids: jax.Array, rng: jax.Array,
            temperature: jax.Array,
            top_p: jax.Array, max_new: jax.Array, eos_ids: jax.Array,
            source: jax.Array | None = None, prefix: Prefix | None = None, *, num_new: int,
            pad_id: int) -> DecodeState:
  """Cache the prompts [U, P] (left-padded) and return the initial decode state of B rows.

  Without `source`, row i decodes from prompt i (B = U). With `source` [B], row i decodes from
  prompt `source[i]`: rows sharing a prompt (n samples of one prompt) share its prefill, whose
  cache is computed once and copied to each of them. With `prefix`, prompt row u continues the
  first `prefix.keep[u]` tokens of cached prefix `prefix.rows[u]` (module docstring).
  """
  u, p = prompt_tokens.shape
  mask = prompt_mask.astype(bool)                                           # [U, P]
  cache, prefix_mask, before = _start_cache(config, prefix, u, p + num_new)
  start = prefix_mask.shape[1]                                              # Pp
  positions = before[:, None] + jnp.maximum(jnp.cumsum(mask.astype(jnp.int32), axis=1) - 1,
                                            0)                              # [U, P]
  kv_mask = jnp.concatenate([prefix_mask, mask, jnp.zeros((u, num_new), bool)], axis=1)  # [U, S]
  if _unrolled(config):
    params, cache = decode_form.unstack_layers(params), kv_cache.unstack_cache(cache)
  else:
    cache = kv_cache.stack_cache(cache)
  cache = _constrain_cache(config, cache)
  if p > 1:
    _, cache = models.forward_step(config, params, prompt_tokens[:, :-1], positions[:, :-1],
                                   cache, jnp.int32(start), kv_mask)
  last_token = prompt_tokens[:, -1].astype(jnp.int32)                      # [U]
  position = positions[:, -1]                                               # [U]
  if source is not None:  # [B] -> prompt rows
    cache = _constrain_cache(config, _take_cache_rows(cache, source))
    kv_mask, last_token, position = kv_mask[source], last_token[source], position[source]
  b = done.shape[0]
  state = DecodeState(
      cache=cache, kv_mask=kv_mask, last_token=last_token,
      position=position, step=jnp.int32(0),
      tokens=jnp.full((b, num_new), pad_id, jnp.int32),
      logprobs=jnp.zeros((b, num_new), jnp.float32),
      raw_logprobs=jnp.zeros((b, num_new), jnp.float32),
      lengths=jnp.zeros((b,), jnp.int32), done=done.astype(bool),
      finish=jnp.zeros((b,), jnp.int32), rng=rng, row_ids=row_ids.astype(jnp.int32),
      temperature=jnp.asarray(temperature, jnp.float32), top_p=jnp.asarray(top_p, jnp.float32),
      max_new=jnp.asarray(max_new, jnp.int32), eos_ids=jnp.asarray(eos_ids, jnp.int32))
  return _constrain_state(config, state)


def _take_cache_rows(cache: models.KVCache, rows: jax.Array) -> models.KVCache:
  """Rows `rows` [B'] of a stacked ([L, B, ...]) or per-layer ([B, ...] each) cache."""
  if isinstance(cache.k, (tuple, list)):
    take = lambda xs: tuple(x[rows] for x in xs)
    return models.KVCache(take(cache.k), take(cache.v))
  return models.KVCache(cache.k[:, rows], cache.v[:, rows])


def take_rows(config: models.ModelConfig, state: DecodeState, rows: jax.Array,
              filler: jax.Array) -> DecodeState:
  """The decode state of a new batch whose row j continues row `rows[j]` [B'] of `state`;
  rows with `filler[j]` [B'] only pad the batch to its bucket and are done from the start.

  The sampler uses it to drop finished rows from the batch (a smaller batch bucket) between
  decode chunks; every row keeps its row id, so it draws the same tokens as before.
  """
  pick = lambda x: x[rows]
  state = state._replace(
      cache=_take_cache_rows(state.cache, rows), kv_mask=pick(state.kv_mask),
      last_token=pick(state.last_token), position=pick(state.position),
      tokens=pick(state.tokens), logprobs=pick(state.logprobs),
      raw_logprobs=pick(state.raw_logprobs), lengths=pick(state.lengths),
      done=pick(state.done) | filler, finish=pick(state.finish), row_ids=pick(state.row_ids))
  return _constrain_state(config, state)


def _write_column(buf: jax.Array, col: jax.Array, step: jax.Array) -> jax.Array:
  """buf[:, step] = col for buf [B, N], col [B]."""
  return jax.lax.dynamic_update_slice(buf, col[:, None].astype(buf.dtype),
                                      (jnp.int32(0), step))


def decode_body(config: models.ModelConfig, params, s: DecodeState, *, mode: SamplingMode,
                pad_id: int) -> DecodeState:
  """Feed `last_token`, draw the next token for every row, record it for rows still running."""
  prompt_len = s.kv_mask.shape[1] - s.tokens.shape[1]
  slot = prompt_len - 1 + s.step
  kv_mask = jax.lax.dynamic_update_slice(s.kv_mask, jnp.ones((s.kv_mask.shape[0], 1), bool),
                                         (jnp.int32(0), slot))
  logits, cache = models.forward_step(config, params, s.last_token[:, None], s.position[:, None],
                                      s.cache, slot, kv_mask)
  keys = row_keys(jax.random.fold_in(s.rng, s.step), s.row_ids)            # [B]
  d = draw(keys, logits[:, 0], s.temperature, s.top_p, mode)
  live = ~s.done                                                            # [B]
  is_eos = live & jnp.any(d.tokens[:, None] == s.eos_ids[None, :], axis=1)  # [B]
  at_len = live & (s.step + 1 >= s.max_new)
  finish = jnp.where(is_eos, EOS, jnp.where(at_len, LENGTH, s.finish))
  return s._replace(
      cache=cache, kv_mask=kv_mask, last_token=d.tokens, position=s.position + 1,
      step=s.step + 1,
      tokens=_write_column(s.tokens, jnp.where(live, d.tokens, pad_id), s.step),
      logprobs=_write_column(s.logprobs, jnp.where(live, d.logprobs, 0.0), s.step),
      raw_logprobs=_write_column(s.raw_logprobs, jnp.where(live, d.raw_logprobs, 0.0), s.step),
      lengths=s.lengths + live.astype(jnp.int32), done=s.done | is_eos | at_len, finish=finish)


def decode_chunk(config: models.ModelConfig, params, state: DecodeState, chunk_end: jax.Array,
                 *, mode: SamplingMode, pad_id: int) -> DecodeState:
  """Run decode steps until all rows are done or the step reaches min(chunk_end, max_new)."""
  limit = jnp.minimum(jnp.asarray(chunk_end, jnp.int32), state.max_new)
  if _unrolled(config):  # loop-invariant per-layer views: hoisted here, not sliced on every step
    params = decode_form.unstack_layers(params)
    state = state._replace(cache=_constrain_cache(config, kv_cache.unstack_cache(state.cache)))

  def cond(s: DecodeState):
    return (s.step < limit) & ~jnp.all(s.done)

  def body(s: DecodeState):
    return decode_body(config, params, s, mode=mode, pad_id=pad_id)

  return jax.lax.while_loop(cond, body, state)
