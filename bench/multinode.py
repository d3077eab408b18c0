"""The measurements of bench/multinode.sh: real `trove serve` processes, real HTTP."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

BIN = os.environ["TROVE_BIN"]
PG = os.environ["TROVE_BENCH_POSTGRES_URL"]
COMMITS = int(os.environ["COMMITS"])
WRITERS = int(os.environ["WRITERS"])
LATENCY_N = int(os.environ["LATENCY_N"])
LISTEN_RE = re.compile(r"listening on (\S+)")


def database() -> str:
    name = "bench_" + uuid.uuid4().hex[:12]
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", PG, "-c", f"CREATE DATABASE {name}"],
                   check=True, capture_output=True, timeout=60)
    base, _, query = PG.partition("?")
    return base.rsplit("/", 1)[0] + "/" + name + (("?" + query) if query else "")


class Node:
    def __init__(self, data_dir: Path, db: str | None, name: str):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TROVE_", "HF_"))}
        env["TROVE_NODE_ID"] = name
        env["RUST_LOG"] = "warn"
        if db:
            env["TROVE_DATABASE"] = db
        self.log = open(data_dir.parent / f"{name}.log", "w")
        self.proc = subprocess.Popen([BIN, "serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0"],
                                     stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        deadline = time.monotonic() + 60
        self.url = ""
        while not self.url and time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit(f"{name} exited before listening")
            m = LISTEN_RE.search(line)
            if m:
                self.url = m.group(1)
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        self.token = (data_dir / "admin-token").read_text().strip()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.log.close()


def auth(node: Node) -> dict[str, str]:
    return {"authorization": f"Bearer {node.token}"}


def create_repo(node: Node) -> str:
    name = "b" + uuid.uuid4().hex[:10]
    r = httpx.post(f"{node.url}/api/repos/create", headers=auth(node), timeout=60,
                   json={"name": name, "organization": "admin", "type": "model"})
    r.raise_for_status()
    return f"admin/{name}"


def commit(http: httpx.Client, node: Node, repo: str, i: int) -> None:
    lines = [json.dumps({"key": "header", "value": {"summary": f"c{i}", "description": ""}}),
             json.dumps({"key": "file", "value": {"path": f"f/{i}.txt", "encoding": "base64",
                                                  "content": base64.b64encode(f"{i}\n".encode()).decode()}})]
    r = http.post(f"{node.url}/api/models/{repo}/commit/main", content="\n".join(lines) + "\n",
                  headers={**auth(node), "content-type": "application/x-ndjson"})
    if r.status_code != 200:
        raise SystemExit(f"commit {i}: {r.status_code} {r.text[:300]}")


def throughput(nodes: list[Node], repos: list[str]) -> float:
    clients = [httpx.Client(timeout=120) for _ in range(WRITERS)]

    def one(i: int) -> None:
        commit(clients[i % WRITERS], nodes[i % len(nodes)], repos[i % len(repos)], i)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        list(pool.map(one, range(COMMITS)))
    took = time.monotonic() - started
    for c in clients:
        c.close()
    return COMMITS / took


def latency(node: Node, repo: str) -> dict[str, tuple[float, float]]:
    out = {}
    with httpx.Client(base_url=node.url, headers=auth(node), timeout=60) as http:
        for label, path in (("info", f"/api/models/{repo}"),
                            ("tree", f"/api/models/{repo}/tree/main"),
                            ("listing", "/api/models?author=admin&limit=50")):
            http.get(path).raise_for_status()
            times = []
            for _ in range(LATENCY_N):
                t = time.perf_counter()
                http.get(path).raise_for_status()
                times.append((time.perf_counter() - t) * 1000)
            times.sort()
            out[label] = (statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))])
    return out


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="trove-bench-mn-"))
    print(f"# bench/multinode: COMMITS={COMMITS} WRITERS={WRITERS} LATENCY_N={LATENCY_N}, {os.cpu_count()} cores")
    try:
        db = database()
        shared = work / "shared" / "data"
        shared.mkdir(parents=True)
        a = Node(shared, db, "node-a")
        try:
            one_repo = [create_repo(a)]
            many = [create_repo(a) for _ in range(WRITERS)]
            r1 = throughput([a], one_repo)
            m1 = throughput([a], many)
            b = Node(shared, db, "node-b")
            try:
                r2 = throughput([a, b], one_repo)
                m2 = throughput([a, b], many)
            finally:
                b.stop()
            pg_lat = latency(a, one_repo[0])
        finally:
            a.stop()
        lite_dir = work / "sqlite" / "data"
        lite_dir.mkdir(parents=True)
        s = Node(lite_dir, None, "sqlite")
        try:
            repo = create_repo(s)
            throughput([s], [repo])  # the same history length as on PostgreSQL
            lite_lat = latency(s, repo)
            s1 = throughput([s], [repo])
        finally:
            s.stop()
        print("| commits/s (PostgreSQL) | 1 node | 2 nodes |")
        print("|---|---|---|")
        print(f"| one repository, {WRITERS} writers | {r1:.1f} | {r2:.1f} |")
        print(f"| {WRITERS} repositories, {WRITERS} writers | {m1:.1f} | {m2:.1f} |")
        print(f"\nSQLite, 1 node, one repository, {WRITERS} writers: {s1:.1f} commits/s\n")
        print("| API call | PostgreSQL p50 / p99 ms | SQLite p50 / p99 ms |")
        print("|---|---|---|")
        for k in pg_lat:
            print(f"| {k} | {pg_lat[k][0]:.2f} / {pg_lat[k][1]:.2f} | {lite_lat[k][0]:.2f} / {lite_lat[k][1]:.2f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
