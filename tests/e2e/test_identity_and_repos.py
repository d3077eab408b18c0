"""Identity (whoami, tokens) and repository lifecycle with the real client and the `hf` CLI."""

from __future__ import annotations

import uuid

from conftest import api_prefix, unique


def test_whoami_returns_admin(client):
    run = client.py("emit(api.whoami())")
    assert run.result["name"] == "admin"
    assert isinstance(run.result.get("orgs"), list), "`hf auth whoami` indexes `orgs` directly"
    assert run.result["auth"]["accessToken"]["role"] in ("write", "fineGrained")


def test_whoami_cli_prints_admin(client):
    run = client.cli("auth", "whoami")
    assert "admin" in run.output


def test_whoami_of_second_user_and_read_token(client, bob, admin_read_token):
    run = client.py("emit(api.whoami())", token=bob.token)
    assert run.result["name"] == bob.name
    run = client.py("emit(api.whoami())", token=admin_read_token)
    assert run.result["name"] == "admin"
    assert run.result["auth"]["accessToken"]["role"] == "read"


def test_whoami_invalid_token(client, hub):
    bad = "hf_" + uuid.uuid4().hex
    run = client.py("emit(attempt(api.whoami))", token=bad)
    assert run.result["ok"] is False
    assert "Invalid user token" in run.result["msg"]
    assert run.result["status"] == 401

    r = hub.http.get("/api/whoami-v2", headers=hub.auth(bad))
    assert r.status_code == 401
    assert r.headers.get("x-error-message") == "Invalid credentials in Authorization header"
    assert "x-error-code" not in r.headers
    assert hub.http.get("/api/whoami-v2").status_code == 401


def test_revoked_token_is_rejected(trove, hub):
    label = unique("revoke-me")
    token = trove.create_token("admin", role="write", name=label)
    assert hub.http.get("/api/whoami-v2", headers=hub.auth(token)).status_code == 200
    assert label in trove.admin_cli("token", "list", "--user", "admin")
    trove.admin_cli("token", "revoke", "--user", "admin", "--name", label)
    r = hub.http.get("/api/whoami-v2", headers=hub.auth(token))
    assert r.status_code == 401


CREATE_REPOS = """
out = []
for spec in ARGS["specs"]:
    kw = dict(repo_type=spec["repo_type"], private=spec["private"])
    if spec["repo_type"] == "space":
        kw["space_sdk"] = "static"
    url = api.create_repo(spec["repo_id"], **kw)
    again = api.create_repo(spec["repo_id"], exist_ok=True, **kw)
    dup = attempt(api.create_repo, spec["repo_id"], **kw)
    info = api.repo_info(spec["repo_id"], repo_type=spec["repo_type"])
    out.append({
        "url": str(url), "url_repo_id": url.repo_id, "url_repo_type": url.repo_type,
        "again_repo_id": again.repo_id,
        "dup": dup,
        "exists": api.repo_exists(spec["repo_id"], repo_type=spec["repo_type"]),
        "private": info.private,
        "sha": info.sha,
        "files": api.list_repo_files(spec["repo_id"], repo_type=spec["repo_type"]),
    })
out.append({
    "missing_exists": api.repo_exists(ARGS["missing"]),
    "wrong_type_exists": api.repo_exists(ARGS["specs"][0]["repo_id"], repo_type="dataset"),
})
emit(out)
"""


def test_create_repo_all_types_private_public_exist_ok(client, trove):
    specs = [
        {"repo_id": f"admin/{unique('model')}", "repo_type": "model", "private": False},
        {"repo_id": f"admin/{unique('model-priv')}", "repo_type": "model", "private": True},
        {"repo_id": f"admin/{unique('dataset')}", "repo_type": "dataset", "private": False},
        {"repo_id": f"admin/{unique('dataset-priv')}", "repo_type": "dataset", "private": True},
        {"repo_id": f"admin/{unique('space')}", "repo_type": "space", "private": False},
    ]
    run = client.py(CREATE_REPOS, args={"specs": specs, "missing": f"admin/{unique('nope')}"})
    *per_repo, extra = run.result
    for spec, got in zip(specs, per_repo):
        assert got["url"].startswith(trove.url + "/"), got["url"]
        assert got["url_repo_id"] == spec["repo_id"]
        assert got["url_repo_type"] == spec["repo_type"]
        assert got["again_repo_id"] == spec["repo_id"], "409 body must carry `url` for exist_ok"
        assert got["dup"]["ok"] is False and got["dup"]["status"] == 409, got["dup"]
        assert got["exists"] is True
        assert got["private"] is spec["private"]
        assert len(got["sha"]) == 40
        # The initial commit: .gitattributes, and for a Space its card with the SDK (as the Hub).
        want = [".gitattributes", "README.md"] if spec["repo_type"] == "space" else [".gitattributes"]
        assert got["files"] == want, got["files"]
    assert extra == {"missing_exists": False, "wrong_type_exists": False}


def test_hf_repos_create_cli(client, hub):
    name = f"admin/{unique('cli-ds')}"
    client.cli("repos", "create", name, "--type", "dataset")
    r = hub.info(name, repo_type="dataset")
    assert r.status_code == 200 and r.json()["id"] == name
    dup = client.cli("repos", "create", name, "--type", "dataset", check=False)
    assert dup.returncode != 0, dup.output
    client.cli("repos", "create", name, "--type", "dataset", "--exist-ok")

    space = f"admin/{unique('cli-space')}"
    client.cli("repos", "create", space, "--type", "space", "--sdk", "gradio", "--private")
    r = hub.info(space, repo_type="space")
    assert r.status_code == 200 and r.json()["private"] is True
    assert hub.info(space, repo_type="space", token=None).status_code == 401


NAMESPACE_RULES = """
emit({
    "foreign": attempt(api.create_repo, ARGS["foreign"]),
    "own": attempt(lambda: str(api.create_repo(ARGS["own"]))),
})
"""


def test_users_create_only_in_own_namespace(client, hub, bob):
    run = client.py(NAMESPACE_RULES, token=bob.token,
                    args={"foreign": f"admin/{unique('x')}", "own": f"{bob.name}/{unique('mine')}"})
    assert run.result["foreign"]["ok"] is False
    assert run.result["foreign"]["status"] == 403, run.result["foreign"]
    assert run.result["own"]["ok"] is True, run.result["own"]
    # admins may create anywhere
    repo = hub.create_repo("by-admin", namespace=bob.name)
    assert hub.info(repo).status_code == 200


DELETE_REPO = """
repo = ARGS["repo"]
before = api.repo_exists(repo, repo_type=ARGS["repo_type"])
api.delete_repo(repo, repo_type=ARGS["repo_type"])
after = api.repo_exists(repo, repo_type=ARGS["repo_type"])
missing_ok = attempt(api.delete_repo, repo, repo_type=ARGS["repo_type"], missing_ok=True)
missing = attempt(api.delete_repo, repo, repo_type=ARGS["repo_type"])
emit({"before": before, "after": after, "missing_ok": missing_ok, "missing": missing})
"""


def test_delete_repo(client, hub):
    for repo_type in ("model", "dataset"):
        repo = hub.create_repo("to-delete", repo_type=repo_type)
        hub.commit_files(repo, {"a.txt": b"a"}, repo_type=repo_type)
        run = client.py(DELETE_REPO, args={"repo": repo, "repo_type": repo_type})
        assert run.result["before"] is True
        assert run.result["after"] is False
        assert run.result["missing_ok"]["ok"] is True, run.result["missing_ok"]
        assert "RepositoryNotFoundError" in run.result["missing"]["mro"], run.result["missing"]
        r = hub.http.get(f"/api/{api_prefix(repo_type)}/{repo}", headers=hub.auth(hub.token()))
        assert r.status_code == 404 and r.headers.get("x-error-code") == "RepoNotFound"
        # the name can be reused after deletion
        ns, name = repo.split("/")
        r = hub.http.post("/api/repos/create", headers=hub.auth(hub.token()),
                          json={"name": name, "organization": ns, "type": repo_type})
        assert r.status_code == 200, r.text
        tree = hub.http.get(f"/api/{api_prefix(repo_type)}/{repo}/tree/main?recursive=true&expand=false",
                            headers=hub.auth(hub.token()))
        assert tree.status_code == 200
        assert [e["path"] for e in tree.json()] == [".gitattributes"], "old content must not come back"
