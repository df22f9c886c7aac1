"""Memory plan: parameter counts vs the published models, analytic bytes vs XLA's compiled memory
analysis of the sharded train and sample steps (abstract shapes, true width, 2 layers)."""
import dataclasses
import math
import re
from pathlib import Path

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


# -- the hardware presets' recipe settings fit the paper's four models --------------------------

PAPER_MODELS = ("qwen2.5-coder-7b-instruct", "deepseek-coder-6.7b-instruct", "llama-3-8b",
                "qwen3-8b")
PAPER_HARDWARE = ("v5e-16", "v5p-8", "gpu-8")       # gpu-8: one 8 x H100 80GB host


@pytest.mark.parametrize("hardware", PAPER_HARDWARE)
@pytest.mark.parametrize("model", PAPER_MODELS)
def test_presets_fit_the_paper_models(model, hardware, capsys):
  """The paper's update (16 x 2048), sampling (16 x 1024 + 1024) and value-model step (1 x 2048)
  at the full model size, in the micro-batches the preset picks, fit every device's memory."""
  hw, config = mesh_presets.get(hardware), models.get_preset(model)
  wl = mp.preset_workload(hw)
  assert (wl.train_batch, wl.train_len, wl.sample_batch, wl.value_len) == (16, 2048, 16, 2048)
  rows = mp.analytic_plan(config, hw.mesh_shape, wl, hw.host_mesh_shape)
  fits = mp.fits(rows, hw)
  assert all(fits.values()), {k: rows[k] / mp.GIB for k in mp.PEAKS}
  mp.main(["--model", model, "--hardware", hardware])
  out = capsys.readouterr().out
  said = [line.split()[-4] for line in out.splitlines() if "fits:" in line]
  assert said == ["yes"] * 5


@pytest.mark.parametrize("model", PAPER_MODELS)
def test_sampling_stages_fit_a_v5e_chip_only_on_the_host_mesh(model):
  """evaluate, collect_values and decode hold the whole policy (and decode the value model) on
  one host: on one 16 GiB v5e chip a 7-8B bf16 model and its KV cache do not fit; on the
  preset's host mesh (tensor over the host's 4 chips) they do, at a quarter of the weights."""
  hw, config = mesh_presets.get("v5e-16"), models.get_preset(model)
  assert hw.host_mesh_shape == (1, 1, 4)
  wl = mp.preset_workload(hw)
  one = mp.analytic_plan(config, hw.mesh_shape, wl, (1, 1, 1))
  host = mp.analytic_plan(config, hw.mesh_shape, wl, hw.host_mesh_shape)
  assert not any(mp.fits(one, hw)[k] for k in mp.HOST_PEAKS)
  assert all(mp.fits(host, hw)[k] for k in mp.HOST_PEAKS)
  policy = "host mesh: policy (bf16)"
  assert one[policy] == 2 * mp.param_elements(config)
  assert host[policy] < one[policy] / 3     # every large weight split 4 ways
  assert host["host mesh: weights gathered over fsdp"] == 0   # no fsdp axis on the host


def test_impossible_settings_do_not_fit(capsys):
  qwen3 = models.get_preset("qwen3-8b")
  v5e16, v5e8 = mesh_presets.get("v5e-16"), mesh_presets.get("v5e-8")
  # the paper's 16 rows in one forward/backward on 16 GiB chips
  whole = mp.analytic_plan(qwen3, v5e16.mesh_shape, mp.Workload(grad_accum_steps=1))
  assert not mp.fits(whole, v5e16)[mp.TRAIN_PEAK]
  mp.main(["--model", "qwen3-8b", "--hardware", "v5e-16", "--grad-accum-steps", "1"])
  assert re.search(r"fits: train step +NO ", capsys.readouterr().out)
  # 8 x 16 GiB: what does not shrink with the micro-batch (the train state, the gradients and
  # update temporaries, the accumulator) is over the chip already at one row per pass
  one_row = mp.analytic_plan(qwen3, v5e8.mesh_shape, mp.Workload(grad_accum_steps=2))
  fixed = mp.STATE_ROWS + ("grads + fp32 update temporaries", "fp32 gradient accumulator")
  assert sum(one_row[k] for k in fixed) > v5e8.hbm_bytes
  assert not mp.fits(one_row, v5e8)[mp.TRAIN_PEAK]


@pytest.mark.parametrize("hardware,steps", [("v5e-16", 4), ("v5p-8", 1), ("gpu-8", 1)])
def test_preset_sets_the_micro_batches_the_plan_assumes(hardware, steps):
  from restrl_jax import config_defaults
  from restrl_jax.rl.trainer import check_micro_batches
  hw = mesh_presets.get(hardware)
  c = config_defaults.base()
  c.grpo, c.value, c.rest = config_defaults.grpo(), config_defaults.value(), config_defaults.rest()
  c.mesh.preset = hardware
  mesh_presets.apply(c)
  assert c.grpo.grad_accum_steps == mp.preset_workload(hw).grad_accum_steps == steps
  assert c.value.shard and c.grpo.remat and c.value.remat and c.model.dtype == "bfloat16"
  rows = c.grpo.prompts_per_step * c.grpo.group_size
  check_micro_batches(rows, c.grpo.grad_accum_steps, mp.abstract_mesh(hw.mesh_shape), "rows", "")
  c.grpo.grad_accum_steps = 8                            # more micro-batches, set by hand: kept
  mesh_presets.apply(c)
  assert c.grpo.grad_accum_steps == 8


def test_grad_accum_steps_split_rows_evenly():
  v5e16 = mesh_presets.get("v5e-16")                     # 4 batch shards, 1 row per shard
  assert [mesh_presets.grad_accum_steps(v5e16, rows) for rows in (4, 16, 32, 12, 10)] == [
      1, 4, 8, 3, 1]                                     # 10 rows do not spread over 4 shards
  hw = dataclasses.replace(v5e16, train_rows_per_shard=3)
  assert mesh_presets.grad_accum_steps(hw, 16) == 2      # 4 per shard: 2 x 2 (not 2 x 3)
  assert mesh_presets.grad_accum_steps(mesh_presets.get("v4-8"), 16) == 1


def test_compiled_accumulated_train_step_matches_plan_qwen3_v5e16():
  """The v5e-16 update in 4 micro-batches (Qwen3-8B width, 2 layers), simulated on 8 devices
  with the real slice's per-device micro-batch: arguments exact, temporaries (the fp32
  accumulator included) within the plan's band."""
  hw = mesh_presets.get("v5e-16")
  config = dataclasses.replace(models.get_preset("qwen3-8b"), num_layers=2)
  wl = mp.preset_workload(hw, mp.Workload(train_len=1024))
  shape, wl = mp.simulated_setup(hw, wl, jax.devices())
  assert shape == (1, 2, 4) and (wl.train_batch, wl.grad_accum_steps, wl.micro_batch) == (8, 4, 2)
  mesh = parallel.make_mesh(shape, jax.devices()[:8])
  got = mp.compile_train_step(mp.plan_config(config), mesh, wl)
  want = mp.expected_compiled(config, shape, wl)["train"]
  _check(got, want)
  no_accum = mp.expected_compiled(config, shape, wl._replace(grad_accum_steps=1))["train"][1]
  assert want[1] - no_accum < 0     # fewer rows per pass outweigh the accumulator


def test_docs_tables_are_what_the_plan_writes(tmp_path):
  """docs/memory_plan.md's per-preset tables are `memory_plan --update-docs` output."""
  docs = Path(__file__).resolve().parents[1] / "docs" / "memory_plan.md"
  copy = tmp_path / "memory_plan.md"
  copy.write_text(docs.read_text())
  mp.main(["--update-docs", str(copy)])
  assert copy.read_text() == docs.read_text()
  for name in mp.PAPER_HARDWARE:
    assert mp.markdown_plan(mesh_presets.get(name)) in docs.read_text()


def test_reproduce_guides_tables_are_what_the_plans_write(tmp_path):
  """docs/reproduce.md's memory summary and wall-time tables are `memory_plan --update-docs` and
  `time_plan --update-docs` output (typed by hand before: rounding had drifted)."""
  from restrl_jax import time_plan
  docs = Path(__file__).resolve().parents[1] / "docs" / "reproduce.md"
  copy = tmp_path / "reproduce.md"
  copy.write_text(docs.read_text())
  mp.main(["--update-docs", str(copy)])
  time_plan.main(["--update-docs", str(copy)])
  assert copy.read_text() == docs.read_text()
  assert mp.summary_table() in docs.read_text() and time_plan.markdown_table() in docs.read_text()
  # the summary's 7B cell and bracketed maximum come from the per-preset plans
  row = next(l for l in mp.summary_table().splitlines() if l.startswith("| `rest_grpo` update"))
  assert row.split(" | ")[1] == "13.9 (15.0)"
  empty = tmp_path / "empty.md"
  empty.write_text("no blocks\n")
  with pytest.raises(ValueError, match="no <!-- memory-plan:NAME:begin"):
    mp.update_docs(str(empty))
  with pytest.raises(ValueError, match="time-plan:begin"):
    time_plan.update_docs(str(empty))
