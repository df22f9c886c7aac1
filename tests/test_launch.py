"""launch/*.sh: the exact gcloud commands printed by --dry-run, flag errors, and shellcheck."""
import glob
import os
import re
import shlex
import shutil
import subprocess

import pytest

from restrl_jax import mesh_presets

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCH = os.path.join(REPO, "launch")
SCRIPTS = sorted(glob.glob(os.path.join(LAUNCH, "*.sh")))
BASE = ["--name", "rl-pod", "--zone", "us-east5-a", "--project", "my-proj"]


@pytest.fixture(autouse=True)
def fake_gcloud(tmp_path, monkeypatch):
  """A `gcloud` / `gcsfuse` first on PATH that fails loudly: a dry run must never call them."""
  for tool in ("gcloud", "gcsfuse"):
    fake = tmp_path / tool
    fake.write_text("#!/bin/sh\necho CALLED-$0 >&2\nexit 99\n")
    fake.chmod(0o755)
  monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")


def _run(script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
  out = subprocess.run(["bash", os.path.join(LAUNCH, script), *args], capture_output=True,
                       text=True, timeout=30)
  assert "CALLED-" not in out.stderr
  if check:
    assert out.returncode == 0, out.stderr
  return out


def _lines(script: str, *args: str) -> list[list[str]]:
  """The dry run's commands, each split back into words as bash would read them."""
  return [shlex.split(line) for line in _run(script, "--dry-run", *args).stdout.splitlines()]


def test_create_prints_the_exact_command():
  assert _lines("create.sh", *BASE, "--preset", "v5e-16", "--spot") == [[
      "gcloud", "compute", "tpus", "tpu-vm", "create", "rl-pod", "--zone=us-east5-a",
      "--project=my-proj", "--accelerator-type=v5litepod-16", "--version=v2-alpha-tpuv5-lite",
      "--spot"]]
  # explicit flags win over the preset
  (cmd,) = _lines("create.sh", *BASE, "--preset", "v5p-8", "--version", "custom-img")
  assert "--accelerator-type=v5p-8" in cmd and "--version=custom-img" in cmd


def test_setup_installs_on_all_workers_and_mounts_bucket():
  cmds = _lines("setup.sh", *BASE, "--gcs-bucket", "gs://my-bucket")
  assert cmds[0][:2] == ["tar", "-czf"] and cmds[0][-1] == "."
  assert cmds[1][:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"]
  assert "--worker=all" in cmds[1] and "rl-pod:restrl_jax.tar.gz" in cmds[1]
  ssh = [c for c in cmds if c[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh"]]
  assert len(ssh) == 3 and all("--worker=all" in c and c[5] == "rl-pod" for c in ssh)
  remote = [c[c.index("--command") + 1] for c in ssh]
  assert "pip install -q -e restrl_jax 'jax[tpu]'" in remote[0]
  assert "gcsfuse --implicit-dirs my-bucket gcs" in remote[1]       # gs:// prefix dropped
  assert "gcloud storage rsync -r gs://my-bucket/data shared/data" in remote[2]


def test_run_starts_main_on_every_worker_with_overrides():
  (cmd,) = _lines("run.sh", *BASE, "--config", "configs/apps.py", "--gcs-bucket", "bk",
                  "--preset", "v5e-16", "--", "--config.model.hf_path=/models/my model",
                  "--config.seed=3")
  assert cmd[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "rl-pod"]
  assert "--worker=all" in cmd and "--zone=us-east5-a" in cmd
  remote = shlex.split(cmd[cmd.index("--command") + 1])
  assert remote[:3] == ["cd", "restrl_jax", "&&"]
  main = remote[remote.index("nohup") + 1: remote.index(">")]
  assert main == ["python3", "-m", "restrl_jax.main", "--config=configs/apps.py",
                  "--config.distributed.enabled=True", "--config.workdir=../gcs/runs/rl-pod",
                  "--config.mesh.preset=v5e-16", "--config.model.hf_path=/models/my model",
                  "--config.seed=3"]
  assert remote[-4:] == [">", "../restrl_jax_run.log", "2>&1", "&"]


def test_logs_and_delete():
  (logs,) = _lines("logs.sh", *BASE)
  assert "--worker=0" in logs and logs[-1] == "tail -n +1 -F restrl_jax_run.log"
  (logs3,) = _lines("logs.sh", *BASE, "--worker", "3")
  assert "--worker=3" in logs3
  assert _lines("delete.sh", *BASE) == [[
      "gcloud", "compute", "tpus", "tpu-vm", "delete", "rl-pod", "--zone=us-east5-a",
      "--project=my-proj", "--quiet"]]


@pytest.mark.parametrize("script,args,message", [
    ("create.sh", ["--zone", "z"], "--name is required"),
    ("create.sh", ["--name", "n", "--zone", "z"], "--accelerator-type (or --preset)"),
    ("run.sh", ["--name", "n", "--zone", "z", "--gcs-bucket", "b"], "--config is required"),
    ("delete.sh", ["--name", "n", "--zone", "z", "--bogus"], "unknown flag --bogus"),
    ("create.sh", ["--name", "n", "--zone", "z", "--preset", "gpu-8"], "not a TPU preset"),
])
def test_bad_flags_are_named(script, args, message):
  out = _run(script, "--dry-run", *args, check=False)
  assert out.returncode == 2 and message in out.stderr and out.stdout == ""


def test_script_presets_match_mesh_presets():
  text = open(os.path.join(LAUNCH, "common.sh")).read()
  rows = re.findall(r"^\s+(v[\w-]+)\) accel=(\S+) version=(\S+) ;;", text, re.M)
  table = {name: (accel, version) for name, accel, version in rows}
  tpus = {n: (h.accelerator_type, h.runtime_version)
          for n, h in mesh_presets.PRESETS.items() if h.platform == "tpu"}
  assert table == tpus


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck_passes():
  assert len(SCRIPTS) >= 6
  out = subprocess.run(["shellcheck", "-x", *SCRIPTS], capture_output=True, text=True,
                       cwd=LAUNCH, timeout=60)
  assert out.returncode == 0, out.stdout + out.stderr
