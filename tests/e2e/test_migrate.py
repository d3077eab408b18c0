"""`trove migrate`: an embedded hub (SQLite + local disk + git) moved into the scale-out mode
(PostgreSQL + a bucket), killed with SIGKILL while it copies objects and run again, then
served from PostgreSQL + S3 with the real client: every repo, ref, file, account, token,
discussion, like, collection and webhook is there, private stays private, new uploads work.
Also its refusals. Needs both servers: scripts/test.sh runs it once, in its scale-out pass
(TROVE_E2E_POSTGRES_URL + TROVE_E2E_S3_URL); skipped otherwise."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import (TroveServer, clean_env, make_client, sha256_bytes, trove_binary, unique,
                      write_random)
from test_database import closed_port

PG_URL = os.environ.get("TROVE_E2E_POSTGRES_URL", "")
S3_URL = os.environ.get("TROVE_E2E_S3_URL", "")
S3_ROOT = os.environ.get("TROVE_E2E_S3_ROOT", "")
pytestmark = pytest.mark.skipif(
    not (PG_URL and S3_URL and S3_ROOT),
    reason="needs PostgreSQL and an S3 server (TROVE_E2E_POSTGRES_URL, TROVE_E2E_S3_URL, "
           "TROVE_E2E_S3_ROOT): scripts/test.sh runs it in its scale-out pass")

# Enough large files that the object copy takes seconds, so that the SIGKILL lands mid-way.
BULK_FILES = 24
BULK_SIZE = 3 * 1024 * 1024
MIGRATE_TIMEOUT_S = 600

UPLOAD = """
info = api.upload_file(path_or_fileobj=ARGS["local"], path_in_repo=ARGS["path"], repo_id=ARGS["repo"],
                       repo_type=ARGS.get("type", "model"))
emit({"commit": info.oid})
"""

DOWNLOAD = """
from huggingface_hub import hf_hub_download
p = hf_hub_download(ARGS["repo"], ARGS["path"], repo_type=ARGS.get("type", "model"),
                    revision=ARGS.get("revision"))
emit({"sha256": sha256_file(p), "size": os.path.getsize(p)})
"""


def psql(url: str, sql: str) -> str:
    p = subprocess.run(["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def fresh_database() -> str:
    name = "mig_" + uuid.uuid4().hex[:16]
    psql(PG_URL, f"CREATE DATABASE {name}")
    base, _, query = PG_URL.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + (("?" + query) if query else "")


def bucket_url(prefix: str) -> str:
    base, _, query = S3_URL.partition("?")
    return f"{base.rstrip('/')}/{prefix}" + (f"?{query}" if query else "")


def bucket_dir(prefix: str) -> Path:
    bucket = S3_URL.removeprefix("s3://").partition("?")[0].partition("/")[0]
    return Path(S3_ROOT) / bucket / prefix


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


def xorb_files(path: Path) -> dict[str, int]:
    """Xorbs under `path` by name (64 hex), with their sizes; nothing else the server keeps."""
    return {p.name: p.stat().st_size for p in files_under(path)
            if re.fullmatch(r"[0-9a-f]{64}", p.name)}


def migrate_cmd(data_dir: Path, to: str, storage: str, *extra: str) -> list[str]:
    return [str(trove_binary()), "migrate", "--data-dir", str(data_dir), "--to", to,
            "--storage", storage, *extra]


def run_migrate(data_dir: Path, to: str, storage: str, *extra: str,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = clean_env()
    full.update(env or {})
    return subprocess.run(migrate_cmd(data_dir, to, storage, *extra), capture_output=True, text=True,
                          timeout=MIGRATE_TIMEOUT_S, stdin=subprocess.DEVNULL, env=full)


def embedded(base: Path, name: str) -> TroveServer:
    """A server in the embedded mode (SQLite file, local store) even in the scale-out pass."""
    data = base / "data"
    return TroveServer(name, base, {"TROVE_DATABASE": f"sqlite://{data}/trove.db",
                                    "TROVE_STORAGE": ""})


class World:
    """What the source hub held, to compare with the migrated one."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        self.repos: dict[str, tuple[str, str]] = {}   # label -> (repo type, id)
        self.files: dict[tuple[str, str], bytes] = {}  # (label, path) -> bytes
        self.refs: dict[str, dict] = {}
        self.discussions: dict[str, list] = {}
        self.collection = ""
        self.webhooks = 0


def populate(server: TroveServer, tmp: Path) -> World:
    w = World()
    w.tokens["admin"] = server.admin_token
    for name in ("alice", "bob"):
        server.create_user(name)
        w.tokens[name] = server.create_token(name, role="write")
    server.admin_cli("org", "create", "acme", "--owner", "alice")
    server.admin_cli("org", "add-member", "acme", "bob", "--role", "read")
    owner = make_client(server, tmp / "owner")
    alice = make_client(server, tmp / "alice")

    # Repositories of each type, one private, one in the org.
    res = owner.py("""
        out = {}
        for label, kind, name, private in ARGS["repos"]:
            url = api.create_repo(name, repo_type=kind, private=private,
                                  space_sdk="static" if kind == "space" else None)
            out[label] = [kind, url.repo_id]
        emit(out)
    """, args={"repos": [["model", "model", unique("mig-model"), False],
                         ["dataset", "dataset", unique("mig-data"), False],
                         ["space", "space", unique("mig-space"), False],
                         ["bulk", "dataset", unique("mig-bulk"), False]]}).result
    w.repos.update({k: tuple(v) for k, v in res.items()})
    res = alice.py("""
        emit({"private": ["model", api.create_repo(ARGS["p"], private=True).repo_id],
              "org": ["model", api.create_repo("acme/" + ARGS["o"]).repo_id]})
    """, token=w.tokens["alice"], args={"p": unique("mig-private"), "o": unique("mig-org")}).result
    w.repos.update({k: tuple(v) for k, v in res.items()})

    # Files: small ones, an LFS file (plain LFS), a Xet file, private bytes.
    small = {"README.md": b"---\nlicense: mit\ntags: [migrated]\n---\n# Moved\n", "config.json": b'{"a": 1}'}
    for path, data in small.items():
        local = tmp / path
        local.write_bytes(data)
        owner.py(UPLOAD, args={"repo": w.repos["model"][1], "path": path, "local": str(local)})
        w.files[("model", path)] = data
    lfs = write_random(tmp / "lfs.bin", 2_500_000)
    owner.py(UPLOAD, xet=False, args={"repo": w.repos["model"][1], "path": "weights.bin", "local": str(tmp / "lfs.bin")})
    w.files[("model", "weights.bin")] = lfs
    xet = write_random(tmp / "xet.bin", 3_000_000)
    owner.py(UPLOAD, xet=True, args={"repo": w.repos["dataset"][1], "path": "data/train.bin",
                                     "local": str(tmp / "xet.bin"), "type": "dataset"})
    w.files[("dataset", "data/train.bin")] = xet
    index = b"<html>moved</html>"
    (tmp / "index.html").write_bytes(index)
    owner.py(UPLOAD, args={"repo": w.repos["space"][1], "path": "index.html", "local": str(tmp / "index.html"),
                           "type": "space"})
    w.files[("space", "index.html")] = index
    secret = write_random(tmp / "secret.bin", 1_200_000)
    alice.py(UPLOAD, token=w.tokens["alice"], xet=True,
             args={"repo": w.repos["private"][1], "path": "secret.bin", "local": str(tmp / "secret.bin")})
    w.files[("private", "secret.bin")] = secret
    # The bulk: many large files, through plain LFS, packed into xorbs by the server.
    bulk = tmp / "bulk"
    bulk.mkdir()
    for i in range(BULK_FILES):
        w.files[("bulk", f"part-{i:02}.bin")] = write_random(bulk / f"part-{i:02}.bin", BULK_SIZE)
    owner.py("""
        api.upload_folder(folder_path=ARGS["dir"], repo_id=ARGS["repo"], repo_type="dataset")
    """, xet=False, args={"dir": str(bulk), "repo": w.repos["bulk"][1]}, timeout=900)

    # Branches, tags, a pull request and a discussion with comments, a like, a collection,
    # a webhook, a fine-grained token.
    res = owner.py("""
        repo = ARGS["repo"]
        api.create_branch(repo, branch="dev")
        api.create_tag(repo, tag="v1.0", tag_message="first")
        d = api.create_discussion(repo, "Where is the license?", description="Please add one.")
        api.comment_discussion(repo, d.num, "Added in the README.")
        pr = api.create_pull_request(repo, "Tweak config", description="A small change")
        api.upload_file(path_or_fileobj=b'{"a": 2}', path_in_repo="config.json", repo_id=repo,
                        revision=f"refs/pr/{pr.num}")
        api.comment_discussion(repo, pr.num, "Looks good")
        c = api.create_collection("Migrated things", description="kept across the move")
        api.add_collection_item(c.slug, item_id=repo, item_type="model", note="the model")
        h = api.create_webhook(url="https://hooks.example.com/hook", watched=[{"type": "user", "name": "admin"}],
                               domains=["repo"], secret="s3cret")
        emit({"collection": c.slug})
    """, args={"repo": w.repos["model"][1]}).result
    w.collection = res["collection"]
    w.webhooks = 1
    make_client(server, tmp / "bob").py("""
        import httpx
        r = httpx.post(os.environ["HF_ENDPOINT"] + "/api/models/" + ARGS["repo"] + "/like",
                       headers={"authorization": "Bearer " + os.environ["HF_TOKEN"]})
        assert r.status_code == 200, r.text
    """, token=w.tokens["bob"],
                                         args={"repo": w.repos["model"][1]})
    w.tokens["scoped"] = server.admin_cli(
        "token", "create", "alice", "--name", "ci", "--role", "fine-grained",
        "--repo", f"model:{w.repos['private'][1]}", "--permission", "repo.content.read").strip()

    snapshot = owner.py(SNAPSHOT, args={"repos": w.repos}).result
    w.refs, w.discussions = snapshot["refs"], snapshot["discussions"]
    return w


SNAPSHOT = """
out = {"refs": {}, "discussions": {}}
for label, (kind, repo) in ARGS["repos"].items():
    r = api.list_repo_refs(repo, repo_type=kind, include_pull_requests=True)
    out["refs"][label] = sorted([[b.ref, b.target_commit] for b in r.branches + r.tags
                                 + (r.pull_requests or [])])
    if label == "model":
        ds = []
        for d in api.get_repo_discussions(repo):
            full = api.get_discussion_details(repo, d.num)
            ds.append([d.num, d.title, d.is_pull_request, d.status,
                       [e.content for e in full.events if e.type == "comment"]])
        out["discussions"][label] = sorted(ds)
emit(out)
"""


class Migrate:
    """A `trove migrate` run in the background, its stderr read line by line."""

    def __init__(self, cmd: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, needle: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                return False
            self.seen.append(line)
            if needle in line:
                return True
        return False


@pytest.fixture(scope="module")
def migrated(tmp_path_factory):
    base = tmp_path_factory.mktemp("migrate-src")
    source = embedded(base, "migrate-src")
    source.start()
    work = tmp_path_factory.mktemp("migrate-work")
    world = populate(source, work)
    target_db = fresh_database()
    prefix = unique("migrate")
    storage = bucket_url(prefix)

    # Refused while the hub serves.
    p = run_migrate(source.data_dir, target_db, storage)
    assert p.returncode != 0 and "running" in p.stderr and "stop its server" in p.stderr, p.stderr
    assert psql(target_db, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'") == "0"
    source.stop()

    # Killed with SIGKILL once objects are being copied, then run again to the end.
    env = clean_env()
    env["TROVE_LOG"] = "info,trove::storage::relocate=debug"
    run = Migrate(migrate_cmd(source.data_dir, target_db, storage), env)
    try:
        copying = run.wait_for("migrate.xorb_copied", timeout=MIGRATE_TIMEOUT_S)
    finally:
        run.proc.send_signal(signal.SIGKILL)
        run.proc.wait(timeout=30)
    assert copying, "".join(run.seen[-40:])
    xorbs = bucket_dir(prefix) / "xorbs"
    copied_before = len(xorb_files(xorbs))
    local_xorbs = len(xorb_files(source.data_dir / "lfs" / "xorbs"))
    assert 1 <= copied_before < local_xorbs, (copied_before, local_xorbs)
    assert psql(target_db, "SELECT count(*) FROM migrate_progress WHERE step = 'objects'") == "0"

    git_dir = base / "git-copy"
    p = run_migrate(source.data_dir, target_db, storage, "--git-dir", str(git_dir))
    assert p.returncode == 0, p.stdout + p.stderr
    summary = p.stdout
    assert "(resuming)" in p.stderr, p.stderr
    m = re.search(r"(\d+) objects, .* \((\d+) copied now, (\d+) already there\), each verified", summary)
    assert m, summary
    total, now, present = map(int, m.groups())
    assert present >= copied_before and now >= 1 and now + present == total, summary
    assert len(xorb_files(xorbs)) == local_xorbs
    # The database password never shows.
    password = target_db.split("://", 1)[1].split("@", 1)[0].partition(":")[2]
    assert password and password not in p.stdout + p.stderr + "".join(run.seen)

    # A second run finds everything done and changes nothing.
    p = run_migrate(source.data_dir, target_db, storage, "--git-dir", str(git_dir))
    assert p.returncode == 0, p.stderr
    assert f"(0 copied now, {total} already there)" in p.stdout, p.stdout

    # The migrated hub: PostgreSQL, the bucket, the copied git folder, the same data dir.
    target = TroveServer("migrate-dst", base, {"TROVE_DATABASE": target_db, "TROVE_STORAGE": storage,
                                               "TROVE_GIT_DIR": str(git_dir)})
    target.start()
    yield {"world": world, "target": target, "source": source, "db": target_db, "storage": storage,
           "prefix": prefix, "work": work, "base": base, "summary": summary}
    target.stop()


def test_every_repo_ref_discussion_and_file_is_served_from_postgres_and_the_bucket(migrated, tmp_path):
    w, target = migrated["world"], migrated["target"]
    owner = make_client(target, tmp_path / "owner")
    snap = owner.py(SNAPSHOT, args={"repos": w.repos}).result
    assert snap["refs"] == w.refs
    assert snap["discussions"] == w.discussions
    for (label, path), data in w.files.items():
        if label == "bulk" and path not in ("part-00.bin", f"part-{BULK_FILES - 1:02}.bin"):
            continue
        kind, repo = w.repos[label]
        token = w.tokens["alice"] if label == "private" else target.admin_token
        for xet in (True, False):
            got = make_client(target, tmp_path / f"dl-{label}-{path.replace('/', '_')}-{xet}").py(
                DOWNLOAD, token=token, xet=xet, args={"repo": repo, "path": path, "type": kind}).result
            assert got == {"sha256": sha256_bytes(data), "size": len(data)}, (label, path, xet)
    # git clone of the copied repository: same head, LFS pointers and files in place.
    kind, repo = w.repos["model"]
    dest = tmp_path / "clone"
    url = target.url.replace("http://", f"http://admin:{target.admin_token}@") + f"/{repo}"
    p = subprocess.run(["git", "clone", "--quiet", url, str(dest)], capture_output=True, text=True,
                       timeout=300, env={**clean_env(), "GIT_LFS_SKIP_SMUDGE": "1", "GIT_TERMINAL_PROMPT": "0"})
    assert p.returncode == 0, p.stderr
    head = subprocess.run(["git", "-C", str(dest), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert ["refs/heads/main", head] in w.refs["model"]
    assert (dest / "README.md").read_bytes() == w.files[("model", "README.md")]
    # Every object in the bucket, verified: the source's xorbs are all there, same sizes.
    source_lfs = migrated["source"].data_dir / "lfs" / "xorbs"
    bucket = bucket_dir(migrated["prefix"]) / "xorbs"
    local, remote = xorb_files(source_lfs), xorb_files(bucket)
    assert local and local == remote


def test_accounts_tokens_privacy_likes_collections_and_webhooks_survive(migrated, tmp_path):
    w, target = migrated["world"], migrated["target"]
    c = make_client(target, tmp_path / "c")
    me = c.py("emit(api.whoami())", token=w.tokens["alice"]).result
    assert me["name"] == "alice" and "acme" in [o["name"] for o in me["orgs"]]
    scoped = c.py("emit(api.whoami())", token=w.tokens["scoped"]).result
    assert scoped["auth"]["accessToken"]["role"] == "fineGrained"
    private = w.repos["private"][1]
    seen = c.py("""
        emit({"exists": api.repo_exists(ARGS["repo"]),
              "listed": ARGS["repo"] in [m.id for m in api.list_models(author=ARGS["repo"].split("/")[0])]})
    """, token=w.tokens["bob"], args={"repo": private}).result
    assert seen == {"exists": False, "listed": False}, "private stays private to an outsider"
    res = c.py("""
        out = {"liked": list(api.list_liked_repos("bob").models),
               "likes": api.model_info(ARGS["model"]).likes,
               "found": [m.id for m in api.list_models(search=ARGS["model"].split("/")[1])],
               "datasets": [d.id for d in api.list_datasets(search="mig-")],
               "spaces": [s.id for s in api.list_spaces(search="mig-")],
               "collection": [i.item_id for i in api.get_collection(ARGS["collection"]).items],
               "webhooks": len(api.list_webhooks())}
        emit(out)
    """, args={"model": w.repos["model"][1], "collection": w.collection}).result
    assert w.repos["model"][1] in res["liked"] and res["likes"] == 1
    assert res["found"] == [w.repos["model"][1]]
    assert w.repos["dataset"][1] in res["datasets"] and w.repos["bulk"][1] in res["datasets"]
    assert w.repos["space"][1] in res["spaces"]
    assert res["collection"] == [w.repos["model"][1]]
    assert res["webhooks"] == w.webhooks


def test_new_accounts_uploads_and_commits_work_after_the_move(migrated, tmp_path):
    w, target = migrated["world"], migrated["target"]
    target.create_user("carol")          # ids continue after the copied ones
    carol = target.create_token("carol")
    c = make_client(target, tmp_path / "carol")
    repo = c.py("emit(api.create_repo(ARGS['n']).repo_id)", token=carol, args={"n": unique("after")}).result
    for xet, name in ((True, "x.bin"), (False, "l.bin")):
        data = write_random(tmp_path / name, 1_500_000)
        c.py(UPLOAD, token=carol, xet=xet, args={"repo": repo, "path": name, "local": str(tmp_path / name)})
        got = c.py(DOWNLOAD, token=carol, xet=xet, args={"repo": repo, "path": name}).result
        assert got == {"sha256": sha256_bytes(data), "size": len(data)}
    # A commit on a migrated repository, through the old token.
    res = make_client(target, tmp_path / "a").py("""
        info = api.upload_file(path_or_fileobj=b"after the move", path_in_repo="after.txt",
                               repo_id=ARGS["repo"])
        emit({"commit": info.oid})
    """, token=w.tokens["alice"], args={"repo": w.repos["private"][1]}).result
    assert len(res["commit"]) == 40


def test_a_database_holding_another_hub_is_refused(migrated, tmp_path_factory):
    other = embedded(tmp_path_factory.mktemp("migrate-other"), "migrate-other")
    other.start()
    other.create_user("zed")
    other.stop()
    before = psql(migrated["db"], "SELECT count(*) FROM users")
    p = run_migrate(other.data_dir, migrated["db"], bucket_url(unique("other")))
    assert p.returncode != 0
    assert "another hub" in p.stderr and "never merges" in p.stderr, p.stderr
    assert psql(migrated["db"], "SELECT count(*) FROM users") == before
    assert psql(migrated["db"], "SELECT count(*) FROM users WHERE name = 'zed'") == "0"


def test_unreachable_database_and_wrong_bucket_credentials_write_nothing(migrated):
    data_dir = migrated["source"].data_dir
    prefix = unique("refused")
    fresh = fresh_database()
    # Unreachable database: clear error, the password not shown.
    p = run_migrate(data_dir, f"postgres://trove:hunter2@127.0.0.1:{closed_port()}/x", bucket_url(prefix))
    assert p.returncode != 0 and "cannot connect to the database" in p.stderr, p.stderr
    assert "hunter2" not in p.stdout + p.stderr
    assert files_under(bucket_dir(prefix)) == []
    # Wrong bucket credentials: refused before the database is touched.
    p = run_migrate(data_dir, fresh, bucket_url(prefix),
                    env={"AWS_SECRET_ACCESS_KEY": "not-the-secret-" + unique("x")})
    assert p.returncode != 0 and "object store" in p.stderr, p.stderr
    assert "panicked" not in p.stderr
    assert psql(fresh, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'") == "0"
    assert files_under(bucket_dir(prefix)) == []
