"""The chunk store's operations with the real client and the real binary: copying large files
between repositories without copying bytes (`copy_files` → `lfs-files/duplicate`),
super-squash and the GC that follows it, `trove fsck --repair-index`, and the admin API and
`/metrics` with their refusals."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from conftest import make_client, sha256_bytes, unique
from test_storage import CHUNK_MAX, UPLOAD, check_downloads, store_bytes, variant
from test_webhooks import receiver  # noqa: F401 - the fixture

COPY = """
api.copy_files(ARGS["src"], ARGS["dst"])
emit({"ok": True})
"""

SQUASH = """
api.super_squash_history(repo_id=ARGS["repo"], branch=ARGS.get("branch"), commit_message=ARGS["message"])
commits = api.list_repo_commits(ARGS["repo"], revision=ARGS.get("branch") or "main")
emit({"commits": [{"id": c.commit_id, "title": c.title} for c in commits]})
"""

DELETE_AND_SQUASH = """
api.delete_file(path_in_repo=ARGS["path"], repo_id=ARGS["repo"])
api.super_squash_history(repo_id=ARGS["repo"])
emit({"ok": True})
"""

SQUASH_ATTEMPT = """
emit(attempt(api.super_squash_history, repo_id=ARGS["repo"], branch=ARGS.get("branch")))
"""


def upload(client, tmp_path: Path, repo: str, path: str, data: bytes, *, xet: bool, token=None) -> None:
    local = tmp_path / f"up-{path}-{len(data)}-{xet}"
    local.write_bytes(data)
    kwargs = {} if token is None else {"token": token}
    client.py(UPLOAD, xet=xet, args={"repo": repo, "path": path, "local": str(local)}, **kwargs)


def lfs_oids(hub, repo: str, token) -> set[str]:
    r = hub.http.get(f"/api/models/{repo}/lfs-files", headers=hub.auth(hub.token(token)))
    assert r.status_code == 200, r.text[:300]
    return {f["oid"] for f in r.json()}


def duplicate(hub, src: str, dst: str, oid: str, token) -> object:
    return hub.http.post(
        f"/api/models/{src}/lfs-files/duplicate",
        headers=hub.auth(hub.token(token)),
        json={"target": {"type": "model", "name": dst}, "files": [{"sha256": oid, "filename": "w.bin"}]},
    )


def test_copy_files_links_a_large_file_to_another_repo_without_storing_it_again(trove, client, hub, tmp_path):
    src = hub.create_repo("dup-src", private=True)
    dst = hub.create_repo("dup-dst")
    data = os.urandom(3 << 20)
    upload(client, tmp_path, src, "weights.bin", data, xet=True)
    before = store_bytes(trove)
    client.py(COPY, xet=True, args={"src": f"hf://{src}/weights.bin", "dst": f"hf://{dst}/copied.bin"})
    assert store_bytes(trove) == before
    assert sha256_bytes(data) in lfs_oids(hub, dst, None)
    check_downloads(trove, tmp_path, dst, "copied.bin", data)
    # Copied through plain LFS too (the client's copy of an LFS-uploaded file).
    lfs_src = hub.create_repo("dup-lfs-src")
    other = os.urandom(2 << 20)
    upload(client, tmp_path, lfs_src, "a.bin", other, xet=False)
    before = store_bytes(trove)
    client.py(COPY, xet=False, args={"src": f"hf://{lfs_src}/a.bin", "dst": f"hf://{dst}/b.bin"})
    assert store_bytes(trove) == before
    check_downloads(trove, tmp_path, dst, "b.bin", other)


def test_duplicate_refuses_unreadable_sources_and_unwritable_targets_writing_nothing(trove, client, hub, bob, tmp_path):
    private_src = hub.create_repo("dup-private", private=True)
    public_src = hub.create_repo("dup-public")
    admins_dst = hub.create_repo("dup-admins")
    bobs_dst = hub.create_repo("dup-bobs", namespace=bob.name, token=bob.token)
    secret = os.urandom(1 << 20)
    shared = os.urandom(1 << 20)
    upload(client, tmp_path, private_src, "w.bin", secret, xet=False)
    upload(client, tmp_path, public_src, "w.bin", shared, xet=False)
    secret_oid, shared_oid = sha256_bytes(secret), sha256_bytes(shared)

    # A private source the caller cannot see: 404, as if it did not exist.
    r = duplicate(hub, private_src, bobs_dst, secret_oid, bob.token)
    assert r.status_code == 404, r.text[:300]
    assert r.headers.get("x-error-code") == "RepoNotFound"
    # A public source into another owner's repository: 403.
    r = duplicate(hub, public_src, admins_dst, shared_oid, bob.token)
    assert r.status_code == 403, r.text[:300]
    # A target that does not exist (or is private to someone else): 404.
    r = duplicate(hub, public_src, f"{bob.name}/no-such-repo", shared_oid, bob.token)
    assert r.status_code == 404, r.text[:300]
    # Anonymous: 401.
    r = duplicate(hub, public_src, bobs_dst, shared_oid, "")
    assert r.status_code == 401, r.text[:300]
    # Malformed requests: 400.
    for body in ({"target": {"type": "model", "name": bobs_dst}, "files": [{"sha256": "zz"}]},
                 {"target": {"type": "table", "name": bobs_dst}, "files": []},
                 {"target": {"type": "model", "name": "no-slash"}, "files": []},
                 {"files": []}):
        r = hub.http.post(f"/api/models/{public_src}/lfs-files/duplicate", headers=hub.auth(bob.token), json=body)
        assert r.status_code in (400, 422), (body, r.status_code, r.text[:300])
    assert lfs_oids(hub, bobs_dst, bob.token) == set()
    assert sha256_bytes(shared) not in lfs_oids(hub, admins_dst, None)

    # An oid the source does not hold is reported, not linked; the commit naming it fails.
    r = duplicate(hub, public_src, bobs_dst, secret_oid, bob.token)
    assert r.status_code == 200, r.text[:300]
    assert [f["sha256"] for f in r.json()["failed"]] == [secret_oid]
    assert lfs_oids(hub, bobs_dst, bob.token) == set()

    # What bob may do: a public source into his own repository, through the real client.
    bob_client = make_client(trove, tmp_path / "bob")
    bob_client.py(COPY, token=bob.token, args={"src": f"hf://{public_src}/w.bin", "dst": f"hf://{bobs_dst}/w.bin"})
    assert lfs_oids(hub, bobs_dst, bob.token) == {shared_oid}


def test_super_squash_keeps_the_tree_and_gc_frees_what_only_old_history_named(trove, client, hub, receiver, tmp_path):
    repo = hub.create_repo("squash")
    r = hub.http.post("/api/settings/webhooks", headers=hub.auth(hub.token()), json={
        "url": receiver.url + "/squash", "watched": [{"type": "model", "name": repo}], "domains": ["repo"]})
    assert r.status_code == 200, r.text
    v1 = os.urandom(4 << 20)
    v2 = os.urandom(4 << 20)
    upload(client, tmp_path, repo, "model.bin", v1, xet=True)
    upload(client, tmp_path, repo, "model.bin", v2, xet=True)
    hub.commit_files(repo, {"README.md": b"# squash me\n"})
    # GC now frees nothing of this repo: v1 is still in the history.
    trove.admin_cli("gc", "--grace", "0s")
    before = store_bytes(trove)
    head_tree = hub.http.get(f"/api/models/{repo}/tree/main", headers=hub.auth(hub.token())).json()

    got = client.py(SQUASH, args={"repo": repo, "message": "One commit to hold them all"}).result
    assert [c["title"] for c in got["commits"]] == ["One commit to hold them all"]
    squashed = got["commits"][0]["id"]
    # The event a commit sends: webhooks fire (and a Space would rebuild).
    receiver.wait_for("/squash", lambda b: b.get("event") == {"action": "update", "scope": "repo.content"}
                      and any(u.get("ref") == "refs/heads/main" and u.get("newSha") == squashed
                              for u in b.get("updatedRefs", [])), "the squash")
    after_tree = hub.http.get(f"/api/models/{repo}/tree/main", headers=hub.auth(hub.token())).json()
    assert sorted((e["path"], e["oid"]) for e in after_tree) == sorted((e["path"], e["oid"]) for e in head_tree)

    report = json.loads(trove.admin_cli("gc", "--grace", "0s"))
    freed = before - store_bytes(trove)
    print(f"super-squash then gc: freed {freed} B of v1's {len(v1)} B; report {report}")
    # v1's bytes (random, so all unique) go; v2 stays and reads back.
    assert len(v1) <= freed <= len(v1) + 2 * CHUNK_MAX, (freed, report)
    check_downloads(trove, tmp_path, repo, "model.bin", v2)


def xorbs_of(trove, data: bytes) -> dict[str, int]:
    """The xorbs the file holding `data` names, with their stored bytes."""
    with sqlite3.connect(trove.data_dir / "trove.db", timeout=30) as conn:
        rows = conn.execute(
            "SELECT x.hash, x.stored_bytes FROM xet_files f "
            "JOIN xet_file_xorbs fx ON fx.file_hash = f.file_hash JOIN xet_xorbs x ON x.hash = fx.xorb "
            "WHERE f.sha256 = ?", (sha256_bytes(data),)).fetchall()
    # The protocol's hex form (file names too): each 8-byte word as a little-endian number.
    return {"".join(bytes(h[i:i + 8])[::-1].hex() for i in range(0, 32, 8)): n for h, n in rows}


def test_gc_compacts_a_mostly_dead_xorb_and_the_survivor_reads_back(trove, client, hub, tmp_path):
    repo = hub.create_repo("compact")
    v1 = os.urandom(4 << 20)
    shared = int(len(v1) * 0.3)
    v2 = v1[:shared] + os.urandom(len(v1) - shared)
    upload(client, tmp_path, repo, "v1.bin", v1, xet=True)
    upload(client, tmp_path, repo, "v2.bin", v2, xet=True)
    named = xorbs_of(trove, v2)
    (old,) = [h for h in xorbs_of(trove, v1)]
    assert old in named, "v2 reuses v1's xorb for its first 30%"
    # v1's only reference goes: deleted by a commit, and the history that named it squashed.
    client.py(DELETE_AND_SQUASH, args={"repo": repo, "path": "v1.bin"})
    before = store_bytes(trove)

    report = json.loads(trove.admin_cli("gc", "--grace", "0s"))
    freed = before - store_bytes(trove)
    print(f"compaction: freed {freed} B of v1's {len(v1)} B (shared {shared} B); report {report}")
    assert report["xorbs_compacted"] >= 1, report
    assert report["compact_bytes_to_free"] >= len(v1), report
    assert report["compact_bytes_rewritten"] >= shared - 2 * CHUNK_MAX, report
    # v1's xorb is gone, its live 30% rewritten into a new xorb v2 now names.
    after = xorbs_of(trove, v2)
    assert old not in after and not (trove.data_dir / "lfs" / "xorbs" / old[:2] / old).exists(), after
    (new,) = set(after) - set(named)
    assert shared - 2 * CHUNK_MAX <= after[new] <= shared + 2 * CHUNK_MAX, (after, shared)
    assert freed >= len(v1) - shared - 2 * CHUNK_MAX, (freed, report)
    check_downloads(trove, tmp_path, repo, "v2.bin", v2)
    fsck = json.loads(trove.admin_cli("fsck"))
    assert fsck["damaged_xorbs"] == [] and fsck["damaged_files"] == [], fsck
    # A second run finds nothing left to compact in this repository.
    again = json.loads(trove.admin_cli("gc", "--grace", "0s"))
    assert xorbs_of(trove, v2) == after, again


def test_super_squash_of_a_pr_and_its_refusals(trove, client, hub, bob, tmp_path):
    repo = hub.create_repo("squash-pr")
    hub.commit_files(repo, {"a.txt": b"1"})
    hub.commit_files(repo, {"a.txt": b"2"})
    r = hub.http.post(f"/api/models/{repo}/discussions", headers=hub.auth(hub.token()),
                      json={"title": "pr", "pullRequest": True})
    assert r.status_code == 200, r.text[:300]
    num = r.json()["num"]
    hub.commit_files(repo, {"b.txt": b"pr 1"}, revision=f"refs/pr/{num}")
    hub.commit_files(repo, {"b.txt": b"pr 2"}, revision=f"refs/pr/{num}")
    got = client.py(SQUASH, args={"repo": repo, "branch": f"refs/pr/{num}", "message": "PR squashed"}).result
    assert [c["title"] for c in got["commits"]] == ["PR squashed"]
    # main untouched.
    main = client.py("emit([c.title for c in api.list_repo_commits(ARGS['repo'])])", args={"repo": repo}).result
    assert len(main) >= 3

    hub.http.post(f"/api/models/{repo}/tag/main", headers=hub.auth(hub.token()), json={"tag": "v1"})
    cases = [
        ({"branch": "v1"}, None, 400),            # a tag is not a branch
        ({"branch": "no-such-branch"}, None, 404),
        ({}, bob.token, 403),                      # a reader may not rewrite history
        ({}, "", 401),
    ]
    for args, token, status in cases:
        kwargs = {} if token is None else {"token": token}
        res = client.py(SQUASH_ATTEMPT, args={"repo": repo, **args}, **kwargs).result
        assert not res["ok"] and res["status"] == status, (args, res)
    assert len(client.py("emit([c.title for c in api.list_repo_commits(ARGS['repo'])])",
                         args={"repo": repo}).result) == len(main)

    # An organization's writer may squash a branch, not the default one: rewriting main is
    # an administrator's, as a force-push of it is.
    org, writer = unique("sqorg"), unique("sqwriter")
    trove.create_user(writer)
    wtoken = trove.create_token(writer, role="write", name="w")
    trove.admin_cli("org", "create", org, "--owner", "admin")
    trove.admin_cli("org", "add-member", org, writer, "--role", "write")
    orepo = hub.create_repo("squash-org", namespace=org)
    hub.commit_files(orepo, {"a.txt": b"1"})
    hub.commit_files(orepo, {"a.txt": b"2"})
    r = hub.http.post(f"/api/models/{orepo}/branch/dev", headers=hub.auth(wtoken), json={})
    assert r.status_code == 200, r.text[:300]
    res = client.py(SQUASH_ATTEMPT, args={"repo": orepo}, token=wtoken).result
    assert not res["ok"] and res["status"] == 403, res
    res = client.py(SQUASH_ATTEMPT, args={"repo": orepo, "branch": "dev"}, token=wtoken).result
    assert res["ok"], res
    titles = client.py("emit([c.title for c in api.list_repo_commits(ARGS['repo'])])",
                       args={"repo": orepo}).result
    assert len(titles) >= 3, titles


def test_fsck_repair_index_rebuilds_the_dedup_index(trove, client, hub, tmp_path):
    repo = hub.create_repo("repair")
    base = os.urandom(4 << 20)
    upload(client, tmp_path, repo, "base.bin", base, xet=False)
    db = trove.data_dir / "trove.db"
    with sqlite3.connect(db, timeout=30) as conn:
        deleted = conn.execute("DELETE FROM xet_chunks").rowcount
        conn.execute("DELETE FROM xet_file_xorbs")
    assert deleted > 0
    out = trove.admin_cli("fsck", "--repair-index")
    repaired = json.loads(out[: out.index("\n}\n") + 3])
    assert repaired["chunks_reindexed"] == deleted, repaired
    assert repaired["file_links_restored"] >= 1, repaired
    with sqlite3.connect(db, timeout=30) as conn:
        assert conn.execute("SELECT COUNT(*) FROM xet_chunks").fetchone()[0] == deleted
    # Dedup works again: a variant of the file stores only its changed bytes.
    before = store_bytes(trove)
    changed = len(base) // 10
    tuned = variant(base, changed)
    upload(client, tmp_path, repo, "tuned.bin", tuned, xet=False)
    growth = store_bytes(trove) - before
    assert growth <= 1.01 * changed + 4 * CHUNK_MAX, (growth, changed)
    check_downloads(trove, tmp_path, repo, "tuned.bin", tuned)


def test_admin_storage_api_and_metrics_answer_site_admins_only(trove, hub, bob, admin_read_token):
    admin = hub.auth(hub.token())
    for method, path in (("GET", "/api/admin/storage/stats"), ("POST", "/api/admin/storage/gc"),
                         ("POST", "/api/admin/storage/fsck"), ("GET", "/metrics")):
        assert hub.http.request(method, path).status_code == 401, path
        assert hub.http.request(method, path, headers=hub.auth(bob.token)).status_code == 403, path
    # A read token reads but does not collect.
    assert hub.http.get("/api/admin/storage/stats", headers=hub.auth(admin_read_token)).status_code == 200
    assert hub.http.post("/api/admin/storage/gc", headers=hub.auth(admin_read_token)).status_code == 403

    stats = hub.http.get("/api/admin/storage/stats", headers=admin).json()
    assert stats["stored_bytes"] >= 0 and "dedup_ratio" in stats
    r = hub.http.post("/api/admin/storage/gc", headers=admin, json={"dry_run": True, "grace": "bogus"})
    assert r.status_code == 400, r.text[:300]
    r = hub.http.post("/api/admin/storage/gc", headers=admin, json={"dry_run": True, "grace": "0s", "x": 1})
    assert r.status_code == 400, r.text[:300]
    dry = hub.http.post("/api/admin/storage/gc", headers=admin, json={"dry_run": True, "grace": "0s"})
    assert dry.status_code == 200 and dry.json()["dry_run"] is True, dry.text[:300]
    before = metric_values(hub.http.get("/metrics", headers=admin))
    run = hub.http.post("/api/admin/storage/gc", headers=admin, json={"grace": "0s"})
    assert run.status_code == 200 and run.json()["dry_run"] is False, run.text[:300]
    # The CLI's report, compaction included (the same code runs).
    assert {"xorbs_compacted", "compact_bytes_rewritten", "compact_bytes_to_free"} <= run.json().keys(), run.text
    fsck = hub.http.post("/api/admin/storage/fsck", headers=admin)
    assert fsck.status_code == 200 and fsck.json()["damaged_xorbs"] == [], fsck.text[:500]

    after = metric_values(hub.http.get("/metrics", headers=admin))
    assert after["trove_gc_runs_total"] == before["trove_gc_runs_total"] + 1
    assert after["trove_gc_freed_bytes_total"] == before["trove_gc_freed_bytes_total"] + run.json()["xorb_bytes_freed"]
    assert after["trove_storage_stored_bytes"] == hub.http.get(
        "/api/admin/storage/stats", headers=admin).json()["stored_bytes"]
    assert after["trove_storage_dedup_ratio"] >= 0


def metric_values(r) -> dict[str, float]:
    assert r.status_code == 200, r.text[:300]
    assert r.headers["content-type"].startswith("text/plain"), r.headers
    values = {}
    for line in r.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.split(" ")
            values[name] = float(value)
    return values
