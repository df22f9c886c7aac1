"""Broken HF folders get errors that name the tensor / field / file; sharded loading works."""
import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from restrl_jax import models as M
from restrl_jax import parallel

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "qwen2"


@pytest.fixture
def folder(tmp_path):
  dst = tmp_path / "ckpt"
  shutil.copytree(FIXTURE, dst)
  return dst


def _edit_tensors(folder, fn):
  tensors = load_file(str(folder / "model.safetensors"))
  fn(tensors)
  save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _edit_config(folder, fn):
  config = json.loads((folder / "config.json").read_text())
  fn(config)
  (folder / "config.json").write_text(json.dumps(config))


def test_wrong_shape_names_tensor(folder):
  key = "model.layers.1.self_attn.k_proj.weight"
  _edit_tensors(folder, lambda t: t.__setitem__(key, np.zeros((3, 32), np.float32)))
  with pytest.raises(ValueError, match=r"model\.layers\.1\.self_attn\.k_proj\.weight.*shape"):
    M.load_hf(folder)


def test_missing_tensor_names_tensor(folder):
  key = "model.layers.0.self_attn.q_proj.bias"
  _edit_tensors(folder, lambda t: t.pop(key))
  with pytest.raises(ValueError, match=r"missing tensor 'model\.layers\.0\.self_attn\.q_proj\.bias'"):
    M.load_hf(folder)


def test_unexpected_tensor_names_tensor(folder):
  _edit_tensors(folder, lambda t: t.__setitem__("model.extra.weight", np.zeros(2, np.float32)))
  with pytest.raises(ValueError, match=r"unexpected tensor.*model\.extra\.weight"):
    M.load_hf(folder)


def test_integer_dtype_names_tensor(folder):
  _edit_tensors(folder, lambda t: t.__setitem__("model.norm.weight", np.zeros(32, np.int32)))
  with pytest.raises(ValueError, match=r"model\.norm\.weight.*dtype"):
    M.load_hf(folder)


def test_unknown_architecture_names_it(folder):
  _edit_config(folder, lambda c: c.update(model_type="gpt2", architectures=["GPT2LMHeadModel"]))
  with pytest.raises(ValueError, match="GPT2LMHeadModel"):
    M.load_hf(folder)


def test_missing_config_field_names_it(folder):
  _edit_config(folder, lambda c: c.pop("intermediate_size"))
  with pytest.raises(ValueError, match="intermediate_size"):
    M.load_hf(folder)


def test_missing_config_json_names_file(folder):
  (folder / "config.json").unlink()
  with pytest.raises(FileNotFoundError, match="config.json"):
    M.load_hf(folder)


def test_missing_weights_names_folder(folder):
  (folder / "model.safetensors").unlink()
  with pytest.raises(FileNotFoundError, match="safetensors"):
    M.load_hf(folder)


def test_load_onto_mesh_shardings_and_bfloat16(folder):
  mesh = parallel.make_mesh((1, 2, 4))

  def shardings(config):
    shapes = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s, np.float32), M.param_shapes(config),
                          is_leaf=lambda s: isinstance(s, tuple))
    return parallel.tree_shardings(M.param_logical_axes(config), shapes, mesh)

  config, params = M.load_hf(folder, shardings=shardings)
  _, plain = M.load_hf(folder)
  q = params["layers"]["attn"]["q"]["kernel"]  # [L, D, H, Dh]: embed on fsdp, heads on tensor
  assert q.sharding.spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor", None)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(plain)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  config16, params16 = M.load_hf(folder, dtype="bfloat16")
  assert config16.dtype == "bfloat16" and params16["embed"]["embedding"].dtype == jax.numpy.bfloat16
  np.testing.assert_allclose(np.asarray(params16["embed"]["embedding"], np.float32),
                             np.asarray(plain["embed"]["embedding"]), rtol=1e-2, atol=1e-2)
