"""Running synthetic reference programs: to compute expected outputs, and to check them.

Expected outputs are computed by `restrl_jax.data.reference_outputs` (trusted reference code in
child processes, which returns values). It calls functions, so a stdin/stdout program is wrapped
into one: `run_stdio(text)` executes the program with `text` on stdin and returns what it printed.
`verify_in_sandbox` then runs every reference through the real sandbox (`restrl_jax.execution`),
the harness that scores policy samples, and requires full marks.
"""
from __future__ import annotations

from typing import Any, Sequence

from restrl_jax.data.problem import Problem

STDIO_FN = "run_stdio"
_STDIO_WRAPPER = '''
import contextlib as _contextlib
import io as _io
import sys as _sys

_SOURCE = {source!r}


def run_stdio(text):
    out, old_stdin = _io.StringIO(), _sys.stdin
    _sys.stdin = _io.StringIO(text)
    try:
        with _contextlib.redirect_stdout(out):
            exec(compile(_SOURCE, "<reference>", "exec"), {{"__name__": "__main__"}})
    finally:
        _sys.stdin = old_stdin
    return out.getvalue()
'''


def as_callable(program: str, io_kind: str) -> tuple[str, str]:
  """(program, function name) such that calling the function runs one test of `program`."""
  if io_kind == "call":
    return program, "solve"
  if io_kind == "stdio":
    return _STDIO_WRAPPER.format(source=program), STDIO_FN
  raise ValueError(f"io kind must be 'call' or 'stdio', got {io_kind!r}")


def execute(programs: Sequence[str], io_kinds: Sequence[str],
            inputs: Sequence[Sequence[Any]], timeout_s: float = 4.0) -> list[list[dict[str, Any]]]:
  """Outcomes (`{"ok": value}` or `{"error": ...}`) of trusted generated programs per test.

  `inputs[i]` holds TestSuite-form inputs: stdin texts, or argument lists of `solve`.
  """
  from restrl_jax.data import reference_outputs  # pylint: disable=import-outside-toplevel
  tasks = []
  for program, io_kind, args in zip(programs, io_kinds, inputs):
    source, fn_name = as_callable(program, io_kind)
    arg_lists = tuple(list(a) if io_kind == "call" else [a] for a in args)
    tasks.append(reference_outputs.ReferenceTask(program=source, fn_name=fn_name,
                                                 inputs=arg_lists))
  return reference_outputs.compute_outputs(tasks, timeout_s=timeout_s, chunk_size=64)


def same_output(io_kind: str, got: Any, expected: Any) -> bool:
  """Call-based: equal values; stdio: equal whitespace-separated tokens (APPS' basic rule)."""
  if io_kind == "call":
    return got == expected
  return isinstance(got, str) and got.split() == expected.split()


def local_rewards(programs: Sequence[str], problems: Sequence[Problem]) -> list[float]:
  """Fraction of tests passed by trusted generated programs (e.g. mutants), without the sandbox."""
  outcomes = execute(programs, [p.tests.kind for p in problems],
                     [p.tests.inputs for p in problems])
  rewards = []
  for problem, outs in zip(problems, outcomes):
    ok = [("ok" in o and same_output(problem.tests.kind, o["ok"], e))
          for o, e in zip(outs, problem.tests.outputs)]
    rewards.append(sum(ok) / len(ok))
  return rewards


def run_in_sandbox(programs: Sequence[str], problems: Sequence[Problem]) -> list[Any]:
  """`ExecResult`s of `programs[i]` against `problems[i].tests` in the sandbox pool."""
  from restrl_jax.execution import ExecutionPool  # pylint: disable=import-outside-toplevel
  with ExecutionPool() as pool:
    return pool.run(list(programs), [p.tests for p in problems])


def verify_in_sandbox(problems: Sequence[Problem], required: bool = True) -> None:
  """Every reference must pass all its tests in the sandbox (skipped when `required` is False)."""
  if not required or not problems:
    return
  results = run_in_sandbox([p.metadata["solution"] for p in problems], problems)
  bad = [(p.id, r.statuses, r.detail) for p, r in zip(problems, results) if not r.strict]
  if bad:
    raise RuntimeError(f"{len(bad)} synthetic reference(s) fail in the sandbox, e.g. {bad[:3]}")
