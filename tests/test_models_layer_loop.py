"""The CPU speed paths of the decoder agree with the reference paths.

- "unroll" (the layer scan fully unrolled) == "scan" (a rolled lax.scan), for the full forward,
  its gradient, and the cached step; decode-form params (per-layer weights, a Python loop) give
  the same cached step with a stacked or a per-layer KV cache;
- `grouped_attention`'s hand-written gradient == autodiff of a plain masked-softmax attention
  (incl. fully masked query rows from left padding), float32 and bfloat16;
- the decode loop on unstacked weights/cache gives the same tokens as on stacked ones;
- decode params with transposed kernels (`decode_form.decode_params`) give the same cached step.
"""
import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from restrl_jax import models as M
from restrl_jax.models import decode_form, decoder, kv_cache, layers
from restrl_jax.sampling import token_loop
from restrl_jax.sampling.transforms import SamplingMode

TINY = dataclasses.replace(M.get_preset("tiny"), vocab_size=97, num_layers=2)


def _params(config=TINY):
  return M.init_params(config, jax.random.key(0), std=0.2)


def _batch(rng, b=3, t=6):
  tokens = jnp.asarray(rng.integers(3, TINY.vocab_size, (b, t)), jnp.int32)
  mask = np.ones((b, t), bool)
  mask[0, :2] = False  # left padding
  return tokens, jnp.asarray(mask)


def test_unroll_and_scan_forward_and_gradient_agree():
  params = _params()
  tokens, mask = _batch(np.random.default_rng(0))

  def loss(p, loop):
    out = M.logits(TINY, p, tokens, mask, layer_loop=loop)
    return (out[mask] ** 2).mean()

  vals = {}
  for loop in ("scan", "unroll"):
    vals[loop] = jax.jit(jax.value_and_grad(functools.partial(loss, loop=loop)))(params)
  np.testing.assert_allclose(vals["unroll"][0], vals["scan"][0], rtol=1e-5)
  flat_s, flat_u = jax.tree.leaves(vals["scan"][1]), jax.tree.leaves(vals["unroll"][1])
  assert [g.shape for g in flat_s] == [g.shape for g in flat_u]  # grads stay stacked [L, ...]
  for gs, gu in zip(flat_s, flat_u):
    np.testing.assert_allclose(gu, gs, atol=1e-5 * float(np.abs(gs).max()) + 1e-7)
  assert M.resolve_cache_layout(TINY) == "bhsd_kt" and decoder.resolve_layer_loop() == "unroll"


def test_unstacked_params_and_cache_step():
  params = _params()
  tokens, mask = _batch(np.random.default_rng(1), t=5)
  want = np.asarray(M.logits(TINY, params, tokens, mask, layer_loop="scan"))
  positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0)
  kv_mask = jnp.zeros((3, 8), bool).at[:, :5].set(mask)
  stacked = M.init_cache(TINY, 3, 8)
  runs = {
      "scan": (params, stacked, "scan"),
      "unroll, stacked cache": (params, stacked, "unroll"),
      "decode form, stacked cache": (decode_form.unstack_layers(params), stacked, "auto"),
      "decode form, per-layer cache": (decode_form.unstack_layers(params),
                                       kv_cache.unstack_cache(stacked), "auto"),
  }
  step = jax.jit(functools.partial(M.forward_step, TINY), static_argnames="layer_loop")
  caches = {}
  for name, (p, cache, loop) in runs.items():
    out, caches[name] = step(p, tokens, positions, cache, jnp.int32(0), kv_mask, layer_loop=loop)
    np.testing.assert_allclose(np.asarray(out)[np.asarray(mask)], want[np.asarray(mask)],
                               atol=1e-4, rtol=1e-4, err_msg=name)
  assert isinstance(caches["decode form, per-layer cache"].k, tuple)
  for name in ("unroll, stacked cache", "decode form, stacked cache"):
    assert caches[name].k.shape == stacked.k.shape, name
    np.testing.assert_allclose(caches[name].k, caches["scan"].k, atol=1e-5, err_msg=name)
  restacked = kv_cache.stack_cache(caches["decode form, per-layer cache"])
  np.testing.assert_allclose(restacked.k, caches["scan"].k, atol=1e-5)
  np.testing.assert_allclose(restacked.v, caches["scan"].v, atol=1e-5)
  shapes = jax.eval_shape(decode_form.unstack_layers, params)
  with pytest.raises(ValueError, match="layer_loop='scan' needs stacked"):
    jax.eval_shape(functools.partial(M.logits, TINY, layer_loop="scan"), shapes, tokens, mask)
  with pytest.raises(ValueError, match="layer_loop must be one of"):
    jax.eval_shape(functools.partial(M.logits, TINY, layer_loop="loop"), params, tokens, mask)


def _reference_attention(q, k, v, mask):
  """Plain GQA: repeat k/v over the query groups, masked softmax, autodiff gradient."""
  b, t, h, dh = q.shape
  rep = h // k.shape[1]
  k = jnp.repeat(k.astype(jnp.float32), rep, axis=1)  # [B, H, S, Dh]
  v = jnp.repeat(v.astype(jnp.float32), rep, axis=1)
  scores = jnp.einsum("bthd,bhsd->bhts", q.astype(jnp.float32), k) / math.sqrt(dh)
  scores = jnp.where(mask[:, None], scores, layers.MASK_VALUE)
  return jnp.einsum("bhts,bhsd->bthd", jax.nn.softmax(scores, axis=-1), v)


@pytest.mark.parametrize("block_rows", [None, 2, 3])   # None: causal=False, one block
@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 2e-5), (jnp.bfloat16, 3e-2)])
def test_grouped_attention_gradient_matches_autodiff(dtype, tol, block_rows, monkeypatch):
  """Also with causal query blocks (7 rows in blocks of 2 or 3: 3 or 2 uneven blocks), over
  left-padded rows whose keys are all masked (batch row 0, queries 0-2)."""
  if block_rows:
    monkeypatch.setattr(layers, "CAUSAL_BLOCK_ROWS", block_rows)
    assert layers.causal_blocks(7, 7) == 7 // block_rows and layers.causal_blocks(7, 9) == 1
  b, t, h, kvh, dh = 3, 7, 6, 2, 8
  rng = np.random.default_rng(2)
  q, k, v = (jnp.asarray(rng.normal(size=shape), dtype)
             for shape in ((b, t, h, dh), (b, kvh, t, dh), (b, kvh, t, dh)))
  weights = jnp.asarray(rng.normal(size=(b, t, h, dh)), jnp.float32)
  mask = jnp.broadcast_to(jnp.tril(jnp.ones((t, t), bool)), (b, t, t)).at[0, :, :3].set(False)

  def loss(fn, *args):
    return (fn(*args, mask).astype(jnp.float32) * weights).sum()

  causal = block_rows is not None
  ours = jax.jit(jax.grad(functools.partial(loss, lambda *a: layers.attend(*a, "bhsd", causal)),
                          argnums=(0, 1, 2)))(q, k, v)
  ref = jax.jit(jax.grad(functools.partial(loss, _reference_attention), argnums=(0, 1, 2)))(
      q.astype(jnp.float32), k.astype(jnp.float32), v.astype(jnp.float32))
  for name, g, r in zip("qkv", ours, ref):
    assert g.dtype == dtype, name
    scale = float(jnp.abs(r).max())
    err = float(jnp.abs(g.astype(jnp.float32) - r).max())
    assert err <= tol * scale, (name, err, scale)
  out = jax.jit(functools.partial(layers.attend, layout="bhsd", causal=causal))(q, k, v, mask)
  want = jax.jit(_reference_attention)(q, k, v, mask)
  np.testing.assert_allclose(out.astype(jnp.float32), want, atol=4 * tol, rtol=4 * tol)


def test_decode_loop_same_tokens_stacked_or_unstacked():
  config = dataclasses.replace(TINY, eos_token_id=None)
  params = M.init_params(config, jax.random.key(3))
  tokens, mask = _batch(np.random.default_rng(4), b=2, t=4)
  b = tokens.shape[0]

  def run(p):
    state = token_loop.prefill(config, p, tokens, mask, jnp.zeros((b,), bool),
                           jnp.arange(b, dtype=jnp.int32), jax.random.key(5), jnp.float32(1.0),
                           jnp.float32(1.0), jnp.int32(6), jnp.full((4,), -1, jnp.int32),
                           num_new=6, pad_id=0)
    state = token_loop.decode_chunk(config, p, state, jnp.int32(6),
                                mode=SamplingMode(False, 0, False), pad_id=0)
    return state.tokens, state.logprobs

  got = jax.jit(run)(decode_form.unstack_layers(params))
  want = jax.jit(run)(params)
  np.testing.assert_array_equal(got[0], want[0])
  np.testing.assert_allclose(got[1], want[1], atol=1e-5)
  assert (np.asarray(got[0]) > 0).all()


@pytest.mark.parametrize("overrides", [{}, {"tie_word_embeddings": True},
                                       {"family": "qwen3", "qk_norm": True, "attention_bias": False}],
                         ids=["qwen2-untied", "tied", "qwen3-style"])
def test_decode_params_transposed_kernels_give_the_same_step(overrides):
  """`decode_form.decode_params` (per-layer, kernels stored [N, K] as `kernel_t`) computes the same
  cached step as the stacked params, and holds every weight exactly once, transposed."""
  config = dataclasses.replace(TINY, **overrides)
  params = _params(config)
  untouched = decode_form.decode_params(params)  # the tiny kernels stay as they are by default
  assert all("kernel" in untouched["layers_0"][b][n] for b, n in decode_form.PROJECTIONS)
  prepared = decode_form.decode_params(params, min_elements=0)
  assert "layers" not in prepared and decode_form.num_layers(prepared) == config.num_layers
  layer0 = prepared["layers_0"]
  assert "kernel" not in layer0["mlp"]["gate"] and "kernel" not in layer0["attn"]["o"]
  np.testing.assert_array_equal(layer0["attn"]["o"]["kernel_t"],
                                params["layers"]["attn"]["o"]["kernel"][0].reshape(-1, 128).T)
  assert ("lm_head" in prepared) == (not config.tie_word_embeddings)
  tokens, mask = _batch(np.random.default_rng(4))
  positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0)

  def step(p):
    cache = M.init_cache(config, 3, 8)
    kv_mask = jnp.zeros((3, 8), bool).at[:, :6].set(mask)
    return M.forward_step(config, p, tokens, positions, cache, jnp.int32(0), kv_mask)

  (want, want_cache), (got, got_cache) = jax.jit(step)(params), jax.jit(step)(prepared)
  np.testing.assert_allclose(np.asarray(got)[np.asarray(mask)], np.asarray(want)[np.asarray(mask)],
                             atol=1e-5, rtol=1e-5)
  np.testing.assert_allclose(kv_cache.stack_cache(got_cache).k, want_cache.k, atol=1e-5)
