"""Prompt formats (docs/method.md §2, §6), chat-template pre-fill and code extraction."""
import pytest
import tokenizers
from tokenizers import models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from restrl_jax.data import prompts
from restrl_jax.data.problem import Problem
from restrl_jax.execution import spec

LEAD_IN = ("Below is a self-contained Python script that solves the problem and realizes "
           "requested functionalities:\n```python\n")
CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + "
          "'<|im_end|>' + '\\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def _tokenizer(template):
  vocab = {"[UNK]": 0, "<|im_start|>": 1, "<|im_end|>": 2, "hello": 3}
  tok = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
  tok.pre_tokenizer = pre_tokenizers.Whitespace()
  return PreTrainedTokenizerFast(tokenizer_object=tok, chat_template=template,
                                 eos_token="<|im_end|>", unk_token="[UNK]")


def _problem(source="bigcodebench", kind="unittest", starter="import os\ndef f(x):\n"):
  if kind == "call":
    tests = spec.TestSuite(kind="call", inputs=([1],), outputs=([2],), fn_name="f")
  elif kind == "stdio":
    tests = spec.TestSuite(kind="stdio", inputs=("1\n",), outputs=("2\n",))
  else:
    tests = spec.TestSuite(kind="unittest", source="import unittest")
  return Problem(id="x/1", source=source, prompt="Add one.", starter_code=starter, tests=tests)


def test_user_turn_wording_per_domain():
  bcb = prompts.template_for(_problem())
  assert bcb.user_text("T") == ("Please provide a self-contained Python script that solves the "
                                "following problem in a markdown code block.\nProblem: T")
  stdin = prompts.template_for(_problem("apps", "stdio", ""))
  call = prompts.template_for(_problem("apps", "call", ""))
  assert stdin.user_text("T") == (
      "Please provide a self-contained Python script using Standard Input format that solves "
      "the following problem in a markdown code block.\nProblem: T")
  assert call.user_text("T") == (
      "Please provide a self-contained Python script using Call-Based format that solves "
      "the following problem in a markdown code block.\nProblem: T")
  for t in (bcb, stdin, call):
    assert t.assistant_prefix == LEAD_IN and t.stops == ("```",)
  ds = prompts.TEMPLATES["ds1000"]
  assert ds.user_text("T") == ("Please directly complete the required program to solve the "
                               "following problem.\nT")
  assert ds.assistant_prefix == "" and "</code>" in ds.stops and len(ds.stops) == 7


def test_plain_fallback_without_chat_template():
  p = _problem()
  expected = prompts.TEMPLATES["code"].user_text("Add one.") + "\n" + LEAD_IN + p.starter_code
  assert prompts.build_prompt(p) == expected
  assert prompts.build_prompt(p, tokenizer=_tokenizer(None)) == expected
  assert prompts.build_prompt(p, state="x = 1\n").endswith(LEAD_IN + "x = 1\n")


def test_chat_template_is_cut_right_after_the_prefill():
  p = _problem()
  got = prompts.build_prompt(p, tokenizer=_tokenizer(CHATML))
  user = prompts.TEMPLATES["code"].user_text("Add one.")
  assert got == ("<|im_start|>user\n" + user + "<|im_end|>\n<|im_start|>assistant\n" + LEAD_IN
                 + p.starter_code)
  assert prompts.SENTINEL not in got and not got.endswith("<|im_end|>\n")


def test_chat_template_that_rewrites_content_is_refused():
  upper = CHATML.replace("m['content']", "m['content'] | upper")
  with pytest.raises(ValueError, match="chat template"):
    prompts.build_prompt(_problem(), tokenizer=_tokenizer(upper))


def test_custom_template():
  import dataclasses
  mine = dataclasses.replace(prompts.TEMPLATES["code"], user_prefix="Solve: ")
  assert prompts.build_prompt(_problem(), template=mine, state="").startswith("Solve: Add one.\n")


def test_extraction_cuts_at_first_end_marker():
  sample = "    return x + 1\n```\n\nExplanation ```more```"
  assert prompts.extract_code(sample) == "    return x + 1\n"
  assert prompts.extract_code("no fence") == "no fence"
  assert prompts.assemble_program("def f(x):\n", sample) == "def f(x):\n    return x + 1"
  ds = "a = 1\n# SOLUTION END\nb</code>"
  assert prompts.extract_code(ds, prompts.DS1000_STOPS) == "a = 1\n"
  assert prompts.first_stop("ab### END SOLUTION", prompts.DS1000_STOPS) == (2, "### END SOLUTION")


def test_value_model_input():
  assert prompts.value_model_input("Q?", "x = 1") == "\n<prompt>\nQ?\n<answer>\nx = 1\n"
