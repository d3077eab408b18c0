"""Inference benchmark helper (bench/inference.sh): builds models the way the e2e tests do
(random weights, real configs and tokenizers), uploads them to a running hub, and measures
embeddings/s and generated tokens/s through the real `InferenceClient`, next to the same
forward pass in onnxruntime (bench/inference_onnx.py: the graphs built from the same
weights, checked against the numpy reference first) and in numpy in the same run. Prints one
table; the ratios are hub / onnxruntime and hub / numpy.

    python bench/inference_bench.py URL TOKEN WORKDIR
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import statistics
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
import test_inference as ti  # noqa: E402  (the builders and the numpy reference)
import test_inference_gguf as tg  # noqa: E402  (the GGUF builder)
from gguf_ref import gguf_greedy  # noqa: E402
from inference_onnx import bert_embedder, llama_generator  # noqa: E402
from huggingface_hub import HfApi, InferenceClient  # noqa: E402

SENTENCE = "the cat sleeps and the dog runs in the rain"
WORDS = "the cat sleeps and the dog runs in the rain while a bird sings on the roof".split()
# The batched rows' list: BATCH sentences of 4 to 16 words (so of different lengths, padded
# to the longest of a batch on both sides).
BATCH = int(os.environ.get("TROVE_BENCH_BATCH", "32"))
SENTENCES = [" ".join(WORDS[:4 + i % 13]) for i in range(BATCH)]
# The concurrent rows: CLIENTS clients at once, each sending one sentence per request (its
# own, of 4 to 16 words), ROUNDS rounds of CONCURRENT_S seconds each.
CLIENTS = int(os.environ.get("TROVE_BENCH_CLIENTS", "8"))
CONCURRENT_ROUNDS = 3
CONCURRENT_S = 8.0
CONCURRENT: dict[str, tuple[list[float], list[float], list[str]]] = {}
# The forward pass alone, in process on both sides: trove-infer's examples (embed_bench,
# gen_bench: the hub's code path from the uploaded folder's files, on the one worker of a
# rayon pool of THREADS threads, as the hub's inference threads are) next to onnxruntime with
# THREADS intra-op threads on the same inputs; PROCESS_ROUNDS rounds alternating the two.
EXAMPLES = os.environ.get("TROVE_BENCH_EXAMPLES", "")
THREADS = int(os.environ.get("TROVE_BENCH_THREADS", "1"))
PROCESS_ROUNDS = 3
IN_PROCESS: list[tuple] = []


def example(name: str, *args) -> dict:
    """Runs one of trove-infer's bench examples; returns its last line (JSON)."""
    out = subprocess.run([str(Path(EXAMPLES) / name), *map(str, args)], check=True, capture_output=True,
                         text=True, timeout=600).stdout
    return json.loads(out.strip().splitlines()[-1])


def in_process(label: str, unit: str, trove_run, ort_run) -> None:
    """PROCESS_ROUNDS rounds of (trove-infer, onnxruntime), each side's rate per round, per
    second of wall clock and per second of the process's CPU time (a busy machine makes a
    process wait for a core: the wall clock counts that, CPU time does not); notes
    min/median/max of each, the ratio of the medians and the load average after each round."""
    troves, orts, loads = [], [], []
    for _ in range(PROCESS_ROUNDS):
        out = trove_run()
        troves.append((out["rate"], out["cpu_rate"]))
        orts.append(ort_run())
        with open("/proc/loadavg") as f:
            loads.append(f.read().split()[0])
    IN_PROCESS.append((label, unit, troves, orts, loads))


def rate(fn, *, per_call: int, budget_s: float = 3.0, rounds: int = 100_000) -> tuple[float, float]:
    """Units per second of wall clock and per second of this process's CPU time."""
    fn()  # warm up, as the example does
    cpu = time.process_time()
    s, n = timed(fn, rounds=rounds, budget_s=budget_s)
    return per_call * n / s, per_call * n / (time.process_time() - cpu)


def unit_rows(x) -> np.ndarray:
    x = np.atleast_2d(np.asarray(x, np.float64))
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def timed(fn, *, rounds: int, budget_s: float) -> tuple[float, int]:
    """Calls fn up to `rounds` times or until `budget_s` has passed; returns (seconds, calls)."""
    start, n = time.perf_counter(), 0
    while n < rounds and time.perf_counter() - start < budget_s:
        fn()
        n += 1
    return time.perf_counter() - start, n


SERVER_PID = os.environ.get("TROVE_BENCH_SERVER_PID")
CPU_PER_REQUEST: dict[str, float] = {}


def server_cpu_s() -> float:
    """The hub process's user + system CPU seconds so far (/proc/PID/stat), 0 if unknown."""
    if not SERVER_PID:
        return 0.0
    with open(f"/proc/{SERVER_PID}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_hub(label: str, fn, *, rounds: int, budget_s: float) -> tuple[float, int]:
    """`timed` for calls to the hub, also noting the hub's CPU time per call under `label` —
    less sensitive to the machine's load than the rate."""
    cpu = server_cpu_s()
    s, n = timed(fn, rounds=rounds, budget_s=budget_s)
    CPU_PER_REQUEST[label] = (server_cpu_s() - cpu) / max(n, 1)
    return s, n


def concurrent_hub(label: str, url: str, token: str, repo: str) -> float:
    """CLIENTS threads, each with its own client, sending single sentences for CONCURRENT_S
    seconds, CONCURRENT_ROUNDS times; notes each round's rate, the hub's CPU per request and
    the load average under `label`, and returns the median rate (embeddings/s)."""
    rates, cpus, loads = [], [], []
    for _ in range(CONCURRENT_ROUNDS):
        counts = [0] * CLIENTS
        errors: list[BaseException] = []
        start = time.perf_counter()
        stop_at = start + CONCURRENT_S

        def client_loop(i: int) -> None:
            client = InferenceClient(model=f"{url}/models/{repo}", token=token)
            sentence = SENTENCES[i % len(SENTENCES)]
            try:
                while time.perf_counter() < stop_at:
                    client.feature_extraction(sentence)
                    counts[i] += 1
            except BaseException as e:  # noqa: BLE001  (reported below)
                errors.append(e)

        cpu = server_cpu_s()
        threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=CONCURRENT_S + 120)
        elapsed = time.perf_counter() - start
        if errors:
            raise errors[0]
        n = sum(counts)
        rates.append(n / elapsed)
        cpus.append((server_cpu_s() - cpu) / max(n, 1))
        with open("/proc/loadavg") as f:
            loads.append(f.read().split()[0])
    CONCURRENT[label] = (rates, cpus, loads)
    return statistics.median(rates)


def upload(api: HfApi, folder: Path, name: str) -> str:
    repo = f"admin/{name}-{int(time.time() * 1000)}"
    api.create_repo(repo)
    api.upload_folder(repo_id=repo, folder_path=str(folder))
    return repo


def encoder_case(api, url, token, work, label, **shape):
    """Two rows: one sentence per call, and a list of BATCH sentences per call (the hub's
    request with a list `inputs`; onnxruntime's padded batch with a mask; numpy, which does
    not batch, one sentence after the other)."""
    tok = ti.bert_tokenizer()
    # A realistic vocabulary size (the embedding table) when asked, tokens from the small one.
    cfg = ti.bert_config(shape.pop("vocab", tok.get_vocab_size()), **shape)
    w = ti.bert_weights(cfg, np.random.default_rng(1))
    params = sum(v.size for v in w.values())
    folder = ti.write_model(work / label, cfg, w, tok, extra=ti.sentence_transformers_files(),
                            card="---\npipeline_tag: feature-extraction\n---\n")
    repo = upload(api, folder, label)
    client = InferenceClient(model=f"{url}/models/{repo}", token=token)
    client.feature_extraction(SENTENCE)  # load
    hub_s, hub_n = timed_hub(label, lambda: client.feature_extraction(SENTENCE), rounds=200, budget_s=20)
    ids = tok.encode(SENTENCE).ids
    w32 = {k: v.astype(np.float32) for k, v in w.items()}
    embed = bert_embedder(cfg, w)
    np.testing.assert_allclose(embed(ids), ti.bert_forward(cfg, w, ids).mean(0), rtol=1e-3, atol=1e-4)
    ort_s, ort_n = timed(lambda: embed(ids), rounds=500, budget_s=20)
    ref_s, ref_n = timed(lambda: ti.bert_forward(cfg, w32, ids).mean(0), rounds=200, budget_s=20)
    one = (label, params, "embeddings/s", hub_n / hub_s, ort_n / ort_s, ref_n / ref_s)

    batch_ids = [tok.encode(s).ids for s in SENTENCES]
    want = np.array([ti.bert_forward(cfg, w, i).mean(0) for i in batch_ids])
    got = client.feature_extraction(SENTENCES)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(embed.batch(batch_ids), want, rtol=1e-3, atol=1e-4)
    hub_s, hub_n = timed_hub(f"{label} ×{BATCH}", lambda: client.feature_extraction(SENTENCES), rounds=100,
                             budget_s=20)
    ort_s, ort_n = timed(lambda: embed.batch(batch_ids), rounds=200, budget_s=20)
    ref_s, ref_n = timed(lambda: [ti.bert_forward(cfg, w32, i).mean(0) for i in batch_ids], rounds=20, budget_s=20)
    many = (f"{label} ×{BATCH}", params, "embeddings/s", BATCH * hub_n / hub_s, BATCH * ort_n / ort_s,
            BATCH * ref_n / ref_s)

    # Single sentences from CLIENTS clients at once; onnxruntime and numpy as in the first
    # row (one sentence per call: what serving each request alone costs).
    parallel = concurrent_hub(f"{label} ∥{CLIENTS}", url, token, repo)
    together = (f"{label} ∥{CLIENTS}", params, "embeddings/s", parallel, one[4], one[5])

    # The forward pass alone, in process, from the uploaded files (trove-infer tokenizes its
    # sentences; onnxruntime is given the token ids).
    if EXAMPLES:
        embed_t = bert_embedder(cfg, w, threads=THREADS)
        for sentences, ids_list in (([SENTENCE], [ids]), (SENTENCES, batch_ids)):
            n = len(sentences)
            calls = max(20, (20_000 if params < 1_000_000 else 300) // n)
            got = example("embed_bench", folder, 1, n, THREADS)
            np.testing.assert_allclose(unit_rows(got["first"]), unit_rows(embed_t.batch(ids_list)[0]),
                                       rtol=1e-3, atol=1e-4)
            in_process(f"{label} ×{n}", "embeddings/s",
                       lambda: example("embed_bench", folder, calls, n, THREADS),
                       lambda: rate(lambda: embed_t.batch(ids_list), per_call=n))
    return [one, many, together]


def decoder_case(api, url, token, work, label, new_tokens, **shape):
    tok = ti.llama_tokenizer()
    cfg = ti.llama_config(tok.get_vocab_size(), **shape)
    cfg["eos_token_id"] = None
    w = ti.llama_weights(cfg, np.random.default_rng(2))
    params = sum(v.size for v in w.values())
    folder = ti.write_model(work / label, cfg, w, tok, card="---\npipeline_tag: text-generation\n---\n")
    repo = upload(api, folder, label)
    client = InferenceClient(model=f"{url}/models/{repo}", token=token)
    client.text_generation("the cat", max_new_tokens=1)  # load
    start = time.perf_counter()
    out = client.text_generation("the cat", max_new_tokens=new_tokens, details=True)
    hub = len(out.details.tokens) / (time.perf_counter() - start)
    ids = tok.encode("the cat").ids
    generate = llama_generator(cfg, w)
    assert generate(ids, 4) == ti.greedy_ref(cfg, w, ids, 4, eos=-1), "onnxruntime computes what numpy does"
    start = time.perf_counter()
    generate(ids, new_tokens)
    ort = new_tokens / (time.perf_counter() - start)
    start = time.perf_counter()
    ti.greedy_ref(cfg, w, ids, min(new_tokens, 16), eos=-1)
    ref = min(new_tokens, 16) / (time.perf_counter() - start)

    # The generation alone, in process, from the uploaded files: prompt, then new_tokens
    # steps with the key/value cache on both sides (trove-infer also tokenizes and decodes).
    if EXAMPLES:
        generate_t = llama_generator(cfg, w, threads=THREADS)
        want = generate_t(ids, new_tokens)
        calls = 20 if params < 1_000_000 else 2
        got = example("gen_bench", folder, new_tokens, 1, THREADS)
        assert got["ids"] == want, f"{label}: trove-infer generates what onnxruntime does"
        in_process(label, "tokens/s", lambda: example("gen_bench", folder, new_tokens, calls, THREADS),
                   lambda: rate(lambda: generate_t(ids, new_tokens), per_call=new_tokens, rounds=calls,
                                budget_s=30))
    return [(label, params, "tokens/s", hub, ort, ref)]


GGUF_ARCHS = {"llama": {}, "qwen2": {"arch": "qwen2"}, "qwen3": {"arch": "qwen3"}, "phi3": {"arch": "phi3"}}


def gguf_case(api, url, token, work, label, new_tokens, rounds=5, **shape):
    """Generated tokens/s of GGUF models of each architecture run here, of the same shape
    (Q8_0 matrices), through the hub: the rounds interleave the architectures so that the
    machine's load falls on all alike; min/median/max over the rounds and each median's
    ratio to Llama's. Each model's first tokens are first checked against the numpy
    reference. No EOS token, so that every generation is `new_tokens` long."""
    tok = ti.llama_tokenizer()
    ids = tok.encode("the cat").ids
    clients, params = {}, {}
    for arch, kw in GGUF_ARCHS.items():
        data, values, hp = tg.tiny_gguf(tok.get_vocab_size(), np.random.default_rng(3), eos=None, **kw,
                                         **shape)
        params[arch] = sum(v.size for v in values.values())
        folder = work / f"{label}-{arch}"
        folder.mkdir()
        (folder / "README.md").write_text("---\npipeline_tag: text-generation\n---\n")
        (folder / "model-Q8_0.gguf").write_bytes(data)
        (folder / "tokenizer.json").write_text(tok.to_str())
        client = InferenceClient(model=f"{url}/models/{upload(api, folder, f'{label}-{arch}')}", token=token)
        out = client.text_generation("the cat", max_new_tokens=3, details=True)  # load
        want, _ = gguf_greedy(hp, values, ids, 3, eos=-1)
        assert [t.id for t in out.details.tokens] == want, f"{arch}: the hub computes what numpy does"
        clients[arch] = client
    rates = {arch: [] for arch in clients}
    for _ in range(rounds):
        for arch, client in clients.items():
            start = time.perf_counter()
            out = client.text_generation("the cat", max_new_tokens=new_tokens, details=True)
            rates[arch].append(len(out.details.tokens) / (time.perf_counter() - start))
    rows = []
    for arch, r in rates.items():
        r = sorted(r)
        rows.append((f"{label} {arch}", params[arch], min(r), r[len(r) // 2], max(r)))
    return rows


def main() -> None:
    if os.environ.get("TROVE_BENCH_ROWS") == "gguf":
        return gguf_main()
    url, token, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    api = HfApi(endpoint=url, token=token)
    cases = {
        "tiny-encoder": lambda: encoder_case(api, url, token, work, "tiny-encoder"),
        # all-MiniLM-L6-v2's shape: 30522-token table, 384 hidden, 6 layers, 12 heads, 1536
        # inner: 22.7M parameters.
        "minilm-shaped": lambda: encoder_case(api, url, token, work, "minilm-shaped", vocab=30522,
                                              hidden=384, layers=6, heads=12, inter=1536),
        "tiny-decoder": lambda: decoder_case(api, url, token, work, "tiny-decoder", 32),
        # ~100M parameters without a large vocabulary: 768 hidden, 12 layers, 2048 inner.
        "decoder-100m": lambda: decoder_case(api, url, token, work, "decoder-100m", 32, hidden=768,
                                             layers=12, heads=12, kv_heads=12, inter=2816, max_pos=512),
    }
    wanted = [r for r in os.environ.get("TROVE_BENCH_ROWS", "").split(",") if r] or list(cases)
    unknown = [r for r in wanted if r not in cases]
    if unknown:
        sys.exit(f"TROVE_BENCH_ROWS: unknown rows {unknown}; known: {list(cases)}")
    rows = [row for r in wanted for row in cases[r]()]
    print(f"{'model':<20}{'params':>12}  {'unit':<14}{'hub':>10}{'onnxrt':>10}{'numpy':>10}"
          f"{'hub/ort':>9}{'hub/np':>8}")
    for label, params, unit, hub, ort, ref in rows:
        print(f"{label:<20}{params:>12,}  {unit:<14}{hub:>10.1f}{ort:>10.1f}{ref:>10.1f}"
              f"{hub / ort:>9.2f}{hub / ref:>8.2f}")
    for label, cpu in CPU_PER_REQUEST.items():
        print(f"hub CPU per request, {label}: {cpu * 1000:.2f} ms")
    for label, (rates, cpus, loads) in CONCURRENT.items():
        print(f"{label}, {CONCURRENT_ROUNDS} rounds of {CONCURRENT_S:.0f} s: embeddings/s min/median/max "
              f"{min(rates):.1f}/{statistics.median(rates):.1f}/{max(rates):.1f}; hub CPU ms/request "
              f"{min(cpus) * 1000:.2f}/{statistics.median(cpus) * 1000:.2f}/{max(cpus) * 1000:.2f}; "
              f"load average after each round {' '.join(loads)}")
    if IN_PROCESS:
        print(f"\nforward pass alone, in process, {THREADS} thread(s) each, {PROCESS_ROUNDS} rounds alternating; "
              "min/median/max")
        print(f"{'model':<20}{'unit':<14}{'clock':<6}{'trove-infer':>26}{'onnxruntime':>26}{'ratio':>7}  load")
        for label, unit, troves, orts, loads in IN_PROCESS:
            for i, clock in ((0, "wall"), (1, "cpu")):
                t, o = sorted(r[i] for r in troves), sorted(r[i] for r in orts)
                fmt = lambda r: f"{r[0]:.1f}/{statistics.median(r):.1f}/{r[-1]:.1f}"  # noqa: E731
                print(f"{label:<20}{unit:<14}{clock:<6}{fmt(t):>26}{fmt(o):>26}"
                      f"{statistics.median(t) / statistics.median(o):>7.2f}  {' '.join(loads)}")
    print(json.dumps([dict(zip(("model", "params", "unit", "hub", "onnxruntime", "numpy"), r)) for r in rows]))
    print(json.dumps([{"model": label, "unit": unit, "trove_infer_wall_cpu": t, "onnxruntime_wall_cpu": o,
                       "load": loads}
                      for label, unit, t, o, loads in IN_PROCESS]))


def gguf_main() -> None:
    """TROVE_BENCH_ROWS=gguf: GGUF architectures side by side (tokens/s, 32 new tokens, HTTP
    round trip and prompt included)."""
    url, token, work = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    api = HfApi(endpoint=url, token=token)
    rows = []
    for label, shape in (("gguf-tiny", {}),
                         # ~25M parameters: 512 hidden, 8 layers, 8 heads (4 for k/v), 1408 inner.
                         ("gguf-25m", {"hidden": 512, "layers": 8, "heads": 8, "kv_heads": 4, "inter": 1408})):
        rows += gguf_case(api, url, token, work, label, 32, **shape)
    print(f"{'model':<18}{'params':>12}  {'tokens/s min':>13}{'median':>9}{'max':>9}{'/ llama':>9}")
    llama = {label.split()[0]: med for label, _, _, med, _ in rows if label.endswith(" llama")}
    for label, params, lo, med, hi in rows:
        print(f"{label:<18}{params:>12,}  {lo:>13.1f}{med:>9.1f}{hi:>9.1f}{med / llama[label.split()[0]]:>9.2f}")


if __name__ == "__main__":
    main()
