"""Tiny random masked LMs of every architecture users bring, built locally (nothing downloaded): 2 layers, hidden 64,
saved as a Hugging Face folder with the tokenizer the real checkpoints ship (a BERT character vocabulary, as the
Chinese BERT family, ALBERT, ELECTRA and Erlangshen's DeBERTa-v2 use; a Unigram sentencepiece-style vocabulary,
built with `tokenizers`, for XLM-R)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch
import transformers as tf

#: arch -> column -> "ok" | "fails": filled by tests/test_backbones.py, printed at the end of the run (conftest)
MATRIX: dict[str, dict[str, str]] = {}

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SIZE = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
            max_position_embeddings=160)


def bert_tokenizer(directory: Path, texts: list[str]) -> None:
    chars = sorted({c for t in texts for c in t if not c.isspace()} | set("0123456789abcdefghijklmnopqrstuvwxyz"))
    vocab = SPECIALS + [c for c in chars if c not in SPECIALS]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (directory / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer",
                                                                 "do_lower_case": True}), encoding="utf-8")
    tf.AutoTokenizer.from_pretrained(directory).save_pretrained(directory)


def unigram_tokenizer(directory: Path, texts: list[str]) -> None:
    """XLM-R's kind: a Unigram model over Metaspace pieces (`▁` marks a word start), <s> ... </s></s> ... </s>."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=2000, special_tokens=specials,
                                                           unk_token="<unk>", max_piece_length=4))
    s, e = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
                                                       special_tokens=[("<s>", s), ("</s>", e)])
    tf.XLMRobertaTokenizer(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                           cls_token="<s>", unk_token="<unk>", pad_token="<pad>",
                           mask_token="<mask>").save_pretrained(directory)


#: name -> (tokenizer builder, model builder given the vocabulary size and pad id)
ARCHITECTURES: dict[str, tuple[Callable, Callable]] = {
    "bert": (bert_tokenizer, lambda v, pad: tf.BertForMaskedLM(tf.BertConfig(vocab_size=v, pad_token_id=pad, **SIZE))),
    "ernie": (bert_tokenizer, lambda v, pad: tf.ErnieForMaskedLM(tf.ErnieConfig(vocab_size=v, pad_token_id=pad,
                                                                                 **SIZE))),
    "megatron_bert": (bert_tokenizer, lambda v, pad: tf.MegatronBertForMaskedLM(
        tf.MegatronBertConfig(vocab_size=v, pad_token_id=pad, **SIZE))),
    "albert": (bert_tokenizer, lambda v, pad: tf.AlbertForMaskedLM(
        tf.AlbertConfig(vocab_size=v, pad_token_id=pad, embedding_size=32, **SIZE))),
    "electra_generator": (bert_tokenizer, lambda v, pad: tf.ElectraForMaskedLM(
        tf.ElectraConfig(vocab_size=v, pad_token_id=pad, embedding_size=32, **SIZE))),
    "electra_generator_same_size": (bert_tokenizer, lambda v, pad: tf.ElectraForMaskedLM(
        tf.ElectraConfig(vocab_size=v, pad_token_id=pad, embedding_size=64, **SIZE))),
    "deberta_v2_legacy": (bert_tokenizer, lambda v, pad: tf.DebertaV2ForMaskedLM(
        tf.DebertaV2Config(vocab_size=v, pad_token_id=pad, legacy=True, relative_attention=True,
                           position_buckets=32, pos_att_type=["p2c", "c2p"], **SIZE))),
    "deberta_v2": (bert_tokenizer, lambda v, pad: tf.DebertaV2ForMaskedLM(
        tf.DebertaV2Config(vocab_size=v, pad_token_id=pad, legacy=False, relative_attention=True,
                           position_buckets=32, pos_att_type=["p2c", "c2p"], **SIZE))),
    "xlm_roberta": (unigram_tokenizer, lambda v, pad: tf.XLMRobertaForMaskedLM(
        tf.XLMRobertaConfig(vocab_size=v, pad_token_id=pad, type_vocab_size=1,
                            **{**SIZE, "max_position_embeddings": SIZE["max_position_embeddings"] + 2}))),
}


def build(name: str, directory: Path, texts: list[str], seed: int = 0) -> Path:
    """The architecture's tiny random masked LM and its tokenizer, saved to `directory` (safetensors)."""
    directory.mkdir(parents=True, exist_ok=True)
    make_tokenizer, make_model = ARCHITECTURES[name]
    make_tokenizer(directory, texts)
    tokenizer = tf.AutoTokenizer.from_pretrained(directory)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = make_model(len(tokenizer), tokenizer.pad_token_id)
    model.save_pretrained(directory)
    return directory
