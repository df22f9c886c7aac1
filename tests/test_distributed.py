"""Multi-host helpers, and a two-process rest_grpo round (2 x 4 CPU devices, coordinator on
localhost, each process sampling and executing its own rows) through the pipeline runner that must
match one process with 8 devices, with only process 0 writing files; then, in the same processes,
the search stages (each process searching its share of the problems) compared the same way."""
import json
import os
import socket
import subprocess
import sys

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


def test_round_shares_give_each_process_one_process_batches():
  """n problems, `block` trees at a time per process: round r is blocks r*P .. r*P+P-1 of the
  one-process batches, process p taking the p-th; every process gets as many rounds."""
  one = distributed.round_shares(7, 2, 0, 1)
  assert one == [range(0, 2), range(2, 4), range(4, 6), range(6, 7)]
  assert [distributed.round_shares(7, 2, p, 2) for p in range(2)] == [
      [range(0, 2), range(4, 6)], [range(2, 4), range(6, 7)]]
  shares = [distributed.round_shares(7, 2, p, 3) for p in range(3)]
  assert shares == [[range(0, 2), range(6, 7)], [range(2, 4), range(7, 7)],
                    [range(4, 6), range(7, 7)]]               # an empty block: nothing to do
  assert [b for blocks in zip(*shares) for b in blocks if b] == one
  assert distributed.round_shares(7, 2) == one                # one process here
  assert distributed.round_shares(0, 2) == []
  with pytest.raises(ValueError, match="block must be >= 1"):
    distributed.round_shares(3, 0)


def test_gather_lists_concatenates_in_process_order(monkeypatch):
  assert distributed.gather_objects({"k": 1}) == [{"k": 1}]   # one process: its own object
  assert distributed.gather_lists(({"a": 1}, {"b": 2})) == [{"a": 1}, {"b": 2}]
  parts = [[{"p": 0, "i": 0}, {"p": 0, "i": 1}], [], [{"p": 2, "i": 0}]]
  monkeypatch.setattr(distributed, "gather_objects", lambda obj: parts)  # three processes
  assert distributed.gather_lists([]) == parts[0] + parts[2]


def test_place_fills_shards_from_host_values():
  from restrl_jax import parallel
  mesh = parallel.make_mesh((1, -1, 1))
  host = {"w": np.arange(16.0).reshape(8, 2), "b": np.float32(3.0)}
  shardings = {"w": parallel.batch_sharding(mesh, 2), "b": parallel.replicated(mesh)}
  placed = distributed.place(host, shardings)
  assert placed["w"].sharding == shardings["w"] and len(placed["w"].addressable_shards) == 8
  np.testing.assert_array_equal(distributed.gather(placed)["w"], host["w"])
  assert float(distributed.replicated_value(placed["b"])) == 3.0


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
#
# Three subprocesses at once: the reference (one process, 8 devices) and two workers (4 devices
# each, coordinator on localhost) run the `rest` job of test_distributed_worker.py (and then the
# `search` job, tested at the end of this file): the pipeline
# runner with one `rest_grpo` round (collect -> assemble -> STEPS GRPO steps -> export) from the
# same start policy. Two processes collect split by host and gathered, train with
# GRPOTrainer on a HostRowFeed (each host samples, runs and scores its own prompts), save orbax
# checkpoints from every process and export through distributed.gather; only process 0 writes
# files. All three compile with the same cheap XLA CPU settings (most of the time here is
# compilation; the comparison stays like for like). `--jobs sft,grpo` still run by hand.

STEPS = 2
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
ROUND = os.path.join("work", "rest_hosts", "round_0")
RECORDS = ("samples.jsonl", "collect.jsonl", "rows.jsonl", "train_samples.jsonl")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _start(out: str, jobs: str, n: int, devices: int,
           policy: str | None = None) -> list[subprocess.Popen]:
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO,
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} {FAST_COMPILE}")
  port, procs = _free_port(), []
  for i in range(n):
    cmd = [sys.executable, os.path.join(HERE, "test_distributed_worker.py"), "--process-id",
           str(i), "--num-processes", str(n), "--port", str(port), "--out", out, "--jobs", jobs,
           "--steps", str(STEPS)] + (["--policy", policy] if policy else [])
    with open(os.path.join(out, f"log.{i}"), "w") as log:
      procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
  return procs


def _wait(runs: list[tuple[str, list[subprocess.Popen]]], timeout: float) -> None:
  """Wait for every worker; AssertionError with the logs if one failed. None is left running."""
  try:
    for out, procs in runs:
      for p in procs:
        p.wait(timeout=timeout)
      codes = [p.returncode for p in procs]
      if codes != [0] * len(procs):
        logs = "\n".join(open(os.path.join(out, f"log.{i}")).read()[-3000:]
                         for i in range(len(procs)))
        raise AssertionError(f"workers exited with {codes}:\n{logs}")
  finally:
    for _, procs in runs:                          # never leave a worker behind
      for p in procs:
        if p.poll() is None:
          p.kill()
          p.wait()


@pytest.fixture(scope="module")
def start_policy(tmp_path_factory):
  """The GRPO job's initial params (random, N(0, 0.02)) as an HF folder: rewards vary."""
  from restrl_jax import models, parallel
  tok, config, _, state, _ = worker.grpo_init(parallel.make_mesh((1, -1, 1)))
  path = tmp_path_factory.mktemp("start") / "policy"
  models.save_hf(config, jax.device_get(state.params), path)
  tok.save_pretrained(str(path))
  return str(path), {k: np.asarray(v) for k, v in worker.flat_params(state.params).items()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, start_policy):
  """(two-process dir, one-process dir), both finished: the `rest` job, then in the same
  processes the `search` job (the search stages' tests below)."""
  two, one = (str(tmp_path_factory.mktemp(name)) for name in ("two_processes", "one_process"))
  policy, jobs = start_policy[0], "rest,search"
  started = [(one, _start(one, jobs, 1, 8, policy)), (two, _start(two, jobs, 2, 4, policy))]
  _wait(started, timeout=900)
  for i in range(2):  # each worker saw 2 processes, 8 global and 4 local devices
    assert open(os.path.join(two, f"done.{i}")).read().split() == [str(i), "2", "8", "4"]
  assert open(os.path.join(one, "done.0")).read().split() == ["0", "1", "8", "8"]
  return two, one


def _load(out: str, job: str, process: int = 0) -> tuple[dict[str, np.ndarray], list[dict]]:
  history = json.load(open(os.path.join(out, f"{job}.{process}.json")))
  return dict(np.load(os.path.join(out, f"{job}.npz"))), history


def _jsonl(out: str, name: str) -> list[dict]:
  return [json.loads(line) for line in open(os.path.join(out, ROUND, name))]


def _assert_params_close(two: dict, one: dict) -> None:
  assert sorted(two) == sorted(one)
  for k, v in one.items():
    np.testing.assert_allclose(two[k], v, rtol=1e-5, atol=1e-5, err_msg=k)


def test_two_processes_match_one_process_rest_grpo_round(runs, start_policy):
  """A rest_grpo round on two hosts (collection split by host and gathered, per-host GRPO steps,
  export through gather) ends where the one-process round ends: same records, same metrics,
  same exported params."""
  two_dir, one_dir = runs
  (two, two_hist), (one, one_hist) = _load(two_dir, "rest"), _load(one_dir, "rest")
  _, two_hist1 = _load(two_dir, "rest", process=1)
  # the records every process gathered (process 0 wrote them) are the one-process records
  for name in RECORDS:
    assert _jsonl(two_dir, name) == _jsonl(one_dir, name), name
  samples = _jsonl(one_dir, "samples.jsonl")
  collected = worker.REST_PROBLEMS * worker.GRPO_GROUP
  assert len(samples) == collected and len(_jsonl(one_dir, "collect.jsonl")) == 4
  train = _jsonl(one_dir, "train_samples.jsonl")
  rows = worker.GRPO_PROMPTS * worker.GRPO_GROUP
  assert len(train) == STEPS * rows
  rewards = [t["exec_reward"] for t in train]
  assert 0 < np.mean(rewards) < 1                    # rewards vary within the groups
  assert len(two_hist) == len(one_hist) == STEPS
  # collection chunks of 6, 6, 4 rows, each padded to 8 and split 4 / 4: process 0 runs rows
  # 0-3 of every chunk (12 programs), process 1 rows 4-5 of the first two (4) and only padding
  # of the last; each GRPO step runs half of its rows in each process's own sandbox pool
  collect_share = (12, 4, collected)
  for step, (a, b, c) in enumerate(zip(two_hist, two_hist1, one_hist)):
    expect = [n * (step == 0) + r for n, r in zip(collect_share, (rows // 2, rows // 2, rows))]
    assert [a.pop("host_programs"), b.pop("host_programs"), c.pop("host_programs")] == expect
    assert a == b                                    # every process reports the global metrics
    assert sorted(a) == sorted(c)
    for k in c:
      np.testing.assert_allclose(a[k], c[k], rtol=1e-5, atol=1e-6, err_msg=f"step {step}: {k}")
  assert one_hist[0]["grad_norm"] > 0
  _assert_params_close(two, one)
  moved = max(float(np.abs(two[k] - v).max()) for k, v in start_policy[1].items())
  assert moved > 1e-3                                # the updates changed the params


def test_only_process_zero_writes_files_and_every_process_checkpoints(runs):
  two_dir, one_dir = runs
  writes = [json.load(open(os.path.join(two_dir, f"rest_writes.{i}.json"))) for i in range(2)]
  assert writes[1] == []                             # process 1 wrote none of its own
  assert writes[0] == json.load(open(os.path.join(one_dir, "rest_writes.0.json")))
  stage = os.path.join("rest_hosts", "round_0")
  for name in ("config.json", "summary.md", os.path.join("rest_hosts", "DONE.json"),
               os.path.join(stage, "policy.tmp"), os.path.join("rest_hosts", "rounds.jsonl"),
               *(os.path.join(stage, n) for n in RECORDS)):
    assert name in writes[0], name
    assert os.path.exists(os.path.join(two_dir, "work", name.replace("policy.tmp", "policy")))
  done = json.load(open(os.path.join(two_dir, "work", "rest_hosts", "DONE.json")))
  assert done["summary"] == {"method": "rest_grpo", "rounds": 1, "steps": STEPS}
  # orbax: the round's checkpoint both processes saved restores here, in the one-process layout
  from restrl_jax import models, parallel, training
  from restrl_jax.checkpoint import Checkpointer
  from restrl_jax.rl import rounds
  cfg, _ = worker.rest_configs(STEPS)
  policy = os.path.join(two_dir, "work", "rest_hosts", "policy")
  config, params = models.load_hf(policy)
  mesh = parallel.make_mesh((1, -1, 1))
  state = training.init_train_state(rounds.place_params(config, jax.device_get(params), mesh),
                                    rounds.round_optimizer(cfg), mesh)
  key = jax.random.key_data(jax.random.key(0))
  with Checkpointer(os.path.join(two_dir, ROUND, "checkpoints")) as ckpt:
    tree, meta, step = ckpt.restore_latest({"train": state, "rng": key})
  assert step == STEPS and meta["round"] == 0 and meta["steps"] == STEPS
  exported = worker.flat_params(params)
  for k, v in worker.flat_params(tree["train"].params).items():
    np.testing.assert_array_equal(np.asarray(v), np.asarray(exported[k]), err_msg=k)


# -- the search stages on two processes -----------------------------------------------------------
#
# The `search` job of test_distributed_worker.py, run by the same processes after `rest` (`runs`):
# collect_values -> train_value -> decode through the pipeline runner at the demo config's quick
# settings, cut to 4 problems searched 2 trees at a time, so that in each round process 0 searches
# problems 0-1 and process 1 problems 2-3, each with its own sandbox pool; the value model trains
# on the mesh over both processes' devices. Reference: the same job in one process, 8 devices.

SEARCH = "work_search"


def _stage_file(out: str, stage: str, name: str) -> list[dict] | dict:
  path = os.path.join(out, SEARCH, stage, name)
  if name.endswith(".jsonl"):
    return [json.loads(line) for line in open(path)]
  return json.load(open(path))


def _assert_records_close(two: list[dict] | dict, one: list[dict] | dict) -> None:
  """Same records in the same order, floats equal to 1e-5 (the value model trained on another
  device layout), everything else exactly."""
  two, one = (x if isinstance(x, list) else [x] for x in (two, one))
  assert len(two) == len(one)
  for k, (a, b) in enumerate(zip(two, one)):
    assert sorted(a) == sorted(b), k
    for key, value in b.items():
      if isinstance(value, float):
        assert a[key] == pytest.approx(value, rel=1e-5, abs=1e-6), (k, key)
      else:
        assert a[key] == value, (k, key)


def test_two_processes_match_one_process_search_stages(runs):
  """Each process searches its share of the problems; the gathered records process 0 wrote are
  the one-process records: value targets, the value model's held-out scores, the answers."""
  two, one = runs
  values = _stage_file(one, "collect_values", "values.jsonl")
  assert _stage_file(two, "collect_values", "values.jsonl") == values   # programs, rewards
  assert _stage_file(two, "collect_values", "progress.json") == _stage_file(
      one, "collect_values", "progress.json")
  ids = list(dict.fromkeys(r["problem_id"] for r in values))
  assert len(ids) == worker.SEARCH_PROBLEMS
  assert 0 < np.mean([r["value"] for r in values if r["kind"] == "program"]) < 1
  summary = {s: (_stage_file(two, s, "DONE.json")["summary"],
                 _stage_file(one, s, "DONE.json")["summary"])
             for s in worker.SEARCH_STAGES}
  for key in ("num_records", "num_programs", "expansions"):   # counted over both processes
    assert summary["collect_values"][0][key] == summary["collect_values"][1][key], key
  trained = [{k: v for k, v in s.items() if k.startswith("best_") or k.startswith("num_")}
             for s in summary["train_value"]]
  _assert_records_close(*trained)
  for method in worker.SEARCH_METHODS:
    answers = _stage_file(one, "decode", f"{method}.jsonl")
    assert len({a["problem_id"] for a in answers}) == worker.SEARCH_PROBLEMS
    _assert_records_close(_stage_file(two, "decode", f"{method}.jsonl"), answers)
    _assert_records_close(_stage_file(two, "decode", f"{method}.json"),
                          _stage_file(one, "decode", f"{method}.json"))
  # every program ran in the sandbox pool of the process that searched it
  ran = [json.load(open(os.path.join(d, f"search.{i}.json")))["programs"]
         for d, i in ((two, 0), (two, 1), (one, 0))]
  assert ran[0] > 0 and ran[1] > 0 and ran[0] + ran[1] == ran[2]


def test_only_process_zero_writes_the_search_stages_files(runs):
  two, one = runs
  writes = [json.load(open(os.path.join(two, f"search_writes.{i}.json"))) for i in range(2)]
  assert writes[1] == []                             # process 1 wrote none of its own
  assert writes[0] == json.load(open(os.path.join(one, "search_writes.0.json")))
  for name in ("collect_values/values.jsonl", "collect_values/progress.json", "train_value/best",
               *(f"decode/{m}.{ext}" for m in worker.SEARCH_METHODS for ext in ("json", "jsonl")),
               *(f"{s}/DONE.json" for s in worker.SEARCH_STAGES), "summary.md"):
    assert os.path.join(*name.split("/")) in writes[0], name
  assert os.path.isfile(os.path.join(two, SEARCH, "train_value", "best", "value_model.json"))
