"""`python -m restrl_jax.evaluate`: samples in, per-sample results file and JSON summary out."""
import json

import pytest

from restrl_jax.evaluation import cli
from restrl_jax.data.humaneval import load_humaneval


def _jsonl(path, rows):
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return path


def _summary(capsys):
  return json.loads(capsys.readouterr().out)


def test_humaneval_completions_pass_at_k(tmp_path, capsys):
  problems = load_humaneval(limit=3)
  rows = []
  for i, p in enumerate(problems):
    body = p.solutions[0][len(p.prompt):]
    rows.append({"task_id": p.id, "completion": body})                   # correct
    rows.append({"task_id": p.id, "completion": "    return None\n" if i else body})
    rows.append({"task_id": p.id, "completion": "```python\n" if i == 2 else "    pass\n"})
  samples = _jsonl(tmp_path / "samples.jsonl", rows)
  assert cli.main(["--benchmark", "humaneval", "--limit", "3", "--samples", str(samples),
                   "--k", "1,2,5", "--workers", "2", "--no-progress"]) == 0
  summary = _summary(capsys)
  # correct per problem: 2/3, 1/3, 1/3 -> pass@1 = 4/9; pass@2 = mean(1, 2/3, 2/3).
  assert summary["pass@1"] == pytest.approx(4 / 9)
  assert summary["pass@2"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
  assert "pass@5" not in summary                       # more than 3 samples needed
  assert summary["strict_accuracy"] == pytest.approx(4 / 9)
  assert summary["num_samples"] == 9 and summary["num_problems_evaluated"] == 3
  out = tmp_path / "samples_results.jsonl"
  assert summary["results_file"] == str(out)
  lines = [json.loads(l) for l in out.read_text().splitlines()]
  assert len(lines) == 9 and lines[0]["task_id"] == "HumanEval/0" and lines[0]["passed"]
  assert [l["passed"] for l in lines] == [True, True, False, True, False, False, True, False,
                                         False]
  assert set(lines[0]) >= {"completion", "passed", "pass_fraction", "statuses", "isolation"}
  assert lines[0]["statuses"] == ["pass"] and lines[0]["isolation"] in ("bwrap", "rlimits")


def test_apps_problem_id_solutions_and_graded_reward(tmp_path, capsys):
  data = _jsonl(tmp_path / "apps.jsonl", [
      {"problem_id": 7, "question": "Print a+b.", "solutions": json.dumps(["print(3)"]),
       "input_output": json.dumps({"inputs": ["1 2\n", "2 2\n"], "outputs": ["3\n", "4\n"]}),
       "starter_code": "", "difficulty": "introductory"},
      {"problem_id": 8, "question": "Add.", "solutions": json.dumps(["x"]),
       "input_output": json.dumps({"inputs": [[1, 2], [2, 2]], "outputs": [[3], [4]],
                                   "fn_name": "add"}),
       "starter_code": "def add(a, b):\n", "difficulty": "interview"}])
  samples = _jsonl(tmp_path / "s.jsonl", [
      {"problem_id": 7, "solution": "a, b = map(int, input().split())\nprint(a + b)\n"},
      {"problem_id": 8, "completion": "    return 3\n"},                   # one test of two
  ])
  out = tmp_path / "r.jsonl"
  cli.main(["--benchmark", "apps", "--data", str(data), "--samples", str(samples),
            "--k", "1", "--out", str(out), "--no-progress", "--workers", "1"])
  summary = _summary(capsys)
  assert summary["pass@1"] == pytest.approx(0.5)
  assert summary["test_case_average"] == pytest.approx(0.75)
  assert summary["strict_accuracy"] == pytest.approx(0.5)
  results = [json.loads(l) for l in out.read_text().splitlines()]
  assert results[1]["statuses"] == ["pass", "fail"] and results[1]["pass_fraction"] == 0.5


def test_references_mode_and_bad_samples(tmp_path, capsys):
  out = tmp_path / "refs.jsonl"
  cli.main(["--benchmark", "humaneval", "--limit", "2", "--references", "1", "--out",
            str(out), "--no-progress", "--k", "1"])
  assert _summary(capsys)["pass@1"] == 1.0
  wrong = _jsonl(tmp_path / "wrong.jsonl", [{"task_id": "HumanEval/999", "completion": ""}])
  assert cli.main(["--benchmark", "humaneval", "--samples", str(wrong),
                   "--no-progress"]) == 2
  assert f"error: {wrong} row 1: task 'HumanEval/999'" in capsys.readouterr().err
  no_code = _jsonl(tmp_path / "nocode.jsonl", [{"task_id": "HumanEval/0", "text": ""}])
  assert cli.main(["--benchmark", "humaneval", "--samples", str(no_code),
                   "--no-progress"]) == 2
  assert "nocode.jsonl row 1: needs one of the fields" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    cli.main(["--benchmark", "humaneval", "--samples", str(wrong), "--k", "0"])
  with pytest.raises(SystemExit):
    cli.main(["--benchmark", "humaneval", "--samples", str(wrong), "--max-tests", "2"])


def test_synthetic_references(tmp_path, capsys, monkeypatch):
  monkeypatch.setenv("RESTRL_CACHE", str(tmp_path))
  cli.main(["--benchmark", "synthetic", "--split", "test", "--limit", "4", "--references",
            "1", "--k", "1", "--out", str(tmp_path / "r.jsonl"), "--no-progress"])
  summary = _summary(capsys)
  assert summary["num_samples"] == 4 and summary["pass@1"] == 1.0
