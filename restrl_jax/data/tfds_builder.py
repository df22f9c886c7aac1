"""Prepared benchmarks as a TFDS data set (array_record files; readable without TensorFlow).

For input pipelines fed from TFDS (e.g. Grain on TPU): every `Problem` of a loader becomes one
record `{"id", "source", "json"}` with `json` the serialised `Problem.to_json()`.

    builder = build("humaneval", data_dir, {"test": {}})
    source = tfds.data_source("restrl_problems/humaneval", data_dir=data_dir)["test"]
    problem = problem_from_record(source[0])

Needs the optional extra `pip install restrl_jax[tfds]` (tensorflow-datasets + array_record);
nothing else in the package imports this module.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from restrl_jax.data import registry
from restrl_jax.data.problem import Problem

try:
  import tensorflow_datasets as tfds
except ImportError as e:  # pragma: no cover - exercised only without the extra
  raise ImportError("restrl_jax.data.tfds_builder needs the `tfds` extra: "
                    "pip install 'restrl_jax[tfds]' (tensorflow-datasets, array_record)") from e

FILE_FORMAT = "array_record"


class RestrlProblems(tfds.core.GeneratorBasedBuilder):
  """One config per registered benchmark; `sources` maps split -> loader keyword arguments."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Problem records serialised as JSON."}
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=name) for name in registry.LOADERS]

  def __init__(self, *, sources: Mapping[str, Mapping[str, Any]] | None = None, **kwargs: Any):
    self._sources = {split: dict(options) for split, options in (sources or {}).items()}
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description="restrl_jax Problem records (task, starter code, tests) as JSON text.",
        features=tfds.features.FeaturesDict({
            "id": tfds.features.Text(), "source": tfds.features.Text(),
            "json": tfds.features.Text()}),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    if not self._sources:
      raise ValueError("RestrlProblems needs sources={split: loader options} to build")
    return {split: self._generate_examples(options) for split, options in self._sources.items()}

  def _generate_examples(self, options: Mapping[str, Any]):
    for problem in registry.load_problems(self.builder_config.name, **options):
      yield problem.id, {"id": problem.id, "source": problem.source,
                         "json": json.dumps(problem.to_json())}


def build(benchmark: str, data_dir: str, sources: Mapping[str, Mapping[str, Any]]
          ) -> RestrlProblems:
  """Prepare `benchmark` under `data_dir`, one split per entry of `sources`
  (e.g. `{"test": {"path": "apps_sample.jsonl"}}`)."""
  builder = RestrlProblems(config=benchmark, data_dir=data_dir, file_format=FILE_FORMAT,
                           sources=sources)
  builder.download_and_prepare()
  return builder


def problem_from_record(record: Mapping[str, Any]) -> Problem:
  """The `Problem` of one record read back through `tfds.data_source`."""
  text = record["json"]
  return Problem.from_json(json.loads(text.decode("utf-8") if isinstance(text, bytes) else text))
