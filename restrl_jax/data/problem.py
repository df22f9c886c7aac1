"""The one record type every benchmark loader produces."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from restrl_jax.execution.spec import TestSuite


@dataclasses.dataclass(frozen=True)
class Problem:
  id: str                       # unique within its source, e.g. "apps/4321", "HumanEval/0"
  source: str   # "apps" | "humaneval" | "mbpp" | "mbppplus" | "bigcodebench" | "synthetic"
  prompt: str                   # the task statement shown to the model (user-turn text)
  starter_code: str             # the initial program state (init_state); "" when none
  tests: TestSuite
  entry_point: str | None = None
  # JSON-native extras (lists, not tuples, so records survive a JSON round trip). Loaders put
  # reference programs (whole, runnable) under "solutions".
  metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def solutions(self) -> tuple[str, ...]:
    """Reference programs shipped with the data set (possibly none); a single one may also be
    given as metadata["solution"]."""
    if "solutions" in self.metadata:
      return tuple(self.metadata["solutions"])
    single = self.metadata.get("solution")
    return (single,) if isinstance(single, str) else ()

  def to_json(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    d["tests"] = self.tests.to_json()
    d["metadata"] = dict(self.metadata)
    return d

  @classmethod
  def from_json(cls, d: Mapping[str, Any]) -> "Problem":
    d = dict(d)
    d["tests"] = TestSuite.from_json(d["tests"])
    return cls(**d)
