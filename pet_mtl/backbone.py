"""Where the masked LM and its tokenizer come from: a Hugging Face directory, or a tiny random BERT.

The tiny model exists so the demo and the tests run anywhere in seconds with no download: a character vocabulary
built from the text it will see, and a 2-layer BERT with random weights. It is saved like any checkpoint and
loaded back through `from_pretrained`, so it exercises exactly the code path a real model takes.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import transformers
from transformers import AutoModelForMaskedLM, AutoTokenizer, BertConfig, BertForMaskedLM

from .errors import CheckpointError, ConfigError

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def refuse_pickles(directory: Path, trust_pickle: bool) -> None:
    """Pickle files can run code when loaded; a shared directory that holds one is refused unless trusted."""
    if trust_pickle:
        return
    found = sorted(p for p in directory.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if found:
        raise CheckpointError(found[0], None, "pickle file found: loading it could execute code. pet_mtl loads "
                              "weights only from safetensors; convert it, or pass model.trust_pickle=true if you "
                              "trust its author")


def load_pretrained(path: str | Path, trust_pickle: bool = False, tokenizer_dir: str | Path | None = None):
    """(tokenizer, masked LM) from a local directory (the tokenizer may live in another), never from the hub."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"model.path={path} is not a directory; pass a local Hugging Face masked-LM directory "
                          "(nothing is downloaded)")
    refuse_pickles(path, trust_pickle)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir or path, local_files_only=True)
    model = AutoModelForMaskedLM.from_pretrained(path, local_files_only=True, use_safetensors=None if trust_pickle else True)
    return tokenizer, model


def build_tiny(directory: str | Path, texts: Iterable[str], hidden: int = 64, layers: int = 2, heads: int = 2,
               seed: int = 0, dropout: float = 0.1):
    """Write a random tiny BERT masked LM + character tokenizer to `directory` and load it back."""
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    chars = sorted({c for t in texts for c in t if not c.isspace()} | set("0123456789abcdefghijklmnopqrstuvwxyz"))
    vocab = SPECIALS + [c for c in chars if c not in SPECIALS]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (directory / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer",
                                                                 "do_lower_case": True}), encoding="utf-8")
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=hidden * 4, max_position_embeddings=512,
                        pad_token_id=0, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        BertForMaskedLM(config).save_pretrained(directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return load_pretrained(directory)
