"""Tokenization: ids equal the plain tokenizer's, truncation cuts fields only, the slot survives."""
from __future__ import annotations

import pytest

from pet_mtl.core.errors import ConfigError, PatternError
from pet_mtl.data.readers import Example
from pet_mtl.methods.features import ClozeFeaturizer, collate
from pet_mtl.prompts import Pattern, PatternSpec, load_pattern


def nli_featurizer(tok, max_length):
    return ClozeFeaturizer(tok, {"ocnli": [load_pattern("ocnli", PatternSpec("ocnli/relation.j2", "relation"))]}, max_length)


def test_ids_equal_the_plain_tokenizer_when_nothing_is_cut(tiny):
    tok, _ = tiny
    enc = nli_featurizer(tok, 128)
    e = Example("ocnli", "1", {"premise": "他在看书。", "hypothesis": "他在学习"}, "0")
    f = enc.encode([e])[0]
    (text,) = enc.parts(enc.patterns[0].render(e), 0)
    assert text == "前提：他在看书。假设：他在学习。关系：[MASK][MASK]。"
    assert list(f.input_ids) == tok(text)["input_ids"] and f.second_segment is None
    assert f.input_ids[f.slot_start:f.slot_start + 2] == (tok.mask_token_id,) * 2 and f.label == 0


def test_slot_survives_a_2000_character_input_and_the_longest_field_is_cut_first(tiny):
    tok, _ = tiny
    enc = nli_featurizer(tok, 64)
    long_premise = ("他在图书馆看书" * 300)[:2000]
    f = enc.encode([Example("ocnli", "1", {"premise": long_premise, "hypothesis": "他在学习"}, "2")])[0]
    assert len(f.input_ids) == 64
    toks = tok.convert_ids_to_tokens(list(f.input_ids))
    assert toks[f.slot_start:f.slot_start + 2] == ["[MASK]", "[MASK]"]
    text = "".join(t for t in toks if not t.startswith("["))
    assert text.startswith("前提：他在图书馆") and text.endswith("。假设：他在学习。关系：。")  # hypothesis and pattern intact
    assert toks[0] == "[CLS]" and toks[-1] == "[SEP]"
    # both fields long: the longer is cut until they are level, then both shrink together
    g = enc.encode([Example("ocnli", "2", {"premise": "甲" * 500, "hypothesis": "乙" * 300}, "2")])[0]
    gt = tok.convert_ids_to_tokens(list(g.input_ids))
    assert abs(gt.count("甲") - gt.count("乙")) <= 1 and len(g.input_ids) == 64


def test_pattern_too_long_for_max_length_is_a_config_error(tiny):
    tok, _ = tiny
    with pytest.raises(ConfigError, match="more than model.max_length=12"):
        nli_featurizer(tok, 12).encode([Example("ocnli", "1", {"premise": "甲", "hypothesis": "乙"}, "0")])


def test_slot_next_to_latin_text_still_tokenizes_to_masks(tiny):
    tok, _ = tiny
    words = {"0": "是的", "1": "可能", "2": "不是"}
    p = Pattern("ocnli", "glued", "{{ premise }}{{ hypothesis }}abc{{ mask }}", words, origin="glued.j2")
    enc = ClozeFeaturizer(tok, {"ocnli": [p]}, 64)
    f = enc.encode([Example("ocnli", "1", {"premise": "甲", "hypothesis": "乙"}, "0")])[0]
    assert tok.convert_ids_to_tokens(list(f.input_ids[f.slot_start:f.slot_start + 2])) == ["[MASK]", "[MASK]"]


def test_unknown_verbalizer_token_is_refused(tiny):
    tok, _ = tiny
    words = {"0": "是的", "1": "可能", "2": "龘龘"}
    with pytest.raises(PatternError, match="unknown to the tokenizer"):
        ClozeFeaturizer(tok, {"ocnli": [Pattern("ocnli", "u", "{{ premise }}{{ mask }}{{ hypothesis }}", words,
                                             origin="u.j2")]}, 64)


def test_collate_pads_to_a_multiple_and_masks(tiny):
    tok, _ = tiny
    enc = nli_featurizer(tok, 128)
    feats = enc.encode([Example("ocnli", str(i), {"premise": "甲" * n, "hypothesis": "乙"}, "1")
                        for i, n in enumerate([3, 11])])
    b = collate(feats, tok.pad_token_id, 8)
    assert b["input_ids"].shape[1] % 8 == 0 and b["input_ids"].shape[1] >= len(feats[1].input_ids)
    assert b["attention_mask"].sum(1).tolist() == [len(f.input_ids) for f in feats]
    assert b["slot_positions"].tolist() == [[f.slot_start, f.slot_start + 1] for f in feats]
    assert b["labels"].tolist() == [1, 1]
