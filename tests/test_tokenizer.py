"""The embedded BPE tokenizer: trained, saved as a HF folder, loaded through AutoTokenizer."""
import json
import os

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


def test_policy_folder_serves_the_saved_segmentation(tmp_path):
  """Next to a qwen2 config.json, AutoTokenizer would re-segment with Qwen2's rule; the
  embedded tokenizer must come back exactly as trained."""
  import json
  from restrl_jax import models
  from restrl_jax.tokenizer import load_tokenizer, train_tokenizer
  texts = ["def solve(xs):\n    return [x*12 for x in xs if x > 345]\n"] * 50
  trained = train_tokenizer(texts, 300, tmp_path)
  (tmp_path / "config.json").write_text(json.dumps(models.get_preset("tiny").to_hf_config()))
  served = load_tokenizer(tmp_path)
  for text in texts[:1] + ["  x = 12345  # 678\n", "ünïcode 42"]:
    assert served.encode(text) == trained.encode(text)
