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


USER_REPOS = """
out = {}
out["mine"] = [dict(id=r.id, type=r.type, visibility=r.visibility, storage=r.storage,
                    percent=r.storage_percent, updated=r.updated_at.isoformat())
               for r in api.list_user_repos()]
out["org"] = sorted(r.id for r in api.list_user_repos(namespace=ARGS["org"]))
out["other_org"] = attempt(lambda: list(api.list_user_repos(namespace=ARGS["other_org"])))
out["no_org"] = attempt(lambda: list(api.list_user_repos(namespace="no-such-org-zz")))
emit(out)
"""


def test_list_user_repos_and_hf_repos_ls(client, hub, trove, tmp_path):
    user = unique("lister")
    trove.create_user(user)
    token = trove.create_token(user, role="write", name="e2e")
    org, other_org = unique("listorg"), unique("otherorg")
    trove.admin_cli("org", "create", org, "--owner", user)
    trove.admin_cli("org", "create", other_org, "--owner", "admin")
    model = hub.create_repo("m", namespace=user, token=token)
    data = hub.create_repo("d", namespace=user, repo_type="dataset", private=True, token=token)
    in_org = hub.create_repo("o", namespace=org, token=token)
    hub.create_repo("x", namespace=other_org)
    # A large file in the model: its bytes are the model's storage.
    up = client.py("""
api.upload_file(path_or_fileobj=b"x" * 3000, path_in_repo="w.bin", repo_id=ARGS["repo"])
emit(True)
""", token=token, args={"repo": model})
    assert up.result is True
    hub.commit_files(data, {"a.txt": b"a"}, repo_type="dataset", token=token)  # newest

    r = client.py(USER_REPOS, token=token, args={"org": org, "other_org": other_org}).result
    mine = r["mine"]
    assert [m["id"] for m in mine] == [data, model], mine  # most recently updated first
    assert mine[0]["type"] == "dataset" and mine[0]["visibility"] == "private"
    assert mine[1]["type"] == "model" and mine[1]["visibility"] == "public"
    assert mine[1]["storage"] == 3000 and mine[1]["percent"] == 100.0
    assert mine[0]["storage"] == 0
    assert r["org"] == [in_org]
    assert r["other_org"]["status"] == 403, r["other_org"]
    assert r["no_org"]["status"] == 404, r["no_org"]

    # Paging by Link, like the other lists.
    first = hub.http.get("/api/settings/repositories?limit=1", headers=hub.auth(token))
    assert first.status_code == 200 and [x["id"] for x in first.json()] == [data]
    link = first.links["next"]["url"]
    second = hub.http.get(link, headers=hub.auth(token))
    assert [x["id"] for x in second.json()] == [model] and "next" not in second.links
    bad = hub.http.get("/api/settings/repositories?cursor=zz", headers=hub.auth(token))
    assert bad.status_code == 400
    anon = hub.http.get("/api/settings/repositories")
    assert anon.status_code == 401

    # The `hf` CLI's table.
    out = client.cli("repos", "ls", token=token).stdout
    assert model in out and data in out and "private" in out, out
    assert in_org in client.cli("repos", "ls", "--namespace", org, token=token).stdout


PEOPLE = """
out = {}
me = api.whoami()
out["whoami"] = {k: me.get(k) for k in ("name", "fullname", "avatarUrl")}
u = api.get_user_overview(ARGS["user"])
out["overview"] = [u.fullname, u.avatar_url]
out["likers"] = [(x.username, x.fullname, x.avatar_url) for x in api.list_repo_likers(ARGS["repo"])]
out["commit_authors"] = [c.authors for c in api.list_repo_commits(ARGS["repo"])][:1]
d = api.get_discussion_details(ARGS["repo"], ARGS["num"])
out["discussion_author"] = d.author
emit(out)
"""


def run_cli(trove, *args):
    import subprocess
    from conftest import clean_env
    return subprocess.run([str(trove.binary), *args, "--data-dir", str(trove.data_dir)],
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          env=clean_env())


def test_full_names_and_avatars_wherever_the_client_reads_an_author(client, hub, trove):
    name = unique("ada")
    trove.admin_cli("user", "create", name, "--fullname", "Ada Lovelace")
    token = trove.create_token(name, role="write", name="e2e")
    repo = hub.create_repo("people", namespace=name, token=token)
    hub.commit_files(repo, {"a.txt": b"a"}, token=token)
    assert hub.http.post(f"/api/models/{repo}/like", headers=hub.auth(token)).status_code == 200
    r = hub.http.post(f"/api/models/{repo}/discussions", json={"title": "hello", "description": "hi"},
                      headers=hub.auth(token))
    assert r.status_code == 200, r.text
    num = r.json()["num"]
    avatar = f"{trove.url}/api/avatars/{name}"

    r = client.py(PEOPLE, token=token, args={"user": name, "repo": repo, "num": num}).result
    assert r["whoami"] == {"name": name, "fullname": "Ada Lovelace", "avatarUrl": avatar}
    assert r["overview"] == ["Ada Lovelace", avatar]
    assert r["likers"] == [[name, "Ada Lovelace", avatar]]
    assert r["commit_authors"] == [[name]]
    assert r["discussion_author"] == name
    # The raw answers carry the full name and avatar beside the name.
    details = hub.http.get(f"/api/models/{repo}/discussions/{num}", headers=hub.auth(token)).json()
    assert details["author"]["fullname"] == "Ada Lovelace" and details["author"]["avatarUrl"] == avatar
    assert details["events"][0]["author"]["avatarUrl"] == avatar
    commits = hub.http.get(f"/api/models/{repo}/commits/main", headers=hub.auth(token)).json()
    assert commits[0]["authors"][0] == {"user": name, "avatar": avatar}

    # The avatar is served by the hub itself: an SVG, the same each time.
    svg = hub.http.get(f"/api/avatars/{name}")
    assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
    assert svg.text.startswith("<svg") and svg.text == hub.http.get(f"/api/avatars/{name}").text
    assert hub.http.get("/api/avatars/..bad").status_code == 404

    # `trove user set` changes it; a bad name is refused and changes nothing.
    trove.admin_cli("user", "set", name, "--fullname", "Augusta Ada King")
    who = hub.http.get("/api/whoami-v2", headers=hub.auth(token)).json()
    assert who["fullname"] == "Augusta Ada King"
    for bad in ("a\x07b", "x" * 101):
        p = run_cli(trove, "user", "set", name, "--fullname", bad)
        assert p.returncode != 0 and "Invalid full name" in p.stderr, p.stderr
    who = hub.http.get("/api/whoami-v2", headers=hub.auth(token)).json()
    assert who["fullname"] == "Augusta Ada King"
    p = run_cli(trove, "user", "create", unique("bad"), "--fullname", "x" * 101)
    assert p.returncode != 0 and "Invalid full name" in p.stderr
    # Cleared: the user name shows again.
    trove.admin_cli("user", "set", name, "--fullname", "")
    assert hub.http.get("/api/whoami-v2", headers=hub.auth(token)).json()["fullname"] == name


def test_access_log_has_one_line_per_request_and_no_secret(hub, trove, bob, tmp_path_factory):
    import time
    rid = unique("rid")
    r = hub.http.get("/api/whoami-v2?token=query-secret-zz&sig=abc",
                     headers={**hub.auth(bob.token), "x-request-id": rid})
    assert r.status_code == 200
    anon = unique("rid")
    assert hub.http.get("/api/models", headers={"x-request-id": anon}).status_code == 200
    deadline = time.monotonic() + 10
    lines: list[str] = []
    while time.monotonic() < deadline:
        text = trove.log_path.read_text(errors="replace")
        lines = [l for l in text.splitlines() if "trove::access" in l and (rid in l or anon in l)]
        if len(lines) == 2:
            break
        time.sleep(0.2)
    assert len(lines) == 2, lines
    mine = next(l for l in lines if rid in l)
    assert "method=GET" in mine and "path=/api/whoami-v2" in mine and "status=200" in mine
    assert f"user=\"{bob.name}\"" in mine and "size_bytes=" in mine and "duration_ms=" in mine
    assert "user=\"-\"" in next(l for l in lines if anon in l)
    log = trove.log_path.read_text(errors="replace")
    assert bob.token not in log and "query-secret-zz" not in log
    # The admin token is printed once, on purpose, at the first start; never by a log line.
    logged = [l for l in log.splitlines() if any(k in l for k in (" INFO ", " WARN ", " ERROR "))]
    assert logged and not any(trove.admin_token in l for l in logged)

    # `[log] access = false` turns it off.
    from conftest import TroveServer
    server = TroveServer("trove-quiet", tmp_path_factory.mktemp("quiet"))
    server.data_dir.mkdir(parents=True, exist_ok=True)
    (server.data_dir / "trove.toml").write_text("[log]\naccess = false\n")
    server.start()
    try:
        quiet = unique("rid")
        import httpx
        assert httpx.get(f"{server.url}/api/models", headers={"x-request-id": quiet}).status_code == 200
        time.sleep(0.5)
        assert "trove::access" not in server.log_path.read_text(errors="replace")
    finally:
        server.stop()
