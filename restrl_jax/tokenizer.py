"""The embedded tokenizer: a small byte-level BPE trained on the synthetic suite.

Trained with `tokenizers` and saved as a standard Hugging Face tokenizer folder
(`tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json`), so the rest of the code
loads it with `transformers.AutoTokenizer.from_pretrained(folder)` exactly like a real model's.

It is a Qwen2-family tokenizer: Qwen2's normaliser (NFC) and pre-tokenizer (its split regex, then
byte-level without a regex), and `tokenizer_class` "Qwen2Tokenizer", so `AutoTokenizer` serves an
exported policy folder (model_type qwen2) exactly as trained at any transformers version:
transformers 5 rebuilds a qwen2 tokenizer's pipeline from Qwen2's own rule, which is this one, and
earlier versions read tokenizer.json as saved. Byte-level pre-tokenization keeps every byte, so
code indentation and newlines round-trip: `decode(encode(s)) == s` for any NFC text. Special tokens (ids fixed in this order):
  0 <|endoftext|>  end of sequence and padding
  1 <|im_start|>   2 <|im_end|>   ChatML turn markers, used by `chat_template`
The chat template is ChatML (as Qwen2.5's), so the paper's prompt path (user turn + pre-filled
assistant turn cut after the pre-fill) works unchanged.
"""
from __future__ import annotations

import os
from typing import Iterable

EOS = "<|endoftext|>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (EOS, IM_START, IM_END)
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
MIN_VOCAB = 256 + len(SPECIAL_TOKENS)
TOKENIZER_CLASS = "Qwen2Tokenizer"
# Qwen2's pre-tokenization regex (transformers' tokenization_qwen2.PRETOKENIZE_REGEX).
SPLIT_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
               r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
MODEL_MAX_LENGTH = 2048


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str | os.PathLike,
                    min_frequency: int = 2):
  """Train a byte-level BPE on `texts`, save it to `out_dir`, return it (transformers fast).

  Deterministic for the same texts in the same order.
  """
  # pylint: disable=import-outside-toplevel
  import tokenizers
  from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers
  import transformers

  if vocab_size < MIN_VOCAB:
    raise ValueError(f"vocab_size must be >= {MIN_VOCAB} (256 bytes + special tokens), "
                     f"got {vocab_size}")
  texts = list(texts)
  if not texts or not any(texts):
    raise ValueError("train_tokenizer: texts is empty")
  tok = tokenizers.Tokenizer(models.BPE())
  tok.normalizer = normalizers.NFC()
  tok.pre_tokenizer = pre_tokenizers.Sequence([
      pre_tokenizers.Split(Regex(SPLIT_REGEX), behavior="isolated", invert=False),
      pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
  tok.decoder = decoders.ByteLevel()
  trainer = trainers.BpeTrainer(
      vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS),
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
  tok.train_from_iterator(texts, trainer=trainer)
  fast = transformers.PreTrainedTokenizerFast(
      tokenizer_object=tok, eos_token=EOS, pad_token=EOS, bos_token=None, unk_token=None,
      additional_special_tokens=[IM_START, IM_END], clean_up_tokenization_spaces=False,
      model_max_length=MODEL_MAX_LENGTH)
  fast.chat_template = CHAT_TEMPLATE
  save_tokenizer(fast, out_dir, tokenizer_class=TOKENIZER_CLASS)
  return fast


def save_tokenizer(tokenizer, folder: str | os.PathLike, tokenizer_class: str | None = None):
  """`tokenizer.save_pretrained(folder)`, with a tokenizer_config.json that every transformers
  version setup.py allows reads the same: the chat template also inline (transformers < 4.47
  reads no chat_template.jinja) and, if given, `tokenizer_class` named."""
  import json  # pylint: disable=import-outside-toplevel
  os.makedirs(folder, exist_ok=True)
  tokenizer.save_pretrained(str(folder))
  path = os.path.join(folder, "tokenizer_config.json")
  with open(path, encoding="utf-8") as f:
    declared = json.load(f)
  if isinstance(getattr(tokenizer, "chat_template", None), str):
    declared["chat_template"] = tokenizer.chat_template
  if tokenizer_class is not None:
    declared["tokenizer_class"] = tokenizer_class
  with open(path, "w", encoding="utf-8") as f:
    json.dump(declared, f, indent=2, ensure_ascii=False)


# tokenizer_config.json classes that mean "serve tokenizer.json exactly as saved"
_GENERIC_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")


def load_tokenizer(path: str | os.PathLike):
  """A saved tokenizer folder through transformers.

  Real models and the embedded tokenizer load with `AutoTokenizer`. A folder whose
  tokenizer_config.json names a generic fast class (a tokenizer trained with another
  pre-tokenization rule than its model family's) loads with
  `PreTrainedTokenizerFast.from_pretrained`, which serves tokenizer.json as saved: transformers
  5's `AutoTokenizer` would pick the class from the model's config.json and re-segment text with
  that family's rule.
  """
  import json  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  from restrl_jax.errors import DataError  # pylint: disable=import-outside-toplevel
  config_file = os.path.join(path, "tokenizer_config.json")
  if not os.path.isfile(config_file):
    raise DataError("not a tokenizer folder (no tokenizer_config.json)", path)
  with open(config_file, encoding="utf-8") as f:
    declared = json.load(f).get("tokenizer_class")
  if declared in _GENERIC_CLASSES:
    return transformers.PreTrainedTokenizerFast.from_pretrained(str(path))
  return transformers.AutoTokenizer.from_pretrained(str(path))


def check_fits_model(tokenizer, vocab_size: int, tokenizer_path: str | os.PathLike,
                     model_path: str | os.PathLike) -> None:
  """`DataError` when the tokenizer is not the model's: it has more tokens than the model has
  embedding rows (ids out of range), or fewer than half of them (models pad their embedding by
  a few hundred rows at most, e.g. Qwen2.5 151665 tokens / 151936 rows)."""
  from restrl_jax.errors import DataError  # pylint: disable=import-outside-toplevel
  size = len(tokenizer)
  if size > vocab_size or 2 * size < vocab_size:
    raise DataError(f"the tokenizer has {size} tokens, the model {os.fspath(model_path)} has "
                    f"vocab_size {vocab_size}: not this model's tokenizer", tokenizer_path)


def embedded_tokenizer(path: str | os.PathLike | None = None, vocab_size: int = 1024,
                       num_problems: int = 2000, seed: int = 0):
  """The tokenizer for the synthetic suite: trained on its train split once, then loaded.

  `path` defaults to `$RESTRL_CACHE/tokenizer/synthetic-v<generator>-<vocab>-<num>-<seed>`.
  """
  from restrl_jax.data import io, synthetic  # pylint: disable=import-outside-toplevel
  if path is None:
    name = f"synthetic-v{synthetic.GENERATOR_VERSION}-{vocab_size}-{num_problems}-{seed}"
    path = io.cache_dir() / "tokenizer" / name
  if not os.path.isfile(os.path.join(path, "tokenizer_config.json")):
    train_tokenizer(synthetic.spec_corpus("train", num_problems, seed), vocab_size, path)
  return load_tokenizer(path)
