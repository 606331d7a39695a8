"""Where the masked LM and its tokenizer come from: a Hugging Face directory, or a tiny random BERT.

The tiny model exists so the demo and the tests run anywhere in seconds with no download: a character vocabulary
built from the text it will see, and a 2-layer BERT with random weights. It is saved like any checkpoint and
loaded back through `from_pretrained`, so it exercises exactly the code path a real model takes.
"""
from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
)

from pet_mtl.backbones.contract import model_kind
from pet_mtl.core.errors import CheckpointError, ConfigError

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def refuse_pickles(directory: Path, trust_pickle: bool) -> None:
    """Pickle files can run code when loaded; a shared directory that holds one is refused unless trusted."""
    if trust_pickle:
        return
    # a model folder and the folders in it (a checkpoint's model/, tokenizer/), not a walk of whatever it holds:
    # model.path=/ must not scan the whole filesystem
    found = sorted(p for pattern in ("*", "*/*") for p in directory.glob(pattern) if p.suffix.lower() in PICKLE_SUFFIXES)
    if found:
        raise CheckpointError(found[0], None, "pickle file found: loading it could execute code. pet_mtl loads "
                              "weights only from safetensors; convert it, or pass model.trust_pickle=true if you "
                              "trust its author")


#: weights a pretraining checkpoint may hold that a masked LM does not use (next-sentence head, pooler)
UNUSED_PRETRAINING_WEIGHTS = (".seq_relationship.", "pooler.")


def stored_parameters(path: Path) -> int | None:
    """The number of weights the folder's safetensors files hold, from their headers alone (no tensor is read);
    None when it has none (a trusted pickle)."""
    files = sorted(path.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for f in files:
        try:
            with open(f, "rb") as fh:
                size = int.from_bytes(fh.read(8), "little")
                if size > 100_000_000:
                    raise ValueError(f"a header of {size:,} bytes")
                header = json.loads(fh.read(size))
            total += sum(math.prod(t["shape"]) for k, t in header.items() if k != "__metadata__")
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
            raise CheckpointError(f, None, f"not a readable safetensors file ({type(e).__name__}: {str(e)[:120]})") \
                from None
    return total


def check_config_against_weights(path: Path, config: Any) -> None:
    """Refuse a config.json that describes a larger model than the weights beside it hold, before anything is
    built from it: a config is untrusted input, and one that asks for a million layers (or a vocabulary of a
    billion) would allocate them all before any weight is compared. The bound is a floor every architecture meets:
    its embeddings, and per stored layer (ALBERT stores its groups) two hidden x hidden attention projections and,
    where the config gives an intermediate size, the two MLP projections."""
    stored = stored_parameters(path)
    if stored is None:
        return
    size = {}
    for key in ("hidden_size", "num_hidden_layers", "vocab_size", "intermediate_size", "embedding_size",
                "num_hidden_groups"):
        value = getattr(config, key, None)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise CheckpointError(path / "config.json", None, f"{key}={value!r}: expected a non-negative integer")
        size[key] = value or 0
    hidden, layers = size["hidden_size"], size["num_hidden_groups"] or size["num_hidden_layers"]
    floor = size["vocab_size"] * (size["embedding_size"] or hidden)
    floor += layers * (2 * hidden * hidden + 2 * hidden * size["intermediate_size"])
    if floor > 1.05 * stored + 1_000_000:
        raise CheckpointError(path / "config.json", None, f"describes a model of at least {floor:,} weights "
                              f"({size['num_hidden_layers']:,} layers, hidden {hidden:,}, vocabulary "
                              f"{size['vocab_size']:,}) but the weights beside it hold {stored:,}; config.json and "
                              "the weights are not a pair")


def check_positions(key: str, length: int, config: Any) -> None:
    """A maximum length the model can embed: refused before any row is encoded, not at the first long row."""
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and length > positions:
        raise ConfigError(f"{key}={length} is over the model's {positions} positions (max_position_embeddings in "
                          "its config.json)")


def check_finite(weights: Mapping[str, torch.Tensor], where: Path) -> None:
    """Every weight a number: training never saves a NaN (it stops first), so one in a folder is damage, and it
    would make every score NaN and every prediction the first label, silently."""
    for name, p in weights.items():
        if p.is_floating_point() and not bool(torch.isfinite(p).all()):
            bad = int((~torch.isfinite(p)).sum())
            raise CheckpointError(where, None, f"weight {name} holds {bad:,} value(s) that are not finite numbers "
                                  "(NaN or infinity): the weights are damaged")


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"


#: files that make a folder a tokenizer's (one is enough)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "sentencepiece.bpe.model",
                   "spiece.model", "tokenizer.model")


def _listing(path: Path) -> str:
    names = sorted(p.name for p in path.iterdir())
    return "it is empty" if not names else f"it holds {', '.join(names[:6])}{' ...' if len(names) > 6 else ''}"


def describe_folder(path: Path, tokenizer_dir: Path | None = None) -> None:
    """One line for a folder that is not a model: no config.json, or no tokenizer files."""
    if not (path / "config.json").is_file():
        raise ConfigError(f"model.path={path} has no config.json ({_listing(path)}); pass a Hugging Face model "
                          "folder: config.json, weights (*.safetensors) and the tokenizer's files")
    where = Path(tokenizer_dir) if tokenizer_dir is not None else path
    if where.is_dir() and not any((where / f).is_file() for f in TOKENIZER_FILES):
        raise ConfigError(f"{where} has no tokenizer files (one of {', '.join(TOKENIZER_FILES)}; {_listing(where)}); "
                          "copy the tokenizer beside the weights")


#: what each kind of model is for, said when a folder holds the other kind
KIND_USES = {"masked": "method=pet and pet_cln, and pretraining, need a masked LM (BERT family); a causal LM serves "
                       "method=causal, heads and cln",
             "causal": "method=causal needs a causal LM (GPT-2, Qwen, Llama, BertLMHeadModel with is_decoder)"}


def load_pretrained(path: str | Path, trust_pickle: bool = False, tokenizer_dir: str | Path | None = None,
                    strict: bool = True, exact: bool = False, needs_head: bool = True,
                    kinds: tuple[str, ...] = ("masked",), kind: str | None = None):
    """(tokenizer, language model) from a local directory (the tokenizer may live in another), never from the hub:
    a masked LM, or a causal LM where `kinds` allows one; the kind is read from config.json (`kind` overrides it:
    model.kind). A causal LM's tokenizer without a pad token gets its eos token as pad (rows are padded on the right
    and the padding is never attended to or scored).

    Verified, since transformers otherwise fills what is missing with random weights and only logs it: every
    weight the model needs must be in the files with its shape, and (`exact`, for pet_mtl's own checkpoints)
    nothing else may be; a backbone may carry the unused weights of pretraining heads. `strict=False` loads
    whatever matches and logs the rest, for those who want it. An encoder saved without its masked-LM head (a
    `BertModel` folder) is refused when `needs_head` (the cloze methods score with that head) and loaded with a
    note otherwise (heads and cln train their own classifiers; the head is never read).
    """
    given, path = str(path), Path(path)
    if not path.is_dir():
        if re.fullmatch(r"[\w.-]+/[\w.-]+", given) and not path.exists():
            raise ConfigError(f"model.path={given} looks like a Hugging Face hub id; nothing is downloaded here. On a "
                              f"machine with internet run `hf download {given} --local-dir {given.split('/')[1]}` "
                              f"(older hubs: huggingface-cli download), copy the folder here and pass "
                              f"model.path=<that folder>")
        raise ConfigError(f"model.path={path} is not a directory; pass a local Hugging Face masked-LM directory "
                          "(nothing is downloaded)")
    describe_folder(path, tokenizer_dir)
    refuse_pickles(path, trust_pickle)
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except Exception as e:  # a config.json that does not parse, an unknown model_type
        raise CheckpointError(path / "config.json", None, f"cannot read the model's config: {_first_line(e)}") from None
    check_config_against_weights(path, config)
    found = kind or model_kind(config)
    if found not in KIND_USES:
        raise ConfigError(f"model.kind={kind!r}: expected masked or causal (or null: from config.json)")
    if found not in kinds:
        names = ", ".join(getattr(config, "architectures", None) or [type(config).__name__])
        raise ConfigError(f"model.path={path} holds a {found} LM ({names}); {KIND_USES[kinds[0]]}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir or path, local_files_only=True)
    except Exception as e:  # a missing or corrupt tokenizer file; transformers raises many types
        raise CheckpointError(tokenizer_dir or path, None, f"cannot load the tokenizer: {_first_line(e)}") from None
    try:
        auto = AutoModelForCausalLM if found == "causal" else AutoModelForMaskedLM
        model, info = auto.from_pretrained(path, local_files_only=True, output_loading_info=True,
                                           use_safetensors=None if trust_pickle else True)
    except Exception as e:  # truncated safetensors, a config.json that does not parse, shapes that disagree...
        raise CheckpointError(path, None, f"cannot load the {found} LM: {_first_line(e)}") from None
    check_finite(model.state_dict(), path)
    if found == "causal" and tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ConfigError(f"{tokenizer_dir or path}: the tokenizer has neither a pad nor an eos token; add a pad "
                              "token to its tokenizer_config.json")
        tokenizer.pad_token = tokenizer.eos_token
    unexpected = sorted(info["unexpected_keys"])
    if not exact:
        unexpected = [k for k in unexpected if not any(u in k for u in UNUSED_PRETRAINING_WEIGHTS)]
    missing = sorted(info["missing_keys"])
    prefix = f"{model.base_model_prefix}."
    head_weights = {k for k in model.state_dict() if not k.startswith(prefix)}
    shared = {id(p) for p in model.base_model.parameters()}  # a head tied to the embeddings shares their weight
    head_params = {k for k, p in model.named_parameters(remove_duplicate=False)
                   if not k.startswith(prefix) and id(p) not in shared}
    if missing and not exact and head_params <= set(missing) <= head_weights:  # every encoder weight, no head
        head = sorted({k.split(".")[0] for k in missing})
        if needs_head:
            raise ConfigError(f"model.path={path} has no {found}-LM head (its files hold the encoder only; missing "
                              f"{', '.join(h + '.*' for h in head)}): the cloze methods (pet, pet_cln) score label "
                              "words with that head; use a masked-LM checkpoint, or method=heads / cln, which train "
                              "their own classifiers on this encoder")
        logging.getLogger("pet_mtl").info("%s: no language-model head in the files (%s); this method never reads it",
                                          path, ", ".join(h + ".*" for h in head))
        missing = []
    problems = [f"{what} {sorted(keys)[:4]}{' ...' if len(keys) > 4 else ''} ({len(keys)})"
                for what, keys in (("missing weights", missing),
                                   ("weights of another shape", [str(k) for k in info["mismatched_keys"]]),
                                   ("weights the model does not have", unexpected)) if keys]
    if problems:
        message = ("the weights do not match config.json: " + "; ".join(problems) + ". transformers would fill "
                   "missing weights with random values")
        if strict:
            raise CheckpointError(path, None, message + "; pass strict=false (model.strict=false) to load anyway")
        logging.getLogger("pet_mtl").warning("%s: %s (strict=false: loaded anyway)", path, message)
    return tokenizer, model


def build_tiny(directory: str | Path, texts: Iterable[str], hidden: int = 64, layers: int = 2, heads: int = 2,
               seed: int = 0, dropout: float = 0.1):
    """Write a random tiny BERT masked LM + character tokenizer to `directory` and load it back."""
    if hidden % heads:
        raise ConfigError(f"model.tiny: hidden={hidden} is not a multiple of heads={heads}")
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
