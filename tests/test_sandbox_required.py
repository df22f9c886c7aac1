"""No silent downgrade: where bubblewrap cannot run, the pipeline and the evaluation CLI stop before
any work with one line (what failed, the fix, the opt-in); the weaker level runs only when asked
for, and the results and summaries record the level used."""
import json
import os
import subprocess
import sys
from pathlib import Path

from restrl_jax.evaluation import cli

REPO = Path(__file__).resolve().parents[1]
HUMANEVAL_ROW = {"task_id": "T/0", "prompt": "def add(a, b):\n",
                 "canonical_solution": "  return a + b\n", "entry_point": "add",
                 "test": "def check(candidate):\n  assert candidate(1, 2) == 3\n"}


def _without_bwrap(*args: str, cwd: Path) -> subprocess.CompletedProcess:
  """`python *args` with a PATH on which no bwrap is found."""
  env = dict(os.environ, PATH=str(cwd), JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
  return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=300, check=False)


def _one_error_line(stderr: str) -> str:
  lines = [line for line in stderr.splitlines() if line.strip()]
  assert "Traceback" not in stderr, stderr[-2000:]
  assert len(lines) == 1, stderr[-2000:]
  return lines[0]


def test_pipeline_stops_before_any_stage(tmp_path):
  workdir = tmp_path / "run"
  out = _without_bwrap("-m", "restrl_jax.main", f"--config={REPO / 'configs' / 'demo.py'}",
                       f"--config.workdir={workdir}", cwd=tmp_path)
  assert out.returncode != 0
  line = _one_error_line(out.stderr)
  assert line.startswith("error: execution sandbox: bubblewrap is unusable here"), line
  assert "bwrap not found" in line and "install bubblewrap" in line
  assert "--config.execution.isolation=rlimits" in line
  assert not workdir.exists()  # no stage ran, nothing was written


def test_evaluate_stops_before_any_work(tmp_path):
  data = tmp_path / "problems.jsonl"
  data.write_text(json.dumps(HUMANEVAL_ROW) + "\n")
  out = _without_bwrap("-m", "restrl_jax.evaluate", "--benchmark", "humaneval", "--data",
                       str(data), "--references", "1", "--k", "1", "--no-progress", cwd=tmp_path)
  assert out.returncode != 0
  line = _one_error_line(out.stderr)
  assert line.startswith("error: execution sandbox: bubblewrap is unusable here"), line
  assert "--isolation rlimits" in line
  assert not list(tmp_path.glob("*results*"))


def test_weaker_level_only_when_asked_and_recorded(tmp_path, capsys, recwarn):
  data = tmp_path / "problems.jsonl"
  data.write_text(json.dumps(HUMANEVAL_ROW) + "\n")
  results = tmp_path / "results.jsonl"
  common = ["--benchmark", "humaneval", "--data", str(data), "--references", "1", "--k", "1",
            "--workers", "1", "--no-progress", "--out", str(results)]
  for asked, level in ((["--isolation", "rlimits"], "rlimits"), ([], "bwrap")):
    assert cli.main(common + asked) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["isolation"] == [level] and summary["strict_accuracy"] == 1.0
    assert [json.loads(row)["isolation"] for row in results.read_text().splitlines()] == [level]
  weaker = [w for w in recwarn if "WEAKER isolation level 'rlimits'" in str(w.message)]
  assert len(weaker) == 1  # the rlimits run warned once; the auto run did not
