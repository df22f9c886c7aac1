"""The host mesh: where the stages that sample or search each process's own problems hold the
policy (`config.mesh.host_shape`, `parallel.host_mesh`, `pipeline.stages.common.sampler_for`)."""
import jax
import numpy as np
import pytest

from restrl_jax import config_defaults, mesh_presets, parallel
from restrl_jax.pipeline.stages.common import sampler_for
from restrl_jax.sampling import SamplingParams
from restrl_jax.warmstart.shipped import shipped_policy_path


def test_host_mesh_takes_this_process_devices():
  assert parallel.host_mesh(None) is None and parallel.host_mesh((1, 1, 1)) is None
  mesh = parallel.host_mesh((1, 2, 2))
  assert dict(mesh.shape) == {"data": 1, "fsdp": 2, "tensor": 2}
  assert list(mesh.devices.flat) == jax.local_devices()[:4]
  assert parallel.host_mesh((1, 1, -1)).devices.size == len(jax.local_devices())
  with pytest.raises(ValueError, match=r"host mesh \(1, 1, 16\) .* needs 16 devices"):
    parallel.host_mesh((1, 1, 16))


def test_presets_set_the_host_mesh_within_one_host():
  shapes = {name: hw.host_mesh_shape for name, hw in mesh_presets.PRESETS.items()}
  assert shapes["v5e-16"] == (1, 1, 4) and shapes["v5p-8"] == (1, 1, 4)
  assert shapes["gpu-8"] == (1, 2, 4) and shapes["gpu-1"] == (1, 1, 1)
  for name, hw in mesh_presets.PRESETS.items():
    assert np.prod(hw.host_mesh_shape) == hw.devices_per_host, name
  c = config_defaults.base()
  c.mesh.preset = "v5e-16"
  mesh_presets.apply(c)
  assert tuple(c.mesh.host_shape) == (1, 1, 4)
  c = config_defaults.base()
  c.mesh.preset, c.mesh.host_shape = "v5e-16", (1, 2, 2)     # set by hand: kept
  mesh_presets.apply(c)
  assert tuple(c.mesh.host_shape) == (1, 2, 2)


def _config(host_shape):
  c = config_defaults.base()
  c.mesh.host_shape = host_shape
  c.sampling.batch_size = 8
  return c


def test_sampler_on_the_host_mesh_shards_the_weights_and_samples_the_same():
  policy = shipped_policy_path()
  one = sampler_for(_config(None), policy)
  host = sampler_for(_config((1, 1, 4)), policy)
  assert one.mesh is None and dict(host.mesh.shape) == {"data": 1, "fsdp": 1, "tensor": 4}
  devices = {d for leaf in jax.tree.leaves(host.params) for d in leaf.sharding.device_set}
  assert devices == set(jax.local_devices()[:4])
  # the large weights are split over the 4 devices, not copied: per-device bytes ~ a quarter
  total = sum(leaf.nbytes for leaf in jax.tree.leaves(host.params))
  first = sum(s.data.nbytes for leaf in jax.tree.leaves(host.params)
              for s in leaf.addressable_shards if s.device == jax.local_devices()[0])
  assert first < 0.5 * total
  prompts = ["def add(a, b):\n", "# reverse a list\ndef rev(xs):\n"] * 3
  for sp in (SamplingParams(max_new_tokens=24, temperature=0.0),
             SamplingParams(max_new_tokens=24, temperature=0.7)):
    a, b = one.generate(prompts, sp, rng=3), host.generate(prompts, sp, rng=3)
    assert [x.tokens for x in a] == [x.tokens for x in b]
    np.testing.assert_allclose(np.concatenate([x.logprobs for x in a]),
                               np.concatenate([x.logprobs for x in b]), atol=1e-5)
