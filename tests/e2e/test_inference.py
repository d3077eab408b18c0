"""Inference (issue 18): the hub runs the models it hosts through the Hub's inference API.

Tiny models are built here — random weights (numpy), real `config.json` files for
`BertModel`, `BertForSequenceClassification` and `LlamaForCausalLM`, real `tokenizer.json`
files made with the `tokenizers` package — uploaded with the client, and called with the real
`InferenceClient` exactly as a user would. Every answer is checked against an independent
numpy forward pass of the same architecture written below: embeddings and class scores to a
tolerance, greedy generations token for token.
"""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from safetensors.numpy import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from browser import chromium, new_page, shot  # noqa: F401  (chromium is a fixture)
from conftest import _start, make_client, unique
from infer_ref import (bert_forward, classify_ref, distilbert_classify_ref, distilbert_forward, gpt2_logits,
                       distilbert_masked_lm_ref, greedy_ref, group_entities, masked_lm_ref, pipeline_text,
                       roberta_classify_ref, roberta_forward, roberta_masked_lm_ref, softmax, token_logits_ref,
                       llama_logits)

WORDS = ("the a i love hate it this that movie film good bad great awful is was very not "
         "really so and or but we you they like sun rain day night cat dog runs sleeps").split()

# ---------------------------------------------------------------------------------------------
# Model builders
# ---------------------------------------------------------------------------------------------


def bert_tokenizer() -> Tokenizer:
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tok.decoder = decoders.WordPiece()
    tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])  # as real BERT tokenizers do
    return tok


def bert_config(vocab: int, *, hidden=32, layers=2, heads=4, inter=64, labels=None, max_pos=64) -> dict:
    config = {
        "architectures": ["BertForSequenceClassification" if labels else "BertModel"],
        "model_type": "bert", "vocab_size": vocab, "hidden_size": hidden,
        "num_hidden_layers": layers, "num_attention_heads": heads, "intermediate_size": inter,
        "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": max_pos, "type_vocab_size": 2, "initializer_range": 0.02,
        "layer_norm_eps": 1e-12, "pad_token_id": 0, "position_embedding_type": "absolute",
        "classifier_dropout": None, "torch_dtype": "float32",
    }
    if labels:
        config["id2label"] = {str(i): l for i, l in enumerate(labels)}
        config["label2id"] = {l: i for i, l in enumerate(labels)}
    return config


def bert_weights(cfg: dict, rng: np.random.Generator, prefix: str = "") -> dict[str, np.ndarray]:
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]

    def w(*shape, s=0.2):
        return (rng.standard_normal(shape) * s).astype(np.float32)

    t = {
        "embeddings.word_embeddings.weight": w(v, h, s=1.0),
        "embeddings.position_embeddings.weight": w(cfg["max_position_embeddings"], h, s=0.5),
        "embeddings.token_type_embeddings.weight": w(cfg["type_vocab_size"], h, s=0.5),
        "embeddings.LayerNorm.weight": 1 + w(h, s=0.1),
        "embeddings.LayerNorm.bias": w(h, s=0.1),
    }
    for l in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{l}."
        for name in ("query", "key", "value"):
            t[p + f"attention.self.{name}.weight"] = w(h, h)
            t[p + f"attention.self.{name}.bias"] = w(h, s=0.1)
        t[p + "attention.output.dense.weight"] = w(h, h)
        t[p + "attention.output.dense.bias"] = w(h, s=0.1)
        t[p + "attention.output.LayerNorm.weight"] = 1 + w(h, s=0.1)
        t[p + "attention.output.LayerNorm.bias"] = w(h, s=0.1)
        t[p + "intermediate.dense.weight"] = w(i, h)
        t[p + "intermediate.dense.bias"] = w(i, s=0.1)
        t[p + "output.dense.weight"] = w(h, i)
        t[p + "output.dense.bias"] = w(h, s=0.1)
        t[p + "output.LayerNorm.weight"] = 1 + w(h, s=0.1)
        t[p + "output.LayerNorm.bias"] = w(h, s=0.1)
    t = {prefix + k: val for k, val in t.items()}
    arch = cfg["architectures"][0]
    if arch == "BertForSequenceClassification":
        t["bert.pooler.dense.weight"] = w(h, h, s=0.5)
        t["bert.pooler.dense.bias"] = w(h, s=0.1)
    if arch in ("BertForSequenceClassification", "BertForTokenClassification"):
        t["classifier.weight"] = w(len(cfg["id2label"]), h, s=1.0)
        t["classifier.bias"] = w(len(cfg["id2label"]), s=0.1)
    if arch == "BertForMaskedLM":  # the decoder is tied to the word embeddings: not saved, as transformers does
        t["cls.predictions.transform.dense.weight"] = w(h, h, s=0.5)
        t["cls.predictions.transform.dense.bias"] = w(h, s=0.1)
        t["cls.predictions.transform.LayerNorm.weight"] = 1 + w(h, s=0.1)
        t["cls.predictions.transform.LayerNorm.bias"] = w(h, s=0.1)
        t["cls.predictions.bias"] = w(v, s=0.5)
    return t


def distilbert_config(vocab: int, *, labels=None) -> dict:
    config = {"architectures": ["DistilBertForSequenceClassification" if labels else "DistilBertModel"],
              "model_type": "distilbert", "vocab_size": vocab, "dim": 32, "n_layers": 2, "n_heads": 4,
              "hidden_dim": 64, "activation": "gelu", "max_position_embeddings": 64, "initializer_range": 0.02,
              "pad_token_id": 0, "dropout": 0.1, "attention_dropout": 0.1, "seq_classif_dropout": 0.2,
              "sinusoidal_pos_embds": False, "tie_weights_": True}
    if labels:
        config["id2label"] = {str(i): l for i, l in enumerate(labels)}
        config["label2id"] = {l: i for i, l in enumerate(labels)}
    return config


def distilbert_weights(cfg: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    h, i, v = cfg["dim"], cfg["hidden_dim"], cfg["vocab_size"]

    def w(*shape, s=0.2):
        return (rng.standard_normal(shape) * s).astype(np.float32)

    t = {"distilbert.embeddings.word_embeddings.weight": w(v, h, s=1.0),
         "distilbert.embeddings.position_embeddings.weight": w(cfg["max_position_embeddings"], h, s=0.5),
         "distilbert.embeddings.LayerNorm.weight": 1 + w(h, s=0.1), "distilbert.embeddings.LayerNorm.bias": w(h, s=0.1)}
    for l in range(cfg["n_layers"]):
        p = f"distilbert.transformer.layer.{l}."
        for name in ("q_lin", "k_lin", "v_lin", "out_lin"):
            t[p + f"attention.{name}.weight"] = w(h, h)
            t[p + f"attention.{name}.bias"] = w(h, s=0.1)
        for name in ("sa_layer_norm", "output_layer_norm"):
            t[p + f"{name}.weight"] = 1 + w(h, s=0.1)
            t[p + f"{name}.bias"] = w(h, s=0.1)
        t[p + "ffn.lin1.weight"], t[p + "ffn.lin1.bias"] = w(i, h), w(i, s=0.1)
        t[p + "ffn.lin2.weight"], t[p + "ffn.lin2.bias"] = w(h, i), w(h, s=0.1)
    if "id2label" in cfg:
        n = len(cfg["id2label"])
        t["pre_classifier.weight"], t["pre_classifier.bias"] = w(h, h, s=0.5), w(h, s=0.1)
        t["classifier.weight"], t["classifier.bias"] = w(n, h, s=1.0), w(n, s=0.1)
    return t


NER_PIECES = ["ada", "##m", "par", "##is", "zeb", "##ra", "##s", "ber", "##lin", "lives", "in"]


def wordpiece_ner_tokenizer() -> Tokenizer:
    """A WordPiece tokenizer whose vocabulary splits names into several tokens (`paris` →
    `par ##is`, `zebras` → `zeb ##ra ##s`)."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {t: i for i, t in enumerate(specials + WORDS + NER_PIECES)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tok.decoder = decoders.WordPiece()
    tok.add_special_tokens(specials)
    return tok


def roberta_tokenizer() -> Tokenizer:
    vocab = {t: i for i, t in enumerate(["<s>", "<pad>", "</s>", "<unk>", "<mask>"] + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    return tok


def roberta_bpe_tokenizer() -> Tokenizer:
    """RoBERTa's kind of tokenizer: byte-level BPE (trained here on the test's words, so words
    are single tokens with their leading space, `Ġmovie`, and others split into pieces),
    `<s> … </s>` around the input, and `<mask>` taking the space before it (`lstrip`)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, min_frequency=1, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([" " + " ".join(WORDS)] * 4 + ["i love this movie very much"], trainer)
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
    return tok


def roberta_config(vocab: int, *, labels=None) -> dict:
    cfg = bert_config(vocab, labels=labels, max_pos=66)  # 64 positions after the padding id (1) + 1
    cfg.update({"architectures": ["RobertaForSequenceClassification" if labels else "RobertaModel"],
                "model_type": "roberta", "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
                "type_vocab_size": 1, "layer_norm_eps": 1e-5})
    return cfg


def roberta_weights(cfg: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    plain = dict(cfg, architectures=["BertModel"])
    plain.pop("id2label", None)
    t = bert_weights(plain, rng, prefix="roberta.")
    h = cfg["hidden_size"]
    if "id2label" in cfg:
        n = len(cfg["id2label"])
        t["classifier.dense.weight"] = (rng.standard_normal((h, h)) * 0.5).astype(np.float32)
        t["classifier.dense.bias"] = (rng.standard_normal(h) * 0.1).astype(np.float32)
        t["classifier.out_proj.weight"] = (rng.standard_normal((n, h)) * 1.0).astype(np.float32)
        t["classifier.out_proj.bias"] = (rng.standard_normal(n) * 0.1).astype(np.float32)
    return t


def llama_tokenizer() -> Tokenizer:
    vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>",
                                         "<|system|>"] + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(["<s>", "</s>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    return tok


def metaspace_tokenizer() -> Tokenizer:
    """Sentencepiece's convention, as Llama's tokenizers have it: `▁` marks the space before a
    word, and the Metaspace decoder drops it from the first token it decodes."""
    vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>"] + ["\u2581" + w for w in WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.add_special_tokens(["<s>", "</s>"])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    return tok


NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]

CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m.role }}|> {{ m.content.strip() }} "
                 "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")


def chat_prompt(messages: list[dict]) -> str:
    """CHAT_TEMPLATE, applied by hand."""
    return "<s>" + "".join(f"<|{m['role']}|> {m['content'].strip()} " for m in messages) + "<|assistant|>"


def llama_config(vocab: int, *, hidden=32, layers=2, heads=4, kv_heads=2, inter=64,
                 max_pos=256) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab,
        "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv_heads, "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0, "max_position_embeddings": max_pos, "bos_token_id": 1,
        "eos_token_id": 2, "tie_word_embeddings": False, "hidden_act": "silu",
        "torch_dtype": "float32",
    }


def llama_weights(cfg: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    h, i, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    d = h // cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"] * d

    def w(*shape, s=0.3):
        return (rng.standard_normal(shape) * s).astype(np.float32)

    t = {"model.embed_tokens.weight": w(v, h, s=1.0), "model.norm.weight": 1 + w(h, s=0.1),
         "lm_head.weight": w(v, h, s=1.0)}
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        t[p + "self_attn.q_proj.weight"] = w(h, h)
        t[p + "self_attn.k_proj.weight"] = w(kv, h)
        t[p + "self_attn.v_proj.weight"] = w(kv, h)
        t[p + "self_attn.o_proj.weight"] = w(h, h)
        t[p + "mlp.gate_proj.weight"] = w(i, h)
        t[p + "mlp.up_proj.weight"] = w(i, h)
        t[p + "mlp.down_proj.weight"] = w(h, i)
        t[p + "input_layernorm.weight"] = 1 + w(h, s=0.1)
        t[p + "post_attention_layernorm.weight"] = 1 + w(h, s=0.1)
    return t


def gpt2_config(vocab: int, eos: int) -> dict:
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": vocab, "n_embd": 32,
            "n_layer": 2, "n_head": 4, "n_positions": 128, "n_inner": None, "activation_function": "gelu_new",
            "layer_norm_epsilon": 1e-5, "bos_token_id": eos, "eos_token_id": eos, "torch_dtype": "float32"}


def gpt2_weights(cfg: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    e, v = cfg["n_embd"], cfg["vocab_size"]

    def w(*shape, s=0.3):
        return (rng.standard_normal(shape) * s).astype(np.float32)

    t = {"wte.weight": w(v, e, s=1.0), "wpe.weight": w(cfg["n_positions"], e, s=0.5),
         "ln_f.weight": 1 + w(e, s=0.1), "ln_f.bias": w(e, s=0.1)}
    for l in range(cfg["n_layer"]):
        p = f"h.{l}."
        for name in ("ln_1", "ln_2"):
            t[p + f"{name}.weight"], t[p + f"{name}.bias"] = 1 + w(e, s=0.1), w(e, s=0.1)
        for name, shape in (("attn.c_attn", (e, 3 * e)), ("attn.c_proj", (e, e)),
                            ("mlp.c_fc", (e, 4 * e)), ("mlp.c_proj", (4 * e, e))):
            t[p + f"{name}.weight"], t[p + f"{name}.bias"] = w(*shape), w(shape[1], s=0.1)
    return t


def qwen2_config(vocab: int) -> dict:
    cfg = llama_config(vocab)
    cfg.update({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "sliding_window": 256,
                "max_window_layers": 2, "use_sliding_window": False, "tie_word_embeddings": True,
                "rope_theta": 1000000.0})
    return cfg


def qwen2_weights(cfg: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    t = llama_weights(cfg, rng)
    del t["lm_head.weight"]  # tied to the embeddings
    d = cfg["hidden_size"] // cfg["num_attention_heads"]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}.self_attn."
        t[p + "q_proj.bias"] = (rng.standard_normal(cfg["hidden_size"]) * 0.1).astype(np.float32)
        for name in ("k_proj", "v_proj"):
            t[p + f"{name}.bias"] = (rng.standard_normal(cfg["num_key_value_heads"] * d) * 0.1).astype(np.float32)
    return t


def write_model(folder: Path, config: dict, weights: dict, tokenizer: Tokenizer, *,
                card: str, extra: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer.json").write_text(tokenizer.to_str())
    (folder / "README.md").write_text(card)
    save_file(weights, str(folder / "model.safetensors"))
    for path, text in (extra or {}).items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)
    return folder


def sentence_transformers_files() -> dict[str, str]:
    return {
        "modules.json": json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ]),
        "1_Pooling/config.json": json.dumps({
            "word_embedding_dimension": 32, "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False}),
    }


# ---------------------------------------------------------------------------------------------
# Fixtures: the models, uploaded once
# ---------------------------------------------------------------------------------------------

UPLOAD = '''
from huggingface_hub import HfApi
api = HfApi()
api.create_repo(ARGS["repo"], private=ARGS.get("private", False))
api.upload_folder(repo_id=ARGS["repo"], folder_path=ARGS["folder"])
emit({"ok": True})
'''


def upload(client, folder: Path, *, private=False, prefix="model") -> str:
    repo = f"admin/{unique(prefix)}"
    client.py(UPLOAD, args={"repo": repo, "folder": str(folder), "private": private})
    return repo


@pytest.fixture(scope="module")
def zoo(trove, tmp_path_factory):
    """The test models on the main server: name → (repo, config, weights, tokenizer)."""
    base = tmp_path_factory.mktemp("inference-zoo")
    client = make_client(trove, base / "client")
    rng = np.random.default_rng(18)
    zoo = {}

    btok = bert_tokenizer()
    cfg = bert_config(btok.get_vocab_size())
    w = bert_weights(cfg, rng)
    folder = write_model(base / "minilm", cfg, w, btok, extra=sentence_transformers_files(),
                         card="---\nlibrary_name: sentence-transformers\npipeline_tag: sentence-similarity\ntags: [feature-extraction, sentence-similarity]\n---\n# tiny\n")
    zoo["minilm"] = (upload(client, folder, prefix="minilm"), cfg, w, btok)

    cfg = bert_config(btok.get_vocab_size(), labels=["NEGATIVE", "POSITIVE", "NEUTRAL"])
    w = bert_weights(cfg, rng, prefix="bert.")
    folder = write_model(base / "clf", cfg, w, btok,
                         card="---\npipeline_tag: text-classification\n---\n# tiny classifier\n")
    zoo["clf"] = (upload(client, folder, prefix="clf"), cfg, w, btok)

    ltok = llama_tokenizer()
    cfg = llama_config(ltok.get_vocab_size())
    w = llama_weights(cfg, rng)
    tconf = {"bos_token": "<s>", "eos_token": "</s>", "chat_template": CHAT_TEMPLATE}
    folder = write_model(base / "llama", cfg, w, ltok, extra={"tokenizer_config.json": json.dumps(tconf)},
                         card="---\npipeline_tag: text-generation\n---\n# tiny llama\n")
    zoo["llama"] = (upload(client, folder, prefix="tiny-llama"), cfg, w, ltok)

    cfg = bert_config(btok.get_vocab_size(), labels=NER_LABELS)
    cfg["architectures"] = ["BertForTokenClassification"]
    w = bert_weights(cfg, rng, prefix="bert.")
    w["classifier.bias"][NER_LABELS.index("I-PER")] += 3.0  # so that some tokens continue a group
    folder = write_model(base / "ner", cfg, w, btok, card="---\npipeline_tag: token-classification\n---\n")
    zoo["ner"] = (upload(client, folder, prefix="ner"), cfg, w, btok)

    wtok = wordpiece_ner_tokenizer()
    cfg = bert_config(wtok.get_vocab_size(), labels=NER_LABELS)
    cfg["architectures"] = ["BertForTokenClassification"]
    w = bert_weights(cfg, rng, prefix="bert.")
    w["classifier.bias"][NER_LABELS.index("I-PER")] += 1.5
    folder = write_model(base / "ner-words", cfg, w, wtok, card="---\npipeline_tag: token-classification\n---\n",
                         extra={"tokenizer_config.json": json.dumps({"unk_token": "[UNK]"})})
    zoo["ner-words"] = (upload(client, folder, prefix="ner-words"), cfg, w, wtok)

    cfg = bert_config(btok.get_vocab_size())
    cfg["architectures"] = ["BertForMaskedLM"]
    w = bert_weights(cfg, rng, prefix="bert.")
    folder = write_model(base / "mlm", cfg, w, btok, card="---\npipeline_tag: fill-mask\n---\n",
                         extra={"tokenizer_config.json": json.dumps({"mask_token": "[MASK]"})})
    zoo["mlm"] = (upload(client, folder, prefix="mlm"), cfg, w, btok)

    for name, labels in (("distil", None), ("distil-clf", ["NEGATIVE", "POSITIVE"])):
        cfg = distilbert_config(btok.get_vocab_size(), labels=labels)
        w = distilbert_weights(cfg, rng)
        folder = write_model(base / name, cfg, w, btok, card="---\nlibrary_name: transformers\n---\n")
        zoo[name] = (upload(client, folder, prefix=name), cfg, w, btok)

    rtok = roberta_tokenizer()
    for name, labels in (("roberta", None), ("roberta-clf", ["NEGATIVE", "POSITIVE", "NEUTRAL"])):
        cfg = roberta_config(rtok.get_vocab_size(), labels=labels)
        w = roberta_weights(cfg, rng)
        folder = write_model(base / name, cfg, w, rtok, card="---\nlibrary_name: transformers\n---\n")
        zoo[name] = (upload(client, folder, prefix=name), cfg, w, rtok)

    # Masked-LM heads of DistilBERT and RoBERTa, decoders tied to the word embeddings (not saved).
    cfg = distilbert_config(btok.get_vocab_size())
    cfg["architectures"] = ["DistilBertForMaskedLM"]
    w = distilbert_weights(cfg, rng)
    h, v = cfg["dim"], cfg["vocab_size"]
    w |= {"vocab_transform.weight": (rng.standard_normal((h, h)) * 0.5).astype(np.float32),
          "vocab_transform.bias": (rng.standard_normal(h) * 0.1).astype(np.float32),
          "vocab_layer_norm.weight": (1 + rng.standard_normal(h) * 0.1).astype(np.float32),
          "vocab_layer_norm.bias": (rng.standard_normal(h) * 0.1).astype(np.float32),
          "vocab_projector.bias": (rng.standard_normal(v) * 0.5).astype(np.float32)}
    folder = write_model(base / "distil-mlm", cfg, w, btok, card="---\npipeline_tag: fill-mask\n---\n",
                         extra={"tokenizer_config.json": json.dumps({"mask_token": "[MASK]"})})
    zoo["distil-mlm"] = (upload(client, folder, prefix="distil-mlm"), cfg, w, btok)

    ptok = roberta_bpe_tokenizer()
    cfg = roberta_config(ptok.get_vocab_size())
    cfg["architectures"] = ["RobertaForMaskedLM"]
    w = roberta_weights(cfg, rng)
    h, v = cfg["hidden_size"], cfg["vocab_size"]
    w |= {"lm_head.dense.weight": (rng.standard_normal((h, h)) * 0.5).astype(np.float32),
          "lm_head.dense.bias": (rng.standard_normal(h) * 0.1).astype(np.float32),
          "lm_head.layer_norm.weight": (1 + rng.standard_normal(h) * 0.1).astype(np.float32),
          "lm_head.layer_norm.bias": (rng.standard_normal(h) * 0.1).astype(np.float32),
          "lm_head.bias": (rng.standard_normal(v) * 0.5).astype(np.float32)}
    rconf = {"mask_token": {"content": "<mask>", "lstrip": True, "rstrip": False, "special": True}}
    folder = write_model(base / "roberta-mlm", cfg, w, ptok, card="---\npipeline_tag: fill-mask\n---\n",
                         extra={"tokenizer_config.json": json.dumps(rconf)})
    zoo["roberta-mlm"] = (upload(client, folder, prefix="roberta-mlm"), cfg, w, ptok)
    # The same model without tokenizer_config.json: its mask token is the tokenizer's `<mask>`.
    folder = write_model(base / "roberta-mlm-bare", cfg, w, ptok, card="---\npipeline_tag: fill-mask\n---\n")
    zoo["roberta-mlm-bare"] = (upload(client, folder, prefix="roberta-mlm-bare"), cfg, w, ptok)

    gtok = llama_tokenizer()
    cfg = gpt2_config(gtok.get_vocab_size(), eos=gtok.token_to_id("</s>"))
    w = gpt2_weights(cfg, rng)
    folder = write_model(base / "gpt2", cfg, w, gtok, card="---\npipeline_tag: text-generation\n---\n")
    zoo["gpt2"] = (upload(client, folder, prefix="gpt2"), cfg, w, gtok)

    cfg = qwen2_config(ltok.get_vocab_size())
    w = qwen2_weights(cfg, rng)
    folder = write_model(base / "qwen2", cfg, w, ltok, extra={"tokenizer_config.json": json.dumps(tconf)},
                         card="---\npipeline_tag: text-generation\n---\n")
    zoo["qwen2"] = (upload(client, folder, prefix="qwen2"), cfg, w, ltok)

    mtok = metaspace_tokenizer()
    cfg = llama_config(mtok.get_vocab_size())
    cfg["eos_token_id"] = None  # generates its max_new_tokens: words whose spaces are checked
    w = llama_weights(cfg, rng)
    mconf = {"bos_token": "<s>", "chat_template": "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}"}
    folder = write_model(base / "llama-sp", cfg, w, mtok, extra={"tokenizer_config.json": json.dumps(mconf)},
                         card="---\npipeline_tag: text-generation\n---\n# tiny llama, sentencepiece-style\n")
    zoo["llama-sp"] = (upload(client, folder, prefix="llama-sp"), cfg, w, mtok)
    return zoo


def run(client, code: str, **args):
    return client.py(code, args=args).result


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


def test_feature_extraction_matches_the_reference(trove, client, zoo):
    repo, cfg, w, tok = zoo["minilm"]
    sentences = ["I love this movie", "the cat sleeps and the dog runs"]
    out = run(client, '''
        from huggingface_hub import InferenceClient
        c = InferenceClient(model=ARGS["url"], token=os.environ["HF_TOKEN"])
        emit({"one": c.feature_extraction(ARGS["s"][0]).tolist(),
              "sim": c.sentence_similarity(ARGS["s"][0], other_sentences=ARGS["s"])})
    ''', url=f"{trove.url}/models/{repo}", s=sentences)
    ref = [bert_forward(cfg, w, tok.encode(s).ids).mean(0) for s in sentences]
    np.testing.assert_allclose(np.array(out["one"]), ref[0], rtol=1e-3, atol=1e-4)
    cos = [float(ref[0] @ r / np.linalg.norm(ref[0]) / np.linalg.norm(r)) for r in ref]
    np.testing.assert_allclose(out["sim"], cos, rtol=1e-3, atol=1e-4)
    assert out["sim"][0] == pytest.approx(1.0, abs=1e-4)


def test_list_inputs_run_as_batches_and_match_the_reference(trove, client, zoo):
    """A list `inputs` runs as padded batches (by length, at most 16 inputs each): every
    answer is still the input's own — checked against numpy for embeddings (BERT pooled,
    RoBERTa token-level, whose positions start after the padding id) and classification,
    and against one-at-a-time requests for token classification."""
    words = "the cat sleeps and the dog runs in the rain while a bird sings on the roof".split()
    sentences = [" ".join(words[(i * 5) % 7:][:1 + (i * 7) % 17]) for i in range(40)]
    assert len({len(s.split()) for s in sentences}) > 10, "inputs of many lengths"
    auth = {"authorization": f"Bearer {trove.admin_token}"}

    def post(repo, body):
        r = httpx.post(f"{trove.url}/models/{repo}", json=body, headers=auth, timeout=120)
        assert r.status_code == 200, r.text
        return r.json()

    repo, cfg, w, tok = zoo["minilm"]
    out = run(client, '''
        from huggingface_hub import InferenceClient
        c = InferenceClient(model=ARGS["url"], token=os.environ["HF_TOKEN"])
        emit({"many": c.feature_extraction(ARGS["s"]).tolist(),
              "sim": c.sentence_similarity(ARGS["s"][3], other_sentences=ARGS["s"])})
    ''', url=f"{trove.url}/models/{repo}", s=sentences)
    ref = np.array([bert_forward(cfg, w, tok.encode(s).ids).mean(0) for s in sentences])
    assert np.array(out["many"]).shape == ref.shape
    np.testing.assert_allclose(np.array(out["many"]), ref, rtol=1e-3, atol=1e-4)
    cos = ref @ ref[3] / np.linalg.norm(ref, axis=1) / np.linalg.norm(ref[3])
    np.testing.assert_allclose(out["sim"], cos, rtol=1e-3, atol=1e-4)

    repo, cfg, w, tok = zoo["roberta"]
    texts = sentences[:5]
    many = post(repo, {"inputs": texts})
    for got, text in zip(many, texts, strict=True):
        ids = tok.encode(text).ids
        np.testing.assert_allclose(np.array(got), roberta_forward(cfg, w, ids), rtol=1e-3, atol=1e-4)

    repo, cfg, w, tok = zoo["clf"]
    many = post(repo, {"inputs": sentences})
    labels = ["NEGATIVE", "POSITIVE", "NEUTRAL"]
    for got, text in zip(many, sentences, strict=True):
        expected = sorted(zip(labels, classify_ref(cfg, w, tok.encode(text).ids)), key=lambda p: -p[1])
        assert [e["label"] for e in got] == [l for l, _ in expected], text
        np.testing.assert_allclose([e["score"] for e in got], [p for _, p in expected], rtol=1e-3, atol=1e-5)

    repo = zoo["ner"][0]
    params = {"aggregation_strategy": "none", "ignore_labels": []}
    many = post(repo, {"inputs": sentences[:12], "parameters": params})
    for got, text in zip(many, sentences[:12], strict=True):
        alone = post(repo, {"inputs": text, "parameters": params})
        assert [(e["entity"], e["word"], e["start"], e["end"]) for e in got] == \
            [(e["entity"], e["word"], e["start"], e["end"]) for e in alone], text
        np.testing.assert_allclose([e["score"] for e in got], [e["score"] for e in alone], atol=1e-4)


def test_text_classification_matches_the_reference(trove, client, zoo):
    repo, cfg, w, tok = zoo["clf"]
    text = "this film was really not good"
    out = run(client, '''
        from huggingface_hub import InferenceClient
        c = InferenceClient(model=ARGS["url"], token=os.environ["HF_TOKEN"])
        emit([{"label": e.label, "score": e.score} for e in c.text_classification(ARGS["t"])])
    ''', url=f"{trove.url}/models/{repo}", t=text)
    probs = classify_ref(cfg, w, tok.encode(text).ids)
    labels = ["NEGATIVE", "POSITIVE", "NEUTRAL"]
    expected = sorted(zip(labels, probs), key=lambda p: -p[1])
    assert [e["label"] for e in out] == [l for l, _ in expected]
    np.testing.assert_allclose([e["score"] for e in out], [p for _, p in expected], rtol=1e-3, atol=1e-5)


def test_greedy_generation_matches_the_reference_token_for_token(trove, client, zoo):
    repo, cfg, w, tok = zoo["llama"]
    prompt = "the cat runs and the dog"
    out = run(client, '''
        from huggingface_hub import InferenceClient
        c = InferenceClient(model=ARGS["url"], token=os.environ["HF_TOKEN"])
        r = c.text_generation(ARGS["p"], max_new_tokens=12, details=True)
        emit({"text": r.generated_text, "ids": [t.id for t in r.details.tokens],
              "finish": r.details.finish_reason, "seed": r.details.seed,
              "texts": [t.text for t in r.details.tokens],
              "logprobs": [t.logprob for t in r.details.tokens],
              "special": [t.special for t in r.details.tokens]})
    ''', url=f"{trove.url}/models/{repo}", p=prompt)
    prompt_ids = tok.encode(prompt).ids
    expected = greedy_ref(cfg, w, prompt_ids, 12, eos=2)
    assert out["ids"] == expected
    assert out["text"] == pipeline_text(tok, prompt_ids, expected)
    assert out["finish"] == ("length" if len(expected) == 12 else "eos_token")
    # TGI's details: each token's piece of the text, its log-probability under the model
    # (the reference's log-softmax at that step), no seed for a greedy generation.
    assert "".join(out["texts"]) == out["text"]
    assert out["seed"] is None
    assert out["special"] == [False] * len(expected)
    ids, want = list(prompt_ids), []
    for nxt in expected:
        logits = np.asarray(llama_logits(cfg, w, ids), dtype=np.float64)
        top = logits.max()
        want.append(logits[nxt] - top - np.log(np.exp(logits - top).sum()))
        ids.append(nxt)
    np.testing.assert_allclose(out["logprobs"], want, rtol=1e-3, atol=1e-4)


def test_chat_completion_streams_the_reference_tokens(trove, client, zoo):
    repo, cfg, w, tok = zoo["llama"]
    messages = [{"role": "system", "content": "you like cat"}, {"role": "user", "content": "i love the sun"}]
    out = run(client, '''
        from huggingface_hub import InferenceClient
        c = InferenceClient(base_url=ARGS["url"], token=os.environ["HF_TOKEN"])
        whole = c.chat_completion(ARGS["m"], max_tokens=10)
        pieces, finish = [], None
        for chunk in c.chat_completion(ARGS["m"], max_tokens=10, stream=True):
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        emit({"whole": whole.choices[0].message.content, "usage": whole.usage.completion_tokens,
              "pieces": pieces, "finish": finish})
    ''', url=f"{trove.url}/models/{repo}/v1", m=messages)
    ids = tok.encode(chat_prompt(messages), add_special_tokens=False).ids
    expected = greedy_ref(cfg, w, ids, 10, eos=2)
    assert out["whole"] == pipeline_text(tok, ids, expected)
    assert out["usage"] == len(expected)
    assert "".join(out["pieces"]) == out["whole"]
    assert len([p for p in out["pieces"] if p]) >= 2, "tokens arrive as separate events"
    assert out["finish"] in ("length", "stop")


def test_a_revision_named_in_the_clients_url(trove, client, zoo):
    """`?revision=` inside `model=` or `base_url=` reaches the hub (the client keeps a URL's
    query, appending `/v1/chat/completions` to its path): the commit named runs, a branch
    that does not exist is refused."""
    repo, cfg, w, tok = zoo["llama"]
    sha = httpx.get(f"{trove.url}/api/models/{repo}", headers={"authorization": f"Bearer {trove.admin_token}"},
                    timeout=30).json()["sha"]
    messages = [{"role": "user", "content": "i love the sun"}]
    out = run(client, '''
        from huggingface_hub import InferenceClient
        url, token = ARGS["url"], os.environ["HF_TOKEN"]
        chat = lambda base: InferenceClient(base_url=base, token=token).chat_completion(ARGS["m"], max_tokens=4)
        emit({"text": InferenceClient(model=url + "?revision=" + ARGS["sha"], token=token).text_generation(
                  "the cat", max_new_tokens=4),
              "chat": chat(url + "/v1?revision=" + ARGS["sha"]).choices[0].message.content,
              "chat_model": InferenceClient(model=url + "?revision=main", token=token).chat_completion(
                  ARGS["m"], max_tokens=4).choices[0].message.content,
              "missing": attempt(chat, url + "/v1?revision=no-such-branch")})
    ''', url=f"{trove.url}/models/{repo}", sha=sha, m=messages)
    prompt = tok.encode("the cat").ids
    assert out["text"] == pipeline_text(tok, prompt, greedy_ref(cfg, w, prompt, 4, eos=2))
    ids = tok.encode(chat_prompt(messages), add_special_tokens=False).ids
    assert out["chat"] == out["chat_model"] == pipeline_text(tok, ids, greedy_ref(cfg, w, ids, 4, eos=2))
    assert out["missing"]["ok"] is False and out["missing"]["status"] == 404, out["missing"]


def test_generated_text_keeps_the_space_a_metaspace_decoder_drops(trove, client, zoo):
    """Llama's sentencepiece convention: the generated tokens decoded alone lose the space
    before their first word; the pipeline's text (and each streamed delta) keeps it."""
    repo, cfg, w, tok = zoo["llama-sp"]
    prompt = "the cat runs"
    messages = [{"role": "user", "content": "i love the sun"}]
    out = run(client, '''
        from huggingface_hub import InferenceClient
        c = InferenceClient(model=ARGS["url"], token=os.environ["HF_TOKEN"])
        r = c.text_generation(ARGS["p"], max_new_tokens=6, details=True)
        full = c.text_generation(ARGS["p"], max_new_tokens=6, return_full_text=True)
        chat = InferenceClient(base_url=ARGS["url"] + "/v1", token=os.environ["HF_TOKEN"])
        pieces = [ch.choices[0].delta.content or "" for ch in chat.chat_completion(ARGS["m"], max_tokens=6, stream=True)]
        whole = chat.chat_completion(ARGS["m"], max_tokens=6).choices[0].message.content
        emit({"text": r.generated_text, "ids": [t.id for t in r.details.tokens], "full": full,
              "pieces": pieces, "whole": whole})
    ''', url=f"{trove.url}/models/{repo}", p=prompt, m=messages)
    prompt_ids = tok.encode(prompt).ids
    expected = greedy_ref(cfg, w, prompt_ids, 6, eos=None)
    assert out["ids"] == expected
    assert out["text"] == pipeline_text(tok, prompt_ids, expected)
    assert out["text"].startswith(" ") and out["text"] != tok.decode(expected), (out["text"], tok.decode(expected))
    assert out["full"] == prompt + out["text"]
    chat_ids = tok.encode("<s>" + messages[0]["content"], add_special_tokens=False).ids
    chat_expected = greedy_ref(cfg, w, chat_ids, 6, eos=None)
    assert out["whole"] == pipeline_text(tok, chat_ids, chat_expected)
    assert out["whole"].startswith(" "), out["whole"]
    assert "".join(out["pieces"]) == out["whole"]
    assert [p for p in out["pieces"] if p][0].startswith(" "), out["pieces"]


def test_raw_sse_events_end_with_done(trove, zoo):
    repo = zoo["llama"][0]
    with httpx.stream("POST", f"{trove.url}/models/{repo}/v1/chat/completions", timeout=120,
                      headers={"authorization": f"Bearer {trove.admin_token}"},
                      json={"model": "x", "messages": [{"role": "user", "content": "hi"}],
                            "max_tokens": 4, "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [l for l in r.iter_lines() if l]
    assert all(l.startswith("data: ") for l in lines), lines
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(l[6:]) for l in lines[:-1]]
    assert all(e["object"] == "chat.completion.chunk" for e in events)


def test_token_classification_matches_the_reference(trove, client, zoo):
    repo, cfg, w, tok = zoo["ner"]
    text = "the cat Sleeps and zebra runs with the dog at night"
    out = run(client, '''
        from huggingface_hub import InferenceClient
        c = InferenceClient(model=ARGS["url"], token=os.environ["HF_TOKEN"])
        def plain(items):
            return [{k: getattr(e, k) for k in ("entity", "entity_group", "score", "word", "start", "end")} for e in items]
        emit({"default": plain(c.token_classification(ARGS["t"])),
              "simple": plain(c.token_classification(ARGS["t"], aggregation_strategy="simple", ignore_labels=[])),
              "none": plain(c.token_classification(ARGS["t"], aggregation_strategy="none", ignore_labels=[]))})
    ''', url=f"{trove.url}/models/{repo}", t=text)
    enc = tok.encode(text)
    probs = softmax(token_logits_ref(cfg, w, enc.ids))
    tokens = [{"entity": NER_LABELS[int(p.argmax())], "score": float(p.max()), "word": tok.id_to_token(i),
               "start": o[0], "end": o[1], "id": i}
              for i, o, p, special in zip(enc.ids, enc.offsets, probs, enc.special_tokens_mask) if not special]
    assert [e["entity"] for e in out["none"]] == [t["entity"] for t in tokens]
    assert [(e["word"], e["start"], e["end"]) for e in out["none"]] == [(t["word"], t["start"], t["end"]) for t in tokens]
    assert "[UNK]" in [e["word"] for e in out["none"]]
    assert text[out["none"][2]["start"]:out["none"][2]["end"]] == "Sleeps"
    np.testing.assert_allclose([e["score"] for e in out["none"]], [t["score"] for t in tokens], rtol=1e-3, atol=1e-5)
    groups = [{"entity_group": g[0]["entity"].split("-", 1)[-1], "score": float(np.mean([t["score"] for t in g])),
               "word": tok.decode([t["id"] for t in g], skip_special_tokens=False), "start": g[0]["start"], "end": g[-1]["end"]}
              for g in group_entities(tokens)]
    assert len(groups) < len(tokens), "some tokens were grouped"
    for got, want in zip(out["simple"], groups, strict=True):
        assert (got["entity_group"], got["word"], got["start"], got["end"]) == \
            (want["entity_group"], want["word"], want["start"], want["end"])
        assert got["score"] == pytest.approx(want["score"], rel=1e-3, abs=1e-5)
    assert [e["entity_group"] for e in out["default"]] == [g["entity_group"] for g in groups if g["entity_group"] != "O"]


def word_aggregation_ref(tok, text, probs, enc, strategy, unk_id):
    """The pipeline's `first`/`average`/`max`, written here from its rules: a token whose
    vocabulary string is not as long as its text continues the word before (the unknown
    token, written as its text, never does); a word takes its first token's best label, the
    best of its averaged probabilities, or the best label of its most confident token; then
    words are grouped as `simple` groups tokens."""
    pre = []
    for i, (idx, (start, end), special) in enumerate(zip(enc.ids, enc.offsets, enc.special_tokens_mask)):
        if special:
            continue
        word, ref = tok.id_to_token(idx), text[start:end]
        subword = len(word) != len(ref)
        if idx == unk_id:
            word, subword = ref, False
        pre.append({"word": word, "scores": probs[i], "start": start, "end": end, "subword": subword})
    words, current = [], []
    for p in pre:
        if current and not p["subword"]:
            words.append(current)
            current = []
        current.append(p)
    if current:
        words.append(current)
    entities = []
    for word in words:
        if strategy == "first":
            scores = word[0]["scores"]
        elif strategy == "max":
            scores = max(word, key=lambda p: p["scores"].max())["scores"]
        else:
            scores = np.mean([p["scores"] for p in word], axis=0)
        best = int(scores.argmax())
        entities.append({"entity": NER_LABELS[best], "score": float(scores[best]),
                         "word": tok.decoder.decode([p["word"] for p in word]),
                         "start": word[0]["start"], "end": word[-1]["end"], "tokens": len(word)})
    groups = [{"entity_group": g[0]["entity"].split("-", 1)[-1], "score": float(np.mean([e["score"] for e in g])),
               "word": tok.decoder.decode([e["word"] for e in g]), "start": g[0]["start"], "end": g[-1]["end"]}
              for g in group_entities(entities)]
    return entities, groups


def test_token_classification_first_average_max_group_words(trove, client, zoo):
    repo, cfg, w, tok = zoo["ner-words"]
    text = "Adam lives in Paris, zebras like Berlin and the sun xyzzy"
    out = run(client, '''
        from huggingface_hub import InferenceClient
        c = InferenceClient(model=ARGS["url"], token=os.environ["HF_TOKEN"])
        def plain(items):
            return [{k: getattr(e, k) for k in ("entity_group", "score", "word", "start", "end")} for e in items]
        emit({s: plain(c.token_classification(ARGS["t"], aggregation_strategy=s, ignore_labels=[]))
              for s in ("first", "average", "max")}
             | {"default-ignore": plain(c.token_classification(ARGS["t"], aggregation_strategy="first"))})
    ''', url=f"{trove.url}/models/{repo}", t=text)
    enc = tok.encode(text)
    assert [tok.id_to_token(i) for i in enc.ids[1:5]] == ["ada", "##m", "lives", "in"]
    probs = softmax(token_logits_ref(cfg, w, enc.ids))
    answers = {}
    for strategy in ("first", "average", "max"):
        words, groups = word_aggregation_ref(tok, text, probs, enc, strategy, tok.token_to_id("[UNK]"))
        assert max(wd["tokens"] for wd in words) == 3 and "zebras" in [wd["word"] for wd in words]
        assert "xyzzy" in [wd["word"] for wd in words], "the unknown token is written as its text"
        got = out[strategy]
        assert [(g["entity_group"], g["word"], g["start"], g["end"]) for g in got] == \
            [(g["entity_group"], g["word"], g["start"], g["end"]) for g in groups], strategy
        np.testing.assert_allclose([g["score"] for g in got], [g["score"] for g in groups], rtol=1e-3, atol=1e-5,
                                   err_msg=strategy)
        answers[strategy] = [(g["entity_group"], g["start"], round(g["score"], 4)) for g in got]
    # The three strategies do not answer alike on these weights (else the test could not tell them apart).
    assert len({tuple(a) for a in answers.values()}) == 3, answers
    assert out["default-ignore"] == [g for g in out["first"] if g["entity_group"] != "O"]


def test_fill_mask_matches_the_reference(trove, client, zoo):
    repo, cfg, w, tok = zoo["mlm"]
    text = "i love this [MASK] very much"
    out = run(client, '''
        from huggingface_hub import InferenceClient
        c = InferenceClient(model=ARGS["url"], token=os.environ["HF_TOKEN"])
        plain = lambda items: [{"score": e.score, "token": e.token, "token_str": e.token_str, "sequence": e.sequence} for e in items]
        emit({"top": plain(c.fill_mask(ARGS["t"], top_k=3)), "default": plain(c.fill_mask(ARGS["t"])),
              "targets": plain(c.fill_mask(ARGS["t"], targets=["movie", "cat", "zebra"]))})
    ''', url=f"{trove.url}/models/{repo}", t=text)
    ids = tok.encode(text).ids
    mask = ids.index(tok.token_to_id("[MASK]"))
    probs = masked_lm_ref(cfg, w, ids, mask)

    def answer(token):
        filled = list(ids)
        filled[mask] = token
        return {"token": token, "token_str": tok.decode([token], skip_special_tokens=False),
                "sequence": tok.decode(filled, skip_special_tokens=True), "score": float(probs[token])}

    best = [answer(int(i)) for i in np.argsort(-probs)[:5]]
    assert len(out["default"]) == 5
    for got, want in zip(out["top"], best[:3], strict=True):
        assert (got["token"], got["token_str"], got["sequence"]) == (want["token"], want["token_str"], want["sequence"])
        assert got["score"] == pytest.approx(want["score"], rel=1e-3, abs=1e-6)
    assert [e["token"] for e in out["default"]] == [e["token"] for e in best]
    # Targets: vocabulary words as they are, an unknown word through its first token ([UNK]).
    target_ids = sorted({tok.token_to_id("movie"), tok.token_to_id("cat"), tok.token_to_id("[UNK]")}, key=lambda i: -probs[i])
    assert [e["token"] for e in out["targets"]] == target_ids
    np.testing.assert_allclose([e["score"] for e in out["targets"]], [probs[i] for i in target_ids], rtol=1e-3, atol=1e-6)
    # Two masks: one list per mask, sequences keep the other mask.
    r = httpx.post(f"{trove.url}/models/{repo}", json={"inputs": "[MASK] love this [MASK]", "parameters": {"top_k": 2}},
                   headers={"authorization": f"Bearer {trove.admin_token}"}, timeout=60)
    assert r.status_code == 200, r.text
    two = r.json()
    assert len(two) == 2 and all(len(x) == 2 for x in two)
    assert all("[MASK]" in e["sequence"] for x in two for e in x)


def test_distilbert_and_roberta_fill_masks_as_the_reference(trove, client, zoo):
    cases = (("distil-mlm", distilbert_masked_lm_ref, "i love this [MASK] very much", "[MASK]"),
             ("roberta-mlm", roberta_masked_lm_ref, "i love this <mask> very much", "<mask>"))
    for name, reference, text, mask_token in cases:
        repo, cfg, w, tok = zoo[name]
        out = run(client, '''
            from huggingface_hub import InferenceClient
            c = InferenceClient(model=ARGS["url"], token=os.environ["HF_TOKEN"])
            plain = lambda items: [{"score": e.score, "token": e.token, "token_str": e.token_str, "sequence": e.sequence}
                                   for e in items]
            emit({"top": plain(c.fill_mask(ARGS["t"], top_k=4)),
                  "targets": plain(c.fill_mask(ARGS["t"], targets=["film", "cat", "zebra"]))})
        ''', url=f"{trove.url}/models/{repo}", t=text)
        ids = tok.encode(text).ids
        mask = ids.index(tok.token_to_id(mask_token))
        probs = reference(cfg, w, ids, mask)

        def answer(token):
            filled = list(ids)
            filled[mask] = token
            return {"token": token, "token_str": tok.decode([token], skip_special_tokens=False),
                    "sequence": tok.decode(filled, skip_special_tokens=True), "score": float(probs[token])}

        best = [answer(int(i)) for i in np.argsort(-probs)[:4]]
        for got, want in zip(out["top"], best, strict=True):
            assert (got["token"], got["token_str"], got["sequence"]) == \
                (want["token"], want["token_str"], want["sequence"]), name
            assert got["score"] == pytest.approx(want["score"], rel=1e-3, abs=1e-6), name
        # A target is its vocabulary token, else the first token it encodes to (the pipeline's rule).
        targets = {tok.token_to_id(t) if tok.token_to_id(t) is not None else tok.encode(t, add_special_tokens=False).ids[0]
                   for t in ("film", "cat", "zebra")}
        target_ids = sorted(targets, key=lambda i: -probs[i])
        assert [e["token"] for e in out["targets"]] == target_ids, name
        np.testing.assert_allclose([e["score"] for e in out["targets"]], [probs[i] for i in target_ids],
                                   rtol=1e-3, atol=1e-6, err_msg=name)


def test_distilbert_and_roberta_match_the_reference(trove, client, zoo):
    text = "the dog was not very good"
    for name, forward, classify in (("distil", distilbert_forward, distilbert_classify_ref),
                                    ("roberta", roberta_forward, roberta_classify_ref)):
        repo, cfg, w, tok = zoo[name]
        clf_repo, clf_cfg, clf_w, _ = zoo[name + "-clf"]
        out = run(client, '''
            from huggingface_hub import InferenceClient
            c = InferenceClient(token=os.environ["HF_TOKEN"])
            emit({"tokens": c.feature_extraction(ARGS["t"], model=ARGS["url"]).tolist(),
                  "labels": [{"label": e.label, "score": e.score}
                             for e in c.text_classification(ARGS["t"], model=ARGS["clf"])]})
        ''', url=f"{trove.url}/models/{repo}", clf=f"{trove.url}/models/{clf_repo}", t=text)
        ids = tok.encode(text).ids
        np.testing.assert_allclose(np.array(out["tokens"]).reshape(len(ids), -1), forward(cfg, w, ids),
                                   rtol=1e-3, atol=1e-4, err_msg=name)
        probs = classify(clf_cfg, clf_w, ids)
        labels = [clf_cfg["id2label"][str(i)] for i in range(len(probs))]
        expected = sorted(zip(labels, probs), key=lambda p: -p[1])
        assert [e["label"] for e in out["labels"]] == [l for l, _ in expected], name
        np.testing.assert_allclose([e["score"] for e in out["labels"]], [p for _, p in expected], rtol=1e-3, atol=1e-5)


def test_gpt2_and_qwen2_generate_the_reference_tokens(trove, client, zoo):
    prompt = "the cat runs and the dog"
    for name, logits in (("gpt2", gpt2_logits), ("qwen2", None)):
        repo, cfg, w, tok = zoo[name]
        out = run(client, '''
            from huggingface_hub import InferenceClient
            c = InferenceClient(model=ARGS["url"], token=os.environ["HF_TOKEN"])
            r = c.text_generation(ARGS["p"], max_new_tokens=10, details=True)
            emit({"text": r.generated_text, "ids": [t.id for t in r.details.tokens]})
        ''', url=f"{trove.url}/models/{repo}", p=prompt)
        kwargs = {"logits": logits} if logits else {}
        prompt_ids = tok.encode(prompt).ids
        expected = greedy_ref(cfg, w, prompt_ids, 10, eos=cfg["eos_token_id"], **kwargs)
        assert out["ids"] == expected, name
        assert out["text"] == pipeline_text(tok, prompt_ids, expected), name
    repo, cfg, w, tok = zoo["qwen2"]
    messages = [{"role": "user", "content": "i love the sun"}]
    out = run(client, '''
        from huggingface_hub import InferenceClient
        c = InferenceClient(base_url=ARGS["url"], token=os.environ["HF_TOKEN"])
        emit("".join(ch.choices[0].delta.content or "" for ch in c.chat_completion(ARGS["m"], max_tokens=8, stream=True)))
    ''', url=f"{trove.url}/models/{repo}/v1", m=messages)
    ids = tok.encode(chat_prompt(messages), add_special_tokens=False).ids
    assert out == pipeline_text(tok, ids, greedy_ref(cfg, w, ids, 8, eos=2))


def test_token_classification_and_fill_mask_refuse_bad_parameters(trove, zoo):
    auth = {"authorization": f"Bearer {trove.admin_token}"}
    ner, mlm = zoo["ner"][0], zoo["mlm"][0]
    cases = [
        (ner, {"inputs": "a cat", "parameters": {"aggregation_strategy": 3}}, "aggregation_strategy"),
        (ner, {"inputs": "a cat", "parameters": {"ignore_labels": "O"}}, "ignore_labels"),
        (ner, {"inputs": "a cat", "parameters": {"stride": -1}}, "stride"),
        (ner, {"inputs": {"text": "a cat"}}, "inputs"),
        (mlm, {"inputs": "no mask here"}, "No mask_token ([MASK]) found on the input"),
        (mlm, {"inputs": "a [MASK]", "parameters": {"top_k": 0}}, "top_k"),
        (mlm, {"inputs": "a [MASK]", "parameters": {"top_k": "many"}}, "top_k"),
        (mlm, {"inputs": "a [MASK]", "parameters": {"targets": []}}, "targets"),
        (mlm, {"inputs": "a [MASK]", "parameters": {"targets": [1, 2]}}, "targets"),
        (mlm, {"inputs": "a [MASK]", "parameters": {"targets": [""]}}, "At least one target"),
        (mlm, {"inputs": ["a [MASK]"]}, "inputs"),
        (mlm, {"inputs": "[MASK] " * 100}, "tokens"),
    ]
    for repo, body, message in cases:
        r = httpx.post(f"{trove.url}/models/{repo}", json=body, headers=auth, timeout=60)
        assert r.status_code == 422, (body, r.status_code, r.text)
        assert message in r.headers["x-error-message"], (body, r.headers["x-error-message"])
    # A strategy the pipeline does not know: its refusal, a 400 in the Hub's shape.
    r = httpx.post(f"{trove.url}/models/{ner}", json={"inputs": "a cat", "parameters": {"aggregation_strategy": "mean"}},
                   headers=auth, timeout=60)
    assert r.status_code == 400 and "'mean' is not a valid aggregation_strategy" in r.json()["error"], r.text
    # A task the model's head does not do.
    r = httpx.post(f"{trove.url}/models/{ner}/pipeline/fill-mask", json={"inputs": "a [MASK]"}, headers=auth, timeout=60)
    assert r.status_code == 400 and "doesn't support task 'fill-mask'" in r.json()["error"]


def test_the_widget_shows_what_the_api_answers(trove, zoo, chromium):
    """A model page's widget, driven in Chromium, shows the API's answer for the same input."""
    auth = {"authorization": f"Bearer {trove.admin_token}"}
    cases = [
        ("clf", "this film was really not good", {},
         lambda a: "\n".join(f"{e['label']}  {e['score']:.4f}" for e in a[0])),
        ("llama", "the cat runs", {"max_new_tokens": 40},
         lambda a: "the cat runs" + a[0]["generated_text"]),
        ("ner", "the cat Sleeps and the dog runs", {},
         lambda a: "\n".join(f"{e['entity_group']}  {e['word']}  {e['score']:.4f}" for e in a) or "(no entities)"),
        ("mlm", "i love this [MASK]", {},
         lambda a: "\n".join(f"{e['score']:.4f}  {e['sequence']}" for e in a)),
    ]
    for name, text, parameters, shown_as in cases:
        repo = zoo[name][0]
        page = new_page(chromium, trove.url)
        page.goto(f"/{repo}")
        page.fill("section.widget textarea[name=inputs]", text)
        page.click("section.widget button[type=submit]")
        page.wait_for_function("() => { const t = document.querySelector('section.widget .infer-output').textContent;"
                               " return t && !t.startsWith('Running'); }")
        shown = page.text_content("section.widget .infer-output")
        shot(page, f"inference-widget-{name}")
        page.context.close()
        body = {"inputs": text, **({"parameters": parameters} if parameters else {})}
        api = httpx.post(f"{trove.url}/models/{repo}", json=body, headers=auth, timeout=120)
        assert api.status_code == 200, api.text
        assert shown == shown_as(api.json()), (name, shown)


def test_the_fill_mask_widget_writes_the_models_own_mask_token(trove, zoo, chromium):
    """The fill-mask widget's sample and help use the model's mask token (RoBERTa's `<mask>`
    from tokenizer_config.json or, without it, from the tokenizer; BERT's `[MASK]`), so the
    sample as shown answers; an input without it is refused naming it."""
    auth = {"authorization": f"Bearer {trove.admin_token}"}
    for name, mask in (("roberta-mlm", "<mask>"), ("roberta-mlm-bare", "<mask>"), ("mlm", "[MASK]")):
        repo = zoo[name][0]
        page = new_page(chromium, trove.url)
        page.goto(f"/{repo}")
        sample = page.input_value("section.widget textarea[name=inputs]")
        assert sample == f"Paris is the {mask} of France.", (name, sample)
        assert page.get_attribute("section.widget textarea[name=inputs]", "placeholder") == sample
        assert f"Write {mask} where" in page.text_content("section.widget .infer-help"), name
        page.click("section.widget button[type=submit]")  # the sample as it stands
        page.wait_for_function("() => { const t = document.querySelector('section.widget .infer-output').textContent;"
                               " return t && !t.startsWith('Running'); }")
        shown = page.text_content("section.widget .infer-output")
        page.context.close()
        api = httpx.post(f"{trove.url}/models/{repo}", json={"inputs": sample}, headers=auth, timeout=120)
        assert api.status_code == 200, (name, api.text)
        assert shown == "\n".join(f"{e['score']:.4f}  {e['sequence']}" for e in api.json()), (name, shown)
        # The other model family's token is no mask to this one: the refusal names the right one.
        other = "[MASK]" if mask == "<mask>" else "<mask>"
        r = httpx.post(f"{trove.url}/models/{repo}", json={"inputs": f"Paris is the {other} of France."},
                       headers=auth, timeout=60)
        assert r.status_code == 422 and f"No mask_token ({mask}) found on the input" in r.json()["error"], r.text


def test_model_info_says_warm_once_loaded(trove, client, zoo):
    repo = zoo["llama"][0]
    out = run(client, '''
        emit(api.model_info(ARGS["repo"], expand=["inference"]).inference)
    ''', repo=repo)
    assert out == "warm"  # the generation tests above loaded it
    fresh = zoo["clf"][0]
    assert httpx.get(f"{trove.url}/api/models/{fresh}?expand=inference",
                     headers={"authorization": f"Bearer {trove.admin_token}"}).json()["inference"] in ("warm", "cold")


def test_a_listing_says_inference_as_model_info_does(trove, client, zoo, tmp_path):
    """`list_models(expand=["inference"])` answers, model by model, what
    `model_info(expand=["inference"])` answers: `warm` for a loaded model, `cold` for one the
    hub would run, and nothing (as the Hub leaves it out) for one it would not — `inference:
    false` in the card, the repository's setting, a task it does not run or that the model's
    head does not do."""
    tag = unique("listed")
    tok = bert_tokenizer()
    cfg = bert_config(tok.get_vocab_size())
    w = bert_weights(cfg, np.random.default_rng(31))
    cards = {"cold": "pipeline_tag: feature-extraction", "untagged": "library_name: transformers",
             "off": "inference: false\npipeline_tag: feature-extraction", "setting": "pipeline_tag: feature-extraction",
             "translation": "pipeline_tag: translation", "wrong-head": "pipeline_tag: text-generation"}
    repos = {}
    for name, card in cards.items():
        folder = write_model(tmp_path / name, cfg, w, tok, card=f"---\n{card}\n---\n")
        repos[name] = upload(client, folder, prefix=f"{tag}-{name}")
    auth = {"authorization": f"Bearer {trove.admin_token}"}
    r = httpx.put(f"{trove.url}/api/models/{repos['setting']}/settings", json={"inferenceDisabled": True},
                  headers=auth, timeout=60)
    assert r.status_code == 200, r.text
    warm = zoo["llama"][0]  # loaded by the generation tests above
    r = httpx.post(f"{trove.url}/models/{warm}", json={"inputs": "the cat", "parameters": {"max_new_tokens": 1}},
                   headers=auth, timeout=120)
    assert r.status_code == 200, r.text
    out = run(client, '''
        listed = {m.id: m.inference for q in ARGS["searches"] for m in api.list_models(search=q, expand=["inference"])}
        emit({"listed": listed, "info": {i: api.model_info(i, expand=["inference"]).inference for i in listed}})
    ''', searches=[tag, warm.split("/")[1]])
    want = {repos["cold"]: "cold", repos["untagged"]: "cold", repos["off"]: None, repos["setting"]: None,
            repos["translation"]: None, repos["wrong-head"]: None, warm: "warm"}
    assert out["info"] == want, out
    assert out["listed"] == want, out
    # The listing's value is live: running a cold model makes it warm in the next listing.
    r = httpx.post(f"{trove.url}/models/{repos['cold']}", json={"inputs": "a cat"}, headers=auth, timeout=120)
    assert r.status_code == 200, r.text
    again = httpx.get(f"{trove.url}/api/models", params={"search": tag, "expand": "inference"}, headers=auth).json()
    assert {m["id"]: m.get("inference") for m in again}[repos["cold"]] == "warm", again
    # `list_models(inference="warm")` lists the models warm here, with the other filters
    # applied, and each says so in its own model info.
    out = run(client, '''
        tagged = [m.id for m in api.list_models(search=ARGS["tag"], inference="warm")]
        every = [m.id for m in api.list_models(inference="warm", limit=500)]
        emit({"tagged": tagged, "every": every,
              "info": {i: api.model_info(i, expand=["inference"]).inference for i in every}})
    ''', tag=tag)
    assert out["tagged"] == [repos["cold"]], out
    assert {repos["cold"], warm} <= set(out["every"]), out
    assert set(out["info"].values()) == {"warm"}, out
    # Loaded is not enough: once the repository's setting turns inference off, it is not listed.
    r = httpx.put(f"{trove.url}/api/models/{repos['cold']}/settings", json={"inferenceDisabled": True},
                  headers=auth, timeout=60)
    assert r.status_code == 200, r.text
    after = httpx.get(f"{trove.url}/api/models", params={"search": tag, "inference": "warm"}, headers=auth)
    assert after.status_code == 200 and after.json() == [], after.text
    # Datasets have no inference: the filter matches nothing there.
    none = httpx.get(f"{trove.url}/api/datasets", params={"inference": "warm"}, headers=auth)
    assert none.status_code == 200 and none.json() == [], none.text


def test_private_model_is_not_found_for_outsiders(trove, client, bob, tmp_path):
    tok = bert_tokenizer()
    cfg = bert_config(tok.get_vocab_size())
    folder = write_model(tmp_path / "private", cfg, bert_weights(cfg, np.random.default_rng(1)), tok,
                         extra=sentence_transformers_files(), card="---\npipeline_tag: feature-extraction\n---\n")
    repo = upload(client, folder, private=True, prefix="private")
    url = f"{trove.url}/models/{repo}"
    owner = httpx.post(url, json={"inputs": "a cat"}, headers={"authorization": f"Bearer {trove.admin_token}"}, timeout=120)
    assert owner.status_code == 200, owner.text
    outsider = httpx.post(url, json={"inputs": "a cat"}, headers={"authorization": f"Bearer {bob.token}"}, timeout=60)
    assert outsider.status_code == 404
    assert outsider.headers["x-error-code"] == "RepoNotFound"
    anonymous = httpx.post(url, json={"inputs": "a cat"}, timeout=60)
    assert anonymous.status_code == 401


def assert_refused(r: httpx.Response, status: int, code: str, says: str | None = None) -> None:
    """An error as the Hub sends it: the status, `X-Error-Code`, `X-Error-Message` and the same
    message as the JSON body's `error`."""
    assert r.status_code == status, (status, r.status_code, r.text)
    assert r.headers.get("x-error-code") == code, (code, r.headers.get("x-error-code"), r.text)
    body = r.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert r.headers.get("x-error-message") == body["error"], (r.headers.get("x-error-message"), body)
    if says is not None:
        assert says in body["error"], (says, body["error"])


def test_refusals(trove, client, zoo, tmp_path):
    auth = {"authorization": f"Bearer {trove.admin_token}"}
    llama, minilm, ner = zoo["llama"][0], zoo["minilm"][0], zoo["ner"][0]

    def post(path, **kwargs):
        return httpx.post(f"{trove.url}/models/{path}", headers={**auth, **kwargs.pop("headers", {})},
                          timeout=60, **kwargs)

    # A task the model does not do, and one this hub does not run: 400 with the message.
    assert_refused(post(f"{llama}/pipeline/feature-extraction", json={"inputs": "x"}), 400, "UnsupportedTask",
                   "doesn't support task")
    assert_refused(post(f"{minilm}/pipeline/image-segmentation", json={"inputs": "x"}), 400, "UnsupportedTask",
                   "not supported")
    assert_refused(post(f"{minilm}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}),
                   400, "UnsupportedTask")
    # Bodies that are not JSON, on each route: 400 InvalidJson.
    for path in (llama, f"{llama}/pipeline/text-generation", f"{llama}/v1/chat/completions"):
        assert_refused(post(path, content=b"not json"), 400, "InvalidJson", "Invalid JSON body")
        assert_refused(post(path, content=b'{"inputs": "a",'), 400, "InvalidJson")
    # Bad inputs and parameters: 422 InvalidInput, nothing run.
    for body, says in (({}, "Missing `inputs`"), ({"inputs": 5}, "inputs"), ({"inputs": []}, "between 1 and"),
                       ({"inputs": ["a"] * 1000}, "between 1 and"), ({"inputs": "a", "normalize": "yes"}, "normalize")):
        assert_refused(post(minilm, json=body), 422, "InvalidInput", says)
    assert_refused(post(minilm, json={"inputs": "cat " * 200}), 422, "InvalidInput", "tokens")
    for parameters, says in (({"max_new_tokens": 10**6}, "max_new_tokens"), ({"max_new_tokens": "many"}, "max_tokens"),
                             ({"temperature": -1}, "temperature"), ({"top_p": 2}, "top_p"), ({"stop": 3}, "stop"),
                             ({"seed": -1}, "seed")):
        assert_refused(post(llama, json={"inputs": "a", "parameters": parameters}), 422, "InvalidInput", says)
    assert_refused(post(llama, json={"inputs": ["a", "b"]}), 422, "InvalidInput", "inputs")
    for body, says in (({"messages": []}, "messages"), ({"messages": "hi"}, "Invalid chat request"),
                       ({"messages": [{"content": "hi"}]}, "role"), ({"messages": [{"role": "user", "content": 5}]}, "content"),
                       ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": -3}, "max_tokens")):
        assert_refused(post(f"{llama}/v1/chat/completions", json=body), 422, "InvalidInput", says)
    assert_refused(post(ner, json={"inputs": {"text": "a cat"}}), 422, "InvalidInput", "inputs")
    assert_refused(post(minilm, json={"inputs": "a cat", "options": {"wait_for_model": "no"}}), 422, "InvalidInput",
                   "wait_for_model")
    # Request switches this API does not take in that form: 400 InvalidRequest.
    assert_refused(post(minilm, json={"inputs": "a cat"}, headers={"x-wait-for-model": "maybe"}), 400, "InvalidRequest",
                   "x-wait-for-model")
    assert_refused(post(ner, json={"inputs": "a cat", "parameters": {"aggregation_strategy": "mean"}}), 400,
                   "InvalidRequest", "'mean' is not a valid aggregation_strategy")
    assert_refused(post(llama, json={"inputs": "a", "stream": True}), 400, "InvalidRequest", "Streaming")
    assert_refused(post(f"{llama}?revision=a%00b", json={"inputs": "a"}), 400, "InvalidRequest")
    # A repository that is not there, as downloads say it.
    assert_refused(post(f"admin/{unique('missing')}", json={"inputs": "x"}), 404, "RepoNotFound")
    # `inference: false` in the card turns it off.
    tok = bert_tokenizer()
    cfg = bert_config(tok.get_vocab_size())
    folder = write_model(tmp_path / "off", cfg, bert_weights(cfg, np.random.default_rng(2)), tok,
                         card="---\ninference: false\npipeline_tag: feature-extraction\n---\n")
    repo = upload(client, folder, prefix="off")
    assert_refused(post(repo, json={"inputs": "x"}), 400, "InferenceDisabled", "inference turned off")


def test_a_model_that_fails_to_load_answers_why_until_a_push_fixes_it(trove, client, tmp_path):
    """A model whose weights do not match its config.json: every request — waiting for the
    load or not — gets the load's error (not "currently loading" forever, not a hang); a
    push that fixes config.json is a new commit, whose model loads."""
    tok = llama_tokenizer()
    cfg = llama_config(tok.get_vocab_size())
    weights = llama_weights(cfg, np.random.default_rng(11))
    broken = dict(cfg, intermediate_size=cfg["intermediate_size"] * 2)  # the weights are half as wide
    folder = write_model(tmp_path / "broken", broken, weights, tok, card="---\npipeline_tag: text-generation\n---\n")
    auth = {"authorization": f"Bearer {trove.admin_token}"}
    body = {"inputs": "the cat", "parameters": {"max_new_tokens": 2}}
    waiting, not_waiting = {**auth, "x-wait-for-model": "true"}, {**auth, "x-wait-for-model": "false"}

    # Asked by a request that waits first: the load's error, then the same at once without waiting.
    first = upload(client, folder, prefix="broken")
    url = f"{trove.url}/models/{first}"
    r = httpx.post(url, json=body, headers=waiting, timeout=60)
    assert_refused(r, 400, "ModelLoadFailed", f"Model {first} cannot be loaded")
    assert "mlp" in r.json()["error"], r.text  # names the tensor that does not fit
    for headers in (not_waiting, waiting, not_waiting):
        assert_refused(httpx.post(url, json=body, headers=headers, timeout=60), 400, "ModelLoadFailed",
                       f"Model {first} cannot be loaded")
    out = run(client, '''
        from huggingface_hub import InferenceClient
        emit(attempt(InferenceClient(model=ARGS["url"], token=os.environ["HF_TOKEN"]).text_generation, "the cat"))
    ''', url=url)
    assert out["ok"] is False and out["status"] == 400 and "cannot be loaded" in out["msg"], out

    # Asked by a request that does not wait first: "loading" while the load runs, then its error.
    second = upload(client, folder, prefix="broken")
    url2 = f"{trove.url}/models/{second}"
    answers = []
    deadline = time.monotonic() + 60
    for _ in range(600):
        r = httpx.post(url2, json=body, headers=not_waiting, timeout=60)
        answers.append(r.status_code)
        if r.status_code != 503 or time.monotonic() > deadline:
            break
        assert r.headers["x-error-code"] == "ModelLoading"
        time.sleep(0.05)
    assert_refused(r, 400, "ModelLoadFailed", f"Model {second} cannot be loaded")
    assert set(answers) <= {503, 400}, answers
    assert_refused(httpx.post(url2, json=body, headers=waiting, timeout=60), 400, "ModelLoadFailed")

    # A push that fixes config.json: the new commit's model loads and runs.
    run(client, '''
        api.upload_file(path_or_fileobj=ARGS["config"].encode(), path_in_repo="config.json", repo_id=ARGS["repo"])
        emit(True)
    ''', config=json.dumps(cfg), repo=first)
    r = httpx.post(url, json=body, headers=waiting, timeout=120)
    assert r.status_code == 200, r.text
    prompt_ids = tok.encode("the cat").ids
    assert r.json()[0]["generated_text"] == pipeline_text(tok, prompt_ids, greedy_ref(cfg, weights, prompt_ids, 2, eos=2))


def test_a_cold_model_answers_loading_when_the_request_does_not_wait(trove, client, tmp_path):
    tok = bert_tokenizer()
    cfg = bert_config(tok.get_vocab_size())
    folder = write_model(tmp_path / "cold", cfg, bert_weights(cfg, np.random.default_rng(5)), tok,
                         extra=sentence_transformers_files(), card="---\npipeline_tag: feature-extraction\n---\n")
    repo = upload(client, folder, prefix="cold")
    url, auth = f"{trove.url}/models/{repo}", {"authorization": f"Bearer {trove.admin_token}"}
    # The real client, asked not to wait: it raises the 503 (this client version does not retry).
    out = run(client, '''
        from huggingface_hub import InferenceClient
        c = InferenceClient(model=ARGS["url"], token=os.environ["HF_TOKEN"], headers={"x-wait-for-model": "false"})
        emit(attempt(c.feature_extraction, "a cat"))
    ''', url=url)
    assert out["ok"] is False and out["status"] == 503, out
    assert f"Model {repo} is currently loading" in out["msg"], out
    # The load it started finishes; answers become 200 without waiting.
    deadline = time.monotonic() + 60
    for _ in range(600):
        r = httpx.post(url, json={"inputs": "a cat"}, headers={**auth, "x-wait-for-model": "false"}, timeout=60)
        if r.status_code != 503 or time.monotonic() > deadline:
            break
        assert r.json()["error"] == f"Model {repo} is currently loading"
        assert isinstance(r.json()["estimated_time"], float) and r.json()["estimated_time"] >= 1.0
        assert int(r.headers["retry-after"]) >= 1 and r.headers["x-error-code"] == "ModelLoading"
        time.sleep(0.05)
    assert r.status_code == 200, r.text
    # Bad values of the switch are refused.
    r = httpx.post(url, json={"inputs": "a cat"}, headers={**auth, "x-wait-for-model": "maybe"}, timeout=60)
    assert r.status_code == 400 and r.headers["x-error-message"]
    r = httpx.post(url, json={"inputs": "a cat", "options": {"wait_for_model": "no"}}, headers=auth, timeout=60)
    assert r.status_code == 422 and "wait_for_model" in r.headers["x-error-message"]


def test_the_first_request_waits_for_the_load_by_default(trove, client, tmp_path):
    tok = bert_tokenizer()
    cfg = bert_config(tok.get_vocab_size())
    folder = write_model(tmp_path / "cold2", cfg, bert_weights(cfg, np.random.default_rng(6)), tok,
                         extra=sentence_transformers_files(), card="---\npipeline_tag: feature-extraction\n---\n")
    repo = upload(client, folder, prefix="cold")
    r = httpx.post(f"{trove.url}/models/{repo}", json={"inputs": "a cat", "options": {"wait_for_model": False}},
                   headers={"authorization": f"Bearer {trove.admin_token}"}, timeout=60)
    assert r.status_code == 503 and "estimated_time" in r.json()
    other = upload(client, folder, prefix="cold")
    r = httpx.post(f"{trove.url}/models/{other}", json={"inputs": "a cat"},
                   headers={"authorization": f"Bearer {trove.admin_token}"}, timeout=60)
    assert r.status_code == 200, r.text


def test_a_repo_setting_turns_inference_off_and_on(trove, client, bob, tmp_path):
    tok = bert_tokenizer()
    cfg = bert_config(tok.get_vocab_size())
    folder = write_model(tmp_path / "switch", cfg, bert_weights(cfg, np.random.default_rng(7)), tok,
                         extra=sentence_transformers_files(), card="---\npipeline_tag: feature-extraction\n---\n")
    repo = upload(client, folder, prefix="switch")
    url, auth = f"{trove.url}/models/{repo}", {"authorization": f"Bearer {trove.admin_token}"}
    settings = f"{trove.url}/api/models/{repo}/settings"
    assert httpx.post(url, json={"inputs": "a cat"}, headers=auth, timeout=60).status_code == 200
    # Only an admin of the repository may switch it; bad values change nothing.
    r = httpx.put(settings, json={"inferenceDisabled": True}, headers={"authorization": f"Bearer {bob.token}"}, timeout=60)
    assert r.status_code == 403 and r.headers["x-error-message"]
    r = httpx.put(settings, json={"inferenceDisabled": "yes"}, headers=auth, timeout=60)
    assert r.status_code in (400, 422) and r.headers["x-error-message"]
    assert httpx.post(url, json={"inputs": "a cat"}, headers=auth, timeout=60).status_code == 200
    r = httpx.put(settings, json={"inferenceDisabled": True}, headers=auth, timeout=60)
    assert r.status_code == 200 and r.json()["inferenceDisabled"] is True, r.text
    # Refused as a model without inference is; the real client sees the same 400.
    r = httpx.post(url, json={"inputs": "a cat"}, headers=auth, timeout=60)
    assert r.status_code == 400 and "inference turned off" in r.json()["error"], r.text
    out = run(client, '''
        from huggingface_hub import InferenceClient
        emit(attempt(InferenceClient(model=ARGS["url"], token=os.environ["HF_TOKEN"]).feature_extraction, "a cat"))
    ''', url=url)
    assert out["ok"] is False and out["status"] == 400, out
    r = httpx.post(f"{url}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}, headers=auth, timeout=60)
    assert r.status_code == 400
    # The web settings page shows the switch and turns it back on.
    with httpx.Client(base_url=trove.url, headers={**auth, "origin": trove.url}, timeout=60) as web:
        page = web.get(f"/{repo}/settings")
        assert page.status_code == 200 and 'id="inference">off<' in page.text, page.text[:500]
        csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
        bad = web.post(f"/{repo}/settings", data={"csrf": csrf, "action": "inference", "value": "sideways"})
        assert bad.status_code == 400
        done = web.post(f"/{repo}/settings", data={"csrf": csrf, "action": "inference", "value": "on"})
        assert done.status_code in (200, 303), done.text
        assert 'id="inference">on<' in web.get(f"/{repo}/settings").text
    assert httpx.post(url, json={"inputs": "a cat"}, headers=auth, timeout=60).status_code == 200


@pytest.fixture(scope="module")
def tight(tmp_path_factory):
    """A server with a 1 MiB model budget, one request at a time per model and no queue."""
    server = _start(tmp_path_factory, "trove-infer-tight", {
        "TROVE_INFERENCE_MEMORY_MB": "1", "TROVE_INFERENCE_MAX_CONCURRENT": "1",
        "TROVE_INFERENCE_MAX_QUEUE": "0"})
    yield server
    server.stop()


def test_model_over_the_budget_gets_the_hubs_error(tight, tmp_path):
    client = make_client(tight, tmp_path)
    tok = bert_tokenizer()
    cfg = bert_config(tok.get_vocab_size(), hidden=128, inter=512, layers=2)  # ~0.45M params: 1.8 MB
    folder = write_model(tmp_path / "big", cfg, bert_weights(cfg, np.random.default_rng(3)), tok,
                         card="---\npipeline_tag: feature-extraction\n---\n")
    repo = upload(client, folder, prefix="big")
    out = run(client, '''
        from huggingface_hub import InferenceClient
        c = InferenceClient(model=ARGS["url"], token=os.environ["HF_TOKEN"])
        emit(attempt(c.feature_extraction, "a cat"))
    ''', url=f"{tight.url}/models/{repo}")
    assert out["ok"] is False and out["status"] == 403, out
    assert "is too large to be loaded automatically (2MB > 1MB)" in out["msg"], out


def test_concurrency_beyond_the_limit_gets_503_with_retry_after(tight, tmp_path):
    client = make_client(tight, tmp_path)
    tok = llama_tokenizer()
    cfg = llama_config(tok.get_vocab_size(), hidden=64, layers=4, inter=128, max_pos=2048)
    cfg["eos_token_id"] = None  # never stops early: the request runs its 1000 tokens
    folder = write_model(tmp_path / "slow", cfg, llama_weights(cfg, np.random.default_rng(4)), tok,
                         card="---\npipeline_tag: text-generation\n---\n")
    repo = upload(client, folder, prefix="slow")
    url, auth = f"{tight.url}/models/{repo}", {"authorization": f"Bearer {tight.admin_token}"}
    # Load it first, so that the long request below holds the only slot while running.
    assert httpx.post(url, json={"inputs": "a", "parameters": {"max_new_tokens": 1}}, headers=auth, timeout=120).status_code == 200

    def long_request(status: list[int]):
        r = httpx.post(url, json={"inputs": "the cat", "parameters": {"max_new_tokens": 1000, "stop": ["zzz"]}},
                       headers=auth, timeout=300)
        status.append(r.status_code)

    # A round proves nothing when a probe reached the server before the long request (the
    # probe took the slot and the long request was the one refused) or when the long request
    # ended before a probe came: it is played again, at most 5 rounds.
    for _ in range(5):
        long_status: list[int] = []
        worker = threading.Thread(target=long_request, args=(long_status,))
        worker.start()
        refused = None
        deadline = time.monotonic() + 60
        for _ in range(600):
            if time.monotonic() > deadline or not worker.is_alive():
                break
            r = httpx.post(url, json={"inputs": "a", "parameters": {"max_new_tokens": 1}}, headers=auth, timeout=60)
            if r.status_code == 503:
                refused = r
                break
            time.sleep(0.02)
        worker.join(timeout=300)
        if refused is not None and long_status == [200]:
            break
    assert refused is not None, "no request was refused while the only slot was busy"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-error-code"] == "ModelOverloaded"
    assert long_status == [200]
    # Afterwards the model answers again.
    assert httpx.post(url, json={"inputs": "a", "parameters": {"max_new_tokens": 1}}, headers=auth, timeout=60).status_code == 200
