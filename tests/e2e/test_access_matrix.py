"""Accounts and authorization end to end (issue #5): every surface × every kind of caller ×
{public, private, gated} repository, with the exact status of each cell and proof that a
refused write changed nothing; then the issue's story (an organization, roles, a CI token,
a rename with redirects, a flip to public), gated downloads through the real client, the
failed-authentication limit and the web login.

One server per module (plus a small one for the rate limit); the matrix uses raw HTTP
(httpx) for exact statuses, real git for clone/push and the real client for `repo_exists`,
`hf_hub_download` and the settings calls.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from conftest import Hub, TroveServer, b64, httpx, make_client, ndjson, unique
import test_git  # its Git helper; imported as a module so its tests are not collected here

# The callers of the matrix: name -> (user, token kind). Users live in the org `acme`
# (ana admin, bo write, cy read) or outside it (eve); "site admin" is the bootstrap admin.
CALLERS = [
    "anonymous", "outsider", "read member", "write member", "org admin",
    "read token", "write token", "fine-grained other repo", "revoked token", "expired token",
]
KINDS = ["public", "private", "gated"]

# What each caller may do with each kind of repository (the rule under test, written out):
# none < gated (metadata only) < read < write < admin; "bad" = refused credentials.
ACCESS = {
    "anonymous": ("read", "none", "gated"),
    "outsider": ("read", "none", "gated"),
    "read member": ("read", "read", "read"),
    "write member": ("write", "write", "write"),
    "org admin": ("admin", "admin", "admin"),
    # ana (org admin) through a read token: reads everything of acme, writes nothing.
    "read token": ("read", "read", "read"),
    # the site administrator's write token.
    "write token": ("admin", "admin", "admin"),
    # bo (write member) through a fine-grained token that may write only acme/elsewhere.
    "fine-grained other repo": ("read", "none", "gated"),
    "revoked token": ("bad", "bad", "bad"),
    "expired token": ("bad", "bad", "bad"),
}
RANK = {"none": 0, "gated": 1, "read": 2, "write": 3, "admin": 4}


def expected(caller: str, access: str, needs: str) -> int:
    """The status a request needing `needs` gets: 401 for refused credentials; enough access
    is 200; a repo the caller may not see is 401 (anonymous) / 404, both RepoNotFound; a
    visible repo without enough rights is 401 (anonymous) / 403."""
    if access == "bad":
        return 401
    if needs == "contribute":  # pull request uploads, discussions, likes: a write-capable token
        if caller == "anonymous":
            return 401
        if access == "none":
            return 404
        return 200 if caller not in ("read token", "fine-grained other repo") else 403
    if RANK[access] >= RANK[needs]:
        return 200
    if access == "none" or caller == "anonymous":
        return 401 if caller == "anonymous" else 404
    return 403


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # The matrix sends many refused tokens from 127.0.0.1 on purpose: a roomy failure budget.
    s = TroveServer("trove-access", tmp_path_factory.mktemp("trove-access"),
                    {"TROVE_AUTH_FAILURE_BURST": "100000"})
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def world(server):
    """acme with ana (admin), bo (write), cy (read); eve outside; the tokens of CALLERS; and a
    public, a private and a gated repo of acme, each with a README and a commit."""
    for name in ["ana", "bo", "cy", "eve"]:
        server.create_user(name)
    server.admin_cli("org", "create", "acme", "--owner", "ana")
    server.admin_cli("org", "add-member", "acme", "bo", "--role", "write")
    server.admin_cli("org", "add-member", "acme", "cy", "--role", "read")
    tok = {n: server.create_token(n, role="write", name="main") for n in ["ana", "bo", "cy", "eve"]}
    hub = fresh_hub(server)
    repos = {}
    for kind in KINDS:
        repos[kind] = hub.create_repo(f"m-{kind}", namespace="acme", private=(kind == "private"),
                                      token=tok["bo"])
        hub.commit_files(repos[kind], {"README.md": b"# hello\n", "data.txt": b"x" * 100},
                         token=tok["bo"])
    elsewhere = hub.create_repo("elsewhere", namespace="acme", private=True, token=tok["bo"])
    r = hub.http.put(f"/api/models/{repos['gated']}/settings", json={"gated": "manual"},
                     headers=hub.auth(tok["ana"]))
    assert r.status_code == 200, r.text
    revoked = server.create_token("bo", role="write", name="to-revoke")
    server.admin_cli("token", "revoke", "bo", "--name", "to-revoke")
    expired = server.admin_cli("token", "create", "bo", "--name", "short", "--role", "write",
                               "--expires-in", "1s").strip()
    fine = server.admin_cli("token", "create", "bo", "--name", "ci-elsewhere", "--role",
                            "fine-grained", "--repo", f"model:{elsewhere}",
                            "--permission", "repo.write").strip()
    tokens = {
        "anonymous": None,
        "outsider": tok["eve"],
        "read member": tok["cy"],
        "write member": tok["bo"],
        "org admin": tok["ana"],
        "read token": server.create_token("ana", role="read", name="ana-read"),
        "write token": server.admin_token,
        "fine-grained other repo": fine,
        "revoked token": revoked,
        "expired token": expired,
    }
    time.sleep(1.1)  # the expired token's second passes
    yield {"hub": hub, "tokens": tokens, "repos": repos, "user_tokens": tok, "elsewhere": elsewhere}
    hub.close()


def fresh_hub(server) -> Hub:
    """Hub helpers on a client without keep-alive: refused requests are answered before
    their bodies are read, after which the server closes the connection, and a pooled
    client could race that close."""
    hub = Hub(server)
    hub.http.close()
    hub.http = httpx.Client(base_url=server.url, timeout=60, follow_redirects=False,
                            limits=httpx.Limits(max_keepalive_connections=0))
    return hub


def _cells():
    for caller in CALLERS:
        for i, kind in enumerate(KINDS):
            yield caller, kind, ACCESS[caller][i]


def _lfs_batch(operation: str) -> dict:
    return {"operation": operation, "transfers": ["basic"], "hash_algo": "sha256",
            "objects": [{"oid": "ab" * 32, "size": 5}]}


def _request(hub: Hub, surface: str, repo: str, token: str | None, n: int):
    """One request of `surface` on `repo`; returns (response, access it needs)."""
    h = hub.auth(token)
    lfs_h = {**h, "accept": "application/vnd.git-lfs+json",
             "content-type": "application/vnd.git-lfs+json"}
    api = f"/api/models/{repo}"
    if surface == "info":
        return hub.http.get(api, headers=h), "gated"
    if surface == "tree":
        return hub.http.get(f"{api}/tree/main", headers=h), "gated"
    if surface == "paths-info":
        return hub.http.post(f"{api}/paths-info/main", data={"paths": "README.md"}, headers=h), "gated"
    if surface == "refs":
        return hub.http.get(f"{api}/refs", headers=h), "gated"
    if surface == "resolve HEAD":
        return hub.http.head(f"/{repo}/resolve/main/data.txt", headers=h), "read"
    if surface == "resolve GET":
        return hub.http.get(f"/{repo}/resolve/main/data.txt", headers=h), "read"
    if surface == "xet read token":
        return hub.http.get(f"{api}/xet-read-token/main", headers=h), "read"
    if surface == "lfs batch download":
        return hub.http.post(f"/{repo}.git/info/lfs/objects/batch", json=_lfs_batch("download"),
                             headers=lfs_h), "read"
    if surface == "git info/refs upload-pack":
        return hub.http.get(f"/{repo}.git/info/refs?service=git-upload-pack", headers=h), "read"
    if surface == "preupload":
        body = {"files": [{"path": "new.txt", "size": 3, "sample": b64(b"abc")}]}
        return hub.http.post(f"{api}/preupload/main", json=body, headers=h), "contribute"
    if surface == "commit":
        lines = [ndjson("header", summary=f"matrix {n}", description=""),
                 ndjson("file", path=f"matrix/{n}.txt", content=b64(b"m"), encoding="base64")]
        return hub.http.post(f"{api}/commit/main", content=("\n".join(lines) + "\n").encode(),
                             headers={**h, "content-type": "application/x-ndjson"}), "write"
    if surface == "lfs batch upload":
        return hub.http.post(f"/{repo}.git/info/lfs/objects/batch", json=_lfs_batch("upload"),
                             headers=lfs_h), "contribute"
    if surface == "lfs locks verify":
        return hub.http.post(f"/{repo}.git/info/lfs/locks/verify", json={}, headers=lfs_h), "write"
    if surface == "git info/refs receive-pack":
        # Contributors may push to their own pull requests; the hook refuses the rest.
        return hub.http.get(f"/{repo}.git/info/refs?service=git-receive-pack", headers=h), "contribute"
    if surface == "xet write token":
        return hub.http.get(f"{api}/xet-write-token/main", headers=h), "contribute"
    if surface == "settings":
        return hub.http.put(f"{api}/settings", json={"discussionsDisabled": False}, headers=h), "admin"
    if surface == "web page":
        return hub.http.get(f"/{repo}", headers=h), "gated"
    if surface == "discussions list":
        return hub.http.get(f"{api}/discussions", headers=h), "gated"
    if surface == "discussion open":
        return hub.http.post(f"{api}/discussions", json={"title": f"matrix {n}", "description": "hi"},
                             headers=h), "contribute"
    if surface == "pull request open (create_pr commit)":
        lines = [ndjson("header", summary=f"pr {n}", description=""),
                 ndjson("file", path=f"pr/{n}.txt", content=b64(b"p"), encoding="base64")]
        return hub.http.post(f"{api}/commit/main?create_pr=1",
                             content=("\n".join(lines) + "\n").encode(),
                             headers={**h, "content-type": "application/x-ndjson"}), "contribute"
    if surface == "like":
        # A like is the caller's own write: a read token only reads.
        return hub.http.post(f"{api}/like", headers=h), "contribute"
    if surface == "delete (refused only)":
        ns, name = repo.split("/")
        return hub.http.request("DELETE", "/api/repos/delete", headers=h,
                                json={"name": name, "organization": ns, "type": "model"}), "admin"
    raise AssertionError(surface)


# Surfaces that answer in their client's own format (git: text/plain; git-lfs locks:
# {"message"}), without the Hub's X-Error-* headers.
OWN_FORMAT = {"git info/refs upload-pack", "git info/refs receive-pack", "lfs locks verify"}

SURFACES = ["info", "tree", "paths-info", "refs", "resolve HEAD", "resolve GET", "xet read token",
            "lfs batch download", "git info/refs upload-pack", "preupload", "commit",
            "lfs batch upload", "lfs locks verify", "git info/refs receive-pack",
            "xet write token", "settings", "like", "delete (refused only)", "discussions list",
            "discussion open", "pull request open (create_pr commit)", "web page"]


def test_every_surface_for_every_caller_and_repo(world):
    hub, tokens, repos = world["hub"], world["tokens"], world["repos"]
    failures = []
    n = 0
    for caller, kind, access in _cells():
        repo = repos[kind]
        for surface in SURFACES:
            n += 1
            if surface == "delete (refused only)" and access == "admin":
                continue  # allowed deletes run on throwaway repos below
            before = hub.head_sha(repo)
            r, needs = _request(hub, surface, repo, tokens[caller], n)
            want = expected(caller, access, needs)
            if r.status_code != want:
                failures.append(f"{surface:28} {caller:24} {kind:8} got {r.status_code} want {want} "
                                f"({needs}; {r.headers.get('x-error-message')})")
                continue
            code = r.headers.get("x-error-code")
            own = surface in OWN_FORMAT
            if want == 404 or (want == 401 and access == "none"):
                assert own or code == "RepoNotFound", (surface, caller, kind, dict(r.headers))
                # A hidden repo answers byte for byte like a missing one.
                missing = _request(hub, surface, "acme/does-not-exist-" + unique("x"),
                                   tokens[caller], n)[0]
                assert missing.status_code == r.status_code, (surface, caller)
                assert missing.content == r.content, (surface, caller, r.content, missing.content)
                volatile = ("x-request-id", "date", "content-length")
                assert ({(k, v) for k, v in r.headers.items() if k not in volatile}
                        == {(k, v) for k, v in missing.headers.items() if k not in volatile}), \
                    (surface, caller)
            if want in (401, 403) and access == "gated" and needs == "read" and not own:
                assert code == "GatedRepo", (surface, caller, kind, dict(r.headers))
            if access == "bad" and not own:
                assert code is None
                assert r.headers["x-error-message"].startswith("Invalid credentials"), \
                    (surface, caller, dict(r.headers))
            after = hub.head_sha(repo)
            if surface == "commit" and want == 200:
                assert after != before
            else:
                assert after == before, f"{surface} by {caller} on {kind} moved main"
    assert not failures, "\n" + "\n".join(failures)


def test_allowed_deletes_by_namespace_admins_only(world):
    hub, tokens = world["hub"], world["tokens"]
    for caller in CALLERS:
        for kind in KINDS:
            access = ACCESS[caller][KINDS.index(kind)]
            repo = hub.create_repo("del", namespace="acme", private=(kind == "private"),
                                   token=world["user_tokens"]["ana"])
            if kind == "gated":
                assert hub.http.put(f"/api/models/{repo}/settings", json={"gated": "auto"},
                                    headers=hub.auth(world["user_tokens"]["ana"])).status_code == 200
            r, needs = _request(hub, "delete (refused only)", repo, tokens[caller], 0)
            want = expected(caller, access, "admin")
            assert r.status_code == want, (caller, kind, r.status_code, r.text)
            exists = hub.info(repo).status_code == 200
            assert exists == (want != 200), (caller, kind)


def test_listings_and_repo_exists_agree_with_access(world, server, tmp_path):
    hub, tokens, repos = world["hub"], world["tokens"], world["repos"]
    for caller in CALLERS:
        r = hub.http.get("/api/models", params={"author": "acme", "limit": 100},
                         headers=hub.auth(tokens[caller]))
        if ACCESS[caller][0] == "bad":
            assert r.status_code == 401
            continue
        assert r.status_code == 200, (caller, r.text)
        listed = {m["id"] for m in r.json()}
        for i, kind in enumerate(KINDS):
            visible = ACCESS[caller][i] != "none"
            assert (repos[kind] in listed) == visible, (caller, kind, listed)
        # Search by a fragment of the name says the same, and so does the web listing.
        r = hub.http.get("/api/models", params={"search": "m-private"},
                         headers=hub.auth(tokens[caller]))
        assert (repos["private"] in {m["id"] for m in r.json()}) == (ACCESS[caller][1] != "none")
        r = hub.http.get("/models", params={"search": "m-private"}, headers=hub.auth(tokens[caller]))
        assert r.status_code == 200
        assert (repos["private"].split("/")[1] in r.text) == (ACCESS[caller][1] != "none"), caller
    client = make_client(server, tmp_path)
    valid = {c: t for c, t in tokens.items() if ACCESS[c][0] != "bad"}
    run = client.py("""
        from huggingface_hub.utils import GatedRepoError
        out = {}
        for caller, token in ARGS["tokens"].items():
            for kind, repo in ARGS["repos"].items():
                out[f"{caller}|{kind}"] = api.repo_exists(repo, token=token or False)
        emit(out)
    """, token=None, args={"tokens": valid, "repos": repos})
    for caller in valid:
        for i, kind in enumerate(KINDS):
            # A gated repo exists for everyone (the client maps GatedRepo to True).
            assert run.result[f"{caller}|{kind}"] == (ACCESS[caller][i] != "none"), (caller, kind)


def test_git_clone_and_push_for_every_caller(world, server, tmp_path):
    hub, tokens, repos = world["hub"], world["tokens"], world["repos"]
    git = test_git.Git(server, tmp_path)
    ana = world["user_tokens"]["ana"]
    for kind in KINDS:
        repo = repos[kind]
        template = git.base / f"template-{kind}"
        git.clone(git.url(repo, token=ana), template.name)
        git.commit_file(template, "pushed.txt", b"from git\n", "a push")
        for caller in CALLERS:
            access = ACCESS[caller][KINDS.index(kind)]
            branch = unique("cell").replace("-", "_")
            clone = git.clone(git.url(repo, token=tokens[caller]), unique("c"), check=False)
            # git sends credentials only after a 401, so a refused token still clones a
            # public repository (as anonymous).
            readable = RANK.get(access, -1) >= RANK["read"] or (access == "bad" and kind == "public")
            assert (clone.returncode == 0) == readable, (caller, kind, clone.stderr)
            push = git.run("push", git.url(repo, token=tokens[caller]), f"HEAD:refs/heads/{branch}",
                           cwd=template, check=False)
            allowed = RANK.get(access, -1) >= RANK["write"]
            assert (push.returncode == 0) == allowed, (caller, kind, push.stderr)
            refs = hub.http.get(f"/api/models/{repo}/refs", headers=hub.auth(ana)).json()
            assert any(b["name"] == branch for b in refs["branches"]) == allowed, (caller, kind)


def test_the_issue_story(world, server, tmp_path):
    """acme: Bo creates a private detector; Cy reads but cannot push; Eve sees nothing; Bo's
    CI token writes only there; Ana renames it (old URLs redirect, likes and history kept) and
    flips it public."""
    hub, tok = world["hub"], world["user_tokens"]
    client = make_client(server, tmp_path)
    name = unique("detector")
    repo = f"acme/{name}"
    run = client.py("""
        url = api.create_repo(ARGS["repo"], private=True)
        api.upload_file(path_or_fileobj=b"weights", path_in_repo="w.bin", repo_id=ARGS["repo"])
        emit(api.model_info(ARGS["repo"]).private)
    """, token=tok["bo"], args={"repo": repo})
    assert run.result is True

    story = """
        from huggingface_hub import hf_hub_download
        out = {"exists": api.repo_exists(ARGS["repo"])}
        out["download"] = attempt(lambda: open(hf_hub_download(ARGS["repo"], "w.bin"), "rb").read().decode())
        out["upload"] = attempt(api.upload_file, path_or_fileobj=b"x", path_in_repo="y.txt",
                                repo_id=ARGS["repo"])
        out["listed"] = ARGS["repo"] in [m.id for m in api.list_models(author="acme")]
        out["search"] = ARGS["repo"] in [m.id for m in api.list_models(search=ARGS["name"])]
        emit(out)
    """
    cy = client.py(story, token=tok["cy"], args={"repo": repo, "name": name}).result
    assert cy["exists"] and cy["download"] == {"ok": True, "value": "weights"}
    assert cy["upload"]["status"] == 403 and cy["listed"] and cy["search"]
    (tmp_path / "eve").mkdir()
    eve_client = make_client(server, tmp_path / "eve")  # its own cache: nothing of cy's
    eve = eve_client.py(story, token=tok["eve"], args={"repo": repo, "name": name}).result
    assert eve["exists"] is False and not eve["listed"] and not eve["search"]
    assert eve["download"]["type"] == "RepositoryNotFoundError"
    assert eve["upload"]["status"] == 404

    ci = server.admin_cli("token", "create", "bo", "--name", "ci-detector", "--role", "fine-grained",
                          "--repo", f"model:{repo}", "--permission", "repo.write").strip()
    listing = server.admin_cli("token", "list", "bo")
    assert "ci-detector\tfineGrained" in listing and f"model:{repo}=repo.write" in listing
    run = client.py("""
        me = api.whoami()
        ok = attempt(api.upload_file, path_or_fileobj=b"ci", path_in_repo="ci.txt", repo_id=ARGS["repo"])
        other = attempt(api.upload_file, path_or_fileobj=b"ci", path_in_repo="ci.txt",
                        repo_id=ARGS["other"])
        emit({"me": me, "ok": ok["ok"], "other": other})
    """, token=ci, args={"repo": repo, "other": world["repos"]["public"]})
    me = run.result["me"]
    assert me["auth"]["accessToken"]["role"] == "fineGrained"
    assert me["auth"]["accessToken"]["fineGrained"]["scoped"] == [
        {"entity": {"type": "model", "name": repo}, "permissions": ["repo.write"]}]
    assert [(o["name"], o["roleInOrg"]) for o in me["orgs"]] == [("acme", "write")]
    assert run.result["ok"] is True and run.result["other"]["status"] == 403
    r = hub.http.post(f"/api/models/{repo}/like", headers=hub.auth(tok["bo"]))
    assert r.status_code == 200
    r = hub.http.post(f"/api/models/{repo}/discussions", headers=hub.auth(tok["cy"]),
                      json={"title": "Evaluation numbers?", "description": "Please add them."})
    assert r.status_code == 200, r.text
    num = r.json()["num"]
    # Not for outsiders: not the list, not the discussion, not by guessing.
    for path in [f"/api/models/{repo}/discussions", f"/api/models/{repo}/discussions/{num}"]:
        r = hub.http.get(path, headers=hub.auth(tok["eve"]))
        assert r.status_code == 404 and r.headers["x-error-code"] == "RepoNotFound"
    server.admin_cli("token", "revoke", "bo", "--name", "ci-detector")
    assert hub.http.get("/api/whoami-v2", headers=hub.auth(ci)).status_code == 401

    head = hub.head_sha(repo, token=tok["ana"])
    new = f"acme/{name}-v2"
    run = client.py("""
        api.move_repo(ARGS["repo"], ARGS["new"])
        from huggingface_hub import hf_hub_download
        info = api.model_info(ARGS["repo"])
        data = open(hf_hub_download(ARGS["repo"], "w.bin"), "rb").read().decode()
        emit({"id": info.id, "sha": info.sha, "likes": info.likes, "data": data})
    """, token=tok["ana"], args={"repo": repo, "new": new})
    assert run.result == {"id": new, "sha": head, "likes": 1, "data": "weights"}
    r = hub.http.get(f"/api/models/{new}/discussions/{num}", headers=hub.auth(tok["cy"]))
    assert r.status_code == 200 and r.json()["title"] == "Evaluation numbers?", "kept by the move"
    r = hub.http.get(f"/api/models/{repo}/discussions/{num}", headers=hub.auth(tok["cy"]))
    assert r.status_code == 307 and r.headers["location"] == f"/api/models/{new}/discussions/{num}"
    r = hub.http.get(f"/api/models/{repo}/tree/main?recursive=1", headers=hub.auth(tok["cy"]))
    assert r.status_code == 307 and r.headers["location"] == f"/api/models/{new}/tree/main?recursive=1"
    r = hub.http.get(f"/api/models/{repo}", headers=hub.auth(tok["eve"]))
    assert r.status_code == 404 and r.headers["x-error-code"] == "RepoNotFound", "no leak via redirect"
    git = test_git.Git(server, tmp_path)
    git.clone(git.url(repo, token=tok["cy"]), "old-name-clone")
    assert git.head(git.base / "old-name-clone") == head

    run = client.py("""
        api.update_repo_settings(ARGS["repo"], private=False)
        emit(api.model_info(ARGS["repo"]).private)
    """, token=tok["ana"], args={"repo": new})
    assert run.result is False
    # Discussions can be switched off; only admins may.
    r = hub.http.put(f"/api/models/{new}/settings", json={"discussionsDisabled": True},
                     headers=hub.auth(tok["bo"]))
    assert r.status_code == 403
    r = hub.http.put(f"/api/models/{new}/settings", json={"discussionsDisabled": True},
                     headers=hub.auth(tok["ana"]))
    assert r.status_code == 200 and r.json()["discussionsDisabled"] is True
    r = hub.http.post(f"/api/models/{new}/discussions", headers=hub.auth(tok["eve"]),
                      json={"title": "hello", "description": ""})
    assert r.status_code == 403
    anon = client.py("""
        from huggingface_hub import hf_hub_download
        emit(open(hf_hub_download(ARGS["repo"], "w.bin"), "rb").read().decode())
    """, token=None, args={"repo": new})
    assert anon.result == "weights"

    audit = server.admin_cli("audit", "--org", "acme")
    for action in ["org.member.add", "repo.move", "repo.visibility", "repo.gating",
                   "repo.discussions"]:
        assert f"\t{action}\t" in audit, audit
    assert "token.revoke" in server.admin_cli("audit", "--org", "bo")
    r = hub.http.get("/api/organizations/acme/audit-log", headers=hub.auth(tok["ana"]))
    assert r.status_code == 200 and any(e["action"] == "repo.move" for e in r.json())
    assert hub.http.get("/api/organizations/acme/audit-log",
                        headers=hub.auth(tok["bo"])).status_code == 403

    who = client.cli("auth", "whoami", token=tok["cy"]).output
    assert "cy" in who and "acme" in who, who
    members = client.py("""
        emit({"members": sorted(u.username for u in api.list_organization_members("acme")),
              "org": api.get_organization_overview("acme").num_users,
              "user": [o.name for o in api.get_user_overview("cy").orgs]})
    """, token=tok["cy"]).result
    assert members == {"members": ["ana", "bo", "cy"], "org": 3, "user": ["acme"]}


def test_gated_downloads_raise_gated_repo_error_until_granted(world, server, tmp_path):
    hub, tok = world["hub"], world["user_tokens"]
    repo = world["repos"]["gated"]
    client = make_client(server, tmp_path)
    download = """
        from huggingface_hub import hf_hub_download
        import tempfile  # a fresh cache: the client serves a cached copy when refused
        emit(attempt(lambda: open(hf_hub_download(ARGS["repo"], "data.txt",
                                                  cache_dir=tempfile.mkdtemp()), "rb").read().decode()))
    """
    denied = client.py(download, token=tok["eve"], args={"repo": repo}).result
    assert denied["type"] == "GatedRepoError" and denied["status"] == 403, denied
    anon = client.py(download, token=None, args={"repo": repo}).result
    assert anon["type"] == "GatedRepoError" and anon["status"] == 401

    r = hub.http.post(f"/api/models/{repo}/ask-access", json={"reason": "research"},
                      headers=hub.auth(tok["eve"]))
    assert r.status_code == 200 and r.json()["status"] == "pending"
    assert client.py(download, token=tok["eve"], args={"repo": repo}).result["type"] == "GatedRepoError"
    run = client.py("""
        pending = [r.username for r in api.list_pending_access_requests(ARGS["repo"])]
        api.accept_access_request(ARGS["repo"], "eve")
        accepted = [r.username for r in api.list_accepted_access_requests(ARGS["repo"])]
        emit({"pending": pending, "accepted": accepted})
    """, token=tok["ana"], args={"repo": repo})
    assert run.result == {"pending": ["eve"], "accepted": ["eve"]}
    assert client.py(download, token=tok["eve"], args={"repo": repo}).result == {
        "ok": True, "value": "x" * 100}
    # Bo (a member) cannot manage requests without admin rights; eve never could.
    r = hub.http.get(f"/api/models/{repo}/user-access-request/pending", headers=hub.auth(tok["bo"]))
    assert r.status_code == 403
    run = client.py("""
        api.reject_access_request(ARGS["repo"], "eve", rejection_reason="no")
        emit(True)
    """, token=tok["ana"], args={"repo": repo})
    assert client.py(download, token=tok["eve"], args={"repo": repo}).result["type"] == "GatedRepoError"

    # "auto" accepts at once.
    auto = hub.create_repo("auto", namespace="acme", token=tok["ana"])
    hub.commit_files(auto, {"f.txt": b"free"}, token=tok["ana"])
    client.py("""
        api.update_repo_settings(ARGS["repo"], gated="auto")
        emit(True)
    """, token=tok["ana"], args={"repo": auto})
    dl = """
        from huggingface_hub import hf_hub_download
        import tempfile
        emit(attempt(lambda: open(hf_hub_download(ARGS["repo"], "f.txt",
                                                  cache_dir=tempfile.mkdtemp()), "rb").read().decode()))
    """
    assert client.py(dl, token=tok["eve"], args={"repo": auto}).result["type"] == "GatedRepoError"
    r = hub.http.post(f"/api/models/{auto}/ask-access", headers=hub.auth(tok["eve"]))
    assert r.json()["status"] == "accepted"
    assert client.py(dl, token=tok["eve"], args={"repo": auto}).result == {"ok": True, "value": "free"}


def test_whoami_lists_orgs_and_token_roles(world):
    hub, tokens = world["hub"], world["tokens"]
    me = hub.http.get("/api/whoami-v2", headers=hub.auth(tokens["read token"])).json()
    assert me["name"] == "ana" and me["auth"]["accessToken"]["role"] == "read"
    assert me["orgs"][0]["name"] == "acme" and me["orgs"][0]["roleInOrg"] == "admin"
    for caller in ["revoked token", "expired token"]:
        r = hub.http.get("/api/whoami-v2", headers=hub.auth(tokens[caller]))
        assert r.status_code == 401 and r.headers["x-error-message"].startswith("Invalid credentials")
    listing = world["hub"].server.admin_cli("token", "list", "eve")
    assert listing.startswith("main\twrite\t")
    # Use is recorded (at most once a minute per token, off the request's path).
    fresh = world["hub"].server.create_token("eve", name="fresh")
    used = lambda: [l for l in world["hub"].server.admin_cli("token", "list", "eve").splitlines()
                    if l.startswith("fresh\t")][0]
    assert "last used never" in used()
    hub.http.get("/api/whoami-v2", headers=hub.auth(fresh))
    for _ in range(50):
        if "last used never" not in used():
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the token's last use was never recorded")
    scoped = world["hub"].server.admin_cli(
        "token", "create", "bo", "--name", "ns-read", "--role", "fine-grained",
        "--namespace", "acme", "--permission", "repo.content.read", "--expires-in", "30d").strip()
    me = hub.http.get("/api/whoami-v2", headers=hub.auth(scoped)).json()
    assert me["auth"]["accessToken"]["fineGrained"]["scoped"] == [
        {"entity": {"type": "org", "name": "acme"}, "permissions": ["repo.content.read"]}]
    r = hub.http.get(f"/api/models/{world['repos']['private']}", headers=hub.auth(scoped))
    assert r.status_code == 200
    r = hub.http.post(f"/api/models/{world['repos']['private']}/preupload/main",
                      headers=hub.auth(scoped), json={"files": []})
    assert r.status_code == 403
    world["hub"].server.create_user("nobody")
    assert world["hub"].server.admin_cli("token", "list", "nobody").strip() == "(no tokens for nobody)"


def test_disabled_users_and_web_login(world, server):
    hub = world["hub"]
    server.create_user("dee")
    token = server.create_token("dee", name="t")
    p = subprocess.run([str(server.binary), "user", "set-password", "dee", "--data-dir",
                        str(server.data_dir)], input="correct horse battery\n", text=True,
                       capture_output=True, timeout=60, env=server.cli_env())
    assert p.returncode == 0, p.stderr
    r = hub.http.post("/api/login", json={"username": "dee", "password": "wrong"})
    assert r.status_code == 401 and r.headers["x-error-message"] == "Wrong user name or password"
    r = hub.http.post("/api/login", json={"username": "dee", "password": "correct horse battery"})
    assert r.status_code == 200, r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    session = cookie.split(";")[0]
    me = hub.http.get("/api/whoami-v2", headers={"cookie": session})
    assert me.status_code == 200 and me.json()["name"] == "dee"
    server.admin_cli("user", "disable", "dee")
    assert hub.http.get("/api/whoami-v2", headers=hub.auth(token)).status_code == 401
    assert hub.http.get("/api/whoami-v2", headers={"cookie": session}).status_code == 401
    assert "(disabled)" in server.admin_cli("user", "list")
    r = hub.http.post("/api/login", json={"username": "dee", "password": "correct horse battery"})
    assert r.status_code == 401 and r.headers["x-error-message"] == "Wrong user name or password"


def test_failed_authentication_is_rate_limited_per_address(tmp_path_factory):
    s = TroveServer("trove-ratelimit", tmp_path_factory.mktemp("trove-ratelimit"),
                    {"TROVE_AUTH_FAILURE_BURST": "5", "TROVE_AUTH_FAILURE_REFILL_SECS": "60"})
    s.start()
    try:
        hub = fresh_hub(s)
        bad = hub.auth("hf_" + "x" * 34)
        for _ in range(5):
            assert hub.http.get("/api/whoami-v2", headers=bad).status_code == 401
        r = hub.http.get("/api/whoami-v2", headers=bad)
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
        r = hub.http.get("/api/models/admin/x", headers=bad)
        assert r.status_code == 429
        # A valid token is never slowed, even from the blocked address.
        r = hub.http.get("/api/whoami-v2", headers=hub.auth(s.admin_token))
        assert r.status_code == 200
        # Password guesses count too, and are refused before they are checked.
        r = hub.http.post("/api/login", json={"username": "admin", "password": "guess"})
        assert r.status_code == 429
        hub.close()
    finally:
        s.stop()


def test_gated_repos_say_so_in_info_and_listings(world):
    hub, repos = world["hub"], world["repos"]
    admin = hub.auth(hub.token())
    info = hub.http.get(f"/api/models/{repos['gated']}", headers=admin).json()
    assert info["gated"] == "manual"
    assert hub.http.get(f"/api/models/{repos['public']}", headers=admin).json()["gated"] is False
    gated = [m["id"] for m in hub.http.get("/api/models?gated=true&author=acme", headers=admin).json()]
    ungated = [m["id"] for m in hub.http.get("/api/models?gated=false&author=acme", headers=admin).json()]
    assert repos["gated"] in gated and repos["public"] not in gated
    assert repos["public"] in ungated and repos["gated"] not in ungated
    listed = {m["id"]: m for m in hub.http.get("/api/models?author=acme&expand=gated", headers=admin).json()}
    assert listed[repos["gated"]]["gated"] == "manual"
    assert hub.http.get("/api/models?gated=maybe").status_code == 400


def test_web_sessions_write_only_from_pages_of_this_hub(world, server):
    """The session cookie is sent by browsers whatever page makes the request: writes with it
    must carry an Origin of this hub."""
    hub = world["hub"]
    server.create_user("wes")
    p = subprocess.run([str(server.binary), "user", "set-password", "wes", "--data-dir",
                        str(server.data_dir)], input="a long enough password\n", text=True,
                       capture_output=True, timeout=60, env=server.cli_env())
    assert p.returncode == 0, p.stderr
    r = hub.http.post("/api/login", json={"username": "wes", "password": "a long enough password"})
    assert r.status_code == 200, r.text
    cookie = {"cookie": r.headers["set-cookie"].split(";")[0]}
    body = {"name": "from-the-web", "organization": "wes", "type": "model"}
    for origin in ({"origin": "http://evil.example"}, {}, {"origin": "null"}):
        r = hub.http.post("/api/repos/create", json=body, headers={**cookie, **origin,
                                                                    "content-type": "text/plain"})
        assert r.status_code == 403 and "Cross-site" in r.headers["x-error-message"], (origin, r.text)
    assert hub.http.get("/api/models/wes/from-the-web", headers=cookie).status_code == 404, "nothing created"
    # Reads with the cookie need no Origin; a write from a page of the hub works.
    assert hub.http.get("/api/whoami-v2", headers=cookie).json()["name"] == "wes"
    r = hub.http.post("/api/repos/create", json=body, headers={**cookie, "origin": server.url})
    assert r.status_code == 200, r.text
    r = hub.http.post("/api/repos/create", json={**body, "name": "second"},
                      headers={**cookie, "sec-fetch-site": "same-origin"})
    assert r.status_code == 200, r.text
    # The user, the login and both repositories are in the audit log.
    log = server.admin_cli("audit", "--limit", "200")
    for needle in ("user.create", "session.login", "repo.create"):
        assert any(needle in line and "wes" in line for line in log.splitlines()), (needle, log[-2000:])


def test_discussion_actions_for_owners_admins_writers_and_authors(world, server):
    """Every action on someone else's discussion or pull request: the namespace's owner, the
    org's admin, a writer and the site admin may (Admin is above Write); the author may on
    their own; a reader who did not write it may not, and a refusal changes nothing."""
    hub, tok = world["hub"], world["user_tokens"]
    own_repo = hub.create_repo("eve-own", namespace="eve", token=tok["eve"])
    hub.commit_files(own_repo, {"README.md": b"# eve\n"}, token=tok["eve"])
    cases = [
        # (repo, author, caller, allowed)
        (own_repo, "cy", "eve", True),                 # owner of their namespace: Admin
        (world["repos"]["public"], "eve", "ana", True),  # org admin: Admin
        (world["repos"]["public"], "eve", "bo", True),   # write member
        (world["repos"]["public"], "eve", "admin", True),  # site admin
        (world["repos"]["public"], "eve", "eve", True),  # the author
        (world["repos"]["public"], "eve", "cy", False),  # a reader, not the author
    ]
    for i, (repo, author, caller, allowed) in enumerate(cases):
        api = f"/api/models/{repo}"
        author_h = hub.auth(tok[author])
        h = hub.auth(server.admin_token if caller == "admin" else tok[caller])
        pr = hub.http.post(f"{api}/discussions", json={"title": f"pr {i}", "pullRequest": True},
                           headers=author_h)
        assert pr.status_code == 200, pr.text
        num = pr.json()["num"]
        c = hub.http.post(f"{api}/discussions/{num}/comment", json={"comment": "hello"}, headers=author_h)
        assert c.status_code == 200, c.text
        comment_id = c.json()["newMessage"]["id"]
        want = 200 if allowed else 403
        label = (repo, author, caller)
        events_before = hub.http.get(f"{api}/discussions/{num}", headers=author_h).json()["events"]
        r = hub.http.post(f"{api}/discussions/{num}/status", json={"status": "closed"}, headers=h)
        assert r.status_code == want, (label, "close", r.status_code, r.text)
        if allowed:
            r = hub.http.post(f"{api}/discussions/{num}/status", json={"status": "open"}, headers=h)
            assert r.status_code == 200, (label, "reopen", r.text)
        r = hub.http.post(f"{api}/discussions/{num}/title", json={"title": f"renamed {i}"}, headers=h)
        assert r.status_code == want, (label, "rename", r.text)
        r = hub.http.post(f"{api}/discussions/{num}/comment/{comment_id}/hide", headers=h)
        assert r.status_code == want, (label, "hide", r.text)
        lines = [ndjson("header", summary=f"push {i}", description=""),
                 ndjson("file", path=f"pr-{i}.txt", content=b64(b"p"), encoding="base64")]
        r = hub.http.post(f"{api}/commit/refs%2Fpr%2F{num}", content=("\n".join(lines) + "\n").encode(),
                          headers={**h, "content-type": "application/x-ndjson"})
        assert r.status_code == want, (label, "push to the pull request", r.text)
        d = hub.http.get(f"{api}/discussions/{num}", headers=author_h).json()
        if allowed:
            assert d["title"] == f"renamed {i}" and d["status"] == "open", (label, d["status"])
        else:
            assert d["title"] == f"pr {i}" and d["status"] == "draft", "a refusal changes nothing"
            assert d["events"] == events_before, "a refusal changes nothing"
