"""The pattern workbench, `python -m pet_mtl.patterns <command>`: what a pattern author needs before a training run.

  check               validate every template with every verbalizer under the pattern roots (and named sets);
                      with --model also against its tokenizer (unknown tokens, token counts, slot fit, warnings)
  preview             render examples through a pattern: the text the model sees after truncation, the slot, and
                      each label word's tokens
  zero-shot           score a labelled sample through a pattern set before any training, per pattern and per
                      scoring rule: macro-F1, accuracy, and which labels the model's prior favours
  search-verbalizers  find label words the model already associates with each label (in the spirit of PETAL and
                      LM-BFF's automatic label words) and write a verbalizer file
"""
from __future__ import annotations

import argparse
import collections
import logging
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import yaml

from pet_mtl.cli import key_value_flags
from pet_mtl.core.config import DataConfig
from pet_mtl.core.errors import PetMtlError
from pet_mtl.core.io import atomic_write_text
from pet_mtl.core.resources import CONF_DIR, data_dir
from pet_mtl.core.tasks import TASKS, get_task
from pet_mtl.data.readers import Example, read_examples, stratified_split
from pet_mtl.data.regimes import carve_validation
from pet_mtl.prompts import (
    SCORING_RULES,
    Pattern,
    PatternSpec,
    load_pattern,
    load_pattern_set,
    pattern_roots,
    read_yaml,
    user_set_files,
    verbalizer_files,
)

CJK = re.compile(r"[\u4e00-\u9fff]+")


# ---------------------------------------------------------------- shared pieces


def _tokenizer_and_model(model: str | None, texts: Sequence[str] = ()):
    """The masked LM at `model`, or (for check/preview without one) a tiny random BERT over the given text."""
    from pet_mtl.backbones.loading import build_tiny, load_pretrained

    if model is not None:
        return load_pretrained(model, kinds=("masked", "causal"))
    return build_tiny(Path(tempfile.mkdtemp(prefix="pet_mtl-workbench-")), texts)


def _method(mlm) -> str:
    """The workbench scores a causal LM's patterns as method=causal does, a masked LM's as pet does."""
    from pet_mtl.backbones.contract import model_kind

    return "causal" if model_kind(mlm.config) == "causal" else "pet"


def _pattern_set(name: str, roots: Sequence[Path]) -> dict:
    """A pattern set by name: <root>/sets/<name>.yaml in the user's roots, else the shipped conf/patterns/."""
    path = user_set_files(roots).get(name, Path(CONF_DIR) / "patterns" / f"{name}.yaml")
    if not path.is_file():
        raise PetMtlError(f"no pattern set {name!r} in {', '.join(str(r / 'sets') for r in roots)} or "
                          f"{CONF_DIR}/patterns")
    return read_yaml(path) or {}


def _patterns(args, tasks: Sequence[str]) -> dict[str, list[Pattern]]:
    roots = pattern_roots(args.roots)
    if getattr(args, "template", None):
        spec = PatternSpec(args.template, args.verbalizer, args.scoring_rule)
        return {tasks[0]: [load_pattern(tasks[0], spec, roots)]}
    return load_pattern_set(_pattern_set(args.set, roots), tasks, roots, args.scoring_rule or "word")


def _labelled(task: str, args, rows: int, part: str = "val") -> list[Example]:
    """A seeded, stratified sample of labelled rows: from --file, or from the task's training file in --data-dir
    carved as training carves its validation split (part="val") or from the rest (part="train")."""
    t = get_task(task)
    if getattr(args, "file", None):
        examples = read_examples(args.file, t, labelled=True)
    else:
        defaults = DataConfig()
        train, val = carve_validation(read_examples(data_dir(args.data_dir) / t.files["train"], t, labelled=True),
                                      defaults.val_size, defaults.split_seed)
        examples = val if part == "val" else train
    return examples if len(examples) <= rows else stratified_split(examples, rows, 0)[1]


def _add_common(p: argparse.ArgumentParser, model_required: bool = False) -> None:
    p.add_argument("--roots", nargs="*", default=[], help="your pattern folders, searched before the shipped ones")
    p.add_argument("--model", required=model_required, help="a local masked-LM folder (e.g. ../shared/models/zh-mini-mlm)")
    p.add_argument("--max-length", type=int, default=128)


def _add_patterns(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", default="default", help="a pattern set (default: default)")
    p.add_argument("--template", help="one template instead of a set, e.g. tnews/topic.j2 (needs --task)")
    p.add_argument("--verbalizer", default="default", help="with --template: the verbalizer's name")
    p.add_argument("--scoring-rule", choices=list(SCORING_RULES), help="scoring rule for patterns that name none")


# ---------------------------------------------------------------- check


def check(args) -> int:
    roots = pattern_roots(args.roots)
    tokenizer = _tokenizer_and_model(args.model)[0] if args.model else None
    problems: dict[str, None] = {}  # each problem once, however many verbalizers a broken template is paired with

    def problem(message: str) -> None:
        if message not in problems:
            problems[message] = None
            print(f"error: {message}")

    for root in roots:
        for template in sorted(root.glob("*/*.j2")):
            task = template.parent.name
            if task not in TASKS:
                problem(f"{template}: folder {task!r} is not a task ({', '.join(TASKS)})")
                continue
            names: dict[str, None] = {}  # the verbalizers it can be paired with: its folder's in every root
            for vfile in verbalizer_files(str(template), template, roots):
                try:
                    names.update(dict.fromkeys(read_yaml(vfile) or {}) if vfile.is_file() else {})
                except (OSError, PetMtlError) as e:
                    problem(str(e).splitlines()[0])
            for name in names:
                try:
                    p = load_pattern(task, PatternSpec(str(template), name), roots)
                    detail = ""
                    if tokenizer is not None:
                        from pet_mtl.methods.features import ClozeFeaturizer

                        featurizer = ClozeFeaturizer(tokenizer, {task: [p]}, args.max_length)
                        detail = " | " + featurizer.describe()[0].split(": ", 1)[1]  # its warnings are logged
                    print(f"ok: {template} @{name}{detail}")
                except PetMtlError as e:
                    problem(str(e))
    for name in args.sets:
        try:
            loaded = load_pattern_set(_pattern_set(name, roots), list(TASKS), roots)
            if args.method == "causal":
                from pet_mtl.methods.causal import check_causal_pattern

                for p in (p for ps in loaded.values() for p in ps):
                    check_causal_pattern(p)
            print(f"ok: pattern set {name}")
        except PetMtlError as e:
            problem(f"pattern set {name}: {e}")
    print(f"{len(problems)} problem(s)" if problems else "all patterns valid")
    return 1 if problems else 0


# ---------------------------------------------------------------- preview


def preview(args) -> int:
    from pet_mtl.methods import build_scorer

    task = args.task
    examples = _labelled(task, args, args.n) if args.labelled else _unlabelled(task, args)
    tokenizer, mlm = _tokenizer_and_model(args.model, []) if args.model else (None, None)
    method = _method(mlm) if mlm is not None else "pet"
    if method == "causal" and args.set == "default" and not args.template:
        args.set = "causal"
    patterns = _patterns(args, [task])
    if mlm is None:
        texts = [v for e in examples for v in e.fields.values()] + [p.source for p in patterns[task]]
        texts += [w for p in patterns[task] for ws in p.word_lists().values() for w in ws]
        tokenizer, mlm = _tokenizer_and_model(None, texts)
    featurizer, _ = build_scorer(method, tokenizer, mlm, patterns, [task], args.max_length)
    for line in featurizer.describe():
        print(line)
    for ex in examples[: args.n]:
        print(f"\n{task} {ex.id}" + (f" (label {ex.label})" if ex.label else "") + f" from {ex.source}")
        for f in featurizer.encode([ex], with_labels=False):
            pattern = featurizer.patterns[f.head]
            tokens = tokenizer.convert_ids_to_tokens(list(f.input_ids))
            if method == "causal":
                print(f"  {pattern.name}: a prompt of {len(tokens)} tokens; each label word's tokens continue it")
            else:
                full = len(tokenizer(*featurizer.parts(pattern.render(ex), f.head))["input_ids"])
                print(f"  {pattern.name}: {len(tokens)} tokens" + (f" (cut from {full})" if full > len(tokens) else "")
                      + f", slot at {f.slot_start}..{f.slot_start + f.slot_len - 1}")
            for j, row in zip(f.prompt_positions, f.prompt_rows):  # learned tokens: which table row, not the placeholder
                tokens[j] = f"[soft:{row}]"
            print("  model sees: " + " ".join(tokens))
    return 0


def _unlabelled(task: str, args) -> list[Example]:
    t = get_task(task)
    path = Path(args.file) if args.file else data_dir(args.data_dir) / t.files["train"]
    for labelled in (True, False):
        try:
            return read_examples(path, t, labelled=labelled)[: args.n]
        except PetMtlError:
            if not labelled:
                raise
    return []


# ---------------------------------------------------------------- zero-shot


def zero_shot(args) -> int:
    import torch

    from pet_mtl.inference.predictor import Predictor, score_predictions
    from pet_mtl.methods import build_scorer

    tokenizer, mlm = _tokenizer_and_model(args.model)
    method = _method(mlm)
    if method == "causal" and args.set == "default" and not args.template:
        args.set = "causal"  # the causal method's own prompts, as training uses them
    tasks = args.tasks or list(TASKS)
    rules = args.rules.split(",")
    print("| task | pattern | scoring | macro-F1 | accuracy | predicted labels (count) |")
    print("|---|---|---|---|---|---|")
    for task in tasks:
        examples = _labelled(task, args, args.rows)
        for rule in rules:
            args.scoring_rule = rule
            for pattern in _patterns(args, [task])[task]:
                featurizer, model = build_scorer(method, tokenizer, mlm, {task: [pattern]}, [task], args.max_length)
                predictor = Predictor(featurizer, model.eval())
                with torch.inference_mode():
                    preds = predictor.predict(examples)
                s = score_predictions(examples, preds)
                counts = collections.Counter(get_task(task).labels[p] for p in preds)
                print(f"| {task} | {pattern.name} | {pattern.scoring} | {s['macro_f1']:.4f} | {s['accuracy']:.4f} | "
                      + ", ".join(f"{c}: {n}" for c, n in counts.most_common()) + " |")
    return 0


# ---------------------------------------------------------------- search-verbalizers


def ngram_candidates(texts: Sequence[str], n_chars: int, limit: int) -> list[str]:
    """The most frequent runs of n Chinese characters in the texts (a word list for the search)."""
    counts: collections.Counter[str] = collections.Counter()
    for text in texts:
        for run in CJK.findall(text):
            counts.update(run[i:i + n_chars] for i in range(len(run) - n_chars + 1))
    return [w for w, _ in counts.most_common(limit)]


def search_verbalizers(args) -> int:
    import torch

    from pet_mtl.inference.predictor import Predictor, score_features, score_predictions
    from pet_mtl.methods import build_scorer

    task = get_task(args.task)
    out = Path(args.out)  # refused before the search, not after it
    existing = read_yaml(out) if out.is_file() else {}
    if not isinstance(existing, dict):
        raise PetMtlError(f"{out}: not a verbalizer file (a mapping name -> {{label: word}}); choose another --out")
    if args.name in existing and not args.replace:
        raise PetMtlError(f"{out} has a verbalizer named {args.name!r} already; pass --replace to replace it, or "
                          "another --name (the file's other verbalizers are always kept)")
    tokenizer, mlm = _tokenizer_and_model(args.model)
    train = _labelled(task.name, args, args.rows, part="train")
    if args.words:
        words = [w.strip() for w in Path(args.words).read_text(encoding="utf-8").splitlines() if w.strip()]
    else:
        words = ngram_candidates([v for e in train for v in e.fields.values()], args.tokens, args.candidates)
    words = [w for w in dict.fromkeys(words)
             if len(ids := tokenizer(w, add_special_tokens=False)["input_ids"]) == args.tokens
             and tokenizer.unk_token_id not in ids]
    if len(words) < task.num_labels:
        raise PetMtlError(f"only {len(words)} candidate words of {args.tokens} tokens; give --words or more --rows")
    roots = pattern_roots(args.roots)
    first = _pattern_set("default", roots)[task.name][0]  # the task's pattern in the default set
    template = args.template or (first if isinstance(first, str) else first["template"])
    probe = load_pattern(task.name, PatternSpec(template), roots)
    # the template with a slot of --tokens positions: placeholder words of that length (their scores are not used)
    pattern = Pattern(task.name, f"{probe.name}@search", probe.source, dict(zip(task.labels, words)), probe.origin)
    featurizer, model = build_scorer("pet", tokenizer, mlm, {task.name: [pattern]}, [task.name], args.max_length)
    candidates = torch.tensor([tokenizer(w, add_special_tokens=False)["input_ids"] for w in words])  # [M, S]
    feats = featurizer.encode(train)
    labels = torch.tensor([task.label_index(e.label) for e in train])

    def candidate_scores(batch):  # [B, M]: each candidate word's log-probability at the slot, summed over positions
        logp = model.slot_logits(batch["input_ids"], batch["attention_mask"], batch["slot_positions"],
                                 batch.get("token_type_ids")).float().log_softmax(-1)  # [B, S, V]
        return sum(logp[:, i, candidates[:, i]] for i in range(candidates.size(1)))

    scores = score_features(model, feats, 64, tokenizer.pad_token_id, 1, "fp32", torch.device("cpu"),
                            forward=candidate_scores, width=len(words))
    sums = torch.zeros(task.num_labels, len(words)).index_add_(0, labels, scores)
    counts = torch.bincount(labels, minlength=task.num_labels).clamp(min=1)[:, None].float()
    inside = sums / counts
    outside = (sums.sum(0, keepdim=True) - sums) / (len(train) - counts).clamp(min=1)
    margin = inside - outside  # how much more likely the word is at the slot for this label's rows than for others
    chosen: dict[str, str] = {}
    for flat in margin.flatten().argsort(descending=True).tolist():
        label, m = divmod(flat, len(words))
        code = task.labels[label]
        if code not in chosen and words[m] not in chosen.values():
            chosen[code] = words[m]
        if len(chosen) == task.num_labels:
            break
    found = {code: chosen[code] for code in task.labels}
    print(f"searched {len(words)} candidate words of {args.tokens} token(s) on {len(train)} training rows")
    for code in task.labels:
        name = task.label_names.get(code, code)
        print(f"  {code} {name if name != code else ''}: {found[code]} (margin {margin[task.label_index(code)].max():.2f})")
    val = _labelled(task.name, args, args.rows)
    zero_shot_f1 = {}
    for title, verbalizer, where in (("current", probe.verbalizer, probe.verbalizer_origin),
                                     ("found", found, "this search")):
        p = Pattern(task.name, f"{probe.name}@{title}", probe.source, verbalizer, probe.origin, scoring="word_mean")
        f, m = build_scorer("pet", tokenizer, mlm, {task.name: [p]}, [task.name], args.max_length)
        sc = score_predictions(val, Predictor(f, m.eval()).predict(val))
        zero_shot_f1[title] = sc["macro_f1"]
        print(f"zero-shot on {len(val)} validation rows, {title} verbalizer ({where}): macro-F1 "
              f"{sc['macro_f1']:.4f}, accuracy {sc['accuracy']:.4f}")
    # the file's other verbalizers (and its comments) stay: a new name is appended, a replaced one rewrites the file
    entry = yaml.safe_dump({args.name: found}, allow_unicode=True, sort_keys=False)
    if args.name in existing:
        text = yaml.safe_dump({**existing, args.name: found}, allow_unicode=True, sort_keys=False)
    else:
        before = out.read_text(encoding="utf-8") if out.is_file() else ""
        text = before + ("" if not before or before.endswith("\n") else "\n") + entry
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, text)
    print(f"{'replaced' if args.name in existing else 'added'} verbalizer {args.name!r} in {out}")
    root = out.parent.parent if out.name == "verbalizers.yaml" and out.parent.name == task.name else None
    print(f"use it: {{template: {template}, verbalizer: {args.name}}} under {task.name}: in a pattern set"
          + (f", with pattern_roots=[{root}]" if root is not None else
             f" (found by name when the file is <root>/{task.name}/verbalizers.yaml under a pattern root)"))
    if zero_shot_f1["found"] < zero_shot_f1["current"]:
        print(f"warning: the found words score below the current ones zero-shot ({zero_shot_f1['found']:.4f} against "
              f"{zero_shot_f1['current']:.4f}); they may still train better, but compare before you switch",
              file=sys.stderr)
    return 0


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pet_mtl.patterns", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="validate every template and verbalizer under the pattern roots")
    c.add_argument("sets", nargs="*", help="pattern sets to load as well (e.g. default ensemble)")
    c.add_argument("--method", default="pet", choices=["pet", "causal"],
                   help="check the sets' patterns for this method too (causal: the slot ends each template)")
    _add_common(c)
    pv = sub.add_parser("preview", help="render examples through a pattern: what the model sees")
    pv.add_argument("--task", required=True, choices=list(TASKS))
    pv.add_argument("--file", help="a data file (competition TSV or CLUE JSON lines); default: the task's training file")
    pv.add_argument("--data-dir", help="folder of the competition files (default: the demo data)")
    pv.add_argument("-n", type=int, default=3, help="examples to show")
    pv.add_argument("--labelled", action="store_true", help="sample labelled rows (stratified) instead of the first n")
    _add_common(pv)
    _add_patterns(pv)
    z = sub.add_parser("zero-shot", help="score a labelled sample before any training")
    z.add_argument("--tasks", nargs="*", choices=list(TASKS))
    z.add_argument("--file", help="a labelled file (with one task in --tasks)")
    z.add_argument("--data-dir", help="folder of the competition files (default: the demo data)")
    z.add_argument("--rows", type=int, default=500, help="validation rows per task (a stratified sample)")
    z.add_argument("--rules", default=",".join(SCORING_RULES), help="scoring rules to compare (comma-separated)")
    _add_common(z, model_required=True)
    _add_patterns(z)
    s = sub.add_parser("search-verbalizers", help="find label words from the model and the task's text")
    s.add_argument("--task", required=True, choices=list(TASKS))
    s.add_argument("--template", help="the pattern whose slot is searched (default: the task's in the default set)")
    s.add_argument("--data-dir", help="folder of the competition files (default: the demo data)")
    s.add_argument("--file", help="a labelled file instead of the training file")
    s.add_argument("--tokens", type=int, default=2, help="token length of the label words")
    s.add_argument("--words", help="a file of candidate words, one per line (default: frequent n-grams of the text)")
    s.add_argument("--candidates", type=int, default=2000, help="how many frequent n-grams to try")
    s.add_argument("--rows", type=int, default=2000, help="training rows to score candidates on (stratified)")
    s.add_argument("--out", default="searched_verbalizers.yaml", help="the verbalizer file to write")
    s.add_argument("--name", default="searched", help="the verbalizer's name in that file (its others are kept)")
    s.add_argument("--replace", action="store_true", help="replace a verbalizer of that name in the file")
    _add_common(s, model_required=True)
    args = ap.parse_args(key_value_flags(argv, {"data.dir": "--data-dir", "model.path": "--model",
                                                "pattern_roots": "--roots", "model.max_length": "--max-length"}))
    logging.basicConfig(format="%(levelname)s: %(message)s", level=logging.INFO)
    commands = {"check": check, "preview": preview, "zero-shot": zero_shot, "search-verbalizers": search_verbalizers}
    try:
        return commands[args.command](args)
    except PetMtlError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
