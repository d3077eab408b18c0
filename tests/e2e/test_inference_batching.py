"""Inference (issue 18): what a request costs and what it shares with its neighbours.

- A model's files are located once per commit, and a branch is resolved on every request:
  a push of new weights and a new `config.json` is run by the very next request, and the old
  commit still answers as before when named.
- Single-input requests for one model that wait while it is busy run together as one padded
  batch: each client, calling `InferenceClient` at the same time as seven others, gets what
  it gets alone (to 1e-5) and what the numpy reference computes; `/metrics` shows fewer runs
  than requests; one client's input that cannot run (too many tokens) gets its own 422 and
  fails nobody else.
"""

from __future__ import annotations

import httpx
import numpy as np

from conftest import make_client
from infer_ref import bert_forward, classify_ref
from test_inference import (bert_config, bert_tokenizer, bert_weights, run, sentence_transformers_files,
                            upload, write_model)

WORDS = "the cat sleeps and the dog runs in the rain while a bird sings on the roof".split()
# Eight sentences of different lengths (so batches pad), one per client.
SENTENCES = [" ".join(WORDS[i % 5:][:3 + 2 * i]) for i in range(8)]
# More tokens than the models' 64 positions: a 422 for this input only.
TOO_LONG = " ".join(WORDS * 6)

CONCURRENT = '''
import threading
from huggingface_hub import InferenceClient
texts, task, params = ARGS["texts"], ARGS["task"], ARGS["params"]
out = [None] * len(texts)
barrier = threading.Barrier(len(texts))
def call(i):
    c = InferenceClient(model=ARGS["url"], token=os.environ["HF_TOKEN"])
    barrier.wait()
    for _ in range(ARGS["repeat"]):
        if task == "feature-extraction":
            got = attempt(lambda: c.feature_extraction(texts[i]).tolist())
        else:
            got = attempt(lambda: [{"label": e.label, "score": e.score}
                                   for e in c.text_classification(texts[i], **params[i])])
        if not got["ok"]:
            break
    out[i] = got
threads = [threading.Thread(target=call, args=(i,)) for i in range(len(texts))]
for t in threads:
    t.start()
for t in threads:
    t.join(timeout=300)
emit(out)
'''


def single_counts(trove) -> tuple[float, float]:
    r = httpx.get(f"{trove.url}/metrics", headers={"authorization": f"Bearer {trove.admin_token}"}, timeout=30)
    assert r.status_code == 200, r.text
    values = dict(line.split(" ", 1) for line in r.text.splitlines() if line and not line.startswith("#"))
    return float(values["trove_inference_single_requests_total"]), float(values["trove_inference_single_runs_total"])


def test_a_push_is_run_by_the_next_request_and_the_old_commit_still_answers(trove, tmp_path):
    client = make_client(trove, tmp_path)
    tok = bert_tokenizer()
    text = "the cat sleeps in the rain"
    ids = tok.encode(text).ids
    cfg = bert_config(tok.get_vocab_size(), labels=["NEGATIVE", "POSITIVE"])
    w = bert_weights(cfg, np.random.default_rng(31), prefix="bert.")
    repo = upload(client, write_model(tmp_path / "v1", cfg, w, tok, card="---\npipeline_tag: text-classification\n---\n"),
                  prefix="pushed")
    url, auth = f"{trove.url}/models/{repo}", {"authorization": f"Bearer {trove.admin_token}"}

    def scores(revision=None):
        r = httpx.post(url, params={"revision": revision} if revision else None, json={"inputs": text},
                       headers=auth, timeout=120)
        assert r.status_code == 200, r.text
        return {e["label"]: e["score"] for e in r.json()[0]}

    def expected(cfg, w):
        return dict(zip(cfg["id2label"].values(), classify_ref(cfg, w, ids), strict=True))

    first = scores()
    for label, p in expected(cfg, w).items():
        assert abs(first[label] - p) < 1e-4, (label, first, p)
    old_commit = httpx.get(f"{trove.url}/api/models/{repo}", headers=auth, timeout=30).json()["sha"]

    # New weights and new labels in one commit: the next request runs them.
    cfg2 = bert_config(tok.get_vocab_size(), labels=["SAD", "HAPPY", "CALM"])
    w2 = bert_weights(cfg2, np.random.default_rng(32), prefix="bert.")
    folder = write_model(tmp_path / "v2", cfg2, w2, tok, card="---\npipeline_tag: text-classification\n---\n")
    run(client, '''
        from huggingface_hub import HfApi
        HfApi().upload_folder(repo_id=ARGS["repo"], folder_path=ARGS["folder"])
        emit({"ok": True})
    ''', repo=repo, folder=str(folder))
    second = scores()
    assert set(second) == {"SAD", "HAPPY", "CALM"}, second
    for label, p in expected(cfg2, w2).items():
        assert abs(second[label] - p) < 1e-4, (label, second, p)
    # The old commit, named, still runs the old files.
    again = scores(old_commit)
    assert again.keys() == first.keys()
    for label in first:
        assert abs(again[label] - first[label]) < 1e-6
    # From the client: `?revision=` inside the model's URL (docs/inference.md).
    out = run(client, '''
        from huggingface_hub import InferenceClient
        c = InferenceClient(model=ARGS["url"], token=os.environ["HF_TOKEN"])
        emit({e.label: e.score for e in c.text_classification(ARGS["text"])})
    ''', url=f"{url}?revision={old_commit}", text=text)
    assert out.keys() == first.keys()
    for label in first:
        assert abs(out[label] - first[label]) < 1e-6


def test_concurrent_single_inputs_run_together_and_answer_as_alone(trove, tmp_path):
    client = make_client(trove, tmp_path)
    tok = bert_tokenizer()
    # Wide enough that a forward pass takes a while, so that clients find the model busy.
    cfg = bert_config(tok.get_vocab_size(), hidden=128, layers=4, heads=4, inter=512)
    w = bert_weights(cfg, np.random.default_rng(33))
    extra = sentence_transformers_files()
    extra["1_Pooling/config.json"] = extra["1_Pooling/config.json"].replace('"word_embedding_dimension": 32',
                                                                            '"word_embedding_dimension": 128')
    folder = write_model(tmp_path / "enc", cfg, w, tok, extra=extra, card="---\npipeline_tag: feature-extraction\n---\n")
    repo = upload(client, folder, prefix="batched")
    url = f"{trove.url}/models/{repo}"
    auth = {"authorization": f"Bearer {trove.admin_token}"}

    # One at a time: each request finds the model idle and runs at once, alone.
    requests0, runs0 = single_counts(trove)
    alone = []
    for s in SENTENCES:
        r = httpx.post(url, json={"inputs": s}, headers=auth, timeout=120)
        assert r.status_code == 200, r.text
        alone.append(np.array(r.json()))
        np.testing.assert_allclose(alone[-1], bert_forward(cfg, w, tok.encode(s).ids).mean(0), rtol=1e-3, atol=1e-4)
    requests1, runs1 = single_counts(trove)
    assert (requests1 - requests0, runs1 - runs0) == (len(SENTENCES), len(SENTENCES))

    # Eight clients at once (the default queue admits nine), several rounds each; requests
    # that find the model busy run together. Timing decides how many do: played again (at
    # most 5 times) until some did.
    together = False
    for _ in range(5):
        requests0, runs0 = single_counts(trove)
        out = run(client, CONCURRENT, url=url, texts=SENTENCES, task="feature-extraction",
                  params=[{}] * len(SENTENCES), repeat=6)
        requests1, runs1 = single_counts(trove)
        for i, got in enumerate(out):
            assert got["ok"], got
            np.testing.assert_allclose(np.array(got["value"]), alone[i], rtol=0, atol=1e-5)
        assert requests1 - requests0 == 6 * len(SENTENCES)
        if runs1 - runs0 < requests1 - requests0:
            together = True
            break
    assert together, "no two waiting requests ran together"

    # One client's input cannot run: its own 422, every other client its own answer.
    texts = SENTENCES[:7] + [TOO_LONG]
    for _ in range(5):
        requests0, runs0 = single_counts(trove)
        out = run(client, CONCURRENT, url=url, texts=texts, task="feature-extraction",
                  params=[{}] * len(texts), repeat=1)
        requests1, runs1 = single_counts(trove)
        assert out[-1]["ok"] is False and out[-1]["status"] == 422, out[-1]
        assert "less than 64 tokens" in out[-1]["msg"], out[-1]
        for i, got in enumerate(out[:-1]):
            assert got["ok"], got
            np.testing.assert_allclose(np.array(got["value"]), alone[i], rtol=0, atol=1e-5)
        if runs1 - runs0 < requests1 - requests0:
            break


def test_concurrent_classifications_keep_their_own_parameters(trove, tmp_path):
    """Requests with different `function_to_apply` never share a run (their scores differ);
    `top_k` is each request's own."""
    client = make_client(trove, tmp_path)
    tok = bert_tokenizer()
    labels = ["NEGATIVE", "POSITIVE", "NEUTRAL"]
    cfg = bert_config(tok.get_vocab_size(), labels=labels, hidden=128, layers=4, heads=4, inter=512)
    w = bert_weights(cfg, np.random.default_rng(34), prefix="bert.")
    repo = upload(client, write_model(tmp_path / "clf", cfg, w, tok, card="---\npipeline_tag: text-classification\n---\n"),
                  prefix="batched-clf")
    url = f"{trove.url}/models/{repo}"
    params = [{"top_k": 1 + i % 3} if i % 2 else {"function_to_apply": "sigmoid"} for i in range(8)]
    out = run(client, CONCURRENT, url=url, texts=SENTENCES, task="text-classification", params=params, repeat=4)
    for i, got in enumerate(out):
        assert got["ok"], got
        ids = tok.encode(SENTENCES[i]).ids
        probs = classify_ref(cfg, w, ids)
        if "function_to_apply" in params[i]:
            x = bert_forward(cfg, w, ids, prefix="bert.")
            pooled = np.tanh(x[0] @ w["bert.pooler.dense.weight"].T.astype(np.float64) + w["bert.pooler.dense.bias"])
            logits = pooled @ w["classifier.weight"].T.astype(np.float64) + w["classifier.bias"]
            probs = 1 / (1 + np.exp(-logits))
        want = sorted(zip(labels, probs), key=lambda p: -p[1])[:params[i].get("top_k", 3)]
        assert [e["label"] for e in got["value"]] == [l for l, _ in want], (i, got)
        np.testing.assert_allclose([e["score"] for e in got["value"]], [p for _, p in want], rtol=1e-3, atol=1e-5)
