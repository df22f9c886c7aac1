"""bench/accelerator.py: the one-command accelerator bench, run on this CPU at the tiny size; and
the chip table it divides by (restrl_jax/chip_specs.py)."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "accelerator.py"
sys.path.insert(0, str(REPO))

from bench import accelerator  # noqa: E402
from restrl_jax import chip_specs, mesh_presets  # noqa: E402

# every figure a part writes: (finite and > 0) unless listed as a fraction (None without a
# chip's figures) or as possibly 0
PART_FIELDS = {
    "train_step": ("first_step_s", "step_s", "tokens_per_s", "model_flops_per_token",
                   "model_flops_per_s"),
    "decode_batch_1": ("first_call_s", "step_s", "tokens_per_s", "step_bytes", "mean_context"),
    "decode_batch_64": ("first_call_s", "step_s", "tokens_per_s", "step_bytes", "mean_context"),
    "grpo_step": ("first_step_s", "step_s", "sample_s", "ref_s", "exec_s", "train_s",
                  "tokens_per_step"),
}
FRACTIONS = {"train_step": ("mfu",),
             "decode_batch_1": ("roofline_tokens_per_s", "roofline_fraction"),
             "decode_batch_64": ("roofline_tokens_per_s", "roofline_fraction")}


def _run(out: Path, *flags: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=str(REPO))
  env.pop("XLA_FLAGS", None)   # one CPU device, not the tests' 8 simulated ones
  return subprocess.run([sys.executable, str(SCRIPT), "--model_size", "tiny", "--out", str(out),
                         *flags], env=env, capture_output=True, text=True, timeout=300)


def test_the_tiny_run_on_cpu_writes_every_figure_and_no_fraction(tmp_path):
  out = tmp_path / "accelerator.json"
  done = _run(out, "--budget_s", "150")
  assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
  record = json.loads(out.read_text())
  assert record["complete"] and not record["skipped"] and not record["errors"]
  assert record["device"]["platform"] == "cpu" and record["device"]["peak_bf16_flops"] is None
  assert record["model"]["params"] > 0 and 0 < record["elapsed_s"] < 150
  for part, fields in PART_FIELDS.items():
    for field in fields:
      value = record[part][field]
      assert math.isfinite(value) and value > 0, (part, field, value)
    for field in FRACTIONS.get(part, ()):
      assert record[part][field] is None, (part, field)
  assert record["grpo_step"]["exec_wait_s"] >= 0 and record["grpo_step"]["steps_timed"] >= 1
  assert record["decode_batch_64"]["step_bytes"] > record["decode_batch_1"]["step_bytes"]
  for line in ("train step:", "decode B=1:", "decode B=64:", "GRPO step", "MFU unavailable"):
    assert line in done.stdout, line


def test_the_watchdog_ends_the_run_at_the_budget_and_keeps_the_file(tmp_path):
  out = tmp_path / "accelerator.json"
  done = _run(out, "--budget_s", "1", "--parts", "train")
  assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-3000:]
  record = json.loads(out.read_text())
  assert record["stopped"].startswith("the budget of 1 s ran out during")
  assert "ran out during" in done.stdout


def test_a_part_without_budget_is_skipped_and_a_failing_part_recorded(tmp_path):
  results = accelerator.Results(str(tmp_path / "r.json"), {"skipped": {}, "errors": {}})
  spent = accelerator.Budget(total_s=0.0)
  accelerator.run_part("grpo_step", lambda: {"never": 1}, 30.0, spent, results, ["setup"])
  assert "grpo_step" not in results.record and "needs ~30 s" in results.record["skipped"][
      "grpo_step"]

  def fails():
    raise RuntimeError("out of memory")
  accelerator.run_part("train_step", fails, 0.0, accelerator.Budget(600.0), results, ["setup"])
  assert results.record["errors"]["train_step"] == "RuntimeError: out of memory"
  assert json.loads((tmp_path / "r.json").read_text())["errors"]   # written after every part


def test_the_byte_tokenizer_round_trips_text_and_drops_ids_beyond_it():
  tok = accelerator.ByteTokenizer()
  text = "def f(x):\n    return 'é'\n"
  assert tok.decode(tok.encode(text)) == text and len(tok) == 259
  assert tok.decode(tok.encode("ab") + [0, 100_000]) == "ab"


@pytest.mark.parametrize("kind, chip", [
    ("NVIDIA H100 80GB HBM3", "H100 SXM"), ("NVIDIA H100 PCIe", "H100 PCIe"),
    ("NVIDIA H200", "H200"), ("NVIDIA A100-SXM4-80GB", "A100 80GB"), ("TPU v5 lite", "TPU v5e"),
    ("TPU v5p", "TPU v5p"), ("TPU v5", "TPU v5p"), ("TPU v4", "TPU v4"),
    ("cpu", None), ("NVIDIA A100-SXM4-40GB", None), ("NVIDIA GeForce RTX 4090", None)])
def test_chips_are_found_by_jax_device_kind(kind, chip):
  spec = chip_specs.for_device_kind(kind)
  assert (spec.name if spec else None) == chip


def test_the_hardware_presets_take_their_figures_from_the_chip_table():
  h100 = chip_specs.CHIPS["H100 SXM"]
  assert (h100.peak_bf16_flops, h100.hbm_bytes_per_s) == (989e12, 3.35e12)
  for name, chip in (("gpu-1", "H100 SXM"), ("v5e-16", "TPU v5e"), ("v5p-8", "TPU v5p"),
                     ("v4-8", "TPU v4")):
    hw, spec = mesh_presets.get(name), chip_specs.CHIPS[chip]
    assert hw.peak_bf16_tflops * 1e12 == spec.peak_bf16_flops
    assert hw.hbm_gbps * 1e9 == spec.hbm_bytes_per_s
