"""Loaders: APPS (JSON lines and folders), HumanEval, MBPP, BigCodeBench, registry, errors."""
import json
import sys
import types

import pytest

from restrl_jax.data import io, registry
from restrl_jax.data.apps import load_apps
from restrl_jax.data.bigcodebench import load_bigcodebench
from restrl_jax.data.humaneval import load_humaneval
from restrl_jax.data.mbpp import load_mbpp
from restrl_jax.data.problem import Problem

DATA = io.shared_data_dir()
needs_data = pytest.mark.skipif(not (DATA / "mbpp.jsonl").is_file(),
                                reason=f"shared data not found at {DATA}")


@needs_data
def test_apps_sample_jsonl():
  problems = load_apps(DATA / "apps_sample.jsonl")
  assert len(problems) == 102
  call = [p for p in problems if p.tests.kind == "call"]
  assert len(call) == 8 and all(p.starter_code.lstrip().startswith("class Solution") for p in call)
  assert all(p.entry_point == p.tests.fn_name for p in call)
  stdin = [p for p in problems if p.tests.kind == "stdio"]
  assert all(p.entry_point is None and p.starter_code == "" for p in stdin)
  counts = {d: sum(p.metadata["difficulty"] == d for p in problems)
            for d in ("introductory", "interview", "competition")}
  assert counts == {"introductory": 34, "interview": 34, "competition": 34}
  first = problems[0]
  assert first.id == "apps/2000" and first.source == "apps" and len(first.tests.inputs) == 19
  assert first.prompt.startswith("Codefortia is a small island")
  assert len(first.solutions) == 1 and "heapq" in first.solutions[0]
  assert len(load_apps(DATA / "apps_sample.jsonl", limit=5, max_tests=2)[4].tests.inputs) <= 2
  intro = load_apps(DATA / "apps_sample.jsonl", difficulties=["introductory"])
  assert len(intro) == 34


def _apps_row(pid, **over):
  row = {"problem_id": pid, "question": f"Q{pid}", "solutions": json.dumps(["print(1)"]),
         "input_output": json.dumps({"inputs": ["\n"], "outputs": ["1\n"]}),
         "difficulty": "interview", "url": "u", "starter_code": ""}
  row.update(over)
  return row


def _write_jsonl(path, rows):
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return path


def test_malformed_rows_are_skipped_with_counted_warnings(tmp_path):
  path = _write_jsonl(tmp_path / "apps.jsonl", [
      _apps_row(1),
      _apps_row(2, input_output="{not json"),
      _apps_row(3, solutions="[]"),
      _apps_row(4, input_output=json.dumps({"inputs": [], "outputs": []})),
      _apps_row(5)])
  with pytest.warns(io.SkippedRowWarning) as record:
    problems = load_apps(path)
  assert [p.id for p in problems] == ["apps/1", "apps/5"]
  messages = [str(w.message) for w in record]
  assert any("apps.jsonl row 2" in m and "input_output" in m for m in messages)
  assert any("apps.jsonl row 3" in m and "empty solution list" in m for m in messages)
  assert any("apps.jsonl row 4" in m for m in messages)
  assert any("skipped 3 malformed row(s) of 5" in m for m in messages)
  with pytest.warns(io.SkippedRowWarning):
    assert len(load_apps(path, require_solutions=False)) == 3


def test_wrong_schema_stops_naming_file_row_and_field(tmp_path):
  path = _write_jsonl(tmp_path / "wrong.jsonl", [{"problem_id": 1, "question": "q"}])
  with pytest.raises(io.SchemaError, match=r"wrong.jsonl row 1: missing field 'input_output'"):
    load_apps(path)
  mbpp_file = _write_jsonl(tmp_path / "m.jsonl", [_apps_row(1)])
  with pytest.raises(io.SchemaError, match="missing field 'task_id'"):
    load_mbpp(mbpp_file)
  bad_json = tmp_path / "bad.jsonl"
  good = {"task_id": 1, "text": "t", "code": "def f():\n  return 1",
          "test_list": ["assert f() == 1"]}
  bad_json.write_text(json.dumps(good) + "\n{oops\n")
  with pytest.raises(io.SchemaError, match="bad.jsonl row 2: not valid JSON"):
    load_mbpp(bad_json)
  with pytest.raises(io.SchemaError, match="missing.jsonl: no such data file"):
    load_mbpp(tmp_path / "missing.jsonl")


def test_apps_folder_layout(tmp_path):
  for pid, fn in (("0000", None), ("0001", "solve")):
    folder = tmp_path / "test" / pid
    folder.mkdir(parents=True)
    (folder / "question.txt").write_text(f"question {pid}")
    io_spec = {"inputs": [[1, 2]], "outputs": [[3]]} if fn else {"inputs": ["1 2\n"],
                                                                  "outputs": ["3\n"]}
    if fn:
      io_spec["fn_name"] = fn
      (folder / "starter_code.py").write_text("def solve(a, b):\n")
    (folder / "input_output.json").write_text(json.dumps(io_spec))
    (folder / "solutions.json").write_text(json.dumps(["print(3)"]))
    (folder / "metadata.json").write_text(json.dumps({"difficulty": "interview", "url": "x"}))
  broken = tmp_path / "test" / "0002"
  broken.mkdir()
  (broken / "question.txt").write_text("no tests here")
  with pytest.warns(io.SkippedRowWarning) as record:
    problems = load_apps(tmp_path, split="test")
  assert "0002: skipped" in str(record[0].message)
  assert [p.id for p in problems] == ["apps/0", "apps/1"]
  assert problems[0].tests.kind == "stdio" and problems[0].tests.outputs == ("3\n",)
  assert problems[1].tests.kind == "call" and problems[1].tests.fn_name == "solve"
  assert problems[1].starter_code == "def solve(a, b):\n"
  assert problems[1].metadata["difficulty"] == "interview"


def test_humaneval_bundled_file():
  problems = load_humaneval()
  assert len(problems) == 164
  first = problems[0]
  assert first.id == "HumanEval/0" and first.entry_point == "has_close_elements"
  assert first.tests.kind == "check" and "def check(candidate)" in first.tests.source
  assert first.starter_code == first.prompt and first.solutions[0].startswith(first.prompt)


@needs_data
def test_mbpp_file():
  problems = load_mbpp()
  assert len(problems) == 974
  first = problems[0]
  assert first.id == "mbpp/1" and first.entry_point == "min_cost"
  assert first.tests.kind == "assert" and len(first.tests.asserts) == 3
  assert "\r" not in first.solutions[0]
  assert first.prompt.startswith("Write a function to find the minimum cost path")
  assert "Your code should pass these tests:\nassert min_cost(" in first.prompt
  assert sum(p.entry_point is None for p in problems) <= 5
  with_challenge = load_mbpp(include_challenge=True, limit=20)
  assert sum(len(p.tests.asserts) for p in with_challenge) >= 60


BCB_ROWS = [
    {"task_id": "BigCodeBench/0", "instruct_prompt": "Write f that adds one.",
     "code_prompt": "import math\ndef task_func(x):\n", "entry_point": "task_func",
     "canonical_solution": "    return x + 1\n", "libs": "['math']",
     "test": "import unittest\nclass TestCases(unittest.TestCase):\n"
             "  def test_one(self):\n    self.assertEqual(task_func(1), 2)\n"},
    {"task_id": "BigCodeBench/1", "instruct_prompt": "p", "code_prompt": "def task_func():\n",
     "entry_point": "task_func", "test": "   "},
]


def test_bigcodebench_json_list_and_jsonl(tmp_path):
  listed = tmp_path / "data.json"
  listed.write_text(json.dumps(BCB_ROWS))
  with pytest.warns(io.SkippedRowWarning) as record:
    problems = load_bigcodebench(listed)
  assert "data.json row 2: skipped (empty test)" in str(record[0].message)
  assert len(problems) == 1
  p = problems[0]
  assert p.prompt == "Write f that adds one." and p.starter_code.endswith("def task_func(x):\n")
  assert p.tests.kind == "unittest" and p.tests.entry_point == "task_func"
  assert p.solutions == ("import math\ndef task_func(x):\n    return x + 1\n",)
  lines = _write_jsonl(tmp_path / "bcb.jsonl", BCB_ROWS[:1])
  assert load_bigcodebench(lines)[0] == p


def test_hub_name_needs_datasets_and_network(monkeypatch):
  monkeypatch.setitem(sys.modules, "datasets", None)
  with pytest.raises(ImportError, match="pip install datasets"):
    load_apps("codeparrot/apps")

  def offline(name, split=None, **kwargs):
    raise ConnectionError("Couldn't reach 'codeparrot/apps' on the Hub (LocalEntryNotFoundError)")
  monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=offline))
  with pytest.raises(ConnectionError, match="'codeparrot/apps' .split 'test'.; the machine may"):
    load_apps("codeparrot/apps")
  rows = [{"task_id": 5, "text": "t", "code": "def f():\n  return 1", "test_list": ["assert f()"]}]
  monkeypatch.setitem(sys.modules, "datasets",
                      types.SimpleNamespace(load_dataset=lambda name, split: rows))
  [problem] = load_mbpp("google-research-datasets/mbpp")
  assert problem.id == "mbpp/5" and problem.entry_point == "f"


def test_registry_and_problem_json_roundtrip():
  assert set(registry.LOADERS) == {"apps", "humaneval", "humanevalplus", "mbpp", "mbppplus",
                                   "bigcodebench", "synthetic"}
  with pytest.raises(KeyError, match="unknown benchmark 'nope'"):
    registry.load_problems("nope")
  problems = registry.load_problems("humaneval", limit=3)
  assert len(problems) == 3
  for p in problems:
    again = Problem.from_json(json.loads(json.dumps(p.to_json())))
    assert again == p


def test_synthetic_is_lazy(monkeypatch, tmp_path):
  monkeypatch.setenv("RESTRL_CACHE", str(tmp_path))
  assert "restrl_jax.data.synthetic" not in registry.LOADERS.values()
  with pytest.raises(ValueError, match="takes no --data"):
    registry.load_problems("synthetic", "some/path")
  problems = registry.load_problems("synthetic", split="test", limit=4)
  assert 0 < len(problems) <= 4 and all(isinstance(p, Problem) for p in problems)
