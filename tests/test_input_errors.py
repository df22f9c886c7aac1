"""Bad input to `python -m restrl_jax.evaluate` and `python -m restrl_jax.main` ends with one line
`error: <file> row N: <what>` (or `error: <file>: <what>`), a non-zero exit and no traceback;
`evaluate --skip-bad-rows` evaluates the other rows and counts the skipped ones."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from restrl_jax.data.humaneval import load_humaneval

REPO = Path(__file__).resolve().parents[1]
DEMO_POLICY = REPO / "restrl_jax" / "assets" / "demo_policy"
NOT_JSON = "not valid JSON (Expecting property name enclosed in double quotes)"


def run(module: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
  env.pop("XLA_FLAGS", None)   # one CPU device: these runs stop before any computation
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=timeout)


def assert_error(out: subprocess.CompletedProcess, line: str) -> None:
  assert out.returncode != 0, out.stdout[-2000:]
  assert "Traceback" not in out.stderr, out.stderr[-3000:]
  assert out.stderr.rstrip().splitlines()[-1] == f"error: {line}", out.stderr[-3000:]


def write_lines(path: Path, lines: list[str]) -> Path:
  path.write_text("".join(line + "\n" for line in lines))
  return path


def evaluate(*args: str) -> subprocess.CompletedProcess:
  return run("restrl_jax.evaluate", "--benchmark", "humaneval", "--limit", "2", "--k", "1",
             "--workers", "1", "--no-progress", *args)


def good_row() -> str:
  problem = load_humaneval(limit=1)[0]
  return json.dumps({"task_id": problem.id,
                     "completion": problem.solutions[0][len(problem.prompt):]})


def test_evaluate_bad_samples_files(tmp_path):
  malformed = write_lines(tmp_path / "malformed.jsonl", [good_row(), "{oops"])
  assert_error(evaluate("--samples", str(malformed)), f"{malformed} row 2: {NOT_JSON}")
  unknown = write_lines(tmp_path / "unknown.jsonl",
                        [good_row(), json.dumps({"task_id": "HumanEval/999", "completion": ""})])
  assert_error(evaluate("--samples", str(unknown)),
               f"{unknown} row 2: task 'HumanEval/999' is not a problem of this benchmark "
               "(ids look like 'HumanEval/0')")
  missing = tmp_path / "missing.jsonl"
  assert_error(evaluate("--samples", str(missing)), f"{missing}: no such data file")
  empty = write_lines(tmp_path / "empty.jsonl", [])
  assert_error(evaluate("--samples", str(empty)), f"{empty}: no samples (the file is empty)")
  assert not list(tmp_path.glob("*_results.jsonl"))   # nothing written on an error


def test_evaluate_bad_data_files(tmp_path):
  samples = write_lines(tmp_path / "s.jsonl", [json.dumps({"problem_id": 1, "solution": ""})])
  missing = tmp_path / "apps_missing.jsonl"
  out = run("restrl_jax.evaluate", "--benchmark", "apps", "--data", str(missing), "--samples",
            str(samples))
  assert_error(out, f"{missing}: no such data file")
  empty = write_lines(tmp_path / "apps_empty.jsonl", [])
  out = run("restrl_jax.evaluate", "--benchmark", "apps", "--data", str(empty), "--samples",
            str(samples))
  assert_error(out, f"{empty}: no apps problems in it (empty, or every row skipped)")


def test_evaluate_skip_bad_rows_counts_them(tmp_path):
  samples = write_lines(tmp_path / "mixed.jsonl", [
      good_row(), "{oops", json.dumps({"task_id": "HumanEval/999", "completion": ""}),
      json.dumps({"task_id": "HumanEval/1"})])
  out = evaluate("--samples", str(samples), "--skip-bad-rows")
  assert out.returncode == 0, out.stderr[-3000:]
  summary = json.loads(out.stdout)
  assert summary["skipped_rows"] == 3 and summary["num_samples"] == 1
  assert summary["pass@1"] == 1.0
  skipped = [line for line in out.stderr.splitlines() if line.startswith("skipped: ")]
  assert skipped == [f"skipped: {samples} row 2: {NOT_JSON}",
                     f"skipped: {samples} row 3: task 'HumanEval/999' is not a problem of this "
                     "benchmark (ids look like 'HumanEval/0')",
                     f"skipped: {samples} row 4: needs one of the fields "
                     "['solution', 'completion']"]
  results = (tmp_path / "mixed_results.jsonl").read_text().splitlines()
  assert len(results) == 1 and json.loads(results[0])["passed"]


def main(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
  return run("restrl_jax.main", "--config=configs/demo.py", f"--config.workdir={tmp_path / 'run'}",
             "--config.execution.num_workers=1", *overrides)


def test_main_bad_training_data(tmp_path):
  train = ("--config.stages=('rest_grpo',)", f"--config.model.hf_path={DEMO_POLICY}",
           "--config.rest.benchmark=apps")
  malformed = write_lines(tmp_path / "train.jsonl", ["{oops"])
  assert_error(main(tmp_path, *train, f"--config.rest.data_path={malformed}"),
               f"{malformed} row 1: {NOT_JSON}")
  missing = tmp_path / "nowhere.jsonl"
  assert_error(main(tmp_path, *train, f"--config.rest.data_path={missing}"),
               f"{missing}: no such data file")
  empty = write_lines(tmp_path / "empty.jsonl", [])
  assert_error(main(tmp_path, *train, f"--config.rest.data_path={empty}"),
               f"{empty}: no apps problems in it (empty, or every row skipped)")


def test_main_tokenizer_of_another_model(tmp_path):
  model = tmp_path / "bigger_vocab"
  shutil.copytree(DEMO_POLICY, model)
  config = json.loads((model / "config.json").read_text())
  (model / "config.json").write_text(json.dumps({**config, "vocab_size": 4096}))
  out = main(tmp_path, "--config.stages=('evaluate',)", f"--config.model.hf_path={model}",
             f"--config.model.tokenizer_path={DEMO_POLICY}")
  assert_error(out, f"{DEMO_POLICY}: the tokenizer has 1024 tokens, the model {model} has "
                    "vocab_size 4096: not this model's tokenizer")
