"""The scoring oracle: our label scores equal joint log-probabilities from a plain AutoModelForMaskedLM forward."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from pet_mtl.data import Example
from pet_mtl.engine import example_scores, score_features
from pet_mtl.features import ClozeEncoder, collate, label_words
from pet_mtl.model import ClozeModel, label_loss
from pet_mtl.patterns import Pattern, PatternSpec, load_pattern

from conftest import synthetic_rows

UNEVEN_TNEWS = {"100": "小故事", "101": "文化", "102": "娱乐", "103": "体", "104": "财经", "106": "房产", "107": "汽车",
                "108": "教育", "109": "科技", "110": "军事", "112": "旅游", "113": "国际", "114": "股票", "115": "农业",
                "116": "游戏"}


def patterns():
    return {
        "ocnli": [load_pattern("ocnli", PatternSpec("ocnli/question.j2")),
                  load_pattern("ocnli", PatternSpec("ocnli/relation.j2", "relation"))],
        "ocemotion": [load_pattern("ocemotion", PatternSpec("ocemotion/mood.j2"))],
        "tnews": [Pattern("tnews", "uneven", "{{ title }}。这是{{ mask }}新闻。", UNEVEN_TNEWS, origin="uneven.j2")],
    }


def examples():
    out = {}
    for task in ("ocnli", "ocemotion", "tnews"):
        rows = synthetic_rows(task, 1, seed=3)[:3]
        fields = {"ocnli": ("premise", "hypothesis"), "ocemotion": ("text",), "tnews": ("title",)}[task]
        out[task] = [Example(task, str(i), dict(zip(fields, r[:-1])), r[-1]) for i, r in enumerate(rows)]
    out["tnews"][0] = Example("tnews", "long", {"title": "很长的标题" * 5}, "100")
    return out


def oracle_scores(model_dir, text: str, words: list[str], slot_len: int) -> list[float]:
    """Independent of pet_mtl's features/model code: tokenize the text, full forward, read the mask positions."""
    tok = AutoTokenizer.from_pretrained(model_dir)
    mlm = AutoModelForMaskedLM.from_pretrained(model_dir).eval()
    enc = tok(text, return_tensors="pt")
    with torch.no_grad():
        logp = mlm(**enc).logits[0].log_softmax(-1)
    positions = (enc["input_ids"][0] == tok.mask_token_id).nonzero().flatten().tolist()
    assert len(positions) == slot_len
    scores = []
    for w in words:
        ids = tok(w, add_special_tokens=False)["input_ids"]
        ids = ids + [tok.pad_token_id] * (slot_len - len(ids))
        scores.append(sum(logp[p, i].item() for p, i in zip(positions, ids)))
    return scores


def test_label_words_pad_shorter_words_with_the_pad_token(tiny):
    tok, _ = tiny
    w = label_words(patterns()["tnews"][0], tok)
    assert w.slot_len == 3
    assert w.lengths[0] == 3 and w.lengths[3] == 1
    assert w.ids[3] == (tok.convert_tokens_to_ids("体"), tok.pad_token_id, tok.pad_token_id)
    assert w.ids[1][2] == tok.pad_token_id


def test_declared_slot_shorter_than_a_word_is_refused(tiny):
    from pet_mtl.errors import PatternError

    tok, _ = tiny
    p = Pattern("tnews", "fixed", "{{ title }}{{ mask(2) }}", UNEVEN_TNEWS, origin="fixed.j2")
    with pytest.raises(PatternError, match="'小故事' is 3 tokens .* declares a slot of 2"):
        label_words(p, tok)
    wide = label_words(Pattern("tnews", "w", "{{ title }}{{ mask(4) }}", UNEVEN_TNEWS, origin="w.j2"), tok)
    assert wide.slot_len == 4 and wide.ids[1][2:] == (tok.pad_token_id,) * 2


def test_scores_equal_a_plain_masked_lm_forward(tiny_dir, tiny):
    tok, mlm = tiny
    enc = ClozeEncoder(tok, patterns(), max_length=128)
    model = ClozeModel(mlm, *enc.label_tensors()).eval()
    exs = examples()
    feats = [f for t in exs for f in enc.encode(exs[t])]
    assert len({len(f.input_ids) for f in feats}) > 2  # a mixed batch really needs padding
    ours = score_features(model, feats, batch_size=4, pad_id=tok.pad_token_id, pad_to_multiple_of=8,
                          precision="fp32", device=torch.device("cpu"))
    checked = 0
    for t, task_exs in exs.items():
        for f in (f for f in feats if enc.tasks[f.task] == t):
            pattern = enc.patterns[f.pattern]
            words = list(pattern.verbalizer.values())
            text = enc.text(pattern.render(task_exs[f.example]), f.pattern)
            expected = oracle_scores(tiny_dir, text, words, enc.words[f.pattern].slot_len)
            got = ours[feats.index(f), : len(words)]
            assert torch.allclose(got, torch.tensor(expected), atol=1e-4), (t, text)
            assert (ours[feats.index(f), len(words):] <= -1e8).all()  # labels the task lacks never win
            checked += 1
    assert checked == len(feats) == 3 * 2 + 3 + 3


def test_full_forward_fallback_gives_the_same_scores(tiny):
    tok, mlm = tiny
    enc = ClozeEncoder(tok, patterns(), max_length=128)
    fast = ClozeModel(mlm, *enc.label_tensors()).eval()
    slow = ClozeModel(mlm, *enc.label_tensors()).eval()
    slow.head = None
    batch = collate([f for t, e in examples().items() for f in enc.encode(e)], tok.pad_token_id)
    with torch.no_grad():
        assert torch.allclose(fast(**batch), slow(**batch), atol=1e-5)


def test_pattern_ensemble_averages_an_examples_pattern_scores():
    from pet_mtl.features import Feature

    feats = [Feature((1,), 0, 1, p, 0, -1, ex) for ex, p in [(0, 0), (0, 1), (1, 0), (1, 1)]]
    scores = torch.tensor([[0.0, -2.0], [-2.0, 0.0], [-1.0, -3.0], [-1.0, -1.0]])
    assert torch.equal(example_scores(feats, scores, 2), torch.tensor([[-1.0, -1.0], [-1.0, -2.0]]))


def test_loss_is_cross_entropy_over_the_tasks_own_labels():
    scores = torch.tensor([[-1.0, -2.0, -1e9], [-0.5, -3.0, -0.7]])
    labels = torch.tensor([0, 2])
    ce = torch.nn.functional.cross_entropy(scores, labels, reduction="none")
    assert torch.isclose(ce[0], torch.log1p(torch.exp(torch.tensor(-1.0))))  # the padded label has probability 0
    assert torch.isclose(label_loss(scores, labels), ce.mean())
    w = torch.tensor([1.0, 3.0])
    assert torch.isclose(label_loss(scores, labels, w), (ce[0] + 3 * ce[1]) / 4)
