"""Data paths from the data root: each configured stage's unset data path (and empty list of data
paths) filled with its file(s) in `config.data_dir` (`restrl_jax.data.data_root` holds the
layout and the file checks)."""
from __future__ import annotations

import pathlib
from typing import Iterator

import ml_collections

from restrl_jax.config_checks import ConfigError
from restrl_jax.data.data_root import GENERATED, check_file, relative_file
from restrl_jax.errors import DataError

# Per stage, the (benchmark, data path, split) config keys of each problem set it loads.
DATA_KEYS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "evaluate": (("evaluate.benchmark", "evaluate.data_path", "evaluate.split"),),
    "rest_grpo": (("rest.benchmark", "rest.data_path", "rest.split"),),
    "collect_values": (("mcts.collect_benchmark", "mcts.collect_data_path",
                        "mcts.collect_split"),),
    "decode": (("mcts.decode_benchmark", "mcts.decode_data_path", "mcts.decode_split"),),
}
# Per stage, the (benchmarks, data paths, split) config keys of each list of problem sets it
# loads: a tuple of benchmark names and a tuple of their files, in the same order (left empty,
# filled from the root); the split key None means the evaluation split, "test".
LIST_DATA_KEYS: dict[str, tuple[tuple[str, str, str | None], ...]] = {
    "rest_grpo": (("rest.extra_benchmarks", "rest.extra_data_paths", "rest.split"),
                  ("rest.held_out", "rest.held_out_paths", None)),
    "evaluate_suite": (("suite.benchmarks", "suite.data_paths", None),),
}


_ABSENT = object()


def _field(config: ml_collections.ConfigDict, dotted: str):
  """The value at `dotted`, or `_ABSENT` when the config has no such key."""
  node = config
  for part in dotted.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      return _ABSENT
    node = node[part]
  return node


def _set_field(config: ml_collections.ConfigDict, dotted: str, value: str) -> None:
  section, _, key = dotted.rpartition(".")
  node = config
  for part in section.split("."):
    node = node[part]
  node[key] = value


def needed_files(config: ml_collections.ConfigDict) -> Iterator[tuple[str, str, str]]:
  """(data path key, benchmark, split) of every problem set a configured stage loads whose data
  path is unset and whose benchmark is not generated."""
  for stage in config.get("stages", ()):
    for benchmark_key, path_key, split_key in DATA_KEYS.get(stage, ()):
      benchmark, path = _field(config, benchmark_key), _field(config, path_key)
      if benchmark in (_ABSENT, None) or benchmark in GENERATED or path is not None:
        continue                 # no such problem set, a generated one, or a path of its own
      split = _field(config, split_key)
      yield path_key, benchmark, "test" if split in (_ABSENT, None) else split


def needed_lists(config: ml_collections.ConfigDict
                 ) -> Iterator[tuple[str, tuple[str, ...], tuple[str, ...]]]:
  """(data paths key, benchmarks, splits) of every list of problem sets a configured stage loads
  whose data paths are left empty (`LIST_DATA_KEYS`)."""
  for stage in config.get("stages", ()):
    for benchmarks_key, paths_key, split_key in LIST_DATA_KEYS.get(stage, ()):
      benchmarks, paths = _field(config, benchmarks_key), _field(config, paths_key)
      if benchmarks in (_ABSENT, None) or not benchmarks or paths not in (_ABSENT, None, ()):
        continue
      split = "test" if split_key is None else _field(config, split_key)
      generated = [b for b in benchmarks if b in GENERATED]
      if generated:
        raise ConfigError(f"config.{benchmarks_key} names {generated}, generated problems with "
                          "no file; list benchmarks of the data root only")
      yield paths_key, tuple(benchmarks), (split,) * len(benchmarks)


def apply(config: ml_collections.ConfigDict) -> dict[str, str | tuple[str, ...]]:
  """Fill unset data paths from `config.data_dir` and check each file; {key: file(s)} filled.

  No-op without `config.data_dir`. Raises `DataError` (a missing root, a missing or malformed
  file) before any stage runs.
  """
  data_dir = config.get("data_dir", None)
  if not data_dir:
    return {}
  root = pathlib.Path(str(data_dir)).expanduser()
  if not root.is_dir():
    raise DataError("no such data folder (config.data_dir); build one with python -m "
                    "restrl_jax.data.prepare --out DIR ...", root)
  filled = {}
  for path_key, benchmark, split in needed_files(config):
    path = root / relative_file(benchmark, split)
    check_file(path, benchmark, split)
    _set_field(config, path_key, str(path))
    filled[path_key] = str(path)
  for paths_key, benchmarks, splits in needed_lists(config):
    paths = tuple(str(root / relative_file(b, split)) for b, split in zip(benchmarks, splits))
    for path, benchmark, split in zip(paths, benchmarks, splits):
      check_file(pathlib.Path(path), benchmark, split)
    _set_field(config, paths_key, paths)
    filled[paths_key] = paths
  return filled


def paired_files(section: str, names_key: str, paths_key: str, names, paths
                 ) -> list[tuple[str, str]]:
  """(benchmark, file) pairs of a config list of problem sets and its list of files, in order;
  unequal lengths are a ConfigError naming both keys."""
  names, paths = tuple(names), tuple(paths)
  if len(names) != len(paths):
    raise ConfigError(
        f"config.{section}.{paths_key} has {len(paths)} file(s) for the {len(names)} "
        f"benchmark(s) of config.{section}.{names_key} {list(names)}: give one file per "
        "benchmark, or a data root (--config.data_dir=DIR, built with python -m "
        "restrl_jax.data.prepare) to take each one's file from")
  return list(zip(names, paths))
