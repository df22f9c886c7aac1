"""`models.matmul.linear`: the projections' matmul, and its low-precision gradient by hand.

- float32: exactly `x @ w` (+ bias), both kernel layouts;
- bf16: the product of the bf16-rounded operands accumulated in float32; the gradients are the
  float64 products of the rounded operands with the cotangent rounded to bf16 (what the
  hand-written VJP promises), in the dtypes of the inputs (fp32 master params get fp32 grads);
  the wide LM-head table's gradients and a row-sharded call agree too;
- a whole model: bf16-compute gradients of the SFT loss (tied and untied LM head, odd token
  count) track the float32 ones, and compile and run on XLA:CPU (some transposed bf16 dots
  fail there at run time: "Unsupported element type for DotThunk::Execute").
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from restrl_jax import models as M
from restrl_jax.models import matmul
from restrl_jax.parallel import make_mesh
from restrl_jax.training import sft_loss


def _round(a, dtype="bfloat16") -> np.ndarray:
  return np.asarray(jnp.asarray(a).astype(dtype).astype(jnp.float32), np.float64)


def _operands(m, k, n, seed=0):
  keys = jax.random.split(jax.random.key(seed), 4)
  x = jax.random.normal(keys[0], (m, k))
  w = jax.random.normal(keys[1], (k, n)) / np.sqrt(k)
  b = jax.random.normal(keys[2], (n,))
  g = jax.random.normal(keys[3], (m, n))
  return x, w, b, g


def _as_layout(w, layout):
  return w if layout == "kn" else w.T


@pytest.mark.parametrize("layout", ["kn", "nk"])
def test_float32_is_the_plain_product(layout):
  x, w, b, _ = _operands(6, 5, 4)
  got = matmul.linear(x, _as_layout(w, layout), "float32", layout, bias=b)
  np.testing.assert_array_equal(np.asarray(got), np.asarray(x @ w + b))
  assert got.dtype == jnp.float32


@pytest.mark.parametrize("layout", ["kn", "nk"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_bf16_forward_and_gradients_match_the_rounded_float64_products(layout, with_bias):
  m, k, n = 33, 24, 20  # odd row count
  x, w, b, g = _operands(m, k, n, seed=1)
  bias = b if with_bias else None

  def f(x, w, b):
    return matmul.linear(x, _as_layout(w, layout), "bfloat16", layout, out_dtype=jnp.float32,
                         bias=b)

  y, vjp = jax.vjp(f, x, w, bias)
  dx, dw, db = vjp(g)
  x64, w64, g64 = _round(x), _round(w), _round(g)
  want_y = x64 @ w64 + (np.asarray(b, np.float64) if with_bias else 0)
  np.testing.assert_allclose(np.asarray(y), want_y, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(dx), g64 @ w64.T, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(dw), x64.T @ g64, rtol=1e-5, atol=1e-5)
  assert dx.dtype == dw.dtype == jnp.float32  # float32 inputs: float32 gradients
  if with_bias:
    # the bias gradient: the float32 sum of the cotangent as it came (not rounded to bf16)
    np.testing.assert_allclose(np.asarray(db), np.asarray(g, np.float64).sum(0), rtol=1e-5,
                               atol=1e-5)
    assert db.dtype == jnp.float32
  # bf16 output: the float32 product rounded once
  y16 = matmul.linear(x, _as_layout(w, layout), "bfloat16", layout, bias=bias)
  assert y16.dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(y16), np.asarray(y.astype(jnp.bfloat16)))


def test_bf16_gradients_come_back_in_each_inputs_dtype():
  x, w, _, g = _operands(8, 16, 12, seed=2)
  x16, w16 = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)
  _, vjp = jax.vjp(lambda a, b: matmul.linear(a, b, "bfloat16"), x16, w)
  dx, dw = vjp(g.astype(jnp.bfloat16))
  assert dx.dtype == jnp.bfloat16 and dw.dtype == jnp.float32
  _, vjp = jax.vjp(lambda a, b: matmul.linear(a, b, "bfloat16"), x, w16)
  dx, dw = vjp(g.astype(jnp.bfloat16))
  assert dx.dtype == jnp.float32 and dw.dtype == jnp.bfloat16


def test_wide_table_gradients():
  """The LM head's shape: a [V, D] table with V >> D ("nk"), dW computed as (x^T g)^T."""
  m, d, vocab = 5, 16, 20000
  x, table, _, g = _operands(m, d, vocab, seed=3)  # table [D, V] -> used as [V, D]
  f = lambda x, t: matmul.linear(x, t, "bfloat16", "nk", out_dtype=jnp.float32)
  dx, dt = jax.jit(lambda x, t: jax.vjp(f, x, t)[1](g))(x, table.T)
  g64, t64, x64 = _round(g), _round(table.T), _round(x)
  np.testing.assert_allclose(np.asarray(dx), g64 @ t64, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(np.asarray(dt), g64.T @ x64, rtol=1e-4, atol=1e-4)


def test_row_sharded_call_matches_unsharded():
  mesh = make_mesh((8, 1, 1))
  x, w, b, g = _operands(64, 24, 16, seed=4)
  loss = lambda x, w, b: jnp.sum(matmul.linear(x, w, "bfloat16", bias=b, out_dtype=jnp.float32)
                                 * g)
  grads = jax.jit(jax.grad(loss, (0, 1, 2)))
  want = grads(x, w, b)
  xs = jax.device_put(x, NamedSharding(mesh, P("data", None)))
  got = grads(xs, w, b)
  for a, c in zip(got, want):
    np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=1e-5, atol=1e-5)


def _cosine(a, b) -> float:
  a, b = np.ravel(np.asarray(a, np.float64)), np.ravel(np.asarray(b, np.float64))
  return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


@pytest.mark.parametrize("tied", [True, False])
def test_bf16_model_gradients_track_float32(tied):
  config = dataclasses.replace(M.get_preset("tiny"), vocab_size=97, num_layers=2,
                               tie_word_embeddings=tied)
  params = M.init_params(config, jax.random.key(0), std=0.2)
  rng = np.random.default_rng(5)
  tokens = jnp.asarray(rng.integers(3, config.vocab_size, (3, 7)), jnp.int32)  # 3 x 6 targets
  batch = dict(tokens=tokens, attention_mask=jnp.ones_like(tokens),
               loss_mask=jnp.ones_like(tokens))
  grad = lambda c: jax.jit(jax.grad(lambda p: sft_loss(c, p, batch)[0]))(params)
  want = grad(config)
  got = grad(dataclasses.replace(config, dtype="bfloat16"))  # fp32 params, bf16 matmuls
  for (path, a), c in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
    name = jax.tree_util.keystr(path)
    assert a.dtype == jnp.float32, name
    assert np.isfinite(np.asarray(a)).all(), name
    if np.linalg.norm(np.asarray(c)) > 1e-6:
      assert _cosine(a, c) > 0.99, (name, _cosine(a, c))
