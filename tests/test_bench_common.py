"""bench/common.py: the conventions every bench script shares (results, docs rows, children)."""
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import common  # noqa: E402


def test_no_bench_script_shadows_a_standard_library_module():
  """Scripts run as `python bench/x.py` put bench/ first on sys.path: a bench/profile.py hid the
  standard library's `profile` and broke PyTorch's import in every bench script."""
  bench_dir = Path(__file__).resolve().parents[1] / "bench"
  names = {p.stem for p in bench_dir.glob("*.py")} | {p.name for p in bench_dir.iterdir()
                                                       if p.is_dir()}
  assert not names & set(sys.stdlib_module_names), names & set(sys.stdlib_module_names)


def test_cpu_isa_names_the_widest_matmul_instructions():
  flags = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f {}\n"
  assert common.cpu_isa(flags.format("amx_bf16 avx512_bf16")) == "AMX"
  assert common.cpu_isa(flags.format("avx512_bf16")) == "AVX-512 BF16"
  assert common.cpu_isa(flags.format("")) == "AVX-512"
  assert common.cpu_isa("no flags here") == "?"
  assert common.machine().endswith(common.cpu_isa())


def test_report_rows_go_to_the_end_of_the_top_table():
  doc = ("# Benchmarks\n\n| date | bench | ours |\n|---|---|---|\n| d1 | a | 1 |\n\n"
         "## Later\n\n| other | table |\n|---|---|\n| x | y |\n")
  out = common._insert_rows(doc, ["| d2 | b | 2 |\n", "| d2 | c | 3 |\n"])
  assert out == doc.replace("| d1 | a | 1 |\n", "| d1 | a | 1 |\n| d2 | b | 2 |\n| d2 | c | 3 |\n")
  assert common._insert_rows("# no table\n", ["| r |\n"]) == "# no table\n| r |\n"


def test_field_medians_take_each_fields_upper_median():
  rounds = [{"s": 3.0, "f": 10, "tag": "a"}, {"s": 1.0, "f": 30, "tag": "b"},
            {"s": 2.0, "f": 40, "tag": "c"}, {"s": 4.0, "f": 20, "tag": "d"}]
  assert common.field_medians(rounds, skip=("tag",)) == {"s": 3.0, "f": 30}


def test_in_rounds_runs_every_task_once_per_round_in_turn():
  calls = []
  tasks = {name: (lambda name=name: calls.append(name) or {"n": len(calls)}) for name in "ab"}
  out = common.in_rounds(tasks, rounds=2)
  assert calls == ["a", "b", "a", "b"]
  assert out == {"a": [{"n": 1}, {"n": 3}], "b": [{"n": 2}, {"n": 4}]}


def test_run_child_returns_the_last_result_and_names_a_failure():
  import pytest
  emit = "from bench import common; common.emit_result({'x': 1}); common.emit_result({'x': 2})"
  root = str(Path(__file__).resolve().parents[1])
  env = {"PYTHONPATH": root, "PATH": "/usr/bin:/bin"}
  assert common.run_child([sys.executable, "-c", emit], "emitter", env=env) == {"x": 2}
  with pytest.raises(RuntimeError, match=r"the failing child failed \(exit 3\)"):
    common.run_child([sys.executable, "-c", "import sys; sys.exit(3)"], "the failing child",
                     env=env)


def test_sampler_bench_children_time_each_side_alone():
  """bench/sampler.py runs every side in its own process: ours, the floor's read and (where torch
  is installed) PyTorch's generate() at a small generation."""
  import importlib.util

  from bench import sampler
  args = sampler.parse_args(["--sizes", "tiny", "--prompt", "8", "--new", "4", "--repeats", "1",
                             "--rounds", "1", "--no-train"])
  sides = ["ours", "stream"] + (["peer"] if importlib.util.find_spec("torch") else [])
  results = {side: sampler._run_child(args, "tiny", "sampler", side) for side in sides}
  assert all(r["seconds"] > 0 for r in results.values())
  assert results["stream"]["step_bytes"] > 0


def test_sampler_floor_reads_the_decode_params_and_the_kv_cache():
  """bench/sampler.py's floor: a jitted sum over every byte a decode step reads."""
  import dataclasses

  import jax

  from bench import sampler
  from restrl_jax import models
  from restrl_jax.models import decode_form

  config = dataclasses.replace(models.get_preset("tiny"), num_layers=2)
  step_params = decode_form.decode_params(models.init_params(config, jax.random.key(0)))
  run, step_bytes = sampler.stream_runner(step_params, config, batch=2, slots=8, steps=1)
  run()
  cache = models.init_cache(config, 2, 8)
  assert step_bytes == sum(x.nbytes for x in jax.tree.leaves(step_params)) + 2 * cache.k.nbytes


def test_a_report_replaces_its_benchs_row_and_appends_new_benches():
  doc = ("| date | bench | ours |\n|---|---|---|\n| d1 | a | 1 |\n| d1 | b | 2 |\n\ntext\n")
  out = common._insert_rows(doc, ["| d2 | b | 5 |\n", "| d2 | c | 6 |\n"])
  assert out == ("| date | bench | ours |\n|---|---|---|\n| d1 | a | 1 |\n| d2 | b | 5 |\n"
                 "| d2 | c | 6 |\n\ntext\n")


def test_a_bench_run_changes_docs_only_with_update_docs(tmp_path, monkeypatch):
  results, doc = tmp_path / "results", tmp_path / "benchmarks.md"
  doc.write_text("# Benchmarks\n\n| date | bench | ours |\n|---|---|---|\n| d1 | x | 1 |\n")
  before = doc.read_text()
  monkeypatch.setattr(common, "RESULTS", results)
  monkeypatch.setattr(common, "DOC", doc)
  monkeypatch.setattr(sys, "argv", ["bench/toy.py", "--n", "3", common.UPDATE_DOCS])
  report = common.Report("toy")
  report.add("x", 2.0, 1.0, "things/s")
  report.save()
  assert doc.read_text() == before
  saved = json.loads((results / "toy.json").read_text())
  assert saved["rows"][0]["bench"] == "x" and saved["command"] == "python bench/toy.py --n 3"
  report.save(update_docs=True)
  rows = [l for l in doc.read_text().splitlines() if l.startswith("| ") and "| x |" in l]
  assert len(rows) == 1 and "| 2.0 | 1.0 | things/s | 2.0 |" in rows[0]
  assert rows[0].endswith("| `python bench/toy.py --n 3` |")   # the flag is not part of it


def test_bench_results_are_ignored_by_git_and_every_saving_script_takes_update_docs():
  repo = Path(__file__).resolve().parents[1]
  probe = subprocess.run(["git", "check-ignore", "-q", "bench/results/sampler.json"], cwd=repo)
  if probe.returncode == 128:
    import pytest
    pytest.skip("not a git checkout")
  assert probe.returncode == 0, "bench/results/ must be git-ignored"
  for script in (repo / "bench").glob("*.py"):
    source = script.read_text()
    if ".save(" in source:
      assert "add_update_docs_flag(" in source and "update_docs=args.update_docs" in source, script


def test_grpo_vs_trl_children_time_each_phase_and_record_trls_changed_settings():
  """bench/grpo_vs_trl.py: each side's child runs a GRPO step on the demo policy and reports its
  phases; the TRL row names every GRPOConfig setting it changes from TRL's default."""
  import argparse
  import os

  import pytest
  pytest.importorskip("trl")
  from bench import grpo_vs_trl
  args = argparse.Namespace(prompts=1, new_tokens=16, steps=1, warmup=0)
  env = dict(os.environ, PYTHONPATH=str(common.REPO))
  for side in ("ours", "trl"):
    result = common.run_child(grpo_vs_trl.child_command(side, "tiny", args), side, env=env)
    (step,) = result["records"]
    assert set(grpo_vs_trl.PHASES) <= set(step) and step["step_s"] > 0
    assert step["step_s"] >= step["gen_s"] + step["ref_s"] + step["reward_s"] - 1e-6
    assert 0 < step["completion_len"] <= 16 and result["params"] == 1050752
  changed = result["trl_settings"]
  assert changed["gradient_checkpointing"] == "False" and changed["beta"] == "0.04"
  assert "num_generations" not in changed        # G = 8 is TRL's default too
