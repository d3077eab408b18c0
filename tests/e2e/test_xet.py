"""Xet with the client as installed (hf_xet active, no environment variable): uploads go
through the CAS, downloads through hf_xet or plain HTTP, and both give the same bytes."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import lfs_pointer, make_client, ndjson, sha256_bytes, store_dir, unique, wait_in_log, write_tree

XET_HASH = re.compile(r"[0-9a-f]{64}")


def random_file(path: Path, size: int) -> bytes:
    """Incompressible bytes with no repeats, so chunk-level dedup finds nothing by chance."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size)
    path.write_bytes(data)
    return data


def fresh_client(server, path: Path):
    """A client with its own empty HF_HOME (its cache starts cold)."""
    path.mkdir(parents=True, exist_ok=True)
    return make_client(server, path)


@pytest.fixture
def repo(hub):
    return hub.create_repo("xet-tokens")


def log_count(server, marker: str) -> int:
    return server.log_path.read_text(encoding="utf-8", errors="replace").count(marker)


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def xorb_bytes(server) -> int:
    return dir_bytes(store_dir(server) / "xorbs")


def blob_path(server, sha: str) -> Path:
    return store_dir(server) / "objects" / sha[:2] / sha[2:4] / sha


def tree(hub, repo: str, token=None) -> dict[str, dict]:
    r = hub.http.get(f"/api/models/{repo}/tree/main?recursive=true",
                     headers=hub.auth(hub.token() if token is None else token))
    assert r.status_code == 200, r.text[:300]
    return {e["path"]: e for e in r.json()}


UPLOAD = """
import hf_xet
info = api.upload_file(path_or_fileobj=ARGS["local"], path_in_repo=ARGS["path"], repo_id=ARGS["repo"])
emit({"commit": info.oid, "hash_files": hf_xet.hash_files([ARGS["local"]])[0].hash})
"""

DOWNLOAD = """
from huggingface_hub import hf_hub_download
p = hf_hub_download(ARGS["repo"], ARGS["path"])
emit({"sha256": sha256_file(p), "size": os.path.getsize(p)})
"""


@pytest.mark.slow
def test_upload_file_50mb_through_xet_and_download_both_ways(trove, client, hub, tmp_path):
    repo = hub.create_repo("xet-upload")
    data = random_file(tmp_path / "model.safetensors", 50 * 1000 * 1000)
    sha = sha256_bytes(data)
    before = xorb_bytes(trove)
    log_at = log_size(trove)

    up = client.py(UPLOAD, xet=True, args={"repo": repo, "path": "model.safetensors",
                                           "local": str(tmp_path / "model.safetensors")}).result
    assert up["commit"] == hub.head_sha(repo)
    # The bytes arrived as xorbs, not as an LFS blob.
    assert xorb_bytes(trove) - before >= len(data) * 0.95
    assert not blob_path(trove, sha).exists()
    # The file's SHA-256 was computed while its xorb arrived, not after the shard: the one
    # xorb the client sent for it was hashed ahead, whole.
    registered = [line for line in log_since(trove, log_at).splitlines() if "xet.shard_registered" in line]
    assert len(registered) == 1, registered
    assert f"hashed_ahead_bytes={len(data)}" in registered[0], registered[0]

    entry = tree(hub, repo)["model.safetensors"]
    assert entry["lfs"]["oid"] == sha and entry["size"] == len(data)
    assert XET_HASH.fullmatch(entry["xetHash"]), entry
    # hf_xet's own offline hash of the file is the server's file id.
    assert entry["xetHash"] == up["hash_files"]

    head = hub.http.head(f"/{repo}/resolve/main/model.safetensors", headers=hub.auth(hub.token()))
    assert head.status_code == 200
    assert head.headers["x-xet-hash"] == entry["xetHash"]
    assert 'rel="xet-auth"' in head.headers["link"] and "/xet-read-token/" in head.headers["link"]
    assert head.headers["x-linked-size"] == str(len(data))

    # Through hf_xet, and through plain HTTP (the server rebuilds the bytes as it streams).
    for xet, marker in ((True, f"xet.reconstruction file={entry['xetHash']}"), (False, "xet.bridge")):
        seen = log_count(trove, marker)
        fresh = fresh_client(trove, tmp_path / f"dl-{xet}")
        got = fresh.py(DOWNLOAD, xet=xet, args={"repo": repo, "path": "model.safetensors"}).result
        assert got == {"sha256": sha, "size": len(data)}, (xet, got)
        assert log_count(trove, marker) > seen, f"the download (xet={xet}) did not go through {marker}"

    r = hub.http.get(f"/{repo}/resolve/main/model.safetensors",
                     headers={**hub.auth(hub.token()), "range": "bytes=12345678-13345677"})
    assert r.status_code == 206
    assert r.content == data[12345678:13345678]


UPLOAD_FOLDER = """
api.upload_folder(repo_id=ARGS["repo"], folder_path=ARGS["folder"])
from huggingface_hub import snapshot_download
emit({"snapshot": snapshot_download(ARGS["repo"])})
"""

SNAPSHOT = """
from huggingface_hub import snapshot_download
emit({"snapshot": snapshot_download(ARGS["repo"])})
"""


def test_upload_folder_mixed_and_snapshot_both_ways(trove, client, hub, tmp_path):
    folder = tmp_path / "folder"
    files = {
        "README.md": b"---\nlicense: mit\n---\n# mixed\n",
        "config.json": b'{"hidden": 64}',
        "weights/a.safetensors": os.urandom(3_000_000),
        "weights/b.bin": os.urandom(1_500_000),
        "data/train.parquet": os.urandom(700_000),
        "data/nested/deep/notes.txt": b"deep\n" * 100,
    }
    write_tree(folder, files)
    repo = hub.create_repo("xet-folder")
    run = client.py(UPLOAD_FOLDER, xet=True, args={"repo": repo, "folder": str(folder)})
    entries = tree(hub, repo)
    for path, data in files.items():
        assert Path(run.result["snapshot"], path).read_bytes() == data, path
        e = entries[path]
        if e.get("lfs"):
            assert e["lfs"]["oid"] == sha256_bytes(data)
            assert XET_HASH.fullmatch(e.get("xetHash", "")), e
    assert {p for p, e in entries.items() if e.get("lfs")} >= {
        "weights/a.safetensors", "weights/b.bin", "data/train.parquet"}

    plain = fresh_client(trove, tmp_path / "plain")
    snap = plain.py(SNAPSHOT, xet=False, args={"repo": repo}).result["snapshot"]
    for path, data in files.items():
        assert Path(snap, path).read_bytes() == data, path


REUPLOAD = """
a = api.upload_file(path_or_fileobj=ARGS["v1"], path_in_repo="ckpt.bin", repo_id=ARGS["repo"])
emit({"commit": a.oid})
"""


@pytest.mark.slow
def test_reupload_of_a_slightly_changed_file_sends_only_new_chunks(trove, client, hub, tmp_path):
    repo = hub.create_repo("xet-dedup")
    base = random_file(tmp_path / "v1.bin", 30 * 1000 * 1000)
    changed = bytearray(base)
    changed[15_000_000:15_000_000 + 50_000] = os.urandom(50_000)
    (tmp_path / "v2.bin").write_bytes(changed)

    client.py(REUPLOAD, xet=True, args={"repo": repo, "v1": str(tmp_path / "v1.bin")})
    grown_first = xorb_bytes(trove)
    client.py(REUPLOAD, xet=True, args={"repo": repo, "v1": str(tmp_path / "v2.bin")})
    growth = xorb_bytes(trove) - grown_first
    # 50 KB changed: the new chunks around it (~64 KiB each) and nothing else.
    assert 0 < growth < 1_000_000, f"stored {growth} new bytes for a 50 KB change"

    got = fresh_client(trove, tmp_path / "dl").py(DOWNLOAD, xet=True,
                                                 args={"repo": repo, "path": "ckpt.bin"}).result
    assert got["sha256"] == sha256_bytes(bytes(changed))


FS_READS = """
from huggingface_hub import HfFileSystem
fs = HfFileSystem()
out = []
with fs.open(f"{ARGS['repo']}/big.bin", "rb") as f:
    for offset, n in ARGS["reads"]:
        f.seek(offset)
        out.append(f.read(n).hex())
emit(out)
"""


def test_hffilesystem_ranged_reads_of_a_xet_file(client, hub, tmp_path):
    repo = hub.create_repo("xet-fs")
    data = random_file(tmp_path / "big.bin", 4_000_000)
    client.py(UPLOAD, xet=True, args={"repo": repo, "path": "big.bin", "local": str(tmp_path / "big.bin")})
    reads = [(0, 100), (1_000_000, 70_000), (3_999_000, 1000), (2_222_222, 1)]
    for xet in (True, False):
        got = client.py(FS_READS, xet=xet, args={"repo": repo, "reads": reads}).result
        assert got == [data[o:o + n].hex() for o, n in reads], xet


def test_lfs_batch_download_of_a_xet_file(client, hub, tmp_path):
    """What git-lfs does to fetch an object: batch, then GET the href."""
    repo = hub.create_repo("xet-lfs-bridge")
    data = random_file(tmp_path / "w.bin", 2_000_000)
    client.py(UPLOAD, xet=True, args={"repo": repo, "path": "w.bin", "local": str(tmp_path / "w.bin")})
    sha = sha256_bytes(data)
    r = hub.http.post(f"/{repo}.git/info/lfs/objects/batch",
                      json={"operation": "download", "transfers": ["basic"],
                            "objects": [{"oid": sha, "size": len(data)}]},
                      headers={**hub.auth(hub.token()), "accept": "application/vnd.git-lfs+json"})
    assert r.status_code == 200, r.text
    obj = r.json()["objects"][0]
    href = obj["actions"]["download"]["href"]
    got = hub.http.get(href, headers=obj["actions"]["download"].get("header", {}))
    assert got.status_code == 200 and sha256_bytes(got.content) == sha


def test_xet_tokens_are_scoped_to_the_repo_and_its_readers(trove, client, hub, bob, tmp_path):
    private = hub.create_repo("xet-private", private=True)
    data = random_file(tmp_path / "secret.bin", 1_500_000)
    client.py(UPLOAD, xet=True, args={"repo": private, "path": "secret.bin", "local": str(tmp_path / "secret.bin")})
    xet_hash = tree(hub, private)["secret.bin"]["xetHash"]

    # The admin's read token works, with the JSON body and the headers.
    r = hub.http.get(f"/api/models/{private}/xet-read-token/main", headers=hub.auth(hub.token()))
    assert r.status_code == 200
    body = r.json()
    assert body["accessToken"] == r.headers["x-xet-access-token"]
    assert body["casUrl"] == r.headers["x-xet-cas-url"] == f"{trove.url}/xet"
    assert str(body["exp"]) == r.headers["x-xet-token-expiration"]
    rec = hub.http.get(f"/xet/v2/reconstructions/{xet_hash}",
                       headers={"authorization": f"Bearer {body['accessToken']}"})
    assert rec.status_code == 200 and rec.json()["terms"]

    # An outsider gets no token for the private repo ...
    for kind in ("xet-read-token", "xet-write-token"):
        r = hub.http.get(f"/api/models/{private}/{kind}/main", headers=hub.auth(bob.token))
        assert r.status_code == 404 and r.headers.get("x-error-code") == "RepoNotFound"
    # ... and a token for a repo of theirs cannot read the private file's reconstruction.
    own = hub.create_repo("bob-xet", namespace=bob.name, token=bob.token)
    r = hub.http.get(f"/api/models/{own}/xet-read-token/main", headers=hub.auth(bob.token))
    assert r.status_code == 200
    bob_cas = {"authorization": f"Bearer {r.json()['accessToken']}"}
    for path in (f"/xet/v2/reconstructions/{xet_hash}", f"/xet/v1/reconstructions/{xet_hash}"):
        assert hub.http.get(path, headers=bob_cas).status_code == 404
    # Knowing the SHA-256 does not let them commit a pointer to the private bytes either.
    sha = sha256_bytes(data)
    r = hub.commit_raw(own, "\n".join([
        ndjson("header", summary="steal", description=""),
        ndjson("lfsFile", path="stolen.bin", algo="sha256", oid=sha, size=len(data)),
    ]) + "\n", token=bob.token)
    assert 400 <= r.status_code < 500, r.status_code
    assert "stolen.bin" not in tree(hub, own, token=bob.token)
    # A forged token is refused.
    forged = {"authorization": "Bearer " + body["accessToken"].replace(".read.", ".write.")}
    assert hub.http.get(f"/xet/v2/reconstructions/{xet_hash}", headers=forged).status_code == 401


def test_a_public_repos_tokens_see_none_of_the_namespaces_private_xorbs(trove, client, hub, bob, tmp_path):
    private = hub.create_repo("xet-hidden", private=True)
    random_file(tmp_path / "hidden.bin", 700_000)
    client.py(UPLOAD, xet=True, args={"repo": private, "path": "hidden.bin", "local": str(tmp_path / "hidden.bin")})
    public = hub.create_repo("xet-shown")
    xet_hash = tree(hub, private)["hidden.bin"]["xetHash"]
    owner_read = hub.http.get(f"/api/models/{private}/xet-read-token/main", headers=hub.auth(hub.token()))
    rec = hub.http.get(f"/xet/v2/reconstructions/{xet_hash}",
                       headers={"authorization": f"Bearer {owner_read.json()['accessToken']}"})
    xorbs = sorted({t["hash"] for t in rec.json()["terms"]})
    assert xorbs

    def head_all(token_route: str, headers: dict) -> set[int]:
        r = hub.http.get(token_route, headers=headers)
        assert r.status_code == 200, r.text
        cas = {"authorization": f"Bearer {r.json()['accessToken']}"}
        return {hub.http.head(f"/xet/v1/xorbs/default/{x}", headers=cas).status_code for x in xorbs}

    # The owner's token for the public repo sees what the namespace holds (they read it all).
    assert head_all(f"/api/models/{public}/xet-read-token/main", hub.auth(hub.token())) == {200}
    # Anyone's read token for it, and a contributor's write token (bob may open a pull
    # request there), learn nothing: the private repo's xorbs answer as unknown ones.
    assert head_all(f"/api/models/{public}/xet-read-token/main", {}) == {404}
    assert head_all(f"/api/models/{public}/xet-write-token/main", hub.auth(bob.token)) == {404}


def test_write_token_for_a_new_pr_and_read_only_tokens(hub, repo, admin_read_token):
    r = hub.http.get(f"/api/models/{repo}/xet-write-token/None?create_pr=1", headers=hub.auth(hub.token()))
    assert r.status_code == 200 and r.headers["x-xet-access-token"]
    r = hub.http.get(f"/api/models/{repo}/xet-write-token/main", headers=hub.auth(admin_read_token))
    assert r.status_code == 403
    r = hub.http.get(f"/api/models/{repo}/xet-read-token/no-such-branch", headers=hub.auth(hub.token()))
    assert r.status_code == 404 and r.headers.get("x-error-code") == "RevisionNotFound"
    r = hub.http.get(f"/api/models/{repo}/xet-write-token/main")
    assert r.status_code == 401


def test_lfs_and_xet_uploads_of_the_same_bytes_coexist(trove, client, hub, tmp_path):
    repo = hub.create_repo("xet-and-lfs")
    data = random_file(tmp_path / "same.bin", 1_200_000)
    client.py(UPLOAD, xet=False, args={"repo": repo, "path": "lfs.bin", "local": str(tmp_path / "same.bin")})
    client.py(UPLOAD, xet=True, args={"repo": repo, "path": "xet.bin", "local": str(tmp_path / "same.bin")})
    entries = tree(hub, repo)
    assert entries["lfs.bin"]["lfs"]["oid"] == entries["xet.bin"]["lfs"]["oid"] == sha256_bytes(data)
    for path in ("lfs.bin", "xet.bin"):
        for xet in (True, False):
            got = fresh_client(trove, tmp_path / f"{path}-{xet}").py(
                DOWNLOAD, xet=xet, args={"repo": repo, "path": path}).result
            assert got["sha256"] == sha256_bytes(data), (path, xet)


def git(*args: str, cwd: Path, env: dict | None = None) -> str:
    p = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})})
    assert p.returncode == 0, f"git {' '.join(args)}: {p.stdout}\n{p.stderr}"
    return p.stdout


def test_git_lfs_pull_of_a_xet_uploaded_file(trove, client, hub, tmp_path):
    """The real git-lfs binary fetches a Xet-uploaded file through the LFS API: the server
    rebuilds its bytes from xorbs. (The checkout holds the pointer the hub committed.)"""
    repo = hub.create_repo("xet-git-lfs")
    data = random_file(tmp_path / "w.bin", 3_000_000)
    client.py(UPLOAD, xet=True, args={"repo": repo, "path": "w.bin", "local": str(tmp_path / "w.bin")})
    pointer = hub.http.get(f"/api/models/{repo}/tree/main").json()
    assert any(e["path"] == "w.bin" and e.get("xetHash") for e in pointer)

    work = tmp_path / "checkout"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    git("lfs", "install", "--local", cwd=work)
    (work / ".gitattributes").write_text("*.bin filter=lfs diff=lfs merge=lfs -text\n")
    (work / "w.bin").write_bytes(lfs_pointer(data))
    git("add", ".", cwd=work)
    git("-c", "user.name=e2e", "-c", "user.email=e2e@example.invalid", "commit", "-qm", "pointer", cwd=work)
    git("config", "lfs.url", f"{trove.url}/{repo}.git/info/lfs", cwd=work)
    git("config", "http.extraHeader", f"Authorization: Bearer {trove.admin_token}", cwd=work)
    assert (work / "w.bin").read_bytes() == lfs_pointer(data)
    git("lfs", "pull", cwd=work)
    assert sha256_bytes((work / "w.bin").read_bytes()) == sha256_bytes(data)


CREATE_PR = """
import hf_xet
from huggingface_hub import CommitOperationAdd, hf_hub_download
repo = ARGS["repo"]
info = api.create_commit(repo, [CommitOperationAdd("weights.bin", ARGS["local"]),
                                CommitOperationAdd("notes.txt", b"small and inline")],
                         commit_message="Propose new weights", create_pr=True)
main_files = sorted(api.list_repo_files(repo))
pr_files = sorted(api.list_repo_files(repo, revision=info.pr_revision))
p = hf_hub_download(repo, "weights.bin", revision=info.pr_revision)
details = api.get_discussion_details(repo, info.pr_num)
emit({"pr_url": info.pr_url, "pr_num": info.pr_num, "pr_revision": info.pr_revision, "oid": info.oid,
      "main_files": main_files, "pr_files": pr_files, "sha256": sha256_file(p),
      "hash_files": hf_xet.hash_files([ARGS["local"]])[0].hash,
      "status": details.status, "events": [e.type for e in details.events],
      "target": details.target_branch, "diff": details.diff})
"""

MERGE_AND_DOWNLOAD = """
from huggingface_hub import hf_hub_download
api.merge_pull_request(ARGS["repo"], ARGS["num"], comment="thanks")
d = api.get_discussion_details(ARGS["repo"], ARGS["num"])
p = hf_hub_download(ARGS["repo"], "weights.bin")
emit({"status": d.status, "merge_commit": d.merge_commit_oid, "sha256": sha256_file(p),
      "head": api.model_info(ARGS["repo"]).sha})
"""


def test_create_commit_with_create_pr_through_xet(trove, client, hub, tmp_path):
    """create_commit(create_pr=True) with hf_xet: the files reach refs/pr/N only, verified,
    downloadable from the PR through Xet and HTTP; merging brings them to main."""
    repo = hub.create_repo("xet-pr")
    main_before = hub.head_sha(repo)
    local = tmp_path / "weights.bin"
    data = random_file(local, 3_000_000)
    r = client.py(CREATE_PR, xet=True, args={"repo": repo, "local": str(local)}).result
    assert r["pr_num"] == 1 and r["pr_revision"] == "refs/pr/1"
    assert r["pr_url"].endswith(f"/{repo}/discussions/1"), r["pr_url"]
    assert r["main_files"] == [".gitattributes"], "a pull request must leave main alone"
    assert r["pr_files"] == [".gitattributes", "notes.txt", "weights.bin"]
    assert r["sha256"] == sha256_bytes(data)
    assert r["status"] == "open" and r["target"] == "refs/heads/main"
    assert r["events"][-1] == "commit"
    assert "weights.bin" in r["diff"] and "+small and inline" in r["diff"]
    assert hub.head_sha(repo) == main_before
    entry = hub.http.post(f"/api/models/{repo}/paths-info/refs%2Fpr%2F1",
                          data={"paths": ["weights.bin"]}, headers=hub.auth(hub.token())).json()[0]
    assert entry["xetHash"] == r["hash_files"]
    assert entry["lfs"]["oid"] == sha256_bytes(data)

    # The same bytes over plain HTTP from the PR revision (the bridge).
    plain = fresh_client(trove, tmp_path / "plain")
    got = plain.py("""
from huggingface_hub import hf_hub_download
p = hf_hub_download(ARGS["repo"], "weights.bin", revision="refs/pr/1")
emit({"sha256": sha256_file(p)})
""", args={"repo": repo}).result
    assert got["sha256"] == sha256_bytes(data)

    merged = client.py(MERGE_AND_DOWNLOAD, xet=True, args={"repo": repo, "num": 1}).result
    assert merged["status"] == "merged"
    assert merged["merge_commit"] == merged["head"] == r["oid"], "fast-forward to the PR's commit"
    assert merged["sha256"] == sha256_bytes(data)


# Several xorbs (at most 64 MiB each), so that the upload is cut while some are still to go.
CUT_UPLOAD_SIZE = 150 * 1000 * 1000
XORB_ACKED = re.compile(r"method=POST path=/xet/v1/xorbs/default/([0-9a-f]{64}) status=200 .*complete=true")
XORB_POSTED = re.compile(r"method=POST path=/xet/v1/xorbs/default/([0-9a-f]{64}) ")


def log_size(server) -> int:
    return server.log_path.stat().st_size


def log_since(server, offset: int) -> str:
    with open(server.log_path, encoding="utf-8", errors="replace") as log:
        log.seek(offset)
        return log.read()


@pytest.mark.slow
def test_a_retry_from_another_machine_does_not_resend_what_an_upload_cut_short_stored(
        trove, hub, tmp_path):
    """An hf_xet upload killed after the server stored its first xorb and before any shard
    (a laptop closed mid-upload): the file is nowhere, and the retry from another machine,
    whose cache never saw the first attempt, learns from its global-dedup query that the
    repository holds that xorb and does not send it again; the file reads back whole."""
    repo = hub.create_repo("xet-cut-short")
    path = tmp_path / "big.bin"
    data = random_file(path, CUT_UPLOAD_SIZE)
    args = {"repo": repo, "path": "big.bin", "local": str(path)}

    start = log_size(trove)
    # One xorb at a time: the first acknowledged is the one the file starts in.
    upload = fresh_client(trove, tmp_path / "laptop").popen_py(
        UPLOAD, xet=True, args=args, extra_env={"HF_XET_FIXED_UPLOAD_CONCURRENCY": "1"})
    try:
        # The first xorb acknowledged, as soon as the line is written.
        stored = wait_in_log(trove, XORB_ACKED, upload, 180, offset=start).group(1)
        upload.kill()
    finally:
        if upload.poll() is None:
            upload.kill()
        upload.communicate(timeout=30)
    cut = log_since(trove, start)
    assert "xet.shard_received" not in cut, "the shard was sent: the cut came too late"
    assert "big.bin" not in tree(hub, repo)

    start = log_size(trove)
    retry = fresh_client(trove, tmp_path / "ci-runner").py(UPLOAD, xet=True, args=args)
    assert retry.result["commit"]
    log = log_since(trove, start)
    assert "storage.dedup_answered" in log, "the retry's query found nothing"
    sent = XORB_POSTED.findall(log)
    assert stored not in sent, f"the xorb stored before the cut was sent again ({len(sent)} sent)"
    assert sent, "the rest of the file was never stored: nothing to retry"

    got = fresh_client(trove, tmp_path / "dl").py(DOWNLOAD, xet=True,
                                                 args={"repo": repo, "path": "big.bin"}).result
    assert got["sha256"] == sha256_bytes(data)


def test_same_bytes_uploaded_to_a_second_repo_through_xet(trove, client, hub, tmp_path):
    """The CAS answers about a xorb only to tokens of repos that reference it; uploading
    bytes a first repo already holds to a second one still works, from a warm client cache
    and from a cold one, and each repo reads them back."""
    first = hub.create_repo("xet-first", private=True)
    data = random_file(tmp_path / "shared.bin", 1_500_000)
    client.py(UPLOAD, xet=True, args={"repo": first, "path": "shared.bin", "local": str(tmp_path / "shared.bin")})
    for name, uploader in (("xet-second-warm", client),
                           ("xet-second-cold", fresh_client(trove, tmp_path / "cold"))):
        second = hub.create_repo(name)
        uploader.py(UPLOAD, xet=True, args={"repo": second, "path": "shared.bin",
                                            "local": str(tmp_path / "shared.bin")})
        got = fresh_client(trove, tmp_path / f"dl-{name}").py(
            DOWNLOAD, xet=True, args={"repo": second, "path": "shared.bin"}).result
        assert got["sha256"] == sha256_bytes(data), name


UPLOAD_BYTES = """
for path, local in ARGS["files"].items():
    api.upload_file(path_or_fileobj=Path(local).read_bytes(), path_in_repo=path, repo_id=ARGS["repo"])
emit({"files": api.list_repo_files(ARGS["repo"])})
"""

DOWNLOAD_ALL = """
from huggingface_hub import hf_hub_download
emit({path: sha256_file(hf_hub_download(ARGS["repo"], path)) for path in ARGS["paths"]})
"""


def create_named_repo(hub, repo: str) -> None:
    namespace, name = repo.split("/")
    r = hub.http.post("/api/repos/create", json={"name": name, "organization": namespace, "type": "model"},
                      headers=hub.auth(hub.token()))
    assert r.status_code == 200, f"create {repo}: {r.status_code} {r.text[:300]}"


def delete_repo(hub, repo: str) -> None:
    namespace, name = repo.split("/")
    r = hub.http.request("DELETE", "/api/repos/delete", json={"name": name, "organization": namespace,
                                                               "type": "model"},
                         headers=hub.auth(hub.token()))
    assert r.status_code == 200, f"delete {repo}: {r.status_code} {r.text[:300]}"


def test_a_warm_client_cache_uploads_the_same_bytes_to_another_namespace_and_after_a_delete(
        trove, client, hub, tmp_path):
    """hf_xet trusts its local shard cache: bytes it uploaded once, to any repository, it
    never sends again, and its shard names those xorbs. The same user's upload of the same
    bytes to an organization's repository, then to a re-created repository after deleting
    the first, must succeed (they failed with "Invalid shard: ... references xorb ..., which
    this server does not hold" until the cache was wiped) and read back byte-exact."""
    org = unique("xet-org")
    trove.admin_cli("org", "create", org, "--owner", "admin")
    files = {"w.bin": os.urandom(5000), "big.bin": os.urandom(3_000_000)}
    local = {}
    for path, data in files.items():
        (tmp_path / path).write_bytes(data)
        local[path] = str(tmp_path / path)

    name = unique("xet-warm")
    first = f"admin/{name}"
    steps = [
        ("to the user's own repository", first, None),
        ("to the organization's", f"{org}/{name}", None),
        ("to the first, deleted and re-created", first, first),
        ("to another repository of the organization, the first deleted",
         f"{org}/{name}-again", f"{org}/{name}"),
    ]
    for i, (what, repo, deleted_first) in enumerate(steps):
        if deleted_first:
            delete_repo(hub, deleted_first)
        create_named_repo(hub, repo)
        start = log_size(trove)
        run = client.py(UPLOAD_BYTES, xet=True, args={"repo": repo, "files": local}, check=False)
        assert run.returncode == 0 and run.result, f"upload {what} failed:\n{run.output[-3000:]}"
        assert set(files) <= set(run.result["files"]), (what, run.result)
        if i > 0:
            # The warm cache was used: the shard named xorbs the client did not send again.
            sent = XORB_POSTED.findall(log_since(trove, start))
            assert not sent, f"upload {what}: the client sent {len(sent)} xorbs, its cache was cold"
        got = fresh_client(trove, tmp_path / f"dl-{i}").py(
            DOWNLOAD_ALL, xet=True, args={"repo": repo, "paths": list(files)}).result
        assert got == {path: sha256_bytes(data) for path, data in files.items()}, (what, got)
