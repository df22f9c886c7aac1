"""What a program is tested against, and what the sandbox reports back.

`TestSuite` is the one description of "the tests of a problem" shared by the data loaders (which
build it) and the sandbox (which runs it). It is plain data (JSON-serialisable) so it can cross
process boundaries to sandboxed workers.

Kinds:
  stdio     APPS standard-input problems: feed `inputs[i]` on stdin, compare stdout with
            `outputs[i]` using APPS' tolerant comparison.
  call      call-based problems (APPS `fn_name`, MBPP+): call `fn_name(*inputs[i])` (or
            `Solution().fn_name`) and compare with `outputs[i]`: `match="apps"` uses APPS' rules,
            `match="exact"` EvalPlus' (equality; floats within `atol`, 1e-6 when atol is 0).
  assert    MBPP: `setup_code` then each statement of `asserts` is one test.
  check     HumanEval: `source` defines `check(candidate)`; called with `entry_point`; one test.
  unittest  BigCodeBench: `source` defines `unittest.TestCase` classes; each test method is a test.
"""
from __future__ import annotations

import dataclasses
from typing import Any

KINDS = ("stdio", "call", "assert", "check", "unittest")
STATUSES = ("pass", "fail", "error", "timeout", "skipped")
MATCHES = ("apps", "exact")


@dataclasses.dataclass(frozen=True)
class TestSuite:
  __test__ = False  # not a pytest test class
  kind: str
  inputs: tuple[Any, ...] = ()
  outputs: tuple[Any, ...] = ()
  fn_name: str | None = None
  asserts: tuple[str, ...] = ()
  setup_code: str = ""
  source: str = ""
  entry_point: str | None = None
  atol: float = 0.0
  timeout_s: float = 4.0
  match: str = "apps"

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"TestSuite.kind must be one of {KINDS}, got {self.kind!r}")
    if self.kind in ("stdio", "call") and len(self.inputs) != len(self.outputs):
      raise ValueError(
          f"TestSuite({self.kind}): {len(self.inputs)} inputs but {len(self.outputs)} outputs")
    if self.kind == "call" and not self.fn_name:
      raise ValueError("TestSuite(call) needs fn_name")
    if self.kind in ("check", "unittest") and not self.source:
      raise ValueError(f"TestSuite({self.kind}) needs source")
    if self.kind == "check" and not self.entry_point:
      raise ValueError("TestSuite(check) needs entry_point")
    if self.match not in MATCHES:
      raise ValueError(f"TestSuite.match must be one of {MATCHES}, got {self.match!r}")
    if not self.timeout_s > 0:
      raise ValueError(f"TestSuite.timeout_s must be positive, got {self.timeout_s!r}")

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, d: dict[str, Any]) -> "TestSuite":
    d = dict(d)
    for key in ("inputs", "outputs", "asserts"):
      if key in d:
        d[key] = tuple(d[key])
    return cls(**d)


@dataclasses.dataclass(frozen=True)
class ExecResult:
  """Outcome of running one program against one TestSuite."""
  statuses: tuple[str, ...]          # one per test, from STATUSES
  isolation: str                     # isolation level in force, e.g. "bwrap" or "rlimits"
  detail: str = ""                   # short diagnostic (compile error, timeout, ...)

  @property
  def num_tests(self) -> int:
    return len(self.statuses)

  @property
  def passed(self) -> tuple[bool, ...]:
    return tuple(s == "pass" for s in self.statuses)

  @property
  def reward(self) -> float:
    """Fraction of tests passed (the paper's graded reward), 0 for an empty suite."""
    return sum(self.passed) / len(self.statuses) if self.statuses else 0.0

  @property
  def strict(self) -> bool:
    """All tests passed (APPS strict accuracy)."""
    return bool(self.statuses) and all(self.passed)
