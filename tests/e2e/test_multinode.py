"""Several `trove serve` nodes serving one hub: the same PostgreSQL database and the same data
directory (what an NFS or CephFS mount gives in production). A file uploaded through one node
downloads from the other; commits through both nodes to one branch all land; API commits
interleave with `git push` through the other node with no lost update; a node killed with
SIGKILL mid-upload loses nothing acknowledged and the retry through another node succeeds;
background work runs on exactly one node; SIGTERM drains a node.

Skipped unless TROVE_E2E_POSTGRES_URL names a PostgreSQL server (scripts/test.sh sets it)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import hf_xet
import httpx
import pytest

from conftest import (RESULT_MARK, Client, Hub, Relay, TroveServer, b64, clean_env, make_client, ndjson, unique,
                      wait_in_log)

pytestmark = pytest.mark.skipif(
    not os.environ.get("TROVE_E2E_POSTGRES_URL"),
    reason="TROVE_E2E_POSTGRES_URL unset: several nodes need PostgreSQL",
)

CONCURRENT_COMMITS = 16
INTERLEAVED = 6
LEASE_WAIT_S = 40


class Cluster:
    """Nodes on one database and one data directory."""

    def __init__(self, base: Path):
        self.base = base
        self.nodes: list[TroveServer] = []

    def start_node(self, name: str, extra_args: list[str] | None = None) -> TroveServer:
        # The git repositories in a folder of their own, as on a separate shared mount.
        env = {"TROVE_NODE_ID": name, "TROVE_GIT_DIR": str(self.base / "git")}
        if self.nodes:
            env["TROVE_DATABASE"] = self.nodes[0].database_url
        (self.base / name).mkdir(parents=True, exist_ok=True)
        node = TroveServer(name, self.base / name, env)
        if self.nodes:
            node.data_dir = self.nodes[0].data_dir
        if extra_args:
            # The serve options this test needs, through their environment variables.
            node.extra_env.update(dict(a.split("=", 1) for a in extra_args))
        node.start()
        self.nodes.append(node)
        return node

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("multinode"))
    c.start_node("node-a")
    c.start_node("node-b")
    yield c
    c.stop()


@pytest.fixture(scope="module")
def a(cluster) -> TroveServer:
    return cluster.nodes[0]


@pytest.fixture(scope="module")
def b(cluster) -> TroveServer:
    return cluster.nodes[1]


@pytest.fixture
def hubs(a, b):
    ha, hb = Hub(a), Hub(b)
    yield ha, hb
    ha.close()
    hb.close()


def commit_body(summary: str, files: dict[str, bytes]) -> str:
    lines = [ndjson("header", summary=summary, description="")]
    lines += [ndjson("file", path=p, content=b64(d), encoding="base64") for p, d in files.items()]
    return "\n".join(lines) + "\n"


def tree_paths(hub: Hub, repo: str) -> set[str]:
    r = hub.http.get(f"/api/models/{repo}/tree/main", params={"recursive": "true"},
                     headers=hub.auth(hub.token()))
    assert r.status_code == 200, r.text
    return {e["path"] for e in r.json() if e["type"] == "file"}


def history(hub: Hub, repo: str) -> list[dict]:
    r = hub.http.get(f"/api/models/{repo}/commits/main", headers=hub.auth(hub.token()))
    assert r.status_code == 200, r.text
    return r.json()


# --------------------------------------------------------------------------------------------
# Bytes through one node, read through the other
# --------------------------------------------------------------------------------------------

UPLOAD = """
import os
from huggingface_hub import hf_hub_download
data = os.urandom(ARGS["size"])
Path("blob.bin").write_bytes(data)
api.upload_file(path_or_fileobj="blob.bin", path_in_repo=ARGS["path"], repo_id=ARGS["repo"])
emit({"sha": hashlib.sha256(data).hexdigest()})
"""

DOWNLOAD = """
from huggingface_hub import hf_hub_download
p = hf_hub_download(ARGS["repo"], ARGS["path"], cache_dir="dl-" + ARGS["tag"])
emit({"sha": sha256_file(p)})
"""


@pytest.mark.parametrize("xet", [False, True], ids=["lfs", "xet"])
def test_a_file_uploaded_through_a_downloads_from_b(a, b, hubs, tmp_path, xet):
    ha, _ = hubs
    repo = ha.create_repo("mn-bytes")
    ca: Client = make_client(a, tmp_path / "a")
    cb: Client = make_client(b, tmp_path / "b")
    up = ca.py(UPLOAD, xet=xet, args={"repo": repo, "path": "weights.bin", "size": 3 * 1024 * 1024 + 7})
    down = cb.py(DOWNLOAD, xet=xet, args={"repo": repo, "path": "weights.bin", "tag": str(xet)})
    assert down.result["sha"] == up.result["sha"]
    # And the other way round.
    up = cb.py(UPLOAD, xet=xet, args={"repo": repo, "path": "second.bin", "size": 2 * 1024 * 1024})
    down = ca.py(DOWNLOAD, xet=xet, args={"repo": repo, "path": "second.bin", "tag": f"r{xet}"})
    assert down.result["sha"] == up.result["sha"]


# --------------------------------------------------------------------------------------------
# Commits through both nodes to one branch
# --------------------------------------------------------------------------------------------


def test_concurrent_commits_through_both_nodes_all_land(hubs):
    ha, hb = hubs
    repo = ha.create_repo("mn-commits")
    before = len(history(ha, repo))

    def one(i: int) -> tuple[int, int, str]:
        hub = (ha, hb)[i % 2]
        with httpx.Client(base_url=hub.url, timeout=120) as http:
            r = http.post(f"/api/models/{repo}/commit/main",
                          content=commit_body(f"c{i}", {f"c/{i}.txt": f"commit {i}\n".encode()}),
                          headers={**hub.auth(hub.token()), "content-type": "application/x-ndjson"})
        return i, r.status_code, r.text[:300]

    with ThreadPoolExecutor(max_workers=CONCURRENT_COMMITS) as pool:
        results = list(pool.map(one, range(CONCURRENT_COMMITS)))
    failed = [r for r in results if r[1] != 200]
    assert not failed, failed
    # Every acknowledged commit is in the history, read through either node.
    for hub in (ha, hb):
        paths = tree_paths(hub, repo)
        assert {f"c/{i}.txt" for i in range(CONCURRENT_COMMITS)} <= paths
        titles = [c["title"] for c in history(hub, repo)]
        assert len(titles) == before + CONCURRENT_COMMITS, titles
        assert {f"c{i}" for i in range(CONCURRENT_COMMITS)} <= set(titles)


def _git(work: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**clean_env(), "HOME": str(work.parent), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_TERMINAL_PROMPT": "0", "GIT_AUTHOR_NAME": "Node B", "GIT_COMMITTER_NAME": "Node B",
           "GIT_AUTHOR_EMAIL": "b@example.invalid", "GIT_COMMITTER_EMAIL": "b@example.invalid"}
    p = subprocess.run(["git", *args], cwd=work, env=env, capture_output=True, text=True,
                       timeout=120, stdin=subprocess.DEVNULL)
    if check:
        assert p.returncode == 0, f"git {' '.join(args)}: {p.stdout}\n{p.stderr}"
    return p


def git_url(server: TroveServer, repo: str) -> str:
    parts = urlsplit(server.url)
    return f"{parts.scheme}://git:{server.admin_token}@{parts.netloc}/{repo}"


def test_api_commits_through_a_interleave_with_pushes_through_b(a, b, hubs, tmp_path):
    ha, _ = hubs
    repo = ha.create_repo("mn-push")
    # The repositories are in the git dir the nodes were given, none in the data dir.
    git_dir = Path(a.extra_env["TROVE_GIT_DIR"])
    assert any(p.name.endswith(".git") for p in git_dir.iterdir())
    assert not any((a.data_dir / "repos").glob("*.git"))
    work = tmp_path / "w"
    _git(tmp_path, "clone", "-q", git_url(b, repo), str(work))
    stop = threading.Event()
    api_done: list[str] = []
    api_errors: list[str] = []

    def api_commits():
        for i in range(INTERLEAVED):
            r = ha.commit_raw(repo, commit_body(f"api {i}", {f"api/{i}.txt": f"{i}\n".encode()}))
            if r.status_code == 200:
                api_done.append(f"api/{i}.txt")
            else:
                api_errors.append(f"{r.status_code} {r.text[:200]}")
            time.sleep(0.05)

    writer = threading.Thread(target=api_commits)
    writer.start()
    rejected = 0
    pushed: list[str] = []
    try:
        for i in range(INTERLEAVED):
            (work / "push").mkdir(exist_ok=True)
            (work / "push" / f"{i}.txt").write_text(f"push {i}\n")
            _git(work, "add", "-A")
            _git(work, "commit", "-q", "-m", f"push {i}")
            for _attempt in range(20):
                p = _git(work, "push", "-q", "origin", "HEAD:main", check=False)
                if p.returncode == 0:
                    pushed.append(f"push/{i}.txt")
                    break
                # The API commit through A moved the branch: git refuses the push (no lost
                # update); fetch, rebase, push again.
                assert "rejected" in p.stderr or "failed" in p.stderr, p.stderr
                rejected += 1
                _git(work, "pull", "-q", "--rebase", "origin", "main")
            else:
                pytest.fail(f"push {i} never went through")
    finally:
        stop.set()
        writer.join(timeout=120)
    assert not api_errors, api_errors
    assert len(api_done) == INTERLEAVED and len(pushed) == INTERLEAVED
    paths = tree_paths(ha, repo)
    missing = [p for p in api_done + pushed if p not in paths]
    assert not missing, f"lost updates: {missing} (pushes rejected and retried: {rejected})"


# --------------------------------------------------------------------------------------------
# Background work and node failures
# --------------------------------------------------------------------------------------------


def cluster_status(hub: Hub) -> dict:
    r = hub.http.get("/api/admin/cluster", headers=hub.auth(hub.token()))
    assert r.status_code == 200, r.text
    return r.json()


def wait_for_holder(hub: Hub, lease: str, among: set[str], timeout: float = LEASE_WAIT_S) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = {l["name"]: l["holder"] for l in cluster_status(hub)["leases"]}
        if held.get(lease) in among:
            return held[lease]
        time.sleep(0.5)
    pytest.fail(f"no node of {among} took the {lease} lease within {timeout}s: {cluster_status(hub)}")


def test_background_jobs_run_on_exactly_one_node(cluster, a, b, hubs):
    ha, hb = hubs
    names = {"node-a", "node-b"}
    sa, sb = cluster_status(ha), cluster_status(hb)
    assert (sa["node"], sb["node"]) == ("node-a", "node-b")
    assert sa["backend"] == "postgres"
    for lease in ("index", "webhooks"):
        holder = wait_for_holder(ha, lease, names | {n.name for n in cluster.nodes})
        # Both nodes see the one holder.
        assert {l["name"]: l["holder"] for l in cluster_status(hb)["leases"]}[lease] == holder
    presence = {l["holder"] for l in cluster_status(ha)["leases"] if l["name"].startswith("node:")}
    assert names <= presence
    # Exactly one node's log says it took the index lease (no other took it meanwhile).
    taken = [n.name for n in (a, b)
             if re.search(r"cluster\.lease_taken.*\bindex\b", n.log_path.read_text(errors="replace"))]
    assert len(taken) == 1, taken


def test_a_node_killed_mid_upload_loses_nothing_and_the_retry_through_another_succeeds(
        cluster, a, b, hubs, tmp_path):
    ha, hb = hubs
    k = cluster.start_node("node-k")
    hk = Hub(k)
    repo = ha.create_repo("mn-kill")
    head_before = ha.head_sha(repo)
    size = 64 * 1024 * 1024
    data = os.urandom(size)
    oid = hashlib.sha256(data).hexdigest()
    r = hk.http.post(f"/{repo}.git/info/lfs/objects/batch",
                     json={"operation": "upload", "transfers": ["basic"],
                           "objects": [{"oid": oid, "size": size}]},
                     headers={**hk.auth(hk.token()), "accept": "application/vnd.git-lfs+json"})
    assert r.status_code == 200, r.text
    href = r.json()["objects"][0]["actions"]["upload"]["href"]
    assert href.startswith(k.url), href
    sent, killed = threading.Event(), threading.Event()
    outcome: dict = {}

    def body():
        step = 1024 * 1024
        for i in range(0, size, step):
            if i == size // 2:
                sent.set()
                killed.wait(30)  # the node dies while the upload waits here
            yield data[i:i + step]

    def upload():
        try:
            with httpx.Client(timeout=60) as http:
                outcome["status"] = http.put(href, content=body()).status_code
        except httpx.HTTPError as e:
            outcome["error"] = type(e).__name__

    t = threading.Thread(target=upload, daemon=True)
    t.start()
    assert sent.wait(60), "the upload never got half way"
    time.sleep(0.5)
    k.proc.kill()
    k.proc.wait(timeout=15)
    killed.set()
    t.join(timeout=60)
    assert outcome.get("status") != 200, outcome
    # Nothing half-visible: the object is not downloadable, the branch has not moved.
    r = hb.http.post(f"/{repo}.git/info/lfs/objects/batch",
                     json={"operation": "download", "transfers": ["basic"],
                           "objects": [{"oid": oid, "size": size}]},
                     headers={**hb.auth(hb.token()), "accept": "application/vnd.git-lfs+json"})
    assert r.status_code == 200, r.text
    obj = r.json()["objects"][0]
    assert "error" in obj and "actions" not in obj, obj
    assert hb.head_sha(repo) == head_before
    # The client's retry through another node succeeds, and the bytes read back through a
    # third are the ones sent.
    (tmp_path / "big.bin").write_bytes(data)
    cb = make_client(b, tmp_path / "cb")
    cb.py("""
api.upload_file(path_or_fileobj=ARGS["file"], path_in_repo="big.bin", repo_id=ARGS["repo"])
""", args={"repo": repo, "file": str(tmp_path / "big.bin")})
    ca = make_client(a, tmp_path / "ca")
    down = ca.py(DOWNLOAD, args={"repo": repo, "path": "big.bin", "tag": "kill"})
    assert down.result["sha"] == oid
    hk.close()
    # The dead node's background work, if it held any, has moved to a live node.
    for lease in ("index", "webhooks"):
        wait_for_holder(ha, lease, {"node-a", "node-b"})


# --------------------------------------------------------------------------------------------
# A node killed during a Xet upload by the real client, behind a balancer
# --------------------------------------------------------------------------------------------


class Balancer:
    """A TCP load balancer on 127.0.0.1, like the one in front of real nodes: each new
    connection goes to the node `backend` names at that moment (with none, or a dead one, the
    connection is closed at once). Nodes given its URL as their public URL hand it out as the
    `casUrl`; hf_xet keeps its upload state per CAS URL, so, as behind a real balancer, the
    client's retry finds what it recorded while talking to the node that died."""

    ACCEPT_POLL_S = 0.2

    def __init__(self):
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(self.ACCEPT_POLL_S)
        self.url = "http://127.0.0.1:%d" % self._listener.getsockname()[1]
        self.backend: TroveServer | None = None
        self._closed = threading.Event()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept, name="balancer", daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                downstream, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            backend = self.backend
            try:
                if backend is None:
                    raise ConnectionRefusedError("no backend")
                address = urlsplit(backend.url)
                upstream = socket.create_connection((address.hostname, address.port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                downstream.close()
                continue
            with self._lock:
                self._open.update((downstream, upstream))
            threading.Thread(target=self._requests, args=(downstream, upstream), daemon=True).start()
            threading.Thread(target=self._responses, args=(upstream, downstream), daemon=True).start()

    def _requests(self, downstream: socket.socket, upstream: socket.socket) -> None:
        try:
            while chunk := downstream.recv(1 << 16):
                upstream.sendall(chunk)
            upstream.shutdown(socket.SHUT_WR)  # the client is done sending
        except OSError:
            self._drop(downstream, upstream)

    def _responses(self, upstream: socket.socket, downstream: socket.socket) -> None:
        try:
            while chunk := upstream.recv(1 << 16):
                downstream.sendall(chunk)
        except OSError:
            pass
        # The node closed the connection, or died (a killed process resets its connections):
        # the client's side goes too.
        self._drop(downstream, upstream)

    def _drop(self, *sockets: socket.socket) -> None:
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
            with self._lock:
                self._open.discard(s)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        self._acceptor.join(timeout=5)
        with self._lock:
            left = list(self._open)
        self._drop(*left)


@pytest.fixture(scope="module")
def balanced(cluster):
    """A balancer and a node behind it that survives (its public URL is the balancer's)."""
    lb = Balancer()
    survivor = cluster.start_node("node-s", [f"TROVE_PUBLIC_URL={lb.url}"])
    yield lb, survivor
    lb.close()


XET_UPLOAD = """
a = api.upload_file(path_or_fileobj=ARGS["file"], path_in_repo=ARGS["path"], repo_id=ARGS["repo"])
emit({"commit": a.oid})
"""

# Large enough for several xorbs (at most 64 MiB each) and for the shard check (rebuilding
# and hashing the file) to take long enough to be caught in the act.
XET_KILL_SIZE = 192 * 1024 * 1024
# How the moment shows in the node's log: (a) a xorb upload answered 200 (the access line is
# written once the answer has gone out); (b) the shard arrived and its check began.
XORB_ACKED = re.compile(r"method=POST path=/xet/v1/xorbs/default/([0-9a-f]{64}) status=200 .*complete=true")
XORB_POSTED = re.compile(r"method=POST path=/xet/v1/xorbs/default/([0-9a-f]{64}) ")
SHARD_RECEIVED = "xet.shard_received"
SHARD_REGISTERED = "xet.shard_registered"
MOMENT_WAIT_S = 180
# How long the client may go on retrying against the dead node before the test stops it.
CLIENT_GIVE_UP_S = 10


@pytest.mark.parametrize("moment", ["xorbs", "shard"])
def test_a_node_killed_mid_xet_upload_leaves_nothing_half_visible_and_the_retry_through_another_succeeds(
        cluster, a, balanced, tmp_path, moment):
    """kill -9 of the node an hf_xet upload goes through, (a) while xorbs are being uploaded
    (at least one acknowledged, the shard not sent) or (b) while it checks the shard. The
    client fails; nothing of the file is visible; the client's retry through the balancer,
    now sending to another node, succeeds without sending again a xorb the dead node had
    acknowledged; the bytes read back through a third node are the ones uploaded."""
    lb, survivor = balanced
    victim = cluster.start_node(f"node-x-{moment}", [f"TROVE_PUBLIC_URL={lb.url}"])
    lb.backend = victim
    ha, hs = Hub(a), Hub(survivor)
    try:
        repo = ha.create_repo(f"mn-xet-kill-{moment}")
        head_before = ha.head_sha(repo)
        path = tmp_path / "big.bin"
        data = os.urandom(XET_KILL_SIZE)
        path.write_bytes(data)
        oid = hashlib.sha256(data).hexdigest()
        del data
        xet_hash = hf_xet.hash_files([str(path)])[0].hash

        client = make_client(victim, tmp_path / "c")
        args = {"repo": repo, "path": "big.bin", "file": str(path)}
        # hf_xet writes down the xorbs the server acknowledged (its resume record) every 20 s
        # or 64 xorbs; an upload of a few seconds would record none before the kill. Every
        # xorb at once here, as a long upload's would be.
        upload = client.popen_py(XET_UPLOAD, xet=True, args=args, extra_env={
            "HF_ENDPOINT": lb.url, "HF_XET_DATA_SESSION_XORB_METADATA_FLUSH_MAX_COUNT": "1"})
        try:
            wait_in_log(victim, XORB_ACKED if moment == "xorbs" else SHARD_RECEIVED, upload, MOMENT_WAIT_S)
            victim.proc.kill()
            victim.proc.wait(timeout=15)
            lb.backend = None
            # The client retries against nothing (hf_xet keeps at it for minutes): it must
            # not have succeeded when the test stops it.
            try:
                out, err = upload.communicate(timeout=CLIENT_GIVE_UP_S)
            except subprocess.TimeoutExpired:
                upload.kill()
                out, err = upload.communicate(timeout=30)
        finally:
            if upload.poll() is None:
                upload.kill()
                upload.communicate(timeout=30)
        assert upload.returncode != 0 and RESULT_MARK not in out, (upload.returncode, out, err[-3000:])

        # The node died at the moment meant.
        victim_log = victim.log_path.read_text(errors="replace")
        acked = set(XORB_ACKED.findall(victim_log))
        assert acked, "no xorb acknowledged before the kill"
        if moment == "xorbs":
            assert SHARD_RECEIVED not in victim_log, "the shard had arrived: the kill came too late"
        else:
            assert SHARD_RECEIVED in victim_log
            assert SHARD_REGISTERED not in victim_log, "the shard check had ended: use a larger file"

        # Nothing half-visible through the surviving node: the branch has not moved, the file
        # is not in the tree, its SHA-256 is no LFS object of the repository, and the CAS
        # knows no reconstruction of it.
        assert hs.head_sha(repo) == head_before
        assert "big.bin" not in tree_paths(hs, repo)
        r = hs.http.post(f"/{repo}.git/info/lfs/objects/batch",
                         json={"operation": "download", "transfers": ["basic"],
                               "objects": [{"oid": oid, "size": XET_KILL_SIZE}]},
                         headers={**hs.auth(hs.token()), "accept": "application/vnd.git-lfs+json"})
        assert r.status_code == 200, r.text
        obj = r.json()["objects"][0]
        assert "error" in obj and "actions" not in obj, obj
        r = hs.http.get(f"/api/models/{repo}/xet-read-token/main", headers=hs.auth(hs.token()))
        assert r.status_code == 200, r.text
        cas = {"authorization": f"Bearer {r.json()['accessToken']}"}
        r = hs.http.get(f"/xet/v2/reconstructions/{xet_hash}", headers=cas)
        assert r.status_code == 404, (r.status_code, r.text[:300])

        # The client's retry, the same file from the same machine, through the balancer that
        # now sends everything to the surviving node.
        lb.backend = survivor
        seen = len(survivor.log_path.read_text(errors="replace"))
        retry = Client(survivor, client.home, tmp_path / "c-retry")
        retry.work.mkdir()
        retry.py(XET_UPLOAD, xet=True, args=args, extra_env={"HF_ENDPOINT": lb.url})
        survivor_log = survivor.log_path.read_text(errors="replace")[seen:]
        assert SHARD_REGISTERED in survivor_log, "the retry's shard did not reach the surviving node"
        resent = acked & set(XORB_POSTED.findall(survivor_log))
        assert not resent, (f"{len(resent)} of the {len(acked)} xorbs the dead node "
                            "acknowledged were sent again")

        # Read back through a third node: the tree names the file by its Xet hash, and the
        # bytes are the ones uploaded.
        r = ha.http.get(f"/api/models/{repo}/tree/main", headers=ha.auth(ha.token()))
        assert r.status_code == 200, r.text
        entry = next(e for e in r.json() if e["path"] == "big.bin")
        assert entry["xetHash"] == xet_hash and entry["lfs"]["oid"] == oid, entry
        down = make_client(a, tmp_path / "ca").py(DOWNLOAD, xet=True,
                                                  args={"repo": repo, "path": "big.bin", "tag": moment})
        assert down.result["sha"] == oid
    finally:
        lb.backend = None
        ha.close()
        hs.close()


def test_sigterm_drains_a_node(cluster, a, hubs):
    ha, _ = hubs
    d = cluster.start_node("node-d", ["TROVE_DRAIN_DELAY=2", "TROVE_SHUTDOWN_TIMEOUT=60"])
    hd = Hub(d)
    repo = ha.create_repo("mn-drain")
    size = 24 * 1024 * 1024
    data = os.urandom(size)
    oid = hashlib.sha256(data).hexdigest()
    r = hd.http.post(f"/{repo}.git/info/lfs/objects/batch",
                     json={"operation": "upload", "transfers": ["basic"],
                           "objects": [{"oid": oid, "size": size}]},
                     headers={**hd.auth(hd.token()), "accept": "application/vnd.git-lfs+json"})
    href = r.json()["objects"][0]["actions"]["upload"]["href"]
    started = threading.Event()
    outcome: dict = {}

    def body():
        step = 1024 * 1024
        for i in range(0, size, step):
            if i == step:
                started.set()
            time.sleep(0.2)  # ~5 s in all: still running when SIGTERM comes
            yield data[i:i + step]

    def upload():
        try:
            with httpx.Client(timeout=120) as http:
                outcome["status"] = http.put(href, content=body()).status_code
        except httpx.HTTPError as e:
            outcome["error"] = repr(e)

    t = threading.Thread(target=upload)
    t.start()
    assert started.wait(30)
    assert httpx.get(f"{d.url}/readyz", timeout=10).status_code == 200
    d.proc.send_signal(signal.SIGTERM)
    # At once, the health check says "do not send me anything new"...
    time.sleep(0.3)
    r = httpx.get(f"{d.url}/readyz", timeout=10)
    assert r.status_code == 503 and "draining" in r.text, (r.status_code, r.text)
    # ...and after the drain delay new connections are refused...
    time.sleep(2.5)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{d.url}/healthz", timeout=5)
    # ...while the upload in flight completes, and the process exits 0.
    t.join(timeout=120)
    assert outcome.get("status") == 200, outcome
    assert d.proc.wait(timeout=60) == 0
    hd.close()
    r = ha.http.post(f"/{repo}.git/info/lfs/objects/batch",
                     json={"operation": "download", "transfers": ["basic"],
                           "objects": [{"oid": oid, "size": size}]},
                     headers={**ha.auth(ha.token()), "accept": "application/vnd.git-lfs+json"})
    href = r.json()["objects"][0]["actions"]["download"]["href"]
    got = ha.http.get(href)
    assert got.status_code == 200 and hashlib.sha256(got.content).hexdigest() == oid
    # Its presence is withdrawn at once.
    presence = {l["holder"] for l in cluster_status(ha)["leases"] if l["name"].startswith("node:")}
    assert "node-d" not in presence


# --------------------------------------------------------------------------------------------
# The repository check after a crash, under the repo-check lease
# --------------------------------------------------------------------------------------------


def _psql(url: str, sql: str) -> None:
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
                   check=True, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


# The stop's hand-over through the database is bounded by 5 s (cli/serve.rs, HAND_OVER_BUDGET);
# unbounded, each of its six calls waited for the pool's 10 s connect timeout.
EXIT_WITHOUT_DATABASE_S = 20


def test_a_node_whose_database_is_gone_answers_503_and_exits_in_bounded_time_on_sigterm(cluster, a):
    """A node that lost its PostgreSQL: a request that needs the database gets 503 with
    `Retry-After` and a message saying so (not a 500, not a hang); on SIGTERM it cannot hand
    its leases over (they expire on their own) but exits within its budget instead of waiting
    on the database call by call."""
    url = urlsplit(a.database_url)
    link = Relay((url.hostname or "127.0.0.1", url.port or 5432))
    credentials = url.netloc.rpartition("@")[0]
    through_link = url._replace(netloc=f"{credentials}@127.0.0.1:{link.port}").geturl()
    node = cluster.start_node("node-nodb", [f"TROVE_DATABASE={through_link}"])
    try:
        assert httpx.get(f"{node.url}/readyz", timeout=10).status_code == 200
        link.close()
        r = httpx.post(f"{node.url}/api/repos/create", json={"type": "model", "name": unique("mn-nodb")},
                       headers={"authorization": f"Bearer {a.admin_token}"}, timeout=60)
        assert r.status_code == 503, (r.status_code, r.text[:300])
        assert r.headers.get("retry-after") == "5"
        assert "database is not answering" in r.headers.get("x-error-message", ""), r.headers
        r = httpx.get(f"{node.url}/readyz", timeout=60)
        assert (r.status_code, r.text) == (503, "not ready: database"), (r.status_code, r.text)
        started = time.monotonic()
        node.proc.send_signal(signal.SIGTERM)
        code = node.proc.wait(timeout=60)
        took = time.monotonic() - started
        assert took < EXIT_WITHOUT_DATABASE_S, f"exited {took:.1f} s after SIGTERM\n{node.log_tail()}"
        assert code == 0, node.log_tail()
        assert "the database did not answer in time" in node.log_path.read_text(errors="replace")
    finally:
        link.close()
        node.stop()


def test_a_node_waits_for_the_repo_check_lease_then_takes_a_dead_checkers_check_over(tmp_path):
    c = Cluster(tmp_path)
    first = c.start_node("node-first")
    h = Hub(first)
    repo = h.create_repo("mn-check")
    h.close()
    git = tmp_path / "git"
    locks = []
    for folder in git.glob("*.git"):
        lock = folder / "refs" / "heads" / "main.lock"
        lock.write_bytes(b"")
        locks.append(lock)
    assert locks
    first.proc.kill()
    first.proc.wait(timeout=30)
    running = git / ".running"
    assert len(list(running.iterdir())) == 1
    # A node that took the lease to check and died: the lease runs out in 8 s.
    now_ms = int(time.time() * 1000)
    _psql(first.database_url,
          "INSERT INTO leases (name, holder, taken_at, expires_at) "
          f"VALUES ('repo-check', 'ghost', {now_ms}, {now_ms + 8000})")

    started = threading.Thread(target=c.start_node, args=("node-next",), daemon=True)
    started.start()
    log = tmp_path / "node-next" / "server.log"
    deadline = time.monotonic() + 30
    bound = None
    while bound is None:
        assert time.monotonic() < deadline, "node-next never bound its socket"
        m = re.search(r"answering /healthz while starting.*?listen=([0-9.:]+)|listen=([0-9.:]+).*?answering /healthz while starting",
                      log.read_text(errors="replace") if log.exists() else "")
        if m:
            bound = m.group(1) or m.group(2)
        else:
            time.sleep(0.1)
    url = f"http://{bound}"
    # While the dead checker's lease holds: alive, not ready, nothing served.
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    ready = httpx.get(f"{url}/readyz", timeout=10)
    assert ready.status_code == 503, ready.text
    refused = httpx.get(f"{url}/api/models/{repo}", timeout=10)
    assert refused.status_code == 503, refused.text
    assert refused.headers.get("x-error-message"), refused.headers
    assert all(lock.exists() for lock in locks)

    started.join(timeout=60)
    assert not started.is_alive(), "node-next never served"
    nxt = c.nodes[-1]
    assert nxt.name == "node-next"
    try:
        text = nxt.log_path.read_text(errors="replace")
        assert "waiting for another node's repository check" in text
        deadline = time.monotonic() + 60
        while "repositories checked" not in nxt.log_path.read_text(errors="replace"):
            assert time.monotonic() < deadline, nxt.log_tail()
            time.sleep(0.2)
        assert not any(lock.exists() for lock in locks)
        # Only its own marker is left: the dead node's went with the finished check.
        assert len(list(running.iterdir())) == 1
        assert httpx.get(f"{nxt.url}/readyz", timeout=10).status_code == 200
        hn = Hub(nxt)
        with httpx.Client(base_url=hn.url, timeout=120) as http:
            r = http.post(f"/api/models/{repo}/commit/main",
                          content=commit_body("after", {"after.txt": b"after\n"}),
                          headers={**hn.auth(hn.token()), "content-type": "application/x-ndjson"})
        assert r.status_code == 200, r.text
        hn.close()
    finally:
        c.stop()


# --------------------------------------------------------------------------------------------
# One signing key for every node, whatever its data dir
# --------------------------------------------------------------------------------------------

def test_a_node_with_a_data_dir_of_its_own_accepts_what_another_node_signed(cluster, a, tmp_path):
    """Nodes with objects in a bucket may each have a data dir of their own: the key that signs
    Xet tokens and transfer URLs is in the database, not in a file beside each node, so a token
    from node A works on node C (before: C made its own key and answered 401)."""
    c = TroveServer("node-own-dir", tmp_path / "node-own-dir",
                    {"TROVE_DATABASE": a.database_url, "TROVE_NODE_ID": "node-own-dir",
                     "TROVE_GIT_DIR": str(cluster.base / "git")})
    c.data_dir.mkdir(parents=True)
    # Only the first node writes the first admin's token file; the harness reads it from there.
    (c.data_dir / "admin-token").write_text(a.admin_token)
    (c.data_dir / "admin-token").chmod(0o600)
    c.start()
    ha, hc = Hub(a), Hub(c)
    try:
        # No node keeps a key file on PostgreSQL.
        assert not (a.data_dir / "secret.key").exists()
        assert not (c.data_dir / "secret.key").exists()
        repo = ha.create_repo("mn-own-dir")

        # A Xet token node A issued, presented to node C's CAS: an unknown file is 404, not 401.
        r = ha.http.get(f"/api/models/{repo}/xet-read-token/main", headers=ha.auth(ha.token()))
        assert r.status_code == 200, r.text
        token = r.json()["accessToken"]
        r = hc.http.get(f"/xet/v2/reconstructions/{'0' * 64}", headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 404, (r.status_code, r.headers.get("x-error-message"), r.text[:300])
        # A forged token is refused by both.
        for hub in (ha, hc):
            r = hub.http.get(f"/xet/v2/reconstructions/{'0' * 64}", headers={"authorization": f"Bearer {token}x"})
            assert r.status_code == 401, r.status_code

        # An LFS upload URL node A signed, sent to node C (the client sends no token with it).
        data = os.urandom(4096)
        oid = hashlib.sha256(data).hexdigest()
        r = ha.http.post(f"/{repo}.git/info/lfs/objects/batch",
                         json={"operation": "upload", "transfers": ["basic"],
                               "objects": [{"oid": oid, "size": len(data)}]},
                         headers={**ha.auth(ha.token()), "accept": "application/vnd.git-lfs+json"})
        assert r.status_code == 200, r.text
        href = r.json()["objects"][0]["actions"]["upload"]["href"]
        assert href.startswith(a.url), href
        r = httpx.put(c.url + href[len(a.url):], content=data, timeout=60)
        assert r.status_code == 200, (r.status_code, r.headers.get("x-error-message"), r.text[:300])
    finally:
        ha.close()
        hc.close()
        c.stop()
