"""The sampler against the model's full-sequence forward (`models.logits`) as reference."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from restrl_jax import models
from restrl_jax.sampling import Buckets, Sampler, SamplingParams
from test_sampling_units import CharTokenizer, _np_truncated

TOK = CharTokenizer()
PROMPTS = ["def f(x):\n  re", "ab", "x = 1\n```", "the "]  # mixed lengths, left-padded
N = 12


@pytest.fixture(scope="module")
def setup():
  config = dataclasses.replace(models.get_preset("tiny"), vocab_size=len(TOK.vocab),
                               eos_token_id=None)
  params = models.init_params(config, jax.random.key(0), std=0.5)
  sampler = Sampler(config, params, TOK, buckets=Buckets(min_prompt=16, min_new_tokens=16,
                                                          min_batch=4))
  return config, params, sampler


@pytest.fixture(scope="module")
def greedy(setup):
  _, _, sampler = setup
  return sampler.generate(PROMPTS, SamplingParams(max_new_tokens=N, temperature=0.0))


def _full_logits(config, params, prompts, gens):
  """models.logits over left-padded [prompt + generated] rows; returns logits, P, mask."""
  p = max(len(x) for x in prompts)
  width = p + max(len(g) for g in gens)
  tokens = np.zeros((len(prompts), width), np.int32)
  mask = np.zeros((len(prompts), width), bool)
  for i, (x, g) in enumerate(zip(prompts, gens)):
    tokens[i, p - len(x):p + len(g)] = x + list(g)
    mask[i, p - len(x):p + len(g)] = True
  out = jax.jit(models.logits, static_argnums=0)(config, params, tokens, mask)
  return np.asarray(out), p


def test_greedy_equals_stepwise_argmax(setup, greedy):
  config, params, _ = setup
  prompts = [TOK.encode(p) for p in PROMPTS]
  p = max(len(x) for x in prompts)
  tokens = np.zeros((len(prompts), p + N), np.int32)
  mask = np.zeros((len(prompts), p + N), bool)
  for i, x in enumerate(prompts):
    tokens[i, p - len(x):p], mask[i, p - len(x):p] = x, True
  fwd = jax.jit(models.logits, static_argnums=0)
  ref_lp = np.zeros((len(prompts), N))
  for step in range(N):  # grow every row by its argmax, recomputing the whole sequence
    logits = np.asarray(fwd(config, params, tokens, mask))[:, p + step - 1]
    nxt = logits.argmax(-1)
    ref_lp[:, step] = jax.nn.log_softmax(logits)[np.arange(len(prompts)), nxt]
    tokens[:, p + step], mask[:, p + step] = nxt, True
  for i, c in enumerate(greedy):
    assert c.prompt_tokens == prompts[i]
    assert c.tokens == tokens[i, p:].tolist(), f"row {i}"
    assert c.finish_reason == "length"
    np.testing.assert_allclose(c.logprobs, ref_lp[i], atol=1e-4)
    assert c.text == TOK.decode(c.tokens)


def test_sampled_logprobs_and_truncated_support(setup):
  config, params, sampler = setup
  sp = SamplingParams(max_new_tokens=N, temperature=0.7, top_k=10, top_p=0.8, seed=3)
  outs = sampler.generate(PROMPTS, sp)
  prompts = [c.prompt_tokens for c in outs]
  logits, p = _full_logits(config, params, prompts, [c.tokens for c in outs])
  for i, c in enumerate(outs):
    assert len(c.tokens) == N
    rows = logits[i, p - 1:p - 1 + N]                                        # [N, V]
    tok = np.asarray(c.tokens)
    lp_t = jax.nn.log_softmax(rows / 0.7)[np.arange(N), tok]
    lp_1 = jax.nn.log_softmax(rows)[np.arange(N), tok]
    np.testing.assert_allclose(c.logprobs, lp_t, atol=1e-4)
    np.testing.assert_allclose(c.raw_logprobs, lp_1, atol=1e-4)
    for t in range(N):  # every draw lies in the top-k / top-p set (1e-4 slack at the edge)
      allowed = _np_truncated(rows[t], 0.7, 10, 0.8) > 0
      edge = np.min(rows[t][allowed])
      assert allowed[tok[t]] or rows[t][tok[t]] >= edge - 1e-4, f"row {i} step {t}"


def test_rows_do_not_depend_on_batching(setup):
  _, _, sampler = setup
  sp = SamplingParams(max_new_tokens=N, temperature=0.7, top_k=10, top_p=0.8, seed=3)
  whole = sampler.generate(PROMPTS, sp)
  sampler.max_batch = 2  # same compiled shapes (batch bucket 4), other batch composition
  try:
    pairs = sampler.generate(PROMPTS, sp)
    split = sampler.sample_tokens(*_left_padded(PROMPTS), sp)
  finally:
    sampler.max_batch = None
  for i, (a, b) in enumerate(zip(whole, pairs)):
    assert a.tokens == b.tokens and a.text == b.text
    np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5)
    assert split.tokens[i, :split.lengths[i]].tolist() == a.tokens
  assert len({tuple(c.tokens) for c in whole}) == len(whole)


def _left_padded(texts):
  ids = [TOK.encode(t) for t in texts]
  p = max(len(x) for x in ids)
  tokens = np.array([[0] * (p - len(x)) + x for x in ids], np.int32)
  return tokens, tokens != 0


def test_first_token_frequencies_match_softmax_at_temperature(setup):
  """Same compiled program as the test above (top-k on, top_p traced); 4 rows x 300 calls."""
  config, params, sampler = setup
  prompt, temperature, top_k, calls = TOK.encode("ab = "), 1.5, 10, 300
  sp = SamplingParams(max_new_tokens=1, temperature=temperature, top_k=top_k, top_p=1.0)
  tokens = np.tile(np.asarray(prompt, np.int32), (4, 1))
  mask = np.ones_like(tokens, bool)
  draws = np.concatenate([sampler.sample_tokens(tokens, mask, sp, rng=s).tokens[:, 0]
                          for s in range(calls)])
  logits = np.asarray(models.logits(config, params, tokens[:1]))[0, -1]
  ref = _np_truncated(logits, temperature, top_k, 1.0)  # softmax(l / T) on the top-k, renormed
  n = len(draws)
  freq = np.bincount(draws, minlength=len(ref)) / n
  tv = 0.5 * np.abs(freq - ref).sum()
  null_tv = 0.5 * np.abs(np.random.default_rng(0).multinomial(n, ref, size=1000) / n - ref).sum(-1)
  assert tv <= null_tv.max(), f"TV {tv:.4f} vs max of 1000 null draws {null_tv.max():.4f}"
  wrong = _np_truncated(logits, 1.0, top_k, 1.0)  # the T = 1 distribution must be rejected
  assert 0.5 * np.abs(freq - wrong).sum() > null_tv.max(), "temperature had no visible effect"


def test_eos_stops_one_row_while_others_continue(setup, greedy):
  _, _, sampler = setup
  rows = [c.tokens for c in greedy]
  # an id that row 0 emits but some other row never does
  eos = next(t for t in rows[0][2:] if any(t not in r for r in rows[1:]))
  outs = sampler.generate(PROMPTS, SamplingParams(max_new_tokens=N, temperature=0.0,
                                                  stop_token_ids=(eos,)))
  for c, full in zip(outs, rows):
    if eos in full:
      k = full.index(eos) + 1
      assert c.tokens == full[:k] and c.finish_reason == "eos"
      assert c.text == TOK.decode(full[:k - 1]) or TOK.vocab[eos].startswith("<")
    else:
      assert c.tokens == full and c.finish_reason == "length"
  assert outs[0].finish_reason == "eos"
  assert any(c.finish_reason == "length" for c in outs)


def _piece_starts(tokens):
  starts, pos = [], 0
  for t in tokens:
    starts.append(pos)
    pos += len(TOK.decode([t]))
  return starts


def _expected_cut(tokens, stop):
  text = TOK.decode(tokens)
  at = text.find(stop)
  if at < 0:
    return tokens, text, "length"
  n = next(k for k in range(len(tokens) + 1) if len(TOK.decode(tokens[:k])) >= at)
  return tokens[:n], text[:at], "stop"


def _find_stops(tokens):
  """A stop string starting inside a multi-char token, and one spanning 3 whole tokens."""
  text, starts = TOK.decode(tokens), _piece_starts(tokens)
  mid = span = None
  for j, t in enumerate(tokens):
    piece = TOK.decode([t])
    if mid is None and len(piece) >= 2 and starts[j] + 4 <= len(text):
      cand = text[starts[j] + 1:starts[j] + 4]
      if text.find(cand) == starts[j] + 1:
        mid = cand
    if span is None and 0 < j < len(tokens) - 3 and text.find(
        TOK.decode(tokens[j:j + 3])) == starts[j] and len(TOK.decode(tokens[j:j + 3])) >= 3:
      span = TOK.decode(tokens[j:j + 3])
  return mid, span


def test_stop_strings_cut_exactly(setup, greedy):
  _, _, sampler = setup
  full = [c.tokens for c in greedy]
  found = [(i, _find_stops(r)) for i, r in enumerate(full)]
  mid_row, (mid, _) = next((i, s) for i, s in found if s[0] is not None)
  span_row, (_, span) = next((i, s) for i, s in found if s[1] is not None)
  for stop, row in ((mid, mid_row), (span, span_row)):
    sp = SamplingParams(max_new_tokens=N, temperature=0.0, stop_strings=(stop, "\x00never"),
                        stop_check_interval=4)
    outs = sampler.generate(PROMPTS, sp)
    assert outs[row].finish_reason == "stop", (stop, outs[row])
    for c, g, ref in zip(outs, greedy, full):
      toks, text, reason = _expected_cut(ref, stop)
      assert (c.tokens, c.text, c.finish_reason) == (toks, text, reason), repr(stop)
      np.testing.assert_allclose(c.logprobs, g.logprobs[:len(toks)], atol=1e-6)
  assert len(TOK.decode(outs[span_row].tokens)) == len(outs[span_row].text)


def test_continuation_from_prefix(setup, greedy):
  _, _, sampler = setup
  k = 5
  prefixes = [c.prompt_tokens + c.tokens[:k] for c in greedy]
  outs = sampler.generate(prefixes, SamplingParams(max_new_tokens=N - k, temperature=0.0))
  for c, g in zip(outs, greedy):
    assert c.tokens == g.tokens[k:]
    np.testing.assert_allclose(c.logprobs, g.logprobs[k:], atol=1e-4)


def test_same_bucket_does_not_recompile(setup, greedy):
  _, _, sampler = setup
  before = sampler.num_compilations
  sp = SamplingParams(max_new_tokens=N - 3, temperature=0.0)
  outs = sampler.generate(["x", "abc = 12345", "re"], sp)  # other lengths, batch 3 -> bucket 4
  assert [len(c.tokens) for c in outs] == [N - 3] * 3
  tokens, mask = np.ones((2, 7), np.int32), np.ones((2, 7), bool)
  sampler.sample_tokens(tokens, mask, sp)
  assert sampler.num_compilations == before, (before, sampler.num_compilations)


def test_bad_requests_name_the_problem(setup):
  config, params, sampler = setup
  with pytest.raises(ValueError, match="LEFT-padded"):
    sampler.sample_tokens(np.ones((2, 3), np.int32), np.array([[1, 1, 0], [1, 1, 1]]),
                          SamplingParams(max_new_tokens=2))
  with pytest.raises(ValueError, match="max_position_embeddings"):
    sampler.generate(["ab"], SamplingParams(max_new_tokens=config.max_position_embeddings))
  with pytest.raises(ValueError, match="tokenizer"):
    Sampler(config, params).generate([[5, 6]], SamplingParams(stop_strings=("```",)))
  with pytest.raises(ValueError, match="prompt 1 is empty"):
    sampler.generate(["a", ""], SamplingParams(max_new_tokens=2))
