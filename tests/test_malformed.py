"""The malformed-input corpus (tests/malformed/): each file is either read by a documented rule or refused with
DataError naming the file, the line and the problem. One row per case; docs/data.md states the rules."""
from __future__ import annotations

from pathlib import Path

import pytest

from pet_mtl.core.errors import DataError
from pet_mtl.core.tasks import TASKS
from pet_mtl.data.readers import read_examples

CORPUS = Path(__file__).resolve().parent / "malformed"

# file, labelled, expected: ("ok", rows) or ("error", line, message fragment)
CASES = [
    ("ocnli_train_wrong_columns.csv", True, ("error", 2, "expected 4 tab-separated columns")),
    ("tnews_train_tab_in_text.csv", True, ("error", 1, "a tab inside a text?")),
    ("ocemotion_train_unterminated_quote.csv", True, ("ok", 2)),
    ("ocemotion_train_crlf.csv", True, ("ok", 2)),
    ("tnews_train_bom.csv", True, ("ok", 2)),
    ("ocnli_train_blank_lines.csv", True, ("ok", 2)),
    ("ocemotion_train_emoji.csv", True, ("ok", 2)),
    ("ocemotion_train_empty_text.csv", True, ("error", 2, "empty text field")),
    ("tnews_train_unknown_label.csv", True, ("error", 2, "label '105' is not a tnews label")),
    ("ocnli_train_label_as_word.csv", True, ("error", 1, "label 'entailment' is not a ocnli label")),
    ("tnews_train_gbk.csv", True, ("error", 2, "not valid UTF-8")),
    ("ocemotion_train_stray_line_break.csv", True, ("error", 2, "expected 3 tab-separated columns")),
    ("tnews_test_duplicate_id.csv", False, ("error", 3, "duplicate id '0' (first seen on line 1)")),
    ("ocemotion_test_with_label.csv", False, ("error", 1, "a label column in a test file?")),
    ("ocnli_test_missing_hypothesis.csv", False, ("error", 1, "expected 3 tab-separated columns")),
    ("tnews_train_empty.csv", True, ("error", None, "holds no rows")),
    ("tnews_train_missing.csv", True, ("error", None, "file not found")),
    ("tnews_bad_json.json", True, ("error", 2, "not a JSON object")),
    ("ocnli_json_missing_field.json", True, ("error", 2, "missing or empty 'sentence2'")),
    ("ocnli_json_dash_label.json", True, ("error", 1, "label '-' is not a ocnli label")),
    ("tnews_json_ok.json", True, ("ok", 2)),
    ("tnews_json_duplicate_key.json", True, ("error", 1, "key 'id' appears twice in one object")),
    ("tnews_json_null_id.json", True, ("error", 1, "id must be a non-empty string or an integer, found null")),
    ("tnews_json_bool_id.json", True, ("error", 1, "id must be a non-empty string or an integer, found true")),
    ("tnews_json_float_id.json", True, ("error", 1, "id must be a non-empty string or an integer, found 1.0")),
    ("tnews_json_deep_nesting.json", True, ("error", 1, "not a JSON line pet_mtl reads: RecursionError")),
    ("tnews_json_huge_number.json", True, ("error", 1, "not a JSON line pet_mtl reads: ValueError")),
    ("tnews_train_cr_line_endings.csv", True, ("error", 1, "a carriage return (\\r) inside the line")),
    ("tnews_test_spaced_id.csv", False, ("ok", 2)),
    ("tnews_json_int_and_string_ids.json", True, ("ok", 2)),
]


@pytest.mark.parametrize("name,labelled,expected", CASES, ids=[c[0] for c in CASES])
def test_malformed_corpus(name, labelled, expected):
    path = CORPUS / name
    task = TASKS[name.split("_")[0]]
    if expected[0] == "ok":
        examples = read_examples(path, task, labelled)
        assert len(examples) == expected[1]
        assert examples[0].id.strip()[0].isalnum()  # a BOM never sticks to the first id
        return
    with pytest.raises(DataError) as e:
        read_examples(path, task, labelled)
    assert e.value.path == str(path) and e.value.line == expected[1] and expected[2] in e.value.problem


def test_corpus_has_no_unlisted_files():
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(c[0] for c in CASES if c[0] != "tnews_train_missing.csv")


def test_documented_rules_keep_the_text_verbatim():
    emo = read_examples(CORPUS / "ocemotion_train_unterminated_quote.csv", TASKS["ocemotion"], True)
    assert [e.fields["text"] for e in emo] == ['"今天好开心', '他说""算了吧']
    crlf = read_examples(CORPUS / "ocemotion_train_crlf.csv", TASKS["ocemotion"], True)
    assert [e.label for e in crlf] == ["happiness", "sadness"] and not crlf[0].fields["text"].endswith("\r")
    assert read_examples(CORPUS / "tnews_train_bom.csv", TASKS["tnews"], True)[0].id == "0"
    emoji = read_examples(CORPUS / "ocemotion_train_emoji.csv", TASKS["ocemotion"], True)
    assert emoji[0].fields["text"] == "今天好开心😀\U000f0001"


def test_a_file_far_longer_than_expected_is_streamed_whole(tmp_path):
    """No size cap and no silent cut: 200,000 rows, one of them 100,000 characters long, are all read."""
    p = tmp_path / "TNEWS_a.csv"
    with open(p, "w", encoding="utf-8") as fh:
        for i in range(200_000):
            fh.write(f"{i}\t{'长' * 100_000 if i == 123 else '标题'}\n")
    exs = read_examples(p, TASKS["tnews"], labelled=False)
    assert len(exs) == 200_000 and len(exs[123].fields["title"]) == 100_000 and exs[-1].id == "199999"


def test_ids_are_kept_exactly_as_read():
    spaced = read_examples(CORPUS / "tnews_test_spaced_id.csv", TASKS["tnews"], False)
    assert [e.id for e in spaced] == [" 7 ", "8"]
    mixed = read_examples(CORPUS / "tnews_json_int_and_string_ids.json", TASKS["tnews"], True)
    assert [e.id for e in mixed] == ["7", "x-8"]
