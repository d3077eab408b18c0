#!/usr/bin/env python3
"""The web UI's page benchmark, driven by bench/web.sh: a model repository of 10,000 files
(FOLDERS × SUBFOLDERS × FILES, a few folders deep, built over several commits so "last
commit per entry" has history to walk) pushed with git, then its repository page, a tree
page and a blob page fetched over one keep-alive connection with warm caches, interleaved
with the same server's `/api/models/{repo}` JSON (the same repository as the API serves it)
and `/healthz` (the floor of any request) as references. Prints p50/p99 per page and each
page's ratio to both; the aim (< 20 ms) is judged on p99. Exits non-zero only when
something does not run.

Times are measured by the client on 127.0.0.1 (request written → body read), so they bound
the server time from above; the reference shows the floor of any request on this server."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

AIM_MS = 20.0


def git(*args: str, cwd: Path, env: dict[str, str]) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, timeout=600,
                   stdout=subprocess.DEVNULL)


def build_repo(url: str, token: str, repo: str, scratch: Path, folders: int, subfolders: int,
               files: int, commits: int) -> int:
    """Creates `repo` and pushes the tree over `commits` commits; returns the file count."""
    split = urlsplit(url)
    conn = http.client.HTTPConnection(split.hostname, split.port, timeout=60)
    ns, name = repo.split("/")
    conn.request("POST", "/api/repos/create", body=json.dumps({"name": name, "organization": ns}),
                 headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
    answer = conn.getresponse()
    body = answer.read()
    if answer.status != 200:
        sys.exit(f"create {repo}: {answer.status} {body[:300]!r}")
    work = scratch / "work"
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_AUTHOR_NAME": "bench",
           "GIT_AUTHOR_EMAIL": "bench@example.com", "GIT_COMMITTER_NAME": "bench",
           "GIT_COMMITTER_EMAIL": "bench@example.com"}
    remote = f"http://admin:{token}@{split.hostname}:{split.port}/{repo}"
    subprocess.run(["git", "clone", "-q", remote, str(work)], env=env, check=True, timeout=600)
    (work / "README.md").write_text("---\nlicense: mit\n---\n# Big tree\n\nTen thousand files.\n")
    count = 0
    # Commit k writes every `commits`-th folder, so entries end with different last commits.
    for k in range(commits):
        for d in range(k, folders, commits):
            for s in range(subfolders):
                folder = work / f"d{d:02}" / f"s{s:02}"
                folder.mkdir(parents=True, exist_ok=True)
                for f in range(files):
                    (folder / f"f{f:03}.py").write_text(
                        f"# file {d}/{s}/{f}\ndef value():\n    return {d * 10_000 + s * 100 + f}\n")
                    count += 1
        git("add", "-A", cwd=work, env=env)
        git("commit", "-q", "-m", f"Add folders {k} mod {commits}", cwd=work, env=env)
    git("push", "-q", "origin", "HEAD:main", cwd=work, env=env)
    return count


def timed_get(conn: http.client.HTTPConnection, path: str) -> float:
    start = time.perf_counter()
    conn.request("GET", path, headers={"accept": "text/html"})
    answer = conn.getresponse()
    answer.read()
    elapsed = (time.perf_counter() - start) * 1000
    if answer.status != 200:
        sys.exit(f"GET {path}: {answer.status}")
    return elapsed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def measure(url: str, pages: dict[str, str], warmup: int, requests: int) -> dict[str, dict]:
    split = urlsplit(url)
    conn = http.client.HTTPConnection(split.hostname, split.port, timeout=60)
    for _ in range(warmup):
        for path in pages.values():
            timed_get(conn, path)
    samples: dict[str, list[float]] = {label: [] for label in pages}
    for _ in range(requests):  # interleaved, so every page sees the same machine load
        for label, path in pages.items():
            samples[label].append(timed_get(conn, path))
    return {label: {"path": pages[label], "p50_ms": percentile(v, 0.50),
                    "p99_ms": percentile(v, 0.99), "n": len(v)} for label, v in samples.items()}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--token-file", required=True)
    p.add_argument("--scratch", required=True)
    p.add_argument("--folders", type=int, default=10)
    p.add_argument("--subfolders", type=int, default=10)
    p.add_argument("--files", type=int, default=100)
    p.add_argument("--commits", type=int, default=5)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--json")
    a = p.parse_args()
    token = Path(a.token_file).read_text().strip()
    repo = "admin/big-tree"
    started = time.monotonic()
    count = build_repo(a.url, token, repo, Path(a.scratch), a.folders, a.subfolders, a.files,
                       a.commits)
    print(f"pushed {count} files in {a.commits} commits ({time.monotonic() - started:.0f} s)",
          file=sys.stderr)
    pages = {
        "floor: /healthz": "/healthz",
        "reference: /api/models/{repo}": f"/api/models/{repo}",
        "repo page": f"/{repo}",
        "tree page (root)": f"/{repo}/tree/main",
        "tree page (100 files)": f"/{repo}/tree/main/d05/s05",
        "blob page": f"/{repo}/blob/main/d05/s05/f050.py",
    }
    results = measure(a.url, pages, a.warmup, a.requests)
    ref = results["reference: /api/models/{repo}"]["p50_ms"]
    floor = results["floor: /healthz"]["p50_ms"]
    print(f"\n{count} files; {a.requests} requests per page after {a.warmup} warm-up rounds\n")
    print(f"{'page':32} {'p50 ms':>8} {'p99 ms':>8} {'p50 ×api':>9} {'p50 ×floor':>11} {'aim':>6}")
    for label, r in results.items():
        page = not label.startswith(("reference", "floor"))
        aim = ("met" if r["p99_ms"] < AIM_MS else "MISSED") if page else ""
        print(f"{label:32} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['p50_ms'] / ref:9.2f} "
              f"{r['p50_ms'] / floor:11.1f} {aim:>6}")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"files": count, "commits": a.commits,
                                            "requests": a.requests, "results": results}, indent=2))


if __name__ == "__main__":
    main()
