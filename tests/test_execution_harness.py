"""Harnesses of the sandbox: every TestSuite kind on right and wrong programs, comparisons, limits."""
import json
import os
import pathlib

import pytest

from restrl_jax.execution import ExecutionPool, Limits, TestSuite, compare, jobs, plain

ADD = "def add(a, b):\n  return a + b\n"
ADD_WRONG = "def add(a, b):\n  return a - b\n"
STDIO_ADD = "a, b = map(int, input().split())\nprint(a + b)\n"


@pytest.fixture(scope="module")
def pool():
  with ExecutionPool(num_workers=2, limits=Limits(memory_mb=1024, program_timeout_s=20)) as p:
    yield p


def _shared_data() -> pathlib.Path:
  env = os.environ.get("RESTRL_SHARED_DATA")
  return pathlib.Path(env) if env else pathlib.Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def test_every_kind_right_and_wrong(pool):
  stdio = TestSuite("stdio", inputs=("1 2\n", "3 4\n", "10 -3\n"), outputs=("3\n", "7\n", "7\n"))
  call = TestSuite("call", inputs=([1, 2], [3, 4]), outputs=(3, 7), fn_name="add")
  asserts = TestSuite("assert", asserts=("assert add(1, 2) == 3", "assert add(2, 2) == 4",
                                         "assert add(5, 0) == 5"))
  check = TestSuite("check", source="def check(c):\n  assert c(1, 2) == 3\n  assert c(0, 0) == 0\n",
                    entry_point="add")
  ut = TestSuite("unittest", source=(
      "import unittest\nclass T(unittest.TestCase):\n"
      "  def test_a(self): self.assertEqual(add(1, 2), 3)\n"
      "  def test_b(self): self.assertEqual(add(2, 2), 4)\n"
      "  def test_c(self): self.assertEqual(add(2, 0), 2)\n"))
  suites = [stdio, call, asserts, check, ut]
  right = pool.run([STDIO_ADD, ADD, ADD, ADD, ADD], suites)
  assert [r.statuses for r in right] == [("pass",) * 3, ("pass",) * 2, ("pass",) * 3, ("pass",),
                                         ("pass",) * 3]
  assert all(r.strict and r.reward == 1.0 and r.isolation == pool.isolation for r in right)
  wrong = pool.run([STDIO_ADD.replace("a + b", "a * b"), ADD_WRONG, ADD_WRONG, ADD_WRONG,
                    ADD_WRONG], suites)
  # a*b: 1*2=2 (3), 3*4=12 (7), 10*-3 (7) -> 0/3; a-b: add(5,0)=5 and add(2,0)=2 still pass
  assert [r.statuses for r in wrong] == [("fail",) * 3, ("fail",) * 2, ("fail", "fail", "pass"),
                                         ("fail",), ("fail", "fail", "pass")]
  assert wrong[2].reward == pytest.approx(1 / 3) and not wrong[2].strict
  assert wrong[4].reward == pytest.approx(1 / 3)


def test_fractional_unittest_and_errors(pool):
  source = ("import unittest\nclass Base(unittest.TestCase):\n"
            "  def test_shared(self): self.assertTrue(task_func(2) == 4)\n"
            "class T(Base):\n"
            "  def test_one(self): self.assertEqual(task_func(1), 1)\n"
            "  def test_raise(self):\n    with self.assertRaises(ValueError): task_func(-1)\n"
            "  def test_big(self): self.assertEqual(task_func(10), 100)\n"
            "  def helper(self): pass\n")
  suite = TestSuite("unittest", source=source)
  assert jobs.unittest_names(source) == ("Base.test_shared", "T.test_big", "T.test_one",
                                         "T.test_raise", "T.test_shared")
  program = "def task_func(x):\n  if x < 0: raise ValueError\n  return x * x if x < 5 else 0\n"
  [res] = pool.run([program], [suite])
  assert res.statuses == ("pass", "fail", "pass", "pass", "pass")
  assert res.reward == pytest.approx(0.8)
  [crash] = pool.run(["def task_func(x):\n  return 1 / 0\n"], [suite])
  assert crash.statuses[0] == "error" and crash.reward == 0.0


def test_call_based_solution_class_and_header(pool):
  suite = TestSuite("call", inputs=([[3, 1, 2]], [[5]]), outputs=([[1, 2, 3]], [[5]]),
                    fn_name="sortIt")
  program = ("class Solution:\n  def sortIt(self, nums: List[int]) -> List[int]:\n"
             "    return sorted(nums)\n")
  tuples = "def sortIt(nums):\n  return tuple(sorted(nums))\n"  # APPS: tuples compare as lists
  numpy_prog = "def sortIt(nums):\n  return np.sort(np.array(nums))\n"  # header imports numpy
  res = pool.run([program, tuples, numpy_prog, "def sortIt(nums):\n  return nums\n"], [suite] * 4)
  assert [r.statuses for r in res] == [("pass", "pass")] * 3 + [("fail", "pass")]


def test_programs_can_import_the_standard_library_and_numpy(pool):
  program = ("import csv, sqlite3, decimal, glob, socket, ctypes, json, heapq, numpy\n"
             "def f(x):\n  return int(numpy.array([x]).sum()) + len(csv.list_dialects()) * 0\n")
  suite = TestSuite("call", inputs=([3],), outputs=(3,), fn_name="f", match="exact")
  assert pool.run([program], [suite])[0].statuses == ("pass",)


def test_exact_match_mode_and_atol(pool):
  exact = TestSuite("call", inputs=([2],), outputs=([4],), fn_name="f", match="exact")
  floats = TestSuite("call", inputs=([1.0],), outputs=(0.3333333,), fn_name="g", match="exact",
                     atol=1e-4)
  res = pool.run(["def f(x):\n  return 4\n", "def f(x):\n  return [4]\n",
                  "def g(x):\n  return x / 3\n", "def g(x):\n  return x / 2\n"],
                 [exact, exact, floats, floats])
  assert [r.statuses for r in res] == [("fail",), ("pass",), ("pass",), ("fail",)]


def test_judged_test_timeout_then_recovery(pool):
  suite = TestSuite("assert", asserts=("assert f(0) == 0", "assert f(1) == 1", "assert f(2) == 2"),
                    timeout_s=0.5)
  check = TestSuite("check", source="def check(c):\n  while c(1): pass\n", entry_point="f",
                    timeout_s=0.5)
  program = "def f(x):\n  while x == 1:\n    pass\n  return x\n"
  res = pool.run([program, "def f(x):\n  return True\n"], [suite, check])
  assert res[0].statuses == ("pass", "timeout", "pass")
  assert res[1].statuses == ("timeout",)  # the judge's own loop is bounded too


def test_per_test_timeout_then_recovery(pool):
  suite = TestSuite("call", inputs=([0], [1], [2]), outputs=(0, 1, 2), fn_name="f", timeout_s=0.5)
  program = "import time\ndef f(x):\n  if x == 1:\n    time.sleep(30)\n  return x\n"
  stdio = TestSuite("stdio", inputs=("0\n", "1\n"), outputs=("0\n", "1\n"), timeout_s=0.5)
  stdio_prog = "import time\nx = int(input())\nif x: time.sleep(30)\nprint(x)\n"
  res = pool.run([program, stdio_prog], [suite, stdio])
  assert res[0].statuses == ("pass", "timeout", "pass")
  assert res[1].statuses == ("pass", "timeout")


def test_program_time_limit_marks_the_rest():
  limits = Limits(program_timeout_s=1.0)
  suite = TestSuite("stdio", inputs=("1\n",) * 5, outputs=("1\n",) * 5, timeout_s=0.6)
  with ExecutionPool(num_workers=1, limits=limits) as small:
    [res] = small.run(["import time\ntime.sleep(0.45)\nprint(input())\n"], [suite])
  assert res.statuses[:2] == ("pass", "pass") and set(res.statuses[2:]) <= {"timeout", "pass"}
  assert "timeout" in res.statuses


def test_mbpp_setup_code_and_objects_of_program_classes(pool):
  node = ("class Node:\n  def __init__(self, v):\n    self.v, self.left, self.right = v, None, None\n"
          "def depth(n):\n  return 0 if n is None else 1 + max(depth(n.left), depth(n.right))\n")
  suite = TestSuite("assert", setup_code="root = Node(1)\nroot.left = Node(2)\n",
                    asserts=("assert depth(root) == 2", "assert depth(None) == 0"))
  wrong = node.replace("1 + max", "2 + max")
  res = pool.run([node, wrong], [suite, suite])
  assert res[0].statuses == ("pass", "pass")
  assert res[1].statuses == ("fail", "pass")


def test_real_data_reference_solutions(pool):
  data = _shared_data()
  if not data.is_dir():
    pytest.skip(f"shared data not found at {data}")
  rows = [json.loads(line) for line in (data / "mbpp.jsonl").read_text().splitlines()[:40]]
  programs = [r["code"].replace("\r\n", "\n") for r in rows]
  suites = [TestSuite("assert", asserts=tuple(r["test_list"]) if isinstance(r["test_list"], list)
                      else tuple(eval(r["test_list"])), setup_code=r["test_setup_code"])  # noqa
            for r in rows]
  res = pool.run(programs, suites)
  assert sum(r.strict for r in res) >= 38, [(r["task_id"], x) for r, x in zip(rows, res)
                                            if not x.strict]
  apps = [json.loads(line) for line in (data / "apps_sample.jsonl").read_text().splitlines()]
  intro = [a for a in apps if a["difficulty"] == "introductory"]
  is_call = lambda a: "fn_name" in json.loads(a["input_output"])  # noqa: E731
  picked = [a for a in intro if not is_call(a)][:8] + [a for a in intro if is_call(a)][:6]
  programs, suites = [], []
  for a in picked:
    io = json.loads(a["input_output"])
    kind = "call" if io.get("fn_name") else "stdio"
    suites.append(TestSuite(kind, inputs=tuple(io["inputs"][:5]), outputs=tuple(io["outputs"][:5]),
                            fn_name=io.get("fn_name")))
    programs.append(json.loads(a["solutions"])[0])
  res = pool.run(programs, suites)
  assert sum(r.strict for r in res) >= 12, [(a["problem_id"], r) for a, r in zip(picked, res)]
  assert {s.kind for s in suites} == {"call", "stdio"}


@pytest.mark.parametrize("stdout,expected,ok", [
    ("3\n", "3\n", True),
    ("  3  \n\n", "3", True),                       # stripped text
    ("1 2\n3\n", "1 2 \n 3\n", True),               # per-line whitespace
    ("1\n\n2\n", "1\n2\n", True),                   # blank lines dropped
    ("0.3333333\n", "0.333333333\n", True),         # float lines within allclose
    ("0.5\n", "0.6\n", False),
    ("b a\nc\n", "a b\nc\n", True),                 # line-wise token sets
    ("1.0001 2\n", "1.0 2.0\n", True),              # tokens rounded to 3 decimals
    ("1.01\n", "1.0\n", False),
    ("YES\n", "NO\n", False),
    ("", "0\n", False),
    ("1\n2\n", ["1", "2"], True),                   # expected given as a list of lines
])
def test_apps_tolerant_stdio_compare(stdout, expected, ok):
  assert compare.stdio_match(stdout, expected) is ok


def test_call_compare_rules():
  assert compare.call_match((1, 2), [1, 2], "apps")
  assert compare.call_match(5, [5], "apps")                    # APPS: singleton list wraps
  assert not compare.call_match(5, [5], "exact")
  assert compare.call_match([(1, 2)], [[[1, 2]]], "apps")
  assert compare.call_match(0.1 + 0.2, 0.3, "exact")           # atol 0 -> 1e-6 for floats
  assert not compare.call_match(0.31, 0.3, "exact", atol=1e-3)
  assert compare.call_match([1.0, 2.00001], [1.0, 2.0], "exact", atol=1e-4)
  assert not compare.call_match("1.0", 1.0, "exact", atol=0.5)
  with pytest.raises(ValueError, match="match mode"):
    compare.call_match(1, 1, "fuzzy")


def test_plain_data_round_trip_and_refusals():
  value = {"a": (1, 2.5, None), 3: {frozenset({1}), "x"}, "b": [b"\x00", 1j, float("inf")]}
  assert plain.decode(json.loads(json.dumps(plain.encode(value)))) == value
  class Always:  # pylint: disable=too-few-public-methods
    def __eq__(self, other):
      return True
  class MyInt(int):
    pass
  for bad in (Always(), MyInt(3), [1, Always()], {"k": MyInt(1)}, type("S", (str,), {})("s")):
    with pytest.raises(plain.NotPlain):
      plain.encode(bad)
  deep = []
  for _ in range(200):
    deep = [deep]
  with pytest.raises(plain.NotPlain, match="deeply"):
    plain.encode(deep)


def test_bad_input_errors(pool):
  with pytest.raises(ValueError, match="kind"):
    TestSuite("fuzz")
  with pytest.raises(ValueError, match="entry_point"):
    TestSuite("check", source="def check(c): pass")
  with pytest.raises(ValueError, match="timeout_s"):
    TestSuite("stdio", timeout_s=0)
  with pytest.raises(ValueError, match="no unittest.TestCase"):
    pool.run(["x = 1"], [TestSuite("unittest", source="def test_a(): pass")])
  with pytest.raises(ValueError, match="does not parse"):
    pool.run(["x = 1"], [TestSuite("unittest", source="class (:")])
  with pytest.raises(ValueError, match="one suite per program"):
    pool.run(["x = 1", "y = 2"], [TestSuite("check", source="def check(c): pass",
                                            entry_point="f")])
  with pytest.raises(TypeError, match="program must be a str"):
    pool.run([b"x"], [TestSuite("check", source="def check(c): pass", entry_point="f")])
  with pytest.raises(ValueError, match="isolation"):
    ExecutionPool(isolation="docker")
  with pytest.raises(ValueError, match="Limits.memory_mb"):
    Limits(memory_mb=0)


def test_submit_returns_future_and_order(pool):
  suite = TestSuite("call", inputs=([1],), outputs=(1,), fn_name="f")
  programs = [f"import time\ndef f(x):\n  time.sleep({0.2 if i == 0 else 0})\n  return x * {i % 2}\n"
              for i in range(6)]
  future = pool.submit(programs, [suite] * 6)
  res = future.result(timeout=60)
  assert [r.statuses[0] for r in res] == ["fail", "pass"] * 3
  assert pool.submit([], []).result() == []
