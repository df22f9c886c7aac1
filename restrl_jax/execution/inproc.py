"""In-process tests: BigCodeBench `unittest` sources, and asserts the judge cannot stand in for.

Here the test code must run in the candidate's own process (tests inspect DataFrames, mock
modules, use objects of classes the program defines), so the verdict is reported by that process.
Defences, weaker than the judge's (documented in `execution/__init__.py`):
  * each test is started by a request carrying a fresh random nonce the zygote draws only after
    the program's top level has finished; a reply counts only if it carries that nonce, so output
    printed or written early ("passed", fake replies, exiting before the tests) earns nothing, and
    a test with no reply is a failure;
  * before the first test and after each one the runner compares the interpreter's integrity
    (builtins, the unittest classes, trace/profile hooks, its own code objects) with a snapshot
    taken before the program ran; once tampering is seen, every later test is an error.
"""
import builtins
import sys
import unittest

from restrl_jax.execution import program_server, wire


def _fingerprint() -> tuple:
  watched = [builtins.__dict__, unittest.TestCase.__dict__, unittest.TestResult.__dict__,
             unittest.TestSuite.__dict__, sys.modules]
  ids = tuple(tuple(sorted((str(k), id(v)) for k, v in list(d.items())
                           if d is not sys.modules or k in ("unittest", "builtins", "sys")))
              for d in watched)
  codes = tuple(id(f.__code__) for f in (_fingerprint, _run_case, _run_test, inproc_role))
  return ids, codes, sys.gettrace(), sys.getprofile()


def _run_case(namespace: dict, name: str) -> str:
  cls_name, _, method = name.partition(".")
  cls = namespace.get(cls_name)
  if not (isinstance(cls, type) and issubclass(cls, unittest.TestCase)):
    return "error"
  result = unittest.TestResult()
  unittest.TestSuite([cls(method)]).run(result)
  if result.failures:
    return "fail"
  if result.errors or result.testsRun != 1:
    return "error"
  if result.skipped or result.expectedFailures or result.unexpectedSuccesses:
    return "skipped"
  return "pass"


def _run_test(job: dict, namespace: dict, i: int) -> str:
  test = job["tests"][i]
  try:
    if job["kind"] == "unittest":
      return _run_case(namespace, test)
    if job["kind"] == "check":
      namespace["check"](namespace[job["entry_point"]])
    else:
      exec(compile(test, f"<assert {i}>", "exec"), namespace)  # pylint: disable=exec-used
    return "pass"
  except AssertionError:
    return "fail"
  except BaseException:  # pylint: disable=broad-except
    return "error"


def _prepare(job: dict) -> dict:
  namespace = program_server.run_program(job["program"], False, program_server.PROGRAM_MODULE)
  prelude = job.get("setup_code", "") if job["kind"] == "assert" else job["source"]
  exec(compile(prelude, "<test>", "exec"), namespace)  # pylint: disable=exec-used
  return namespace


def inproc_role(job: dict, fd_in: int, fd_out: int) -> None:
  snapshot = _fingerprint()
  try:
    namespace = _prepare(job)
  except BaseException as exc:  # pylint: disable=broad-except
    wire.send(fd_out, {"ready": False, "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
    return
  tampered = _fingerprint() != snapshot
  wire.send(fd_out, {"ready": True})
  while True:
    try:
      request = wire.recv(fd_in)
    except wire.WireError:
      return
    status = "error" if tampered else _run_test(job, namespace, int(request["i"]))
    tampered = tampered or _fingerprint() != snapshot
    wire.send(fd_out, {"nonce": request["nonce"], "status": "error" if tampered else status})
