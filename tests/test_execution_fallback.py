"""The rlimits level: never chosen silently (an unusable bubblewrap stops the run with one line
that says what failed, the fix and the opt-in), used with a warning when asked for, and still
safe against the hostile programs that do not need filesystem isolation."""
import os
import pathlib
import time
import warnings

import pytest

from restrl_jax.execution import ExecutionPool, Limits, TestSuite, isolation, pool as pool_mod

CALL = TestSuite("call", inputs=([1, 2], [3, 4]), outputs=(3, 7), fn_name="add", timeout_s=1.0)
CHECK = TestSuite("check", source="def check(c):\n  assert c(1, 2) == 3\n", entry_point="add",
                  timeout_s=1.0)


def test_no_silent_downgrade_when_bwrap_is_missing(monkeypatch):
  real_which = isolation.shutil.which
  monkeypatch.setattr(isolation.shutil, "which",
                      lambda name: None if name == "bwrap" else real_which(name))
  for requested in ("auto", "bwrap"):
    with pytest.raises(isolation.SandboxUnavailable) as caught:
      pool_mod.resolve_isolation(requested)
    message = str(caught.value)
    assert "\n" not in message
    for part in ("bwrap not found", "install bubblewrap", "--config.execution.isolation=rlimits",
                 "--isolation rlimits"):
      assert part in message, (part, message)
  assert pool_mod.resolve_isolation("rlimits") == "rlimits"


def test_a_failing_probe_names_the_kernel_settings(monkeypatch):
  monkeypatch.setattr(isolation, "bwrap_usable",
                      lambda: (False, "the bwrap probe failed: bwrap: setting up uid map: "
                                      "Permission denied"))
  with pytest.raises(isolation.SandboxUnavailable) as caught:
    pool_mod.resolve_isolation("auto")
  message = str(caught.value)
  for part in ("setting up uid map", "kernel.unprivileged_userns_clone",
               "kernel.apparmor_restrict_unprivileged_userns", "user.max_user_namespaces",
               "--config.execution.isolation=rlimits", "--isolation rlimits"):
    assert part in message, (part, message)


@pytest.fixture(scope="module")
def weak_pool():
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    p = ExecutionPool(num_workers=2, isolation="rlimits",
                      limits=Limits(memory_mb=512, program_timeout_s=5))
  assert any("WEAKER isolation level 'rlimits'" in str(w.message) for w in caught)
  with p:
    yield p


def test_rlimits_level_runs_and_records_its_level(weak_pool):
  assert weak_pool.isolation == "rlimits"
  good, bad = weak_pool.run(["def add(a, b):\n  return a + b\n", "def add(a, b):\n  return 0\n"],
                            [CALL, CHECK])
  assert good.statuses == ("pass", "pass") and good.isolation == "rlimits"
  assert bad.statuses == ("fail",) and bad.isolation == "rlimits"


def test_rlimits_level_survives_hostile_programs(weak_pool, tmp_path):
  marker = tmp_path / "marker.txt"
  marker.write_text("untouched")
  hostile = [
      ("import os\nwhile True:\n  try: os.fork()\n  except OSError: pass\n", CHECK),
      ("x = []\nwhile True: x.append(bytearray(50 << 20))\n", CALL),
      ("while True: pass\n", CALL),
      ("import os, time\nif os.fork() == 0:\n  os.setsid()\n  time.sleep(300)\n"
       "def add(a, b): return 0\n", CALL),
      ("import os\nos._exit(0)\n", CHECK),
      ("class E:\n  def __eq__(self, o): return True\ndef add(a, b): return E()\n", CHECK),
      ("import os, signal\nfor p in (os.getppid(), 1):\n  try: os.kill(p, signal.SIGKILL)\n"
       "  except OSError: pass\ndef add(a, b): return 0\n", CALL),
      (f"import os\ntry: os.remove({str(marker)!r})\nexcept OSError: pass\n"
       f"try: open({str(marker)!r}, 'w').write('owned')\nexcept OSError: pass\n", CALL),
  ]
  results = weak_pool.run([h[0] for h in hostile], [h[1] for h in hostile])
  assert [r.reward for r in results] == [0.0] * len(hostile)
  assert marker.read_text() == "untouched"
  if os.geteuid() == 0:  # programs ran under their own uids: none of their processes survive
    uids = {u for w in weak_pool._workers for u in w.uids.values()}  # pylint: disable=protected-access
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _owned_by(uids):
      time.sleep(0.1)
    assert _owned_by(uids) == []
  good = weak_pool.run(["def add(a, b):\n  return a + b\n"], [CALL])
  assert good[0].strict


def _owned_by(uids):
  found = []
  for entry in pathlib.Path("/proc").iterdir():
    try:
      status = (entry / "status").read_text() if entry.name.isdigit() else ""
    except OSError:
      continue
    for line in status.splitlines():
      if line.startswith("Uid:") and int(line.split()[1]) in uids:
        found.append(entry.name)
  return found
