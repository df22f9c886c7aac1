"""Sampler pieces that need no model: sampling math, stop-string cuts, buckets, padding."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from restrl_jax.sampling import SamplingMode, SamplingParams, cut_at_stop, detokenize, draw
from restrl_jax.sampling.categorical import sample_index
from restrl_jax.sampling.buckets import Buckets, check_left_padded, left_pad, repad, round_up
from restrl_jax.sampling.stops import StopWatcher, tokens_covering

SPECIALS = ("<pad>", "<s>", "</s>")
PIECES = ("```", "``", "`\n", "x`", "\n\n", "  ", "    ", "def", "return", "re", "ab", "ba",
          "in", "on", "er", "st", " =", "()", "):", "\n ", "ing", "se", "lf", "el", "##", "`x",
          "a`", "he", "the", "abc", "xy")


class CharTokenizer:
  """Deterministic test tokenizer: specials, printable ASCII + \\n \\t, then multi-char pieces.

  `encode` is greedy longest-match, so a string like "x```" can tokenize as ["x`", "``"] and a
  stop string "```" then starts in the middle of a token.
  """

  def __init__(self, vocab_size: int = 160):
    chars = [chr(c) for c in range(32, 127)] + ["\n", "\t"]
    vocab = list(SPECIALS) + chars + list(PIECES)
    if len(vocab) > vocab_size:
      raise ValueError(f"CharTokenizer needs vocab_size >= {len(vocab)}")
    vocab += [f"<extra{i}>" for i in range(vocab_size - len(vocab))]
    self.vocab = vocab
    self.ids = {p: i for i, p in enumerate(vocab) if not p.startswith("<")}
    self.max_piece = max(len(p) for p in self.ids)
    self.pad_id, self.bos_id, self.eos_id = 0, 1, 2

  def encode(self, text: str) -> list[int]:
    out, i = [], 0
    while i < len(text):
      for n in range(min(self.max_piece, len(text) - i), 0, -1):
        if text[i:i + n] in self.ids:
          out.append(self.ids[text[i:i + n]])
          i += n
          break
      else:
        raise ValueError(f"CharTokenizer: character {text[i]!r} not in vocab")
    return out

  def decode(self, ids) -> str:
    return "".join("" if self.vocab[int(i)].startswith("<") else self.vocab[int(i)] for i in ids)


TOK = CharTokenizer()


# -- sampling math --------------------------------------------------------------------------

def _np_truncated(logits: np.ndarray, temperature: float, top_k: int, top_p: float) -> np.ndarray:
  """Reference: softmax(logits / T) restricted to top-k then top-p, renormalised."""
  z = logits.astype(np.float64) / temperature
  order = np.argsort(-z)
  keep = np.zeros_like(z, bool)
  k = top_k or len(z)
  cand = order[:k]
  p = np.exp(z[cand] - z[cand].max())
  p /= p.sum()
  before = np.cumsum(p) - p
  keep[cand[before < top_p]] = True
  probs = np.where(keep, np.exp(z - z.max()), 0.0)
  return probs / probs.sum()


def _draw_many(logits, temperature, top_p, mode, n, seed=0):
  keys = jax.random.split(jax.random.key(seed), n)
  batch = jnp.broadcast_to(jnp.asarray(logits)[None], (1,) + logits.shape)
  f = jax.jit(jax.vmap(lambda k: draw(k[None], batch, jnp.float32(temperature), jnp.float32(top_p),
                                      mode).tokens[0]))
  return np.asarray(f(keys))


@pytest.mark.parametrize("top_k,top_p", [(0, 1.0), (7, 1.0), (0, 0.8), (12, 0.6)])
def test_draw_frequencies_match_truncated_distribution(top_k, top_p):
  rng = np.random.default_rng(1)
  logits = (rng.normal(size=40) * 2.0).astype(np.float32)
  temperature, n = 0.7, 20000
  mode = SamplingMode(greedy=False, top_k=top_k, use_top_p=top_p < 1.0)
  ref = _np_truncated(logits, temperature, top_k, top_p)
  samples = _draw_many(logits, temperature, top_p, mode, n)
  assert set(np.unique(samples)) <= set(np.nonzero(ref > 0)[0]), "token outside the allowed set"
  freq = np.bincount(samples, minlength=len(logits)) / n
  tv = 0.5 * np.abs(freq - ref).sum()
  assert tv < 0.025, f"total variation {tv:.4f} between samples and reference"
  if top_k:
    assert (ref > 0).sum() <= top_k


def test_sample_index_inverse_cdf_exact_points():
  logits = np.full((1, 100), -np.inf, np.float32)   # 100 entries: blocks of 16, padded
  logits[0, [3, 40, 41, 99]] = np.log([1.0, 1.0, 2.0, 4.0])  # cdf: 1/8, 2/8, 4/8, 1
  cases = {0.0: 3, 0.124: 3, 0.126: 40, 0.3: 41, 0.49: 41, 0.51: 99, 0.999999: 99}
  f = jax.jit(jax.vmap(lambda u: sample_index(jnp.asarray(logits), u[None])[0]))
  got = np.asarray(f(jnp.asarray(list(cases), jnp.float32)))
  assert got.tolist() == list(cases.values())


def test_sample_index_large_vocab_frequencies():
  v, n = 3000, 20000  # blocks of 64 (47 of them, the last padded), a third of entries excluded
  rng = np.random.default_rng(5)
  logits = (rng.normal(size=v) * 2.5).astype(np.float32)
  logits[rng.random(v) < 0.33] = -np.inf
  u = jax.random.uniform(jax.random.key(0), (n,))
  draws = np.asarray(jax.jit(jax.vmap(lambda x: sample_index(jnp.asarray(logits)[None],
                                                                   x[None])[0]))(u))
  ref = np.exp(logits - logits.max())
  ref /= ref.sum()
  assert (ref[draws] > 0).all(), "drew an excluded entry"
  tv = 0.5 * np.abs(np.bincount(draws, minlength=v) / n - ref).sum()
  null = 0.5 * np.abs(rng.multinomial(n, ref, size=300) / n - ref).sum(-1)
  assert tv <= null.max(), f"TV {tv:.4f} above every one of 300 null draws (max {null.max():.4f})"


def test_draw_logprobs_are_untruncated_tempered():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(5, 30)).astype(np.float32)
  mode = SamplingMode(greedy=False, top_k=4, use_top_p=True)
  keys = jax.random.split(jax.random.key(3), 5)
  d = jax.jit(draw, static_argnums=4)(keys, logits, 0.5, 0.7, mode)
  tok = np.asarray(d.tokens)
  z = logits / 0.5
  ref_t = z[np.arange(5), tok] - np.log(np.exp(z).sum(-1))
  ref_1 = logits[np.arange(5), tok] - np.log(np.exp(logits).sum(-1))
  np.testing.assert_allclose(np.asarray(d.logprobs), ref_t, atol=1e-5)
  np.testing.assert_allclose(np.asarray(d.raw_logprobs), ref_1, atol=1e-5)


def test_greedy_draw_is_argmax():
  logits = np.random.default_rng(4).normal(size=(6, 50)).astype(np.float32)
  d = jax.jit(draw, static_argnums=4)(jax.random.split(jax.random.key(0), 6), logits, 0.0, 1.0,
                                      SamplingMode(greedy=True, top_k=0, use_top_p=False))
  np.testing.assert_array_equal(np.asarray(d.tokens), logits.argmax(-1))
  ref = logits.max(-1) - np.log(np.exp(logits).sum(-1))
  np.testing.assert_allclose(np.asarray(d.logprobs), ref, atol=1e-5)


def test_sampling_params_validation():
  with pytest.raises(ValueError, match="temperature"):
    SamplingParams(temperature=-1.0)
  with pytest.raises(ValueError, match="top_p"):
    SamplingParams(top_p=0.0)
  with pytest.raises(ValueError, match="max_new_tokens"):
    SamplingParams(max_new_tokens=0)
  with pytest.raises(TypeError, match="stop_strings"):
    SamplingParams(stop_strings="```")
  with pytest.raises(ValueError, match="stop_strings"):
    SamplingParams(stop_strings=("",))


# -- stop strings ---------------------------------------------------------------------------

def test_tokenizer_makes_mid_token_stops():
  ids = TOK.encode("x```\n")
  assert [TOK.vocab[i] for i in ids] == ["x`", "``", "\n"]
  assert TOK.decode(ids) == "x```\n"


def test_cut_stop_starting_mid_token():
  ids = TOK.encode("ab = 1\nx```\nmore")
  cut = cut_at_stop(TOK, ids, ("```",))
  assert cut.text == "ab = 1\nx"
  kept = ids[:cut.num_tokens]
  assert TOK.vocab[kept[-1]] == "x`"          # the token holding the stop's start is kept
  assert TOK.decode(kept) == "ab = 1\nx`"      # ... and its text is truncated in `text`


def test_cut_stop_spanning_tokens_on_boundary():
  ids = TOK.encode("def f(): ab")  # "def", " ", "f", "()", ":", " ", "ab"
  cut = cut_at_stop(TOK, ids, ("(): a", "zzz"))
  assert cut.text == "def f"
  assert TOK.decode(ids[:cut.num_tokens]) == "def f"


def test_cut_earliest_of_several_and_none():
  ids = TOK.encode("one END two ```")
  assert cut_at_stop(TOK, ids, ("```", "END")).text == "one "
  assert cut_at_stop(TOK, ids, ("nope",)) is None
  assert cut_at_stop(TOK, TOK.encode("```x"), ("```",)) == (0, "")


def test_tokens_covering_is_minimal():
  ids = TOK.encode("the abc return")
  for n_chars in range(len("the abc return") + 1):
    n = tokens_covering(TOK, ids, n_chars)
    assert len(TOK.decode(ids[:n])) >= n_chars
    assert n == 0 or len(TOK.decode(ids[:n - 1])) < n_chars


class SpaceDroppingTokenizer(CharTokenizer):
  """Drops one leading space of a decoded sequence, like SentencePiece decoders do."""

  def decode(self, ids) -> str:
    text = super().decode(ids)
    return text[1:] if text.startswith(" ") else text


def test_detokenize_uses_prompt_context():
  tok = SpaceDroppingTokenizer()
  prompt, gen = tok.encode("x ="), tok.encode(" 1")
  assert tok.decode(gen) == "1"
  assert detokenize(tok, gen, prompt) == " 1"


def _rows(rows, width=8):
  return np.array([r + [0] * (width - len(r)) for r in rows]), np.array([len(r) for r in rows])


def test_stop_watcher_settles_rows():
  ctx = [TOK.encode("p")] * 3
  w = StopWatcher(TOK, ("```",), ctx, eos_ids=(2,))
  rows = [TOK.encode("ab``"), TOK.encode("abc"), TOK.encode("ab") + [2]]
  assert w.update(*_rows(rows), np.array([False, False, True])) == []
  assert w.settled == {2}
  rows[0] += TOK.encode("`x")
  assert w.update(*_rows(rows), np.array([False, False, True])) == [0]
  assert w.cuts[0].text == "ab" and w.settled == {0, 2}


# -- buckets and padding ----------------------------------------------------------------------

def test_round_up_buckets():
  assert [round_up(n, 16, 512) for n in (1, 16, 17, 300, 512, 513, 1100)] == [
      16, 16, 32, 512, 512, 1024, 1536]
  b = Buckets(min_batch=2)
  assert b.batch(3) == 4 and b.batch(3, multiple=8) == 8 and b.batch(9, multiple=4) == 16
  assert b.batch(80) == 80 and b.batch(81) == 96 and b.batch(17) == 32  # steps of 16 above 16
  assert b.compacted_batch(40) == 64 and b.compacted_batch(17, multiple=4) == 32
  assert math.log2(b.prompt_len(100)) == 7


def test_left_pad_and_repad():
  tokens, mask = left_pad([[5, 6], [7, 8, 9]], 4, 3, pad_id=0)
  np.testing.assert_array_equal(tokens, [[0, 0, 5, 6], [0, 7, 8, 9], [0, 0, 0, 0]])
  np.testing.assert_array_equal(mask, [[0, 0, 1, 1], [0, 1, 1, 1], [0, 0, 0, 1]])
  t2, m2 = repad(tokens[:2], mask[:2], 6, 4, pad_id=0)
  assert t2.shape == (4, 6) and m2[:, -1].all()
  np.testing.assert_array_equal(t2[1], [0, 0, 0, 7, 8, 9])
  with pytest.raises(ValueError, match="prompt 1 is empty"):
    left_pad([[1], []], 4, 2, 0)


def test_check_left_padded_names_the_problem():
  with pytest.raises(ValueError, match="LEFT-padded"):
    check_left_padded(np.zeros((2, 3)), np.array([[1, 1, 0], [1, 1, 1]]))
  with pytest.raises(ValueError, match="padding after a real token"):
    check_left_padded(np.zeros((1, 3)), np.array([[1, 0, 1]]))
  with pytest.raises(ValueError, match=r"\[B, P\]"):
    check_left_padded(np.zeros((3,)), np.ones((3,)))
