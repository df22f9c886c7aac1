"""The config values a stage's outputs depend on, and how two records of them differ.

A stage declares the config keys it reads (`register_stage(name, reads=...)`): a section
("rest"), a key ("execution.isolation") or a pattern ("mcts.collect_*"). The runner records
their values when the stage starts and with its finished marker, and refuses to reuse a stage's
outputs under other values.
"""
from __future__ import annotations

import fnmatch
import json
from typing import Any, Iterable, Mapping

import ml_collections


def _leaves(config: ml_collections.ConfigDict, prefix: str = ""):
  for key in config.keys():
    value, path = config[key], f"{prefix}{key}"
    if isinstance(value, ml_collections.ConfigDict):
      yield from _leaves(value, path + ".")
    else:
      yield path, value


def _matches(path: str, read: str) -> bool:
  return path == read or path.startswith(read + ".") or fnmatch.fnmatchcase(path, read)


def values(config: ml_collections.ConfigDict, reads: Iterable[str]) -> dict[str, Any]:
  """{dotted key: value} of every config leaf under `reads`, as JSON stores it (tuples become
  lists), so a recorded set compares equal to the same config read again."""
  reads = tuple(reads)
  chosen = {path: value for path, value in _leaves(config)
            if any(_matches(path, read) for read in reads)}
  return json.loads(json.dumps(chosen, sort_keys=True, default=str))


# Keys removed from the config because nothing read them: a record made while they existed
# holds them, but the outputs cannot depend on them.
RETIRED_KEYS = frozenset({"sampling.max_prompt_tokens", "execution.timeout_s"})


def changes(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
  """"key: old -> new" for every key whose value differs (absent on one side: "unset")."""
  out = []
  for key in sorted((set(recorded) | set(current)) - RETIRED_KEYS):
    old, new = recorded.get(key, "unset"), current.get(key, "unset")
    if old != new:
      out.append(f"{key}: {json.dumps(old)} -> {json.dumps(new)}")
  return out
