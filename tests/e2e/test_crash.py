"""Crash recovery from outside: the real binary is killed with SIGKILL at random moments of
mixed writes (repo creations, API commits, commits through huggingface_hub, git pushes, LFS
uploads), restarted on the same data dir, and every write it acknowledged must be there,
every repository it lists must answer. Seeded (TROVE_CRASH_SEED) so a failure replays."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from conftest import Hub, RESULT_MARK, TroveServer, b64, clean_env, make_client, ndjson

SEED = int(os.environ.get("TROVE_CRASH_SEED", "20261203"))
ROUNDS = 6


@dataclass
class Acked:
    """Writes the server answered with success, hence must survive any crash after."""

    repos: list[str] = field(default_factory=list)
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)
    pushed: dict[str, str] = field(default_factory=dict)
    lfs: dict[str, bytes] = field(default_factory=dict)
    # LFS uploads already committed by an earlier check.
    linked: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _git(work: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**clean_env(), "HOME": str(work.parent), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_TERMINAL_PROMPT": "0", "GIT_AUTHOR_NAME": "Crash", "GIT_COMMITTER_NAME": "Crash",
           "GIT_AUTHOR_EMAIL": "crash@example.invalid",
           "GIT_COMMITTER_EMAIL": "crash@example.invalid"}
    return subprocess.run(["git", *args], cwd=work, env=env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def _git_url(server: TroveServer, repo: str) -> str:
    parts = urlsplit(server.url)
    return f"{parts.scheme}://git:{server.admin_token}@{parts.netloc}/{repo}"


def _writers(server: TroveServer, hub: Hub, acked: Acked, fixed: dict, work: Path,
             rng: random.Random, stop: threading.Event) -> list[threading.Thread]:
    def loop(step):
        def run():
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    step(n)
                except Exception:  # noqa: BLE001 - an unanswered write is not acknowledged
                    time.sleep(0.05)
        return threading.Thread(target=run, daemon=True)

    tag = rng.randrange(1 << 30)

    def create(n):
        r = hub.http.post("/api/repos/create", json={"name": f"c-{tag}-{n}", "type": "model"},
                          headers=hub.auth(hub.token()))
        if r.status_code == 200:
            with acked.lock:
                acked.repos.append(f"admin/c-{tag}-{n}")
        # A few creations a second keep the listing short enough to check every round.
        time.sleep(0.2)

    def commit(n):
        path, data = f"api/{tag}-{n}.txt", os.urandom(64)
        body = "\n".join([ndjson("header", summary=f"c{n}", description=""),
                          ndjson("file", path=path, content=b64(data), encoding="base64")]) + "\n"
        r = hub.commit_raw(fixed["api"], body)
        if r.status_code == 200:
            with acked.lock:
                acked.files[(fixed["api"], path)] = data

    def push(n):
        (work / f"{tag}-{n}.txt").write_bytes(os.urandom(32))
        _git(work, "add", "-A")
        _git(work, "commit", "-q", "-m", f"p{n}")
        head = _git(work, "rev-parse", "HEAD").stdout.strip()
        if _git(work, "push", "-q", _git_url(server, fixed["git"]), "HEAD:main").returncode == 0:
            with acked.lock:
                acked.pushed[fixed["git"]] = head

    def lfs(n):
        data = os.urandom(rng.randrange(1, 256) * 1024)
        oid = hashlib.sha256(data).hexdigest()
        r = hub.http.post(
            f"/{fixed['lfs']}.git/info/lfs/objects/batch",
            json={"operation": "upload", "transfers": ["basic"],
                  "objects": [{"oid": oid, "size": len(data)}]},
            headers={**hub.auth(hub.token()), "accept": "application/vnd.git-lfs+json"})
        href = r.json()["objects"][0]["actions"]["upload"]["href"]
        if hub.http.put(href, content=data).status_code == 200:
            with acked.lock:
                acked.lfs[oid] = data

    return [loop(create), loop(commit), loop(push), loop(lfs)]


CLIENT_LOOP = """
import os
for n in range(10_000):
    path, data = f"hf/{ARGS['tag']}-{n}.txt", os.urandom(16).hex()
    api.upload_file(path_or_fileobj=data.encode(), path_in_repo=path, repo_id=ARGS["repo"])
    emit({"path": path, "data": data})
"""


def _check(server: TroveServer, acked: Acked, lfs_repo: str) -> None:
    hub = Hub(server)
    auth = hub.auth(hub.token())
    try:
        listed = hub.http.get("/api/models", params={"author": "admin", "limit": 10_000},
                              headers=auth).json()
        names = {m["id"] for m in listed}
        for repo in acked.repos:
            assert repo in names, f"acknowledged repo {repo} is not listed"
        for repo in sorted(names):
            for path in (f"/api/models/{repo}", f"/api/models/{repo}/tree/main",
                         f"/api/models/{repo}/refs", f"/api/models/{repo}/commits/main"):
                r = hub.http.get(path, headers=auth)
                assert r.status_code == 200, (path, r.status_code, r.text[:300])
        for (repo, path), data in acked.files.items():
            r = hub.http.get(f"/{repo}/resolve/main/{path}", headers=auth)
            assert r.status_code == 200 and r.content == data, (repo, path, r.status_code)
        for repo, head in acked.pushed.items():
            r = hub.http.get(f"/api/models/{repo}/commits/main", headers=auth)
            assert head in [c["id"] for c in r.json()], f"acknowledged push {head} lost"
        new = [oid for oid in acked.lfs if oid not in acked.linked]
        if new:
            # An upload is there if a commit may point at it and its bytes come back.
            lines = [ndjson("header", summary="link the uploads", description="")]
            lines += [ndjson("lfsFile", path=f"lfs/{oid}", algo="sha256", oid=oid,
                             size=len(acked.lfs[oid])) for oid in new]
            r = hub.commit_raw(lfs_repo, "\n".join(lines) + "\n")
            assert r.status_code == 200, f"acknowledged LFS uploads lost: {r.text[:500]}"
            for oid in new:
                got = hub.http.get(f"/{lfs_repo}/resolve/main/lfs/{oid}", headers=auth)
                assert hashlib.sha256(got.content).hexdigest() == oid
            acked.linked.update(new)
    finally:
        hub.close()


def test_kill_9_at_random_moments_loses_no_acknowledged_write(tmp_path):
    rng = random.Random(SEED)
    base = tmp_path / "srv"
    server = TroveServer("trove-crash-0", base)
    server.start()
    hub = Hub(server)
    fixed = {kind: hub.create_repo(f"crash-{kind}") for kind in ("api", "git", "lfs", "hf")}
    hub.close()
    work = tmp_path / "git" / "w"
    work.parent.mkdir()
    assert _git(work.parent, "clone", "-q", _git_url(server, fixed["git"]), "w").returncode == 0
    acked = Acked()
    try:
        for round_ in range(ROUNDS):
            hub = Hub(server)
            (tmp_path / f"client-{round_}").mkdir()
            client = make_client(server, tmp_path / f"client-{round_}")
            stop = threading.Event()
            threads = _writers(server, hub, acked, fixed, work, rng, stop)
            for t in threads:
                t.start()
            hf = client.popen_py(CLIENT_LOOP, args={"repo": fixed["hf"], "tag": round_})
            time.sleep(rng.uniform(1.0, 4.0))
            server.proc.kill()
            server.proc.wait(timeout=15)
            stop.set()
            for t in threads:
                t.join(timeout=90)
            out, _ = hf.communicate(timeout=120)
            for line in out.splitlines():
                if line.startswith(RESULT_MARK):
                    done = json.loads(line[len(RESULT_MARK):])
                    acked.files[(fixed["hf"], done["path"])] = done["data"].encode()
            hub.close()
            server.stop()
            server = TroveServer(f"trove-crash-{round_ + 1}", base)
            server.start()
            _check(server, acked, fixed["lfs"])
        # The loop did write: a run that acknowledged nothing would prove nothing.
        through_client = [path for repo, path in acked.files if repo == fixed["hf"]]
        assert acked.repos and acked.files and acked.pushed and acked.lfs and through_client, \
            acked
        print(f"acknowledged: {len(acked.repos)} repos, {len(acked.files)} files "
              f"({len(through_client)} through huggingface_hub), {len(acked.lfs)} LFS objects, "
              f"last push {acked.pushed}")
    finally:
        server.stop()
