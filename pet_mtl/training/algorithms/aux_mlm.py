"""PET's auxiliary masked-LM loss (train.mlm_weight): an endless stream of masked unlabelled text, and the loss of
the run's own masked LM on a batch of it, added to the label loss at every step. With a causal LM (method=causal)
the loss is its own: the next token of the unlabelled text."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from pet_mtl.backbones.contract import Backbone
from pet_mtl.backbones.mlm import language_model, masked_lm_loss
from pet_mtl.core.config import MaskingConfig as Masking
from pet_mtl.core.errors import ConfigError
from pet_mtl.core.precision import autocast
from pet_mtl.data.corpus import Corpus, CorpusState
from pet_mtl.data.packing import CausalStream, MaskedStream
from pet_mtl.data.regimes import TaskData
from pet_mtl.data.unlabelled import sources
from pet_mtl.training.plugins import Algorithm


class AuxiliaryMLM(Algorithm):
    """An endless stream of masked unlabelled text; its masked-LM loss on the run's own masked LM, times
    train.mlm_weight, joins every micro-batch's loss. Its stream position and the losses since the last evaluation
    are its state."""

    name = "aux_mlm"

    def __init__(self, cfg: Any, data: Mapping[str, TaskData], tokenizer, mlm: torch.nn.Module, world: int = 1):
        if world > 1:
            raise ConfigError("train.mlm_weight > 0 runs in one process for now (its extra forward is outside "
                              "DistributedDataParallel, whose gradient reduction would miss it); train without "
                              "torchrun, or with train.mlm_weight=0")
        files = sources(cfg, data)
        if not files:
            raise ConfigError("train.mlm_weight > 0 needs unlabelled text: data.unlabelled.<task>=[...], e.g. "
                              "data.unlabelled.tnews=[a,b] for the competition's test files A and B")
        tr = cfg.train
        self.corpus = Corpus(files, cfg.seed, 0.0, 0.01)
        backbone = Backbone(mlm, tokenizer, verify=False)  # the run's scorer has checked it
        if backbone.kind == "causal":  # a causal LM's own objective: the next token of unlabelled text
            self.stream = CausalStream(self.corpus.endless(), tokenizer, cfg.model.max_length, cfg.seed)
        else:
            self.stream = MaskedStream(self.corpus.endless(), tokenizer, cfg.model.max_length, Masking(), cfg.seed)
        self.masked_lm = language_model(backbone)
        self.batch_size = tr.mlm_batch_size or tr.batch_size
        self.precision = tr.precision
        self.weight = tr.mlm_weight
        self.losses: list[float] = []  # since the last evaluation

    def after_loss(self, run, loss: torch.Tensor) -> torch.Tensor:
        mlm = self.loss(run.device)
        self.losses.append(mlm.item())
        return loss + self.weight * mlm

    def before_evaluation(self, run) -> dict[str, Any]:
        mean = {"mlm_loss": sum(self.losses) / len(self.losses)} if self.losses else {}
        self.losses = []
        return mean

    def loss(self, device: torch.device) -> torch.Tensor:
        batch = {k: v.to(device) for k, v in self.stream.batch(self.batch_size).items()}
        with autocast(device, self.precision):
            logits, labels = self.masked_lm(**batch)
        return masked_lm_loss(logits, labels)

    def state_dict(self):
        return {}, {"corpus": self.corpus.state.to_json(), "stream": self.stream.state(), "losses": self.losses}

    def load_state_dict(self, tensors, state: dict[str, Any]) -> None:
        self.corpus.restore(CorpusState.from_json(state["corpus"]))
        self.stream.restore(state["stream"])
        self.losses = list(state["losses"])

    def describe(self) -> list[str]:
        return [f"auxiliary MLM: {s.path} ({s.kind}, {s.task.name}, share {s.weight / sum(f.weight for f in self.corpus.sources):.3f}, "
                f"{len(s.skip_texts)} validation/held-out texts never read)" for s in self.corpus.sources]
