"""`DataError`: input that cannot be used (a data or samples file, a tokenizer), located.

Raised where the input is read; each CLI (`restrl_jax.main`, `restrl_jax.evaluate`) catches it
once at its top level and prints `error: <str(e)>` with a non-zero exit, no traceback.
"""
from __future__ import annotations

import os


class DataError(ValueError):
  """What is wrong, and where: `str(e)` is "<file> row <n>: <what>", "<file>: <what>" or
  "<what>" (no file applies)."""

  def __init__(self, what: str, file: str | os.PathLike | None = None, row: int | None = None):
    self.what, self.file, self.row = what, None if file is None else os.fspath(file), row
    super().__init__(f"{self.where}: {what}" if self.where else what)

  @property
  def where(self) -> str:
    if self.file is None:
      return ""
    return f"{self.file} row {self.row}" if self.row is not None else self.file
