"""The judge: runs trusted test code (asserts, HumanEval `check`) outside the candidate's process.

The judge runs in the zygote (trusted, never runs candidate code, other uid than the program).
Names the program defined are replaced by stand-ins: functions become `RemoteFunction`s that call
into the program server with plain-data arguments and get plain data back (a returned value that
is not plain arrives as an inert `plain.Opaque`: identity checks work, any other use errors);
modules and library
objects the program imported are the zygote's own (already loaded) ones; plain values are copied.
Each test runs under a real-time timer. So every comparison an assert makes happens on fresh
builtin objects in a process no candidate code ever ran in: objects that compare equal to
anything cannot arrive, a monkeypatched `AssertionError` or `unittest` cannot matter, and the
expected values are never in the candidate's memory (it cannot read them from a caller's frame).

A test that needs something that cannot cross as plain data (an instance of a class the program
defines, a lambda argument, ...) is reported as "unsupported"; the zygote then runs that test in
process (see `inproc`).
"""
import signal
import sys

from restrl_jax.execution import plain, wire


class Unsupported(Exception):
  """The test needs a non-plain value to cross between the judge and the program."""


class CandidateGone(Exception):
  """The program server died or broke the protocol."""


class RemoteFunction:
  """Stand-in for a function of the program: each call is one plain-data round trip."""

  def __init__(self, name: str, channel: tuple[int, int]):
    self._name, self._channel = name, channel

  def __call__(self, *args, **kwargs):
    try:
      request = {"call": self._name, "args": plain.encode(list(args)),
                 "kwargs": plain.encode(dict(kwargs)), "opaque": True}
    except (plain.NotPlain, RecursionError) as exc:
      raise Unsupported(f"argument of {self._name}: {exc}") from None
    try:
      wire.send(self._channel[0], request)
      reply = wire.recv(self._channel[1])
      if "ok" in reply:
        return plain.decode(reply["ok"], opaque=True)
    except (wire.WireError, OSError, ValueError) as exc:
      raise CandidateGone(str(exc)) from None
    raise RuntimeError(f"{self._name} raised {reply.get('exc', 'an error')}")


class Opaque:
  """Stand-in for a program value that cannot cross (instance of a user class, ...)."""

  def __init__(self, name: str):
    object.__setattr__(self, "_name", name)

  def __getattr__(self, attr):
    raise Unsupported(f"{object.__getattribute__(self, '_name')} is not plain data")

  def __call__(self, *args, **kwargs):
    raise Unsupported(f"{object.__getattribute__(self, '_name')} is not plain data")


def _trusted_ref(module: str, qualname: str):
  obj = sys.modules[module]
  for part in qualname.split("."):
    obj = getattr(obj, part)
  return obj


def _stand_in(name: str, desc: list, channel):
  """A trusted object for a program global: only modules the zygote has already loaded are used
  (so a program cannot make the judge import anything), plain values are copied, functions are
  proxied, anything else is opaque."""
  kind = desc[0] if desc else "opaque"
  try:
    if kind == "module" and desc[1] in sys.modules:
      return sys.modules[desc[1]]
    if kind == "ref" and desc[1] in sys.modules:
      return _trusted_ref(desc[1], desc[2])
    if kind == "value":
      return plain.decode(desc[1])
  except Exception:  # pylint: disable=broad-except
    pass
  if kind in ("func", "ref"):
    return RemoteFunction(name, channel)
  return Opaque(name)


def build_namespace(summary: dict, channel: tuple[int, int]) -> dict:
  namespace = {"__name__": "__judge__", "__builtins__": __builtins__}
  for name, desc in summary.items():
    if isinstance(name, str) and name.isidentifier() and isinstance(desc, list):
      namespace[name] = _stand_in(name, desc, channel)
  return namespace


class TestTimeout(BaseException):
  """Raised in the test code by the per-test timer."""


def _raise_timeout(signum, frame):
  raise TestTimeout()


def _timed(fn, timeout: float):
  """fn() under a real-time timer; TestTimeout when it runs out."""
  previous = signal.signal(signal.SIGALRM, _raise_timeout)
  signal.setitimer(signal.ITIMER_REAL, max(timeout, 1e-3))
  try:
    return fn()
  finally:
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def _outcome(fn, timeout: float) -> tuple[str, bool]:
  """(status, program_still_usable) of one test."""
  try:
    _timed(fn, timeout)
    return "pass", True
  except AssertionError:
    return "fail", True
  except Unsupported:
    return "unsupported", True
  except (CandidateGone, TestTimeout) as exc:
    return ("timeout" if isinstance(exc, TestTimeout) else "error"), False
  except BaseException:  # pylint: disable=broad-except
    return "error", True


class Session:
  """The tests of one job against one running program server."""

  def __init__(self, job: dict, summary: dict, channel: tuple[int, int]):
    self.job = job
    self.namespace = build_namespace(summary, channel)
    self.tests = None

  def prepare(self, timeout: float) -> tuple[str, bool] | None:
    """Run the test prelude (check source / setup code); an outcome if that already failed."""
    def load():
      self.tests = _tests(self.job, self.namespace)
    status, usable = _outcome(load, timeout)
    return None if status == "pass" else (status, usable)

  def run(self, i: int, timeout: float) -> tuple[str, bool]:
    return _outcome(self.tests[i], timeout)


def _tests(job: dict, namespace: dict):
  if job["kind"] == "check":
    exec(compile(job["source"], "<test>", "exec"), namespace)  # pylint: disable=exec-used
    entry = namespace.get(job["entry_point"])
    return [lambda: namespace["check"](entry if entry is not None else Opaque("entry point"))]
  if job.get("setup_code"):
    exec(compile(job["setup_code"], "<setup>", "exec"), namespace)  # pylint: disable=exec-used
  codes = [compile(stmt, f"<assert {i}>", "exec") for i, stmt in enumerate(job["tests"])]
  return [lambda c=c: exec(c, namespace) for c in codes]  # pylint: disable=exec-used
