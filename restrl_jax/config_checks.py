"""Validation of pipeline configs: required fields, allowed values, clear messages.

A config is an `ml_collections.ConfigDict`. Required fields are declared in the config files with
`config_dict.placeholder(type)` (value None until set); `check_required` names every one that is
still unset, with the override that sets it.
"""
from __future__ import annotations

from typing import Iterable

import ml_collections


class ConfigError(ValueError):
  """A config value is missing or invalid; the message names the field."""


def _walk(config: ml_collections.ConfigDict, prefix: str = ""):
  for key in config.keys():
    value = config[key]
    path = f"{prefix}{key}"
    if isinstance(value, ml_collections.ConfigDict):
      yield from _walk(value, path + ".")
    else:
      yield path, value


def get_field(config: ml_collections.ConfigDict, path: str):
  node = config
  for part in path.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      raise ConfigError(f"config has no field {path!r}")
    node = node[part]
  return node


def check_required(config: ml_collections.ConfigDict, required: Iterable[str]) -> None:
  """Raise ConfigError naming each required field that is None."""
  missing = [path for path in required if get_field(config, path) is None]
  if missing:
    hints = ", ".join(f"--config.{p}=..." for p in missing)
    raise ConfigError(f"required config field(s) not set: {', '.join(missing)} (set with {hints})")


def check_choice(config: ml_collections.ConfigDict, path: str, choices: Iterable[str]) -> None:
  value = get_field(config, path)
  choices = tuple(choices)
  if value not in choices:
    raise ConfigError(f"config field {path}={value!r} is not one of {choices}")


def unset_fields(config: ml_collections.ConfigDict) -> list[str]:
  """Every leaf that is None (placeholders not yet set)."""
  return [path for path, value in _walk(config) if value is None]


def unknown_keys(config: ml_collections.ConfigDict,
                 known: ml_collections.ConfigDict) -> list[str]:
  """"a.b: where it is not a field (its known fields)" for each key of `config` that `known` lacks
  (sections are compared key by key; a section of `config` may leave keys out)."""
  out = []
  for key in config.keys():
    if key not in known:
      out.append(f"{key} (known: {', '.join(sorted(known.keys()))})")
    elif isinstance(config[key], ml_collections.ConfigDict) and isinstance(
        known[key], ml_collections.ConfigDict):
      out += [f"{key}.{bad}" for bad in unknown_keys(config[key], known[key])]
  return out


def check_known_keys(config: ml_collections.ConfigDict,
                     known: ml_collections.ConfigDict) -> None:
  """ConfigError naming every key of `config` that `known` does not have (a misspelt or removed
  setting would otherwise be silently ignored)."""
  unknown = unknown_keys(config, known)
  if unknown:
    raise ConfigError(f"unknown config key(s): {'; '.join(unknown)}")


def describe_unknown_override(config: ml_collections.ConfigDict, flag: str) -> str:
  """Message for an override `--config.a.b=v` whose key does not exist."""
  key = flag.split("=", 1)[0].removeprefix("--").removeprefix("config.")
  node, parts = config, key.split(".")
  for i, part in enumerate(parts):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      where = ".".join(parts[:i]) or "<top level>"
      known = sorted(node.keys()) if isinstance(node, ml_collections.ConfigDict) else []
      return (f"unknown config key {key!r} in override {flag!r}: {where} has no field {part!r}"
              f" (known: {', '.join(known)})")
    node = node[part]
  return f"could not apply override {flag!r}"
