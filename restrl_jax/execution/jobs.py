"""Host side of one execution: TestSuite -> job for the zygote, zygote reply -> ExecResult.

What a sandbox receives is only what its children need: inputs for stdio/call suites (expected
outputs stay on the host, where `compare` judges the plain data that comes back), the assert
statements / `check` source for the judge, the unittest source for in-process runs.
"""
from __future__ import annotations

import ast
import dataclasses
import math
from typing import Any

from restrl_jax.execution import compare, plain
from restrl_jax.execution.spec import STATUSES, ExecResult, TestSuite

MODES = {"stdio": "stdio", "call": "call", "assert": "judged", "check": "judged",
         "unittest": "inproc"}


@dataclasses.dataclass(frozen=True)
class Limits:
  """Per-program resource limits (applied to every process a program or its judge starts)."""
  memory_mb: int = 2048            # RLIMIT_AS
  program_timeout_s: float = 60.0  # wall clock for all tests of one program
  max_output_bytes: int = 8 << 20  # stdout of one stdio test; more is an error
  file_size_mb: int = 64           # RLIMIT_FSIZE
  max_processes: int = 32          # RLIMIT_NPROC: a program's processes and threads
  max_open_files: int = 256        # RLIMIT_NOFILE

  def __post_init__(self):
    for field in dataclasses.fields(self):
      if not getattr(self, field.name) > 0:
        raise ValueError(f"Limits.{field.name} must be positive, got {getattr(self, field.name)!r}")

  def rlimits(self) -> dict[str, int]:
    return {"as_bytes": self.memory_mb << 20, "cpu_s": math.ceil(self.program_timeout_s) + 1,
            "fsize_bytes": max(self.file_size_mb << 20, self.max_output_bytes + 1),
            "nproc": self.max_processes, "nofile": self.max_open_files, "core_bytes": 0}


def _is_test_case(base: ast.expr, known: set[str]) -> bool:
  name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", None)
  return name in ("TestCase", "IsolatedAsyncioTestCase") or name in known


def unittest_names(source: str) -> tuple[str, ...]:
  """`Class.method` of every test method of the TestCase classes defined at module level."""
  try:
    tree = ast.parse(source)
  except SyntaxError as err:
    raise ValueError(f"TestSuite(unittest): source does not parse: {err}") from None
  classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
  cases: dict[str, list[str]] = {}
  for name, node in classes.items():  # module order: bases come first
    if any(_is_test_case(b, set(cases)) for b in node.bases):
      inherited = [m for b in node.bases for m in cases.get(getattr(b, "id", ""), [])]
      own = [f.name for f in node.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))]
      cases[name] = sorted({m for m in inherited + own if m.startswith("test")})
  names = tuple(f"{c}.{m}" for c in sorted(cases) for m in cases[c])
  if not names:
    raise ValueError("TestSuite(unittest): the source defines no unittest.TestCase test methods")
  return names


def _int_keys(value: Any) -> Any:
  """APPS: JSON turned int dict keys into strings; undo that for a leading dict argument."""
  if isinstance(value, dict) and all(isinstance(k, str) and k.lstrip("-").isdigit() for k in value):
    return {int(k): v for k, v in value.items()}
  return value


def _call_args(suite: TestSuite) -> list[Any]:
  out = []
  for args in suite.inputs:
    args = list(args) if isinstance(args, (list, tuple)) else [args]
    if suite.match == "apps" and args:
      args[0] = _int_keys(args[0])
    out.append(plain.encode(args))
  return out


def child_tests(suite: TestSuite) -> list[Any]:
  if suite.kind == "stdio":
    return ["\n".join(x) if isinstance(x, list) else str(x) for x in suite.inputs]
  if suite.kind == "call":
    return _call_args(suite)
  if suite.kind == "assert":
    if not suite.asserts:
      raise ValueError("TestSuite(assert) has no asserts")
    return list(suite.asserts)
  if suite.kind == "check":
    return ["check"]
  return list(unittest_names(suite.source))


def make_job(job_id: int, program: str, suite: TestSuite, limits: Limits) -> dict[str, Any]:
  if not isinstance(program, str):
    raise TypeError(f"program must be a str, got {type(program).__name__}")
  if not isinstance(suite, TestSuite):
    raise TypeError(f"suite must be a TestSuite, got {type(suite).__name__}")
  return {"id": job_id, "mode": MODES[suite.kind], "kind": suite.kind, "program": program,
          "tests": child_tests(suite), "header": suite.kind == "stdio" or suite.match == "apps",
          "fn_name": suite.fn_name, "entry_point": suite.entry_point,
          "setup_code": suite.setup_code, "source": suite.source if suite.kind != "assert" else "",
          "timeout_s": suite.timeout_s, "program_timeout_s": limits.program_timeout_s,
          "limits": limits.rlimits(), "max_output_bytes": limits.max_output_bytes}


def _expected_output(suite: TestSuite, i: int) -> Any:
  expected = suite.outputs[i]
  if suite.match == "apps" and isinstance(expected, list) and expected:
    if isinstance(expected[0], dict):
      expected = [_int_keys(expected[0])] + expected[1:]
  return _int_keys(expected) if suite.match == "apps" else expected


def _status(suite: TestSuite, i: int, result: Any) -> str:
  if not isinstance(result, dict):
    return "error"
  status = result.get("status")
  if suite.kind == "stdio" and status == "ok":
    ok = compare.stdio_match(str(result.get("stdout", "")), suite.outputs[i], suite.match)
    return "pass" if ok else "fail"
  if suite.kind == "call" and status == "ok":
    try:
      value = plain.decode(result.get("value"))
      ok = compare.call_match(value, _expected_output(suite, i), suite.match, suite.atol)
    except Exception:  # pylint: disable=broad-except  # malformed, or e.g. Decimal('sNaN') == x
      return "error"
    return "pass" if ok else "fail"
  if status == "pass":  # only the judge and in-process runners report passes themselves
    return "pass" if suite.kind in ("assert", "check", "unittest") else "error"
  return status if status in STATUSES else "error"


def verdict(suite: TestSuite, reply: dict[str, Any], num_tests: int, isolation: str) -> ExecResult:
  """ExecResult from the zygote's reply (missing or malformed entries count as errors)."""
  results = reply.get("results") if isinstance(reply.get("results"), list) else []
  results = (results + [None] * num_tests)[:num_tests]
  statuses = tuple(_status(suite, i, r) for i, r in enumerate(results))
  detail = str(reply.get("detail") or reply.get("error") or "")[:500]
  return ExecResult(statuses=statuses, isolation=isolation, detail=detail)
