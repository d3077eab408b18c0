"""Inference (issue 18) on GGUF-quantized Llama models.

A tiny Llama is written as a GGUF file here (gguf_ref.py: the container and ggml's Q8_0
quantization written from the format's definition, F32 norms), uploaded with the client
beside a `tokenizer.json`, and run through `InferenceClient`; greedy tokens must equal an
independent numpy forward pass over the values the file holds. Also: which GGUF file runs
when a repository has several, and broken GGUF files answered with a 400, not a crash.
"""

from __future__ import annotations

import json
import struct

import httpx
import numpy as np
import pytest

from conftest import make_client
from gguf_ref import F32, Q8_0, gguf, gguf_greedy
from infer_ref import pipeline_text
from test_inference import llama_tokenizer, upload, run  # noqa: F401  (shared builders)

CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m.role }}|> {{ m.content.strip() }} "
                 "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")


def tiny_gguf(vocab: int, rng: np.random.Generator, *, arch="llama", hidden=64, layers=2, heads=4,
              kv_heads=2, head_dim=None, inter=128, tied=False, drop=(), extra=(),
              template=CHAT_TEMPLATE, eos=2) -> tuple[bytes, dict, dict]:
    """A GGUF model of `arch` (llama, qwen2, qwen3, phi3) with Q8_0 matrices (token embeddings and
    head included) and F32 norms and biases; `tied` leaves out `output.weight`, `drop` leaves
    out the tensors named, `extra` adds tensors; `eos=None` leaves out the EOS id."""
    d = head_dim or hidden // heads
    hp = {"arch": arch, "hidden": hidden, "layers": layers, "heads": heads, "kv_heads": kv_heads,
          "head_dim": d, "eps": 1e-5, "rope_base": 10000.0}

    def w(*shape, s=0.3):
        return (rng.standard_normal(shape) * s).astype(np.float32)

    tensors = [("token_embd.weight", Q8_0, w(vocab, hidden, s=1.0)),
               ("output_norm.weight", F32, 1 + w(hidden, s=0.1))]
    if not tied:
        tensors.append(("output.weight", Q8_0, w(vocab, hidden, s=1.0)))
    for l in range(layers):
        p = f"blk.{l}."
        if arch == "phi3":
            tensors += [(p + "attn_norm.weight", F32, 1 + w(hidden, s=0.1)),
                        (p + "attn_qkv.weight", Q8_0, w((heads + 2 * kv_heads) * d, hidden)),
                        (p + "attn_output.weight", Q8_0, w(hidden, heads * d)),
                        (p + "ffn_norm.weight", F32, 1 + w(hidden, s=0.1)),
                        (p + "ffn_up.weight", Q8_0, w(2 * inter, hidden)),
                        (p + "ffn_down.weight", Q8_0, w(hidden, inter))]
            continue
        tensors += [(p + "attn_norm.weight", F32, 1 + w(hidden, s=0.1)),
                    (p + "attn_q.weight", Q8_0, w(heads * d, hidden)),
                    (p + "attn_k.weight", Q8_0, w(kv_heads * d, hidden)),
                    (p + "attn_v.weight", Q8_0, w(kv_heads * d, hidden)),
                    (p + "attn_output.weight", Q8_0, w(hidden, heads * d)),
                    (p + "ffn_norm.weight", F32, 1 + w(hidden, s=0.1)),
                    (p + "ffn_gate.weight", Q8_0, w(inter, hidden)),
                    (p + "ffn_up.weight", Q8_0, w(inter, hidden)),
                    (p + "ffn_down.weight", Q8_0, w(hidden, inter))]
        if arch == "qwen2":
            tensors += [(p + "attn_q.bias", F32, w(heads * d)), (p + "attn_k.bias", F32, w(kv_heads * d)),
                        (p + "attn_v.bias", F32, w(kv_heads * d))]
        if arch == "qwen3":
            tensors += [(p + "attn_q_norm.weight", F32, 1 + w(d, s=0.1)),
                        (p + "attn_k_norm.weight", F32, 1 + w(d, s=0.1))]
    tensors = [t for t in tensors if t[0] not in drop] + list(extra)
    metadata = [("general.architecture", "str", arch), ("general.name", "str", "tiny"),
                (f"{arch}.context_length", "u32", 128), (f"{arch}.embedding_length", "u32", hidden),
                (f"{arch}.block_count", "u32", layers), (f"{arch}.feed_forward_length", "u32", inter),
                (f"{arch}.attention.head_count", "u32", heads), (f"{arch}.attention.head_count_kv", "u32", kv_heads),
                (f"{arch}.rope.dimension_count", "u32", d), (f"{arch}.rope.freq_base", "f32", hp["rope_base"]),
                (f"{arch}.attention.layer_norm_rms_epsilon", "f32", hp["eps"]),
                ("tokenizer.ggml.bos_token_id", "u32", 1)]
    if eos is not None:
        metadata.append(("tokenizer.ggml.eos_token_id", "u32", eos))
    if arch == "qwen3":
        metadata += [("qwen3.attention.key_length", "u32", d), ("qwen3.attention.value_length", "u32", d)]
    if template:
        metadata.append(("tokenizer.chat_template", "str", template))
    data, values = gguf(metadata, tensors)
    return data, values, hp


def tiny_llama_gguf(vocab: int, rng: np.random.Generator) -> tuple[bytes, dict, dict]:
    return tiny_gguf(vocab, rng)


@pytest.fixture(scope="module")
def gguf_models(trove, tmp_path_factory):
    base = tmp_path_factory.mktemp("gguf")
    client = make_client(trove, base / "client")
    tok = llama_tokenizer()
    data, values, hp = tiny_llama_gguf(tok.get_vocab_size(), np.random.default_rng(1818))
    other, other_values, _ = tiny_llama_gguf(tok.get_vocab_size(), np.random.default_rng(9))
    card = "---\npipeline_tag: text-generation\n---\n# tiny gguf\n"

    def repo(name: str, files: dict[str, bytes | str]) -> str:
        folder = base / name
        folder.mkdir()
        (folder / "README.md").write_text(card if "README.md" not in files else files.pop("README.md"))
        for path, content in files.items():
            (folder / path).write_bytes(content if isinstance(content, bytes) else content.encode())
        return upload(client, folder, prefix=name)

    one = repo("one", {"tiny-Q8_0.gguf": data, "tokenizer.json": tok.to_str()})
    two = repo("two", {"a-Q8_0.gguf": data, "b-Q8_0.gguf": other, "tokenizer.json": tok.to_str()})
    carded = repo("carded", {"a-Q8_0.gguf": data, "b-Q8_0.gguf": other, "tokenizer.json": tok.to_str(),
                             "README.md": "---\npipeline_tag: text-generation\ngguf_file: b-Q8_0.gguf\n---\n"})
    truncated = repo("truncated", {"t.gguf": data[: len(data) - 100], "tokenizer.json": tok.to_str()})
    hostile = bytearray(data[:64])
    hostile[8:16] = struct.pack("<Q", 2**62)  # tensor count
    hostile = repo("hostile", {"h.gguf": bytes(hostile), "tokenizer.json": tok.to_str()})
    no_tokenizer = repo("no-tokenizer", {"m.gguf": data})
    return {"one": one, "two": two, "carded": carded, "truncated": truncated, "hostile": hostile,
            "no-tokenizer": no_tokenizer, "tok": tok, "values": values, "other_values": other_values, "hp": hp}


def test_a_gguf_llama_generates_the_reference_tokens(trove, client, gguf_models):
    m = gguf_models
    tok, hp = m["tok"], m["hp"]
    prompt = "the cat runs and the dog"
    out = run(client, '''
        from huggingface_hub import InferenceClient
        c = InferenceClient(model=ARGS["url"], token=os.environ["HF_TOKEN"])
        r = c.text_generation(ARGS["p"], max_new_tokens=12, details=True)
        emit({"text": r.generated_text, "ids": [t.id for t in r.details.tokens]})
    ''', url=f"{trove.url}/models/{m['one']}", p=prompt)
    prompt_ids = tok.encode(prompt).ids
    expected, gap = gguf_greedy(hp, m["values"], prompt_ids, 12, eos=2)
    assert gap > 1e-3, "the reference's choices are not near ties"
    assert out["ids"] == expected
    assert out["text"] == pipeline_text(tok, prompt_ids, expected)


def test_a_gguf_llama_chats_with_the_template_inside_the_file(trove, client, gguf_models):
    m = gguf_models
    tok, hp = m["tok"], m["hp"]
    messages = [{"role": "user", "content": "i love the sun"}]
    out = run(client, '''
        from huggingface_hub import InferenceClient
        c = InferenceClient(base_url=ARGS["url"], token=os.environ["HF_TOKEN"])
        emit("".join(ch.choices[0].delta.content or "" for ch in c.chat_completion(ARGS["m"], max_tokens=8, stream=True)))
    ''', url=f"{trove.url}/models/{m['one']}/v1", m=messages)
    prompt = "<s>" + "".join(f"<|{x['role']}|> {x['content'].strip()} " for x in messages) + "<|assistant|>"
    ids = tok.encode(prompt, add_special_tokens=False).ids
    expected, _ = gguf_greedy(hp, m["values"], ids, 8, eos=2)
    assert out == pipeline_text(tok, ids, expected)


def test_which_gguf_file_runs(trove, gguf_models):
    m = gguf_models
    auth = {"authorization": f"Bearer {trove.admin_token}"}
    tok, hp = m["tok"], m["hp"]
    prompt = "i love this film"
    ids = tok.encode(prompt).ids
    body = {"inputs": prompt, "parameters": {"max_new_tokens": 6, "details": True}}

    def tokens(url):
        r = httpx.post(url, json=body, headers=auth, timeout=120)
        assert r.status_code == 200, r.text
        return [t["id"] for t in r.json()[0]["details"]["tokens"]]

    a, _ = gguf_greedy(hp, m["values"], ids, 6, eos=2)
    b, _ = gguf_greedy(hp, m["other_values"], ids, 6, eos=2)
    assert a != b, "the two files answer differently"
    # Several files and no choice: a 400 that lists them.
    r = httpx.post(f"{trove.url}/models/{m['two']}", json=body, headers=auth, timeout=60)
    assert r.status_code == 400, r.text
    assert "several GGUF files (a-Q8_0.gguf, b-Q8_0.gguf)" in r.json()["error"]
    # The request's choice, then the card's.
    assert tokens(f"{trove.url}/models/{m['two']}?gguf_file=a-Q8_0.gguf") == a
    assert tokens(f"{trove.url}/models/{m['two']}?gguf_file=b-Q8_0.gguf") == b
    assert tokens(f"{trove.url}/models/{m['carded']}") == b
    assert tokens(f"{trove.url}/models/{m['carded']}?gguf_file=a-Q8_0.gguf") == a
    r = httpx.post(f"{trove.url}/models/{m['two']}?gguf_file=c.gguf", json=body, headers=auth, timeout=60)
    assert r.status_code == 400 and "no GGUF file \"c.gguf\"" in r.json()["error"], r.text
    # A chat request names the file as its `model`.
    r = httpx.post(f"{trove.url}/models/{m['two']}/v1/chat/completions", headers=auth, timeout=120,
                   json={"model": "b-Q8_0.gguf", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3})
    assert r.status_code == 200, r.text


def test_broken_gguf_files_are_refused_with_a_400(trove, gguf_models):
    m = gguf_models
    auth = {"authorization": f"Bearer {trove.admin_token}"}
    for name, message in (("truncated", "past the end of the file"), ("hostile", "tensors, more than"),
                          ("no-tokenizer", "no tokenizer.json")):
        r = httpx.post(f"{trove.url}/models/{m[name]}", json={"inputs": "a cat"}, headers=auth, timeout=60)
        assert r.status_code == 400, (name, r.status_code, r.text)
        assert message in r.json()["error"], (name, r.text)
    # The server is still answering.
    r = httpx.post(f"{trove.url}/models/{m['one']}", json={"inputs": "a cat", "parameters": {"max_new_tokens": 2}},
                   headers=auth, timeout=60)
    assert r.status_code == 200, r.text


# ---------------------------------------------------------------------------------------------
# Other architectures: Qwen2 (q/k/v biases, a tied head), Qwen3 (q/k norms, a head size of
# its own key) and Phi-3 (fused qkv and gate/up)
# ---------------------------------------------------------------------------------------------

# A ChatML-like template without a BOS token, as Qwen's; this one comes from
# tokenizer_config.json rather than the file, for the other path.
QWEN_TEMPLATE = ("{% for m in messages %}<|{{ m.role }}|> {{ m.content }} {% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")

ARCHS = {
    "qwen2": {"arch": "qwen2", "tied": True},
    "qwen3": {"arch": "qwen3", "head_dim": 32, "template": None},
    "phi3": {"arch": "phi3"},
}


@pytest.fixture(scope="module")
def arch_models(trove, tmp_path_factory):
    base = tmp_path_factory.mktemp("gguf-archs")
    client = make_client(trove, base / "client")
    tok = llama_tokenizer()
    vocab = tok.get_vocab_size()
    card = "---\npipeline_tag: text-generation\n---\n# tiny gguf\n"

    def repo(name: str, data: bytes, extra: dict[str, str] | None = None) -> str:
        folder = base / name
        folder.mkdir()
        (folder / "README.md").write_text(card)
        (folder / "model-Q8_0.gguf").write_bytes(data)
        (folder / "tokenizer.json").write_text(tok.to_str())
        for path, text in (extra or {}).items():
            (folder / path).write_text(text)
        return upload(client, folder, prefix=name)

    models = {"tok": tok}
    for seed, (name, kw) in enumerate(ARCHS.items()):
        data, values, hp = tiny_gguf(vocab, np.random.default_rng(1800 + seed), **kw)
        extra = None
        if kw.get("template", CHAT_TEMPLATE) is None:
            extra = {"tokenizer_config.json": json.dumps({"chat_template": QWEN_TEMPLATE, "eos_token": "</s>"})}
        models[name] = (repo(name, data, extra), values, hp)
    rng = np.random.default_rng(7)
    broken = {
        "no-bias": (tiny_gguf(vocab, rng, arch="qwen2", drop=("blk.1.attn_k.bias",))[0],
                    "no tensor blk.1.attn_k.bias"),
        "q-norm-shape": (tiny_gguf(vocab, rng, arch="qwen3", head_dim=32, drop=("blk.0.attn_q_norm.weight",))[0],
                         "no tensor blk.0.attn_q_norm.weight"),
        "phi3-long-rope": (tiny_gguf(vocab, rng, arch="phi3", extra=[("rope_factors_long.weight", F32, np.ones(8))])[0],
                           "LongRoPE factors"),
        "other-arch": (tiny_gguf(vocab, rng, arch="gemma3")[0],
                       "architecture `gemma3` are not run by this hub (supported: llama"),
    }
    # A Qwen3 file whose head size (key_length) disagrees with its tensors.
    data, _, _ = tiny_gguf(vocab, rng, arch="qwen3", head_dim=32)
    for key in ("qwen3.attention.key_length", "qwen3.attention.value_length"):
        entry = struct.pack("<Q", len(key)) + key.encode() + struct.pack("<I", 4)
        data = data.replace(entry + struct.pack("<I", 32), entry + struct.pack("<I", 16))
    broken["key-length"] = (data, "blk.0.attn_q.weight is [128, 64], not [64, 64]")
    models["broken"] = {name: (repo(name, data), message) for name, (data, message) in broken.items()}
    return models


@pytest.mark.parametrize("arch", list(ARCHS))
def test_a_gguf_model_of_another_architecture_generates_the_reference_tokens(trove, client, arch_models, arch):
    tok = arch_models["tok"]
    repo, values, hp = arch_models[arch]
    prompt = "the cat runs and the dog"
    out = run(client, '''
        from huggingface_hub import InferenceClient
        c = InferenceClient(model=ARGS["url"], token=os.environ["HF_TOKEN"])
        r = c.text_generation(ARGS["p"], max_new_tokens=12, details=True)
        emit({"text": r.generated_text, "ids": [t.id for t in r.details.tokens]})
    ''', url=f"{trove.url}/models/{repo}", p=prompt)
    prompt_ids = tok.encode(prompt).ids
    expected, gap = gguf_greedy(hp, values, prompt_ids, 12, eos=2)
    assert gap > 1e-3, "the reference's choices are not near ties"
    assert len(expected) >= 4, expected
    assert out["ids"] == expected
    assert out["text"] == pipeline_text(tok, prompt_ids, expected)


@pytest.mark.parametrize("arch", list(ARCHS))
def test_a_gguf_model_of_another_architecture_chats(trove, client, arch_models, arch):
    tok = arch_models["tok"]
    repo, values, hp = arch_models[arch]
    messages = [{"role": "user", "content": "i love the sun"}]
    out = run(client, '''
        from huggingface_hub import InferenceClient
        c = InferenceClient(base_url=ARGS["url"], token=os.environ["HF_TOKEN"])
        emit("".join(ch.choices[0].delta.content or "" for ch in c.chat_completion(ARGS["m"], max_tokens=8, stream=True)))
    ''', url=f"{trove.url}/models/{repo}/v1", m=messages)
    if ARCHS[arch].get("template", CHAT_TEMPLATE) is None:
        prompt = "".join(f"<|{x['role']}|> {x['content']} " for x in messages) + "<|assistant|>"
    else:
        prompt = "<s>" + "".join(f"<|{x['role']}|> {x['content'].strip()} " for x in messages) + "<|assistant|>"
    ids = tok.encode(prompt, add_special_tokens=False).ids
    expected, _ = gguf_greedy(hp, values, ids, 8, eos=2)
    assert expected, "the reference generates something"
    assert out == pipeline_text(tok, ids, expected)


def test_bad_files_of_other_architectures_are_refused_with_a_400(trove, arch_models):
    auth = {"authorization": f"Bearer {trove.admin_token}"}
    for name, (repo, message) in arch_models["broken"].items():
        r = httpx.post(f"{trove.url}/models/{repo}", json={"inputs": "a cat"}, headers=auth, timeout=60)
        assert r.status_code == 400, (name, r.status_code, r.text)
        assert message in r.json()["error"], (name, r.text)
        assert r.headers.get("x-error-message"), (name, r.headers)
