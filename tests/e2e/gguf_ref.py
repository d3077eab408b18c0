"""GGUF for test_inference_gguf.py, written here from the format's definition (no `gguf`
package): the container (magic, version, metadata, tensor infos, aligned data), ggml's Q8_0
quantization (blocks of 32 values: an f16 scale and 32 int8), and an independent numpy
forward pass of a GGUF Llama as llama.cpp defines it — weights as the file stores them
(dequantized), rotary embedding on interleaved pairs, and each quantized matrix product
taken on activations rounded to Q8_0 first, as ggml's Q8_0 kernels do.
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


def gguf_llama_logits(hp: dict, t: dict, ids: list[int]) -> np.ndarray:
    """The next-token logits of a GGUF Llama (`blk.N.attn_q.weight`… names) after `ids`."""
    n, h, heads, kvh = len(ids), hp["hidden"], hp["heads"], hp["kv_heads"]
    d, eps = h // heads, hp["eps"]
    qmm = lambda x, name: _q8_act(x) @ t[name].T  # noqa: E731  (a Q8_0 weight)
    inv = hp["rope_base"] ** (-np.arange(0, d, 2) / d)
    angles = np.arange(n)[:, None] * inv[None, :]
    cos, sin = np.cos(angles), np.sin(angles)

    def rope(x):  # [heads, n, d], pairs (2i, 2i+1) rotated together
        even, odd = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = even * cos - odd * sin
        out[..., 1::2] = even * sin + odd * cos
        return out

    mask = np.triu(np.full((n, n), -np.inf), 1)
    x = t["token_embd.weight"][ids]
    for l in range(hp["layers"]):
        p = f"blk.{l}."
        y = _rms(x, t[p + "attn_norm.weight"], eps)
        q = rope(qmm(y, p + "attn_q.weight").reshape(n, heads, d).transpose(1, 0, 2))
        k = rope(qmm(y, p + "attn_k.weight").reshape(n, kvh, d).transpose(1, 0, 2))
        v = qmm(y, p + "attn_v.weight").reshape(n, kvh, d).transpose(1, 0, 2)
        k, v = np.repeat(k, heads // kvh, axis=0), np.repeat(v, heads // kvh, axis=0)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(d) + mask
        att = np.exp(s - s.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        x = x + qmm((att @ v).transpose(1, 0, 2).reshape(n, h), p + "attn_output.weight")
        y = _rms(x, t[p + "ffn_norm.weight"], eps)
        gate = qmm(y, p + "ffn_gate.weight")
        x = x + qmm(gate / (1 + np.exp(-gate)) * qmm(y, p + "ffn_up.weight"), p + "ffn_down.weight")
    x = _rms(x, t["output_norm.weight"], eps)
    return qmm(x[-1:], "output.weight")[0]


def gguf_greedy(hp: dict, t: dict, ids: list[int], max_new: int, eos: int) -> tuple[list[int], float]:
    """Greedy tokens, and the smallest gap between the best and second-best logit on the
    way (how far from a tie the choice was)."""
    ids, out, gap = list(ids), [], math.inf
    for _ in range(max_new):
        logits = gguf_llama_logits(hp, t, ids)
        top = np.sort(logits)[-2:]
        gap = min(gap, float(top[1] - top[0]))
        nxt = int(np.argmax(logits))
        if nxt == eos:
            break
        out.append(nxt)
        ids.append(nxt)
    return out, gap
