"""Named hardware presets: chips, hosts, memory, and the `(data, fsdp, tensor)` mesh to use.

Pick one with `--config.mesh.preset=v5e-16`; `apply(config)` then sets `config.mesh.shape`, turns
on layer rematerialisation for training and bf16 weights, splits the GRPO update into the
micro-batches the preset's memory takes (`train_rows_per_shard`, `grad_accum_steps`), shards the
value model's training over the mesh, and `check_devices` fails early when the machine does not
have the preset's device count. `python -m restrl_jax.memory_plan --model M --hardware H` shows
the memory per device of those settings (docs/memory_plan.md).

Layout rule: FSDP over the large axis, tensor parallelism only within a host. A single-host slice
is pure FSDP over its chips; a multi-host slice puts FSDP over the hosts and tensor parallelism
over each host's chips (4 on v5e / v5p), so tensor-parallel all-reduces never cross hosts. The
`data` axis stays 1: at 7-8B the whole model state fits once per slice, and FSDP over more chips
lowers memory per chip at no extra communication volume per step.

Device counts are JAX devices: a v4 or v5p chip is one device (megacore), so `v4-8` and `v5p-8`
(8 TensorCores) are 4 devices.
"""
from __future__ import annotations

import dataclasses

import ml_collections

from restrl_jax import chip_specs
from restrl_jax.config_checks import ConfigError

GIB = 1024**3
# chips of one host that a sampling stage's tensor axis spans: the KV-head counts of the
# paper's models (4, 8, 32) divide by it
HOST_TENSOR = 4


class UnknownPreset(ConfigError, KeyError):
  """config.mesh.preset names no known hardware."""

  def __str__(self) -> str:  # KeyError would quote the message
    return str(self.args[0])


@dataclasses.dataclass(frozen=True)
class Hardware:
  """One accelerator slice or GPU host group."""
  name: str
  platform: str                  # "tpu" | "gpu"
  devices: int                   # JAX devices (chips)
  hosts: int
  hbm_gib: float                 # memory per device
  mesh_shape: tuple[int, int, int]
  accelerator_type: str = ""     # gcloud --accelerator-type
  runtime_version: str = ""      # gcloud --version (TPU software image)
  peak_bf16_tflops: float = 0.0  # per device, for MFU estimates (chip_specs)
  hbm_gbps: float = 0.0          # memory bandwidth per device, GB/s (chip_specs; time_plan)
  # rows of one GRPO forward/backward per batch shard (data x fsdp) that the memory per device
  # takes for a 7-8B model at 1024 + 1024 tokens (memory_plan); None: the whole update at once
  train_rows_per_shard: int | None = None

  def __post_init__(self):
    d, f, t = self.mesh_shape
    if d * f * t != self.devices:
      raise ValueError(f"Hardware {self.name}: mesh {self.mesh_shape} has {d * f * t} devices, "
                       f"the slice has {self.devices}")
    if t > self.devices // self.hosts:
      raise ValueError(f"Hardware {self.name}: tensor axis {t} exceeds the "
                       f"{self.devices // self.hosts} devices of one host")

  @property
  def devices_per_host(self) -> int:
    return self.devices // self.hosts

  @property
  def host_mesh_shape(self) -> tuple[int, int, int]:
    """`(data, fsdp, tensor)` over one host's own devices, for the stages where each process
    samples or searches its own problems (`config.mesh.host_shape`): tensor parallelism over
    up to `HOST_TENSOR` of the host's chips, FSDP over the rest."""
    per_host = self.devices_per_host
    tensor = HOST_TENSOR if per_host % HOST_TENSOR == 0 else per_host
    return (1, per_host // tensor, tensor)

  @property
  def hbm_bytes(self) -> int:
    return int(self.hbm_gib * GIB)


def _chip_figures(chip: str) -> dict[str, float]:
  """Hardware's peak and bandwidth fields from `chip_specs` (TFLOP/s, GB/s)."""
  spec = chip_specs.CHIPS[chip]
  return dict(peak_bf16_tflops=spec.peak_bf16_flops / 1e12, hbm_gbps=spec.hbm_bytes_per_s / 1e9)


def _tpu(name, devices, hosts, hbm, accel, version, rows_per_shard=None) -> Hardware:
  per_host = devices // hosts
  mesh = (1, devices, 1) if hosts == 1 else (1, hosts, per_host)
  chip = "TPU " + name.split("-")[0]
  return Hardware(name, "tpu", devices, hosts, hbm, mesh, accel, version,
                  train_rows_per_shard=rows_per_shard, **_chip_figures(chip))


PRESETS: dict[str, Hardware] = {h.name: h for h in (
    _tpu("v4-8", 4, 1, 32, "v4-8", "tpu-ubuntu2204-base"),
    _tpu("v5e-8", 8, 1, 16, "v5litepod-8", "v2-alpha-tpuv5-lite"),
    # 16 GiB chips: one sequence per chip row-shard per forward/backward (4 micro-batches of the
    # paper's 16-row update), the largest the 7-8B models' step fits in
    _tpu("v5e-16", 16, 4, 16, "v5litepod-16", "v2-alpha-tpuv5-lite", rows_per_shard=1),
    _tpu("v5e-64", 64, 16, 16, "v5litepod-64", "v2-alpha-tpuv5-lite"),
    _tpu("v5p-8", 4, 1, 95, "v5p-8", "v2-alpha-tpuv5", rows_per_shard=4),
    _tpu("v5p-128", 64, 16, 95, "v5p-128", "v2-alpha-tpuv5"),
    # H100 SXM 80GB
    Hardware("gpu-1", "gpu", 1, 1, 80, (1, 1, 1), **_chip_figures("H100 SXM")),
    Hardware("gpu-8", "gpu", 8, 1, 80, (1, 8, 1), train_rows_per_shard=2,   # one 8xH100 host
             **_chip_figures("H100 SXM")),
)}


def get(name: str) -> Hardware:
  if name not in PRESETS:
    raise UnknownPreset(f"unknown hardware preset {name!r} (config.mesh.preset); known: "
                       f"{sorted(PRESETS)}")
  return PRESETS[name]


def batch_shards(hw: Hardware) -> int:
  d, f, _ = hw.mesh_shape
  return d * f


def grad_accum_steps(hw: Hardware, rows: int) -> int:
  """Micro-batches for an update of `rows` rows on `hw`: the fewest that keep each forward/backward
  within `hw.train_rows_per_shard` rows per batch shard and split the rows per shard evenly
  (whole micro-batches spread over every shard, as `rl.trainer.check_micro_batches` asks)."""
  shards = batch_shards(hw)
  if hw.train_rows_per_shard is None or rows % shards:
    return 1
  per_shard = rows // shards
  steps = -(-per_shard // hw.train_rows_per_shard)
  while per_shard % steps:
    steps += 1
  return steps


def _apply_micro_batches(config: ml_collections.ConfigDict, hw: Hardware) -> None:
  """Raise `grpo.grad_accum_steps` to what `hw` needs (a larger value set by hand stays).
  ReST-DPO, which reads the same key for its pairs, is left as configured."""
  grpo = config.get("grpo", None)
  if grpo is None or not all(k in grpo for k in ("grad_accum_steps", "prompts_per_step",
                                                 "group_size")):
    return
  rest = config.get("rest", None)
  if rest is not None and rest.get("method", None) == "rest_dpo":
    return
  need = grad_accum_steps(hw, grpo.prompts_per_step * grpo.group_size)
  grpo.grad_accum_steps = max(grpo.grad_accum_steps, need)


def apply(config: ml_collections.ConfigDict) -> Hardware | None:
  """Fill `config.mesh.shape` (and `config.mesh.host_shape` unless set), remat, bf16, the GRPO
  micro-batches and the value model's sharding from `config.mesh.preset`; no-op without one."""
  name = config.get("mesh", {}).get("preset", None)
  if not name:
    return None
  hw = get(name)
  config.mesh.shape = hw.mesh_shape
  if "host_shape" in config.mesh and config.mesh.host_shape is None:
    config.mesh.host_shape = hw.host_mesh_shape
  if "model" in config and hw.platform in ("tpu", "gpu"):
    config.model.dtype = "bfloat16"
  for section in ("grpo", "value"):
    if section in config and "remat" in config[section]:
      config[section].remat = True
  if "value" in config and "shard" in config.value:
    config.value.shard = True     # a 7-8B value model with its optimizer fits no single chip
  _apply_micro_batches(config, hw)
  return hw


def check_devices(hw: Hardware, device_count: int) -> None:
  if device_count != hw.devices:
    raise ConfigError(f"config.mesh.preset={hw.name!r} expects {hw.devices} devices "
                      f"({hw.hosts} host(s)), but JAX sees {device_count}; on a multi-host "
                      f"slice set --config.distributed.enabled=True on every worker")
