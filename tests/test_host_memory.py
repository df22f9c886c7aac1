"""restrl_jax.host_memory: the "retain" heap policy stops large per-call blocks (XLA:CPU's
temporaries, allocated on a worker thread) from being faulted in afresh at every call."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from restrl_jax import host_memory

REPO = Path(__file__).resolve().parents[1]
PAGE = os.sysconf("SC_PAGE_SIZE")

# Child processes; transparent huge pages off (prctl PR_SET_THP_DISABLE), so each page touched
# for the first time is one fault whatever the host's THP mode.
_PRELUDE = """
import ctypes, json, resource, sys
ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)
from restrl_jax import host_memory
def faults(call, n=16):
  out = []
  for _ in range(n):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    call()
    out.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
  return out
"""
# A jitted call whose temporaries are two 64 MiB arrays (cumulative sums are not fused away).
_JAX_PROBE = _PRELUDE + """
policy = host_memory.apply(sys.argv[1])
import jax, jax.numpy as jnp
x = jnp.arange(1 << 24, dtype=jnp.float32)
f = jax.jit(lambda x: jnp.cumsum(x)[::2].sum() + jnp.cumsum(x * 2.0)[1::2].max())
print(json.dumps({"policy": policy, "faults": faults(lambda: f(x).block_until_ready(), 32),
                  "again": host_memory.apply(sys.argv[1])}))
"""
# 64 MiB written by a fresh thread per call (no JAX): a thread's own arena maps it itself.
_THREAD_PROBE = _PRELUDE + """
import threading
policy = host_memory.apply(sys.argv[1])
def in_thread():
  t = threading.Thread(target=lambda: b"\\x01" * (64 << 20))
  t.start(); t.join()
print(json.dumps({"policy": policy, "faults": faults(in_thread)}))
"""


def _run(probe: str, policy: str) -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
  env.pop("GLIBC_TUNABLES", None)
  done = subprocess.run([sys.executable, "-c", probe, policy], env=env, capture_output=True,
                        text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  return json.loads(done.stdout.strip().splitlines()[-1])


def _steady(result: dict) -> int:
  """The median faults per call over the second half of the calls. Under "retain" the heap
  still grows by a block now and then early on (small allocations land in a freed block), so
  single calls may fault; the steady state does not."""
  tail = result["faults"][len(result["faults"]) // 2:]
  return sorted(tail)[len(tail) // 2]


glibc_only = pytest.mark.skipif(host_memory._glibc() is None, reason="the heap policy is glibc's")


@glibc_only
def test_retain_reuses_xla_temporaries_instead_of_faulting_them_in_again():
  block_pages = (64 << 20) // PAGE  # one of the two temporaries
  released, retained = _run(_JAX_PROBE, "release"), _run(_JAX_PROBE, "retain")
  assert released["policy"] == "release" and retained["policy"] == "retain"
  assert _steady(released) > block_pages, released     # each call maps its temporaries again
  assert _steady(retained) < block_pages // 100, retained  # the heap's freed block is reused
  assert retained["again"] == "late"  # after JAX started its threads nothing is set


@glibc_only
def test_retain_covers_blocks_allocated_on_other_threads():
  block_pages = (64 << 20) // PAGE
  released, retained = _run(_THREAD_PROBE, "release"), _run(_THREAD_PROBE, "retain")
  assert _steady(released) > 0.9 * block_pages, released
  assert _steady(retained) < block_pages // 100, retained


def test_unknown_policy_is_named():
  with pytest.raises(ValueError, match="one of .*'retain'.*got 'keep'"):
    host_memory.apply("keep")
  assert host_memory.apply("release") == "release"  # leaves glibc's defaults alone


def test_config_check_names_a_bad_host_memory_value():
  import importlib.util
  from restrl_jax import setup_runtime
  from restrl_jax.config_checks import ConfigError
  spec = importlib.util.spec_from_file_location("demo", REPO / "configs" / "demo.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.workdir = "/tmp/unused"
  setup_runtime.validate(config)
  config.host_memory = "keep"
  with pytest.raises(ConfigError, match="config.host_memory='keep'"):
    setup_runtime.validate(config)


# The same jitted call after the pipeline's own start-up (config.host_memory -> initialize).
_PIPELINE_PROBE = _PRELUDE + """
import importlib.util
from restrl_jax import setup_runtime
spec = importlib.util.spec_from_file_location("demo", sys.argv[2])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
config = module.get_config()
config.host_memory = sys.argv[1]
setup_runtime.initialize(config)
import jax, jax.numpy as jnp
x = jnp.arange(1 << 24, dtype=jnp.float32)
f = jax.jit(lambda x: jnp.cumsum(x)[::2].sum() + jnp.cumsum(x * 2.0)[1::2].max())
print(json.dumps({"faults": faults(lambda: f(x).block_until_ready(), 32)}))
"""


@glibc_only
def test_pipeline_start_up_applies_the_configured_policy():
  """("release" faulting per call is shown by the first test; here only "retain" is run.)"""
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
  env.pop("GLIBC_TUNABLES", None)
  done = subprocess.run([sys.executable, "-c", _PIPELINE_PROBE, "retain",
                         str(REPO / "configs" / "demo.py")], env=env, capture_output=True,
                        text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  result = json.loads(done.stdout.strip().splitlines()[-1])
  assert _steady(result) < (64 << 20) // PAGE // 100, result
