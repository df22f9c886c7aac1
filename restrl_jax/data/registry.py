"""Benchmark loaders by name, imported lazily.

`load_problems("apps", path, split=..., limit=...)` is the one entry point used by the CLI and the
training stages. Each entry names `module:function`; the module is imported only when that
benchmark is loaded (so e.g. the synthetic generator, or `datasets`, cost nothing otherwise).
Every loader accepts `path`, `split` and `limit` keywords plus its own options.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

from restrl_jax.data.problem import Problem
from restrl_jax.errors import DataError

LOADERS: dict[str, str] = {
    "apps": "restrl_jax.data.apps:load_apps",
    "humaneval": "restrl_jax.data.humaneval:load_humaneval",
    "humanevalplus": "restrl_jax.data.humanevalplus:load_humanevalplus",
    "mbpp": "restrl_jax.data.mbpp:load_mbpp",
    "mbppplus": "restrl_jax.data.mbppplus:load_mbppplus",
    "bigcodebench": "restrl_jax.data.bigcodebench:load_bigcodebench",
    "synthetic": "restrl_jax.data.registry:load_synthetic_adapter",
}


def get_loader(name: str) -> Callable[..., list[Problem]]:
  """The loader function registered under `name`."""
  if name not in LOADERS:
    raise KeyError(f"unknown benchmark {name!r}; known: {sorted(LOADERS)}")
  module_name, function = LOADERS[name].split(":")
  return getattr(importlib.import_module(module_name), function)


def load_problems(name: str, path: str | None = None, *, split: str | None = None,
                  limit: int | None = None, **options: Any) -> list[Problem]:
  """Load benchmark `name` (local `path`, or its default / a Hugging Face name); no problems at
  all (an empty file, every row skipped) is a `DataError`."""
  kwargs = dict(options)
  if split is not None:
    kwargs["split"] = split
  problems = get_loader(name)(path, limit=limit, **kwargs)
  if not problems and limit != 0:
    raise DataError(f"no {name} problems in it (empty, or every row skipped)",
                    path if path is not None else f"benchmark {name}")
  return problems


def load_synthetic_adapter(path: str | None = None, *, split: str = "test",
                           limit: int | None = None, **options: Any) -> list[Problem]:
  """Maps the common loader keywords onto `restrl_jax.data.synthetic.load_synthetic`."""
  if path is not None:
    raise ValueError("the synthetic benchmark is generated, it takes no --data path")
  synthetic = importlib.import_module("restrl_jax.data.synthetic")
  return synthetic.load_synthetic(split, num_problems=limit, **options)
