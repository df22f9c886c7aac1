"""`Sampler`: batched generation with a KV cache, jitted once per shape bucket.

Typical use:

  sampler = Sampler(config, params, tokenizer, mesh=None)
  outs = sampler.generate(["def f(x):\n"], SamplingParams(temperature=0.7, stop_strings=("```",)))
  out = sampler.sample_tokens(prompt_tokens, prompt_mask, SamplingParams(...))  # token arrays

Prompts are left-padded and rounded up to shape buckets (`Buckets`), so batches of other sizes
and prompt lengths inside the same buckets reuse the compiled programs (`num_compilations`
counts traces per function). Without stop strings the whole decode loop is one device call; with
stop strings the loop runs `stop_check_interval` steps at a time and the host decodes the new
text in between, marking rows that hit a stop string as done (see `stops.py` for the cut rule).
Rows with the same prompt (n samples of one prompt) share one prefill, and when the rows still
running after a stop check fit a smaller power-of-two batch, the finished ones leave the batch
(`share_prefill`, `compact`; both keep every row's draws, which depend on its row id only).
Prefix caching: `cache_prefixes` computes the KV cache of some prompt prefixes once (e.g. each
MCTS tree's prompt up to its program); `generate(..., prefix=cache, prefix_of=...)` then
prefills only what follows the longest part of each prompt's prefix that it starts with
(`token_loop.Prefix`), and each row draws what it would from its whole prompt.
With a `mesh`, params are sharded by `models.param_shardings`, the batch over ("data", "fsdp"), and
tracing happens inside `parallel.sharding_context(mesh)`. Rows enter and leave the mesh through
`feed` (`row_feed.RowFeed`: this process holds every row); with `row_feed.HostRowFeed`
each process of a multi-host run passes and gets back only its own rows, which draw with their
global row ids.
"""
from __future__ import annotations

import collections
import contextlib
import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from restrl_jax import models, parallel
from restrl_jax.models import decode_form
from restrl_jax.sampling import token_loop
from restrl_jax.sampling.buckets import Buckets, left_pad, repad
from restrl_jax.sampling.params import SamplingParams, eos_ids as merge_eos_ids
from restrl_jax.sampling.row_feed import RowFeed
from restrl_jax.sampling.stops import CONTEXT_TOKENS, StopWatcher, Tokenizer, detokenize
from restrl_jax.sampling.transforms import mode_of

FINISH_REASONS = {token_loop.EOS: "eos", token_loop.LENGTH: "length", token_loop.STOP: "stop"}


class SampleOutput(NamedTuple):
  """Token-level result (host numpy); entries past `lengths` are pad / 0."""
  tokens: np.ndarray        # [B, max_new_tokens] int32
  logprobs: np.ndarray      # [B, max_new_tokens] float32, log pi_T (untruncated)
  raw_logprobs: np.ndarray  # [B, max_new_tokens] float32, log pi_1
  lengths: np.ndarray       # [B] int32
  finish: np.ndarray        # [B] int32: token_loop.EOS / LENGTH / STOP
  texts: tuple[str, ...] | None  # completion texts (only when a tokenizer is present)


class PrefixCache(NamedTuple):
  """Prompt prefixes whose KV cache `Sampler.cache_prefixes` computed once, for any number of
  `generate(..., prefix=...)` calls with the same params."""
  tokens: tuple[tuple[int, ...], ...]  # host: each prefix's token ids
  cache: models.KVCache                # device: their keys / values, left-padded to Pp slots
  mask: jax.Array                      # [V', Pp] bool, slots holding real tokens (V' >= V)


class _RowPrefix(NamedTuple):
  """The cached prefix each row of one `_run` continues."""
  cached: PrefixCache
  rows: np.ndarray  # [b0] int, the prefix of each row
  keep: np.ndarray  # [b0] int, how many of its tokens the row keeps (the prompt repeats none)

  def tags(self) -> np.ndarray:
    return np.stack([self.rows, self.keep], axis=1)  # [b0, 2]

  def contexts(self, prompts: list[list[int]]) -> list[list[int]]:
    """The last tokens of each row's whole prompt: kept prefix + `prompts[i]`."""
    return [list(self.cached.tokens[v][max(k - CONTEXT_TOKENS, 0):k]) + p
            for v, k, p in zip(self.rows, self.keep, prompts)]


def kept_prefix(prefix: Sequence[int], prompt: Sequence[int]) -> int:
  """How many first tokens of `prompt` a row continues from the cached `prefix`: their common
  start, less one when that is all of `prompt` (its last token is fed to the decode loop)."""
  n = 0
  for a, b in zip(prefix, prompt):
    if a != b:
      break
    n += 1
  return min(n, len(prompt) - 1)


class Completion(NamedTuple):
  prompt_tokens: list[int]
  tokens: list[int]
  logprobs: np.ndarray      # [len(tokens)] float32, log pi_T
  raw_logprobs: np.ndarray  # [len(tokens)] float32, log pi_1
  text: str
  finish_reason: str        # "stop" | "eos" | "length"


def _as_key(rng, seed: int) -> jax.Array:
  if rng is None:
    return jax.random.key(seed)
  if isinstance(rng, (int, np.integer)):
    return jax.random.key(rng)
  return rng


class RowBook:
  """Host copy of one call's per-row outputs [B, ...] (B: the call's padded batch), filled in
  from a device batch whose row j is the call's row `slots[j]` (-1: filler) and which may
  shrink as finished rows are dropped."""

  FIELDS = ("tokens", "logprobs", "raw_logprobs", "lengths", "finish", "done")

  def __init__(self, batch: int, num_new: int):
    self.slots = np.arange(batch)                          # [B'] device row -> call row
    self.tokens = np.zeros((batch, num_new), np.int32)     # [B, N]
    self.logprobs = np.zeros((batch, num_new), np.float32)
    self.raw_logprobs = np.zeros((batch, num_new), np.float32)
    self.lengths = np.zeros((batch,), np.int32)            # [B]
    self.finish = np.zeros((batch,), np.int32)
    self.done = np.zeros((batch,), bool)

  def absorb(self, arrays: dict[str, np.ndarray]) -> None:
    """Write device rows' values (each [B', ...]) into their call rows."""
    keep = self.slots >= 0
    for name, x in arrays.items():
      getattr(self, name)[self.slots[keep]] = np.asarray(x)[keep]

  def device_done(self) -> np.ndarray:
    """[B'] bool: the `done` flags in device-row order (fillers are done)."""
    return np.where(self.slots >= 0, self.done[np.maximum(self.slots, 0)], True)


class Sampler:
  """Batched KV-cache generation for one model config; see the module docstring."""

  def __init__(self, config: models.ModelConfig, params=None, tokenizer: Tokenizer | None = None,
               *, mesh: jax.sharding.Mesh | None = None, buckets: Buckets | None = None,
               max_batch: int | None = None, feed: RowFeed | None = None,
               share_prefill: bool = True, compact: bool = True,
               transpose_min_elements: int = decode_form.TRANSPOSE_MIN_ELEMENTS):
    if max_batch is not None and max_batch < 1:
      raise ValueError(f"Sampler.max_batch must be >= 1 or None, got {max_batch}")
    self.config = config
    self.max_batch = max_batch
    self.tokenizer = tokenizer
    self.mesh = mesh
    self.buckets = buckets or Buckets()
    self.feed = feed or RowFeed()  # rows <-> mesh; per host: row_feed.HostRowFeed
    # rows may be regrouped (shared prefill, compaction) only when this host holds them all
    self.share_prefill = share_prefill and self.feed.rows_are_global
    self.compact = compact and self.feed.rows_are_global
    self.pad_id = int(config.pad_token_id if config.pad_token_id is not None else 0)
    self._traces: collections.Counter = collections.Counter()
    # "prefill_rows_saved": rows whose prefill another row's covered; "compactions": batches
    # shrunk to their running rows; "prefix_tokens_kept": prompt tokens read from a prefix cache
    self.stats: collections.Counter = collections.Counter()
    self._prefill = jax.jit(self._counted("prefill", functools.partial(token_loop.prefill, config)),
                            static_argnames=("num_new", "pad_id"))
    self._decode = jax.jit(
        self._counted("decode", functools.partial(token_loop.decode_chunk, config)),
        static_argnames=("mode", "pad_id"), donate_argnames=("state",))
    self._take = jax.jit(functools.partial(token_loop.take_rows, config))
    self._cache_prompts = jax.jit(
        self._counted("cache_prompts", functools.partial(token_loop.cache_prompts, config)))
    self._decode_params = jax.jit(functools.partial(decode_form.decode_params,
                                                    min_elements=transpose_min_elements))
    self.params = None if params is None else self._prepare(params)

  # -- bookkeeping -------------------------------------------------------------------------

  def _counted(self, name: str, fn):
    @functools.wraps(fn)
    def traced(*args, **kwargs):
      self._traces[name] += 1  # runs only while tracing, i.e. once per compilation
      return fn(*args, **kwargs)
    return traced

  @property
  def num_compilations(self) -> dict[str, int]:
    """How many times `prefill` / `decode` were traced so far; each new shape bucket or static
    setting (greedy, top_k, top-p on/off, pad id) is traced and compiled once."""
    return dict(self._traces)

  def _context(self):
    return parallel.sharding_context(self.mesh) if self.mesh is not None else (
        contextlib.nullcontext())

  def _batch_multiple(self) -> int:
    if self.mesh is None:
      return 1
    return self.feed.local_multiple(self.mesh)

  def place_params(self, params):
    """Params on the mesh by their logical axes (`models.param_shardings`; unchanged without
    a mesh)."""
    if self.mesh is None:
      return params
    return jax.device_put(params, models.param_shardings(self.config, self.mesh))

  # Without a mesh, inputs are committed to this process's first device like the params and the
  # jitted calls' outputs (each process of a multi-host run samples there on its own): a mix of
  # committed and uncommitted arguments compiles a second program for the same shapes (e.g. the
  # decode chunk after a stop check replaced `done`).
  def _place_rows(self, x: np.ndarray) -> jax.Array:
    if self.mesh is None:
      return jax.device_put(x, jax.local_devices()[0])
    return self.feed.put(x, self.mesh)

  def _place_scalar(self, x) -> jax.Array:
    if self.mesh is None:
      return jax.device_put(x, jax.local_devices()[0])
    return self.feed.replicate(x, self.mesh)

  def _prepare(self, params):
    """Placed params; on CPU their decode form (`decode_form.decode_params`: per-layer weight
    arrays, transposed kernels; one copy, made once here, instead of slicing the stacked arrays
    on every decode step)."""
    params = self.place_params(params)
    if models.resolve_layer_loop(config=self.config) == "unroll":
      with self._context():
        params = self._decode_params(params)
    return params

  def _params(self, params):
    if params is None:
      if self.params is None:
        raise ValueError("Sampler has no params: pass params= to the call or the constructor")
      return self.params
    return self._prepare(params)

  # -- public API ----------------------------------------------------------------------------

  def sample_tokens(self, prompt_tokens, prompt_mask, sampling_params: SamplingParams,
                    rng=None, params=None, row_ids=None) -> SampleOutput:
    """Generate from left-padded prompt_tokens [B, P] / prompt_mask [B, P] (1 = real token).

    Row i draws with row id `row_ids[i]` (default i), as in `generate`.
    """
    tokens = np.asarray(jax.device_get(prompt_tokens)).astype(np.int32)
    mask = np.asarray(jax.device_get(prompt_mask)).astype(bool)
    if tokens.ndim != 2 or len(tokens) == 0:
      raise ValueError(f"prompt_tokens must be [B, P] with B >= 1, got shape {tokens.shape}")
    ids = self.feed.row_ids(len(tokens)) if row_ids is None else np.asarray(row_ids, np.int64)
    if ids.shape != (len(tokens),):
      raise ValueError(f"sample_tokens: row_ids has shape {ids.shape} for {len(tokens)} prompts")
    params = self._params(params)  # placed (and unstacked) once for all chunks
    outs = [self._run(tokens[rows], mask[rows], sampling_params, rng, params, ids[rows])
            for rows in self._chunks(np.arange(len(tokens)))]
    return _concat(outs)

  def cache_prefixes(self, prefixes: Sequence[str | Sequence[int]], params=None) -> PrefixCache:
    """The KV cache of each prefix (text or token ids), computed once, from which
    `generate(..., prefix=...)` continues the prompts that start with one of them (same params)."""
    if not self.feed.rows_are_global:
      raise ValueError("cache_prefixes: prefix caching needs a feed that holds every row")
    ids = [self._encode(p, i) for i, p in enumerate(prefixes)]
    params = self._params(params)
    tokens, mask = left_pad(ids, self.buckets.prompt_len(max(len(p) for p in ids)),
                            self.buckets.batch(len(ids), self._batch_multiple()), self.pad_id)
    with self._context():
      mask = self._place_rows(mask)
      cache = self._cache_prompts(params, self._place_rows(tokens), mask)
    return PrefixCache(tuple(tuple(p) for p in ids), cache, mask)

  def generate(self, prompts: Sequence[str | Sequence[int]], sampling_params: SamplingParams,
               rng=None, params=None, row_ids: Sequence[int] | None = None,
               prompt_len: int = 0, prefix: PrefixCache | None = None,
               prefix_of: Sequence[int] | None = None) -> list[Completion]:
    """Generate one completion per prompt (text, or token ids to continue from exactly).

    Prompt i draws with row id `row_ids[i]` (default i): give global ids so that a row's samples
    do not depend on which other prompts share the call. Prompts are left-padded to at least
    `prompt_len` tokens (e.g. the longest prompt of several calls, so that they all compute at
    one prompt bucket). With `prefix` (`cache_prefixes`, same params), prompt i continues the
    cache of prefix `prefix_of[i]` for as many of its first tokens as it shares with it
    (`kept_prefix`) and draws what it would without it; only the rest is padded then
    (`prompt_len` does not apply).
    """
    ids = [self._encode(p, i) for i, p in enumerate(prompts)]
    if row_ids is not None and len(row_ids) != len(ids):
      raise ValueError(f"generate: row_ids has {len(row_ids)} entries for {len(ids)} prompts")
    global_ids = self.feed.row_ids(len(ids)) if row_ids is None else np.asarray(row_ids, np.int64)
    of, keep = self._prefix_rows(ids, prefix, prefix_of)
    results: list[Completion | None] = [None] * len(ids)
    params = self._params(params)  # placed (and unstacked) once for all chunks
    # batches of similar lengths (less padding); row i always draws with row id i
    by_length = np.argsort([len(p) - k for p, k in zip(ids, keep)], kind="stable")
    for rows in self._chunks(by_length):
      chunk = [ids[i][keep[i]:] for i in rows]
      width = max(map(len, chunk)) if prefix is not None else max(prompt_len, *map(len, chunk))
      tokens, mask = left_pad(chunk, width, len(chunk), self.pad_id)
      row_prefix = None if prefix is None else _RowPrefix(prefix, of[rows], keep[rows])
      out = self._run(tokens, mask, sampling_params, rng, params, global_ids[rows], row_prefix)
      for j, i in enumerate(rows):
        results[i] = _completion(ids[i], out, j)
    return results

  def _prefix_rows(self, ids: list[list[int]], prefix: PrefixCache | None,
                   prefix_of: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray]:
    """(the cached prefix of each prompt [B], how many of its tokens it keeps [B])."""
    if prefix is None:
      if prefix_of is not None:
        raise ValueError("generate: prefix_of without a prefix cache")
      return np.zeros(len(ids), np.int64), np.zeros(len(ids), np.int64)
    of = np.asarray(prefix_of if prefix_of is not None else [], np.int64)
    if of.shape != (len(ids),) or (of < 0).any() or (of >= len(prefix.tokens)).any():
      raise ValueError(f"generate: prefix_of must give one of the {len(prefix.tokens)} cached "
                       f"prefixes for each of the {len(ids)} prompts, got {prefix_of}")
    keep = np.array([kept_prefix(prefix.tokens[v], p) for v, p in zip(of, ids)], np.int64)
    self.stats["prefix_tokens_kept"] += int(keep.sum())
    return of, keep

  def _chunks(self, rows: np.ndarray) -> list[np.ndarray]:
    size = self.max_batch or max(len(rows), 1)
    return [rows[i:i + size] for i in range(0, len(rows), size)]

  # -- internals -----------------------------------------------------------------------------

  def _encode(self, prompt, index: int) -> list[int]:
    if isinstance(prompt, str):
      if self.tokenizer is None:
        raise ValueError(f"prompt {index} is text but the Sampler has no tokenizer")
      ids = list(self.tokenizer.encode(prompt))
    else:
      ids = [int(t) for t in prompt]
    if not ids:
      raise ValueError(f"prompt {index} is empty; give at least one token (e.g. BOS)")
    return ids

  def _check_request(self, mask: np.ndarray, sp: SamplingParams, before: np.ndarray) -> None:
    """`before` [B]: prompt tokens ahead of `mask`'s (a cached prefix's)."""
    if sp.stop_strings and self.tokenizer is None:
      raise ValueError("SamplingParams.stop_strings need a tokenizer; the Sampler has none")
    longest = int((mask.sum(axis=1) + before).max()) + sp.max_new_tokens
    if longest > self.config.max_position_embeddings:
      raise ValueError(f"prompt length + max_new_tokens = {longest} exceeds the model's "
                       f"max_position_embeddings {self.config.max_position_embeddings}")

  def _run(self, tokens: np.ndarray, mask: np.ndarray, sp: SamplingParams, rng, params,
           row_ids: np.ndarray, prefix: _RowPrefix | None = None) -> SampleOutput:
    """One chunk of rows; `params` as returned by `_params`; `prefix`: the cached prefix each
    row's prompt continues (`tokens` then hold the rest of the prompts)."""
    b0, p0 = tokens.shape
    batch = self.buckets.batch(b0, self._batch_multiple())
    tokens, mask = repad(tokens, mask, self.buckets.prompt_len(self.feed.agree_max(p0)), batch,
                         self.pad_id)
    self._check_request(mask, sp, np.zeros(batch, np.int64) if prefix is None else
                        np.pad(prefix.keep, (0, batch - b0)))
    eos = merge_eos_ids(self.config.eos_token_ids, sp)
    contexts = [t[m].tolist() for t, m in zip(tokens[:b0], mask[:b0])]
    contexts = [c[-CONTEXT_TOKENS:] for c in (
        contexts if prefix is None else prefix.contexts(contexts))]
    watcher = StopWatcher(self.tokenizer, sp.stop_strings, contexts, eos) if (
        sp.stop_strings) else None
    with self._context():
      ids = np.concatenate([row_ids, -1 - np.arange(batch - b0)]).astype(np.int32)
      state = self._start(params, tokens, mask, ids, sp, rng, eos, b0, prefix)
      rows = self._decode_all(params, state, sp, watcher, len(tokens))
    return self._collect(rows, b0, sp, contexts, eos, watcher)

  def _start(self, params, tokens: np.ndarray, mask: np.ndarray, row_ids: np.ndarray,
             sp: SamplingParams, rng, eos: tuple[int, ...], b0: int,
             prefix: _RowPrefix | None) -> token_loop.DecodeState:
    """Place the padded batch on the devices and run the jitted prefill (filler rows have
    negative row ids and start done). Rows of the first `b0` with the same prompt (and cached
    prefix) share one prefill when that makes the prefill batch a smaller bucket."""
    rows, scalar = self._place_rows, self._place_scalar
    source, prompt_rows = None, np.arange(b0)  # the call rows whose prompts are prefilled
    if self.share_prefill:
      unique, index = shared_prompts(tokens[:b0], mask[:b0],
                                     None if prefix is None else prefix.tags())
      batch = self.buckets.batch(len(unique), self._batch_multiple())
      if batch < len(tokens):
        self.stats["prefill_rows_saved"] += len(tokens) - batch
        tokens, mask = repad(tokens[unique], mask[unique], tokens.shape[1], batch, self.pad_id)
        source = rows(np.concatenate([index, np.zeros(len(row_ids) - b0, np.int64)]
                                     ).astype(np.int32))
        prompt_rows = unique
    cached = None
    if prefix is not None:  # filler prompt rows keep nothing of prefix 0
      pad = (0, len(tokens) - len(prompt_rows))
      cached = token_loop.Prefix(prefix.cached.cache, prefix.cached.mask,
                                 rows(np.pad(prefix.rows[prompt_rows], pad).astype(np.int32)),
                                 rows(np.pad(prefix.keep[prompt_rows], pad).astype(np.int32)))
    return self._prefill(
        params, rows(tokens), rows(mask), rows(row_ids < 0), rows(row_ids),
        scalar(_as_key(rng, sp.seed)),
        scalar(np.float32(sp.temperature)), scalar(np.float32(sp.top_p)),
        scalar(np.int32(sp.max_new_tokens)), scalar(_pad_ids(eos)), source, cached,
        num_new=self.buckets.new_tokens(sp.max_new_tokens), pad_id=self.pad_id)

  def _decode_all(self, params, state: token_loop.DecodeState, sp: SamplingParams,
                  watcher: StopWatcher | None, batch: int) -> RowBook:
    """The decode loop: one device call, or chunks with a host stop-string check in between.

    The check is synchronous (the next chunk starts after it): overlapping it with the next
    chunk would save the host's few milliseconds but waste a whole chunk of decode steps once
    every row has hit a stop string, which is the common end of a code completion. After a
    check, when the rows still running fit a smaller power-of-two batch, it is compacted to
    them (`token_loop.take_rows`), so a few long rows do not keep the whole batch decoding.
    """
    mode = mode_of(sp, self.config.vocab_size)
    run = functools.partial(self._decode, params, mode=mode, pad_id=self.pad_id)
    book = RowBook(batch, state.tokens.shape[1])  # this host's rows
    if watcher is None:
      book.absorb(self._fetch(run(state=state, chunk_end=np.int32(sp.max_new_tokens))))
      return book
    step = 0
    while True:
      step = min(step + sp.stop_check_interval, sp.max_new_tokens)
      state = run(state=state, chunk_end=np.int32(step))
      book.absorb(self._fetch(state, ("tokens", "lengths", "done")))
      hits = watcher.update(book.tokens, book.lengths, book.done)
      if hits:
        book.done[hits] = True
        state = state._replace(done=self._place_rows(book.device_done()))
      if self.feed.agree_all(book.done.all()) or step >= sp.max_new_tokens:
        book.absorb(self._fetch(state))
        return book
      if self.compact:
        state = self._compact(state, book)

  def _fetch(self, state: token_loop.DecodeState, fields=RowBook.FIELDS) -> dict[str, np.ndarray]:
    return {f: self.feed.get(getattr(state, f)) for f in fields}

  def _compact(self, state: token_loop.DecodeState, book: RowBook) -> token_loop.DecodeState:
    """`state` with only its running rows, when they fit a smaller power-of-two batch."""
    live = np.nonzero(~book.device_done())[0]                    # device rows still running
    batch = self.buckets.compacted_batch(max(len(live), 1), self._batch_multiple())
    if batch >= len(book.slots):
      return state
    book.absorb(self._fetch(state))  # the outputs of the rows that leave
    spare = int(np.nonzero(book.device_done())[0][0])            # any done row pads the batch
    rows = np.concatenate([live, np.full(batch - len(live), spare)]).astype(np.int32)
    filler = np.arange(batch) >= len(live)
    book.slots = np.where(filler, -1, book.slots[rows])
    self.stats["compactions"] += 1
    return self._take(state, self._place_rows(rows), self._place_rows(filler))

  def _collect(self, book: RowBook, b0: int, sp: SamplingParams,
               contexts: list[list[int]], eos: tuple[int, ...],
               watcher: StopWatcher | None) -> SampleOutput:
    n = sp.max_new_tokens
    toks, lps, raws = (np.array(x[:b0, :n]) for x in (book.tokens, book.logprobs,
                                                      book.raw_logprobs))
    lengths, finish = np.array(book.lengths[:b0]), np.array(book.finish[:b0])
    for row, cut in (watcher.cuts.items() if watcher else ()):
      lengths[row], finish[row] = cut.num_tokens, token_loop.STOP
      toks[row, cut.num_tokens:], lps[row, cut.num_tokens:] = self.pad_id, 0.0
      raws[row, cut.num_tokens:] = 0.0
    texts = None
    if self.tokenizer is not None:
      texts = tuple(
          watcher.cuts[r].text if watcher and r in watcher.cuts else
          _text(self.tokenizer, toks[r, :lengths[r]], contexts[r], eos) for r in range(b0))
    return SampleOutput(toks, lps, raws, lengths, finish, texts)


def shared_prompts(tokens: np.ndarray, mask: np.ndarray,
                   tags: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Distinct prompts among left-padded rows [B, P] (rows with different `tags` [B, k], e.g.
  their cached prefixes, are distinct): (first row of each distinct prompt [U], index of each
  row's prompt in that list [B])."""
  slot: dict[bytes, int] = {}  # prompt -> its index in `unique`
  unique: list[int] = []
  index = np.empty(len(tokens), np.int64)
  for i, (t, m) in enumerate(zip(tokens, mask)):
    key = t[m].tobytes() + (b"" if tags is None else np.asarray(tags[i], np.int64).tobytes())
    if key not in slot:
      slot[key] = len(unique)
      unique.append(i)
    index[i] = slot[key]
  return np.asarray(unique, np.int64), index


def _concat(outs: list[SampleOutput]) -> SampleOutput:
  if len(outs) == 1:
    return outs[0]
  arrays = [np.concatenate(xs) for xs in zip(*(o[:5] for o in outs))]
  texts = None if outs[0].texts is None else sum((o.texts for o in outs), ())
  return SampleOutput(*arrays, texts)


def _pad_ids(ids: tuple[int, ...]) -> np.ndarray:
  """End-of-sequence ids as int32 [E], E a power of two >= 4, padded with -1 (no recompile
  when the set changes size within the bucket)."""
  out = np.full(max(4, 1 << max(len(ids) - 1, 0).bit_length()), -1, np.int32)
  out[:len(ids)] = ids
  return out


def _text(tokenizer: Tokenizer, tokens: np.ndarray, context: list[int],
          eos: tuple[int, ...]) -> str:
  toks = tokens.tolist()
  if toks and toks[-1] in eos:
    toks = toks[:-1]
  return detokenize(tokenizer, toks, context)


def _completion(prompt: list[int], out: SampleOutput, row: int) -> Completion:
  n = int(out.lengths[row])
  return Completion(
      prompt_tokens=prompt, tokens=out.tokens[row, :n].tolist(),
      logprobs=out.logprobs[row, :n], raw_logprobs=out.raw_logprobs[row, :n],
      text=out.texts[row] if out.texts is not None else "",
      finish_reason=FINISH_REASONS[int(out.finish[row])])


def generate(config: models.ModelConfig, params, tokenizer: Tokenizer | None,
             prompts: Sequence[str | Sequence[int]], sampling_params: SamplingParams, rng=None,
             mesh: jax.sharding.Mesh | None = None) -> list[Completion]:
  """One-shot convenience; keep a `Sampler` to reuse compiled programs across calls."""
  return Sampler(config, params, tokenizer, mesh=mesh).generate(prompts, sampling_params, rng)
