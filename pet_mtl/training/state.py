"""What a run must carry across a kill besides its weights: progress counters, optimizer moments, RNG states.

Tensors go to safetensors and the rest to JSON (no pickle), inside checkpoint-last's train_state/ folder.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from pet_mtl.core.errors import CheckpointError


@dataclass
class TrainState:
    """Everything about a run's progress that must survive a kill, beside the tensors (weights, optimizer moments,
    RNG states). Saved and restored whole, in one place (`Loop.train_state` / `Loop.restore_train_state`): a new counter is
    a new field here, and resume carries it without further code; a plug-in keeps its own state (plugins.py)."""

    step: int = 0  # optimizer steps done
    micro: int = 0  # batches consumed: the position in the (deterministic) epoch stream
    best: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    wall_seconds: float = 0.0  # of the earlier processes of this run (a resumed run adds its own)
    examples_seen: int = 0
    losses: list[float] = field(default_factory=list)  # training losses since the last evaluation
    world: int = 1  # processes that wrote it: a resume must use as many

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "TrainState":
        return cls(**{f.name: doc[f.name] for f in dataclasses.fields(cls) if f.name in doc})


def train_state_tensors(opt: torch.optim.Optimizer, rng_states: list[torch.Tensor]
                        ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors of a resumable state (optimizer moments, every rank's RNG state) and the optimizer's JSON part."""
    tensors, opt_info = optimizer_to_flat(opt)
    tensors.update({f"rng.torch.{r}": t for r, t in enumerate(rng_states)})
    return tensors, opt_info


def write_train_state(ckpt: Path, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    """train_state/ inside a checkpoint being written: tensors as safetensors, the rest as JSON (no pickle)."""
    (ckpt / "train_state").mkdir()
    save_file({k: v.contiguous() for k, v in tensors.items()}, ckpt / "train_state" / "tensors.safetensors")
    (ckpt / "train_state" / "state.json").write_text(json.dumps(state), encoding="utf-8")


def load_train_state(ckpt: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    d = ckpt / "train_state"
    if not (d / "state.json").is_file():
        raise CheckpointError(d, None, "no training state to resume from")
    try:
        return load_file(d / "tensors.safetensors"), json.loads((d / "state.json").read_text(encoding="utf-8"))
    except Exception as e:  # truncated tensors, a state.json that does not parse
        raise CheckpointError(d, None, f"unreadable training state: {type(e).__name__}: {str(e)[:200]}") from None


def optimizer_to_flat(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state as tensors + JSON (no pickle)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim.{pid}.{k}"] = v
            else:
                scalars[f"{pid}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, pid, k = key.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    for key, v in info["scalars"].items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": info["param_groups"]})
