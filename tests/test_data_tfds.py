"""TFDS builder: any loader's Problems -> array_record TFDS data set -> `tfds.data_source`."""
import sys

import pytest

tfds = pytest.importorskip("tensorflow_datasets")
pytest.importorskip("array_record")

from restrl_jax.data import registry, tfds_builder  # noqa: E402


def test_humaneval_round_trip_without_tensorflow(tmp_path):
  tfds_builder.build("humaneval", str(tmp_path), {"test": {"limit": 6}, "train": {"limit": 2}})
  source = tfds.data_source("restrl_problems/humaneval", data_dir=str(tmp_path))
  assert len(source["test"]) == 6 and len(source["train"]) == 2
  read = {p.id: p for p in (tfds_builder.problem_from_record(source["test"][i])
                            for i in range(len(source["test"])))}
  expected = {p.id: p for p in registry.load_problems("humaneval", limit=6)}
  assert read == expected
  assert "tensorflow" not in sys.modules


def test_apps_file_source_and_missing_sources(tmp_path):
  data = tmp_path / "apps.jsonl"
  data.write_text('{"problem_id": 3, "question": "q", "solutions": "[\\"print(1)\\"]", '
                  '"input_output": "{\\"inputs\\": [\\"\\"], \\"outputs\\": [\\"1\\"]}"}\n')
  builder = tfds_builder.build("apps", str(tmp_path / "out"), {"test": {"path": str(data)}})
  record = builder.as_data_source()["test"][0]
  problem = tfds_builder.problem_from_record(record)
  assert problem.id == "apps/3" and problem.tests.outputs == ("1",)
  with pytest.raises(ValueError, match="needs sources"):
    tfds_builder.build("mbpp", str(tmp_path / "none"), {})
