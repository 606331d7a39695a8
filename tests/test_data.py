"""Readers: what is accepted by rule, and what raises DataError naming file, line and problem."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from conftest import SHARED

from pet_mtl.core.errors import DataError
from pet_mtl.core.tasks import TASKS
from pet_mtl.data.readers import read_examples, read_jsonl, read_tsv, stratified_split

OCNLI, OCEMOTION, TNEWS = TASKS["ocnli"], TASKS["ocemotion"], TASKS["tnews"]


def write(tmp_path: Path, text: str | bytes, name: str = "f.csv") -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return p


def test_reads_rows_with_fields_in_order(tmp_path):
    p = write(tmp_path, "0\t他在看书。\t他在学习\t0\n1\t下雨了。\t天晴了\t2\n")
    exs = read_tsv(p, OCNLI, labelled=True)
    assert [(e.id, e.fields["premise"], e.fields["hypothesis"], e.label) for e in exs] == [
        ("0", "他在看书。", "他在学习", "0"), ("1", "下雨了。", "天晴了", "2")]
    assert exs[1].source == f"{p}:2"


def test_crlf_bom_quotes_and_blank_lines_follow_the_documented_rules(tmp_path):
    raw = b"\xef\xbb\xbf" + '0\t"好吧"他说""\tsadness\r\n\r\n1\t开心\thappiness\r\n'.encode("utf-8")
    exs = read_tsv(write(tmp_path, raw), OCEMOTION, labelled=True)
    assert [e.fields["text"] for e in exs] == ['"好吧"他说""', "开心"]  # quotes are literal text
    assert [e.id for e in exs] == ["0", "1"] and exs[1].label == "happiness"


@pytest.mark.parametrize("text,line,needle", [
    ("0\t标题\t102\n1\t标题\t102\textra\n", 2, "expected 3 tab-separated columns"),
    ("0\t标\t题\t102\n", 1, "a tab inside a text?"),
    ("0\t标题\n", 1, "the label column is missing"),
    ("0\t \t102\n", 1, "empty title field"),
    ("0\t标题\t105\n", 1, "label '105' is not a tnews label"),
    ("0\t标题\t102\n0\t标题二\t103\n", 2, "duplicate id '0' (first seen on line 1)"),
])
def test_malformed_tnews_train_rows(tmp_path, text, line, needle):
    p = write(tmp_path, text)
    with pytest.raises(DataError) as e:
        read_tsv(p, TNEWS, labelled=True)
    assert e.value.path == str(p) and e.value.line == line and needle in str(e.value)
    assert str(e.value).startswith(f"{p}:{line}: ")


def test_non_utf8_names_the_line(tmp_path):
    p = write(tmp_path, "0\t好\n".encode() + b"1\t\xff\xfe\n")
    with pytest.raises(DataError, match="not valid UTF-8") as e:
        read_tsv(p, TNEWS, labelled=False)
    assert e.value.line == 2


def test_test_file_with_a_label_column(tmp_path):
    p = write(tmp_path, "0\t标题\t102\n")
    with pytest.raises(DataError, match=r"a label column in a test file\?") as e:
        read_tsv(p, TNEWS, labelled=False)
    assert e.value.line == 1


def test_duplicate_id_in_test_file(tmp_path):
    with pytest.raises(DataError, match="duplicate id '7'"):
        read_tsv(write(tmp_path, "7\t一\n8\t二\n7\t三\n"), OCEMOTION, labelled=False)


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="holds no rows"):
        read_tsv(write(tmp_path, "\n\n"), TNEWS, labelled=True)
    with pytest.raises(DataError, match="file not found") as e:
        read_tsv(tmp_path / "nope.csv", TNEWS, labelled=True)
    assert e.value.line is None


def test_jsonl_maps_clue_keys_and_labels(tmp_path):
    p = write(tmp_path, "\n".join([
        json.dumps({"sentence1": "他在看书", "sentence2": "他在学习", "label": "neutral", "id": 5}, ensure_ascii=False),
        json.dumps({"sentence1": "下雨了", "sentence2": "天晴了", "label": "contradiction"}, ensure_ascii=False),
    ]), "ocnli.json")
    exs = read_examples(p, OCNLI, labelled=True)
    assert [(e.id, e.label, e.fields["premise"]) for e in exs] == [("5", "1", "他在看书"), ("1", "2", "下雨了")]
    p2 = write(tmp_path, json.dumps({"sentence": "国足赢了", "label": 103, "label_desc": "news_sports"},
                                    ensure_ascii=False), "tnews.json")
    assert read_jsonl(p2, TNEWS)[0].label == "103"


@pytest.mark.parametrize("line,needle", [
    ('{"sentence": "国足赢了", "label": 103', "not a JSON object"),
    ('["国足赢了", 103]', "expected a JSON object, found list"),
    ('{"label": 103}', "missing or empty 'sentence'"),
    ('{"sentence": "国足赢了"}', "missing 'label'"),
    ('{"sentence": "国足赢了", "label": "news_sports"}', "label 'news_sports' is not a tnews label"),
])
def test_malformed_json_lines(tmp_path, line, needle):
    p = write(tmp_path, '{"sentence": "好", "label": 102}\n' + line + "\n", "x.json")
    with pytest.raises(DataError, match="x.json:2: ") as e:
        read_jsonl(p, TNEWS)
    assert needle in str(e.value)


def test_stratified_split_is_seeded_disjoint_and_keeps_rare_labels(tmp_path):
    rows = [f"{i}\t标题{i}\t{'114' if i < 3 else ('102' if i % 2 else '103')}\n" for i in range(203)]
    exs = read_tsv(write(tmp_path, "".join(rows)), TNEWS, labelled=True)
    train, val = stratified_split(exs, 0.1, seed=1)
    assert len(train) + len(val) == len(exs) and not {e.id for e in train} & {e.id for e in val}
    counts = Counter(e.label for e in val)
    assert counts["114"] == 1 and counts["102"] == 10 and counts["103"] == 10
    assert [e.id for e in stratified_split(exs, 0.1, seed=1)[1]] == [e.id for e in val]
    assert [e.id for e in stratified_split(exs, 0.1, seed=2)[1]] != [e.id for e in val]
    _, val_n = stratified_split(exs, 40, seed=1)
    assert 38 <= len(val_n) <= 42


@pytest.mark.shared
@pytest.mark.skipif(not (SHARED / "data" / "tianchi").is_dir(), reason="../shared/data/tianchi not present")
def test_reads_the_real_competition_files():
    d = SHARED / "data" / "tianchi"
    sizes = {name: len(read_tsv(d / t.files["train"], t, labelled=True)) for name, t in TASKS.items()}
    assert sizes == {"ocnli": 50437, "ocemotion": 35694, "tnews": 53360}
    for split in ("a", "b"):
        for t in TASKS.values():
            assert len(read_tsv(d / t.files[split], t, labelled=False)) == 1500
    emo = read_tsv(d / OCEMOTION.files["train"], OCEMOTION, labelled=True)
    assert sum('"' in e.fields["text"] for e in emo) > 100  # quotes survive as text
