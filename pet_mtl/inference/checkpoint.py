"""Self-contained checkpoint directories, written atomically and loaded without pickle.

Layout of a checkpoint directory:
  model/          the masked LM's save_pretrained (safetensors + config.json): a plain backbone any tool can load
  adapter.safetensors  instead of model/ for a LoRA run (model.lora.r > 0): the adapters alone; pet_mtl.json's
                  `adapter` names the base model they were trained on and the fingerprint of its weights (a prompt
                  tuning run, train.train_only=prompts, has neither: its base is only named and fingerprinted)
  method.safetensors  the method's own parameters (task heads, conditional LayerNorm), when it has any
  tokenizer/      save_pretrained (tokenizer.json, vocab, config)
  pet_mtl.json    method and its options, tasks and their label codes, the patterns (template source +
                  verbalizer; none for methods that read plain text), max_length, the step and metrics it was saved at
  config.yaml     the resolved training config
  train_state/    (checkpoint-last only) optimizer tensors as safetensors, scheduler/sampler/RNG state as JSON
The directory is built under a temporary name beside the target and renamed into place, so a crash leaves either
the old checkpoint or the new one, never a half-written one.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from pet_mtl.backbones.adapters import Adapter, adapter_weights, fingerprint, inject_lora
from pet_mtl.backbones.loading import check_finite, load_pretrained, refuse_pickles
from pet_mtl.core.errors import CheckpointError, ConfigError
from pet_mtl.core.io import atomic_dir
from pet_mtl.core.tasks import get_task
from pet_mtl.methods import MethodOptions, Scorer, build_scorer, get_method
from pet_mtl.prompts import Pattern

FORMAT_VERSION = 1
META = "pet_mtl.json"
METHOD_STATE = "method.safetensors"
ADAPTER_STATE = "adapter.safetensors"


def save_checkpoint(target: Path, model, tokenizer, meta: dict[str, Any], config_yaml: str,
                    write_extra: Callable[[Path], None] | None = None, plain_prompts: bool = True) -> Path:
    """`model` is a `Scorer`: its masked LM goes to model/, its other parameters to method.safetensors.
    `write_extra(folder)` adds files of the caller's own (training writes its resumable state there) before the
    folder is swapped in, so they are part of the same atomic write. Learned prompt tokens trained through an
    encoder (P-tuning) are saved as the plain embeddings it computes (`plain_prompts`), unless the checkpoint is
    one to resume training from."""
    extra = model.extra_state()
    prompts = getattr(model, "prompts", None)
    if plain_prompts and prompts is not None and prompts.encoder is not None:
        extra = {**{k: v for k, v in extra.items() if not k.startswith("prompts.")}, **prompts.plain_state("prompts.")}
        meta = {**meta, "method_options": {**meta["method_options"], "prompt_encoder": None}}

    def write(tmp: Path) -> None:
        if model.adapter is not None:  # a frozen base stays where it is, named and fingerprinted in pet_mtl.json
            if model.adapter.r:
                save_file({k: v.detach().contiguous() for k, v in adapter_weights(model.mlm).items()},
                          tmp / ADAPTER_STATE)
        else:
            model.mlm.save_pretrained(tmp / "model", safe_serialization=True)
        if extra:
            save_file({k: v.detach().contiguous() for k, v in extra.items()}, tmp / METHOD_STATE)
        tokenizer.save_pretrained(tmp / "tokenizer")
        doc = {"format_version": FORMAT_VERSION, **meta, "special_tokens": special_tokens(tokenizer)}
        if model.adapter is not None:
            doc["adapter"] = model.adapter.to_dict()
        (tmp / META).write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
        (tmp / "config.yaml").write_text(config_yaml, encoding="utf-8")
        if write_extra is not None:
            write_extra(tmp)

    return atomic_dir(target, write)


def resolve(path: str | Path) -> Path:
    """A checkpoint directory, given it or a run directory that holds checkpoint-best."""
    path = Path(path)
    for cand in (path, path / "checkpoint-best"):
        if (cand / META).is_file():
            return cand
    raise CheckpointError(path, None, f"not a pet_mtl checkpoint (no {META}) nor a run directory with checkpoint-best/")


#: what pet_mtl.json must hold, and of which type (other keys are informative)
META_SCHEMA = {"method": str, "method_options": dict, "tasks": dict, "patterns": list, "max_length": int}
SPECIAL_TOKENS = ("pad_token", "mask_token", "cls_token", "sep_token", "unk_token")


def special_tokens(tokenizer) -> dict[str, list]:
    """The tokenizer's special tokens and their ids: a checkpoint records them, and loading compares."""
    return {name: [getattr(tokenizer, name), getattr(tokenizer, f"{name}_id")] for name in SPECIAL_TOKENS}


def load_meta(ckpt: Path) -> dict[str, Any]:
    path = ckpt / META
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CheckpointError(path, None, f"unreadable: {type(e).__name__}: {str(e)[:200]}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(path, None, "not a JSON object")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(path, None, f"format_version {meta.get('format_version')} is not "
                              f"{FORMAT_VERSION}; written by another pet_mtl version")
    meta.setdefault("method", "pet")  # checkpoints from before the methods registry
    meta.setdefault("method_options", {"cln_dim": meta.get("cln_dim", MethodOptions.cln_dim)})
    for key, kind in META_SCHEMA.items():
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise CheckpointError(path, None, f"{key!r} must be a {kind.__name__}, found {json.dumps(meta.get(key))[:80]}")
    try:
        get_method(meta["method"])
        method_options(meta)
        for name, info in meta["tasks"].items():
            if not isinstance(info, dict) or tuple(info.get("labels") or ()) != get_task(name).labels:
                raise CheckpointError(path, None, f"{name} label codes {info} differ from this pet_mtl's "
                                      f"{list(get_task(name).labels)}")
    except (ConfigError, TypeError) as e:
        raise CheckpointError(path, None, f"{e}; written by another pet_mtl version?") from None
    return meta


def load_checkpoint(path: str | Path, trust_pickle: bool = False, strict: bool = True, base_model: str | None = None):
    """(checkpoint dir, tokenizer, masked LM, meta, patterns by task), verified: the weights are exactly those the
    model needs, and the tokenizer's special tokens are the ones the checkpoint was trained with. A LoRA checkpoint's
    base is loaded from where it was trained (or `base_model`, the same weights in another folder) and must have the
    fingerprint recorded; its adapters are then injected and loaded."""
    ckpt = resolve(path)
    refuse_pickles(ckpt, trust_pickle)
    meta = load_meta(ckpt)
    adapter = read_adapter(ckpt, meta)
    if adapter is None:
        tokenizer, mlm = load_pretrained(ckpt / "model", trust_pickle, tokenizer_dir=ckpt / "tokenizer", strict=strict,
                                         exact=True, kinds=("masked", "causal"))
    else:
        tokenizer, mlm = load_base(ckpt, adapter, base_model, trust_pickle, strict)
    recorded, found = meta.get("special_tokens"), special_tokens(tokenizer)
    if recorded is not None and recorded != found:
        changed = {k: f"{recorded.get(k)} -> {found[k]}" for k in found if recorded.get(k) != found[k]}
        message = f"the tokenizer's special tokens differ from the ones the model was trained with: {changed}"
        if strict:
            raise CheckpointError(ckpt / "tokenizer", None, message + "; pass strict=false to load anyway")
        logging.getLogger("pet_mtl").warning("%s (strict=false: loaded anyway)", message)
    patterns: dict[str, list[Pattern]] = {t: [] for t in meta["tasks"]}
    for i, d in enumerate(meta["patterns"]):
        if not isinstance(d, dict) or d.get("task") not in patterns or not all(
                isinstance(d.get(k), str) for k in ("name", "source")) or not isinstance(d.get("verbalizer"), dict):
            raise CheckpointError(ckpt / META, None, f"patterns[{i}] is not a pattern of one of its tasks "
                                  "({task, name, source, verbalizer})")
        patterns[d["task"]].append(Pattern.from_dict(d, str(ckpt / META)))
    return ckpt, tokenizer, mlm, meta, patterns


def read_adapter(ckpt: Path, meta: dict[str, Any]) -> Adapter | None:
    """The LoRA record of pet_mtl.json, checked, or None for a checkpoint that holds its whole model."""
    if meta.get("adapter") is None:
        return None
    try:
        return Adapter.from_dict(meta["adapter"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(ckpt / META, None, f"'adapter' must be {{base, fingerprint, r, alpha, dropout, "
                              f"target_modules}}: {type(e).__name__}: {str(e)[:120]}") from None


def load_base(ckpt: Path, adapter: Adapter, base_model: str | None, trust_pickle: bool, strict: bool):
    """(tokenizer, backbone with the checkpoint's adapters, if any): the base as recorded, refused when its weights
    are not the ones the checkpoint was trained on (LoRA adapters or learned prompt tokens alike)."""
    base = base_model or adapter.base
    try:
        tokenizer, mlm = load_pretrained(base, trust_pickle, tokenizer_dir=ckpt / "tokenizer", strict=strict,
                                         kinds=("masked", "causal"))
    except ConfigError as e:
        raise CheckpointError(ckpt / META, None, f"it holds what was trained on the base model {base}, which does "
                              f"not load: {e}; pass the base's folder as base_model=<folder>") from None
    found = fingerprint(mlm)
    if found != adapter.fingerprint:
        raise CheckpointError(ckpt / META, None, f"it was trained on {adapter.base} (weights fingerprint "
                              f"{adapter.fingerprint}); {base} holds other weights ({found}): adapters and learned "
                              "tokens only mean something on the model they were trained on")
    if adapter.r:
        inject_lora(mlm, adapter.r, adapter.alpha, adapter.dropout, adapter.target_modules)
        load_adapter_weights(mlm, ckpt)
    return tokenizer, mlm


def load_adapter_weights(mlm, ckpt: Path) -> None:
    """adapter.safetensors into a backbone that has the adapters: exactly its adapter tensors, with their shapes."""
    path = ckpt / ADAPTER_STATE
    try:
        tensors = load_file(path)
    except Exception as e:  # missing, truncated or corrupt
        raise CheckpointError(path, None, f"unreadable: {type(e).__name__}: {str(e)[:200]}") from None
    mismatch = shape_mismatch(adapter_weights(mlm), tensors)
    if mismatch:
        raise CheckpointError(path, None, f"adapter weights do not match the model's adapters: {mismatch}")
    check_finite(tensors, path)
    mlm.load_state_dict(tensors, strict=False)


def method_options(meta: dict[str, Any]) -> MethodOptions:
    # a checkpoint from before segment ids existed was trained without them: feed it as it was trained
    return MethodOptions(**{"segment_ids": False, **meta.get("method_options", {})})


def load_scorer(path: str | Path, trust_pickle: bool = False, strict: bool = True, base_model: str | None = None):
    """(checkpoint dir, meta, featurizer, model): the method the checkpoint names, rebuilt with its weights."""
    ckpt, tokenizer, mlm, meta, patterns = load_checkpoint(path, trust_pickle, strict, base_model)
    featurizer, model = build_scorer(meta["method"], tokenizer, mlm, patterns, list(meta["tasks"]),
                                     meta["max_length"], method_options(meta))
    model.adapter = read_adapter(ckpt, meta)
    load_method_state(model, ckpt)
    check_finite(model.extra_state(), ckpt)  # the method's own parameters (the backbone's: as it loaded)
    return ckpt, meta, featurizer, model


def load_weights(model: Scorer, path: str | Path) -> None:
    """Put a checkpoint's weights (masked LM and method parameters) into an already built model of its method."""
    ckpt = resolve(path)
    adapter = read_adapter(ckpt, load_meta(ckpt))
    if adapter is not None:  # the base is the model's own: only the adapters (if any) change
        if adapter.r:
            load_adapter_weights(model.mlm, ckpt)
    else:
        _, _, saved, _, _ = load_checkpoint(path)
        model.mlm.load_state_dict(saved.state_dict())
    load_method_state(model, ckpt)


def load_method_state(model, ckpt: Path) -> None:
    """Load method.safetensors into `model`; every non-backbone parameter must be there, and nothing else."""
    path = ckpt / METHOD_STATE
    try:
        tensors = load_file(path) if path.is_file() else {}
    except Exception as e:  # a truncated or corrupt file
        raise CheckpointError(path, None, f"unreadable: {type(e).__name__}: {str(e)[:200]}") from None
    mismatch = shape_mismatch(model.extra_state(), tensors)
    if mismatch:
        raise CheckpointError(path, None, f"method parameters do not match the model: {mismatch}")
    model.load_state_dict(tensors, strict=False)


def shape_mismatch(expected: dict[str, Any], found: dict[str, Any]) -> str | None:
    """How a file's tensors differ from those a model expects (names and shapes), or None when they agree."""
    want = {k: tuple(v.shape) for k, v in expected.items()}
    got = {k: tuple(v.shape) for k, v in found.items()}
    if want == got:
        return None
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    shapes = sorted(k for k in set(got) & set(want) if got[k] != want[k])
    return f"missing {missing[:5]}, unexpected {extra[:5]}, other shape {shapes[:5]}"
