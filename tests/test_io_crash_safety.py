"""SIGKILL inside an atomic file or folder write (restrl_jax.crash_points) leaves the previous
complete file or folder, and the next write replaces it cleanly; the evaluation CLI's results
file is one of those writes."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from restrl_jax import io_utils

REPO = Path(__file__).resolve().parents[1]


def run_python(code: str, kill_at: str | None = None, *args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
  env.pop("RESTRL_KILL_AT", None)
  if kill_at:
    env["RESTRL_KILL_AT"] = kill_at
  return subprocess.run([sys.executable, *(["-c", code] if code else []), *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=300)


WRITE = "import sys; from restrl_jax import io_utils; io_utils.atomic_write_text(sys.argv[1], sys.argv[2])"
SWAP = """
import sys
from pathlib import Path
from restrl_jax import io_utils
with io_utils.atomic_dir(sys.argv[1]) as tmp:
  (tmp / "weights").write_text(sys.argv[2])
  (tmp / "config.json").write_text(sys.argv[2])
"""


def test_killed_file_write_leaves_the_previous_file(tmp_path):
  path = tmp_path / "scores.json"
  assert run_python(WRITE, None, str(path), "old").returncode == 0
  out = run_python(WRITE, "atomic_write:scores.json:1", str(path), "new")
  assert out.returncode == -signal.SIGKILL
  assert path.read_text() == "old"
  assert len(list(tmp_path.glob(".scores.json.*.tmp"))) == 1   # the killed write's part
  io_utils.atomic_write_text(path, "newer")
  assert path.read_text() == "newer" and sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_killed_folder_swap_leaves_the_previous_folder(tmp_path):
  folder = tmp_path / "policy"
  assert run_python(SWAP, None, str(folder), "old").returncode == 0
  out = run_python(SWAP, "atomic_dir:policy:1", str(folder), "new")
  assert out.returncode == -signal.SIGKILL
  assert (folder / "weights").read_text() == "old" == (folder / "config.json").read_text()
  with io_utils.atomic_dir(folder) as tmp:
    (tmp / "weights").write_text("newer")
  assert (folder / "weights").read_text() == "newer" and not (folder / "config.json").exists()
  assert sorted(p.name for p in tmp_path.iterdir()) == ["policy"]


def test_recover_dir_puts_back_a_folder_moved_aside(tmp_path):
  folder = tmp_path / "best"
  (tmp_path / "best.old").mkdir()
  (tmp_path / "best.old" / "value_model.json").write_text("{}")
  io_utils.recover_dir(folder)
  assert (folder / "value_model.json").read_text() == "{}"


def test_trim_jsonl_drops_later_steps_and_a_torn_line(tmp_path):
  path = tmp_path / "metrics.jsonl"
  path.write_text("".join(json.dumps({"step": s, "loss": s / 10}) + "\n" for s in (1, 2, 3))
                  + '{"step": 4, "lo')
  io_utils.trim_jsonl(path, 2)
  assert [r["step"] for r in io_utils.read_jsonl(path)] == [1, 2]
  assert path.read_text().endswith("\n")


def test_evaluate_killed_while_writing_results_keeps_the_complete_file(tmp_path):
  from restrl_jax.data.humaneval import load_humaneval
  problem = load_humaneval(limit=1)[0]
  samples = tmp_path / "s.jsonl"
  samples.write_text(json.dumps({"task_id": problem.id,
                                 "completion": problem.solutions[0][len(problem.prompt):]}) + "\n")
  args = ("-m", "restrl_jax.evaluate", "--benchmark", "humaneval", "--limit", "1", "--k", "1",
          "--workers", "1", "--no-progress", "--samples", str(samples))
  first = run_python("", None, *args)
  assert first.returncode == 0, first.stderr[-2000:]
  results = tmp_path / "s_results.jsonl"
  complete = results.read_text()
  samples.write_text(samples.read_text() * 2)       # the rerun would write two lines
  killed = run_python("", "atomic_write:s_results.jsonl:1", *args)
  assert killed.returncode == -signal.SIGKILL
  assert results.read_text() == complete and json.loads(complete)["passed"]
