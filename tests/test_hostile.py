"""Hostile inputs, half-written outputs and silent wrong results: each case ends in the project's one-line error or
a documented rule, never in a hang, a raw traceback, a mixed folder or a model with random layers."""
from __future__ import annotations

import fcntl
import json
import re
import shutil
import tracemalloc

import pytest
import torch
from helpers import make_cfg
from safetensors.torch import load_file, save_file
from test_patterns import TNEWS_WORDS

from pet_mtl.backbones.loading import load_pretrained
from pet_mtl.core.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    PatternError,
    TrainingError,
)
from pet_mtl.data.readers import Example
from pet_mtl.inference.checkpoint import load_checkpoint, load_scorer
from pet_mtl.inference.submission import write_submission
from pet_mtl.methods.features import CHARS_PER_TOKEN, ClozeFeaturizer, clip_fields
from pet_mtl.prompts import Pattern, PatternSpec, load_pattern
from pet_mtl.training.checks import check
from pet_mtl.training.trainer import Trainer


def tnews(source: str, words=None) -> Pattern:
    return Pattern("tnews", "t", source, dict(words or TNEWS_WORDS), origin="shared/evil.j2")


# ---------------------------------------------------------------- templates get a budget


# round three: constructs the first budget did not see; each is refused at load (the stand-in row) within memory
BIG = " ~ ".join(["(title * 1900)"] * 4)  # each piece under the per-step budget, together 4x over it
ROUND_THREE = [
    ("{{ mask }}{{ title.ljust(10000) }}", 1, ".ljust() is not allowed in patterns"),
    ("{{ mask }}{{ title.center(9999 * 9999) }}", 1, ".center() is not allowed in patterns"),
    ("{{ mask }}\n{{ title.zfill(10000) }}", 2, ".zfill() is not allowed in patterns"),
    ("{{ mask }}{{ '{:>9999}'.format(title) }}", 1, ".format() is not allowed in patterns"),
    ("{{ mask }}{{ title.encode('rot13') }}", 1, ".encode() is not allowed in patterns"),
    ("{{ mask }}{{ '%9999s' % title }}", 1, "`%` on text (printf formatting) is refused"),
    ("{{ mask }}{{ title * (9999 * 9999) }}", 1, "would produce"),
    ("{{ mask }}{{ 9999 * 9999 * 9999 * 9999 }}", 1, "makes a number larger than 1,000,000,000,000"),
    ("{{ mask }}{{ " + BIG + " }}", 1, "over the budget of 1,000,000"),
    ("{{ mask }}" + "{{ title * 1900 }}" * 4, 1, "over the budget of 1,000,000"),
    ("{{ mask }}{{ title.replace('', 'x' * 5000) }}", 1, ".replace() would produce"),
    ("{{ mask }}{{ ('x' * 5000).join(title) }}", 1, ".join() would produce"),
    ("{{ mask }}{{ (title | list) * 9999 }}", 1, "list * 9999 would produce"),
    ("{{ mask }}{% with a = title ~ title %}{% with b = a ~ a %}{{ b ~ b }}{% endwith %}{% endwith %}", 1,
     "`with` is refused"),
    ("{{ mask }}\n{% block b %}{{ title }}{{ self.b() }}{{ self.b() }}{% endblock %}", 2, "blocks are refused"),
    ("{{ mask }}{% filter wordwrap(3) %}{{ title }}{% endfilter %}", 1, "filter 'wordwrap' is not allowed"),
    ("{{ mask }}{{ title | join(' ') | center(9999 * 9999) }}", 1, "filter center would produce"),
    ("{{ mask }}{{ " + "(" * 3000 + "title" + ")" * 3000 + " }}", None, "nest too deeply"),
    ("{{ mask }}" + "x" * 200_000, None, "the template has 200,010 characters"),
]


EARLIER = [
    ("{{ mask }}\n" + "".join(f"{{% for c{i} in title %}}" for i in range(8)) + "x" + "{% endfor %}" * 8,
     2, "loops are refused"),
    ("{% macro m(n) %}{{ m(n) }}{{ m(n) }}{% endmacro %}{{ mask }}{{ m(1) }}", 1, "macros are refused"),
    ("{{ mask }}{{ 'a' * 10**9 }}", 1, "`**` is refused"),
    ("{{ mask }}{{ title * 10**6 }}", 1, "`**` is refused"),
    ("{{ mask }}{{ title * 1000000 }}", 1, "integer 1000000 is larger than 10,000"),
    ("{% set x = title ~ title %}{{ mask }}{{ x }}", 1, "`set` is refused"),
    ("{{ mask }}\n{{ title | nosuchfilter }}", 2, "filter 'nosuchfilter' is not allowed in patterns"),
    ("{{ mask }}{{ title | wordwrap(3) }}", 1, "filter 'wordwrap' is not allowed"),
    ("{{ mask }}{% if title is nosuchtest %}x{% endif %}", 1, "No test named 'nosuchtest'"),
    ("{{ mask }}{{ title * 5000 }}", 1, "over the budget of 1,000,000 per row"),  # on the stand-in row
    ("{{ mask }}{{ title | replace('', 'x' * 5000) }}", 1, "filter replace would produce"),
]


@pytest.mark.parametrize("source,line,needle", EARLIER + ROUND_THREE, ids=range(len(EARLIER + ROUND_THREE)))
def test_a_template_that_could_explode_is_refused_at_load_with_path_and_line(source, line, needle):
    """The budget holds by construction: only an expression tree is allowed, and every step that creates text or
    numbers (arithmetic, `~`, filters, methods) is checked before it runs or charged to the row's total."""
    tracemalloc.start()
    try:
        with pytest.raises(PatternError) as e:
            tnews(source)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000, f"{peak:,} bytes: the template ran before it was refused"  # a budget, not a clock
    assert e.value.path == "shared/evil.j2" and e.value.line == line and needle in str(e.value), str(e.value)


def test_the_time_budget_stops_a_slow_render(monkeypatch):
    from pet_mtl.prompts import sandbox

    pattern = tnews("{{ mask }}{{ title ~ title }}")
    monkeypatch.setattr(sandbox, "MAX_RENDER_SECONDS", -1.0)  # every charged step is then past the deadline
    with pytest.raises(PatternError, match=r"refused by the sandbox: the render took more than -1 s"):
        pattern.render(Example("tnews", "1", {"title": "短"}, None))


def test_a_template_that_fails_on_one_row_names_the_row_and_the_line(tiny):
    tok, _ = tiny
    pattern = tnews("{{ mask }}\n{{ 100 // (title | length - 8) }}")  # the 3 marker characters count: 5 chars fail
    featurizer = ClozeFeaturizer(tok, {"tnews": [pattern]}, 128)
    featurizer.encode([Example("tnews", "1", {"title": "短标题"}, "102", "data/TNEWS_a.csv:1")])
    with pytest.raises(PatternError) as e:
        featurizer.encode([Example("tnews", "x7", {"title": "五个字符啊"}, "102", "data/TNEWS_a.csv:7")])
    assert str(e.value) == ("shared/evil.j2:2: cannot render row x7 (data/TNEWS_a.csv:7): ZeroDivisionError: "
                            "integer division or modulo by zero")


def test_what_patterns_may_still_do():
    p = tnews("{{ title | upper }}{{ '：' if title.count('？') else '，' }}{{ 7 % 3 }}{{ (title ~ '。') * 2 }}"
              "{{ mask }}")
    text = p.render(Example("tnews", "1", {"title": "ok，很好？"}, None)).text("[MASK]", 1)
    assert text == "OK，很好？：1ok，很好？。ok，很好？。[MASK]", text


def test_the_budget_is_enforced_on_every_row(tiny):
    tok, _ = tiny
    pattern = tnews("{{ mask }}{{ title * 1000 }}")  # the 512-character stand-in makes 512,000: it loads
    featurizer = ClozeFeaturizer(tok, {"tnews": [pattern]}, 128)
    featurizer.encode([Example("tnews", "1", {"title": "短"}, "102")])
    long = Example("tnews", "2", {"title": "长" * 2000}, "102", "data/TNEWS_a.csv:2")
    with pytest.raises(PatternError, match=r"shared/evil.j2:1: refused by the sandbox: str \* 1000 would produce "
                                           r"2,003,000 characters"):  # the title and its 3 marker characters
        featurizer.encode([long])


@pytest.mark.parametrize("source,needle", [
    ("{% for a in title %}{% for b in title %}x{% endfor %}{% endfor %}", "loops are refused"),
    ("{{ title.ljust(10000) }}", ".ljust() is not allowed in patterns"),
    ("{% with a = title ~ title %}{{ a ~ a }}{% endwith %}", "`with` is refused"),
    ("{{ '%9999s' % title }}", "`%` on text (printf formatting) is refused"),
], ids=["loops", "ljust", "with", "printf"])
def test_a_pattern_in_a_checkpoint_gets_the_same_budget(trained, tmp_path, source, needle):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(trained / "checkpoint-best", ckpt)
    meta = json.loads((ckpt / "pet_mtl.json").read_text())
    meta["patterns"][2]["source"] = "{{ mask }}" + source
    (ckpt / "pet_mtl.json").write_text(json.dumps(meta, ensure_ascii=False))
    with pytest.raises(PatternError, match=f"pet_mtl.json#tnews/topic:1: (refused by the sandbox: )?{re.escape(needle)}"):
        load_checkpoint(ckpt)


# ---------------------------------------------------------------- fields are cut before tokenizing


def test_a_huge_row_is_cut_to_a_bounded_length_and_gives_the_same_features(tiny):
    tok, _ = tiny
    featurizer = ClozeFeaturizer(tok, {"tnews": [load_pattern("tnews", PatternSpec("tnews/topic.j2"))]}, 64)
    huge = Example("tnews", "1", {"title": "长标题" * 1_000_000}, None)
    assert len(clip_fields(huge, 64).fields["title"]) == 64 * CHARS_PER_TOKEN
    seen = []
    tokenize = featurizer.tokenizer.__class__.__call__

    def counting(self, text, *args, **kwargs):  # the real tokenizer; only the length of what it is given is noted
        seen.append(max(len(t) for t in ([text] if isinstance(text, str) else text)))
        return tokenize(self, text, *args, **kwargs)

    featurizer.tokenizer.__class__.__call__ = counting
    try:
        feature = featurizer.encode([huge], with_labels=False)[0]
    finally:
        featurizer.tokenizer.__class__.__call__ = tokenize
    assert len(feature.input_ids) == 64
    assert seen and max(seen) <= 64 * CHARS_PER_TOKEN + 64, max(seen)  # never the 3,000,000 characters
    small = Example("tnews", "1", {"title": "长标题" * 100}, None)
    assert feature.input_ids == featurizer.encode([small], with_labels=False)[0].input_ids


def test_a_row_that_uses_every_marker_block_is_a_one_line_data_error():
    title = "".join(chr(base) for base in range(0xF0000, 0x10FFFE - 0x200, 0x200))
    with pytest.raises(DataError, match=r"^data/TNEWS_a.csv:7: row '9' holds a character from each of the 255"):
        tnews("{{ mask }}{{ title }}").render(Example("tnews", "9", {"title": title}, None, "data/TNEWS_a.csv:7"))


# ---------------------------------------------------------------- label words and verbalizer files


@pytest.mark.parametrize("special", ["[MASK]", "[SEP]", "[CLS]", "[PAD]"])
def test_special_tokens_are_not_label_words(tiny, special):
    tok, _ = tiny
    with pytest.raises(PatternError, match=r"label 100 word .* contains the special token"):
        ClozeFeaturizer(tok, {"tnews": [tnews("{{ mask }}{{ title }}", {**TNEWS_WORDS, "100": special})]}, 64)


def test_a_key_given_twice_in_a_verbalizer_file_is_an_error(tmp_path):
    (tmp_path / "tnews").mkdir()
    (tmp_path / "tnews" / "p.j2").write_text("{{ mask }}{{ title }}")
    words = "".join(f'  "{c}": {w}\n' for c, w in TNEWS_WORDS.items())
    (tmp_path / "tnews" / "verbalizers.yaml").write_text(f'default:\n{words}  "100": 又一个\n', encoding="utf-8")
    with pytest.raises(PatternError, match=r"verbalizers.yaml:17: not valid YAML: .*key '100' appears twice"):
        load_pattern("tnews", PatternSpec("tnews/p.j2"), tmp_path)


# ---------------------------------------------------------------- checkpoints are verified when loaded


@pytest.fixture
def trained(trained_run):
    return trained_run


def broken_copy(trained, tmp_path, part="checkpoint-best"):
    ckpt = tmp_path / part
    shutil.copytree(trained / part, ckpt)
    return ckpt


def test_missing_weights_are_an_error_unless_strict_is_off(trained, tmp_path):
    ckpt = broken_copy(trained, tmp_path)
    weights = load_file(ckpt / "model" / "model.safetensors")
    save_file({k: v for k, v in weights.items() if ".layer.0." not in k}, ckpt / "model" / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"model: the weights do not match config.json: missing weights "
                                              r"\['bert.encoder.layer.0.*strict=false"):
        load_checkpoint(ckpt)
    assert load_checkpoint(ckpt, strict=False)[3]["method"] == "pet"


def test_a_config_that_disagrees_with_the_weights_is_an_error(trained, tmp_path):
    ckpt = broken_copy(trained, tmp_path)
    config = json.loads((ckpt / "model" / "config.json").read_text())
    (ckpt / "model" / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 0}))
    with pytest.raises(CheckpointError, match="weights the model does not have"):
        load_checkpoint(ckpt)
    (ckpt / "model" / "config.json").write_text(json.dumps({**config, "hidden_size": 48}))
    with pytest.raises(CheckpointError, match="cannot load the masked LM|weights of another shape"):
        load_checkpoint(ckpt)


def test_special_tokens_that_differ_from_the_recorded_ones_are_an_error(trained, tmp_path):
    ckpt = broken_copy(trained, tmp_path)
    path = ckpt / "tokenizer" / "tokenizer_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "mask_token": "[PAD]"}))
    with pytest.raises(CheckpointError, match=r"special tokens differ .*'mask_token': \"\['\[MASK\]', 4\] -> "):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("damage,needle", [
    (lambda c: (c / "model" / "model.safetensors").write_bytes((c / "model" / "model.safetensors").read_bytes()[:5000]),
     "cannot load the masked LM"),
    (lambda c: (c / "pet_mtl.json").write_text("{not json"), "pet_mtl.json: unreadable"),
    (lambda c: (c / "pet_mtl.json").write_text("[1, 2]"), "pet_mtl.json: not a JSON object"),
    (lambda c: (c / "pet_mtl.json").write_text(json.dumps({"format_version": 1, "method": "pet"})),
     "'tasks' must be a dict"),
    (lambda c: (c / "pet_mtl.json").write_text(json.dumps({**json.loads((c / "pet_mtl.json").read_text()),
                                                           "patterns": [{"task": "tnews"}]})),
     r"patterns\[0\] is not a pattern"),
    (lambda c: (c / "pet_mtl.json").write_text(json.dumps({**json.loads((c / "pet_mtl.json").read_text()),
                                                           "max_length": "long"})), "'max_length' must be a int"),
])
def test_damaged_checkpoint_files_are_one_line_errors(trained, tmp_path, damage, needle):
    ckpt = broken_copy(trained, tmp_path)
    damage(ckpt)
    with pytest.raises(CheckpointError, match=needle):
        load_scorer(ckpt)


def test_a_backbone_missing_weights_is_refused_unless_strict_is_off(tiny_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_dir, model)
    weights = load_file(model / "model.safetensors")
    # part of the head gone (a head missing whole is an encoder-only folder: tests/test_backbones.py)
    save_file({k: v for k, v in weights.items() if not k.startswith("cls.predictions.transform.dense")},
              model / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="missing weights.*cls.predictions"):
        load_pretrained(model)
    load_pretrained(model, strict=False)


def test_resume_from_a_checkpoint_missing_layers_is_refused(trained, tiny_dir, synthetic_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    weights = load_file(run / "checkpoint-last" / "model" / "model.safetensors")
    save_file({k: v for k, v in weights.items() if ".layer.1." not in k},
              run / "checkpoint-last" / "model" / "model.safetensors", metadata={"format": "pt"})
    cfg = make_cfg(f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", "train.max_steps=6", "train.eval_every=3",
                   "train.batch_size=8", "train.progress=false", "train.predict_splits=[]", "train.resume=true")
    with pytest.raises(CheckpointError, match="missing weights"):
        Trainer(cfg, run).fit()


# ---------------------------------------------------------------- resume refuses a different config


def test_resume_refuses_a_config_that_changes_the_result(trained, tiny_dir, synthetic_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    base = [f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", "train.max_steps=6", "train.eval_every=3",
            "train.batch_size=8", "train.progress=false", "train.predict_splits=[]", "train.resume=true"]
    for change, key in (("train.batch_size=16", "train.batch_size: 8 -> 16"), ("seed=7", "seed: 42 -> 7"),
                        ("train.lr=0.5", "train.lr: 0.0001 -> 0.5"),
                        ("patterns.tnews=[tnews/about.j2]", "patterns.tnews")):
        with pytest.raises(ConfigError, match=f"differs from the run's .* in {key}"):
            Trainer(make_cfg(*base, change), run).fit()
    # what decides the model or its data is never offered as a resume_changes, nor allowed by one
    with pytest.raises(ConfigError, match="in seed: 42 -> 7; these decide the model or its data and cannot change"):
        Trainer(make_cfg(*base, "seed=7", "train.resume_changes=[seed]"), run).fit()
    # what only changes how the run is watched passes, and a change the user names is allowed
    Trainer(make_cfg(*base, "train.log_every=1", "train.eval_batch_size=4"), run).fit()
    summary = Trainer(make_cfg(*base, "train.max_steps=8", "train.resume_changes=[train.max_steps]"), run).fit()
    assert summary["last"]["step"] == 8


def test_leftover_temporary_checkpoint_folders_are_cleaned_on_the_next_run(trained, tiny_dir, synthetic_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    (run / ".checkpoint-last.tmp-abc123" / "model").mkdir(parents=True)
    (run / ".checkpoint-best.old-999").mkdir()
    Trainer(make_cfg(f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", "train.max_steps=6",
                     "train.progress=false", "train.predict_splits=[]", "train.batch_size=8", "train.eval_every=3",
                     "train.resume=true"), run)
    assert not list(run.glob(".checkpoint-*"))


# ---------------------------------------------------------------- config values are checked before any work


@pytest.mark.parametrize("override,needle", [
    ("train.batch_size=0", "train.batch_size=0: expected a number >= 1"),
    ("train.grad_accum=0", "train.grad_accum=0: expected a number >= 1"),
    ("train.ema=1.0", "train.ema=1.0: expected a number in [0, 1) (0 = off)"),
    ("train.lr=nan", "train.lr=nan: expected a finite number > 0"),
    ("train.lr=-1", "train.lr=-1.0: expected a finite number > 0"),
    ("train.warmup_ratio=1.5", "expected a number in [0, 1)"),
    ("model.max_length=0", "model.max_length=0"),
    ("model.head_init=xavier", "model.head_init='xavier': expected one of bert, torch"),
    ("model.prompt_encoder=gru", "model.prompt_encoder='gru': expected lstm, mlp or null"),
    ("train.batch_tasks=per_task", "train.batch_tasks='per_task': expected one of mixed, single"),
    ("train.sampling=uniform", "train.sampling='uniform': expected one of proportional, temperature, round_robin"),
    ("tasks=[]", "expected one or more distinct task names"),
    ("tasks=[tnews,tnews]", "expected one or more distinct task names"),
    ("train.task_weights={ocnli: 0, ocemotion: 0, tnews: 0}", "not all 0"),
    ("train.task_weights.tnews=-1", "expected finite weights >= 0"),
    ("train.task_weights.tnews=inf", "expected finite weights >= 0"),
])
def test_out_of_range_config_values_are_refused_before_any_work(override, needle):
    with pytest.raises(ConfigError) as e:
        check(make_cfg(override))
    assert needle in str(e.value)


def test_the_documented_task_weight_syntax_reaches_the_loss(tiny_dir, synthetic_dir, tmp_path):
    """`train.task_weights={ocemotion: 2.0}` (the spelling docs/training.md shows) weighs OCEMOTION rows twice in the
    loss and leaves the other tasks at 1."""
    run = Trainer(make_cfg("train.task_weights={ocemotion: 2.0}", f"model.path={tiny_dir}", f"data.dir={synthetic_dir}",
                           "train.batch_tasks=mixed", "train.batch_size=32", "train.predict_splits=[]"), tmp_path)
    seen = {}
    for _ in range(3):
        batch = run.next_batch()
        for task, weight in zip(batch["task"].tolist(), batch["weights"].tolist()):
            seen.setdefault(run.featurizer.tasks[task], set()).add(weight)
    assert seen == {"ocnli": {1.0}, "ocemotion": {2.0}, "tnews": {1.0}}


def test_a_loss_that_is_no_longer_a_number_stops_the_run_and_is_never_saved(tiny_dir, synthetic_dir, tmp_path):
    cfg = make_cfg(f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", "train.lr=1e30", "train.warmup_ratio=0",
                   "train.max_steps=20", "train.eval_every=1", "train.batch_size=8", "train.progress=false",
                   "train.predict_splits=[]")
    trainer = Trainer(cfg, tmp_path)
    with pytest.raises(TrainingError, match=r"the training loss became (nan|inf) at step \d+; nothing of this step"):
        trainer.fit()
    saved = [json.loads((tmp_path / c / "pet_mtl.json").read_text())["metrics"]
             for c in ("checkpoint-best", "checkpoint-last") if (tmp_path / c).exists()]
    assert all(m["train_loss"] is None or m["train_loss"] == m["train_loss"] for m in saved)  # no NaN ever saved
    for c in ("checkpoint-best", "checkpoint-last"):
        if (tmp_path / c).exists():
            weights = load_file(tmp_path / c / "model" / "model.safetensors")
            assert all(torch.isfinite(w).all() for w in weights.values())


# ---------------------------------------------------------------- a submission folder is one run's or nothing


def test_a_one_task_prediction_replaces_an_older_full_submission_whole(trained, synthetic_dir, tmp_path):
    out = tmp_path / "sub"
    write_submission(trained, synthetic_dir, "a", out, labelled=False)
    assert sorted(p.name for p in out.iterdir()) == ["ocemotion_predict.json", "ocnli_predict.json", "submit.zip",
                                                     "tnews_predict.json"]
    tnews_train = synthetic_dir / "TNEWS_train.csv"
    result = write_submission(trained, None, "a", out, files={"tnews": tnews_train}, labelled=True)
    assert result == out and sorted(p.name for p in out.iterdir()) == ["eval.json", "tnews_predict.json"]
    assert not list(tmp_path.glob(".sub.tmp-*")) and not list(tmp_path.glob(".sub.old-*"))


def test_output_folder_problems_are_found_before_predicting(trained, synthetic_dir, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("my own file")
    with pytest.raises(ConfigError, match="holds files that are not a submission's \\(notes.txt\\)"):
        write_submission(tmp_path / "no-such-checkpoint", synthetic_dir, "a", tmp_path / "mine")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="cannot be written"):
        write_submission(tmp_path / "no-such-checkpoint", synthetic_dir, "a", tmp_path / "file" / "sub")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "my own file"


def test_a_second_predict_into_the_same_folder_is_refused(trained, synthetic_dir, tmp_path):
    out = tmp_path / "sub"
    with open(tmp_path / ".sub.lock", "w") as held:  # what a predict in progress holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ConfigError, match="another predict is writing"):
            write_submission(trained, synthetic_dir, "a", out)
    assert not out.exists()
    write_submission(trained, synthetic_dir, "a", out)  # released: it goes through
    assert (out / "submit.zip").is_file()


def test_a_predict_killed_mid_swap_leaves_nothing_the_next_one_keeps(trained, synthetic_dir, tmp_path):
    out = tmp_path / "sub"
    (tmp_path / ".sub.tmp-dead").mkdir()
    (tmp_path / ".sub.tmp-dead" / "tnews_predict.json").write_text("{}\n")
    write_submission(trained, synthetic_dir, "a", out)
    assert not (tmp_path / ".sub.tmp-dead").exists() and (out / "submit.zip").is_file()
