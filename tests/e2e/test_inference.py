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
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from conftest import _start, make_client, unique

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
    if "id2label" in cfg:
        t["bert.pooler.dense.weight"] = w(h, h, s=0.5)
        t["bert.pooler.dense.bias"] = w(h, s=0.1)
        t["classifier.weight"] = w(len(cfg["id2label"]), h, s=1.0)
        t["classifier.bias"] = w(len(cfg["id2label"]), s=0.1)
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
# The independent reference: numpy forward passes (float64)
# ---------------------------------------------------------------------------------------------

_erf = np.vectorize(math.erf)


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def bert_forward(cfg, t, ids, prefix=""):
    g = {k[len(prefix):]: v.astype(np.float64) for k, v in t.items() if k.startswith(prefix)}
    n, h, heads = len(ids), cfg["hidden_size"], cfg["num_attention_heads"]
    d, eps = h // heads, cfg["layer_norm_eps"]
    x = (g["embeddings.word_embeddings.weight"][ids] + g["embeddings.position_embeddings.weight"][:n]
         + g["embeddings.token_type_embeddings.weight"][0])
    x = layer_norm(x, g["embeddings.LayerNorm.weight"], g["embeddings.LayerNorm.bias"], eps)
    for l in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{l}."
        lin = lambda y, name: y @ g[p + name + ".weight"].T + g[p + name + ".bias"]  # noqa: E731
        q, k, v = (lin(x, f"attention.self.{m}").reshape(n, heads, d).transpose(1, 0, 2)
                   for m in ("query", "key", "value"))
        att = softmax(q @ k.transpose(0, 2, 1) / math.sqrt(d))
        ctx = (att @ v).transpose(1, 0, 2).reshape(n, h)
        x = layer_norm(lin(ctx, "attention.output.dense") + x,
                       g[p + "attention.output.LayerNorm.weight"], g[p + "attention.output.LayerNorm.bias"], eps)
        inner = lin(x, "intermediate.dense")
        inner = 0.5 * inner * (1 + _erf(inner / math.sqrt(2)))
        x = layer_norm(lin(inner, "output.dense") + x,
                       g[p + "output.LayerNorm.weight"], g[p + "output.LayerNorm.bias"], eps)
    return x


def classify_ref(cfg, t, ids):
    x = bert_forward(cfg, t, ids, prefix="bert.")
    pooled = np.tanh(x[0] @ t["bert.pooler.dense.weight"].T.astype(np.float64) + t["bert.pooler.dense.bias"])
    logits = pooled @ t["classifier.weight"].T.astype(np.float64) + t["classifier.bias"]
    return softmax(logits)


def rms_norm(x, w, eps):
    return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * w


def llama_logits(cfg, t, ids):
    g = {k: v.astype(np.float64) for k, v in t.items()}
    n, h, heads, kvh = len(ids), cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d, eps = h // heads, cfg["rms_norm_eps"]
    inv = 1.0 / cfg["rope_theta"] ** (np.arange(0, d, 2) / d)
    freqs = np.arange(n)[:, None] * inv[None, :]
    cos, sin = np.cos(np.concatenate([freqs, freqs], -1)), np.sin(np.concatenate([freqs, freqs], -1))

    def rope(x):  # x: [heads, n, d]
        half = d // 2
        rotated = np.concatenate([-x[..., half:], x[..., :half]], -1)
        return x * cos + rotated * sin

    mask = np.triu(np.full((n, n), -np.inf), 1)
    x = g["model.embed_tokens.weight"][ids]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        y = rms_norm(x, g[p + "input_layernorm.weight"], eps)
        q = (y @ g[p + "self_attn.q_proj.weight"].T).reshape(n, heads, d).transpose(1, 0, 2)
        k = (y @ g[p + "self_attn.k_proj.weight"].T).reshape(n, kvh, d).transpose(1, 0, 2)
        v = (y @ g[p + "self_attn.v_proj.weight"].T).reshape(n, kvh, d).transpose(1, 0, 2)
        q, k = rope(q), rope(k)
        k, v = np.repeat(k, heads // kvh, axis=0), np.repeat(v, heads // kvh, axis=0)
        att = softmax(q @ k.transpose(0, 2, 1) / math.sqrt(d) + mask)
        x = x + (att @ v).transpose(1, 0, 2).reshape(n, h) @ g[p + "self_attn.o_proj.weight"].T
        y = rms_norm(x, g[p + "post_attention_layernorm.weight"], eps)
        gate = y @ g[p + "mlp.gate_proj.weight"].T
        x = x + ((gate / (1 + np.exp(-gate))) * (y @ g[p + "mlp.up_proj.weight"].T)) @ g[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, g["model.norm.weight"], eps)
    return x[-1] @ g["lm_head.weight"].T


def greedy_ref(cfg, t, ids, max_new, eos):
    ids, out = list(ids), []
    for _ in range(max_new):
        nxt = int(np.argmax(llama_logits(cfg, t, ids)))
        if nxt == eos:
            break
        out.append(nxt)
        ids.append(nxt)
    return out


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
              "finish": r.details.finish_reason})
    ''', url=f"{trove.url}/models/{repo}", p=prompt)
    expected = greedy_ref(cfg, w, tok.encode(prompt).ids, 12, eos=2)
    assert out["ids"] == expected
    assert out["text"] == tok.decode(expected)
    assert out["finish"] == ("length" if len(expected) == 12 else "eos_token")


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
    assert out["whole"] == tok.decode(expected)
    assert out["usage"] == len(expected)
    assert "".join(out["pieces"]) == out["whole"]
    assert len([p for p in out["pieces"] if p]) >= 2, "tokens arrive as separate events"
    assert out["finish"] in ("length", "stop")


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


def test_model_info_says_warm_once_loaded(trove, client, zoo):
    repo = zoo["llama"][0]
    out = run(client, '''
        emit(api.model_info(ARGS["repo"], expand=["inference"]).inference)
    ''', repo=repo)
    assert out == "warm"  # the generation tests above loaded it
    fresh = zoo["clf"][0]
    assert httpx.get(f"{trove.url}/api/models/{fresh}?expand=inference",
                     headers={"authorization": f"Bearer {trove.admin_token}"}).json()["inference"] in ("warm", "cold")


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


def test_refusals(trove, client, zoo, tmp_path):
    auth = {"authorization": f"Bearer {trove.admin_token}"}
    llama, minilm = zoo["llama"][0], zoo["minilm"][0]
    # A task the model does not do, and one this hub does not run: 400 with the message.
    r = httpx.post(f"{trove.url}/models/{llama}/pipeline/feature-extraction", json={"inputs": "x"}, headers=auth, timeout=60)
    assert r.status_code == 400 and "doesn't support task" in r.headers["x-error-message"]
    r = httpx.post(f"{trove.url}/models/{minilm}/pipeline/image-segmentation", json={"inputs": "x"}, headers=auth, timeout=60)
    assert r.status_code == 400 and "not supported" in r.json()["error"]
    # Bad inputs: 422, nothing run.
    for body in ({}, {"inputs": 5}, {"inputs": []}, {"inputs": ["a"] * 1000}):
        r = httpx.post(f"{trove.url}/models/{minilm}", json=body, headers=auth, timeout=60)
        assert r.status_code == 422, (body, r.status_code, r.text)
        assert r.headers["x-error-message"]
    r = httpx.post(f"{trove.url}/models/{minilm}", json={"inputs": "cat " * 200}, headers=auth, timeout=60)
    assert r.status_code == 422 and "tokens" in r.json()["error"]
    r = httpx.post(f"{trove.url}/models/{llama}", json={"inputs": "a", "parameters": {"max_new_tokens": 10**6}}, headers=auth, timeout=60)
    assert r.status_code == 422
    r = httpx.post(f"{trove.url}/models/{llama}/v1/chat/completions", json={"messages": []}, headers=auth, timeout=60)
    assert r.status_code == 422
    r = httpx.post(f"{trove.url}/models/{llama}", content=b"not json", headers=auth, timeout=60)
    assert r.status_code == 400
    r = httpx.post(f"{trove.url}/models/admin/{unique('missing')}", json={"inputs": "x"}, headers=auth, timeout=60)
    assert r.status_code == 404
    # `inference: false` in the card turns it off.
    tok = bert_tokenizer()
    cfg = bert_config(tok.get_vocab_size())
    folder = write_model(tmp_path / "off", cfg, bert_weights(cfg, np.random.default_rng(2)), tok,
                         card="---\ninference: false\npipeline_tag: feature-extraction\n---\n")
    repo = upload(client, folder, prefix="off")
    r = httpx.post(f"{trove.url}/models/{repo}", json={"inputs": "x"}, headers=auth, timeout=60)
    assert r.status_code == 400 and "inference turned off" in r.json()["error"]


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
    long_status: list[int] = []

    def long_request():
        r = httpx.post(url, json={"inputs": "the cat", "parameters": {"max_new_tokens": 1000, "stop": ["zzz"]}},
                       headers=auth, timeout=300)
        long_status.append(r.status_code)

    worker = threading.Thread(target=long_request)
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
    assert refused is not None, "no request was refused while the only slot was busy"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-error-code"] == "ModelOverloaded"
    assert long_status == [200]
    # Afterwards the model answers again.
    assert httpx.post(url, json={"inputs": "a", "parameters": {"max_new_tokens": 1}}, headers=auth, timeout=60).status_code == 200
