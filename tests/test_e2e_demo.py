"""End to end: the README's main command in its quick variant runs every configured stage,
writes the run directory and the summary, and a rerun skips the finished stages."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_demo(workdir: Path) -> subprocess.CompletedProcess:
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)  # the demo runs on the machine's real device count
  return subprocess.run(
      [sys.executable, "-m", "restrl_jax.main", "--config=configs/demo.py",
       "--config.quick=True", f"--config.workdir={workdir}"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def test_quick_demo_runs_every_stage_and_resumes(tmp_path):
  first = run_demo(tmp_path)
  assert first.returncode == 0, first.stderr[-3000:]
  sys.path.insert(0, str(REPO))
  import importlib.util
  spec = importlib.util.spec_from_file_location("demo", REPO / "configs" / "demo.py")
  demo = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(demo)
  stages = demo.get_config().stages
  for stage in stages:
    done = json.loads((tmp_path / stage / "DONE.json").read_text())
    assert "summary" in done and done["seconds"] > 0
  summary = (tmp_path / "summary.md").read_text()
  assert "base (warm start)" in summary and "| stage | facts |" in summary
  scores = json.loads((tmp_path / "warmstart" / "eval.json").read_text())
  assert 0.0 <= scores["strict_accuracy"] <= scores["test_case_average"] <= 1.0
  assert (tmp_path / "warmstart" / "policy" / "config.json").is_file()
  assert (tmp_path / "rest_grpo" / "policy" / "config.json").is_file()
  for method in ("sampling", "best_of_n", "orm_mcts", "vm_mcts"):
    assert f"| {method} (" in summary, method   # one row per decoding method, equal budgets

  again = run_demo(tmp_path)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stderr.count("finished earlier, skipping") == len(stages)
