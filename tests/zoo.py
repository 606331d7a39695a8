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
    """The architecture's tiny random language model (masked or causal) and its tokenizer, saved to `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    make_tokenizer, make_model = {**ARCHITECTURES, **CAUSAL_ARCHITECTURES}[name]
    make_tokenizer(directory, texts)
    tokenizer = tf.AutoTokenizer.from_pretrained(directory)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = make_model(len(tokenizer), tokenizer.pad_token_id)
    model.save_pretrained(directory)
    return directory


# ---------------------------------------------------------------- causal LMs (method=causal)

#: Qwen2's pre-tokenizer: a punctuation mark joins the letters after it (：体育 is one pre-token), so a label word
#: can merge with the prompt's last character
QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
              r"|\s+(?!\S)|\s+")


def byte_bpe_tokenizer(directory: Path, texts: list[str]) -> None:
    """Qwen2's kind: byte-level BPE behind its split regex, <|endoftext|> as eos and pad, no bos."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=1200, special_tokens=["<|endoftext|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tf.Qwen2Tokenizer(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                      unk_token=None, bos_token=None).save_pretrained(directory)


def llama_tokenizer(directory: Path, texts: list[str]) -> None:
    """Llama's kind: BPE over ▁-marked words, <s> and </s>, and no pad token (pet_mtl pads with eos)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=800, special_tokens=["<unk>", "<s>", "</s>"]))
    tf.LlamaTokenizer(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                      pad_token=None).save_pretrained(directory)


CAUSAL_SIZE = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                   max_position_embeddings=160)
CAUSAL_ARCHITECTURES: dict[str, tuple[Callable, Callable]] = {
    "gpt2": (bert_tokenizer, lambda v, pad: tf.GPT2LMHeadModel(tf.GPT2Config(
        vocab_size=v, n_embd=64, n_layer=2, n_head=2, n_positions=160, bos_token_id=None, eos_token_id=None,
        pad_token_id=pad))),
    "qwen2": (byte_bpe_tokenizer, lambda v, pad: tf.Qwen2ForCausalLM(tf.Qwen2Config(
        vocab_size=v, num_key_value_heads=1, pad_token_id=pad, **CAUSAL_SIZE))),
    "llama": (llama_tokenizer, lambda v, pad: tf.LlamaForCausalLM(tf.LlamaConfig(
        vocab_size=v, num_key_value_heads=1, pad_token_id=None, bos_token_id=1, eos_token_id=2, **CAUSAL_SIZE))),
    "bert_decoder": (bert_tokenizer, lambda v, pad: tf.BertLMHeadModel(tf.BertConfig(
        vocab_size=v, pad_token_id=pad, is_decoder=True, **SIZE))),
}
