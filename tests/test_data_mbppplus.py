"""MBPP+: value codec, evalplus input types and oracle, expected outputs and their cache."""
import math

import pytest

from restrl_jax.data import (io, json_codec, mbppplus, mbppplus_oracle, mbppplus_types,
                             reference_outputs)

DATA = io.shared_data_dir()
needs_data = pytest.mark.skipif(not (DATA / "mbppplus_evalplus_767efcc.jsonl").is_file(),
                                reason=f"shared data not found at {DATA}")


def test_value_codec_round_trip_and_determinism():
  value = [(1, (2.5, "a")), {3, 4}, frozenset({"x"}), {(1, 2): [None, True]}, b"\x00\xff",
           complex(1, -2), float("inf"), -float("inf"), "s", {"k": {}}]
  back = json_codec.decode(json_codec.encode(value))
  assert back == value
  assert type(back[0]) is tuple and type(back[1]) is set and type(back[2]) is frozenset
  assert math.isnan(json_codec.decode(json_codec.encode(float("nan"))))
  encoded = json_codec.encode({"b", "a", "c"})
  assert encoded == json_codec.encode({"c", "a", "b"}) == {"__set__": ["a", "b", "c"]}
  with pytest.raises(TypeError, match="cannot encode"):
    json_codec.encode(object())
  with pytest.raises(ValueError, match="not an encoded value"):
    json_codec.decode({"plain": 1})


def test_restore_args_follows_evalplus_rules():
  restore = mbppplus_types.restore_args
  assert restore(2, [[3, 4], [5]]) == [(3, 4), (5,)]
  assert restore(63, [[[1, 2], [3, 4]]]) == [[(1, 2), (3, 4)]]
  assert restore(75, [[[1, 2]], 3]) == [[(1, 2)], 3]
  assert restore(106, [[1], [2, 3]]) == [[1], (2, 3)]
  assert restore(115, [[[1, 2], []]]) == [[{1, 2}, {}]]
  assert restore(124, [1, 2]) == [1.0, complex(2)]
  assert restore(259, [[[1, 2], [3]]]) == [((1, 2), (3,))]
  assert restore(278, [[1, [2, 3]]]) == [(1, (2, 3))]
  assert restore(307, [[1], 2, 3]) == [(1,), 2, 3]
  assert restore(722, [{"a": [1, 2]}, 5]) == [{"a": (1, 2)}, 5]
  assert restore(580, [[1, [2, [3]]]]) == [(1, (2, (3,)))]
  assert restore(11, [[1, 2], "x"]) == [[1, 2], "x"]       # no rule: unchanged


def test_oracle_rules():
  m = mbppplus_oracle.matches
  assert m((4, 5), (4, 5), 0) and not m([4, 5], (4, 5), 0)
  assert m(0.1 + 0.2, 0.3, 0) and not m(0.3001, 0.3, 0)          # floats: atol 1e-6
  assert m([1.0, 2.0000001], [1.0, 2.0], 0)
  assert m(3.14159, 3.1416, 1e-4) and not m(3.14, 3.1416, 1e-4)
  assert m(float("nan"), float("nan"), 1e-4)
  assert m("match object", True, 0, "not_none") and not m(None, True, 0, "not_none")
  assert m(None, False, 0, "not_none")
  assert m("anything", 5, 0, "always")
  assert m(0, 7, 0, "or_zero") and m(7, 7, 0, "or_zero") and not m(6, 7, 0, "or_zero")
  assert m((5, 4), (4, 5), 0, "unordered") and not m((4, 4), (4, 5), 0, "unordered")
  assert not m([4, 5], (4, 5), 0, "unordered")
  assert not m(1, "1", 0)


def _run_in_process(problem, program):
  """The assert suite run the way the sandbox's judge runs it (test helper, no sandbox)."""
  namespace = {}
  exec(program, namespace)  # pylint: disable=exec-used
  exec(problem.tests.setup_code, namespace)  # pylint: disable=exec-used
  statuses = []
  for statement in problem.tests.asserts:
    try:
      exec(statement, namespace)  # pylint: disable=exec-used
      statuses.append("pass")
    except AssertionError:
      statuses.append("fail")
  return statuses


@needs_data
def test_load_computes_outputs_and_reuses_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("RESTRL_CACHE", str(tmp_path))
  problems = mbppplus.load_mbppplus(limit=12, max_tests=6)
  assert [p.id for p in problems][:3] == ["Mbpp/2", "Mbpp/3", "Mbpp/4"]
  first = problems[0]
  assert first.source == "mbppplus" and first.entry_point == "similar_elements"
  assert first.prompt == ("Write a function to find the shared elements from the given two lists."
                          "\nassert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)")
  assert first.tests.kind == "assert" and len(first.tests.asserts) == 6
  assert first.metadata["num_base_tests"] == 3
  for p in problems:
    assert _run_in_process(p, p.solutions[0]) == ["pass"] * len(p.tests.asserts), p.id
  wrong = "def similar_elements(a, b):\n  return tuple(set(a) | set(b))\n"
  assert _run_in_process(first, wrong).count("fail") >= 3
  assert list((tmp_path).glob("mbppplus-outputs.json"))

  def no_compute(*args, **kwargs):
    raise AssertionError("outputs should come from the cache")
  monkeypatch.setattr(reference_outputs, "compute_outputs", no_compute)
  again = mbppplus.load_mbppplus(limit=12, max_tests=6)
  assert [p.tests for p in again] == [p.tests for p in problems]


def test_reference_failures_drop_tests_or_rows(tmp_path, monkeypatch):
  monkeypatch.setenv("RESTRL_CACHE", str(tmp_path))
  rows = [
      {"task_id": "Mbpp/900", "prompt": '"""\nHalve.\n"""\n', "entry_point": "half",
       "canonical_solution": "def half(x):\n  return 10 // x\n", "atol": 0,
       "base_input": [[2], [0]], "plus_input": [[5]], "assertion": "assert half(2) == 5"},
      {"task_id": "Mbpp/901", "prompt": "", "entry_point": "nope", "atol": 0,
       "canonical_solution": "def other():\n  pass\n", "base_input": [[1]], "plus_input": {}},
  ]
  path = tmp_path / "plus.jsonl"
  path.write_text("".join(__import__("json").dumps(r) + "\n" for r in rows))
  with pytest.warns(io.SkippedRowWarning) as record:
    problems = mbppplus.load_mbppplus(str(path))
  messages = " | ".join(str(w.message) for w in record)
  assert "plus.jsonl row 1: dropped 1 test(s)" in messages and "ZeroDivisionError" in messages
  assert "plus.jsonl row 2: skipped" in messages and "does not load" in messages
  assert len(problems) == 1 and len(problems[0].tests.asserts) == 2
  assert problems[0].metadata["num_base_tests"] == 1
  assert problems[0].prompt == "Halve.\nassert half(2) == 5"
