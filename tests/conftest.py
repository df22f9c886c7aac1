"""Test-wide setup: 8 simulated CPU devices so that sharding is exercised on any machine."""
import os

_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

# One persistent XLA cache for the session, inherited by the subprocesses tests start: a program
# many tests build (the demo policy's sampler, train steps at the same shapes) compiles once.
# A run that sets its own JAX_COMPILATION_CACHE_DIR keeps it.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  import atexit
  import shutil
  import tempfile
  _cache = tempfile.mkdtemp(prefix="restrl_xla_cache_")
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")


# ---- CI: a skipped test fails the run ------------------------------------------------------------
# A green CI must not hide a missing sandbox, reference implementation or data file behind a skip.
# Under CI=true every skip fails the session, except tests marked `accelerator` (no CI machine has
# one); every run prints its skip count.

def _skips(terminal) -> tuple[list, list]:
  """(skips that count, accelerator-only skips) among the session's skipped reports."""
  counted, accelerator = [], []
  for report in terminal.stats.get("skipped", []):
    keywords = getattr(report, "keywords", {}) or {}
    (accelerator if "accelerator" in keywords else counted).append(report)
  return counted, accelerator


def _ci() -> bool:
  return os.environ.get("CI", "").lower() == "true"


def pytest_sessionfinish(session, exitstatus):
  terminal = session.config.pluginmanager.get_plugin("terminalreporter")
  if terminal is not None and _skips(terminal)[0] and _ci() and exitstatus == 0:
    session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
  counted, accelerator = _skips(terminalreporter)
  terminalreporter.write_line(f"skip count: {len(counted)} (accelerator-only: {len(accelerator)})")
  if _ci():
    for report in counted:
      terminalreporter.write_line(
          f"CI: skipped test fails the run: {report.nodeid} ({report.longrepr})")
