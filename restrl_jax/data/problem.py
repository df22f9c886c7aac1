"""The one record type every benchmark loader produces."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from restrl_jax.execution.spec import TestSuite


@dataclasses.dataclass(frozen=True)
class Problem:
  id: str                       # unique within its source, e.g. "apps/4321", "HumanEval/0"
  source: str                   # "apps" | "humaneval" | "mbpp" | "mbppplus" | "bigcodebench" | "synthetic"
  prompt: str                   # the task statement shown to the model (user-turn text)
  starter_code: str             # the initial program state (init_state); "" when none
  tests: TestSuite
  entry_point: str | None = None
  metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
