"""What differs on GPU (docs/gpu.md), checked on CPU by faking the backend string.

The model code's backend-dependent choices: the KV-cache layout ("auto" resolves to "bhsd_kt"
[B, KVH, S, Dh] on CPU and "bshd" [B, S, KVH, Dh] on GPU and TPU; an explicit
`ModelConfig.cache_layout` wins everywhere) and the layer loop (unrolled on CPU, a scan on
GPU/TPU). The GPU mesh presets set the mesh, bf16 and remat.
"""
import dataclasses

import jax
import ml_collections
import numpy as np
import pytest

from restrl_jax import mesh_presets, models, parallel


@pytest.fixture
def tiny():
  return models.get_preset("tiny")


def fake_backend(monkeypatch, name: str) -> None:
  monkeypatch.setattr(jax, "default_backend", lambda: name)


@pytest.mark.parametrize("backend,layout",
                         [("cpu", "bhsd_kt"), ("gpu", "bshd"), ("tpu", "bshd")])
def test_auto_cache_layout_follows_backend(monkeypatch, tiny, backend, layout):
  fake_backend(monkeypatch, backend)
  assert tiny.cache_layout == "auto"
  assert models.resolve_cache_layout(tiny) == layout
  cache = models.init_cache(tiny, batch_size=3, max_len=7)
  seq_first = (tiny.num_layers, 3, 7, tiny.num_kv_heads, tiny.head_dim)      # bshd
  heads_first = (tiny.num_layers, 3, tiny.num_kv_heads, 7, tiny.head_dim)    # bhsd_kt values
  keys_t = (tiny.num_layers, 3, tiny.num_kv_heads, tiny.head_dim, 7)         # bhsd_kt keys
  if layout == "bshd":
    assert cache.k.shape == cache.v.shape == seq_first
  else:
    assert cache.k.shape == keys_t and cache.v.shape == heads_first


@pytest.mark.parametrize("backend", ["cpu", "gpu", "tpu"])
@pytest.mark.parametrize("explicit", ["bhsd", "bhsd_kt", "bshd"])
def test_explicit_cache_layout_wins_on_every_backend(monkeypatch, tiny, backend, explicit):
  fake_backend(monkeypatch, backend)
  config = dataclasses.replace(tiny, cache_layout=explicit)
  assert models.resolve_cache_layout(config) == explicit


def test_bad_cache_layout_is_named(tiny):
  with pytest.raises(ValueError, match="cache_layout"):
    dataclasses.replace(tiny, cache_layout="bsdh")


def test_auto_layout_on_gpu_computes_the_model_logits(monkeypatch, tiny):
  """With the backend reported as "gpu", the auto config's cached forward (bshd cache) gives the
  model's logits; tests/test_models_decoder.py checks both layouts through prefill + decode."""
  fake_backend(monkeypatch, "gpu")
  params = models.init_params(tiny, jax.random.key(0), std=0.5)
  tokens = jax.random.randint(jax.random.key(1), (2, 6), 0, tiny.vocab_size)  # [B, T]
  cache = models.init_cache(tiny, batch_size=2, max_len=8)
  assert cache.k.shape[2] == 8                                                 # seq before heads
  positions = np.broadcast_to(np.arange(6), (2, 6))
  kv_mask = np.ones((2, 8), bool)                                              # [B, S]
  got, cache = models.forward_step(tiny, params, tokens, positions, cache, 0, kv_mask)
  want = models.logits(tiny, params, tokens)                                   # [B, T, V]
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-5, atol=1e-4)
  assert float(np.abs(np.asarray(cache.k[:, :, 6:])).max()) == 0.0             # slots 6, 7 free


@pytest.mark.parametrize("backend,loop", [("cpu", "unroll"), ("gpu", "scan"), ("tpu", "scan")])
def test_auto_layer_loop_follows_backend(monkeypatch, backend, loop):
  resolve = models.decoder.resolve_layer_loop
  fake_backend(monkeypatch, backend)
  assert resolve() == resolve("auto") == loop
  assert resolve("scan") == "scan" and resolve("unroll") == "unroll"   # explicit wins
  for fixed in ("scan", "unroll"):                                     # then the config
    config = models.ModelConfig(layer_loop=fixed)
    assert resolve(config=config) == fixed
    assert resolve("unroll" if fixed == "scan" else "scan", config) != fixed
  with pytest.raises(ValueError, match="layer_loop"):
    resolve("rolled")
  with pytest.raises(ValueError, match="ModelConfig.layer_loop"):
    models.ModelConfig(layer_loop="rolled")


def _pipeline_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({
      "mesh": {"shape": (1, -1, 1), "preset": None}, "model": {"dtype": "float32"},
      "grpo": {"remat": False}, "value": {"remat": False}})


@pytest.mark.parametrize("name,mesh_shape", [("gpu-1", (1, 1, 1)), ("gpu-8", (1, 8, 1))])
def test_gpu_presets_set_mesh_bf16_and_remat(name, mesh_shape):
  config = _pipeline_config()
  config.mesh.preset = name
  hw = mesh_presets.apply(config)
  assert hw.platform == "gpu" and hw.hosts == 1 and hw.devices == int(np.prod(mesh_shape))
  assert tuple(config.mesh.shape) == mesh_shape
  assert config.model.dtype == "bfloat16" and config.grpo.remat and config.value.remat


def test_gpu_preset_device_count_is_checked():
  mesh_presets.check_devices(mesh_presets.get("gpu-8"), 8)
  with pytest.raises(ValueError, match="gpu-1.*expects 1 devices.*JAX sees 8"):
    mesh_presets.check_devices(mesh_presets.get("gpu-1"), 8)


def test_gpu8_mesh_is_fsdp_over_eight_devices():
  mesh = parallel.make_mesh(mesh_presets.get("gpu-8").mesh_shape)
  assert dict(mesh.shape) == {"data": 1, "fsdp": 8, "tensor": 1}


def test_no_preset_keeps_the_config():
  config = _pipeline_config()
  assert mesh_presets.apply(config) is None
  assert tuple(config.mesh.shape) == (1, -1, 1) and config.model.dtype == "float32"
