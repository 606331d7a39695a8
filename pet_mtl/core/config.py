"""Typed configs: the one source of every default. conf/*.yaml only choose groups (pattern set, data regime) and
set what a group option changes; tests/test_config.py fails if a YAML file restates a default.

Why dataclasses and not bare YAML: a wrong key or type (`train.lr=fast`, `train.bacth_size=8`) is rejected
before anything is loaded, and the library reads `cfg.train.lr` with a known type.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from hydra.core.config_store import ConfigStore

log = logging.getLogger("pet_mtl")


@dataclass
class TinyModelConfig:
    """The random BERT built when model.path is null (demo, tests)."""

    hidden: int = 64
    layers: int = 2
    heads: int = 2


@dataclass
class LoraOptions:
    """LoRA adapters (through peft) in the backbone: the backbone frozen, low-rank updates of its attention
    projections trained, and checkpoints that hold only what was trained (pet_mtl/backbones/adapters.py)."""

    #: the adapters' rank; 0 (the default) trains the whole backbone as usual, > 0 turns LoRA on
    r: int = 0
    #: the update's scale is alpha / r
    alpha: float = 16.0
    #: dropout on the adapters' input
    dropout: float = 0.0
    #: the backbone's linear layers (by name) that get adapters; null: the attention's query and value projections
    #: under their names for the architecture (peft's table; query/value, q_proj/v_proj, c_attn...)
    target_modules: Optional[List[str]] = None


@dataclass
class ModelConfig:
    #: a local Hugging Face masked-LM directory (e.g. ../shared/models/zh-mini-mlm); null builds a tiny random one
    path: Optional[str] = None
    #: masked | causal: which kind of language model model.path holds; null reads it from its config.json
    #: (a decoder flag or a ...ForCausalLM / ...LMHeadModel architecture is causal)
    kind: Optional[str] = None
    #: tokens per sequence, special tokens included; example fields are truncated to fit, patterns never
    max_length: int = 128
    #: allow .bin/.pt pickle files in model.path (they can execute code when loaded)
    trust_pickle: bool = False
    #: refuse a model.path whose weight files lack weights the model needs or disagree with its config.json
    #: (false: load anyway, with random values for what is missing, and warn)
    strict: bool = True
    #: size of the task embedding that drives conditional LayerNorm (method=cln, pet_cln)
    cln_dim: int = 32
    #: method=heads, cln: encode OCNLI's premise and hypothesis as a tokenizer pair with token type ids 0/1
    segment_ids: bool = True
    #: method=heads, cln: dropout on the [CLS] state before the task heads (0: as a plain classifier does)
    head_dropout: float = 0.0
    #: method=heads, cln: the task heads' initial weights: bert (N(0, initializer_range), zero bias: as transformers
    #: initialises its classifiers) | torch (PyTorch's nn.Linear default: Kaiming-uniform weights, uniform bias)
    head_init: str = "bert"
    #: the patterns' learned prompt tokens reparametrised while they train, as P-tuning does: lstm (a bidirectional
    #: LSTM then a two-layer MLP over the prompt tokens) | mlp (the MLP alone) | null (the embeddings themselves);
    #: checkpoint-best holds the plain embeddings it computes, checkpoint-last the encoder too, for resume
    prompt_encoder: Optional[str] = None
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    lora: LoraOptions = field(default_factory=LoraOptions)


@dataclass
class DataConfig:
    #: folder with the competition files (OCNLI_train.csv, ...); null = the demo set in examples/demo
    dir: Optional[str] = None
    #: validation rows carved from each training file, stratified by label: a fraction (<1) or a count
    val_size: float = 0.1
    #: cap on training rows per task (a seeded stratified subsample), null = all
    max_train_per_task: Optional[int] = None
    #: cap on validation rows per task, null = all of val_size
    max_val_per_task: Optional[int] = None
    #: seed of the validation / test carving: fixed apart from `seed`, so every seed is scored on the same rows
    split_seed: int = 42
    #: full (competition training files) | fewshot (FewCLUE splits, see pet_mtl/data/regimes.py)
    regime: str = "full"
    #: fewshot: folder holding FewCLUE's <task>/train_k.json, dev_k.json
    fewclue_dir: Optional[str] = None
    #: fewshot: which FewCLUE split (0..4, few_all); also picks the sample for tasks without FewCLUE files
    fewclue_split: str = "0"
    #: fewshot: train and dev rows per class sampled for tasks without FewCLUE files (OCEMOTION)
    k_per_class: int = 16
    #: fewshot: rows per task in the fixed held-out set carved from the training file (a count, or a fraction < 1)
    held_out_per_task: float = 1000
    #: rows without labels per task, for the auxiliary MLM loss (train.mlm_weight): a | b (the competition's test
    #: file A or B in data.dir), competition TSV, CLUE JSON lines, or plain .txt/.txt.gz (one-text tasks); see
    #: pet_mtl/data/unlabelled.py. Rows whose text is a validation or held-out row's are never read
    unlabelled: Dict[str, List[str]] = field(default_factory=lambda: {"ocnli": [], "ocemotion": [], "tnews": []})
    #: task -> JSON lines of model-labelled rows that join the training rows (written by python -m pet_mtl.ipet)
    pseudo_labelled: Dict[str, Optional[str]] = field(
        default_factory=lambda: {"ocnli": None, "ocemotion": None, "tnews": None})
    #: deprecated spelling of fewclue_split (removed in the next release)
    split: Optional[str] = None
    #: deprecated spelling of held_out_per_task (removed in the next release)
    eval_per_task: Optional[float] = None


@dataclass
class OptimizerConfig:
    """What train and pretrain share: AdamW (no decay on biases and LayerNorm) with warmup and linear decay."""

    #: examples (train) or packed sequences (pretrain) per step and process
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    max_grad_norm: float = 1.0


@dataclass
class TrainConfig(OptimizerConfig):
    #: learning rate of the learned prompt tokens (the patterns' soft()); null: train.lr. P-tuning and PaddleNLP
    #: train prompt embeddings at a larger rate than the model they steer
    prompt_lr: Optional[float] = None
    #: prompts: train only the learned prompt tokens, everything else frozen (prompt tuning); null: all that the
    #: method and model.lora leave trainable
    train_only: Optional[str] = None
    epochs: float = 2.0
    #: stop after this many optimizer steps (overrides epochs)
    max_steps: Optional[int] = None
    #: weight of PET's auxiliary masked-LM loss on data.unlabelled text: loss = label loss + mlm_weight x MLM loss
    #: (0 = off; PET's paper uses 1e-4 in its (1 - a) / a convention, pet_mtl/data/unlabelled.py)
    mlm_weight: float = 0.0
    #: packed sequences of unlabelled text per step; null = train.batch_size
    mlm_batch_size: Optional[int] = None
    #: R-Drop weight alpha (0 = off): each batch also runs a second dropout pass, and alpha x the symmetric KL
    #: between the two passes' label distributions joins the loss (training costs about 2x)
    rdrop: float = 0.0
    #: method=causal, pet, pet_cln: add this weight x the language-model loss of each row's gold label word (minus
    #: its log-likelihood after the prompt or at the slot) to the label loss (0 = off)
    gold_word_weight: float = 0.0
    #: decay of an exponential moving average of the weights (0 = off; e.g. 0.999 averages about the last 1,000
    #: steps): evaluation, checkpoints and predictions use the average, training steps the weights as without it,
    #: and the last evaluation also scores the trained weights (metrics.json `without_ema`), pet_mtl/training/algorithms/ema.py
    ema: float = 0.0
    #: proportional | temperature | round_robin (pet_mtl/data/sampling.py)
    sampling: str = "proportional"
    #: train.sampling=temperature: a task of n rows is drawn in proportion to n^(1/T)
    sampling_temperature: float = 2.0
    #: deprecated spelling of sampling_temperature (removed in the next release; distill.temperature is another thing)
    temperature: Optional[float] = None
    #: per-task loss weights: train.task_weights.ocemotion=2.0 (every task is listed, so overriding one is a plain
    #: override; a task missing from the map weighs 1)
    task_weights: Dict[str, float] = field(default_factory=lambda: {"ocnli": 1.0, "ocemotion": 1.0, "tnews": 1.0})
    #: single (each batch one task's rows, length-grouped within it, as a plain multi-task classifier trains) | mixed
    #: (a batch holds rows of every task). On the whole files single beat mixed for heads in each of 3 seeds and
    #: tied for pet; at 4,000 rows per task mixed won (benchmarks/RESULTS.md, issue 10)
    batch_tasks: str = "single"
    #: cut batches from length-sorted chunks (32 batches' rows) for little padding; without it heads trained 3x
    #: slower on the whole files and scored no better (benchmarks/RESULTS.md, issue 10)
    group_by_length: bool = True
    #: round padded lengths up to a multiple; null = auto (8 for bf16 or GPU, 1 for fp32 on CPU: the faster there)
    pad_to_multiple_of: Optional[int] = None
    #: auto (bf16 on a GPU that has it, else fp32) | fp32 | bf16 (autocast; about 2x faster on GPUs and CPUs with
    #: AVX512-BF16, ~30x slower on CPUs without: auto never picks it on a CPU)
    precision: str = "auto"
    #: evaluate (and keep the best checkpoint) every N optimizer steps, and always at the end; 0 = only at the end
    eval_every: int = 500
    #: early stopping: end the run after this many evaluations in a row without a better mean macro-F1 (null: off)
    patience: Optional[int] = None
    eval_batch_size: int = 128
    #: log a line every N steps when the progress bar is off (train.progress=false)
    log_every: int = 100
    #: continue from <run dir>/checkpoint-last (run with hydra.run.dir=<that run dir>)
    resume: bool = False
    #: keys a resumed run may change (e.g. [train.max_steps]); any other difference from the run is refused
    resume_changes: List[str] = field(default_factory=list)
    #: a new (not resumed) run may replace the results of an earlier run in its directory
    overwrite: bool = False
    #: torch threads; null = torch's default
    num_threads: Optional[int] = None
    #: checkpoint-last holds: full (weights + optimizer + training state: resumable; for zh-mini-mlm about 3x the
    #: weights), weights (the weights only, not resumable), none (no checkpoint-last; checkpoint-best only)
    checkpoint_last: str = "full"
    #: experiment trackers that also get the run's scalars: tensorboard (<run dir>/tensorboard), mlflow (a local store
    #: in <run dir>/mlruns, or MLFLOW_TRACKING_URI); pip install "pet_mtl[tensorboard]" / "pet_mtl[mlflow]"
    report_to: List[str] = field(default_factory=list)
    #: the same as report_to=[tensorboard] (kept for the runs and scripts that use it)
    tensorboard: bool = False
    #: draw learning_curve.png and confusion_<task>.png in the run directory (about 2 s a run: sweeps of many
    #: short runs may turn it off; metrics.json holds the same numbers)
    plots: bool = True
    #: after training, fit per-task label biases for macro-F1 on the validation split into checkpoint-best
    #: (calibration.json; predict applies them unless calibrate=false)
    calibrate: bool = True
    #: after training, write a submission for these competition test files (a, b) with the best checkpoint
    predict_splits: List[str] = field(default_factory=lambda: ["a"])
    progress: bool = True
    #: auto: the GPU when torch sees one, else the CPU; or cpu, cuda, cuda:N
    device: str = "auto"


@dataclass
class DistillConfig:
    """Distillation (python -m pet_mtl.distill, pet_mtl/training/distillation.py): teachers label data.unlabelled rows."""

    #: teacher checkpoints or run directories; a non-empty list makes the run a distillation
    teachers: List[str] = field(default_factory=list)
    #: softening temperature T of the teachers' distributions and of the student's soft cross-entropy
    temperature: float = 2.0
    #: weight each teacher by its validation mean macro-F1 (as PET weights pattern models); false: equal weights
    weighted: bool = True
    #: cap on unlabelled rows per task that the teachers label (a seeded sample); null = all
    max_rows_per_task: Optional[int] = None


@dataclass
class IpetConfig:
    """iPET (python -m pet_mtl.ipet, pet_mtl/ipet.py): generations of models, each trained on the gold rows plus
    the previous generation's confident pseudo-labels, then distillation into one student."""

    generations: int = 3
    #: one model per entry, each a space-separated list of train overrides ("patterns=alt", "seed=2 train.lr=2e-4")
    variants: List[str] = field(default_factory=lambda: ["seed=1", "seed=2", "seed=3"])
    #: pseudo-labelled rows per task in generation g: gold training rows x scale^g (PET's d = 5), at most all rows
    scale: float = 5.0
    #: after the last generation, distil its models into one student of the run's method
    distill: bool = True


@dataclass
class Config:
    seed: int = 42
    #: pet | heads | cln | pet_cln | causal (pet_mtl/methods)
    method: str = "pet"
    tasks: List[str] = field(default_factory=lambda: ["ocnli", "ocemotion", "tnews"])
    #: folders that pattern template paths are looked up in, in order, before the shipped patterns/ (searched last)
    pattern_roots: List[str] = field(default_factory=list)
    #: deprecated: one folder, now pattern_roots=[...] (removed in the next release)
    pattern_root: Optional[str] = None
    #: task -> list of {template, verbalizer, scoring, aggregate}; chosen with patterns=<set> from conf/patterns/
    patterns: Dict[str, Any] = field(default_factory=dict)
    #: which slot positions count in a label word's score, for pattern-set entries that name no `scoring`:
    #: padded | word | word_mean (pet_mtl.patterns.SCORING_RULES; word won on zh-mini-mlm, benchmarks/RESULTS.md)
    label_scoring: str = "word"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    ipet: IpetConfig = field(default_factory=IpetConfig)


@dataclass
class PredictDataConfig:
    #: folder with the test files; null = the data.dir the checkpoint was trained with
    dir: Optional[str] = None


@dataclass
class PredictConfig:
    #: a run directory (its checkpoint-best is used) or a checkpoint directory
    checkpoint: str = "???"
    #: which competition test files: a (OCNLI_a.csv, ...) or b (ocnli_test_B.csv, ...)
    split: str = "a"
    data: PredictDataConfig = field(default_factory=PredictDataConfig)
    #: task -> file to predict instead of the split's test files (competition TSV or CLUE JSON lines)
    files: Dict[str, str] = field(default_factory=dict)
    #: the files carry labels: also score them (per-task macro-F1 and accuracy, written to eval.json)
    labelled: bool = False
    #: where the JSON files and submit.zip go (the folder is replaced as a whole); null = beside the checkpoint:
    #: <run dir>/predict-<split>, or predict-files for files=
    output_dir: Optional[str] = None
    batch_size: int = 128
    #: auto: bf16 on a GPU that has it, else fp32; or fp32, bf16
    precision: str = "auto"
    trust_pickle: bool = False
    #: refuse a checkpoint whose weights or special tokens do not match what it records (false: load and warn)
    strict: bool = True
    #: a LoRA checkpoint's base model folder, when the base is no longer where it was trained (its weights must be
    #: the same: their fingerprint is checked); null: the folder the checkpoint records
    base_model: Optional[str] = None
    #: torch threads; null = torch's default
    num_threads: Optional[int] = None
    #: a progress bar per task
    progress: bool = True
    #: also write each task's label log-probabilities (<task>_scores.jsonl) for python -m pet_mtl.ensemble
    save_scores: bool = False
    #: apply the checkpoint's calibration biases (calibration.json, fitted for macro-F1 after training)
    calibrate: bool = True
    #: auto: the GPU when torch sees one, else the CPU; or cpu, cuda, cuda:N
    device: str = "auto"


@dataclass
class InitConfig:
    """The shape of a masked LM started from random weights (pretrain with model.path=null): BERT's, with its
    vocabulary taken from model.tokenizer."""

    layers: int = 4
    hidden: int = 256
    heads: int = 4
    #: feed-forward size; null = 4 x hidden
    intermediate: Optional[int] = None
    max_positions: int = 512
    dropout: float = 0.1


@dataclass
class PretrainModelConfig:
    #: the masked LM to continue (a local Hugging Face directory); null: random weights of model.init's shape on
    #: model.tokenizer's vocabulary
    path: Optional[str] = None
    #: the tokenizer directory; null = model.path's
    tokenizer: Optional[str] = None
    #: with model.path=null: random weights of this shape (model.init.layers=4 model.init.hidden=256 ...)
    init: InitConfig = field(default_factory=InitConfig)
    trust_pickle: bool = False
    strict: bool = True


@dataclass
class PretrainDataConfig:
    """Which text is trained on and which is kept for the held-out pseudo-perplexity (see pet_mtl/data/corpus.py)."""

    #: tokens per packed sequence, [CLS] included (train's model.max_length, so the model sees the lengths it will)
    max_length: int = 128
    #: share of lines of every file held out of training (chosen by a hash of seed, file name and line number)
    held_out_fraction: float = 0.01
    #: held-out documents per text entry for the pseudo-perplexity (read once at the start)
    eval_docs: int = 500
    #: a file whose share of bad lines (not UTF-8, wrong columns...) passes this stops the run
    max_bad_fraction: float = 0.01
    #: never read the rows of competition training files that train scores on: the validation split that
    #: train's data.val_size and data.split_seed carve (the values below must be the ones train uses)
    exclude_validation: bool = True
    val_size: float = DataConfig.val_size
    split_seed: int = DataConfig.split_seed
    #: also exclude the few-shot regime's held-out rows (needs the FewCLUE folder train's data=fewclue uses)
    fewclue_dir: Optional[str] = None
    held_out_per_task: float = DataConfig.held_out_per_task


@dataclass
class MaskingConfig:
    #: token (BERT) | word (whole-word masking through the jieba segmenter: pip install "pet_mtl[wwm]")
    unit: str = "token"
    #: share of tokens masked
    prob: float = 0.15
    #: > 1: n-gram (span) masking, a chosen unit starts a span of up to this many units (P(n) proportional to 1/n)
    max_ngram: int = 1
    #: of the masked units: replaced by [MASK], by a random token; the rest keep their token
    replace_mask: float = 0.8
    replace_random: float = 0.1


@dataclass
class PretrainTrainConfig(OptimizerConfig):
    max_steps: int = 1000
    #: auto (bf16 on a GPU that has it, else fp32) | fp32 | bf16 (autocast; faster on GPUs and CPUs with
    #: AVX512-BF16, ~30x slower on CPUs without)
    precision: str = "auto"
    #: held-out pseudo-perplexity every N steps (and before the first step and at the end); 0 = only then
    eval_every: int = 200
    eval_batch_size: int = 64
    #: write checkpoint-last (resumable) and the model in out_dir every N steps (and at the end); 0 = at the end
    save_every: int = 200
    log_every: int = 50
    #: continue from <out_dir>/checkpoint-last
    resume: bool = False
    #: keys a resumed run may change (e.g. [train.max_steps]); any other difference is refused
    resume_changes: List[str] = field(default_factory=list)
    #: a new (not resumed) run may replace the model and results of an earlier run in out_dir
    overwrite: bool = False
    #: keep checkpoint-last (optimizer state: ~2x the weights) in out_dir once the run has finished
    keep_checkpoint: bool = False
    num_threads: Optional[int] = None
    progress: bool = True
    #: auto: the GPU when torch sees one, else the CPU; or cpu, cuda, cuda:N
    device: str = "auto"


@dataclass
class PretrainConfig:
    seed: int = 42
    #: where the masked LM goes (a Hugging Face directory: train's model.path=<out_dir>); also the run directory
    out_dir: str = "???"
    #: files to pretrain on: paths, globs, competition folders, or {path, weight, kind, task} (pet_mtl/data/corpus.py)
    text: List[Any] = field(default_factory=list)
    model: PretrainModelConfig = field(default_factory=PretrainModelConfig)
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    train: PretrainTrainConfig = field(default_factory=PretrainTrainConfig)


#: old key -> new key: the old spelling keeps working for one release, with a deprecation message
RENAMED = {"data.split": "data.fewclue_split", "data.eval_per_task": "data.held_out_per_task",
           "pattern_root": "pattern_roots", "train.temperature": "train.sampling_temperature"}


def finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _at_least(low: float, optional: bool = False) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: (optional and v is None) or (finite(v) and v >= low),
            f"{'null or ' if optional else ''}a number >= {low:g}")


def _above(low: float, optional: bool = False) -> tuple[Callable[[Any], bool], str]:
    return ((lambda v: (optional and v is None) or (finite(v) and v > low)),
            f"{'null or ' if optional else ''}a finite number > {low:g}")


def _between(low: float, high: float, integer: bool = False) -> tuple[Callable[[Any], bool], str]:
    return ((lambda v: finite(v) and low <= v <= high and (not integer or float(v).is_integer())),
            f"an integer in [{int(low)}, {int(high):,}]" if integer else f"a number in [{low:g}, {high:g}]")


#: torch seeds are 64-bit
SEED_RANGE = _between(0, 2**63 - 1, integer=True)


#: key -> (test, what is expected): checked before any data or model is loaded
#: the keys of OptimizerConfig, under train.
OPTIMIZER_RANGES = {
    "train.batch_size": _at_least(1), "train.grad_accum": _at_least(1), "train.lr": _above(0),
    "train.weight_decay": _at_least(0), "train.max_grad_norm": _above(0),
    "train.warmup_ratio": ((lambda v: finite(v) and 0 <= v < 1), "a number in [0, 1)"),
}
TRAIN_RANGES = {
    **OPTIMIZER_RANGES, "train.eval_batch_size": _at_least(1), "train.rdrop": _at_least(0), "train.gold_word_weight": _at_least(0),
    "train.ema": ((lambda v: finite(v) and 0 <= v < 1), "a number in [0, 1) (0 = off)"),
    "train.mlm_weight": _at_least(0), "train.mlm_batch_size": _at_least(1, optional=True),
    "distill.temperature": _above(0), "distill.max_rows_per_task": _at_least(1, optional=True),
    "ipet.generations": _at_least(1), "ipet.scale": _above(0),
    "train.epochs": _above(0), "train.max_steps": _at_least(1, optional=True), "train.sampling_temperature": _between(0.01, 100),
    "seed": SEED_RANGE, "data.split_seed": SEED_RANGE, "model.tiny.hidden": _at_least(1),
    "model.tiny.layers": _at_least(1), "model.tiny.heads": _at_least(1),
    "train.eval_every": _at_least(0), "train.log_every": _at_least(0), "train.num_threads": _at_least(1, True),
    "train.patience": _at_least(1, True),
    "train.pad_to_multiple_of": _at_least(1, optional=True), "model.max_length": _at_least(8),
    "model.cln_dim": _at_least(1), "model.head_dropout": ((lambda v: finite(v) and 0 <= v < 1), "a number in [0, 1)"),
    "data.val_size": _above(0), "data.max_train_per_task": _at_least(1, True),
    "data.max_val_per_task": _at_least(1, True), "data.k_per_class": _at_least(1),
    "data.held_out_per_task": _above(0), "train.prompt_lr": _above(0, optional=True),
    "model.lora.r": _at_least(0), "model.lora.alpha": _above(0),
    "model.lora.dropout": ((lambda v: finite(v) and 0 <= v < 1), "a number in [0, 1)"),
}
PREDICT_RANGES = {"batch_size": _at_least(1), "num_threads": _at_least(1, optional=True)}
PRETRAIN_RANGES = {
    **OPTIMIZER_RANGES, "train.max_steps": _at_least(1), "train.eval_every": _at_least(0), "train.eval_batch_size": _at_least(1), "train.save_every": _at_least(0),
    "train.log_every": _at_least(0), "train.num_threads": _at_least(1, True), "data.max_length": _at_least(8),
    "seed": SEED_RANGE, "data.held_out_fraction": ((lambda v: finite(v) and 0 < v < 1), "a number in (0, 1)"),
    "data.eval_docs": _at_least(1), "data.max_bad_fraction": ((lambda v: finite(v) and 0 <= v <= 1),
                                                              "a number in [0, 1]"),
}


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as {dotted key: value}."""
    if not isinstance(d, dict) or not d:
        return {prefix[:-1]: d}
    return {k: v for key, value in d.items() for k, v in flatten(value, f"{prefix}{key}.").items()}


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(name="predict_schema", node=PredictConfig)
    cs.store(name="pretrain_schema", node=PretrainConfig)
