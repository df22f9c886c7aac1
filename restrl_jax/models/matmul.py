"""The decoder's projections as one 2-D matmul each, in the config's compute dtype.

float32 compute is a plain `x @ w` (JAX's own gradient). Low-precision compute (bfloat16,
float16) casts both operands to the compute dtype, accumulates in float32
(`preferred_element_type`) and rounds the product to `out_dtype`, with a hand-written gradient:
the cotangent is cast to the compute dtype and both gradient matmuls accumulate in float32 too;
the kernel's gradient is returned in the kernel's own dtype, so float32 parameters under bf16
compute get it straight from the float32 accumulator.

Why by hand, on CPU: XLA:CPU runs a bf16 x bf16 -> f32 dot on its library kernels (YNNPACK;
AMX on this machine's Xeon) only when the left operand is [M, K] row-major (XLA's
`ynn_support.cc`, `IsDotSupportedByYnn`); any other bf16 dot is upcast to float32 first, and
one with a bf16 result does not reach them either. JAX's autodiff gives the weight gradient as
a dot contracting the rows of both operands (x^T dy), which XLA upcasts. Here the left operand
is transposed explicitly, reshaped through a unit axis behind an optimisation barrier (a bare
transpose reaches XLA with a column-major layout and is upcast anyway), so the dot sees a
row-major [K, M] operand (`rows_to_columns`). On TPU/GPU the plain contraction is used.
`bench/matmul.py` times one projection's forward + backward this way against the same product
written plainly in JAX (the bf16 matmul peak rows of docs/benchmarks.md).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

LOW_PRECISION = ("bfloat16", "float16")  # also what `master_weights.for_dtype` wraps
LAYOUTS = ("kn", "nk")  # kernel [K, N] (x @ w) or [N, K] (x @ w.T)


def is_low_precision_dtype(dtype) -> bool:
  return np.dtype(dtype).name in LOW_PRECISION


def linear(x: jax.Array, w: jax.Array, dtype, layout: str = "kn", out_dtype=None,
           bias: jax.Array | None = None) -> jax.Array:
  """x [M, K] times the kernel w ([K, N] for layout "kn", [N, K] for "nk"), plus `bias` [N] if
  given -> [M, N] in `out_dtype` (default: `dtype`), computed in `dtype`. In low precision the
  bias is added to the float32 accumulator, so its gradient is a float32 sum."""
  if layout not in LAYOUTS:
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
  dtype = np.dtype(dtype)
  out_dtype = np.dtype(out_dtype or dtype)
  if not is_low_precision_dtype(dtype):
    spec = "mk,kn->mn" if layout == "kn" else "mk,nk->mn"
    y = jnp.einsum(spec, x.astype(dtype), w.astype(dtype),
                   preferred_element_type=out_dtype if out_dtype != dtype else None)
    if bias is not None:
      y = y + bias.astype(dtype)
    return y.astype(out_dtype)
  return _low_precision_linear(x, w, bias, dtype.name, layout, out_dtype.name)


def _contract(a: jax.Array, b: jax.Array, a_dim: int, b_dim: int) -> jax.Array:
  """a, b 2-D, contracting a's `a_dim` with b's `b_dim`; float32 accumulation."""
  return jax.lax.dot_general(a, b, (((a_dim,), (b_dim,)), ((), ())),
                             preferred_element_type=jnp.float32)


def rows_to_columns(a: jax.Array) -> jax.Array:
  """a [..., M, K] -> [..., K, M] (the last two axes swapped), materialised row-major on CPU
  (see the module docstring)."""
  a_t = jnp.swapaxes(a, -1, -2)
  if jax.default_backend() != "cpu":
    return a_t
  unit = a_t.reshape(*a_t.shape[:-2], 1, *a_t.shape[-2:])
  return jax.lax.optimization_barrier(unit).reshape(a_t.shape)


def _contract_rows(a: jax.Array, b: jax.Array) -> jax.Array:
  """a [M, K], b [M, N] -> a^T b [K, N], float32 accumulation."""
  if jax.default_backend() != "cpu":
    return _contract(a, b, 0, 0)
  return _contract(rows_to_columns(a), b, 1, 0)


def _contract_rows_transposed(a: jax.Array, b: jax.Array) -> jax.Array:
  """a [M, N], b [M, K] -> a^T b [N, K] computed as (b^T a)^T: on CPU this transposes b and the
  float32 result instead of a, fewer elements when a is the wide one (the LM head's [M, V]
  cotangent). The barrier keeps XLA from folding the result's transpose into the dot, which
  it then no longer runs on the library kernel (and fails on: "Unsupported element type for
  DotThunk::Execute: BF16 x BF16 = F32")."""
  if jax.default_backend() != "cpu":
    return _contract(a, b, 0, 0)
  return jax.lax.optimization_barrier(_contract_rows(b, a)).T


def _forward(x, w, dtype, layout):
  xl, wl = x.astype(dtype), w.astype(dtype)
  return _contract(xl, wl, 1, 0 if layout == "kn" else 1), (xl, wl)  # [M, N] f32


def _input_grads(dtype, layout, xl, wl, g):
  """(dx [M, K], dw) float32 for the float32 cotangent g [M, N] of x @ w."""
  g = g.astype(dtype)
  if layout == "kn":  # w [K, N]
    return _contract(g, wl, 1, 1), _contract_rows(xl, g)
  return _contract(g, wl, 1, 0), _contract_rows_transposed(g, xl)  # w [N, K]


def _dtype_of(x) -> jax.Array | None:
  """A zero-size stand-in carrying x's dtype (custom_vjp residuals must be arrays)."""
  return None if x is None else jnp.zeros((0,), x.dtype)


def _affine(x, w, bias, dtype, layout, out_dtype):
  y, low = _forward(x, w, dtype, layout)
  if bias is not None:
    y = y + bias.astype(jnp.float32)
  return y.astype(out_dtype), low


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _low_precision_linear(x, w, bias, dtype, layout, out_dtype):
  """x @ w (+ bias) in low precision; `bias` may be None."""
  return _affine(x, w, bias, dtype, layout, out_dtype)[0]


def _linear_fwd(x, w, bias, dtype, layout, out_dtype):
  y, (xl, wl) = _affine(x, w, bias, dtype, layout, out_dtype)
  return y, (xl, wl, _dtype_of(x), _dtype_of(w), _dtype_of(bias))


def _linear_bwd(dtype, layout, out_dtype, res, g):
  xl, wl, x_like, w_like, b_like = res
  dx, dw = _input_grads(dtype, layout, xl, wl, g)
  db = None if b_like is None else jnp.sum(g.astype(jnp.float32), axis=0).astype(b_like.dtype)
  return dx.astype(x_like.dtype), dw.astype(w_like.dtype), db


_low_precision_linear.defvjp(_linear_fwd, _linear_bwd)
