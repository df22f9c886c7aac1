"""The front door: the README's two set-up commands, install.sh, and CI's no-skip policy."""
import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".ci"))
import readme_command  # noqa: E402  pylint: disable=wrong-import-position


def test_readme_has_the_two_setup_commands_ci_runs():
  commands = readme_command.setup_commands((ROOT / "README.md").read_text(encoding="utf-8"))
  assert commands["main"].endswith("python -m restrl_jax.main --config=configs/demo.py")
  assert commands["test"].endswith("python -m pytest -q -n 2 --dist loadfile")
  ci_run = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
  assert ci_run.rstrip().splitlines()[-1] == commands["test"]   # run as the README says
  assert "bash .ci/fresh_user.sh" in ci_run
  fresh = (ROOT / ".ci" / "fresh_user.sh").read_text(encoding="utf-8")
  assert "readme_command.py main) --config.quick=True" in fresh
  assert "python3 -m venv" in fresh and "system-site-packages" not in fresh


def _fake_bin(tmp_path, with_bwrap: bool) -> pathlib.Path:
  """A PATH holding recording stand-ins for apt-get and python (and bwrap, if asked)."""
  fake = tmp_path / "bin"
  fake.mkdir()
  log = tmp_path / "calls.log"
  for name in ("apt-get", "python") + (("bwrap",) if with_bwrap else ()):
    (fake / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {log}\n')
  (fake / "sudo").write_text('#!/bin/sh\nexec "$@"\n')   # run as a non-root user, too
  for script in fake.iterdir():
    script.chmod(0o755)
  for tool in ("dirname", "id"):
    os.symlink(shutil.which(tool), fake / tool)
  return fake


def _install(tmp_path, fake, *args):
  env = {"PATH": str(fake), "HOME": str(tmp_path)}
  done = subprocess.run(["/bin/bash", str(ROOT / "install.sh"), *args], env=env,
                        capture_output=True, text=True, check=False)
  log = tmp_path / "calls.log"
  return done, log.read_text().splitlines() if log.exists() else []


def test_install_sh_installs_bubblewrap_where_missing_and_says_so(tmp_path):
  done, calls = _install(tmp_path, _fake_bin(tmp_path, with_bwrap=False), "test")
  assert done.returncode == 0, done.stderr
  sudo = "" if os.geteuid() == 0 else "sudo "
  assert f"bubblewrap (bwrap) is missing: installing it with {sudo}apt-get" in done.stderr
  assert calls == ["apt-get update -qq", "apt-get install -y -qq bubblewrap",
                   "python -m pip install -e .[test]"]


def test_install_sh_leaves_an_installed_bubblewrap_alone(tmp_path):
  fake = _fake_bin(tmp_path, with_bwrap=True)
  done, calls = _install(tmp_path, fake)
  assert done.returncode == 0, done.stderr
  assert calls == ["python -m pip install -e ."] and "bubblewrap" not in done.stderr
  done, _ = _install(tmp_path, fake, "nonsense")
  assert done.returncode == 2 and "usage: bash install.sh [test]" in done.stderr


_SKIPPING_TESTS = '''
import pytest

def test_runs():
  assert True

def test_skips():
  pytest.skip("no reference here")

@pytest.mark.accelerator
def test_needs_a_gpu():
  pytest.skip("no accelerator")
'''


def _pytest_in(tmp_path, ci: str | None, select: str):
  (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
  (tmp_path / "pytest.ini").write_text((ROOT / "pytest.ini").read_text().replace(
      "testpaths = tests", "testpaths = ."))
  (tmp_path / "test_example.py").write_text(_SKIPPING_TESTS)
  env = {k: v for k, v in os.environ.items() if k != "CI"}
  if ci is not None:
    env["CI"] = ci
  return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k",
                         select], cwd=tmp_path, env=env, capture_output=True, text=True,
                        check=False)


def test_a_skip_fails_a_ci_run(tmp_path):
  done = _pytest_in(tmp_path, "true", "runs or skips")
  assert done.returncode == 1, done.stdout
  assert "skip count: 1 (accelerator-only: 0)" in done.stdout
  assert "CI: skipped test fails the run: test_example.py::test_skips" in done.stdout


def test_an_accelerator_skip_does_not_fail_a_ci_run(tmp_path):
  done = _pytest_in(tmp_path, "true", "runs or gpu")
  assert done.returncode == 0, done.stdout
  assert "skip count: 0 (accelerator-only: 1)" in done.stdout


def test_a_skip_outside_ci_is_counted_not_failed(tmp_path):
  done = _pytest_in(tmp_path, None, "runs or skips")
  assert done.returncode == 0, done.stdout
  assert "skip count: 1 (accelerator-only: 0)" in done.stdout
