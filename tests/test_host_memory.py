"""restrl_jax.host_memory: the "retain" heap policy stops XLA:CPU's per-call temporaries from
being faulted in afresh at every call; policy names are checked."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from restrl_jax import host_memory

REPO = Path(__file__).resolve().parents[1]

# A jitted call whose temporaries are two 64 MiB arrays (cumulative sums are not fused away).
_PROBE = """
import json, resource, sys
from restrl_jax import host_memory
policy = host_memory.apply(sys.argv[1])
import jax, jax.numpy as jnp
x = jnp.arange(1 << 24, dtype=jnp.float32)
f = jax.jit(lambda x: jnp.cumsum(x)[::2].sum() + jnp.cumsum(x * 2.0)[1::2].max())
faults = []
for _ in range(16):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  f(x).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"policy": policy, "faults": faults}))
"""


def _probe(policy: str) -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
  env.pop("GLIBC_TUNABLES", None)
  done = subprocess.run([sys.executable, "-c", _PROBE, policy], env=env, capture_output=True,
                        text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(host_memory._glibc() is None, reason="the heap policy is glibc's")
def test_retain_reuses_the_temporaries_instead_of_faulting_them_in_again():
  page = os.sysconf("SC_PAGE_SIZE")
  temp_pages = (1 << 24) * 4 // page  # one of the two 64 MiB temporaries
  released, retained = _probe("release"), _probe("retain")
  assert released["policy"] == "release" and retained["policy"] == "retain"
  steady = lambda r: sorted(r["faults"][8:])[4]  # median of the last 8 calls
  assert steady(released) > temp_pages, released   # each call maps its temporaries again
  assert steady(retained) < temp_pages // 100, retained  # the heap's freed block is reused


def test_auto_retains_only_when_jax_runs_on_the_cpu(monkeypatch):
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  assert host_memory.resolve("auto") == "retain"
  monkeypatch.setenv("JAX_PLATFORMS", "tpu,cpu")
  assert host_memory.resolve("auto") == "release"
  monkeypatch.delenv("JAX_PLATFORMS")
  monkeypatch.setattr(host_memory.importlib.util, "find_spec",
                      lambda name: object() if name == "libtpu" else None)
  assert host_memory.resolve("auto") == "release"
  monkeypatch.setattr(host_memory.importlib.util, "find_spec", lambda name: None)
  assert host_memory.resolve("auto") == "retain"
  assert host_memory.resolve("release") == "release"
  assert host_memory.apply("release") == "release"  # leaves glibc's defaults alone


def test_unknown_policy_is_named():
  with pytest.raises(ValueError, match="one of .*'auto'.*got 'keep'"):
    host_memory.resolve("keep")
  sys.path.insert(0, str(REPO))
  import importlib.util
  from restrl_jax import setup_runtime
  from restrl_jax.config_checks import ConfigError
  spec = importlib.util.spec_from_file_location("demo", REPO / "configs" / "demo.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.workdir = "/tmp/unused"
  config.host_memory = "keep"
  with pytest.raises(ConfigError, match="config.host_memory='keep'"):
    setup_runtime.validate(config)
