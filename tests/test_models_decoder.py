"""Decoder behaviour: left padding, cached prefill + decode == full forward, value head, presets."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from restrl_jax import models as M
from restrl_jax import parallel

TINY = dataclasses.replace(M.get_preset("tiny"), vocab_size=97)
LLAMA = M.ModelConfig(
    family="llama", vocab_size=89, hidden_size=48, num_layers=2, num_heads=6, num_kv_heads=2,
    head_dim=8, intermediate_size=64, rope_theta=500.0,
    rope_scaling={"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
                  "high_freq_factor": 4.0, "original_max_position_embeddings": 16})
QWEN3 = M.ModelConfig(
    family="qwen3", vocab_size=83, hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=1,
    head_dim=16, intermediate_size=48, qk_norm=True, tie_word_embeddings=True)


@functools.partial(jax.jit, static_argnums=0)
def _logits(config, params, tokens, mask=None):
  return M.logits(config, params, tokens, mask)


def _params(config, seed=0):
  # larger init than the default so that mistakes show up well above float32 noise
  return M.init_params(config, jax.random.key(seed), std=0.2)


def _left_padded(rng, lengths, width, vocab):
  tokens = np.zeros((len(lengths), width), np.int32)
  mask = np.zeros((len(lengths), width), bool)
  for b, n in enumerate(lengths):
    tokens[b, width - n:] = rng.integers(3, vocab, n)
    mask[b, width - n:] = True
  return jnp.asarray(tokens), jnp.asarray(mask)


@pytest.mark.parametrize("config", [TINY, LLAMA, QWEN3], ids=["qwen2", "llama", "qwen3"])
def test_left_padding_matches_unpadded_rows(config):
  params = _params(config)
  lengths = [6, 2, 4]
  tokens, mask = _left_padded(np.random.default_rng(1), lengths, 6, config.vocab_size)
  batched = np.asarray(_logits(config, params, tokens, mask))
  # reference: the same rows RIGHT-aligned without any mask; causality keeps the trailing
  # junk from influencing the real positions, so row b's first n logits are its unpadded run
  right = jnp.stack([jnp.roll(tokens[b], -(6 - n)) for b, n in enumerate(lengths)])
  alone = np.asarray(_logits(config, params, right))
  for b, n in enumerate(lengths):
    np.testing.assert_allclose(batched[b, 6 - n:], alone[b, :n], atol=1e-4, rtol=1e-4)
  assert np.isfinite(batched).all()


def test_rows_and_positions_matter():
  """Guards against a forward that ignores context: changing an early token changes later logits."""
  params = _params(TINY)
  tokens = jnp.asarray(np.random.default_rng(0).integers(3, 97, (1, 5)), jnp.int32)
  other = tokens.at[0, 0].set((tokens[0, 0] + 1) % 97)
  a, b = _logits(TINY, params, tokens), _logits(TINY, params, other)
  assert np.abs(np.asarray(a[0, -1] - b[0, -1])).max() > 1e-3


def _decode_all(config, params, tokens, mask, prompt_len, capacity):
  """Prefill tokens[:, :prompt_len], then feed the rest one by one through the cache."""
  step = jax.jit(functools.partial(M.forward_step, config), donate_argnums=(3,))
  b = tokens.shape[0]
  positions = jnp.maximum(jnp.cumsum(mask.astype(jnp.int32), axis=1) - 1, 0)
  kv_mask = jnp.zeros((b, capacity), bool).at[:, :prompt_len].set(mask[:, :prompt_len])
  cache = M.init_cache(config, b, capacity)
  out, cache = step(params, tokens[:, :prompt_len], positions[:, :prompt_len], cache,
                    jnp.int32(0), kv_mask)
  outs = [out]
  for t in range(prompt_len, tokens.shape[1]):
    kv_mask = kv_mask.at[:, t].set(True)
    out, cache = step(params, tokens[:, t:t + 1], positions[:, t:t + 1], cache, jnp.int32(t),
                      kv_mask)
    outs.append(out)
  return jnp.concatenate(outs, axis=1), cache


@pytest.mark.parametrize("config,layout", [(TINY, "bhsd"), (TINY, "bshd"), (TINY, "bhsd_kt"),
                                           (LLAMA, "bshd"), (QWEN3, "bhsd"), (QWEN3, "bhsd_kt")],
                         ids=["qwen2-bhsd", "qwen2-bshd", "qwen2-bhsd_kt", "llama-bshd",
                              "qwen3-bhsd", "qwen3-bhsd_kt"])
def test_prefill_and_decode_reproduce_logits(config, layout):
  config = dataclasses.replace(config, cache_layout=layout)
  params = _params(config)
  prompt, pmask = _left_padded(np.random.default_rng(2), [5, 2, 4], 5, config.vocab_size)
  cont = jnp.asarray(np.random.default_rng(3).integers(3, config.vocab_size, (3, 4)), jnp.int32)
  tokens = jnp.concatenate([prompt, cont], axis=1)
  mask = jnp.concatenate([pmask, jnp.ones((3, 4), bool)], axis=1)
  want = _logits(config, params, tokens, mask)
  got, cache = _decode_all(config, params, tokens, mask, prompt_len=5, capacity=12)
  real = np.asarray(mask)
  np.testing.assert_allclose(np.asarray(got)[real], np.asarray(want)[real], atol=1e-4, rtol=1e-4)
  nl, kvh, dh = config.num_layers, config.num_kv_heads, config.head_dim
  k_shape, v_shape = {"bhsd": [(nl, 3, kvh, 12, dh)] * 2, "bshd": [(nl, 3, 12, kvh, dh)] * 2,
                      "bhsd_kt": [(nl, 3, kvh, dh, 12), (nl, 3, kvh, 12, dh)]}[layout]
  assert cache.k.shape == k_shape and cache.v.shape == v_shape
  # slots past the last write stay untouched
  slot_axis = {"bhsd": (3, 3), "bshd": (2, 2), "bhsd_kt": (4, 3)}[layout]
  for x, axis in zip(cache, slot_axis):
    assert not np.asarray(jnp.take(x, np.arange(9, 12), axis=axis)).any()


def test_forward_step_rejects_bad_kv_mask():
  params = _params(TINY)
  cache = M.init_cache(TINY, 2, 8)
  tokens = jnp.zeros((2, 3), jnp.int32)
  with pytest.raises(ValueError, match="kv_mask"):
    M.forward_step(TINY, params, tokens, tokens, cache, 0, jnp.ones((2, 7), bool))


def test_sharded_forward_matches_single_device():
  params = _params(TINY)
  mesh = parallel.make_mesh((2, 2, 2))
  shard = parallel.tree_shardings(M.param_logical_axes(TINY), params, mesh)
  sharded = jax.device_put(params, shard)
  tokens, mask = _left_padded(np.random.default_rng(4), [4, 3, 4, 1], 4, TINY.vocab_size)
  with parallel.sharding_context(mesh):
    out = jax.jit(functools.partial(M.logits, TINY))(sharded, tokens, mask)
    cache = jax.device_put(M.init_cache(TINY, 4, 6), parallel.logical_to_sharding(
        ("layers", "batch", "kv_heads", "cache_seq", "head_dim"), (4, 4, 2, 6, 32), mesh))
    kv_mask = jnp.zeros((4, 6), bool).at[:, :4].set(mask)
    positions = jnp.maximum(jnp.cumsum(mask, axis=1) - 1, 0)
    step, _ = jax.jit(functools.partial(M.forward_step, TINY))(
        sharded, tokens, positions, cache, jnp.int32(0), kv_mask)
  want = _logits(TINY, params, tokens, mask)
  np.testing.assert_allclose(np.asarray(out), np.asarray(want), atol=1e-4, rtol=1e-4)
  real = np.asarray(mask)
  np.testing.assert_allclose(np.asarray(step)[real], np.asarray(want)[real], atol=1e-4, rtol=1e-4)
  assert jax.tree.structure(M.param_logical_axes(TINY), is_leaf=lambda x: isinstance(x, tuple)) \
      == jax.tree.structure(params)


def test_bfloat16_compute_tracks_float32():
  config16 = dataclasses.replace(TINY, dtype="bfloat16", param_dtype="bfloat16")
  params = _params(TINY)
  params16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), params)
  tokens, mask = _left_padded(np.random.default_rng(7), [5, 3], 5, TINY.vocab_size)
  want = np.asarray(_logits(TINY, params, tokens, mask))
  got = _logits(config16, params16, tokens, mask)
  assert got.dtype == jnp.float32
  real = np.asarray(mask)
  err = np.abs(np.asarray(got)[real] - want[real]).max()
  assert err < 0.05 * np.abs(want[real]).max(), err
  # the KV cache: float32 in the CPU layout (a bf16 cache update is a whole-cache f32 round
  # trip there), the compute dtype in a layout set for TPU/GPU
  assert M.init_cache(config16, 2, 4).k.dtype == jnp.float32
  tpu16 = dataclasses.replace(config16, cache_layout="bshd")
  assert M.init_cache(tpu16, 2, 4).k.dtype == jnp.bfloat16
  assert M.init_cache(config16, 2, 4, dtype=jnp.bfloat16).k.dtype == jnp.bfloat16
  assert M.init_cache(TINY, 2, 4).k.dtype == jnp.float32


def test_bfloat16_decode_through_float32_cache_matches_forward():
  """forward_step over a float32 cache with bf16 compute tracks the float32 logits as closely
  as the bf16 full forward does (the same bound as above)."""
  config16 = dataclasses.replace(TINY, dtype="bfloat16", param_dtype="bfloat16")
  params = _params(TINY)
  params16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), params)
  tokens = jnp.asarray(np.random.default_rng(8).integers(3, TINY.vocab_size, (2, 6)), jnp.int32)
  want = np.asarray(_logits(TINY, params, tokens, jnp.ones_like(tokens, bool)))
  cache = M.init_cache(config16, 2, 6)
  kv_mask = jnp.ones((2, 6), bool)
  positions = jnp.broadcast_to(jnp.arange(6, dtype=jnp.int32), (2, 6))
  step = jax.jit(functools.partial(M.forward_step, config16))
  got = []
  for i in range(6):
    logits, cache = step(params16, tokens[:, i:i + 1], positions[:, i:i + 1], cache,
                         jnp.int32(i), kv_mask)
    got.append(np.asarray(logits[:, 0]))
  assert cache.k.dtype == jnp.float32
  err = np.abs(np.stack(got, 1) - want).max()
  assert err < 0.05 * np.abs(want).max(), err


def test_value_head_reads_last_real_token_and_has_gradients():
  params = _params(TINY)
  head = M.init_value_head(TINY, jax.random.key(5))
  tokens, mask = _left_padded(np.random.default_rng(6), [5, 2, 3], 5, TINY.vocab_size)
  values = jax.jit(functools.partial(M.values, TINY))
  got = values(params, head, tokens, mask)
  h = jax.jit(functools.partial(M.hidden_states, TINY))(params, tokens, mask)
  want = np.asarray(h[:, -1] @ head["kernel"])[:, 0]
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)
  # right padding: the last real token is not the last column
  shifts = [0, 3, 2]  # = number of pads per row
  rtokens = jnp.stack([jnp.roll(tokens[b], -k) for b, k in enumerate(shifts)])
  rmask = jnp.stack([jnp.roll(mask[b], -k) for b, k in enumerate(shifts)])
  np.testing.assert_array_equal(np.asarray(M.last_real_index(rmask)), [4, 1, 2])
  np.testing.assert_allclose(values(params, head, rtokens, rmask), got, atol=1e-5)
  vparams = {"backbone": params, "head": head}
  target = jnp.asarray([0.5, -0.5, 1.0])

  def loss(vp):
    return jnp.mean((M.value_from(TINY, vp, tokens, mask, remat=True) - target) ** 2)

  grads = jax.jit(jax.grad(loss))(vparams)
  for part in ("backbone", "head"):
    norms = [float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads[part])]
    assert all(np.isfinite(norms)) and sum(norms) > 0, part
  assert float(jnp.abs(grads["backbone"]["layers"]["mlp"]["down"]["kernel"]).sum()) > 0


KNOWN_SIZES = {
    "qwen2.5-coder-7b-instruct": 7.62e9,
    "deepseek-coder-6.7b-instruct": 6.74e9,
    "llama-3-8b": 8.03e9,
    "qwen3-8b": 8.19e9,
}


@pytest.mark.parametrize("name", sorted(KNOWN_SIZES))
def test_preset_parameter_counts(name):
  config = M.get_preset(name)
  shapes = jax.eval_shape(functools.partial(M.init_params, config), jax.random.key(0))
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))
  assert abs(count - KNOWN_SIZES[name]) / KNOWN_SIZES[name] < 0.02, count


@pytest.mark.parametrize("name", sorted(M.PRESETS))
def test_preset_hf_config_round_trip(name):
  config = M.get_preset(name)
  back = M.ModelConfig.from_hf_config(config.to_hf_config(), dtype=config.dtype,
                                      param_dtype=config.param_dtype)
  assert back == config
  assert hash(back) == hash(config)


def test_tiny_preset_size_and_errors():
  count = sum(x.size for x in jax.tree.leaves(M.init_params(M.get_preset("tiny"),
                                                            jax.random.key(0))))
  assert 0.8e6 < count < 1.3e6
  with pytest.raises(KeyError, match="nope"):
    M.get_preset("nope")
  with pytest.raises(ValueError, match="num_kv_heads"):
    M.ModelConfig(num_heads=4, num_kv_heads=3)
  with pytest.raises(ValueError, match="rope_type"):
    M.ModelConfig(rope_scaling={"rope_type": "weird", "factor": 2.0})
  with pytest.raises(ValueError, match="attention_bias"):
    M.ModelConfig(family="qwen2", attention_bias=False)
  with pytest.raises(ValueError, match="family"):
    M.ModelConfig(family="gpt2")
