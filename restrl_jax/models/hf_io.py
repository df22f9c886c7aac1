"""Read and write Hugging Face checkpoints (config.json + safetensors) for Llama/Qwen2/Qwen3.

`load_hf` memory-maps each shard (`safetensors.safe_open`), validates every tensor's name, shape
and dtype against the declarative table in `hf_maps`, and builds each parameter straight onto its
device/sharding with `jax.make_array_from_callback` (each device reads only its own slice).
`save_hf` writes files that `transformers.AutoModelForCausalLM.from_pretrained` loads.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from restrl_jax.models import hf_maps
from restrl_jax.models.config import ModelConfig
from restrl_jax.models.decoder import param_shapes

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")


def read_hf_config(path: str | os.PathLike, **overrides) -> ModelConfig:
  file = Path(path) / "config.json"
  if not file.is_file():
    raise FileNotFoundError(f"no config.json in HF model folder {str(path)!r}")
  with open(file, encoding="utf-8") as f:
    return ModelConfig.from_hf_config(json.load(f), **overrides)


def _tensor_files(path: Path) -> dict[str, Path]:
  """HF key -> the shard that holds it."""
  index = path / INDEX_FILE
  if index.is_file():
    with open(index, encoding="utf-8") as f:
      weight_map = json.load(f)["weight_map"]
    return {key: path / name for key, name in weight_map.items()}
  files = sorted(path.glob("*.safetensors"))
  if not files:
    raise FileNotFoundError(f"no *.safetensors files (and no {INDEX_FILE}) in {str(path)!r}")
  out = {}
  for file in files:
    with safe_open(str(file), framework="numpy") as f:
      out.update({key: file for key in f.keys()})
  return out


class _Reader:
  """Open shards lazily; check and fetch tensors by HF key."""

  def __init__(self, path: Path, files: dict[str, Path], stack: contextlib.ExitStack):
    self.path, self.files, self.stack, self.handles = path, files, stack, {}
    self.used: set[str] = set()

  def _handle(self, key: str):
    if key not in self.files:
      raise ValueError(f"missing tensor {key!r} in HF checkpoint {str(self.path)!r}")
    file = self.files[key]
    if file not in self.handles:
      if not file.is_file():
        raise FileNotFoundError(f"shard {file.name!r} (holding tensor {key!r}) not found")
      self.handles[file] = self.stack.enter_context(safe_open(str(file), framework="numpy"))
    return self.handles[file]

  def check(self, key: str, shape: tuple[int, ...]) -> None:
    info = self._handle(key).get_slice(key)
    got_shape, got_dtype = tuple(info.get_shape()), info.get_dtype()
    if got_shape != shape:
      raise ValueError(f"tensor {key!r} has shape {got_shape}, expected {shape}")
    if got_dtype not in _FLOAT_DTYPES:
      raise ValueError(f"tensor {key!r} has dtype {got_dtype}, expected one of {_FLOAT_DTYPES}")
    self.used.add(key)

  def get(self, key: str) -> np.ndarray:
    return self._handle(key).get_tensor(key)


def _layer_keys(row: hf_maps.Row, config: ModelConfig) -> list[str]:
  if "{i}" in row.hf_key:
    return [row.hf_key.format(i=i) for i in range(config.num_layers)]
  return [row.hf_key]


def _get_path(tree: dict, path: tuple[str, ...]):
  for name in path:
    tree = tree[name]
  return tree


def _set_path(tree: dict, path: tuple[str, ...], value) -> None:
  for name in path[:-1]:
    tree = tree.setdefault(name, {})
  tree[path[-1]] = value


def _build_param(reader: _Reader, row: hf_maps.Row, keys: list[str], shape: tuple[int, ...],
                 dtype: np.dtype, sharding: jax.sharding.Sharding) -> jax.Array:
  stacked = "{i}" in row.hf_key
  inner = shape[1:] if stacked else shape
  for key in keys:
    reader.check(key, hf_maps.hf_shape(row.transform, inner))

  def piece(key: str, index: tuple) -> np.ndarray:
    arr = hf_maps.to_param(row.transform, reader.get(key), inner)
    return arr[index].astype(dtype)

  def callback(index: tuple) -> np.ndarray:
    index = tuple(index) + (slice(None),) * (len(shape) - len(index))
    if not stacked:
      return piece(keys[0], index)
    layer_ids = range(len(keys))[index[0]]
    return np.stack([piece(keys[i], index[1:]) for i in layer_ids])

  return jax.make_array_from_callback(shape, sharding, callback)


def _check_unexpected(reader: _Reader, config: ModelConfig) -> None:
  allowed = set(hf_maps.optional_keys(config))
  extra = [k for k in reader.files if k not in reader.used and k not in allowed
           and not k.endswith(hf_maps.IGNORED_SUFFIXES)]
  if extra:
    raise ValueError(f"unexpected tensor(s) {sorted(extra)[:5]} in HF checkpoint "
                     f"{str(reader.path)!r} for a {config.family} model")


def load_hf(path: str | os.PathLike, dtype: str = "float32",
            shardings: Any | Callable[[ModelConfig], Any] | None = None
            ) -> tuple[ModelConfig, dict]:
  """(config, params) from a local HF folder; params cast to `dtype` and placed on `shardings`."""
  path = Path(path)
  config = read_hf_config(path, dtype=dtype, param_dtype=dtype)
  if callable(shardings):
    shardings = shardings(config)
  shapes = param_shapes(config)
  default = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])  # this process's
  params: dict = {}
  with contextlib.ExitStack() as stack:
    reader = _Reader(path, _tensor_files(path), stack)
    for row in hf_maps.rows_for(config):
      sharding = default if shardings is None else _get_path(shardings, row.path)
      value = _build_param(reader, row, _layer_keys(row, config), _get_path(shapes, row.path),
                           np.dtype(dtype), sharding)
      _set_path(params, row.path, value)
    _check_unexpected(reader, config)
  return config, params


def _parse_size(size: int | str) -> int:
  if isinstance(size, int):
    return size
  units = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}
  text = size.strip().upper()
  for unit, scale in sorted(units.items(), key=lambda u: -len(u[0])):
    if text.endswith(unit):
      return int(float(text[:-len(unit)]) * scale)
  return int(text)


def hf_tensors(config: ModelConfig, params: dict) -> dict[str, np.ndarray]:
  """All HF tensors (key -> numpy array) for `params`, in table order."""
  out = {}
  for row in hf_maps.rows_for(config):
    value = np.asarray(jax.device_get(_get_path(params, row.path)))
    keys = _layer_keys(row, config)
    layers = value if "{i}" in row.hf_key else [value]
    for key, layer in zip(keys, layers):
      out[key] = hf_maps.to_hf(row.transform, np.asarray(layer))
  return out


def _shard(tensors: dict[str, np.ndarray], max_bytes: int) -> list[dict[str, np.ndarray]]:
  shards, current, size = [], {}, 0
  for key, arr in tensors.items():
    if current and size + arr.nbytes > max_bytes:
      shards.append(current)
      current, size = {}, 0
    current[key] = arr
    size += arr.nbytes
  return shards + [current]


def save_hf(config: ModelConfig, params: dict, path: str | os.PathLike,
            max_shard_size: int | str = "2GB") -> None:
  """Write config.json + safetensors shards (+ index when sharded) for transformers."""
  path = Path(path)
  path.mkdir(parents=True, exist_ok=True)
  with open(path / "config.json", "w", encoding="utf-8") as f:
    json.dump(config.to_hf_config(), f, indent=2)
  tensors = hf_tensors(config, params)
  shards = _shard(tensors, _parse_size(max_shard_size))
  if len(shards) == 1:
    save_file(shards[0], str(path / SINGLE_FILE), metadata={"format": "pt"})
    return
  weight_map = {}
  for n, shard in enumerate(shards, 1):
    name = f"model-{n:05d}-of-{len(shards):05d}.safetensors"
    save_file(shard, str(path / name), metadata={"format": "pt"})
    weight_map.update({key: name for key in shard})
  total = sum(int(math.prod(a.shape)) * a.dtype.itemsize for a in tensors.values())
  with open(path / INDEX_FILE, "w", encoding="utf-8") as f:
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
