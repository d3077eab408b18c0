"""Independent numpy references of the forward passes the hub runs (float64), for
test_inference.py: BERT (embeddings, sequence and token classification, masked LM), DistilBERT,
RoBERTa, Llama/Qwen2 and GPT-2, written from the architectures' definitions, not from the
hub's code; and the Hub pipeline's token grouping, reimplemented from its documented rules.
"""

from __future__ import annotations

import math

import numpy as np


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
        def proj(name):  # Qwen2 has biases on q/k/v, Llama none
            out = y @ g[p + f"self_attn.{name}.weight"].T
            return out + g[p + f"self_attn.{name}.bias"] if p + f"self_attn.{name}.bias" in g else out
        q = proj("q_proj").reshape(n, heads, d).transpose(1, 0, 2)
        k = proj("k_proj").reshape(n, kvh, d).transpose(1, 0, 2)
        v = proj("v_proj").reshape(n, kvh, d).transpose(1, 0, 2)
        q, k = rope(q), rope(k)
        k, v = np.repeat(k, heads // kvh, axis=0), np.repeat(v, heads // kvh, axis=0)
        att = softmax(q @ k.transpose(0, 2, 1) / math.sqrt(d) + mask)
        x = x + (att @ v).transpose(1, 0, 2).reshape(n, h) @ g[p + "self_attn.o_proj.weight"].T
        y = rms_norm(x, g[p + "post_attention_layernorm.weight"], eps)
        gate = y @ g[p + "mlp.gate_proj.weight"].T
        x = x + ((gate / (1 + np.exp(-gate))) * (y @ g[p + "mlp.up_proj.weight"].T)) @ g[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, g["model.norm.weight"], eps)
    head = g["lm_head.weight"] if "lm_head.weight" in g else g["model.embed_tokens.weight"]
    return x[-1] @ head.T


def pipeline_text(tok, prompt_ids, generated):
    """What transformers' text-generation pipeline answers for `generated` after `prompt_ids`:
    the decoding of both together, less as many characters as the prompt's decoding has (a
    Metaspace or WordPiece decoder drops the space before the first token it decodes, so the
    generated tokens decoded alone lose it)."""
    prompt = tok.decode(list(prompt_ids))
    return tok.decode(list(prompt_ids) + list(generated))[len(prompt):]


def greedy_ref(cfg, t, ids, max_new, eos, logits=llama_logits):
    ids, out = list(ids), []
    for _ in range(max_new):
        nxt = int(np.argmax(logits(cfg, t, ids)))
        if nxt == eos:
            break
        out.append(nxt)
        ids.append(nxt)
    return out




def gelu(x):
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


def gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def token_logits_ref(cfg, t, ids):
    """BertForTokenClassification: a linear classifier on every hidden state."""
    x = bert_forward(cfg, t, ids, prefix="bert.")
    return x @ t["classifier.weight"].T.astype(np.float64) + t["classifier.bias"]


def group_entities(tokens):
    """The Hub pipeline's `simple` aggregation: a B- tag opens a group, an I- tag (or a bare
    label) of the same type continues it; tokens are dicts with entity/score/start/end/id."""
    def tag(e):
        if e.startswith("B-"):
            return "B", e[2:]
        if e.startswith("I-"):
            return "I", e[2:]
        return "I", e
    groups, current = [], []
    for tok in tokens:
        if current:
            bi, kind = tag(tok["entity"])
            if not (kind == tag(current[-1]["entity"])[1] and bi != "B"):
                groups.append(current)
                current = []
        current.append(tok)
    if current:
        groups.append(current)
    return groups


def masked_lm_ref(cfg, t, ids, position):
    """BertForMaskedLM's probabilities at one position: transform (dense, GELU, LayerNorm) then
    the decoder tied to the word embeddings, with the prediction bias."""
    x = bert_forward(cfg, t, ids, prefix="bert.")[position]
    g = {k: v.astype(np.float64) for k, v in t.items()}
    h = gelu(x @ g["cls.predictions.transform.dense.weight"].T + g["cls.predictions.transform.dense.bias"])
    h = layer_norm(h, g["cls.predictions.transform.LayerNorm.weight"], g["cls.predictions.transform.LayerNorm.bias"],
                   cfg["layer_norm_eps"])
    return softmax(h @ g["bert.embeddings.word_embeddings.weight"].T + g["cls.predictions.bias"])


def distilbert_forward(cfg, t, ids):
    """DistilBERT: word + position embeddings (no token types), post-norm blocks named q_lin…"""
    g = {k[len("distilbert."):]: v.astype(np.float64) for k, v in t.items() if k.startswith("distilbert.")}
    n, h, heads = len(ids), cfg["dim"], cfg["n_heads"]
    d = h // heads
    x = layer_norm(g["embeddings.word_embeddings.weight"][ids] + g["embeddings.position_embeddings.weight"][:n],
                   g["embeddings.LayerNorm.weight"], g["embeddings.LayerNorm.bias"], 1e-12)
    for l in range(cfg["n_layers"]):
        p = f"transformer.layer.{l}."
        lin = lambda y, name: y @ g[p + name + ".weight"].T + g[p + name + ".bias"]  # noqa: E731
        q, k, v = (lin(x, f"attention.{m}").reshape(n, heads, d).transpose(1, 0, 2) for m in ("q_lin", "k_lin", "v_lin"))
        ctx = (softmax(q @ k.transpose(0, 2, 1) / math.sqrt(d)) @ v).transpose(1, 0, 2).reshape(n, h)
        x = layer_norm(lin(ctx, "attention.out_lin") + x, g[p + "sa_layer_norm.weight"], g[p + "sa_layer_norm.bias"], 1e-12)
        x = layer_norm(lin(gelu(lin(x, "ffn.lin1")), "ffn.lin2") + x,
                       g[p + "output_layer_norm.weight"], g[p + "output_layer_norm.bias"], 1e-12)
    return x


def distilbert_classify_ref(cfg, t, ids):
    g = {k: v.astype(np.float64) for k, v in t.items()}
    x = distilbert_forward(cfg, t, ids)[0]
    x = np.maximum(x @ g["pre_classifier.weight"].T + g["pre_classifier.bias"], 0)
    return softmax(x @ g["classifier.weight"].T + g["classifier.bias"])


def roberta_forward(cfg, t, ids):
    """RoBERTa: BERT whose position ids start after the padding id."""
    pad = cfg["pad_token_id"]
    shifted = dict(t)
    table = t["roberta.embeddings.position_embeddings.weight"]
    shifted["roberta.embeddings.position_embeddings.weight"] = table[pad + 1:]
    return bert_forward(cfg, shifted, ids, prefix="roberta.")


def roberta_classify_ref(cfg, t, ids):
    g = {k: v.astype(np.float64) for k, v in t.items()}
    x = np.tanh(roberta_forward(cfg, t, ids)[0] @ g["classifier.dense.weight"].T + g["classifier.dense.bias"])
    return softmax(x @ g["classifier.out_proj.weight"].T + g["classifier.out_proj.bias"])


def gpt2_logits(cfg, t, ids):
    """GPT-2: learned positions, pre-norm blocks with Conv1D ([in, out]) projections, tanh GELU,
    the head tied to the token embeddings."""
    g = {k: v.astype(np.float64) for k, v in t.items()}
    n, e, heads = len(ids), cfg["n_embd"], cfg["n_head"]
    d, eps = e // heads, cfg["layer_norm_epsilon"]
    x = g["wte.weight"][ids] + g["wpe.weight"][:n]
    mask = np.triu(np.full((n, n), -np.inf), 1)
    for l in range(cfg["n_layer"]):
        p = f"h.{l}."
        conv = lambda y, name: y @ g[p + name + ".weight"] + g[p + name + ".bias"]  # noqa: E731
        qkv = conv(layer_norm(x, g[p + "ln_1.weight"], g[p + "ln_1.bias"], eps), "attn.c_attn")
        q, k, v = (qkv[:, i * e:(i + 1) * e].reshape(n, heads, d).transpose(1, 0, 2) for i in range(3))
        att = softmax(q @ k.transpose(0, 2, 1) / math.sqrt(d) + mask)
        x = x + conv((att @ v).transpose(1, 0, 2).reshape(n, e), "attn.c_proj")
        y = layer_norm(x, g[p + "ln_2.weight"], g[p + "ln_2.bias"], eps)
        x = x + conv(gelu_tanh(conv(y, "mlp.c_fc")), "mlp.c_proj")
    x = layer_norm(x, g["ln_f.weight"], g["ln_f.bias"], eps)
    return x[-1] @ g["wte.weight"].T


def _mlm_head(x, t, dense, norm, bias, embeddings, eps):
    """A masked-LM head: dense, erf GELU, LayerNorm, then the decoder tied to the word
    embeddings, with the head's own bias."""
    g = {k: v.astype(np.float64) for k, v in t.items()}
    h = gelu(x @ g[dense + ".weight"].T + g[dense + ".bias"])
    h = layer_norm(h, g[norm + ".weight"], g[norm + ".bias"], eps)
    return softmax(h @ g[embeddings].T + g[bias])


def distilbert_masked_lm_ref(cfg, t, ids, position):
    """DistilBertForMaskedLM: vocab_transform, the config's activation (GELU), vocab_layer_norm,
    vocab_projector tied to the word embeddings."""
    return _mlm_head(distilbert_forward(cfg, t, ids)[position], t, "vocab_transform", "vocab_layer_norm",
                     "vocab_projector.bias", "distilbert.embeddings.word_embeddings.weight", 1e-12)


def roberta_masked_lm_ref(cfg, t, ids, position):
    """RobertaForMaskedLM: lm_head.dense, GELU (always erf GELU, whatever the config says),
    lm_head.layer_norm, the decoder tied to the word embeddings, lm_head.bias."""
    return _mlm_head(roberta_forward(cfg, t, ids)[position], t, "lm_head.dense", "lm_head.layer_norm",
                     "lm_head.bias", "roberta.embeddings.word_embeddings.weight", cfg["layer_norm_eps"])
