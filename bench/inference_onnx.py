"""The benchmark's second runtime (bench/inference.sh): the same forward passes as the hub
runs — a BERT encoder with mean pooling, a Llama decoder with a key/value cache — built as
ONNX graphs from the same weights with `onnx.helper` and run by onnxruntime on the CPU.
Written from the architectures' definitions (as tests/e2e/infer_ref.py), not from the hub's
code. Each builder returns a function; `check` compares it with the numpy reference.
"""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class Graph:
    """A small builder: named constants, nodes with fresh output names."""

    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def const(self, array, name=None) -> str:
        self.n += 1
        name = name or f"c{self.n}"
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, kind, *inputs, **attrs) -> str:
        self.n += 1
        out = f"t{self.n}"
        self.nodes.append(helper.make_node(kind, list(inputs), [out], **attrs))
        return out

    def linear(self, x, w, b=None) -> str:  # w: [out, in] as PyTorch stores it
        y = self.op("MatMul", x, self.const(np.ascontiguousarray(w.T.astype(np.float32))))
        return self.op("Add", y, self.const(b.astype(np.float32))) if b is not None else y

    def session(self, inputs, outputs, threads: int):
        graph = helper.make_graph(self.nodes, "g", inputs, outputs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _heads(g: Graph, x, heads, d):  # [1, n, heads*d] -> [1, heads, n, d]
    return g.op("Transpose", g.op("Reshape", x, g.const(np.array([1, -1, heads, d], np.int64))), perm=[0, 2, 1, 3])


def _merge(g: Graph, x, width):  # [1, heads, n, d] -> [1, n, heads*d]
    return g.op("Reshape", g.op("Transpose", x, perm=[0, 2, 1, 3]), g.const(np.array([1, -1, width], np.int64)))


def bert_embedder(cfg: dict, w: dict, threads: int = 2):
    """BertModel + mean pooling over a padded batch: a list of id lists -> one vector each.
    Shorter inputs are padded at the end; an additive mask keeps padding out of attention and
    the mean (what sentence-transformers does with the attention mask). `embed(ids)` runs one
    input, `embed_batch([ids, ...])` several as one batch."""
    g = Graph()
    h, heads, eps = cfg["hidden_size"], cfg["num_attention_heads"], cfg["layer_norm_eps"]
    d = h // heads
    f = {k: v.astype(np.float32) for k, v in w.items()}
    ln = lambda x, p: g.op("LayerNormalization", x, g.const(f[p + ".weight"]), g.const(f[p + ".bias"]),  # noqa: E731
                           axis=-1, epsilon=eps)
    split = g.const(np.array([0, -1, heads, d], np.int64))  # 0: the batch dimension as it is
    merge = g.const(np.array([0, -1, h], np.int64))
    x = g.op("Add", g.op("Gather", g.const(f["embeddings.word_embeddings.weight"]), "ids"),
             g.op("Gather", g.const(f["embeddings.position_embeddings.weight"]), "positions"))
    x = ln(g.op("Add", x, g.const(f["embeddings.token_type_embeddings.weight"][0])), "embeddings.LayerNorm")
    scale = g.const(np.float32(1 / math.sqrt(d)))
    for l in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{l}."
        lin = lambda y, name: g.linear(y, f[p + name + ".weight"], f[p + name + ".bias"])  # noqa: E731
        q, k, v = (g.op("Transpose", g.op("Reshape", lin(x, f"attention.self.{m}"), split), perm=[0, 2, 1, 3])
                   for m in ("query", "key", "value"))
        scores = g.op("Add", g.op("Mul", g.op("MatMul", q, g.op("Transpose", k, perm=[0, 1, 3, 2])), scale), "bias")
        att = g.op("Softmax", scores, axis=-1)
        context = g.op("Reshape", g.op("Transpose", g.op("MatMul", att, v), perm=[0, 2, 1, 3]), merge)
        x = ln(g.op("Add", lin(context, "attention.output.dense"), x), p + "attention.output.LayerNorm")
        inner = lin(x, "intermediate.dense")
        gelu = g.op("Mul", g.op("Mul", inner, g.const(np.float32(0.5))),
                    g.op("Add", g.op("Erf", g.op("Div", inner, g.const(np.float32(math.sqrt(2))))), g.const(np.float32(1))))
        x = ln(g.op("Add", lin(gelu, "output.dense"), x), p + "output.LayerNorm")
    axis = g.const(np.array([1], np.int64))
    summed = g.op("ReduceSum", g.op("Mul", x, "mask"), axis, keepdims=0)
    g.op("Div", summed, g.op("ReduceSum", "mask", axis, keepdims=0))
    g.nodes[-1].output[0] = "embedding"
    sess = g.session([helper.make_tensor_value_info("ids", TensorProto.INT64, [None, None]),
                      helper.make_tensor_value_info("positions", TensorProto.INT64, [None, None]),
                      helper.make_tensor_value_info("bias", TensorProto.FLOAT, [None, 1, 1, None]),
                      helper.make_tensor_value_info("mask", TensorProto.FLOAT, [None, None, 1])],
                     [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [None, h])], threads)

    def embed_batch(batch):
        n = max(len(ids) for ids in batch)
        ids = np.zeros((len(batch), n), np.int64)
        mask = np.zeros((len(batch), n), np.float32)
        for i, one in enumerate(batch):
            ids[i, :len(one)] = one
            mask[i, :len(one)] = 1
        positions = np.broadcast_to(np.arange(n, dtype=np.int64), ids.shape)
        bias = ((mask - 1) * np.float32(1e9))[:, None, None, :]
        return sess.run(None, {"ids": ids, "positions": positions, "bias": bias, "mask": mask[:, :, None]})[0]

    def embed(ids):
        return embed_batch([ids])[0]
    embed.batch = embed_batch
    return embed


def llama_generator(cfg: dict, w: dict, threads: int = 2):
    """LlamaForCausalLM with a key/value cache: (prompt ids, n) -> n greedy tokens."""
    g = Graph()
    h, heads, kvh = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d, eps, layers = h // heads, cfg["rms_norm_eps"], cfg["num_hidden_layers"]
    f = {k: v.astype(np.float32) for k, v in w.items()}

    def rms(x, name):
        var = g.op("ReduceMean", g.op("Mul", x, x), axes=[-1], keepdims=1)
        return g.op("Mul", g.op("Div", x, g.op("Sqrt", g.op("Add", var, g.const(np.float32(eps))))), g.const(f[name]))

    half = [g.const(np.array([0], np.int64)), g.const(np.array([d // 2], np.int64)),
            g.const(np.array([d], np.int64)), g.const(np.array([3], np.int64))]

    def rope(x):  # [1, H, n, d], halves rotated (HF's rotate_half)
        x1 = g.op("Slice", x, half[0], half[1], half[3])
        x2 = g.op("Slice", x, half[1], half[2], half[3])
        rotated = g.op("Concat", g.op("Neg", x2), x1, axis=-1)
        return g.op("Add", g.op("Mul", x, "cos"), g.op("Mul", rotated, "sin"))

    x = g.op("Gather", g.const(f["model.embed_tokens.weight"]), "ids")
    scale = g.const(np.float32(1 / math.sqrt(d)))
    tile = g.const(np.array([1, 1, heads // kvh, 1, 1], np.int64))
    merge = g.const(np.array([1, heads, -1, d], np.int64))
    inputs = [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, None]),
              helper.make_tensor_value_info("cos", TensorProto.FLOAT, [None, d]),
              helper.make_tensor_value_info("sin", TensorProto.FLOAT, [None, d]),
              helper.make_tensor_value_info("mask", TensorProto.FLOAT, [None, None])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, None, cfg["vocab_size"]])]
    for l in range(layers):
        p = f"model.layers.{l}."
        y = rms(x, p + "input_layernorm.weight")
        q = rope(_heads(g, g.linear(y, f[p + "self_attn.q_proj.weight"]), heads, d))
        k = rope(_heads(g, g.linear(y, f[p + "self_attn.k_proj.weight"]), kvh, d))
        v = _heads(g, g.linear(y, f[p + "self_attn.v_proj.weight"]), kvh, d)
        k = g.op("Concat", f"past_k{l}", k, axis=2)
        v = g.op("Concat", f"past_v{l}", v, axis=2)
        g.nodes.append(helper.make_node("Identity", [k], [f"present_k{l}"]))
        g.nodes.append(helper.make_node("Identity", [v], [f"present_v{l}"]))
        for name in ("k", "v"):
            inputs.append(helper.make_tensor_value_info(f"past_{name}{l}", TensorProto.FLOAT, [1, kvh, None, d]))
            outputs.append(helper.make_tensor_value_info(f"present_{name}{l}", TensorProto.FLOAT, [1, kvh, None, d]))
        rep = lambda t: g.op("Reshape", g.op("Tile", g.op("Unsqueeze", t, g.const(np.array([2], np.int64))), tile), merge)  # noqa: E731
        s = g.op("Add", g.op("Mul", g.op("MatMul", q, g.op("Transpose", rep(k), perm=[0, 1, 3, 2])), scale), "mask")
        ctx = _merge(g, g.op("MatMul", g.op("Softmax", s, axis=-1), rep(v)), h)
        x = g.op("Add", x, g.linear(ctx, f[p + "self_attn.o_proj.weight"]))
        y = rms(x, p + "post_attention_layernorm.weight")
        gate = g.linear(y, f[p + "mlp.gate_proj.weight"])
        act = g.op("Mul", gate, g.op("Sigmoid", gate))
        x = g.op("Add", x, g.linear(g.op("Mul", act, g.linear(y, f[p + "mlp.up_proj.weight"])),
                                    f[p + "mlp.down_proj.weight"]))
    head = f["lm_head.weight"] if "lm_head.weight" in f else f["model.embed_tokens.weight"]
    g.nodes.append(helper.make_node("MatMul", [rms(x, "model.norm.weight"),
                                               g.const(np.ascontiguousarray(head.T))], ["logits"]))
    sess = g.session(inputs, outputs, threads)
    inv = 1.0 / cfg["rope_theta"] ** (np.arange(0, d, 2) / d)

    def generate(ids, n):
        past = {f"past_{kind}{l}": np.zeros((1, kvh, 0, d), np.float32) for l in range(layers) for kind in "kv"}
        out, feed, pos = [], list(ids), 0
        for _ in range(n):
            m = len(feed)
            angles = np.arange(pos, pos + m)[:, None] * inv[None, :]
            angles = np.concatenate([angles, angles], -1)
            mask = np.triu(np.full((m, pos + m), -np.inf, np.float32), pos + 1)
            res = sess.run(None, {"ids": np.asarray([feed], np.int64), "cos": np.cos(angles).astype(np.float32),
                                  "sin": np.sin(angles).astype(np.float32), "mask": mask, **past})
            past = {f"past_{kind}{l}": res[1 + 2 * l + (kind == "v")] for l in range(layers) for kind in "kv"}
            nxt = int(np.argmax(res[0][0, -1]))
            out.append(nxt)
            pos += m
            feed = [nxt]
        return out
    return generate
