"""Inference (issue 18) on GGUF-quantized Llama models.

A tiny Llama is written as a GGUF file here (gguf_ref.py: the container and ggml's Q8_0
quantization written from the format's definition, F32 norms), uploaded with the client
beside a `tokenizer.json`, and run through `InferenceClient`; greedy tokens must equal an
independent numpy forward pass over the values the file holds. Also: which GGUF file runs
when a repository has several, and broken GGUF files answered with a 400, not a crash.
"""

from __future__ import annotations

import struct

import httpx
import numpy as np
import pytest

from conftest import make_client
from gguf_ref import F32, Q8_0, gguf, gguf_greedy
from test_inference import llama_tokenizer, upload, run  # noqa: F401  (shared builders)

CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m.role }}|> {{ m.content.strip() }} "
                 "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")


def tiny_llama_gguf(vocab: int, rng: np.random.Generator, *, hidden=64, layers=2, heads=4, kv_heads=2,
                    inter=128) -> tuple[bytes, dict, dict]:
    """A GGUF Llama with Q8_0 matrices (token embeddings and head included) and F32 norms."""
    d = hidden // heads
    hp = {"hidden": hidden, "layers": layers, "heads": heads, "kv_heads": kv_heads, "eps": 1e-5,
          "rope_base": 10000.0}

    def w(*shape, s=0.3):
        return (rng.standard_normal(shape) * s).astype(np.float32)

    tensors = [("token_embd.weight", Q8_0, w(vocab, hidden, s=1.0)),
               ("output_norm.weight", F32, 1 + w(hidden, s=0.1)),
               ("output.weight", Q8_0, w(vocab, hidden, s=1.0))]
    for l in range(layers):
        p = f"blk.{l}."
        tensors += [(p + "attn_norm.weight", F32, 1 + w(hidden, s=0.1)),
                    (p + "attn_q.weight", Q8_0, w(hidden, hidden)),
                    (p + "attn_k.weight", Q8_0, w(kv_heads * d, hidden)),
                    (p + "attn_v.weight", Q8_0, w(kv_heads * d, hidden)),
                    (p + "attn_output.weight", Q8_0, w(hidden, hidden)),
                    (p + "ffn_norm.weight", F32, 1 + w(hidden, s=0.1)),
                    (p + "ffn_gate.weight", Q8_0, w(inter, hidden)),
                    (p + "ffn_up.weight", Q8_0, w(inter, hidden)),
                    (p + "ffn_down.weight", Q8_0, w(hidden, inter))]
    metadata = [("general.architecture", "str", "llama"), ("general.name", "str", "tiny"),
                ("llama.context_length", "u32", 128), ("llama.embedding_length", "u32", hidden),
                ("llama.block_count", "u32", layers), ("llama.feed_forward_length", "u32", inter),
                ("llama.attention.head_count", "u32", heads), ("llama.attention.head_count_kv", "u32", kv_heads),
                ("llama.rope.dimension_count", "u32", d), ("llama.rope.freq_base", "f32", hp["rope_base"]),
                ("llama.attention.layer_norm_rms_epsilon", "f32", hp["eps"]),
                ("tokenizer.ggml.bos_token_id", "u32", 1), ("tokenizer.ggml.eos_token_id", "u32", 2),
                ("tokenizer.chat_template", "str", CHAT_TEMPLATE)]
    data, values = gguf(metadata, tensors)
    return data, values, hp


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
    expected, gap = gguf_greedy(hp, m["values"], tok.encode(prompt).ids, 12, eos=2)
    assert gap > 1e-3, "the reference's choices are not near ties"
    assert out["ids"] == expected
    assert out["text"] == tok.decode(expected)


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
    expected, _ = gguf_greedy(hp, m["values"], tok.encode(prompt, add_special_tokens=False).ids, 8, eos=2)
    assert out == tok.decode(expected)


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
