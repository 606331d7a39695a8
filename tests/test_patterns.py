"""Patterns are validated data: parse, variables, slot, verbalizers, sandbox."""
from __future__ import annotations

import re
from pathlib import Path

import jinja2
import jinja2.meta
import pytest
import yaml

from pet_mtl.core.errors import ConfigError, PatternError
from pet_mtl.core.tasks import TASKS
from pet_mtl.data.readers import Example
from pet_mtl.methods.features import label_words
from pet_mtl.prompts import (
    PATTERNS_ROOT,
    Pattern,
    PatternSpec,
    load_pattern,
    load_pattern_set,
)
from pet_mtl.prompts.sandbox import ENV

CONF = Path(__file__).resolve().parents[1] / "conf" / "patterns"
TNEWS_WORDS = {c: w for c, w in zip(["100", "101", "102", "103", "104", "106", "107", "108", "109", "110", "112",
                                     "113", "114", "115", "116"], "故事 文化 娱乐 体育 财经 房产 汽车 教育 科技 军事 旅游 国际 股票 农业 游戏".split())}


def tnews(source: str, words=None, origin="t.j2") -> Pattern:
    return Pattern("tnews", "t", source, dict(words or TNEWS_WORDS), origin=origin)


def ex(title: str) -> Example:
    return Example("tnews", "1", {"title": title}, "102")


def test_rendering_uses_the_example_fields_and_marks_the_slot():
    r = tnews("{{ title }}。这是{{ mask }}新闻。").render(ex("国足赢了"))
    assert [(s.text, s.field, s.is_slot) for s in r.segments] == [
        ("国足赢了", "title", False), ("。这是", None, False), ("", None, True), ("新闻。", None, False)]
    assert r.text("[MASK]", 2) == "国足赢了。这是[MASK][MASK]新闻。"
    nli = load_pattern("ocnli", PatternSpec("ocnli/question.j2"))
    text = nli.render(Example("ocnli", "1", {"premise": "他在看书", "hypothesis": "他在学习"}, None)).text("[M]", 2)
    assert text == "他在看书？[M][M]，他在学习"


def test_a_pair_boundary_splits_the_cloze_into_two_texts():
    r = tnews("{{ title }}？{{ mask }}{{ sep }}这是新闻。").render(ex("国足赢了"))
    assert [s.is_sep for s in r.segments] == [False, False, False, True, False]
    assert r.parts("[MASK]", 2) == ("国足赢了？[MASK][MASK]", "这是新闻。")
    assert r.text("[MASK]", 2) == "国足赢了？[MASK][MASK]这是新闻。"
    assert tnews("{{ title }}{{ mask }}").render(ex("好")).parts("[M]", 1) == ("好[M]",)
    # an empty field still counts as a side: a row with an empty hypothesis is a pair with an empty second text
    nli = Pattern("ocnli", "p", "{{ premise }}{{ mask }}{{ sep }}{{ hypothesis }}", {"0": "是", "1": "或", "2": "否"})
    assert nli.render(Example("ocnli", "1", {"premise": "甲", "hypothesis": ""}, None)).parts("[M]", 1) == ("甲[M]", "")


PUNCTUATION = "。！？!?.，,；;：:、…~～"


@pytest.mark.parametrize("template", sorted(str(p.relative_to(PATTERNS_ROOT)) for p in PATTERNS_ROOT.rglob("*.j2")))
def test_no_shipped_pattern_doubles_the_punctuation_a_text_ends_with(template):
    """A field that ends in punctuation (OCNLI: 11,262 of 50,437 premises) meets the pattern's own mark once:
    `他去了北京。` reads `他去了北京？[MASK]，` and not `他去了北京。？[MASK]，`; every ending of every field, in
    every shipped template."""
    task = template.split("/")[0]
    pattern = load_pattern(task, PatternSpec(template))
    for end in ["", *"。！？，、…", "！！", "。 "]:
        fields = {f: f"他们在看书{end}" for f in TASKS[task].fields}
        text = pattern.render(Example(task, "1", fields, None)).text("[M]", 2)
        text = re.sub(r"\[soft×\d+\]", "", re.sub(r"\[soft:([^\]]*)\]", r"\1", text))  # learned tokens as their text
        doubled = re.search(f"[{re.escape(PUNCTUATION)}]\\s*[{re.escape(PUNCTUATION)}]", text)
        assert doubled is None or end in ("！！",) and doubled.group(0) == "！！", (template, end, text)


def test_a_fields_end_methods_and_filters_act_on_its_text():
    """Inside a template a field is its text in a frame of markers; what trims or tests its ends sees the text, as
    the template's author means it, and the frame stays out of reach."""
    def render(source: str, title: str) -> str:
        return tnews(source + "{{ mask }}").render(ex(title)).text("[M]", 2)

    assert render("{{ title.rstrip('。') }}|", "国足赢了。") == "国足赢了|[M][M]"
    assert render("{{ title | trim }}|", "  国足赢了 ") == "国足赢了|[M][M]"
    assert render("{{ title.endswith('了') }}|{{ title.startswith('国') }}|", "国足赢了") == "True|True|[M][M]"
    assert render("{{ title.removesuffix('了') }}|", "国足赢了") == "国足赢|[M][M]"
    assert render("{{ title | rstrip_punct }}？", "国足赢了！！") == "国足赢了？[M][M]"
    assert render("{{ title | rstrip_punct }}？", "！？") == "！？？[M][M]"  # all punctuation: kept whole
    assert render("{{ title | sentence }}", "国足赢了") == "国足赢了。[M][M]"
    assert render("{{ title | sentence }}", "国足赢了？") == "国足赢了？[M][M]"
    assert render("{{ title | sentence }}", "国足赢了，") == "国足赢了。[M][M]"
    # the added full stop is pattern text: truncation, which cuts fields only, keeps it
    r = tnews("{{ title | sentence }}{{ mask }}").render(ex("国足赢了"))
    assert [(s.text, s.field) for s in r.segments[:2]] == [("国足赢了", "title"), ("。", None)]
    with pytest.raises(PatternError, match="sandbox"):
        tnews("{{ title._frame }}{{ mask }}").render(ex("国足"))


def test_text_with_private_use_characters_renders_verbatim():
    title = "表情\ue000\ue001\U000f0000结尾"
    assert tnews("{{ title }}{{ mask }}").render(ex(title)).segments[0].text == title


@pytest.mark.parametrize("set_file", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_pattern_set_loads(set_file):
    spec = yaml.safe_load(set_file.read_text())
    loaded = load_pattern_set(spec, ["ocnli", "ocemotion", "tnews"])
    for task, entries in spec.items():
        named = [e if isinstance(e, str) else e["template"] for e in entries]
        assert [p.origin for p in loaded[task]] == [str(PATTERNS_ROOT / n) for n in named]


def shipped_patterns():
    """Every template under patterns/ with every verbalizer of its task's verbalizers.yaml."""
    for template in sorted(PATTERNS_ROOT.glob("*/*.j2")):
        names = yaml.safe_load((template.parent / "verbalizers.yaml").read_text(encoding="utf-8"))
        for name in names:
            yield pytest.param(template, name, id=f"{template.parent.name}/{template.stem}@{name}")


def test_every_task_folder_has_templates_and_verbalizers():
    folders = sorted(p for p in PATTERNS_ROOT.iterdir() if p.is_dir())
    assert [p.name for p in folders] == sorted(TASKS)
    for folder in folders:
        assert len(list(folder.glob("*.j2"))) >= 2 and (folder / "verbalizers.yaml").is_file(), folder
        assert {p.suffix for p in folder.iterdir()} <= {".j2", ".yaml"}, f"{folder}: a file no loader reads"


@pytest.mark.parametrize("template,verbalizer", list(shipped_patterns()))
def test_every_shipped_template_with_every_verbalizer_is_valid(template, verbalizer, tiny):
    """promptsource-style: parses, uses only the task's fields, renders one slot, words distinct, non-empty and
    known to a tokenizer built from the shipped text; whatever file is added under patterns/ is checked here."""
    task = TASKS[template.parent.name]
    p = load_pattern(task.name, PatternSpec(str(template.relative_to(PATTERNS_ROOT)), verbalizer))
    ast = ENV.parse(template.read_text(encoding="utf-8"))
    assert jinja2.meta.find_undeclared_variables(ast) <= set(task.fields) | {"mask", "sep", "soft"}
    fields = {f: f"〔{f}〕" for f in task.fields}
    rendered = p.render(Example(task.name, "1", fields, None))
    assert [s.is_slot for s in rendered.segments].count(True) == 1
    assert {s.field for s in rendered.segments if s.field} == set(task.fields)  # every field reaches the model
    words = [w for c in task.labels for w in p.word_lists()[c]]
    assert len(set(words)) == len(words) and all(w.strip() for w in words)
    tok, _ = tiny
    lw = label_words(p, tok)  # no unknown tokens, every word fits the slot
    assert all(0 < n <= lw.slot_len for ns in lw.lengths for n in ns)


def test_shipped_pattern_names_are_unique():
    names = [load_pattern(t.parent.name, PatternSpec(str(t.relative_to(PATTERNS_ROOT)), v)).name
             for t, v in (param.values for param in shipped_patterns())]
    assert len(names) == len(set(names)) and len(names) >= 6


@pytest.mark.parametrize("source,line,needle", [
    ("{{ title }\n{{ mask }}", 1, "does not parse"),
    ("{{ mask }}\n{% if title %}{{ titel }}{% endif %}", 2, "unknown variable 'titel'"),
    ("{{ title }}", None, "no cloze slot"),
    ("{{ mask }}{{ mask }}{{ title }}", None, "exactly one cloze slot; rendered 2"),
    ("{{ mask }}{% include 'x.j2' %}", 1, "cannot include, import or extend"),
    ("{{ mask }}{% import 'x.j2' as x %}", 1, "cannot include, import or extend"),
    ("{{ mask }}\n{{ cycler.__init__.__globals__ }}", 2, "unknown variable 'cycler'"),
    ("{{ mask(0) }}{{ title }}", 1, "mask(n) needs an integer"),
    ("{{ title }}{{ sep }}{{ mask }}{{ sep }}好", None, "one pair boundary; rendered 2"),
    ("{{ sep }}{{ title }}{{ mask }}", None, "must have text on both sides"),
    ("{{ title }}{{ mask }}{{ sep }}  ", None, "must have text on both sides"),
])
def test_broken_templates_fail_at_load_with_path_and_line(source, line, needle):
    with pytest.raises(PatternError) as e:
        tnews(source, origin="patterns/tnews/bad.j2")
    assert e.value.path == "patterns/tnews/bad.j2" and e.value.line == line and needle in str(e.value)


@pytest.mark.parametrize("source", [
    "{{ mask }}{{ ''.__class__.__mro__ }}",
    "{{ mask }}{{ title.__class__.__base__.__subclasses__() }}",
    "{{ mask }}{{ title.format.__globals__ }}",
])
def test_sandbox_refuses_attribute_tricks(source):
    with pytest.raises(PatternError, match="refused by the sandbox|unsafe|is not allowed in patterns") as e:
        tnews(source, origin="evil.j2")
    assert e.value.line == 1


@pytest.mark.parametrize("words,needle", [
    ({k: v for k, v in TNEWS_WORDS.items() if k != "114"}, "no word for tnews label(s) 114"),
    ({**TNEWS_WORDS, "105": "其他"}, "unknown tnews label(s) 105"),
    ({**TNEWS_WORDS, "114": "体育"}, "labels 103 and 114 share the word '体育'"),
    ({**TNEWS_WORDS, "114": ""}, "must be a non-empty string"),
])
def test_bad_verbalizers(words, needle):
    with pytest.raises(PatternError, match=re.escape(needle)):
        tnews("{{ mask }}{{ title }}", words)


def test_pattern_set_errors_name_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="pattern template .*missing.j2 not found"):
        load_pattern_set({"tnews": ["tnews/missing.j2"]}, ["tnews"])
    with pytest.raises(ConfigError, match="gives no pattern for task 'ocnli'"):
        load_pattern_set({"tnews": ["tnews/topic.j2"]}, ["tnews", "ocnli"])
    with pytest.raises(ConfigError, match="unknown task 'tnwes'"):
        load_pattern_set({"tnwes": ["tnews/topic.j2"]}, ["tnwes"])
    (tmp_path / "tnews").mkdir()
    (tmp_path / "tnews" / "p.j2").write_text("{{ mask }}{{ title }}")
    # a user's template without verbalizers of its own uses the shipped library's, by name
    assert load_pattern("tnews", PatternSpec("tnews/p.j2"), tmp_path).verbalizer_origin.startswith(
        str(PATTERNS_ROOT / "tnews" / "verbalizers.yaml"))
    (tmp_path / "tnews" / "verbalizers.yaml").write_text("# mine\ndefault:\n  '100': 故事\n")
    with pytest.raises(ConfigError, match=f"no verbalizer named 'other' in {tmp_path}/tnews/verbalizers.yaml "
                                          r"\(has default\); .*pattern_library/tnews/verbalizers.yaml \(has default"):
        load_pattern("tnews", PatternSpec("tnews/p.j2", "other"), tmp_path)
    with pytest.raises(PatternError, match=f"^{tmp_path}/tnews/verbalizers.yaml:2: verbalizer has no word for tnews"):
        load_pattern("tnews", PatternSpec("tnews/p.j2"), tmp_path)  # the user's `default` comes first: the line


def test_pattern_round_trips_through_its_dict():
    p = load_pattern("ocnli", PatternSpec("ocnli/relation.j2", "relation"))
    q = Pattern.from_dict(p.to_dict(), "ckpt/pet_mtl.json")
    e = Example("ocnli", "1", {"premise": "甲", "hypothesis": "乙"}, None)
    assert q.render(e) == p.render(e) and q.verbalizer == p.verbalizer and q.name == "ocnli/relation@relation"
