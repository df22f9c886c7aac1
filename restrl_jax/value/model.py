"""The value model V_phi (docs/method.md §6): the policy backbone + a bias-free scalar head on the last real
token, scoring `value_model_input(q, state)` texts.

  vm = ValueModel(config, {"backbone": policy_params, "head": head}, tokenizer)
  scores = vm.score(texts)            # [N] float32 in [0, 1] (clipped at inference only)
  scorer = vm.scorer()                # (problems, states) -> [N], for the MCTS drivers

Scoring is batched: texts are sorted by length, cut into batches of `batch_size`, left-padded to
power-of-two length buckets (batch rows rounded up to a power of two), so a few compiled programs
serve every call. With a mesh the parameters are sharded by the logical axes their flax modules
give them (`models.value_param_shardings`) and batches over the ("data", "fsdp") axes.

Saved value models are folders: `params/` (orbax) + `value_model.json` (the backbone's HF folder,
which supplies the architecture and tokenizer, and the max input length).

Across processes: a ValueModel on a mesh over every process's devices scores the same texts on
every process (outputs gathered back with `distributed.gather`); without a mesh each process
scores its own texts on its first device (what the MCTS stages do with their share of problems).
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from restrl_jax import distributed, io_utils, models, parallel
from restrl_jax.data.problem import Problem
from restrl_jax.data.prompts import value_model_input
from restrl_jax.sampling.buckets import Buckets
from restrl_jax.value import data

META_FILE, PARAMS_DIR = "value_model.json", "params"


def init_value_params(config: models.ModelConfig, backbone: Any, rng: jax.Array) -> dict:
  """{"backbone": policy params, "head": a fresh [D, 1] head} (the HF seq-classification init)."""
  return {"backbone": backbone, "head": models.init_value_head(config, rng)}


def place_value_params(config: models.ModelConfig, params: Any,
                       mesh: jax.sharding.Mesh | None) -> Any:
  """Value params on the mesh by the logical axes of their flax modules
  (`models.value_param_shardings`; unchanged without a mesh). Across processes every process
  passes the same values (`distributed.place`)."""
  if mesh is None:
    return params
  shardings = models.value_param_shardings(config, mesh)
  if jax.process_count() > 1:  # every process holds the same values
    return distributed.place(params, shardings)
  return jax.device_put(params, shardings)


# One jitted forward for every ValueModel (the config is static, so models of the same
# architecture share compiled programs).
_forward = jax.jit(models.value_from, static_argnums=0)


def bucket_rows(n: int, batch_size: int, multiple: int) -> int:
  """Rows of a scoring batch of n texts: the next power of two, at least the process's smallest
  batch bucket (`sampling.buckets.set_minimums`), at most `batch_size`."""
  size = max(1, Buckets().min_batch)
  while size < n:
    size *= 2
  size = min(size, batch_size)
  return -(-size // multiple) * multiple


class ValueModel:
  """Batched scoring with a value model; see the module docstring."""

  def __init__(self, config: models.ModelConfig, params: Any, tokenizer: Any,
               max_length: int = 2048, batch_size: int = 16, pad_multiple: int = 32,
               mesh: jax.sharding.Mesh | None = None):
    if batch_size < 1 or max_length < 1:
      raise ValueError(f"ValueModel: batch_size and max_length must be >= 1, got {batch_size}, "
                       f"{max_length}")
    self.config, self.tokenizer, self.mesh = config, tokenizer, mesh
    self.max_length, self.batch_size, self.pad_multiple = max_length, batch_size, pad_multiple
    self.pad_id = int(config.pad_token_id if config.pad_token_id is not None else 0)
    self.params = place_value_params(config, params, mesh)

  def _context(self):
    return parallel.sharding_context(self.mesh) if self.mesh is not None else (
        contextlib.nullcontext())

  def _rows_multiple(self) -> int:
    return 1 if self.mesh is None else int(self.mesh.shape["data"] * self.mesh.shape["fsdp"])

  def _place(self, x: np.ndarray) -> jax.Array:
    if self.mesh is None:
      return jnp.asarray(x)
    names = ("batch",) + (None,) * (x.ndim - 1)
    return jax.device_put(x, parallel.logical_to_sharding(names, x.shape, self.mesh))

  def predict_tokens(self, seqs: Sequence[np.ndarray]) -> np.ndarray:
    """Raw (unclipped) values of token sequences.  # [N] float32"""
    out = np.zeros(len(seqs), np.float32)
    order = np.argsort([len(s) for s in seqs], kind="stable")
    for start in range(0, len(order), self.batch_size):
      rows = order[start:start + self.batch_size]
      size = bucket_rows(len(rows), self.batch_size, self._rows_multiple())
      batch = data.make_batch([seqs[i] for i in rows], [0.0] * len(rows), size, self.pad_id,
                              self.pad_multiple, self.max_length)
      with self._context():
        v = _forward(self.config, self.params, self._place(batch["tokens"]),
                     self._place(batch["mask"]))
      out[rows] = distributed.gather(v)[:len(rows)]  # [size], all of it on every process
    return out

  def predict(self, texts: Sequence[str]) -> np.ndarray:
    """Raw (unclipped) values of texts.  # [N] float32"""
    if not texts:
      return np.zeros(0, np.float32)
    return self.predict_tokens(data.encode(self.tokenizer, texts, self.max_length))

  def score(self, texts: Sequence[str]) -> np.ndarray:
    """Values clipped to [0, 1] (docs/method.md §6: clipping only at inference).  # [N] float32"""
    return np.clip(self.predict(texts), 0.0, 1.0)

  def score_states(self, problems: Sequence[Problem], states: Sequence[str]) -> np.ndarray:
    """Scores of (problem, program prefix) pairs: the MCTS drivers' `StateScorer`."""
    if len(problems) != len(states):
      raise ValueError(f"score_states: {len(problems)} problems but {len(states)} states")
    return self.score([value_model_input(p.prompt, s) for p, s in zip(problems, states)])

  def scorer(self):
    return self.score_states


def save_value_model(path: str | os.PathLike, params: Any, backbone_path: str | os.PathLike,
                     max_length: int, extra: dict | None = None) -> Path:
  """Writes `params/` (orbax) and `value_model.json` under `path`, replacing an old save whole
  (`io_utils.atomic_dir`: a crash leaves the old or the new one). Every process calls it: each
  writes its shards of `params` through orbax, process 0 the folders and the JSON."""
  path = Path(path).absolute()
  meta = {"backbone_path": str(Path(backbone_path).absolute()), "max_length": int(max_length),
          **(extra or {})}
  writer = distributed.is_writer()
  tmp = io_utils.begin_atomic_dir(path) if writer else io_utils.staging_dir(path)
  distributed.sync(f"value model {path}: staged")
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(tmp / PARAMS_DIR, params)
  distributed.sync(f"value model {path}: params saved")
  if writer:
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    io_utils.commit_atomic_dir(path)
  distributed.sync(f"value model {path}: in place")
  return path


def read_value_meta(path: str | os.PathLike) -> dict:
  file = Path(path) / META_FILE
  if not file.is_file():
    raise FileNotFoundError(f"{str(path)!r} is not a saved value model (no {META_FILE})")
  return json.loads(file.read_text())


def load_value_model(path: str | os.PathLike, dtype: str = "float32", batch_size: int = 16,
                     mesh: jax.sharding.Mesh | None = None, tokenizer: Any = None,
                     pad_multiple: int = 32) -> ValueModel:
  """A saved value model, ready to score (tokenizer: default the backbone folder's): a
  `ValueModel`, or an `implicit_prm.ImplicitPRM` where its value_model.json says so."""
  # pylint: disable=import-outside-toplevel
  from restrl_jax.tokenizer import load_tokenizer
  from restrl_jax.value import implicit_prm
  meta = read_value_meta(path)
  if meta.get("kind") == implicit_prm.KIND:
    return implicit_prm.load_implicit_prm(path, meta, dtype, batch_size, mesh, tokenizer)
  config = models.read_hf_config(meta["backbone_path"], dtype=dtype, param_dtype=dtype)
  like = jax.eval_shape(lambda: init_value_params(
      config, models.init_params(config, jax.random.key(0)), jax.random.key(0)))
  # restored where it will score: on the mesh, else on this process's first device (not where
  # the saving processes held it)
  shardings = (models.value_param_shardings(config, mesh) if mesh is not None else
               jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(jax.local_devices()[0]),
                            like))
  like = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), like,
                      shardings)
  with ocp.StandardCheckpointer() as ckpt:
    params = ckpt.restore(Path(path).absolute() / PARAMS_DIR, like)
  tokenizer = tokenizer or load_tokenizer(meta["backbone_path"])
  return ValueModel(config, params, tokenizer, meta["max_length"], batch_size, pad_multiple,
                    mesh)
