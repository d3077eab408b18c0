"""GGUF for test_inference_gguf.py, written here from the format's definition (no `gguf`
package): the container (magic, version, metadata, tensor infos, aligned data), ggml's Q8_0
quantization (blocks of 32 values: an f16 scale and 32 int8), and an independent numpy
forward pass of GGUF Llama, Qwen2, Qwen3 and Phi-3 models as llama.cpp defines them — weights as
the file stores them (dequantized), each architecture's rotary embedding, biases and norms
(`gguf_logits`), and each quantized matrix product taken on activations rounded to Q8_0
first, as ggml's Q8_0 kernels do.
"""

from __future__ import annotations

import math
import struct

import numpy as np

ALIGNMENT = 32
F32, Q8_0 = 0, 8
_KINDS = {"u32": (4, "<I"), "f32": (6, "<f"), "u64": (10, "<Q")}


def _string(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def _value(kind: str, value) -> bytes:
    if kind == "str":
        return struct.pack("<I", 8) + _string(value)
    if kind == "str[]":
        return struct.pack("<IIQ", 9, 8, len(value)) + b"".join(_string(v) for v in value)
    code, fmt = _KINDS[kind]
    return struct.pack("<I", code) + struct.pack(fmt, value)


def _round_half_away(x):
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def q8_0(w: np.ndarray) -> tuple[bytes, np.ndarray]:
    """ggml's quantize_row_q8_0 on every row of `w` (a row's length a multiple of 32): the
    bytes as the file stores them, and the values they stand for."""
    blocks = w.astype(np.float32).reshape(-1, 32)
    d = (np.abs(blocks).max(1) / np.float32(127)).astype(np.float32)
    inv = np.divide(np.float32(1), d, out=np.zeros_like(d), where=d != 0).astype(np.float32)
    q = _round_half_away(blocks * inv[:, None]).astype(np.int8)
    d16 = d.astype(np.float16)
    packed = np.zeros(len(blocks), dtype=[("d", "<f2"), ("q", "i1", 32)])
    packed["d"], packed["q"] = d16, q
    values = (d16.astype(np.float64)[:, None] * q).reshape(w.shape)
    return packed.tobytes(), values


def gguf(metadata: list[tuple[str, str, object]], tensors: list[tuple[str, int, np.ndarray]]) -> tuple[bytes, dict]:
    """A GGUF v3 file: `tensors` are (name, F32 or Q8_0, array in PyTorch's [out, in] order);
    returns the bytes and the values the file holds, by name (float64)."""
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata))
    for key, kind, value in metadata:
        head += _string(key) + _value(kind, value)
    data, values = b"", {}
    for name, kind, array in tensors:
        if kind == Q8_0:
            raw, values[name] = q8_0(array)
        else:
            raw, values[name] = array.astype("<f4").tobytes(), array.astype(np.float64)
        data += b"\0" * (-len(data) % ALIGNMENT)
        dims = list(reversed(array.shape))  # ggml's ne: the innermost dimension first
        head += _string(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
        head += struct.pack("<IQ", kind, len(data))
        data += raw
    head += b"\0" * (-len(head) % ALIGNMENT)
    return head + data, values


def _q8_act(x: np.ndarray) -> np.ndarray:
    """Activations as ggml's Q8_0 dot products see them: each row quantized in blocks of 32."""
    return q8_0(x.astype(np.float32))[1]


def _rms(x, w, eps):
    return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * w


def _rope_table(n: int, d: int, base: float, half: bool):
    """cos and sin of position × frequency, `[n, d/2]`. `half`: the table as candle's
    quantized Qwen3 makes it without a `general.dtype` key — positions, frequencies, their
    products and the sines rounded to float16 (llama.cpp keeps them in f32)."""
    inv = (np.float32(1) / (base ** (np.arange(0, d, 2) / d)).astype(np.float32)).astype(np.float32)
    if half:
        angles = np.arange(n).astype(np.float16)[:, None] * inv.astype(np.float16)[None, :]
        return np.cos(angles).astype(np.float64), np.sin(angles).astype(np.float64)
    angles = np.arange(n)[:, None] * inv.astype(np.float64)[None, :]
    return np.cos(angles), np.sin(angles)


def gguf_logits(hp: dict, t: dict, ids: list[int]) -> np.ndarray:
    """The next-token logits after `ids` of a GGUF model of `hp["arch"]` (`blk.N.attn_q.weight`…
    names), as the architectures define them:

    - llama: rotary embedding on interleaved pairs (llama.cpp permutes q and k for it);
    - qwen2: q, k and v have biases; rotary on the two halves of each head (GPT-NeoX style);
    - qwen3: no biases; each head of q and k RMS-normed (`attn_q_norm`/`attn_k_norm`, over the
      head) before the rotary (halves); the head size its own key, so q is `heads × head_dim`
      wide and `attn_output` maps that back to the embedding width;
    - phi3: q, k and v from one fused `attn_qkv` (in that order), the feed-forward's gate and
      up from one fused `ffn_up` (gate first); rotary on halves.

    A file without `output.weight` ties the head to `token_embd.weight`."""
    arch = hp.get("arch", "llama")
    n, h, heads, kvh = len(ids), hp["hidden"], hp["heads"], hp["kv_heads"]
    d, eps = hp.get("head_dim", h // heads), hp["eps"]
    qmm = lambda x, name: _q8_act(x) @ t[name].T  # noqa: E731  (a Q8_0 weight)
    cos, sin = _rope_table(n, d, hp["rope_base"], half=arch == "qwen3")

    def rope(x):  # [heads, n, d]
        out = np.empty_like(x)
        if arch == "llama":  # pairs (2i, 2i+1) rotated together
            a, b = x[..., 0::2], x[..., 1::2]
            out[..., 0::2], out[..., 1::2] = a * cos - b * sin, a * sin + b * cos
        else:  # pairs (i, i + d/2)
            a, b = x[..., : d // 2], x[..., d // 2:]
            out[..., : d // 2], out[..., d // 2:] = a * cos - b * sin, a * sin + b * cos
        return out

    def proj(y, p, which, width):
        if arch == "phi3":
            qkv = qmm(y, f"{p}attn_qkv.weight")
            start = {"q": 0, "k": heads * d, "v": (heads + kvh) * d}[which]
            return qkv[:, start:start + width * d].reshape(n, width, d).transpose(1, 0, 2)
        out = qmm(y, f"{p}attn_{which}.weight")
        if arch == "qwen2":
            out = out + t[f"{p}attn_{which}.bias"]
        out = out.reshape(n, width, d)
        if arch == "qwen3" and which in "qk":
            out = _rms(out, t[f"{p}attn_{which}_norm.weight"], eps)
        return out.transpose(1, 0, 2)

    mask = np.triu(np.full((n, n), -np.inf), 1)
    x = t["token_embd.weight"][ids]
    for l in range(hp["layers"]):
        p = f"blk.{l}."
        y = _rms(x, t[p + "attn_norm.weight"], eps)
        q, k, v = rope(proj(y, p, "q", heads)), rope(proj(y, p, "k", kvh)), proj(y, p, "v", kvh)
        k, v = np.repeat(k, heads // kvh, axis=0), np.repeat(v, heads // kvh, axis=0)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(d) + mask
        att = np.exp(s - s.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        x = x + qmm((att @ v).transpose(1, 0, 2).reshape(n, heads * d), p + "attn_output.weight")
        y = _rms(x, t[p + "ffn_norm.weight"], eps)
        if arch == "phi3":
            gate, up = np.split(qmm(y, p + "ffn_up.weight"), 2, axis=-1)
        else:
            gate, up = qmm(y, p + "ffn_gate.weight"), qmm(y, p + "ffn_up.weight")
        x = x + qmm(gate / (1 + np.exp(-gate)) * up, p + "ffn_down.weight")
    x = _rms(x, t["output_norm.weight"], eps)
    return qmm(x[-1:], "output.weight" if "output.weight" in t else "token_embd.weight")[0]


def gguf_greedy(hp: dict, t: dict, ids: list[int], max_new: int, eos: int) -> tuple[list[int], float]:
    """Greedy tokens, and the smallest gap between the best and second-best logit on the
    way (how far from a tie the choice was)."""
    ids, out, gap = list(ids), [], math.inf
    for _ in range(max_new):
        logits = gguf_logits(hp, t, ids)
        top = np.sort(logits)[-2:]
        gap = min(gap, float(top[1] - top[0]))
        nxt = int(np.argmax(logits))
        if nxt == eos:
            break
        out.append(nxt)
        ids.append(nxt)
    return out, gap
