"""Named function registries for the RL pieces (the tunix `function_registry` pattern).

Each category (advantage estimators, policy losses, loss aggregation modes, KL estimators) owns one
`Registry`; configs refer to entries by string, so an experiment switches e.g. from the paper's
"token-mean" aggregation to Dr.GRPO's "seq-mean-token-sum-norm" without code changes. Entries are
added with the `register` decorator at import time of the module that defines them; a name (or
alias) can be registered once only.
"""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
  """A name -> function table for one category, with aliases and helpful lookup errors."""

  def __init__(self, category: str):
    self.category = category
    self._entries: dict[str, F] = {}

  def register(self, name: str, *aliases: str) -> Callable[[F], F]:
    """Decorator: file `fn` under `name` and each alias (e.g. a TRL `loss_type` spelling)."""
    def decorate(fn: F) -> F:
      for key in (name, *aliases):
        if key in self._entries:
          raise ValueError(f"{self.category} {key!r} is registered twice")
        self._entries[key] = fn
      return fn
    return decorate

  def get(self, name: str) -> F:
    if name not in self._entries:
      raise KeyError(f"unknown {self.category} {name!r}; registered: {', '.join(self.names())}")
    return self._entries[name]

  def names(self) -> tuple[str, ...]:
    return tuple(sorted(self._entries))

  def __contains__(self, name: object) -> bool:
    return name in self._entries

  def __iter__(self) -> Iterator[str]:
    return iter(self.names())

  def check(self, name: str, field: str) -> None:
    """Raise a ValueError naming the config `field` when `name` is not registered."""
    if name not in self._entries:
      raise ValueError(f"{field}={name!r} is not a registered {self.category}; "
                       f"choose from {', '.join(self.names())}")
