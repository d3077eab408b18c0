"""Wire fidelity (issue #14, second part): the Hub's gated-repo texts, the storage listing of
`list_user_repos` / `hf repos ls`, users' full names and avatars wherever the client reads an
author, the access log, and the operator's CLI. Each refusal is checked to change nothing."""

from __future__ import annotations

import pytest

from conftest import unique

GATED = """
out = {}
for kind, repo in ARGS["repos"].items():
    out[kind] = attempt(huggingface_hub.hf_hub_download, repo, "f.txt", repo_type=kind,
                        cache_dir=ARGS["cache"])
emit(out)
"""


def test_gated_refusals_say_where_to_ask_for_access(client, hub, trove, bob, tmp_path):
    repos = {}
    for kind in ("model", "dataset", "space"):
        repo = hub.create_repo(f"gate-{kind}", repo_type=kind)
        hub.commit_files(repo, {"f.txt": b"secret\n"}, repo_type=kind)
        prefix = {"model": "models", "dataset": "datasets", "space": "spaces"}[kind]
        r = hub.http.put(f"/api/{prefix}/{repo}/settings", json={"gated": "manual"},
                         headers=hub.auth(hub.token()))
        assert r.status_code == 200, r.text
        repos[kind] = repo
    r = client.py(GATED, token=bob.token, args={"repos": repos, "cache": str(tmp_path / "c")}).result
    for kind, repo in repos.items():
        page = f"{trove.url}/{'' if kind == 'model' else kind + 's/'}{repo}"
        got = r[kind]
        assert got["type"] == "GatedRepoError" and got["status"] == 403, got
        want = (f"Access to {kind} {repo} is restricted and you are not in the authorized list. "
                f"Visit {page} to ask for access.")
        assert want in got["msg"], (want, got["msg"])
    # Anonymous callers are asked to log in (401), as on the Hub.
    model = repos["model"]
    anon = hub.http.head(f"/{model}/resolve/main/f.txt")
    assert anon.status_code == 401 and anon.headers["x-error-code"] == "GatedRepo"
    assert anon.headers["x-error-message"] == (
        f"Access to model {model} is restricted. You must have access to it and be "
        "authenticated to access it. Please log in.")
    # Nothing was granted by asking: still refused.
    again = hub.http.head(f"/{model}/resolve/main/f.txt", headers=hub.auth(bob.token))
    assert again.status_code == 403 and again.headers["x-error-code"] == "GatedRepo"
