"""The libraries ML people push and load with, unchanged against the server, with the client
as installed (hf_xet active): transformers' push_to_hub / from_pretrained for a config and a
tokenizer (no PyTorch needed), and datasets' push_to_hub / load_dataset, streaming included,
both straight to main and as a pull request."""

from __future__ import annotations

TRANSFORMERS = """
import os
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoConfig, AutoTokenizer, BertConfig, PreTrainedTokenizerFast
repo = ARGS["repo"]
config = BertConfig(hidden_size=48, num_hidden_layers=2, num_attention_heads=2, intermediate_size=96,
                    vocab_size=64)
config.push_to_hub(repo)
vocab = {w: i for i, w in enumerate(["[UNK]", "[PAD]", "hello", "world", "trove", "hub"])}
raw = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
raw.pre_tokenizer = pre_tokenizers.Whitespace()
tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]", pad_token="[PAD]")
tok.push_to_hub(repo, commit_message="Add tokenizer")
tok.add_tokens(["newword"])  # a change, or the client skips the empty commit
pr = tok.push_to_hub(repo, commit_message="New token, as a PR", create_pr=True)
loaded_config = AutoConfig.from_pretrained(repo)
loaded_tok = AutoTokenizer.from_pretrained(repo)
pr_tok = AutoTokenizer.from_pretrained(repo, revision="refs/pr/1")
emit({"pr_ids": pr_tok("hello newword")["input_ids"], "hidden_size": loaded_config.hidden_size, "layers": loaded_config.num_hidden_layers,
      "model_type": loaded_config.model_type,
      "ids": loaded_tok("hello trove hub nope")["input_ids"],
      "files": sorted(api.list_repo_files(repo)), "pr_url": str(getattr(pr, "pr_url", pr))})
"""


def test_transformers_push_to_hub_and_from_pretrained(client, hub):
    repo = hub.create_repo("tf")
    r = client.py(TRANSFORMERS, xet=True, args={"repo": repo}).result
    assert (r["hidden_size"], r["layers"], r["model_type"]) == (48, 2, "bert")
    assert r["ids"] == [2, 4, 5, 0], "main has the tokenizer without the PR's token"
    assert r["pr_ids"] == [2, 6]
    assert {"config.json", "tokenizer.json", "tokenizer_config.json"} <= set(r["files"])
    assert r["pr_url"].endswith(f"{repo}/discussions/1"), r["pr_url"]
    d = hub.http.get(f"/api/models/{repo}/discussions/1", headers=hub.auth(hub.token())).json()
    assert d["isPullRequest"] and d["status"] == "open"


DATASETS = """
from datasets import Dataset, load_dataset
repo = ARGS["repo"]
rows = {"text": [f"row {i} " + "x" * (i % 50) for i in range(ARGS["n"])], "label": [i % 3 for i in range(ARGS["n"])]}
Dataset.from_dict(rows).push_to_hub(repo, commit_message="Upload dataset")
loaded = load_dataset(repo, split="train")
streamed = list(load_dataset(repo, split="train", streaming=True))
more = {"text": ["extra"], "label": [1]}
pr = Dataset.from_dict(more).push_to_hub(repo, config_name="extra", create_pr=True)
info = api.dataset_info(repo)
emit({"n": len(loaded), "same": loaded.to_dict() == rows, "streamed": len(streamed),
      "first": streamed[0], "files": sorted(api.list_repo_files(repo, repo_type="dataset")),
      "pr_url": str(getattr(pr, "pr_url", pr)), "card_data": info.card_data.to_dict() if info.card_data else None})
"""


def test_datasets_push_to_hub_and_load_dataset(client, hub):
    repo = f"admin/{hub.create_repo('ds', repo_type='dataset').split('/')[1]}"
    r = client.py(DATASETS, xet=True, args={"repo": repo, "n": 5000}).result
    assert r["n"] == 5000 and r["same"] is True
    assert r["streamed"] == 5000 and r["first"] == {"text": "row 0 ", "label": 0}
    assert any(f.startswith("data/train-") and f.endswith(".parquet") for f in r["files"]), r["files"]
    assert "README.md" in r["files"]
    assert r["pr_url"].endswith(f"{repo}/discussions/1"), r["pr_url"]
    assert r["card_data"] and "dataset_info" in r["card_data"]
    # The PR added the "extra" config without touching main.
    files = hub.http.get(f"/api/datasets/{repo}/tree/refs%2Fpr%2F1?recursive=true",
                         headers=hub.auth(hub.token())).json()
    assert any(e["path"].startswith("extra/") for e in files), files
    assert not any(f.startswith("extra/") for f in r["files"])
