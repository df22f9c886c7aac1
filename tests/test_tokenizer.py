"""The embedded BPE tokenizer: trained, saved as a HF folder, loaded through AutoTokenizer."""
import json
import os
import pathlib

import pytest
import transformers

from restrl_jax import tokenizer as T
from restrl_jax.errors import DataError
from restrl_jax.data import synthetic as S

VOCAB = 640


@pytest.fixture(scope="module")
def corpus():
  return S.spec_corpus("train", 300, seed=0)


@pytest.fixture(scope="module")
def folder(tmp_path_factory, corpus):
  out = tmp_path_factory.mktemp("tok")
  T.train_tokenizer(corpus, VOCAB, out)
  return out


@pytest.fixture(scope="module")
def tok(folder):
  return transformers.AutoTokenizer.from_pretrained(str(folder))


def test_saved_as_a_standard_folder_and_loaded_by_auto_tokenizer(folder, tok):
  assert os.path.isfile(folder / "tokenizer.json")
  assert os.path.isfile(folder / "tokenizer_config.json")
  assert len(tok) == VOCAB
  assert isinstance(T.load_tokenizer(folder), transformers.PreTrainedTokenizerBase)
  assert tok.eos_token == tok.pad_token == "<|endoftext|>"
  assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]
  assert tok.eos_token_id == tok.pad_token_id == 0


def test_round_trip_on_the_suite_and_odd_whitespace(tok, corpus):
  odd = ["def f(x):\n\tif x:\n\t\treturn  x \n\n\n    pass\r\n", "  leading and trailing  ",
         "ünïcode → λ ✓ 中文", "", "\n", "a" * 300, "x=1;y = 2  # comment\n"]
  for text in corpus + odd:
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
  # special tokens are single ids and survive decoding when kept
  text = "<|im_start|>user\nhi<|im_end|>\n"
  ids = tok.encode(text, add_special_tokens=False)
  assert ids[0] == 1 and 2 in ids and tok.decode(ids) == text


def test_encode_adds_no_special_tokens_by_default(tok):
  ids = tok.encode("print(1)")
  assert 0 not in ids and 1 not in ids and 2 not in ids


def test_chat_template_is_chatml(tok):
  messages = [{"role": "user", "content": "Solve it."},
              {"role": "assistant", "content": "```python\nx = 1\n"}]
  assert tok.apply_chat_template(messages, tokenize=False) == (
      "<|im_start|>user\nSolve it.<|im_end|>\n<|im_start|>assistant\n```python\nx = 1\n"
      "<|im_end|>\n")
  assert tok.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True) == (
      "<|im_start|>user\nSolve it.<|im_end|>\n<|im_start|>assistant\n")
  ids = tok.apply_chat_template(messages[:1], tokenize=True, add_generation_prompt=True)
  ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
  assert ids[0] == 1 and ids.count(2) == 1


def test_compresses_the_suite(tok, corpus):
  """Prompt + solution of a problem must fit a tiny model's 256-token window."""
  lengths = [len(tok.encode(a + b)) for a, b in zip(corpus[::2], corpus[1::2])]
  chars = sum(len(a + b) for a, b in zip(corpus[::2], corpus[1::2]))
  assert max(lengths) < 256
  assert chars / sum(lengths) > 3.0   # measured 3.8 characters per token at vocab 640


def test_training_is_deterministic(tmp_path, corpus, folder):
  T.train_tokenizer(corpus, VOCAB, tmp_path)
  a = json.loads((tmp_path / "tokenizer.json").read_text())["model"]
  b = json.loads((folder / "tokenizer.json").read_text())["model"]
  assert a["vocab"] == b["vocab"] and a["merges"] == b["merges"]


def test_embedded_tokenizer_is_trained_once_then_loaded(tmp_path, monkeypatch):
  monkeypatch.setenv("RESTRL_CACHE", str(tmp_path))
  first = T.embedded_tokenizer(vocab_size=512, num_problems=60)
  monkeypatch.setattr(T, "train_tokenizer", lambda *a, **k: pytest.fail("retrained"))
  again = T.embedded_tokenizer(vocab_size=512, num_problems=60)
  assert len(first) == len(again) == 512
  assert first.encode("print(x)\n") == again.encode("print(x)\n")


def test_bad_arguments(tmp_path):
  with pytest.raises(ValueError, match="vocab_size"):
    T.train_tokenizer(["abc"], 100, tmp_path / "a")
  with pytest.raises(ValueError, match="empty"):
    T.train_tokenizer([], 512, tmp_path / "b")
  with pytest.raises(DataError, match="missing: not a tokenizer folder .no tokenizer_config"):
    T.load_tokenizer(tmp_path / "missing")


def _policy_like_folder(tmp_path, corpus):
  """An embedded tokenizer saved next to a qwen2 config.json, as in an exported policy."""
  from restrl_jax import models  # pylint: disable=import-outside-toplevel
  T.train_tokenizer(corpus, VOCAB, tmp_path)
  (tmp_path / "config.json").write_text(json.dumps(models.get_preset("tiny").to_hf_config()))
  return tmp_path


def _probe_texts(num: int = 40) -> list[str]:
  problems = S.load_synthetic("test", num, verify=False)
  odd = ["  x = 12345  # 678\n", "ünïcode 42", "def f(a, b):\n\treturn a'b\r\n"]
  return [p.prompt for p in problems] + [p.metadata["solution"] for p in problems] + odd


def _ids(tok, texts):
  chats = [tok.apply_chat_template([{"role": "user", "content": t}], tokenize=False,
                                   add_generation_prompt=True) for t in texts]
  return [tok.encode(t, add_special_tokens=False) for t in texts + chats]


def test_auto_tokenizer_serves_a_policy_folder_as_trained(tmp_path, corpus):
  """Next to a qwen2 config.json, AutoTokenizer picks Qwen2's class and rebuilds its pipeline;
  the embedded tokenizer is trained with that very pipeline, so the ids are the trained ones."""
  folder = _policy_like_folder(tmp_path, corpus)
  trained = transformers.PreTrainedTokenizerFast.from_pretrained(str(folder))
  auto = transformers.AutoTokenizer.from_pretrained(str(folder))
  texts = _probe_texts()
  assert _ids(auto, texts) == _ids(T.load_tokenizer(folder), texts) == _ids(trained, texts)
  assert json.loads((folder / "tokenizer_config.json").read_text())["tokenizer_class"] == \
      T.TOKENIZER_CLASS


def test_shipped_policy_tokenizes_the_same_through_auto_tokenizer():
  from restrl_jax.warmstart import shipped_policy_path  # pylint: disable=import-outside-toplevel
  folder = shipped_policy_path()
  auto = transformers.AutoTokenizer.from_pretrained(str(folder))
  served = T.load_tokenizer(folder)
  texts = _probe_texts()
  assert _ids(auto, texts) == _ids(served, texts)
  assert auto.convert_tokens_to_ids(list(T.SPECIAL_TOKENS)) == [0, 1, 2]
  assert auto.eos_token_id == auto.pad_token_id == served.eos_token_id == 0


_IDS_SCRIPT = """
import json, sys, transformers
tok = transformers.AutoTokenizer.from_pretrained(sys.argv[1])
texts = json.load(open(sys.argv[2]))
chats = [tok.apply_chat_template([{"role": "user", "content": t}], tokenize=False,
                                 add_generation_prompt=True) for t in texts]
print(json.dumps({"version": transformers.__version__,
                  "ids": [tok.encode(t, add_special_tokens=False) for t in texts + chats],
                  "special": tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>",
                                                        "<|im_end|>"]),
                  "eos": tok.eos_token_id, "pad": tok.pad_token_id}))
"""


def _lowest_transformers() -> str:
  """The lowest transformers minor version setup.py allows, e.g. "4.45"."""
  import re  # pylint: disable=import-outside-toplevel
  setup = (pathlib.Path(__file__).resolve().parents[1] / "setup.py").read_text()
  return re.search(r'"transformers>=(\d+\.\d+)"', setup).group(1)


@pytest.fixture(scope="module")
def lowest_transformers_python():
  """A venv with the lowest transformers setup.py allows (made once per machine, under /tmp)."""
  import shutil  # pylint: disable=import-outside-toplevel
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  version = _lowest_transformers()
  venv = pathlib.Path(f"/tmp/restrl-transformers-{version}")
  python = venv / "bin" / "python"
  if not (venv / "ready").exists():
    building = pathlib.Path(f"{venv}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(building)], check=True)
    subprocess.run([str(building / "bin" / "python"), "-m", "pip", "install", "-q",
                    f"transformers~={version}.0", "jinja2"], check=True)
    shutil.rmtree(venv, ignore_errors=True)
    building.rename(venv)   # only `bin/python` is used: it finds the venv from where it lies
    (venv / "ready").touch()
  return python


@pytest.mark.slow
def test_shipped_policy_tokenizes_the_same_at_the_lowest_transformers(tmp_path,
                                                                       lowest_transformers_python):
  import subprocess  # pylint: disable=import-outside-toplevel
  from restrl_jax.warmstart import shipped_policy_path  # pylint: disable=import-outside-toplevel
  texts = _probe_texts()
  (tmp_path / "texts.json").write_text(json.dumps(texts))
  (tmp_path / "ids.py").write_text(_IDS_SCRIPT)
  done = subprocess.run([str(lowest_transformers_python), str(tmp_path / "ids.py"),
                         str(shipped_policy_path()), str(tmp_path / "texts.json")],
                        capture_output=True, text=True, check=True, cwd=tmp_path)
  lowest = json.loads(done.stdout.strip().splitlines()[-1])
  assert lowest["version"].startswith(_lowest_transformers() + ".")
  served = T.load_tokenizer(shipped_policy_path())
  assert lowest["ids"] == _ids(served, texts)
  assert lowest["special"] == [0, 1, 2] and lowest["eos"] == lowest["pad"] == 0
