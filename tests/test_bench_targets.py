"""bench/targets.py: the targets table of docs/benchmarks.md is what the code writes from the
results rows, and a device run's record becomes rows the targets read (bench/accelerator.py
--rows_from)."""
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import common, targets  # noqa: E402

HEADER = ("| date | bench | ours | peer | unit | ratio | machine | command |\n"
          "|---|---|---|---|---|---|---|---|\n")


def _row(bench: str, ratio: float) -> str:
  return f"| 2026-12-07 06:00 | {bench} | 2.0 | 1.0 | x/s | {ratio} | m | `c` |\n"


def test_the_docs_targets_table_is_the_one_written_from_its_rows():
  doc = (REPO / "docs" / "benchmarks.md").read_text(encoding="utf-8")
  assert targets.BEGIN in doc and targets.END in doc
  assert targets.update(doc) == doc


def test_read_ratios_reads_the_results_table_only():
  doc = "# B\n\n" + HEADER + _row("sampler_tiny", 3.2) + _row("sampler_tiny_bfloat16", 4.1) + (
      "\ntext | not | a | row\n| bench | target |\n")
  assert targets.read_ratios(doc) == {"sampler_tiny": 3.2, "sampler_tiny_bfloat16": 4.1}


def test_status_met_not_met_missing():
  two = targets.TARGETS[0]          # sampler tiny: two rows, >= 2x
  assert targets.status(two, {}) == "missing"
  assert targets.status(two, {"sampler_tiny": 3.0}) == "met where measured"
  assert targets.status(two, {"sampler_tiny": 3.0, "sampler_tiny_bfloat16": 2.0}) == "met"
  assert targets.status(two, {"sampler_tiny": 3.0, "sampler_tiny_bfloat16": 1.99}) == "not met"
  assert targets.latest(two, {"sampler_tiny": 3.0}) == "float32 3.00x"
  share = next(t for t in targets.TARGETS if t.what.startswith("MCTS bookkeeping"))
  assert targets.latest(share, {"expansion_split_vm": 50.0}) == "VM-MCTS 2.0%"
  assert targets.status(share, {"expansion_split_vm": 19.0}) == "not met"   # 5.3% > 5%


def test_update_replaces_the_block_and_appends_one_where_missing():
  doc = "# B\n\n" + HEADER + _row("grpo_vs_trl_100m", 1.6) + "\n"
  once = targets.update(doc)
  assert once.count(targets.BEGIN) == 1
  assert "| GRPO step vs TRL `GRPOTrainer`, ~100M | >= 1.5x | 1.60x | met |" in once
  assert targets.update(once) == once


def _device_record(chip="H100 SXM", mfu=0.45, fraction=0.5):
  return {"command": "python bench/accelerator.py", "date": "2026-12-07 06:00",
          "machine": "x86_64, 16 CPU cores", "model": {"params": 0.98e9},
          "device": {"platform": "gpu", "device_kind": "NVIDIA H100 80GB HBM3", "chip": chip,
                     "peak_bf16_flops": 989e12, "hbm_bytes_per_s": 3.35e12},
          "train_step": {"model_flops_per_s": mfu * 989e12, "mfu": mfu, "batch": 4, "seq": 1024},
          "decode_batch_1": {"tokens_per_s": 1000.0 * fraction, "roofline_tokens_per_s": 1000.0,
                             "roofline_fraction": fraction}}


def test_a_device_record_becomes_rows_the_targets_read(tmp_path, monkeypatch):
  pytest.importorskip("jax")
  from bench import accelerator  # pylint: disable=import-outside-toplevel
  doc = tmp_path / "benchmarks.md"
  doc.write_text("# B\n\n" + HEADER + _row("sampler_tiny", 3.2), encoding="utf-8")
  monkeypatch.setattr(common, "DOC", doc)
  monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
  rows = accelerator.write_docs_rows(_device_record(), update_docs=True)
  assert [r["bench"] for r in rows] == ["accelerator_train_mfu_h100_sxm",
                                        "accelerator_decode_b1_roofline_h100_sxm"]
  assert [r["ratio"] for r in rows] == [0.45, 0.5]
  text = doc.read_text(encoding="utf-8")
  assert "NVIDIA H100 80GB HBM3 (H100 SXM)" in text and "2026-12-07 06:00" in text
  assert "| H100 SXM 45% | met |" in text          # MFU >= 40%
  assert "| H100 SXM 50% | not met |" in text      # decode < 60% of the roofline
  cpu = _device_record(chip=None)
  assert accelerator.write_docs_rows(cpu, update_docs=False) == []


def test_grpo_vs_trl_phase_table_is_written_from_the_rows(tmp_path, monkeypatch):
  from bench import grpo_vs_trl  # pylint: disable=import-outside-toplevel
  row = {"bench": "grpo_vs_trl_100m", "params_m": 101.5,
         **{f"ours_{k}": v for k, v in zip(grpo_vs_trl.PHASES, (5.0, 1.5, 0.0002, 5.5, 12.0))},
         **{f"trl_{k}": v for k, v in zip(grpo_vs_trl.PHASES, (10.0, 4.4, 0.09, 13.7, 28.0))}}
  table = grpo_vs_trl.phase_table([row])
  assert table.splitlines()[0] == ("| size | generation | reference pass | waiting on the reward "
                                   "| update | step |")
  assert table.splitlines()[2] == ("| 100m (101.5M) | 5 / 10 | 1.5 / 4.4 | 0.0002 / 0.09 | "
                                   "5.5 / 13.7 | 12 / 28 |")
  doc = tmp_path / "benchmarks.md"
  doc.write_text("# B\n", encoding="utf-8")
  monkeypatch.setattr(common, "DOC", doc)
  monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
  for _ in range(2):   # a second run replaces the block
    report = common.Report("grpo_vs_trl")
    report.add_block(grpo_vs_trl.PHASES_BEGIN, grpo_vs_trl.PHASES_END, table)
    report.save(update_docs=True)
  text = doc.read_text(encoding="utf-8")
  assert text.count(grpo_vs_trl.PHASES_BEGIN) == 1 and table in text
  assert targets.BEGIN in text          # the targets table is rewritten by the same save


def test_the_docs_phase_block_has_a_line_per_size():
  from bench import grpo_vs_trl  # pylint: disable=import-outside-toplevel
  doc = (REPO / "docs" / "benchmarks.md").read_text(encoding="utf-8")
  block = doc.split(grpo_vs_trl.PHASES_BEGIN)[1].split(grpo_vs_trl.PHASES_END)[0]
  sizes = [l.split(" (")[0] for l in block.strip().splitlines()[2:]]
  assert sizes == ["| tiny", "| 100m"]
