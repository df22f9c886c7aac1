"""Wall-time estimates: the roofline arithmetic on the paper's models and presets."""
import dataclasses
import math

import pytest

from restrl_jax import memory_plan as mp
from restrl_jax import mesh_presets, models
from restrl_jax import time_plan as tp

QWEN25 = models.get_preset("qwen2.5-coder-7b-instruct")


def test_matmul_params_leave_out_the_embedding_gather():
  n = mp.param_elements(QWEN25)                          # 7,615,616,512
  vd = QWEN25.vocab_size * QWEN25.hidden_size
  assert tp.matmul_params(QWEN25) == n - vd              # untied: the unembedding is a matmul
  assert tp.matmul_params(QWEN25, logits=False) == n - 2 * vd
  tied = dataclasses.replace(QWEN25, tie_word_embeddings=True)
  assert tp.matmul_params(tied) == mp.param_elements(tied)


def test_decoding_is_bandwidth_bound_and_training_flop_bound():
  hw = mesh_presets.get("v5p-8")
  weights_bytes = 2 * tp.matmul_params(QWEN25)           # (1, 4, 1): whole weights per device
  step = tp.decode_seconds(QWEN25, hw, hw.mesh_shape, 16, 1024, 2) - tp.decode_seconds(
      QWEN25, hw, hw.mesh_shape, 16, 1024, 1)
  assert step == pytest.approx(weights_bytes / (hw.hbm_gbps * 1e9), rel=0.05)   # + KV reads
  tokens = 16 * 2048
  flops = 10 * tp.matmul_params(QWEN25) * tokens + 5 * tp.attention_flops(QWEN25, tokens, 2048)
  update = mp.param_elements(QWEN25, mp.abstract_mesh((1, 4, 1))) * tp.UPDATE_BYTES_PER_PARAM
  assert tp.train_seconds(QWEN25, hw, hw.mesh_shape, 16, 2048) == pytest.approx(
      flops / (4 * hw.peak_bf16_tflops * 1e12) + update / (hw.hbm_gbps * 1e9))
  # one row on a 4-way fsdp mesh is repeated on every shard: one device's compute, while the
  # optimizer update stays split four ways
  bw = hw.hbm_gbps * 1e9
  one_row = tp.train_seconds(QWEN25, hw, hw.mesh_shape, 1, 2048, reference=False, logits=False)
  alone = tp.train_seconds(QWEN25, hw, (1, 1, 1), 1, 2048, reference=False, logits=False)
  whole_update = mp.param_elements(QWEN25) * tp.UPDATE_BYTES_PER_PARAM
  assert one_row - update / bw == pytest.approx(alone - whole_update / bw)


def test_stages_scale_with_counts_and_skip_what_does_not_fit():
  hw = mesh_presets.get("gpu-8")
  wl = mp.preset_workload(hw)
  base = tp.stage_seconds(QWEN25, hw, wl)
  double = tp.stage_seconds(QWEN25, hw, wl, tp.Counts(
      train_problems=2000, grpo_steps_per_round=1000, collect_problems=2000,
      value_records=200_000, decode_problems=1000, eval_problems=2 * 2766))
  for stage in ("rest_grpo (all rounds)", "collect_values", "train_value", "decode", "evaluate"):
    assert double[stage] == pytest.approx(2 * base[stage], rel=0.01), stage
  # v5e-16: every host samples on its own 4 chips; the search stages split the problems over
  # the 4 hosts
  v5e = mesh_presets.get("v5e-16")
  wl = mp.preset_workload(v5e)
  stages = tp.stage_seconds(QWEN25, v5e, wl)
  assert all(stages[s] > 0 for s in stages), stages
  on_host = tp.decode_seconds(QWEN25, v5e, (1, 1, 4), wl.sample_batch, wl.prompt_len,
                              wl.new_tokens)
  assert stages["evaluate"] == pytest.approx(math.ceil(2766 / wl.sample_batch) * on_host)
  searches = math.ceil(1000 / 8) * 100 * math.ceil(8 * 5 / wl.sample_batch)
  assert stages["collect_values"] == pytest.approx(searches * on_host / 4)
  # 4 GiB chips hold no 7B host-mesh sampler: those stages are not timed
  small = dataclasses.replace(v5e, hbm_gib=4)
  stages = tp.stage_seconds(QWEN25, small, wl)
  assert all(math.isnan(stages[s]) for s in ("collect_values", "decode", "evaluate"))


def test_cli_prints_steps_and_stages(capsys):
  tp.main(["--model", "qwen3-8b", "--hardware", "v5e-16", "--train-problems", "5000"])
  out = capsys.readouterr().out
  assert "GRPO update (+ reference forward)" in out and "train_problems=5000" in out
  assert "evaluate" in out and "does not fit" not in out
  assert "sampling call, 16 rows, on one host's mesh" in out
