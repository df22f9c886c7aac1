"""Memory plan: parameter counts vs the published models, analytic bytes vs XLA's compiled memory
analysis of the sharded train and sample steps (abstract shapes, true width, 2 layers)."""
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from restrl_jax import memory_plan as mp
from restrl_jax import mesh_presets, models, parallel

# Hugging Face model cards / safetensors index totals
PUBLISHED_PARAMS = {"qwen2.5-coder-7b-instruct": 7_615_616_512, "qwen3-8b": 8_190_735_360}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_param_count_matches_published_and_eval_shape(name):
  config = models.get_preset(name)
  shapes = jax.eval_shape(lambda k: models.init_params(config, k), jax.random.key(0))
  assert sum(math.prod(x.shape) for x in jax.tree.leaves(shapes)) == PUBLISHED_PARAMS[name]
  assert mp.param_elements(config) == PUBLISHED_PARAMS[name]


def test_per_device_elements_follow_sharding_rules():
  config = models.get_preset("qwen2.5-coder-7b-instruct")
  total = mp.param_elements(config)
  # pure FSDP over 4: every weight has the embed dim (3584, divisible); only the biases [L, H, Dh]
  # and q/k norms have none and stay replicated
  biases = 28 * (28 + 4 + 4) * 128
  assert mp.param_elements(config, mp.abstract_mesh((1, 4, 1))) == (total - biases) // 4 + biases
  # (1, 4, 4): biases only over tensor, norm scales [L, D] and [D] only over fsdp
  norms = 2 * 28 * 3584 + 3584
  rest = total - biases - norms
  assert mp.param_elements(config, mp.abstract_mesh((1, 4, 4))) == (
      rest // 16 + biases // 4 + norms // 4)


def test_plan_rows_and_fit_on_presets():
  config = models.get_preset("qwen3-8b")
  v5p = mp.analytic_plan(config, mesh_presets.get("v5p-8").mesh_shape)
  v5e = mp.analytic_plan(config, mesh_presets.get("v5e-16").mesh_shape)
  n = PUBLISHED_PARAMS["qwen3-8b"]
  assert v5p["Adam mu + nu (fp32)"] == pytest.approx(8 * n / 4, rel=1e-3)
  assert v5e["fp32 master copy"] == pytest.approx(4 * n / 16, rel=1e-3)
  assert v5p[mp.TRAIN_PEAK] < mesh_presets.get("v5p-8").hbm_bytes
  # a v5e chip (16 GiB) cannot take the paper's 16 x 2048 batch in one step; 4 sequences fit
  assert v5e[mp.TRAIN_PEAK] > mesh_presets.get("v5e-16").hbm_bytes
  small = mp.analytic_plan(config, (1, 4, 4), mp.Workload(train_batch=4))
  assert small[mp.TRAIN_PEAK] < mesh_presets.get("v5e-16").hbm_bytes


def test_fp32_master_keeps_tiny_updates_that_bf16_loses():
  params = {"w": jnp.full((64,), 0.02, jnp.bfloat16)}
  grads = {"w": jnp.ones((64,), jnp.bfloat16)}
  plain = optax.adam(1e-7)
  lost = optax.apply_updates(params, plain.update(grads, plain.init(params), params)[0])
  assert bool(jnp.all(lost["w"] == params["w"]))             # the bf16-only step vanishes
  opt = mp.fp32_master(optax.adam(1e-7))
  state = opt.init(params)
  for _ in range(1000):                                       # 1000 steps of -1e-7 each
    updates, state = opt.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  start = float(jnp.bfloat16(0.02))
  moved = start - np.asarray(state.master["w"], np.float64)
  np.testing.assert_allclose(moved, 1e-4, rtol=0.01)           # fp32 rounding of 1e-7 steps
  assert params["w"].dtype == jnp.bfloat16
  np.testing.assert_array_equal(np.asarray(params["w"]),
                                np.asarray(state.master["w"].astype(jnp.bfloat16)))


def _check(got: mp.Compiled, want: tuple[int, int], temp_band=(0.6, 1.6)):
  arg, temp = want
  assert got.argument == pytest.approx(arg, rel=0.01)   # state + batch: exact up to scalars
  assert temp_band[0] * temp <= got.temp <= temp_band[1] * temp, (got.temp, temp)


def test_compiled_train_step_matches_plan_qwen25_v5p8():
  """The sharded train step of Qwen2.5-Coder-7B (true width, 2 layers) on the v5p-8 mesh."""
  hw = mesh_presets.get("v5p-8")
  config = dataclasses.replace(models.get_preset("qwen2.5-coder-7b-instruct"), num_layers=2)
  wl = mp.Workload(train_batch=8, train_len=1024)
  shape, wl = mp.simulated_setup(hw, wl, jax.devices())
  assert shape == hw.mesh_shape                               # 4 devices: the real mesh
  mesh = parallel.make_mesh(shape, jax.devices()[:4])
  got = mp.compile_train_step(mp.plan_config(config), mesh, wl)
  _check(got, mp.expected_compiled(config, shape, wl)["train"])
  assert got.alias == pytest.approx(got.argument, rel=0.01)    # the state is donated


def test_compiled_train_step_extrapolates_to_full_depth():
  """2- and 3-layer compiles of the 7B train step, extrapolated to its 28 layers, against the
  28-layer plan: the per-layer growth is that of one rematerialised scan step (an unrolled
  loop, the CPU default, grows ~6x faster per layer and fails this)."""
  base = models.get_preset("qwen2.5-coder-7b-instruct")
  wl = mp.Workload(train_batch=4, train_len=1024)
  mesh = parallel.make_mesh((1, 4, 1), jax.devices()[:4])
  two, three = (mp.compile_train_step(mp.plan_config(dataclasses.replace(base, num_layers=n)),
                                      mesh, wl) for n in (2, 3))
  full = mp.extrapolate(two, three, 2, base.num_layers)
  _check(full, mp.expected_compiled(base, (1, 4, 1), wl)["train"])


def test_compiled_sample_step_matches_plan_qwen3_v5e16():
  """The sample step of Qwen3-8B (true width, 2 layers) for v5e-16, simulated on 8 devices."""
  hw = mesh_presets.get("v5e-16")
  config = mp.plan_config(dataclasses.replace(models.get_preset("qwen3-8b"), num_layers=2))
  shape, wl = mp.simulated_setup(hw, mp.Workload(sample_batch=16, prompt_len=256, new_tokens=256),
                                 jax.devices())
  assert shape == (1, 2, 4) and wl.sample_batch == 8          # same per-device batch as on 16
  mesh = parallel.make_mesh(shape, jax.devices()[:8])
  got = mp.compile_sample_step(config, mesh, wl)
  _check(got, mp.expected_compiled(config, shape, wl)["sample"])


def test_cli_prints_plan(capsys):
  mp.main(["--model", "qwen2.5-coder-7b-instruct", "--hardware", "v5e-16"])
  out = capsys.readouterr().out
  assert "mesh (data, fsdp, tensor) = (1, 4, 4)" in out
  assert "fits: train step" in out and "KV cache (sampling)" in out


def test_unknown_hardware_is_named():
  with pytest.raises(KeyError, match="v9z-8"):
    mesh_presets.get("v9z-8")
