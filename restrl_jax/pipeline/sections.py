"""A stage's config section over its defaults, and the plain dataclass a domain function takes.

`section(config, "rest")` is `config_defaults.rest()` updated with what `config.rest` sets (a
config may give a partial section or none); a field the defaults do not know is a ConfigError
naming it; seed fields left unset take `config.seed` (`config_defaults.fill_seeds`).
`dataclass_from(section, cls)` picks the fields of `cls` from a section (the keys of a section
are the fields of the dataclasses its stage fills), so the domain packages see plain values,
never the ConfigDict.
"""
from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import ml_collections

from restrl_jax import config_defaults
from restrl_jax.config_checks import ConfigError

T = TypeVar("T")


def section(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """`config.<name>` over `config_defaults.<name>()`; unknown fields are a ConfigError."""
  out = config_defaults.OPTIONAL_SECTIONS[name]()
  given = config.get(name) or {}
  for key in given.keys():
    if key not in out:
      raise ConfigError(f"config.{name}.{key} is not a known field; known: {sorted(out.keys())}")
    out[key] = given[key]
  return config_defaults.fill_seeds(config, name, out)


def dataclass_from(values: ml_collections.ConfigDict, cls: type[T], prefix: str = "",
                   unset: tuple[str, ...] = (), **overrides: Any) -> T:
  """`cls(**{field: values[prefix + field]})` over the fields of the dataclass `cls` (a section
  over its defaults has them all: a missing one is a KeyError), with `overrides` replacing values;
  the fields named in `unset`, which no section sets, keep their defaults."""
  fields = {f.name: values[prefix + f.name] for f in dataclasses.fields(cls)
            if f.name not in overrides and f.name not in unset}
  return cls(**fields, **overrides)
