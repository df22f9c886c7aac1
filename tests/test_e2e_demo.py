"""End to end: the README's main command in its quick variant runs every configured stage,
writes the run directory and the summary, and a rerun skips the finished stages.

The first run is the one the Colab notebook makes (tests/quick_demo_run.py: the notebook calls
the same CLI in a subprocess), shared with tests/test_colab_notebook.py so the suite pays for
one quick demo; the rerun is the plain CLI command.
"""
import importlib.util
import json

import pytest

from quick_demo_run import REPO, missing_notebook_deps, notebook_run, run_cli


def demo_stages() -> tuple[str, ...]:
  spec = importlib.util.spec_from_file_location("demo", REPO / "configs" / "demo.py")
  demo = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(demo)
  return tuple(demo.get_config().stages)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
  if missing_notebook_deps():  # without the `test` extra: the CLI alone
    workdir = tmp_path_factory.mktemp("quick_demo")
    first = run_cli(workdir)
    assert first.returncode == 0, first.stderr[-3000:]
    return workdir
  run = notebook_run(tmp_path_factory.getbasetemp())
  assert run.error is None, run.error
  return run.workdir


def test_quick_demo_runs_every_stage(quick_run):
  stages = demo_stages()
  config = json.loads((quick_run / "config.json").read_text())
  assert config["quick"] is True and tuple(config["stages"]) == stages
  assert config["workdir"] == str(quick_run)
  for stage in stages:
    done = json.loads((quick_run / stage / "DONE.json").read_text())
    assert "summary" in done and done["seconds"] > 0
  summary = (quick_run / "summary.md").read_text()
  assert "base (warm start)" in summary and "| stage | facts |" in summary
  scores = json.loads((quick_run / "warmstart" / "eval.json").read_text())
  assert 0.0 <= scores["strict_accuracy"] <= scores["test_case_average"] <= 1.0
  assert (quick_run / "warmstart" / "policy" / "config.json").is_file()
  assert (quick_run / "rest_grpo" / "policy" / "config.json").is_file()
  for method in ("sampling", "best_of_n", "orm_mcts", "vm_mcts"):
    assert f"| {method} (" in summary, method   # one row per decoding method, equal budgets
  # base vs trained on the same held-out problems, with the spread of the paired difference
  rows = table_rows(summary)
  gain = rows["trained - base (paired, ± 1 SE over problems)"]
  mean, se = (float(x) for x in gain["strict_accuracy"].split(" ± "))
  evaluated = json.loads((quick_run / "evaluate" / "gain.json").read_text())
  assert mean == pytest.approx(evaluated["gain_strict"], abs=5e-4) and se >= 0.0
  assert float(rows["base"]["strict_accuracy"]) == pytest.approx(
      evaluated["base_strict_accuracy"], abs=5e-4)
  plot = quick_run / "plots" / "learning_curve.png"
  assert plot.is_file() and plot.read_bytes()[:4] == b"\x89PNG" and str(plot) in summary
  for stage in set(stages) & {"warmstart", "rest_grpo", "collect_values", "decode", "evaluate"}:
    done = json.loads((quick_run / stage / "DONE.json").read_text())
    assert done["summary"]["isolation"] == "bwrap", stage  # each stage that ran programs says how


def test_rerun_skips_finished_stages(quick_run):
  summary = (quick_run / "summary.md").read_text()
  again = run_cli(quick_run)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stderr.count("finished earlier, skipping") == len(demo_stages())
  assert table_rows((quick_run / "summary.md").read_text()) == table_rows(summary)  # read back


def table_rows(summary: str) -> dict[str, dict[str, str]]:
  """The method rows of summary.md as {method: {column: cell}} (column order aside)."""
  methods = summary.split("| stage | facts |")[0]
  lines = [line for line in methods.splitlines() if line.startswith("| ")]
  cells = lambda line: [c.strip() for c in line.strip("|").split("|")]
  rows = [dict(zip(cells(lines[0]), cells(line))) for line in lines[1:]]
  return {row["method"]: row for row in rows}
