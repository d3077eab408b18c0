"""Cards, metadata, search, likes and download counts with the real client.

These tests run against a server of their own (`search_server`), seeded once per module, so
that listings hold exactly the repositories created here and order can be asserted exactly.
"""

from __future__ import annotations

import json
import struct
import time

import pytest

from conftest import Hub, User, _start, make_client

MIT_EN_CLASSIFIER = ["transformers", "en", "license:mit"]


def card(meta: str, body: str = "# Card\n") -> bytes:
    return f"---\n{meta.strip()}\n---\n{body}".encode()


def safetensors_bytes(tensors: dict[str, tuple[str, list[int]]]) -> bytes:
    """A valid safetensors file: header + zeroed data."""
    width = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8}
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, (dtype, shape) in tensors.items():
        n = width[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"\0" * offset


DETECTOR_TENSORS = {"w": ("F32", [4, 8]), "b": ("F16", [8]), "s": ("F32", [])}
DETECTOR_PARAMS = {"F32": 33, "F16": 8}
SHARD_1 = {"a": ("BF16", [16, 16])}
SHARD_2 = {"b": ("BF16", [16]), "c": ("F32", [2, 3])}
SHARDED_PARAMS = {"BF16": 272, "F32": 6}


MODELS = {
    # name: (namespace, card, private, extra files)
    "bert-sentiment": ("acme", "library_name: transformers\nlanguage: en\nlicense: mit\n"
                       "pipeline_tag: text-classification\ntags: [sentiment]", False),
    "bert-tiny-fr": ("acme", "library_name: transformers\nlanguage: fr\nlicense: mit\n"
                     "pipeline_tag: text-classification", False),
    "roberta-reviews": ("acme", "library_name: transformers\nlanguage: [en, de]\nlicense: mit\n"
                        "pipeline_tag: text-classification\ndatasets: [acme/reviews-ds]", False),
    "detector": ("acme", "library_name: transformers\nlanguage: en\nlicense: apache-2.0\n"
                 "pipeline_tag: object-detection\nbase_model: acme/bert-sentiment", False),
    "gpt-mini": ("acme", "library_name: transformers\nlanguage: en\nlicense: mit\n"
                 "pipeline_tag: text-generation", False),
    "secret-bert": ("acme", "library_name: transformers\nlanguage: en\nlicense: mit\n"
                    "pipeline_tag: text-classification", True),
    "bert-other": ("other", "library_name: transformers\nlanguage: en\nlicense: mit\n"
                   "pipeline_tag: text-classification", False),
}
DATASETS = {
    "reviews-ds": "task_categories: [text-classification]\nlicense: mit\nlanguage: [en]",
    "images-ds": "task_categories: [image-classification]\nlicense: mit",
    "text-apache": "task_categories: [text-classification]\nlicense: apache-2.0",
}
SPACES = {
    "demo-a": "title: A\nemoji: 🅰️\ncolorFrom: red\ncolorTo: blue\nsdk: gradio\nsdk_version: 4.36.1\n"
              "app_file: app.py\npinned: false\nlicense: mit",
    "demo-b": "title: B\nsdk: streamlit\nmodels: [acme/detector]",
    "demo-c": "title: C\nsdk: static",
}
DOWNLOADS = {"bert-sentiment": 5, "bert-other": 4, "roberta-reviews": 3, "detector": 2,
             "secret-bert": 10}

SEED = """
from huggingface_hub import CommitOperationAdd
for name, (ns, meta, private) in ARGS["models"].items():
    repo = f"{ns}/{name}"
    ops = [CommitOperationAdd("README.md", ARGS["cards"][name].encode()),
           CommitOperationAdd("config.json", b'{"model_type": "bert", "architectures": ["BertModel"]}')]
    api.create_commit(repo, operations=ops, commit_message="card")
for name in ARGS["datasets"]:
    api.create_commit(f"acme/{name}", repo_type="dataset", commit_message="card",
                      operations=[CommitOperationAdd("README.md", ARGS["cards"][name].encode()),
                                  CommitOperationAdd("data/train.csv", b"text,label\\nhi,1\\n")])
for name in ARGS["spaces"]:
    api.create_commit(f"acme/{name}", repo_type="space", commit_message="card",
                      operations=[CommitOperationAdd("README.md", ARGS["cards"][name].encode()),
                                  CommitOperationAdd("app.py", b"print('hi')\\n")])
emit({"ok": True})
"""


class Seeded:
    def __init__(self, server, hub: Hub, acme: User, bo: User, carol: User):
        self.server, self.hub, self.acme, self.bo, self.carol = server, hub, acme, bo, carol


def _create(hub: Hub, token: str, namespace: str, name: str, repo_type: str = "model",
            private: bool = False) -> None:
    body = {"name": name, "organization": namespace, "type": repo_type,
            "visibility": "private" if private else "public"}
    if repo_type == "space":
        body["sdk"] = "gradio"
    r = hub.http.post("/api/repos/create", json=body, headers=hub.auth(token))
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> Seeded:
    server = _start(tmp_path_factory, "trove-search")
    hub = Hub(server)
    users = {}
    for name in ("acme", "bo", "carol"):
        server.create_user(name, email=f"{name}@example.invalid")
        users[name] = User(name, server.create_token(name, role="write", name="e2e"))
    # Creation order = commit order below, so equal commit seconds tie-break the same way.
    for name, (ns, _, private) in MODELS.items():
        _create(hub, server.admin_token if ns != "acme" else users["acme"].token, ns, name,
                private=private)
    for name in DATASETS:
        _create(hub, users["acme"].token, "acme", name, "dataset")
    for name in SPACES:
        _create(hub, users["acme"].token, "acme", name, "space")

    work = tmp_path_factory.mktemp("search-client")
    client = make_client(server, work)
    cards = {n: card(m).decode() for n, (_, m, _) in MODELS.items()}
    cards.update({n: card(m).decode() for n, m in DATASETS.items()})
    cards.update({n: card(m).decode() for n, m in SPACES.items()})
    client.py(SEED, args={"models": MODELS, "datasets": list(DATASETS), "spaces": list(SPACES),
                          "cards": cards})

    # Weights: a single-file safetensors model over LFS, a sharded one over Xet.
    single = work / "model.safetensors"
    single.write_bytes(safetensors_bytes(DETECTOR_TENSORS))
    client.py('api.upload_file(path_or_fileobj=ARGS["f"], path_in_repo="model.safetensors", '
              'repo_id="acme/detector")', args={"f": str(single)})
    s1, s2 = work / "s1.safetensors", work / "s2.safetensors"
    s1.write_bytes(safetensors_bytes(SHARD_1))
    s2.write_bytes(safetensors_bytes(SHARD_2))
    index = {"metadata": {"total_size": 1}, "weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors",
        "c": "model-00002-of-00002.safetensors"}}
    client.py("""
from huggingface_hub import CommitOperationAdd
api.create_commit("acme/gpt-mini", commit_message="weights", operations=[
    CommitOperationAdd("model-00001-of-00002.safetensors", ARGS["s1"]),
    CommitOperationAdd("model-00002-of-00002.safetensors", ARGS["s2"]),
    CommitOperationAdd("model.safetensors.index.json", ARGS["index"].encode()),
])
""", xet=True, args={"s1": str(s1), "s2": str(s2), "index": json.dumps(index)})

    # Downloads: one GET of config.json is one download.
    for name, n in DOWNLOADS.items():
        ns, _, private = MODELS[name]
        token = users["acme"].token if private else None
        for _ in range(n):
            r = hub.http.get(f"/{ns}/{name}/resolve/main/config.json", headers=hub.auth(token))
            assert r.status_code == 200, r.text
    # Likes are given in the web UI; the API call is the same POST.
    for who, repos in {"bo": ["models/acme/detector", "datasets/acme/reviews-ds",
                              "spaces/acme/demo-b"],
                       "carol": ["spaces/acme/demo-b", "spaces/acme/demo-c"],
                       "acme": ["models/acme/secret-bert", "models/acme/detector"]}.items():
        for path in repos:
            r = hub.http.post(f"/api/{path}/like", headers=hub.auth(users[who].token))
            assert r.status_code == 200, r.text
    yield Seeded(server, hub, users["acme"], users["bo"], users["carol"])
    hub.close()
    server.stop()


@pytest.fixture
def sclient(seeded, tmp_path):
    return make_client(seeded.server, tmp_path)


def ids(items) -> list[str]:
    return [i["id"] for i in items]


LISTS = """
def names(items):
    return [i.id for i in items]
out = {}
out["filtered"] = names(api.list_models(filter=ARGS["filter"], pipeline_tag="text-classification",
                                        sort="downloads", limit=20))
found = list(api.list_models(search="bert", author="acme", sort="last_modified", cardData=True))
out["search"] = names(found)
out["search_card_license"] = [m.card_data.license if m.card_data else None for m in found]
out["datasets"] = names(api.list_datasets(filter=["task_categories:text-classification", "license:mit"]))
out["datasets_kw"] = names(api.list_datasets(task_categories="text-classification", sort="created_at"))
out["spaces_by_likes"] = names(api.list_spaces(sort="likes"))
out["spaces_likes"] = [s.likes for s in api.list_spaces(sort="likes")]
out["spaces_using_detector"] = names(api.list_spaces(models="acme/detector"))
out["acme_models"] = sorted(names(api.list_models(author="acme")))
out["secret_search"] = names(api.list_models(search="secret"))
out["params"] = names(api.list_models(num_parameters="min:1,max:100", sort="created_at"))
out["gated"] = names(api.list_models(gated=True))
out["expand"] = [{"id": m.id, "downloads": m.downloads, "likes": m.likes, "sha": m.sha}
                 for m in api.list_models(author="acme", sort="likes", limit=2,
                                          expand=["downloads", "likes"])]
out["full"] = [sorted(s.rfilename for s in m.siblings)
               for m in api.list_models(search="detector", full=True)]
emit(out)
"""


def test_listing_filters_sorts_and_search_exactly(seeded, sclient):
    r = sclient.py(LISTS, token=None, args={"filter": MIT_EN_CLASSIFIER}).result
    assert r["filtered"] == ["acme/bert-sentiment", "other/bert-other", "acme/roberta-reviews"]
    # "bert" is a substring of ids, as on the Hub: roberta-reviews matches too.
    assert r["search"] == ["acme/roberta-reviews", "acme/bert-tiny-fr", "acme/bert-sentiment"]
    assert r["search_card_license"] == ["mit", "mit", "mit"]
    assert r["datasets"] == ["acme/reviews-ds"]
    assert r["datasets_kw"] == ["acme/text-apache", "acme/reviews-ds"]
    assert r["spaces_by_likes"] == ["acme/demo-b", "acme/demo-c", "acme/demo-a"]
    assert r["spaces_likes"] == [2, 1, 0]
    assert r["spaces_using_detector"] == ["acme/demo-b"]
    assert r["acme_models"] == sorted(f"acme/{n}" for n, (ns, _, p) in MODELS.items()
                                      if ns == "acme" and not p)
    assert r["secret_search"] == [], "private repos never appear for outsiders"
    assert r["params"] == ["acme/detector"], "41 parameters; the sharded model has 278"
    assert r["gated"] == []
    # Likes: detector 2 (bo, acme); the private repo's like does not make it visible.
    assert r["expand"][0] == {"id": "acme/detector", "downloads": 2, "likes": 2,
                              "sha": None}, r["expand"]
    assert r["full"] == [[".gitattributes", "README.md", "config.json", "model.safetensors"]]


def test_owner_and_admin_see_private_repos_outsiders_never(seeded, sclient):
    code = """
emit({"filtered": [m.id for m in api.list_models(filter=ARGS["filter"], sort="downloads")],
      "secret": [m.id for m in api.list_models(search="secret")],
      "liked_by_acme": api.list_liked_repos("acme").models})
"""
    args = {"filter": MIT_EN_CLASSIFIER}
    owner = sclient.py(code, token=seeded.acme.token, args=args).result
    assert owner["filtered"] == ["acme/secret-bert", "acme/bert-sentiment", "other/bert-other",
                                 "acme/roberta-reviews", "acme/gpt-mini"]
    assert owner["secret"] == ["acme/secret-bert"]
    assert sorted(owner["liked_by_acme"]) == ["acme/detector", "acme/secret-bert"]
    admin = sclient.py(code, args=args).result
    assert admin["secret"] == ["acme/secret-bert"]
    for outsider in (seeded.bo.token, None):
        r = sclient.py(code, token=outsider, args=args).result
        assert "acme/secret-bert" not in r["filtered"]
        assert r["secret"] == []
        assert r["liked_by_acme"] == ["acme/detector"]


def test_likes_likers_and_unlike(seeded, sclient):
    r = sclient.py("""
liked = api.list_liked_repos("bo")
out = {"models": liked.models, "datasets": liked.datasets, "spaces": liked.spaces, "total": liked.total,
       "likers": sorted(u.username for u in api.list_repo_likers("acme/detector")),
       "space_likers": sorted(u.username for u in api.list_repo_likers("acme/demo-b", repo_type="space"))}
emit(out)
""", token=seeded.bo.token).result
    assert r == {"models": ["acme/detector"], "datasets": ["acme/reviews-ds"],
                 "spaces": ["acme/demo-b"], "total": 3,
                 "likers": ["acme", "bo"], "space_likers": ["bo", "carol"]}

    # The client's unlike, and liking twice counts once.
    hub = seeded.hub
    r = hub.http.post("/api/models/acme/bert-tiny-fr/like", headers=hub.auth(seeded.carol.token))
    assert r.status_code == 200
    r = hub.http.post("/api/models/acme/bert-tiny-fr/like", headers=hub.auth(seeded.carol.token))
    assert r.status_code == 200
    assert hub.info("acme/bert-tiny-fr").json()["likes"] == 1
    sclient.py('api.unlike("acme/bert-tiny-fr")', token=seeded.carol.token)
    assert hub.info("acme/bert-tiny-fr").json()["likes"] == 0
    r = sclient.py('emit([u.username for u in api.list_repo_likers("acme/bert-tiny-fr")])').result
    assert r == []

    # Anonymous callers cannot like; outsiders cannot like or see the likers of private repos.
    assert hub.http.post("/api/models/acme/detector/like").status_code == 401
    r = hub.http.post("/api/models/acme/secret-bert/like", headers=hub.auth(seeded.bo.token))
    assert r.status_code == 404 and r.headers["x-error-code"] == "RepoNotFound"
    r = sclient.py('emit(attempt(lambda: list(api.list_repo_likers("acme/secret-bert"))))',
                   token=seeded.bo.token).result
    assert r["ok"] is False and "RepositoryNotFoundError" in r["mro"]


def test_model_info_expand_and_safetensors(seeded, sclient):
    r = sclient.py("""
info = api.model_info("acme/detector", expand=["downloads", "likes", "safetensors", "cardData"])
single = api.get_safetensors_metadata("acme/detector")
sharded = api.get_safetensors_metadata("acme/gpt-mini")
remote = api.get_sharded_safetensors_metadata("acme/gpt-mini")
full = api.model_info("acme/gpt-mini")
emit({
    "downloads": info.downloads, "likes": info.likes, "license": info.card_data.license,
    "safetensors": {"parameters": info.safetensors.parameters, "total": info.safetensors.total},
    "sha": info.sha, "tags": info.tags,
    "single": single.parameter_count, "sharded": sharded.parameter_count,
    "sharded_flag": sharded.sharded, "remote": remote.parameter_count,
    "full_total": full.safetensors.total, "full_tags": full.tags,
    "downloads_all_time": full.downloads_all_time, "config": full.config,
})
""", token=None).result
    assert r["downloads"] == 2 and r["likes"] == 2
    assert r["license"] == "apache-2.0"
    assert r["safetensors"] == {"parameters": DETECTOR_PARAMS, "total": 41}
    assert r["sha"] is None and r["tags"] is None, "expand returns only what was asked"
    assert r["single"] == DETECTOR_PARAMS
    assert r["sharded"] == SHARDED_PARAMS and r["sharded_flag"] is True
    assert r["remote"] == SHARDED_PARAMS
    assert r["full_total"] == 278
    assert r["full_tags"] == ["transformers", "safetensors", "text-generation", "en",
                              "license:mit", "region:us"]
    assert r["downloads_all_time"] == 0
    assert r["config"] == {"model_type": "bert", "architectures": ["BertModel"]}


def test_download_counting(seeded, sclient):
    """A GET of config.json counts; a HEAD, a cached re-download and other files do not."""
    hub = seeded.hub
    before = hub.info("acme/roberta-reviews").json()
    code = """
from huggingface_hub import hf_hub_download
hf_hub_download("acme/roberta-reviews", "config.json")
hf_hub_download("acme/roberta-reviews", "config.json")
hf_hub_download("acme/roberta-reviews", "README.md")
emit(True)
"""
    sclient.py(code)
    after = hub.info("acme/roberta-reviews").json()
    assert after["downloads"] == before["downloads"] + 1
    assert after["downloadsAllTime"] == before["downloadsAllTime"] + 1
    ds = hub.info("acme/images-ds", repo_type="dataset").json()["downloads"]
    sclient.py('from huggingface_hub import hf_hub_download\n'
               'hf_hub_download("acme/images-ds", "README.md", repo_type="dataset")')
    assert hub.info("acme/images-ds", repo_type="dataset").json()["downloads"] == ds + 1


def test_link_pagination_carries_every_parameter(seeded):
    hub = seeded.hub
    url = "/api/models?author=acme&sort=downloads&limit=2&expand=downloads"
    seen, pages = [], 0
    while url:
        r = hub.http.get(url)
        assert r.status_code == 200, r.text
        seen += ids(r.json())
        pages += 1
        nxt = r.links.get("next", {}).get("url")
        if nxt:
            assert nxt.startswith(seeded.server.url + "/api/models?")
            for p in ("author=acme", "sort=downloads", "limit=2", "expand=downloads", "cursor="):
                assert p in nxt, nxt
        url = nxt
    public_acme = [f"acme/{n}" for n, (ns, _, p) in MODELS.items() if ns == "acme" and not p]
    assert sorted(seen) == sorted(public_acme) and len(seen) == len(set(seen))
    assert pages == 3
    assert seen[:3] == ["acme/bert-sentiment", "acme/roberta-reviews", "acme/detector"]


def test_metadata_update_and_model_card_push(seeded, sclient):
    _create(seeded.hub, seeded.acme.token, "acme", "meta-model")
    # A card without metadata (creating one from scratch needs the client's Jinja2 extra).
    seeded.hub.commit_files("acme/meta-model", {"README.md": b"# Meta model\n"},
                            token=seeded.acme.token)
    r = sclient.py("""
from huggingface_hub import metadata_update, ModelCard, ModelCardData
metadata_update("acme/meta-model", {"license": "mit", "pipeline_tag": "fill-mask",
                                    "library_name": "transformers", "language": "en"})
after_update = api.model_info("acme/meta-model")
card = ModelCard.load("acme/meta-model")
card.data.tags = ["pushed"]
card.push_to_hub("acme/meta-model")
emit({"pipeline_tag": after_update.pipeline_tag, "license": after_update.card_data.license,
      "listed": [m.id for m in api.list_models(filter=["transformers", "en", "license:mit"],
                                                pipeline_tag="fill-mask")],
      "pushed": [m.id for m in api.list_models(filter="pushed")]})
""", token=seeded.acme.token).result
    assert r == {"pipeline_tag": "fill-mask", "license": "mit", "listed": ["acme/meta-model"],
                 "pushed": ["acme/meta-model"]}


def _alias_bomb() -> str:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i in range(9):
        prev = "a" if i == 0 else f"l{i - 1}"
        lines.append(f"l{i}: &l{i} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines)


MALFORMED = {
    "bad-yaml": "license: mit\ntags: [unclosed\n  : : -",
    "wrong-types": "license: {name: mit}\npipeline_tag: [a, b]\ntags: 42\nlanguage: [en, {x: 1}]\n"
                   "model-index: nope",
    "huge": "description: \"" + "x" * 400_000 + "\"",
    "alias-bomb": _alias_bomb(),
}


@pytest.mark.parametrize("kind", list(MALFORMED))
def test_malformed_cards_commit_and_warn(seeded, sclient, tmp_path, kind):
    name = f"bad-{kind}"
    _create(seeded.hub, seeded.acme.token, "acme", name)
    readme = tmp_path / "README.md"
    readme.write_bytes(card(MALFORMED[kind]))
    started = time.monotonic()
    r = sclient.py("""
refused = attempt(api.upload_file, path_or_fileobj=ARGS["card"], path_in_repo="README.md",
                  repo_id=ARGS["repo"], commit_message="malformed card")
emit({"refused": refused})
""", token=seeded.acme.token, args={"repo": f"acme/{name}", "card": str(readme)})
    # The client validates a README through validate-yaml before committing it, and the
    # Hub's rules refuse these cards; a commit that skips the check (NDJSON, git) lands.
    assert r.result["refused"]["ok"] is False
    assert "Invalid metadata in README.md" in r.result["refused"]["msg"], r.result
    seeded.hub.commit_files(f"acme/{name}", {"README.md": card(MALFORMED[kind])},
                            token=seeded.acme.token)
    r = sclient.py("""
info = api.model_info(ARGS["repo"])
emit({"warnings": getattr(info, "cardWarnings", None), "tags": info.tags,
      "files": [s.rfilename for s in info.siblings],
      "listed": [m.id for m in api.list_models(search=ARGS["name"])]})
""", token=seeded.acme.token, args={"repo": f"acme/{name}", "name": name})
    assert time.monotonic() - started < 60
    out = r.result
    assert "README.md" in out["files"], "the commit went through"
    assert out["warnings"], out
    assert out["tags"][-1] == "region:us"
    assert out["listed"] == [f"acme/{name}"]
    # validate-yaml refuses the same card by the Hub's rules (the commit above was not).
    v = seeded.hub.http.post("/api/validate-yaml",
                             json={"content": card(MALFORMED[kind]).decode(), "repoType": "model"})
    assert v.status_code == 400 and v.json()["errors"], (v.status_code, v.text[:300])
    seeded.server.check_alive()


def test_trove_reindex_rebuilds_entries_from_main(trove, hub):
    """`trove reindex` (all, or one repo) re-reads cards while the server runs; bad targets
    are refused with a reason."""
    import subprocess

    repo = hub.create_repo("reindex")
    hub.commit_files(repo, {"README.md": card("license: mit\ntags:\n- reindex-probe")})

    def cli(*args):
        return subprocess.run([str(trove.binary), "reindex", *args, "--data-dir", str(trove.data_dir)],
                              capture_output=True, text=True, timeout=300, env=trove.cli_env(),
                              stdin=subprocess.DEVNULL)

    one = cli(f"model:{repo}")
    assert one.returncode == 0 and f"reindexed model {repo}" in one.stderr, one.stderr
    everything = cli()
    assert everything.returncode == 0 and "reindexed" in everything.stderr, everything.stderr
    found = hub.http.get("/api/models?filter=reindex-probe", headers=hub.auth(hub.token())).json()
    assert [m["id"] for m in found] == [repo]
    missing = cli("model:admin/no-such-repo")
    assert missing.returncode != 0 and "no model named admin/no-such-repo" in missing.stderr
    bad = cli("table:admin/x")
    assert bad.returncode != 0 and "unknown repo type" in bad.stderr
