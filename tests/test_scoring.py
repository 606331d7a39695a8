"""The scoring oracle: our label scores equal joint log-probabilities from a plain AutoModelForMaskedLM forward."""
from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from pet_mtl.backbones.contract import Backbone
from pet_mtl.data.readers import Example
from pet_mtl.inference.predictor import example_scores, score_features
from pet_mtl.methods.cloze import ClozeModel
from pet_mtl.methods.features import ClozeFeaturizer, collate, label_words
from pet_mtl.prompts import Pattern, PatternSpec, load_pattern
from pet_mtl.training.losses import label_loss

UNEVEN_TNEWS = {"100": "小故事", "101": "文化", "102": "娱乐", "103": "体", "104": "财经", "106": "房产", "107": "汽车",
                "108": "教育", "109": "科技", "110": "军事", "112": "旅游", "113": "国际", "114": "股票", "115": "农业",
                "116": "游戏"}
# several words for some labels, of different lengths
MULTI_EMOTION = {"like": ["喜欢", "爱"], "happiness": ["开心", "高兴", "快乐"], "sadness": "伤心", "anger": "愤怒",
                 "disgust": "厌恶", "surprise": ["惊讶", "吃惊"], "fear": "害怕"}


def patterns(rule="padded", aggregate="logsumexp"):
    return {
        "ocnli": [load_pattern("ocnli", PatternSpec("ocnli/question.j2"), scoring=rule),
                  load_pattern("ocnli", PatternSpec("ocnli/relation.j2", "relation"), scoring=rule)],
        "ocemotion": [Pattern("ocemotion", "multi", "心情：{{ mask }}。{{ text }}", MULTI_EMOTION, origin="multi.j2",
                              scoring=rule, aggregate=aggregate)],
        "tnews": [Pattern("tnews", "uneven", "{{ title }}。这是{{ mask }}新闻。", UNEVEN_TNEWS, origin="uneven.j2",
                          scoring=rule)],
    }


MAX_LENGTH = 20
# (task, pattern index within the task, fields, the exact text the model must see, slot length): written out by
# hand, so the oracle depends on neither the renderer nor the truncation code it checks.
CASES = [
    ("ocnli", 0, {"premise": "他在看书", "hypothesis": "他在学习"}, "他在看书？[MASK][MASK]，他在学习", 2),
    ("ocnli", 1, {"premise": "看书", "hypothesis": "学习"}, "前提：看书。假设：学习。关系：[MASK][MASK]。", 2),  # 20 tokens
    ("ocemotion", 0, {"text": "好开心"}, "心情：[MASK][MASK]。好开心", 2),  # 1- and 2-token words, several a label
    ("tnews", 0, {"title": "国足赢了"}, "国足赢了。这是[MASK][MASK][MASK]新闻。", 3),  # 2 labels padded, 1 short
    # truncation to 20 tokens: the field loses its end, pattern text and slot stay
    ("tnews", 0, {"title": "很长的标题" * 6}, "很长的标题很长的标。这是[MASK][MASK][MASK]新闻。", 3),
    # both fields too long: the longer is cut until level, then they shrink in turn (7 + 7 of 30 + 10)
    ("ocnli", 0, {"premise": "甲" * 30, "hypothesis": "乙" * 10}, "甲甲甲甲甲甲甲？[MASK][MASK]，乙乙乙乙乙乙乙", 2),
]


def oracle_scores(model_dir, text: str | tuple[str, str], words: dict, slot_len: int, rule: str,
                  aggregate: str) -> list[float]:
    """Independent of pet_mtl's features/model code: tokenize the text (or the pair, with its token type ids), full
    forward, read the mask positions, and score each label's word(s) by the documented rule, combining several words
    as documented."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    mlm = AutoModelForMaskedLM.from_pretrained(model_dir).eval()
    enc = tok(*([text] if isinstance(text, str) else text), return_tensors="pt")
    with torch.no_grad():
        logp = mlm(**enc).logits[0].log_softmax(-1)
    positions = (enc["input_ids"][0] == tok.mask_token_id).nonzero().flatten().tolist()
    assert len(positions) == slot_len and positions == list(range(positions[0], positions[0] + slot_len))
    scores = []
    for listed in words.values():
        per_word = []
        for w in [listed] if isinstance(listed, str) else listed:
            ids = tok(w, add_special_tokens=False)["input_ids"]
            n = len(ids)
            ids = ids + [tok.pad_token_id] * (slot_len - n)  # the documented padding
            joint = sum(logp[p, i].item() for p, i in zip(positions, ids if rule == "padded" else ids[:n]))
            per_word.append(joint / n if rule == "word_mean" else joint)
        scores.append(math.log(sum(math.exp(x) for x in per_word)) if aggregate == "logsumexp"
                      else sum(per_word) / len(per_word))
    return scores


def test_label_words_pad_shorter_words_with_the_pad_token(tiny):
    tok, _ = tiny
    w = label_words(patterns()["tnews"][0], tok)
    assert w.slot_len == 3
    assert w.lengths[0] == (3,) and w.lengths[3] == (1,)
    assert w.ids[3] == ((tok.convert_tokens_to_ids("体"), tok.pad_token_id, tok.pad_token_id),)
    assert w.ids[1][0][2] == tok.pad_token_id
    assert w.weights("padded")[3] == [[1.0, 1.0, 1.0]] and w.weights("word")[3] == [[1.0, 0.0, 0.0]]
    assert w.weights("word_mean")[1] == [[0.5, 0.5, 0.0]]


def test_declared_slot_shorter_than_a_word_is_refused(tiny):
    from pet_mtl.core.errors import PatternError

    tok, _ = tiny
    p = Pattern("tnews", "fixed", "{{ title }}{{ mask(2) }}", UNEVEN_TNEWS, origin="fixed.j2")
    with pytest.raises(PatternError, match="'小故事' is 3 tokens .* declares a slot of 2"):
        label_words(p, tok)
    wide = label_words(Pattern("tnews", "w", "{{ title }}{{ mask(4) }}", UNEVEN_TNEWS, origin="w.j2"), tok)
    assert wide.slot_len == 4 and wide.ids[1][0][2:] == (tok.pad_token_id,) * 2


@pytest.mark.parametrize("rule,aggregate", [("padded", "logsumexp"), ("word", "logsumexp"), ("word_mean", "logsumexp"),
                                            ("word", "mean")])
def test_scores_equal_a_plain_masked_lm_forward(tiny_dir, tiny, rule, aggregate):
    tok, mlm = tiny
    enc = ClozeFeaturizer(tok, patterns(rule, aggregate), max_length=MAX_LENGTH)
    model = ClozeModel(Backbone(mlm, tok), enc.label_tensors()).eval()
    feats = []
    for i, (task, k, fields, _, _) in enumerate(CASES):
        f = enc.encode([Example(task, str(i), fields, None)], with_labels=False)[k]
        feats.append(f)
    assert len({len(f.input_ids) for f in feats}) > 2  # a mixed batch really needs padding
    ours = score_features(model, feats, batch_size=4, pad_id=tok.pad_token_id, pad_to_multiple_of=8,
                          precision="fp32", device=torch.device("cpu"))
    for row, (f, (task, _, _, text, slot_len)) in enumerate(zip(feats, CASES)):
        assert list(f.input_ids) == tok(text)["input_ids"], (text, tok.decode(list(f.input_ids)))
        words = enc.patterns[f.head].verbalizer
        expected = oracle_scores(tiny_dir, text, words, slot_len, rule, aggregate)
        assert torch.allclose(ours[row, : len(words)], torch.tensor(expected), atol=1e-4), text
        assert (ours[row, len(words):] <= -1e8).all()  # labels the task lacks never win


PAIR = "{{ premise }}？{{ mask }}，{{ sep }}{{ hypothesis }}"
# (fields, the exact pair the model must see): the pair's specials take 7 of the 20 tokens, so the long case keeps
# 13 field tokens, cut from the longer field first and then in turn
PAIR_CASES = [
    ({"premise": "他在看书", "hypothesis": "他在学习"}, ("他在看书？[MASK][MASK]，", "他在学习")),
    ({"premise": "甲" * 30, "hypothesis": "乙" * 10}, ("甲" * 6 + "？[MASK][MASK]，", "乙" * 7)),
]


def test_a_pair_pattern_scores_equal_a_plain_masked_lm_forward_of_the_pair(tiny_dir, tiny):
    tok, mlm = tiny
    words = {"0": "是的", "1": "可能", "2": "不是"}
    enc = ClozeFeaturizer(tok, {"ocnli": [Pattern("ocnli", "pair", PAIR, words, origin="pair.j2")]}, MAX_LENGTH)
    model = ClozeModel(Backbone(mlm, tok), enc.label_tensors()).eval()
    feats = [enc.encode([Example("ocnli", str(i), fields, None)], with_labels=False)[0]
             for i, (fields, _) in enumerate(PAIR_CASES)]
    batch = collate(feats, tok.pad_token_id, 1)
    assert batch["token_type_ids"].sum() > 0
    ours = score_features(model, feats, batch_size=2, pad_id=tok.pad_token_id, pad_to_multiple_of=8,
                          precision="fp32", device=torch.device("cpu"))
    for row, (f, (_, pair)) in enumerate(zip(feats, PAIR_CASES)):
        plain = tok(*pair)
        assert list(f.input_ids) == plain["input_ids"], (pair, tok.decode(list(f.input_ids)))
        assert batch["token_type_ids"][row, : len(f.input_ids)].tolist() == plain["token_type_ids"]
        expected = oracle_scores(tiny_dir, pair, words, 2, "word", "logsumexp")
        assert torch.allclose(ours[row, :3], torch.tensor(expected), atol=1e-4), pair


def test_full_forward_fallback_gives_the_same_scores(tiny):
    tok, mlm = tiny
    enc = ClozeFeaturizer(tok, patterns(), max_length=MAX_LENGTH)
    fast = ClozeModel(Backbone(mlm, tok), enc.label_tensors()).eval()
    slow = ClozeModel(Backbone(mlm, tok), enc.label_tensors()).eval()
    slow.backbone.vocab_head = "full"
    exs = [Example(task, str(i), fields, None) for i, (task, _, fields, _, _) in enumerate(CASES)]
    batch = collate([f for e in exs for f in enc.encode([e])], tok.pad_token_id, 1)
    with torch.no_grad():
        assert torch.allclose(fast(**batch), slow(**batch), atol=1e-5)


def test_pattern_ensemble_averages_an_examples_pattern_scores():
    from pet_mtl.methods.features import Feature

    feats = [Feature((1,), 0, 1, p, 0, -1, ex) for ex, p in [(0, 0), (0, 1), (1, 0), (1, 1)]]
    scores = torch.tensor([[0.0, -2.0], [-2.0, 0.0], [-1.0, -3.0], [-1.0, -1.0]])
    assert torch.equal(example_scores(feats, scores, 2), torch.tensor([[-1.0, -1.0], [-1.0, -2.0]]))


def test_loss_is_cross_entropy_over_the_tasks_own_labels_weighted_by_task():
    scores = torch.tensor([[-1.0, -2.0, -1e9], [0.0, -1e9, 0.0]])  # row 0: a 2-label task, row 1: labels 0 and 2
    labels = torch.tensor([0, 2])
    row0 = math.log1p(math.exp(-1.0))  # -log(e^-1 / (e^-1 + e^-2)); the padded label has probability 0
    row1 = math.log(2.0)  # two equal scores
    assert label_loss(scores, labels).item() == pytest.approx((row0 + row1) / 2, abs=1e-6)
    assert label_loss(scores, labels, torch.tensor([1.0, 3.0])).item() == pytest.approx((row0 + 3 * row1) / 4, abs=1e-6)


def test_scores_streamed_in_chunks_are_the_scores_of_the_whole_list(tiny, synthetic_dir):
    """Predictor.stream featurizes and scores a bounded number of rows at a time (predict's memory does not grow
    with the file): the chunks come back in input order with the scores the whole list gets at once."""
    from pet_mtl.core.tasks import TASKS
    from pet_mtl.data.readers import iter_examples, read_examples
    from pet_mtl.inference.predictor import Predictor
    from pet_mtl.methods import build_scorer

    tok, mlm = tiny
    featurizer, model = build_scorer("pet", tok, mlm, patterns(), ["tnews"], 32)
    path = synthetic_dir / TASKS["tnews"].files["a"]
    whole = Predictor(featurizer, model).scores(read_examples(path, TASKS["tnews"], labelled=False))
    stream = list(Predictor(featurizer, model, chunk_rows=5).stream(iter_examples(path, TASKS["tnews"], False)))
    assert [len(rows) for rows, _ in stream][:-1] == [5] * (len(stream) - 1) and len(stream) > 2
    assert [ex.id for rows, _ in stream for ex in rows] == [ex.id for ex in read_examples(path, TASKS["tnews"], False)]
    assert torch.allclose(torch.cat([s for _, s in stream]), whole, atol=1e-5)
