"""Multi-host helpers, and a two-process run (2 x 4 CPU devices, coordinator on localhost) that
must match one process with 8 devices."""
import os
import socket
import subprocess
import sys
import tempfile

import jax
import ml_collections
import numpy as np
import pytest

from restrl_jax import distributed, mesh_presets
from restrl_jax.distributed import ClusterSpec, cluster_spec

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import test_distributed_worker as worker  # noqa: E402


# -- start-up ---------------------------------------------------------------------------------

def test_cluster_spec_sources():
  assert cluster_spec({"enabled": False}, {}) is None
  assert cluster_spec(None, {}) is None
  explicit = {"enabled": True, "coordinator_address": "10.0.0.2:1234", "num_processes": 4,
              "process_id": 3}
  assert cluster_spec(explicit, {}) == ClusterSpec("10.0.0.2:1234", 4, 3, "config")
  env = {"RESTRL_COORDINATOR_ADDRESS": "h0:99", "RESTRL_NUM_PROCESSES": "2",
         "RESTRL_PROCESS_ID": "1"}
  assert cluster_spec({"enabled": True}, env) == ClusterSpec("h0:99", 2, 1, "env")
  auto = cluster_spec({"enabled": True}, {"TPU_WORKER_HOSTNAMES": "a,b"})
  assert auto == ClusterSpec() and auto.kwargs() == {}     # JAX's own TPU/SLURM detection


def test_cluster_spec_errors_name_the_problem():
  with pytest.raises(ValueError, match=r"missing \['process_id'\]"):
    cluster_spec({"enabled": True, "coordinator_address": "h:1", "num_processes": 2}, {})
  with pytest.raises(ValueError, match="RESTRL_NUM_PROCESSES"):
    cluster_spec({"enabled": True}, {"RESTRL_COORDINATOR_ADDRESS": "h:1",
                                     "RESTRL_NUM_PROCESSES": "two", "RESTRL_PROCESS_ID": "0"})
  with pytest.raises(ValueError, match="process_id 2 is outside"):
    distributed.check_spec(ClusterSpec("h:1", 2, 2, "config"))


def test_detected_multihost_markers():
  assert distributed.detected_multihost({}) is None
  assert distributed.detected_multihost({"TPU_WORKER_HOSTNAMES": "localhost"}) is None
  assert distributed.detected_multihost({"TPU_WORKER_HOSTNAMES": "w0,w1"}) == (
      "TPU_WORKER_HOSTNAMES")
  assert distributed.detected_multihost({"SLURM_NTASKS": "1"}) is None
  assert distributed.detected_multihost({"OMPI_COMM_WORLD_SIZE": "8"}) == "OMPI_COMM_WORLD_SIZE"


def test_initialize_single_process_is_a_no_op():
  assert distributed.initialize({"enabled": False}) is None
  assert jax.process_count() == 1 and distributed.is_writer()


# -- per-process data ---------------------------------------------------------------------------

def test_local_slice_partitions_in_process_order():
  items = list(range(12))
  blocks = [distributed.local_slice(items, p, 3) for p in range(3)]
  assert blocks == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
  assert distributed.local_slice(items) == items               # one process: everything
  with pytest.raises(ValueError, match="10 rows do not split evenly over 4"):
    distributed.local_slice(list(range(10)), 0, 4)


# -- mesh presets -----------------------------------------------------------------------------

def test_presets_tensor_within_host_and_device_counts():
  for hw in mesh_presets.PRESETS.values():
    d, f, t = hw.mesh_shape
    assert d * f * t == hw.devices and t <= hw.devices_per_host
  assert mesh_presets.get("v5e-16").mesh_shape == (1, 4, 4)
  assert mesh_presets.get("v5p-128").mesh_shape == (1, 16, 4)
  assert mesh_presets.get("v4-8").mesh_shape == (1, 4, 1)


def test_preset_applies_to_config_and_checks_devices():
  c = ml_collections.ConfigDict({"mesh": {"shape": (1, -1, 1), "preset": "v5p-8"},
                                 "model": {"dtype": "float32"}, "grpo": {"remat": False}})
  hw = mesh_presets.apply(c)
  assert tuple(c.mesh.shape) == (1, 4, 1) and c.model.dtype == "bfloat16" and c.grpo.remat
  mesh_presets.check_devices(hw, 4)
  with pytest.raises(ValueError, match="expects 4 devices .* JAX sees 8"):
    mesh_presets.check_devices(hw, 8)


# -- two processes vs one -----------------------------------------------------------------------

def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _start_workers(out: str, job: str, steps: int, n: int = 2) -> list[subprocess.Popen]:
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO,
             XLA_FLAGS="--xla_force_host_platform_device_count=4")
  port, procs = _free_port(), []
  for i in range(n):
    cmd = [sys.executable, os.path.join(HERE, "test_distributed_worker.py"), "--process-id",
           str(i), "--num-processes", str(n), "--port", str(port), "--out", out, "--job", job,
           "--steps", str(steps)]
    with open(os.path.join(out, f"log.{i}"), "w") as log:
      procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
  return procs


def _wait(procs: list[subprocess.Popen], out: str, timeout: float) -> None:
  for p in procs:
    p.wait(timeout=timeout)
  codes = [p.returncode for p in procs]
  if codes != [0] * len(procs):
    logs = "\n".join(open(os.path.join(out, f"log.{i}")).read()[-3000:]
                     for i in range(len(procs)))
    raise AssertionError(f"workers exited with {codes}:\n{logs}")


def _flat(params) -> dict[str, np.ndarray]:
  return {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
          for path, v in jax.tree_util.tree_flatten_with_path(params)[0]}


def test_two_processes_match_one_process():
  steps = 3
  with tempfile.TemporaryDirectory() as out:
    procs = _start_workers(out, "sft", steps)
    try:
      params, losses = worker.run_job("sft", steps)   # the reference: 1 process, 8 devices
      _wait(procs, out, timeout=300)
    finally:
      for p in procs:                                 # never leave a worker behind
        if p.poll() is None:
          p.kill()
          p.wait()
    for i in range(2):  # each process saw 2 processes, 8 global and 4 local devices
      assert open(os.path.join(out, f"done.{i}")).read().split() == [str(i), "2", "8", "4"]
    two = dict(np.load(os.path.join(out, "params.npz")))
    np.testing.assert_allclose(two.pop("losses"), losses, rtol=1e-5, atol=1e-6)
    assert losses[-1] < losses[0] - 0.5                # it trains
    flat = _flat(params)
    assert sorted(two) == sorted(flat)
    for k, v in flat.items():
      np.testing.assert_allclose(two[k], v, rtol=1e-5, atol=1e-5, err_msg=k)
    # the checkpoint both processes saved restores here, into the one-process layout
    from restrl_jax import parallel
    from restrl_jax.checkpoint import Checkpointer
    like = worker.JOBS["sft"](parallel.make_mesh((1, -1, 1))).state
    with Checkpointer(os.path.join(out, "ckpt")) as ckpt:
      state, meta, step = ckpt.restore_latest(like)
    assert step == steps and meta == {"job": "sft", "processes": 2}
    for k, v in _flat(state.params).items():
      np.testing.assert_array_equal(v, two[k], err_msg=k)
