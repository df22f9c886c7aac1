"""Every hostile program, as root and as an unprivileged user, through the evaluation CLI and through
a GRPO step whose sampled programs are hostile (tests/hostile_run.py): the bwrap level for both,
nothing scores, the trainer's step completes, it starts threads and subprocesses while a fork
bomb and a thread bomb run (bounded) and afterwards, nothing is written outside, no process is left.

The unprivileged run is uid 65534 through `setpriv`, from a world-readable venv under /tmp (see
`unprivileged_env`), which also shows that a /tmp venv gets the bwrap level; its user's process
limit (RLIMIT_NPROC) is set just above what the run needs, so an unbounded bomb would starve the
trainer. Both runs share a JAX compilation cache (the second compiles nothing).
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

import hostile_programs as hp
import unprivileged_env
from hostile_run import WORKERS
from restrl_jax.execution import Limits

REPO = pathlib.Path(__file__).resolve().parents[1]
TESTS = pathlib.Path(__file__).resolve().parent
SCRIPTS = ("hostile_run.py", "hostile_programs.py")
SANDBOX_UID_FLOOR = 1_000_000  # per-program host uids of a root sandbox (execution/worker.py)
TASK_HEADROOM = 320  # above the unprivileged user's tasks at the start: the run needs < 200


def _open_dir() -> pathlib.Path:
  path = pathlib.Path(tempfile.mkdtemp(prefix="restrl-users-", dir="/tmp"))
  path.chmod(0o1777)
  return path


@pytest.fixture(scope="module")
def shared():
  """A JAX compilation cache both users write (a sticky, world-writable folder under /tmp)."""
  path = _open_dir()
  (path / "jax_cache").mkdir()
  (path / "jax_cache").chmod(0o1777)
  yield path
  shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def venv():
  """(venv python, folder with the run's scripts), made once, world-readable."""
  if os.geteuid() != 0:
    pytest.skip("running as another user needs root (CI runs as root)")
  python = unprivileged_env.system_python()
  missing = [n for n, ok in (("setpriv", shutil.which("setpriv")), ("bwrap", shutil.which("bwrap")),
                             (f"a system python{sys.version_info.major}.{sys.version_info.minor}",
                              python)) if not ok]
  if missing:
    pytest.skip(f"needs {', '.join(missing)}")
  root = pathlib.Path(tempfile.mkdtemp(prefix="restrl-venv-", dir="/tmp"))
  root.chmod(0o755)
  venv_python = unprivileged_env.build(root / "venv", python)
  scripts = root / "scripts"
  scripts.mkdir(mode=0o755)
  for name in SCRIPTS:
    shutil.copy(TESTS / name, scripts / name)
    (scripts / name).chmod(0o644)
  yield venv_python, scripts
  shutil.rmtree(root, ignore_errors=True)


def _processes(uid_test) -> set[int]:
  """Live processes whose uid passes `uid_test` (not zombies: bubblewrap's own init outlives the
  bwrap process that waited for the sandbox and waits, dead, for the host's init to reap it)."""
  found = set()
  for entry in pathlib.Path("/proc").iterdir():
    try:
      status = (entry / "status").read_text() if entry.name.isdigit() else ""
    except OSError:
      continue
    fields = dict(l.split(":", 1) for l in status.splitlines() if ":" in l)
    if fields and not fields["State"].split()[0] == "Z" and uid_test(int(fields["Uid"].split()[0])):
      found.add(int(entry.name))
  return found


def _tasks_of(uid: int) -> int:
  return sum(len(os.listdir(f"/proc/{p}/task")) for p in _processes(lambda u: u == uid)
             if os.path.isdir(f"/proc/{p}/task"))


def _with_process_limit(limit: int, argv: list[str]) -> list[str]:
  """`argv` under RLIMIT_NPROC `limit` (processes and threads of its user)."""
  code = ("import os, resource, sys; resource.setrlimit(resource.RLIMIT_NPROC, (int(sys.argv[1]),) * 2);"
          " os.execvp(sys.argv[2], sys.argv[2:])")
  return [sys.executable, "-c", code, str(limit), *argv]


def _run(argv: list[str], env: dict, cwd: pathlib.Path) -> dict:
  done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=900,
                        check=False)
  assert done.returncode == 0, done.stderr[-4000:]
  return json.loads(done.stdout.strip().splitlines()[-1])


def _check(report: dict, uid: int) -> None:
  names = set(hp.HOSTILE)
  assert len(names) >= 20 and report["uid"] == uid
  cli = report["cli"]
  assert cli["returncode"] == 0, cli["stderr"]
  assert cli["summary"]["isolation"] == cli["isolation"] == ["bwrap"]
  assert set(cli["rewards"]) == names                      # the CLI wrote every result
  assert {n: r for n, r in cli["rewards"].items() if r} == {}
  assert report["isolation"] == "bwrap"
  bombs = report["bombs"]
  assert bombs["bombs_running"] and bombs["trainer_threads_alive"]
  assert bombs["host_work_during_bombs"] and bombs["bomb_rewards"] == [0.0, 0.0]
  # bounded: bubblewrap's init and the zygote per worker, and per bomb its process limit
  assert 40 <= bombs["sandbox_tasks"] <= 2 * WORKERS + 2 * Limits().max_processes, bombs
  grpo = report["grpo"]
  assert grpo["step"] == 1 and grpo["finite"] and grpo["programs_executed"]
  assert set(grpo["rewards"]) == names
  assert {n: r for n, r in grpo["rewards"].items() if r} == {}
  assert report["host_work_after_step"]
  assert report["leftover_processes"] == []
  assert report["host_intact"]


def test_hostile_programs_as_root(shared, tmp_path):
  if os.geteuid() != 0:
    pytest.skip("the root case needs root")
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu",
             JAX_COMPILATION_CACHE_DIR=str(shared / "jax_cache"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", **{hp.SECRET_NAME: "s3cr3t-root"})
  report = _run([sys.executable, str(TESTS / "hostile_run.py"), str(tmp_path)], env, tmp_path)
  _check(report, 0)
  assert _processes(lambda u: u >= SANDBOX_UID_FLOOR) == set()


def test_hostile_programs_as_unprivileged_user_from_tmp_venv(venv, shared):
  venv_python, scripts = venv
  uid = unprivileged_env.UID
  workdir = pathlib.Path(tempfile.mkdtemp(prefix="restrl-run-", dir="/tmp"))
  os.chown(workdir, uid, uid)
  before = _processes(lambda u: u == uid)
  limit = _tasks_of(uid) + TASK_HEADROOM
  env = unprivileged_env.user_env(XLA_FLAGS=os.environ.get("XLA_FLAGS", ""),
                                  JAX_COMPILATION_CACHE_DIR=str(shared / "jax_cache"),
                                  JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                                  **{hp.SECRET_NAME: "s3cr3t-user"})
  try:
    command = unprivileged_env.as_user([str(venv_python), str(scripts / "hostile_run.py"),
                                        str(workdir)])
    report = _run(_with_process_limit(limit, command), env, workdir)
  finally:
    shutil.rmtree(workdir, ignore_errors=True)
  _check(report, uid)
  assert _processes(lambda u: u == uid) - before == set()
