"""Git over HTTP with the real git and git-lfs: clone, fetch and push of models, datasets and
Spaces (protocol v0 and v2, with and without `.git`), credentials, the push rules, LFS files
and locks, interleaving with API commits, and pushes cut short."""

from __future__ import annotations

import base64
import gzip
import io
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import (Hub, b64, clean_env, httpx, git_blob_id, ndjson, quote_all, sha256_bytes,
                      sha256_file, unique, url_prefix, write_random)

GIT_TIMEOUT_S = 180


class Git:
    """The real git and git-lfs, with a private HOME and no system configuration."""

    def __init__(self, server, base: Path):
        self.server = server
        self.base = base
        self.home = base / "git-home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.env = clean_env()
        for k in list(self.env):
            if k.startswith("GIT_"):
                del self.env[k]
        self.env.update({
            "HOME": str(self.home),
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "E2E Author",
            "GIT_AUTHOR_EMAIL": "e2e@example.invalid",
            "GIT_COMMITTER_NAME": "E2E Author",
            "GIT_COMMITTER_EMAIL": "e2e@example.invalid",
            "GIT_ASKPASS": "",
            "SSH_ASKPASS": "",
        })
        self.run("config", "--global", "init.defaultBranch", "main")
        self.run("config", "--global", "advice.detachedHead", "false")
        self.run("lfs", "install", "--skip-repo")

    def url(self, repo: str, *, repo_type: str = "model", token: str | None = None,
            dotgit: bool = False) -> str:
        parts = urlsplit(self.server.url)
        auth = f"git:{token}@" if token else ""
        return (f"{parts.scheme}://{auth}{parts.netloc}/{url_prefix(repo_type)}{repo}"
                f"{'.git' if dotgit else ''}")

    def run(self, *args: str, cwd: Path | None = None, check: bool = True,
            timeout: float = GIT_TIMEOUT_S, env: dict | None = None) -> subprocess.CompletedProcess:
        p = subprocess.run(["git", *args], cwd=cwd or self.base, env={**self.env, **(env or {})},
                           capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        if check and p.returncode != 0:
            self.server.check_alive()
            pytest.fail(f"git {' '.join(args)} failed ({p.returncode})\nstdout: {p.stdout}\n"
                        f"stderr: {p.stderr}\n{self.server.log_tail(30)}", pytrace=False)
        return p

    def clone(self, url: str, dest: str, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("clone", *extra, url, str(self.base / dest), check=check)

    def head(self, work: Path, rev: str = "HEAD") -> str:
        return self.run("rev-parse", rev, cwd=work).stdout.strip()

    def commit_file(self, work: Path, path: str, data: bytes, message: str) -> str:
        target = work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        self.run("add", path, cwd=work)
        self.run("commit", "-q", "-m", message, cwd=work)
        return self.head(work)


@pytest.fixture
def git(trove, tmp_path) -> Git:
    return Git(trove, tmp_path)


def _basic(token: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"git:{token}".encode()).decode()}


def _pkt(line: bytes) -> bytes:
    return b"%04x" % (len(line) + 4) + line


# --------------------------------------------------------------------------------------------
# Clone and fetch
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("repo_type", ["model", "dataset", "space"])
@pytest.mark.parametrize("protocol", ["0", "2"])
@pytest.mark.parametrize("dotgit", [False, True], ids=["plain", "dotgit"])
def test_clone_public_repo_anonymously(git, hub, repo_type, protocol, dotgit):
    repo = hub.create_repo("clone", repo_type=repo_type)
    files = {"README.md": b"# hello\n", "src/data.txt": b"some data\n"}
    head = hub.commit_files(repo, files, repo_type=repo_type)
    git.clone(git.url(repo, repo_type=repo_type, dotgit=dotgit), "c", "-c",
              f"protocol.version={protocol}")
    work = git.base / "c"
    assert git.head(work) == head
    for path, data in files.items():
        assert (work / path).read_bytes() == data
    # A later fetch sees a new API commit.
    new_head = hub.commit_files(repo, {"later.txt": b"later"}, repo_type=repo_type)
    git.run("-c", f"protocol.version={protocol}", "fetch", "origin", cwd=work)
    assert git.head(work, "origin/main") == new_head


def test_private_repo_needs_a_token_and_never_leaks(git, hub, bob):
    repo = hub.create_repo("private-clone", private=True)
    head = hub.commit_files(repo, {"secret.txt": b"s3cret"})
    # Anonymous: 401 with a Basic challenge, so git asks its credential helpers.
    r = hub.http.get(f"/{repo}/info/refs?service=git-upload-pack")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].lower().startswith("basic")
    p = git.clone(git.url(repo), "anon", check=False)
    assert p.returncode != 0 and not (git.base / "anon" / "secret.txt").exists()
    # Someone else's token: the repository does not exist (same as a missing one).
    r = hub.http.get(f"/{repo}/info/refs?service=git-upload-pack", headers=_basic(bob.token))
    missing = hub.http.get(f"/admin/{unique('nope')}/info/refs?service=git-upload-pack",
                           headers=_basic(bob.token))
    assert r.status_code == missing.status_code == 404
    assert r.text == missing.text
    # The owner's token, as URL credentials or as an extra header.
    git.clone(git.url(repo, token=hub.server.admin_token), "owner")
    assert (git.base / "owner" / "secret.txt").read_bytes() == b"s3cret"
    git.clone(git.url(repo), "header", "-c",
              f"http.extraHeader=Authorization: Bearer {hub.server.admin_token}")
    assert git.head(git.base / "header") == head
    # A bad token is refused, not treated as anonymous.
    r = hub.http.get(f"/{repo}/info/refs?service=git-upload-pack", headers=_basic("hf_bogus"))
    assert r.status_code == 401


def test_file_uploaded_with_huggingface_hub_appears_in_a_fresh_clone(git, client, hub, tmp_path):
    repo = hub.create_repo("hf-to-git")
    small = b"config from the python client\n"
    large = write_random(tmp_path / "w.safetensors", 3 * 1024 * 1024)
    client.py("""
api.upload_file(path_or_fileobj=ARGS["small"].encode(), path_in_repo="config.json", repo_id=ARGS["repo"])
api.upload_file(path_or_fileobj=ARGS["large"], path_in_repo="w.safetensors", repo_id=ARGS["repo"])
""", args={"repo": repo, "small": small.decode(), "large": str(tmp_path / "w.safetensors")})
    git.clone(git.url(repo), "fresh")
    work = git.base / "fresh"
    assert (work / "config.json").read_bytes() == small
    # git-lfs smudged the LFS file from the server during checkout.
    assert sha256_file(work / "w.safetensors") == sha256_bytes(large)
    assert git.head(work) == hub.head_sha(repo)


# --------------------------------------------------------------------------------------------
# Push
# --------------------------------------------------------------------------------------------


def test_push_small_files_branches_and_tags(git, client, hub):
    repo = hub.create_repo("push")
    token = hub.server.admin_token
    before = hub.info(repo).json()["lastModified"]
    git.clone(git.url(repo, token=token, dotgit=True), "w")
    work = git.base / "w"
    time.sleep(1.1)  # lastModified has a resolution of one second
    data = b"pushed with git\n"
    head = git.commit_file(work, "docs/pushed.txt", data, "Add pushed.txt from git")
    git.run("push", "origin", "main", cwd=work)
    assert hub.head_sha(repo) == head
    r = hub.http.get(f"/{repo}/resolve/main/docs/pushed.txt")
    assert r.status_code == 200 and r.content == data
    assert r.headers["etag"].strip('"') == git_blob_id(data)
    assert hub.info(repo).json()["lastModified"] > before

    # Branches and tags, lightweight and annotated.
    git.run("checkout", "-q", "-b", "v1.0", cwd=work)
    branch_head = git.commit_file(work, "branch.txt", b"on a branch", "branch commit")
    git.run("push", "origin", "v1.0", cwd=work)
    git.run("tag", "v1.0.0", cwd=work)
    git.run("tag", "-a", "-m", "annotated", "v1.0.1", cwd=work)
    git.run("push", "origin", "v1.0.0", "v1.0.1", cwd=work)
    r = client.py("""
refs = api.list_repo_refs(ARGS["repo"])
commits = api.list_repo_commits(ARGS["repo"])
local = api.hf_hub_download(ARGS["repo"], "docs/pushed.txt")
emit({"branches": {b.name: b.target_commit for b in refs.branches},
      "tags": {t.name: t.target_commit for t in refs.tags},
      "titles": [c.title for c in commits], "ids": [c.commit_id for c in commits],
      "content": open(local, "rb").read().decode()})
""", args={"repo": repo}).result
    assert r["branches"] == {"main": head, "v1.0": branch_head}
    assert r["tags"] == {"v1.0.0": branch_head, "v1.0.1": branch_head}
    assert r["titles"][0] == "Add pushed.txt from git" and r["ids"][0] == head
    assert r["content"] == data.decode()

    # Deleting a branch and a tag that are not main is allowed.
    git.run("push", "origin", "--delete", "v1.0", "v1.0.0", cwd=work)
    refs = hub.http.get(f"/api/models/{repo}/refs").json()
    assert [b["name"] for b in refs["branches"]] == ["main"]
    assert [t["name"] for t in refs["tags"]] == ["v1.0.1"]


@pytest.mark.parametrize("repo_type", ["dataset", "space"])
def test_push_to_datasets_and_spaces(git, hub, repo_type):
    repo = hub.create_repo("push-typed", repo_type=repo_type)
    git.clone(git.url(repo, repo_type=repo_type, token=hub.server.admin_token), "w")
    work = git.base / "w"
    head = git.commit_file(work, "data/rows.csv", b"a,b\n1,2\n", "rows")
    git.run("push", cwd=work)
    assert hub.head_sha(repo, repo_type=repo_type) == head


def test_push_lfs_file_downloads_with_huggingface_hub(git, client, hub, tmp_path):
    repo = hub.create_repo("push-lfs")
    git.clone(git.url(repo, token=hub.server.admin_token), "w")
    work = git.base / "w"
    git.run("lfs", "track", "*.weights", cwd=work)
    data = write_random(work / "model.weights", 5 * 1024 * 1024 + 123)
    git.run("add", ".gitattributes", "model.weights", cwd=work)
    git.run("commit", "-q", "-m", "weights via git lfs", cwd=work)
    push = git.run("push", "origin", "main", cwd=work)
    head = git.head(work)
    assert hub.head_sha(repo) == head, push.stderr
    r = client.py("""
local = api.hf_hub_download(ARGS["repo"], "model.weights")
commits = api.list_repo_commits(ARGS["repo"])
emit({"sha256": sha256_file(local), "size": os.path.getsize(local),
      "commits": [c.commit_id for c in commits]})
""", args={"repo": repo}).result
    assert r["sha256"] == sha256_bytes(data) and r["size"] == len(data)
    assert r["commits"][0] == head
    # And a fresh clone gets the content back through git-lfs.
    git.clone(git.url(repo), "again")
    assert sha256_file(git.base / "again" / "model.weights") == sha256_bytes(data)


def test_a_push_larger_than_gits_post_buffer_lands_after_its_credential_probe(git, hub):
    """git posts a lone flush-pkt before a request larger than `http.postBuffer` (1 MiB) to
    check its credentials, then streams the pack: the server answers the probe without git,
    and the push that follows lands with every file."""
    repo = hub.create_repo("push-probed")
    git.clone(git.url(repo, token=hub.server.admin_token), "w")
    work = git.base / "w"
    write_random(work / "data.bin.raw", 3 * 1024 * 1024)
    git.run("add", "data.bin.raw", cwd=work)
    git.run("commit", "-q", "-m", "3 MiB without LFS", cwd=work)
    p = git.run("push", "origin", "main", cwd=work,
                env={"GIT_TRACE_CURL": "1", "GIT_TRACE_CURL_NO_DATA": "1"})
    sent = [line for line in p.stderr.splitlines() if "=> Send header: POST" in line]
    assert len(sent) == 2, p.stderr[-4000:]  # the probe, then the pack
    assert "Content-Length: 4" in p.stderr
    assert hub.head_sha(repo) == git.head(work)
    r = hub.http.get(f"/{repo}/resolve/main/data.bin.raw")
    assert r.status_code == 200 and r.content == (work / "data.bin.raw").read_bytes()


def test_push_of_a_12_mib_file_without_lfs_is_refused(git, hub, tmp_path):
    repo = hub.create_repo("push-big")
    before = hub.head_sha(repo)
    git.clone(git.url(repo, token=hub.server.admin_token), "w")
    work = git.base / "w"
    write_random(work / "big.bin.raw", 12 * 1024 * 1024)
    git.run("add", "big.bin.raw", cwd=work)
    git.run("commit", "-q", "-m", "too big", cwd=work)
    p = git.run("push", "origin", "main", cwd=work, check=False)
    assert p.returncode != 0
    assert "remote:" in p.stderr and "big.bin.raw is 12.0 MiB" in p.stderr, p.stderr
    assert "git lfs" in p.stderr
    assert hub.head_sha(repo) == before
    r = hub.http.get(f"/{repo}/resolve/main/big.bin.raw")
    assert r.status_code == 404


def test_push_of_a_pointer_to_an_object_never_uploaded_is_refused(git, hub):
    repo = hub.create_repo("push-pointer")
    before = hub.head_sha(repo)
    git.clone(git.url(repo, token=hub.server.admin_token), "w")
    work = git.base / "w"
    pointer = ("version https://git-lfs.github.com/spec/v1\n"
               f"oid sha256:{'ab' * 32}\nsize 1234\n").encode()
    # Committed as plain text (no LFS filter), so git-lfs uploads nothing for it.
    git.commit_file(work, "ghost.txt", pointer, "dangling pointer")
    p = git.run("push", "origin", "main", cwd=work, check=False)
    assert p.returncode != 0
    assert "was not uploaded" in p.stderr and "ghost.txt" in p.stderr, p.stderr
    assert hub.head_sha(repo) == before


def test_force_push_rules(git, hub, bob, trove):
    repo = hub.create_repo("force", namespace=bob.name, token=bob.token)
    git.clone(git.url(repo, token=bob.token), "w")
    work = git.base / "w"
    first = git.commit_file(work, "a.txt", b"a", "a")
    git.run("push", cwd=work)
    # Rewriting main: refused for a non-admin owner, with the reason.
    git.run("reset", "-q", "--hard", "HEAD~1", cwd=work)
    git.commit_file(work, "b.txt", b"b", "b instead")
    p = git.run("push", "--force", "origin", "main", cwd=work, check=False)
    assert p.returncode != 0 and "only administrators" in p.stderr, p.stderr
    assert hub.head_sha(repo, token=bob.token) == first
    # Deleting main: refused.
    p = git.run("push", "origin", "--delete", "main", cwd=work, check=False)
    assert p.returncode != 0 and "cannot be deleted" in p.stderr, p.stderr
    # Other branches may be rewritten and deleted.
    git.run("push", "origin", "HEAD:refs/heads/dev", cwd=work)
    git.run("commit", "-q", "--amend", "-m", "b amended", cwd=work)
    git.run("push", "--force", "origin", "HEAD:refs/heads/dev", cwd=work)
    assert hub.head_sha(repo, revision="dev", token=bob.token) == git.head(work)
    git.run("push", "origin", "--delete", "dev", cwd=work)
    # Refs outside branches, tags and existing pull requests are refused.
    p = git.run("push", "origin", "HEAD:refs/pr/1", cwd=work, check=False)
    assert p.returncode != 0 and "does not exist" in p.stderr, p.stderr
    p = git.run("push", "origin", "HEAD:refs/convert/parquet", cwd=work, check=False)
    assert p.returncode != 0 and "only branches" in p.stderr, p.stderr
    # An administrator may force-push main.
    git.run("push", "--force", git.url(repo, token=trove.admin_token), "HEAD:main", cwd=work)
    assert hub.head_sha(repo) == git.head(work) != first


def test_pushing_needs_write_access(git, hub, bob, admin_read_token):
    repo = hub.create_repo("no-write")
    before = hub.head_sha(repo)
    git.clone(git.url(repo), "w")
    work = git.base / "w"
    git.commit_file(work, "x.txt", b"x", "x")
    # Anonymous: 401 with a challenge; git cannot prompt, so it fails.
    r = hub.http.get(f"/{repo}/info/refs?service=git-receive-pack")
    assert r.status_code == 401 and "basic" in r.headers["www-authenticate"].lower()
    assert git.run("push", "origin", "main", cwd=work, check=False).returncode != 0
    # A read token: 403, explained.
    r = hub.http.get(f"/{repo}/info/refs?service=git-receive-pack", headers=_basic(admin_read_token))
    assert r.status_code == 403, r.text
    p = git.run("push", git.url(repo, token=admin_read_token), "main", cwd=work, check=False)
    assert p.returncode != 0 and "403" in p.stderr, p.stderr
    # A stranger's write token may push to pull requests they opened, so git gets through
    # to the hook, which refuses a branch with the reason.
    p = git.run("push", git.url(repo, token=bob.token), "main", cwd=work, check=False)
    assert p.returncode != 0 and "only to pull requests you opened" in p.stderr, p.stderr
    assert hub.head_sha(repo) == before


# --------------------------------------------------------------------------------------------
# Concurrency and failures
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_api_commits_and_pushes_interleave_without_losing_anything(git, trove, bob):
    hub = Hub(trove)
    repo = hub.create_repo("interleave", namespace=bob.name, token=bob.token)
    git.clone(git.url(repo, token=bob.token), "w")
    work = git.base / "w"
    rounds = 8
    api_commits: list[str] = []
    api_errors: list[str] = []

    def api_writer():
        h = Hub(trove)
        try:
            for i in range(rounds):
                try:
                    api_commits.append(h.commit_files(repo, {f"api/{i}.txt": f"api {i}".encode()},
                                                      token=bob.token, summary=f"api {i}"))
                except BaseException as e:  # noqa: BLE001 - reported below
                    api_errors.append(repr(e))
        finally:
            h.close()

    thread = threading.Thread(target=api_writer)
    thread.start()
    rejected = 0
    for i in range(rounds):
        git.commit_file(work, f"git/{i}.txt", f"git {i}".encode(), f"git {i}")
        for _ in range(30):
            p = git.run("push", "origin", "main", cwd=work, check=False)
            if p.returncode == 0:
                break
            rejected += 1
            git.run("pull", "-q", "--rebase", "origin", "main", cwd=work)
        else:
            pytest.fail(f"push {i} never landed: {p.stderr}")
    thread.join(timeout=GIT_TIMEOUT_S)
    print(f"pushes rejected because the API moved main first: {rejected}")
    assert not api_errors, api_errors
    git.run("fetch", "-q", "origin", cwd=work)
    files = set(git.run("ls-tree", "-r", "--name-only", "origin/main", cwd=work).stdout.split())
    for i in range(rounds):
        assert f"api/{i}.txt" in files and f"git/{i}.txt" in files, sorted(files)
    for commit in api_commits:
        git.run("merge-base", "--is-ancestor", commit, "origin/main", cwd=work)
    hub.close()


def test_every_ref_move_is_served_by_the_next_download(git, hub):
    """Downloads keep what a revision named (the server's revision cache, on by default);
    every way a ref moves — a push, a force push, a deleted branch, the commit API, a branch
    or tag made or deleted, a super-squash, a pull request opened and merged — must be
    served by the very next download, never the commit before it."""
    repo = hub.create_repo("refmoves")
    auth = hub.auth(hub.token())

    def expect(revision: str, commit: str | None, content: bytes | None) -> None:
        """`revision` serves f.txt of `content` at `commit`, or is not found (`None`)."""
        # Twice: the second answer comes from what the first one kept.
        for _ in range(2):
            r = hub.http.get(f"/{repo}/resolve/{quote_all(revision)}/f.txt", headers=auth)
            if commit is None:
                assert r.status_code == 404, (revision, r.status_code, r.headers)
                assert r.headers.get("x-error-code") == "RevisionNotFound", revision
            else:
                got = (r.status_code, r.headers.get("x-repo-commit"), r.content)
                assert got == (200, commit, content), revision

    def api(method: str, path: str, **body) -> None:
        r = hub.http.request(method, f"/api/models/{repo}{path}", headers=auth,
                             json=body if body else None)
        assert r.status_code == 200, f"{method} {path}: {r.status_code} {r.text[:300]}"

    c1 = hub.commit_files(repo, {"f.txt": b"one"})
    expect("main", c1, b"one")
    expect(c1, c1, b"one")
    c2 = hub.commit_files(repo, {"f.txt": b"two"})
    expect("main", c2, b"two")

    git.clone(git.url(repo, token=hub.token()), "w")
    work = git.base / "w"
    c3 = git.commit_file(work, "f.txt", b"three", "three")
    git.run("push", "-q", "origin", "main", cwd=work)
    expect("main", c3, b"three")

    api("POST", "/branch/dev")
    expect("dev", c3, b"three")
    git.run("reset", "-q", "--hard", c1, cwd=work)
    git.run("push", "-q", "--force", "origin", "HEAD:refs/heads/dev", cwd=work)
    expect("dev", c1, b"one")
    api("DELETE", "/branch/dev")
    expect("dev", None, None)
    api("POST", "/branch/dev", startingPoint=c2)
    expect("dev", c2, b"two")
    git.run("push", "-q", "origin", "--delete", "dev", cwd=work)
    expect("dev", None, None)

    api("POST", "/tag/main", tag="v1")
    expect("v1", c3, b"three")
    api("DELETE", "/tag/v1")
    expect("v1", None, None)
    api("POST", f"/tag/{c1}", tag="v1", message="annotated")
    expect("v1", c1, b"one")
    expect("refs/tags/v1", c1, b"one")

    api("POST", "/super-squash/main", message="squashed")
    squashed = hub.head_sha(repo)
    assert squashed not in (c1, c2, c3)
    expect("main", squashed, b"three")

    lines = [ndjson("header", summary="proposal", description=""),
             ndjson("file", path="f.txt", content=b64(b"four"), encoding="base64")]
    r = hub.http.post(f"/api/models/{repo}/commit/main?create_pr=1",
                      content=("\n".join(lines) + "\n").encode(),
                      headers={**auth, "content-type": "application/x-ndjson"})
    assert r.status_code == 200, r.text[:300]
    proposed = r.json()["commitOid"]
    expect("refs/pr/1", proposed, b"four")
    expect("main", squashed, b"three")
    api("POST", "/discussions/1/merge")
    merged = hub.head_sha(repo)
    assert merged != squashed
    expect("main", merged, b"four")


def _receive_pack_body(git: Git, work: Path, old: str, new: str) -> bytes:
    """What `git push` posts to update main from `old` to `new`: the command, then the pack."""
    pack = subprocess.run(["git", "pack-objects", "--stdout", "--revs", "-q"], cwd=work,
                          input=f"{new}\n^{old}\n".encode(), capture_output=True,
                          env=git.env, check=True).stdout
    assert pack.startswith(b"PACK")
    return (_pkt(f"{old} {new} refs/heads/main\0report-status side-band-64k agent=e2e\n".encode())
            + b"0000" + pack)


def test_a_push_based_on_a_stale_head_is_refused_by_the_ref_compare_and_swap(git, hub, trove):
    """The API moves main between the advertisement git saw and its update: receive-pack's
    compare-and-swap refuses the update and the API commit stays."""
    repo = hub.create_repo("cas")
    seen = hub.head_sha(repo)
    git.clone(git.url(repo, token=trove.admin_token), "w")
    work = git.base / "w"
    new = git.commit_file(work, "pushed.txt", b"pushed", "pushed")
    api_commit = hub.commit_files(repo, {"api.txt": b"api"})
    r = hub.http.post(f"/{repo}/git-receive-pack", content=_receive_pack_body(git, work, seen, new),
                      headers={**_basic(trove.admin_token),
                               "content-type": "application/x-git-receive-pack-request"})
    assert r.status_code == 200
    assert b"ng refs/heads/main" in r.content, r.content[-500:]
    assert hub.head_sha(repo) == api_commit


def test_push_cut_midway_leaves_the_repo_as_before(git, hub, trove):
    repo = hub.create_repo("cut")
    token = trove.admin_token
    before = hub.head_sha(repo)
    git.clone(git.url(repo, token=token), "w")
    work = git.base / "w"
    write_random(work / "payload.dat", 4 * 1024 * 1024)
    git.run("add", "payload.dat", cwd=work)
    git.run("commit", "-q", "-m", "payload", cwd=work)
    new = git.head(work)
    body = _receive_pack_body(git, work, before, new)
    assert len(body) > 1024 * 1024
    parts = urlsplit(trove.url)
    head = (f"POST /{repo}/git-receive-pack HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: {_basic(token)['authorization']}\r\n"
            "Content-Type: application/x-git-receive-pack-request\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as s:
        s.sendall(head + body[: len(body) // 2])
        time.sleep(0.5)
    # The server notices the cut, git's receive-pack fails on its truncated input and drops
    # its quarantine; the branch never moved.
    repos_dir = trove.data_dir / "repos"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if not list(repos_dir.glob("*.git/objects/tmp_objdir-incoming-*")):
            break
        time.sleep(0.2)
    assert not list(repos_dir.glob("*.git/objects/tmp_objdir-incoming-*"))
    assert hub.head_sha(repo) == before
    git.clone(git.url(repo), "check")
    assert git.run("cat-file", "-e", new, cwd=git.base / "check", check=False).returncode != 0
    git.run("fsck", "--no-progress", cwd=git.base / "check")
    # The repository takes the same push normally afterwards.
    git.run("push", "origin", "main", cwd=work)
    assert hub.head_sha(repo) == new


# --------------------------------------------------------------------------------------------
# LFS locks
# --------------------------------------------------------------------------------------------


def test_git_lfs_lock_and_unlock(git, hub, bob, trove):
    repo = hub.create_repo("locks", namespace=bob.name, token=bob.token)
    git.clone(git.url(repo, token=bob.token), "w")
    work = git.base / "w"
    git.run("lfs", "track", "*.psd", cwd=work)
    write_random(work / "art.psd", 2048)
    git.run("add", ".", cwd=work)
    git.run("commit", "-q", "-m", "art", cwd=work)
    git.run("push", cwd=work)

    out = git.run("lfs", "lock", "art.psd", cwd=work).stdout
    assert "Locked art.psd" in out, out
    listed = git.run("lfs", "locks", cwd=work).stdout
    assert "art.psd" in listed and bob.name in listed, listed
    # Locking again is a conflict; the API shows the lock to readers.
    again = git.run("lfs", "lock", "art.psd", cwd=work, check=False)
    assert again.returncode != 0
    r = hub.http.get(f"/{repo}.git/info/lfs/locks", headers={"accept": "application/vnd.git-lfs+json"})
    assert r.status_code == 200
    locks = r.json()["locks"]
    assert [(lk["path"], lk["owner"]["name"]) for lk in locks] == [("art.psd", bob.name)]
    # Verification splits ours and theirs; a push with the lock held by us goes through.
    r = hub.http.post(f"/{repo}.git/info/lfs/locks/verify", json={},
                      headers={**_basic(bob.token), "content-type": "application/vnd.git-lfs+json"})
    assert r.status_code == 200 and len(r.json()["ours"]) == 1 and r.json()["theirs"] == []
    # Unlocking someone else's lock needs force; the admin (a writer here) may force it.
    lock_id = locks[0]["id"]
    r = hub.http.post(f"/{repo}.git/info/lfs/locks/{lock_id}/unlock", json={},
                      headers=_basic(trove.admin_token))
    assert r.status_code == 403, r.text
    assert "message" in r.json()
    out = git.run("lfs", "unlock", "art.psd", cwd=work).stdout
    assert "Unlocked art.psd" in out, out
    assert hub.http.get(f"/{repo}.git/info/lfs/locks").json()["locks"] == []
    # Anonymous users may not lock; strangers see a private repo's locks as missing.
    r = hub.http.post(f"/{repo}.git/info/lfs/locks", json={"path": "art.psd"})
    assert r.status_code == 401 and r.headers.get("lfs-authenticate")
    private = hub.create_repo("locks-private", private=True)
    r = hub.http.get(f"/{private}.git/info/lfs/locks", headers=_basic(bob.token))
    assert r.status_code == 404


def test_datasets_lfs_locks_route(git, hub):
    repo = hub.create_repo("ds-locks", repo_type="dataset")
    token = hub.server.admin_token
    r = hub.http.post(f"/datasets/{repo}.git/info/lfs/locks", json={"path": "data/x.parquet"},
                      headers=_basic(token))
    assert r.status_code == 201, r.text
    lock = r.json()["lock"]
    assert lock["path"] == "data/x.parquet" and lock["owner"]["name"] == "admin"
    r = hub.http.post(f"/datasets/{repo}.git/info/lfs/locks/{lock['id']}/unlock",
                      json={"force": False}, headers=_basic(token))
    assert r.status_code == 200 and r.json()["lock"]["id"] == lock["id"]


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def test_bad_git_requests_get_clean_4xx_and_write_nothing(hub, trove):
    repo = hub.create_repo("bad-input")
    before = hub.head_sha(repo)
    auth = _basic(trove.admin_token)
    upload = f"/{repo}/git-upload-pack"
    ct = {"content-type": "application/x-git-upload-pack-request"}
    cases = [
        # dumb HTTP and unknown services
        hub.http.get(f"/{repo}/info/refs", headers=auth),
        hub.http.get(f"/{repo}/info/refs?service=git-upload-archive", headers=auth),
        # a Git-Protocol header that is not what git sends
        hub.http.get(f"/{repo}/info/refs?service=git-upload-pack",
                     headers={**auth, "git-protocol": "version=2;$(reboot)"}),
        # wrong content type
        hub.http.post(upload, content=b"0000", headers={**auth, "content-type": "text/plain"}),
        # a body that claims gzip but is not
        hub.http.post(upload, content=b"not gzip at all",
                      headers={**auth, **ct, "content-encoding": "gzip"}),
        # an encoding nobody supports
        hub.http.post(upload, content=b"0000", headers={**auth, **ct, "content-encoding": "br2"}),
        # a repository that does not exist
        hub.http.post(f"/admin/{unique('nope')}/git-upload-pack", content=b"0000",
                      headers={**auth, **ct}),
    ]
    for r in cases:
        assert 400 <= r.status_code < 500, (r.request.url, r.status_code, r.text)
        assert r.status_code == 415 or r.headers["content-type"].startswith("text/plain"), r.headers
    # Not a pkt-line stream at all, and an empty body: refused before git starts.
    rp = {**auth, "content-type": "application/x-git-receive-pack-request"}
    for content in (b"zzzz not git", b""):
        r = hub.http.post(f"/{repo}/git-receive-pack", content=content, headers=rp)
        assert r.status_code == 400, r.text
    # Well-framed garbage reaches git, which refuses it; whatever the answer, nothing moves.
    try:
        hub.http.post(f"/{repo}/git-receive-pack", content=b"00ffgarbage\n0000", headers=rp)
    except httpx.HTTPError:
        pass
    # A declared body over the push limit is refused before any byte of it is read.
    parts = urlsplit(trove.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as s:
        s.sendall((f"POST /{repo}/git-receive-pack HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                   f"Authorization: {auth['authorization']}\r\n"
                   "Content-Type: application/x-git-receive-pack-request\r\n"
                   f"Content-Length: {1 << 40}\r\n\r\n").encode())
        status_line = s.recv(4096).split(b"\r\n", 1)[0]
    assert b" 413 " in status_line, status_line
    assert hub.head_sha(repo) == before
    trove.check_alive()


def test_gzipped_fetch_requests_are_decompressed_as_they_stream(hub):
    repo = hub.create_repo("gzip")
    head = hub.commit_files(repo, {"g.txt": b"gzip me"})
    request = (_pkt(f"want {head} multi_ack_detailed side-band-64k ofs-delta agent=e2e\n".encode())
               + b"0000" + _pkt(b"done\n"))
    headers = {"content-type": "application/x-git-upload-pack-request"}
    plain = hub.http.post(f"/{repo}/git-upload-pack", content=request, headers=headers)
    zipped = hub.http.post(f"/{repo}/git-upload-pack", content=gzip.compress(request),
                           headers={**headers, "content-encoding": "gzip"})
    for r in (plain, zipped):
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/x-git-upload-pack-result"
        assert b"PACK" in r.content


def test_a_gzip_bomb_fetch_request_is_refused_before_any_answer(hub, trove):
    repo = hub.create_repo("bomb")
    head = hub.commit_files(repo, {"b.txt": b"bomb"})
    request = (_pkt(f"want {head} multi_ack_detailed side-band-64k ofs-delta agent=e2e\n".encode())
               + b"0000" + _pkt(b"done\n"))
    # 200 MiB once decompressed, about 200 KiB on the wire.
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6) as z:
        z.write(request)
        zeros = b"0" * (1 << 20)
        for _ in range(200):
            z.write(zeros)
    r = hub.http.post(f"/{repo}/git-upload-pack", content=buf.getvalue(),
                      headers={"content-type": "application/x-git-upload-pack-request",
                               "content-encoding": "gzip"})
    assert r.status_code == 413, (r.status_code, r.content[:200])
    trove.check_alive()


# --------------------------------------------------------------------------------------------
# Hostile trees: one path rule for pushes and the commit API
# --------------------------------------------------------------------------------------------

# Names a tree may not hold (each planted as a folder with a `config` file in it).
HOSTILE_NAMES = [b".git", b".GIT", b"..", b".", b"a/b", ".git\u200c".encode(), b"GIT~1",
                 b".git.", b"..\\..\\x"]


def _object(git: Git, work: Path, kind: str, data: bytes) -> str:
    """Writes an object exactly as given: `--literally` checks nothing, as an attacker's git."""
    p = subprocess.run(["git", "hash-object", "-t", kind, "-w", "--literally", "--stdin"],
                       cwd=work, input=data, env=git.env, capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.decode().strip()


def _raw_tree(entries: list[tuple[bytes, bytes, str]]) -> bytes:
    """A tree object's bytes, entries sorted as git sorts them (folders compare as `name/`)."""
    key = lambda e: e[1] + (b"/" if e[0] == b"40000" else b"")  # noqa: E731
    return b"".join(mode + b" " + name + b"\0" + bytes.fromhex(oid)
                    for mode, name, oid in sorted(entries, key=key))


def _hostile_commits(git: Git, work: Path, parent: str) -> dict[str, str]:
    """Commits on top of `parent`, each bringing one thing a push must not bring."""
    attrs = git.run("rev-parse", "HEAD:.gitattributes", cwd=work).stdout.strip()
    config = _object(git, work, "blob", b"[core]\n\thooksPath = /tmp\n")
    folder = _object(git, work, "tree", _raw_tree([(b"100644", b"config", config)]))
    ident = "Eve <eve@example.invalid> 1700000000 +0000"

    def commit(root_entries, *, header: str | None = None) -> str:
        root = _object(git, work, "tree", _raw_tree([(b"100644", b".gitattributes", attrs),
                                                     *root_entries]))
        text = header or f"tree {root}\nparent {parent}\nauthor {ident}\ncommitter {ident}\n"
        return _object(git, work, "commit", f"{text}\nhostile\n".encode())

    cases = {name.decode(errors="replace"): commit([(b"40000", name, folder)])
             for name in HOSTILE_NAMES}
    modules = _object(git, work, "blob",
                      b'[submodule "x"]\n\tpath = x\n\turl = -u./payload\n')
    cases[".gitmodules url"] = commit([(b"100644", b".gitmodules", modules)])
    link = _object(git, work, "blob", b"../../elsewhere")
    cases[".gitmodules symlink"] = commit([(b"120000", b".gitmodules", link)])
    fine = _object(git, work, "tree", _raw_tree([(b"100644", b".gitattributes", attrs)]))
    cases["no author"] = commit([], header=f"tree {fine}\nparent {parent}\ncommitter {ident}\n")
    cases["bad email"] = commit([], header=(f"tree {fine}\nparent {parent}\n"
                                            "author Eve <eve@x 1700000000 +0000\n"
                                            f"committer {ident}\n"))
    return cases


def test_pushes_of_hostile_trees_and_commits_are_refused_and_leave_nothing(git, hub):
    repo = hub.create_repo("hostile")
    before = hub.head_sha(repo)
    git.clone(git.url(repo, token=hub.server.admin_token), "w")
    work = git.base / "w"
    for case, commit in _hostile_commits(git, work, before).items():
        for ref in ("refs/heads/main", f"refs/heads/h{abs(hash(case))}"):
            p = git.run("push", "origin", f"{commit}:{ref}", cwd=work, check=False)
            assert p.returncode != 0, f"{case}: accepted\n{p.stderr}"
            assert "remote:" in p.stderr or "remote unpack failed" in p.stderr, \
                f"{case}: {p.stderr}"
    # Nothing of it is visible: the refs, the file list, the planted files.
    assert hub.head_sha(repo) == before
    info = hub.info(repo).json()
    assert [s["rfilename"] for s in info["siblings"]] == [".gitattributes"]
    refs = hub.http.get(f"/api/models/{repo}/refs").json()
    assert [b["name"] for b in refs["branches"]] == ["main"]
    for path in (".git/config", "../config", "GIT~1/config"):
        assert hub.http.get(f"/{repo}/resolve/main/{path}").status_code in (400, 404), path
    git.clone(git.url(repo), "after")


def _commit_with_files(git: Git, work: Path, parent: str, extra: list[tuple[bytes, bytes, str]],
                       files: int) -> str:
    """A commit on top of `parent`: its `.gitattributes`, `files` small new files in a folder,
    and the `extra` root entries."""
    attrs = git.run("rev-parse", "HEAD:.gitattributes", cwd=work).stdout.strip()
    blobs = [(b"100644", b"f%04d.txt" % n, _object(git, work, "blob", b"file %d\n" % n))
             for n in range(files)]
    folder = _object(git, work, "tree", _raw_tree(blobs))
    root = _object(git, work, "tree", _raw_tree([(b"100644", b".gitattributes", attrs),
                                                 (b"40000", b"data", folder), *extra]))
    ident = "Eve <eve@example.invalid> 1700000000 +0000"
    text = f"tree {root}\nparent {parent}\nauthor {ident}\ncommitter {ident}\n\nfiles\n"
    return _object(git, work, "commit", text.encode())


def test_pushes_git_own_checks_judge_are_refused_in_git_words_or_accepted(git, hub):
    """A `.gitmodules` is judged by git's own object checks (the server's cannot vouch for it):
    an option-like URL is refused with git's finding, in a small push (loose objects) and in
    one of more than 100 objects (a kept pack, examined while receive-pack checks it); a
    well-formed submodule is accepted."""
    repo = hub.create_repo("modules")
    before = hub.head_sha(repo)
    git.clone(git.url(repo, token=hub.server.admin_token), "w")
    work = git.base / "w"
    bad = _object(git, work, "blob", b'[submodule "x"]\n\tpath = x\n\turl = -u./payload\n')
    for files in (3, 150):
        commit = _commit_with_files(git, work, before, [(b"100644", b".gitmodules", bad)], files)
        p = git.run("push", "origin", f"{commit}:refs/heads/main", cwd=work, check=False)
        assert p.returncode != 0, f"{files} files: accepted\n{p.stderr}"
        assert "remote:" in p.stderr and "gitmodulesUrl" in p.stderr, p.stderr
        assert hub.head_sha(repo) == before
    good = _object(git, work, "blob",
                   b'[submodule "lib"]\n\tpath = lib\n\turl = https://example.com/lib.git\n')
    sub = before  # any commit id: a submodule names a commit of another repository
    commit = _commit_with_files(git, work, before, [(b"100644", b".gitmodules", good),
                                                    (b"160000", b"lib", sub)], 150)
    p = git.run("push", "origin", f"{commit}:refs/heads/main", cwd=work, check=False)
    assert p.returncode == 0, p.stderr
    assert hub.head_sha(repo) == commit
    files = [s["rfilename"] for s in hub.info(repo).json()["siblings"]]
    assert ".gitmodules" in files and "data/f0149.txt" in files, files


def test_the_hook_names_the_refused_path(git, hub):
    repo = hub.create_repo("hostile-named")
    before = hub.head_sha(repo)
    git.clone(git.url(repo, token=hub.server.admin_token), "w")
    work = git.base / "w"
    commit = _hostile_commits(git, work, before)["..\\..\\x"]
    p = git.run("push", "origin", f"{commit}:refs/heads/main", cwd=work, check=False)
    assert p.returncode != 0
    assert "Push refused by Trove" in p.stderr and "Invalid path" in p.stderr, p.stderr
    assert hub.head_sha(repo) == before
