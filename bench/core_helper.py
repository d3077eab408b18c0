#!/usr/bin/env python3
"""The measuring half of bench/core.sh (which installs, builds, starts the servers and cleans
up). Standard library only.

    core_helper.py free-port
    core_helper.py run --trove URL --trove-pid PID --token-file F --nginx URL --nginx-pid PID
                       --big F --small F --scratch DIR [--rounds N] [--wrk-seconds S]
                       [--big-upload-gib G] [--json OUT]

`run` creates a model repo, uploads the two files through the LFS batch API and commits them,
makes one large upload (peak RSS), then, round by round, measures each download case on Trove
and then on nginx (which serves the very object files Trove stored), a 1 GiB LFS upload of
bytes the hub has never seen (`fresh_pieces`: every chunk new to its dedup store), the
single-core SHA-256 rate and the sequential write+fsync rate; then prints medians and the
ratios against the aims of the core-hub issue, and how much other load the machine had.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import http.client
import json
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

GIB = 1 << 30
MIB = 1 << 20
TICK = os.sysconf("SC_CLK_TCK")
# How many downloads one single-stream measurement makes, one after the other on one
# connection (a single 10 MiB download is too short to time).
SMALL_REPEATS = 20
BIG_REPEATS = 2
# An upload's bytes are the big file's with one byte in every PATCH_EVERY drawn anew
# (`fresh_pieces`): Trove's store is content-defined and deduplicated, so an upload of the
# same bytes again (or of them with a new tail) would only be looked up, never stored. Every
# chunk (8 KiB at least) then holds a new byte.
PATCH_EVERY = 4096

AIM_DOWNLOAD_RATIO = 0.9
# The small files measured for their request rate: (BENCH_SIZES key, label, bytes).
SMALL_FILES = [("4k", "4 KiB", 4 << 10), ("64k", "64 KiB", 64 << 10)]
AIM_DOWNLOAD_CPU_RATIO = 1.5
AIM_UPLOAD_VS_SHA = 0.45
AIM_UPLOAD_CPU_PER_GIB = 1.0
AIM_RSS_UPLOAD_MIB = 64
AIM_RSS_DOWNLOADS_MIB = 128

WRK_SCRIPT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRKRESULT %d %d %d %d %d %d %d %d\\n", summary.duration,
    summary.requests, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def log(msg: str) -> None:
    print(f"    {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# /proc sampling
# ---------------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name may hold spaces; the fields after it are fixed.
    return text[text.rindex(")") + 2 :].split()


def process_tree(pid: int) -> list[int]:
    """`pid` and its direct children (nginx's workers)."""
    pids = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(_stat_fields(int(entry.name))[1]) == pid:
                    pids.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and its live children, all threads included."""
    total = 0
    for p in process_tree(pid):
        try:
            f = _stat_fields(p)
        except OSError:
            continue
        total += int(f[11]) + int(f[12])  # utime, stime (fields 14 and 15)
    return total / TICK


def machine_busy_cores(seconds: float = 2.0) -> float:
    """How many cores' worth of CPU the whole machine used over `seconds` (from /proc/stat)."""

    def sample() -> tuple[int, int]:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = f[3] + f[4]  # idle + iowait
        return sum(f[:8]) - idle, sum(f[:8])

    busy0, _ = sample()
    time.sleep(seconds)
    busy1, _ = sample()
    return (busy1 - busy0) / TICK / seconds


class OtherLoad:
    """Cores' worth of CPU used, while the `with` block runs, by processes other than the
    servers under test and this script with its children (curl, wrk, openssl, dd)."""

    def __init__(self, *server_pids: int):
        self.pids = server_pids
        self.cores = 0.0

    @staticmethod
    def _machine_ticks() -> int:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(f[:8]) - f[3] - f[4]

    def _ours(self) -> float:
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (
            sum(cpu_seconds(p) for p in self.pids)
            + me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
        )

    def __enter__(self) -> "OtherLoad":
        self._t0, self._m0, self._o0 = time.monotonic(), self._machine_ticks(), self._ours()
        return self

    def __exit__(self, *exc) -> None:
        elapsed = time.monotonic() - self._t0
        machine = (self._machine_ticks() - self._m0) / TICK
        self.cores = max(0.0, machine - (self._ours() - self._o0)) / max(elapsed, 1e-6)


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def write_bytes(pid: int) -> int:
    """Bytes this process caused to be written to storage (dirtied pages), from /proc/PID/io."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise KeyError("write_bytes")


class RssPeak:
    """Peak resident set size of one process while the `with` block runs: VmHWM after a reset
    through clear_refs when the kernel allows it, and VmRSS polled every 20 ms in any case."""

    def __init__(self, pid: int):
        self.pid = pid
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._hwm_reset = False

    def _poll(self) -> None:
        while True:
            try:
                self.peak_kib = max(self.peak_kib, status_kib(self.pid, "VmRSS"))
            except (OSError, KeyError):
                return
            if self._stop.wait(0.02):
                return

    def __enter__(self) -> "RssPeak":
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            self._hwm_reset = True
        except OSError:
            pass
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._hwm_reset:
            self.peak_kib = max(self.peak_kib, status_kib(self.pid, "VmHWM"))


# ---------------------------------------------------------------------------------------------
# HTTP to Trove
# ---------------------------------------------------------------------------------------------


def request(url: str, method: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    try:
        path = u.path + (f"?{u.query}" if u.query else "")
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def call_json(url: str, method: str, payload: object, token: str, content_type: str) -> object:
    status, body = request(
        url,
        method,
        json.dumps(payload).encode(),
        {"Authorization": f"Bearer {token}", "Content-Type": content_type, "Accept": content_type},
    )
    if status != 200:
        raise SystemExit(f"{method} {url}: HTTP {status}: {body[:300]!r}")
    return json.loads(body)


@dataclass
class Body:
    """An upload body: byte ranges of files sent with sendfile, then `tail` bytes; or, with
    `fresh` (source file, size, seed), the bytes `fresh_pieces` makes, sent as they are made."""

    segments: list[tuple[Path, int, int]]
    tail: bytes = b""
    fresh: tuple[Path, int, int] | None = None

    @property
    def size(self) -> int:
        if self.fresh is not None:
            return self.fresh[1]
        return sum(n for _, _, n in self.segments) + len(self.tail)


def fresh_pieces(src: Path, size: int, seed: int):
    """`size` bytes of `src` from its start (over again from its start when it ends), with one
    byte in every PATCH_EVERY replaced by one drawn from `seed`: the same bytes for the same
    seed, and none a store holding other seeds' bytes has. Yields views of one 4 MiB buffer,
    each valid until the next."""
    rng = random.Random(seed)
    buf = bytearray(4 * MIB)
    with open(src, "rb") as f:
        left = size
        while left:
            n = f.readinto(memoryview(buf)[: min(len(buf), left)])
            if not n:
                f.seek(0)
                continue
            buf[0:n:PATCH_EVERY] = rng.randbytes(len(range(0, n, PATCH_EVERY)))
            yield memoryview(buf)[:n]
            left -= n


def hash_fresh(src: Path, size: int, seed: int) -> str:
    h = hashlib.sha256()
    for piece in fresh_pieces(src, size, seed):
        h.update(piece)
    return h.hexdigest()


def write_fresh(src: Path, size: int, seed: int, dest: Path) -> str:
    """Writes `fresh_pieces` to `dest` (fsynced, so that its write-back does not run during a
    timed upload) and returns its SHA-256."""
    h = hashlib.sha256()
    with open(dest, "wb") as out:
        for piece in fresh_pieces(src, size, seed):
            h.update(piece)
            out.write(piece)
        out.flush()
        os.fsync(out.fileno())
    return h.hexdigest()


def hash_segments(segments: list[tuple[Path, int, int]]) -> "hashlib._Hash":
    """SHA-256 state after the given file ranges, in order."""
    h = hashlib.sha256()
    buf = bytearray(4 * MIB)
    view = memoryview(buf)
    for path, offset, length in segments:
        with open(path, "rb") as f:
            f.seek(offset)
            left = length
            while left:
                n = f.readinto(view[: min(len(buf), left)])
                if not n:
                    raise SystemExit(f"{path} is shorter than expected")
                h.update(view[:n])
                left -= n
    return h


@dataclass
class Upload:
    oid: str
    size: int
    put_seconds: float = 0.0
    verify_seconds: float = 0.0
    server_cpu_seconds: float = 0.0
    server_write_bytes: int = 0
    peak_rss_kib: int = 0


class Trove:
    def __init__(self, url: str, token: str, pid: int):
        self.url = url.rstrip("/")
        self.token = token
        self.pid = pid

    def create_repo(self, name: str) -> str:
        call_json(
            f"{self.url}/api/repos/create",
            "POST",
            {"name": name, "organization": "admin", "type": "model", "private": False},
            self.token,
            "application/json",
        )
        return f"admin/{name}"

    def lfs_upload(self, repo: str, body: Body, oid: str, watch_rss: bool = False) -> Upload:
        """batch -> PUT to the signed href (timed to its 200) -> verify (timed)."""
        lfs = "application/vnd.git-lfs+json"
        batch = call_json(
            f"{self.url}/{repo}.git/info/lfs/objects/batch",
            "POST",
            {
                "operation": "upload",
                "transfers": ["basic"],
                "objects": [{"oid": oid, "size": body.size}],
                "hash_algo": "sha256",
            },
            self.token,
            lfs,
        )
        obj = batch["objects"][0]
        if "error" in obj or "actions" not in obj:
            raise SystemExit(f"batch gave no upload action for a new object: {obj}")
        href = obj["actions"]["upload"]["href"]
        verify_href = obj["actions"]["verify"]["href"]
        result = Upload(oid=oid, size=body.size)

        u = urlsplit(href)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
        conn.putrequest("PUT", f"{u.path}?{u.query}", skip_accept_encoding=True)
        conn.putheader("Content-Type", "application/octet-stream")
        conn.putheader("Content-Length", str(body.size))
        rss = RssPeak(self.pid) if watch_rss else None
        cpu0, io0 = cpu_seconds(self.pid), write_bytes(self.pid)
        t0 = time.perf_counter()
        if rss:
            rss.__enter__()
        try:
            conn.endheaders()
            assert conn.sock is not None
            for path, offset, length in body.segments:
                with open(path, "rb") as f:
                    sent = 0
                    while sent < length:
                        n = conn.sock.sendfile(f, offset + sent, length - sent)
                        if not n:
                            raise SystemExit("sendfile sent nothing")
                        sent += n
            if body.tail:
                conn.sock.sendall(body.tail)
            if body.fresh is not None:
                for piece in fresh_pieces(*body.fresh):
                    conn.sock.sendall(piece)
            resp = conn.getresponse()
            answer = resp.read()
        finally:
            if rss:
                rss.__exit__(None, None, None)
            conn.close()
        result.put_seconds = time.perf_counter() - t0
        result.server_cpu_seconds = cpu_seconds(self.pid) - cpu0
        result.server_write_bytes = write_bytes(self.pid) - io0
        if rss:
            result.peak_rss_kib = rss.peak_kib
        if resp.status != 200:
            raise SystemExit(f"PUT {u.path}: HTTP {resp.status}: {answer[:300]!r}")

        t1 = time.perf_counter()
        call_json(verify_href, "POST", {"oid": oid, "size": body.size}, self.token, lfs)
        result.verify_seconds = time.perf_counter() - t1
        return result

    def commit_lfs(self, repo: str, files: dict[str, tuple[str, int]], regular: dict[str, bytes] | None = None) -> None:
        """Commits LFS pointers to uploaded objects, and `regular` files as git blobs."""
        lines = [{"key": "header", "value": {"summary": "Benchmark files", "description": ""}}]
        for path, (oid, size) in files.items():
            lines.append(
                {"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": oid, "size": size}}
            )
        for path, data in (regular or {}).items():
            lines.append(
                {"key": "file", "value": {"path": path, "encoding": "base64", "content": base64.b64encode(data).decode()}}
            )
        body = "\n".join(json.dumps(line) for line in lines).encode() + b"\n"
        status, answer = request(
            f"{self.url}/api/models/{repo}/commit/main",
            "POST",
            body,
            {"Authorization": f"Bearer {self.token}", "Content-Type": "application/x-ndjson"},
        )
        if status != 200:
            raise SystemExit(f"commit: HTTP {status}: {answer[:300]!r}")


# ---------------------------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------------------------


@dataclass
class Transfer:
    bytes: int
    seconds: float
    cpu_seconds: float
    errors: int = 0
    requests: int = 0

    @property
    def req_s(self) -> float:
        return self.requests / self.seconds

    @property
    def mib_s(self) -> float:
        return self.bytes / MIB / self.seconds

    @property
    def cpu_per_gib(self) -> float:
        return self.cpu_seconds / (self.bytes / GIB) if self.bytes else float("nan")


def run_checked(cmd: list[str], timeout: float) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.strip()[:500]}")
    return proc.stdout


def curl_download(url: str, headers: list[str], repeats: int, expect: int, pid: int) -> Transfer:
    cmd = ["curl", "-sS", "--fail", "-w", "%{size_download} %{time_total}\\n"]
    for h in headers:
        cmd += ["-H", h]
    for _ in range(repeats):
        cmd += ["-o", "/dev/null", url]
    cpu0 = cpu_seconds(pid)
    out = run_checked(cmd, timeout=300)
    cpu = cpu_seconds(pid) - cpu0
    total, seconds = 0, 0.0
    pairs = out.split()
    for size, secs in zip(pairs[0::2], pairs[1::2]):
        if int(size) != expect:
            raise SystemExit(f"curl {url}: got {size} bytes, expected {expect}")
        total += int(size)
        seconds += float(secs)
    return Transfer(total, seconds, cpu)


def wrk_download(url: str, headers: list[str], conns: int, seconds: int, script: Path, pid: int) -> Transfer:
    cmd = ["wrk", "-t", str(min(2, conns)), "-c", str(conns), "-d", f"{seconds}s", "--timeout", "60s"]
    cmd += ["-s", str(script)]
    for h in headers:
        cmd += ["-H", h]
    cmd.append(url)
    cpu0 = cpu_seconds(pid)
    out = run_checked(cmd, timeout=seconds + 60)
    cpu = cpu_seconds(pid) - cpu0
    for line in out.splitlines():
        if line.startswith("WRKRESULT "):
            duration_us, requests, nbytes, *errors = (int(x) for x in line.split()[1:])
            return Transfer(nbytes, duration_us / 1e6, cpu, errors=sum(errors), requests=requests)
    raise SystemExit(f"wrk printed no result: {out[:500]}")


def sha256_rate(path: Path, size: int) -> dict[str, float]:
    """MiB per CPU-second of one process hashing a page-cached file (CPU time, not wall
    time, so that other load on the machine does not lower it): openssl (SHA extensions where
    the CPU has them, as Trove's sha2 crate uses) and coreutils sha256sum for reference."""
    rates = {}
    for name, cmd in (
        ("openssl", ["openssl", "dgst", "-sha256", str(path)]),
        ("sha256sum", ["sha256sum", str(path)]),
    ):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        run_checked(cmd, timeout=300)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        rates[name] = size / MIB / max(cpu, 1e-6)
    return rates


def write_fsync_rate(src: Path, scratch: Path) -> float:
    """MiB/s of `dd` writing the (page-cached) file sequentially and fsyncing it."""
    dest = scratch / "dd-write-test"
    size = src.stat().st_size
    t0 = time.perf_counter()
    run_checked(["dd", f"if={src}", f"of={dest}", "bs=1M", "conv=fsync", "status=none"], timeout=600)
    rate = size / MIB / (time.perf_counter() - t0)
    dest.unlink()
    return rate


def warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(16 * MIB):
            pass


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


@dataclass
class Results:
    machine: dict = field(default_factory=dict)
    idle_rss_kib: int = 0
    downloads: dict[str, dict[str, list[Transfer]]] = field(default_factory=dict)
    uploads: list[Upload] = field(default_factory=list)
    sha: list[dict[str, float]] = field(default_factory=list)
    fsync: list[float] = field(default_factory=list)
    rss_downloads_kib: int = 0
    rest_before_downloads_kib: int = 0
    rest_before_upload_kib: int = 0
    big_upload: Upload | None = None
    other_load: list[float] = field(default_factory=list)
    phase_rss_kib: dict[str, int] = field(default_factory=dict)
    loadavg_before: list[str] = field(default_factory=list)
    loadavg_after: list[str] = field(default_factory=list)


def run(args: argparse.Namespace) -> None:
    token = Path(args.token_file).read_text().strip()
    trove = Trove(args.trove, token, args.trove_pid)
    big, small, scratch = Path(args.big), Path(args.small), Path(args.scratch)
    big_size, small_size = big.stat().st_size, small.stat().st_size
    wrk_script = scratch / "wrk-done.lua"
    wrk_script.write_text(WRK_SCRIPT)
    res = Results()
    started = time.monotonic()

    res.loadavg_before = Path("/proc/loadavg").read_text().split()[:3]
    busy = machine_busy_cores()
    if busy > 0.1:
        log(f"WARNING: the machine is busy before the run ({busy:.2f} cores in use by other "
            "processes): the figures will be low and noisy")

    repo = trove.create_repo(f"bench-{uuid.uuid4().hex[:8]}")
    time.sleep(1)
    res.idle_rss_kib = status_kib(args.trove_pid, "VmRSS")
    log(f"repo {repo}; Trove idle RSS {res.idle_rss_kib / 1024:.1f} MiB")

    log("hashing the files")
    big_oid = hash_segments([(big, 0, big_size)]).hexdigest()
    small_oid = hash_segments([(small, 0, small_size)]).hexdigest()

    log("uploading big.bin and small.bin through LFS and committing them")
    trove.lfs_upload(repo, Body([(big, 0, big_size)]), big_oid)
    trove.lfs_upload(repo, Body([(small, 0, small_size)]), small_oid)
    trove.commit_lfs(repo, {"big.bin": (big_oid, big_size), "small.bin": (small_oid, small_size)})

    auth = [f"Authorization: Bearer {token}"]
    cases = []
    sizes = set(args.sizes.split(","))
    for fname, oid, size in (("big.bin", big_oid, big_size), ("small.bin", small_oid, small_size)):
        if ("1g" if fname == "big.bin" else "10m") not in sizes:
            continue
        label = "1 GiB" if fname == "big.bin" else "10 MiB"
        t_url = f"{trove.url}/{repo}/resolve/main/{fname}"
        # Trove holds an LFS upload as chunks in xorbs and rebuilds it as it streams; nginx
        # sends the very same bytes from the benchmark's own copy of the file, on the same
        # disk and warm in the same page cache.
        n_url = f"{args.nginx.rstrip('/')}/files/{fname}"
        cases.append((f"{label} curl", "curl", t_url, n_url, size, BIG_REPEATS if size >= 100 * MIB else SMALL_REPEATS))
        for c in (1, 8, 64):
            cases.append((f"{label} wrk c={c}", c, t_url, n_url, size, 0))
    # Small files: a regular file (a git blob) and an LFS file (chunks in a xorb) of each
    # size, against nginx sending the same bytes; what counts here is the request rate.
    small_sizes = [(label, n) for key, label, n in SMALL_FILES if key in sizes]
    if small_sizes:
        log("committing the small files: " + ", ".join(label for label, _ in small_sizes))
        lfs_files, regular = {}, {}
        for label, n in small_sizes:
            for kind in ("git", "lfs"):
                data = os.urandom(n)
                fname = f"{kind}-{n}.bin"
                (scratch / fname).write_bytes(data)
                if kind == "lfs":
                    oid = hashlib.sha256(data).hexdigest()
                    trove.lfs_upload(repo, Body([(scratch / fname, 0, n)]), oid)
                    lfs_files[fname] = (oid, n)
                else:
                    regular[fname] = data
        trove.commit_lfs(repo, lfs_files, regular)
        for label, n in small_sizes:
            for kind, kind_label in (("git", "git"), ("lfs", "LFS")):
                fname = f"{kind}-{n}.bin"
                t_url = f"{trove.url}/{repo}/resolve/main/{fname}"
                n_url = f"{args.nginx.rstrip('/')}/files/{fname}"
                for c in (1, 8, 64):
                    cases.append((f"{label} {kind_label} wrk c={c}", c, t_url, n_url, n, 0))
    for name, *_ in cases:
        res.downloads[name] = {"trove": [], "nginx": []}
    warm(big)
    warm(small)

    # The large upload first, while the server's memory is as it was at rest after start-up
    # (glibc keeps some of what the download rounds free, which would count against it).
    if args.big_upload_gib > 0:
        n = args.big_upload_gib
        log(f"{n} GiB upload of new bytes, made as they are sent (hashing them first)")
        fresh = (big, n * GIB, random.getrandbits(63))
        oid = hash_fresh(*fresh)
        res.rest_before_upload_kib = status_kib(args.trove_pid, "VmRSS")
        res.big_upload = trove.lfs_upload(repo, Body([], fresh=fresh), oid, watch_rss=True)

    for r in range(1, args.rounds + 1):
        with OtherLoad(args.trove_pid, args.nginx_pid) as other:
            log(f"round {r}/{args.rounds}: downloads")
            for name, mode, t_url, n_url, size, repeats in cases:
                for server, url, pid, headers in (
                    ("trove", t_url, args.trove_pid, auth),
                    ("nginx", n_url, args.nginx_pid, []),
                ):
                    rest = status_kib(args.trove_pid, "VmRSS")
                    with RssPeak(args.trove_pid) if server == "trove" else contextlib.nullcontext() as rss:
                        if mode == "curl":
                            t = curl_download(url, headers, repeats, size, pid)
                        else:
                            t = wrk_download(url, headers, mode, args.wrk_seconds, wrk_script, pid)
                    if rss is not None:
                        res.phase_rss_kib[name] = max(res.phase_rss_kib.get(name, 0), rss.peak_kib)
                        if mode == 64 and rss.peak_kib > res.rss_downloads_kib:
                            res.rss_downloads_kib = rss.peak_kib
                            res.rest_before_downloads_kib = rest
                    if t.errors:
                        log(f"{name} {server}: {t.errors} errors")
                    res.downloads[name][server].append(t)
            if not args.no_upload_rounds:
                log(f"round {r}/{args.rounds}: 1 GiB upload of new bytes, SHA-256 rate, write+fsync rate")
                fresh_file = scratch / "fresh-upload.bin"
                oid = write_fresh(big, big_size, random.getrandbits(63), fresh_file)
                up = trove.lfs_upload(repo, Body([(fresh_file, 0, big_size)]), oid, watch_rss=True)
                fresh_file.unlink()
                res.uploads.append(up)
                res.phase_rss_kib["1 GiB LFS upload"] = max(res.phase_rss_kib.get("1 GiB LFS upload", 0), up.peak_rss_kib)
                res.sha.append(sha256_rate(big, big_size))
                res.fsync.append(write_fsync_rate(big, scratch))
        res.other_load.append(other.cores)
        log(f"round {r}: other processes used {other.cores:.2f} cores")

    res.loadavg_after = Path("/proc/loadavg").read_text().split()[:3]
    res.machine = machine(args, time.monotonic() - started)
    res.machine["busy_cores_before"] = round(busy, 2)
    report(res, args)


def machine(args: argparse.Namespace, seconds: float) -> dict:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = status_kib_meminfo("MemTotal")
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": os.uname().release,
        "rounds": args.rounds,
        "wrk_seconds": args.wrk_seconds,
        "measure_seconds": round(seconds),
    }


def status_kib_meminfo(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def report(res: Results, args: argparse.Namespace) -> None:
    m = res.machine
    out: dict = {"machine": m, "other_load_cores": [round(x, 2) for x in res.other_load],
                 "loadavg_before": res.loadavg_before, "loadavg_after": res.loadavg_after,
                 "downloads": {}, "upload": {}, "rss": {}}
    lines = []
    lines.append(
        f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, Linux {m['kernel']}; "
        f"{m['rounds']} rounds, wrk {m['wrk_seconds']} s per case; medians."
    )
    loads = ", ".join(f"{x:.2f}" for x in res.other_load)
    lines.append(f"Other processes used [{loads}] cores during the rounds (0 = undisturbed).")
    lines.append(f"Load average before {' '.join(res.loadavg_before)}, after {' '.join(res.loadavg_after)}.")
    if m["busy_cores_before"] > 0.1 or max(res.other_load, default=0) > 0.2:
        lines.append("WARNING: the machine was not quiet; figures are lower and noisier than they should be.")
    lines.append("")
    lines.append("Downloads (Trove resolve endpoint vs nginx sendfile, same file, same page cache)")
    lines.append("ratio = median of the per-pair ratios (Trove run i / nginx run i), min..max beside it;")
    lines.append(f"CPU aim: Trove's CPU-s/GiB <= {AIM_DOWNLOAD_CPU_RATIO} x nginx's")
    hdr = (f"{'case':<18} {'Trove MiB/s':>12} {'nginx MiB/s':>12} {'ratio':>6} {'min..max':>11} {'aim':>7}   "
           f"{'Trove CPU-s/GiB':>15} {'nginx CPU-s/GiB':>15} {'ratio':>6} {'min..max':>11} {'aim':>7}")
    lines.append(hdr)
    lines.append("-" * len(hdr))
    all_ok = True
    small_labels = tuple(f"{label} " for _, label, _ in SMALL_FILES)
    for name, per in res.downloads.items():
        if name.startswith(small_labels):
            continue
        t = median([x.mib_s for x in per["trove"]])
        n = median([x.mib_s for x in per["nginx"]])
        tc = median([x.cpu_per_gib for x in per["trove"]])
        nc = median([x.cpu_per_gib for x in per["nginx"]])
        pairs = [a.mib_s / b.mib_s for a, b in zip(per["trove"], per["nginx"])]
        ratio = median(pairs)
        ok = ratio >= AIM_DOWNLOAD_RATIO
        all_ok &= ok
        cpu_known = "curl" not in name or "1 GiB" in name
        cpu_pairs = [a.cpu_per_gib / b.cpu_per_gib for a, b in zip(per["trove"], per["nginx"]) if b.cpu_seconds > 0]
        tc_s = f"{tc:15.2f}" if cpu_known else f"{'-':>15}"
        nc_s = f"{nc:15.2f}" if cpu_known else f"{'-':>15}"
        if cpu_known and cpu_pairs:
            cr = median(cpu_pairs)
            ok_cpu = cr <= AIM_DOWNLOAD_CPU_RATIO
            all_ok &= ok_cpu
            cr_s = f"{cr:6.2f} {min(cpu_pairs):5.2f}..{max(cpu_pairs):<5.2f} {verdict(ok_cpu):>7}"
        else:
            cr_s = f"{'-':>6} {'':>11} {'':>7}"
        lines.append(
            f"{name:<18} {t:12.0f} {n:12.0f} {ratio:6.2f} {min(pairs):5.2f}..{max(pairs):<5.2f} {verdict(ok):>7}   "
            f"{tc_s} {nc_s} {cr_s}"
        )
        out["downloads"][name] = {
            "trove_mib_s": round(t, 1),
            "nginx_mib_s": round(n, 1),
            "ratio": round(ratio, 3),
            "ratio_min": round(min(pairs), 3),
            "ratio_max": round(max(pairs), 3),
            "cpu_ratios": [round(x, 3) for x in cpu_pairs],
            "trove_cpu_s_per_gib": round(tc, 3),
            "nginx_cpu_s_per_gib": round(nc, 3),
            "trove_runs_mib_s": [round(x.mib_s) for x in per["trove"]],
            "nginx_runs_mib_s": [round(x.mib_s) for x in per["nginx"]],
        }
    lines.append(
        f"(curl: {BIG_REPEATS} x 1 GiB or {SMALL_REPEATS} x 10 MiB on one connection; "
        "10 MiB curl CPU not shown: too short to count in clock ticks)"
    )
    lines.append("")
    all_ok &= report_small(res, lines, out, small_labels)

    up = res.uploads
    if up:
        all_ok &= report_upload(res, lines, out)
    report_memory(res, lines, out, all_ok, args)


def report_small(res: Results, lines: list[str], out: dict, small_labels: tuple[str, ...]) -> bool:
    """The small-file rows: request rates against nginx's (aim: within 10 %), and the
    server's CPU per request."""
    rows = [(name, per) for name, per in res.downloads.items() if name.startswith(small_labels)]
    if not rows:
        return True
    all_ok = True
    lines.append("Small files (resolve of a regular git file and of an LFS file vs nginx, same bytes): requests/s")
    hdr = (f"{'case':<22} {'Trove req/s':>12} {'nginx req/s':>12} {'ratio':>6} {'min..max':>11} {'aim':>7}   "
           f"{'Trove CPU-us/req':>16} {'nginx CPU-us/req':>16}")
    lines.append(hdr)
    lines.append("-" * len(hdr))
    for name, per in rows:
        t = median([x.req_s for x in per["trove"]])
        n = median([x.req_s for x in per["nginx"]])
        pairs = [a.req_s / b.req_s for a, b in zip(per["trove"], per["nginx"])]
        ratio = median(pairs)
        ok = ratio >= AIM_DOWNLOAD_RATIO
        all_ok &= ok
        tc = median([x.cpu_seconds / x.requests * 1e6 for x in per["trove"] if x.requests])
        nc = median([x.cpu_seconds / x.requests * 1e6 for x in per["nginx"] if x.requests])
        lines.append(
            f"{name:<22} {t:12.0f} {n:12.0f} {ratio:6.2f} {min(pairs):5.2f}..{max(pairs):<5.2f} {verdict(ok):>7}   "
            f"{tc:16.0f} {nc:16.0f}"
        )
        out["downloads"][name] = {
            "trove_req_s": round(t, 1),
            "nginx_req_s": round(n, 1),
            "ratio": round(ratio, 3),
            "ratio_min": round(min(pairs), 3),
            "ratio_max": round(max(pairs), 3),
            "trove_cpu_us_per_req": round(tc),
            "nginx_cpu_us_per_req": round(nc),
            "trove_runs_req_s": [round(x.req_s) for x in per["trove"]],
            "nginx_runs_req_s": [round(x.req_s) for x in per["nginx"]],
        }
    lines.append(f"(aim: Trove's request rate >= {AIM_DOWNLOAD_RATIO} x nginx's; CPU per request in clock ticks, coarse)")
    lines.append("")
    return all_ok


def report_upload(res: Results, lines: list[str], out: dict) -> bool:
    all_ok = True
    up = res.uploads
    up_rate = median([u.size / MIB / u.put_seconds for u in up])
    up_cpu = median([u.server_cpu_seconds / (u.size / GIB) for u in up])
    up_written = median([u.server_write_bytes / u.size for u in up])
    verify_ms = median([u.verify_seconds * 1000 for u in up])
    sha = median([s["openssl"] for s in res.sha])
    sha_coreutils = median([s["sha256sum"] for s in res.sha])
    fsync = median(res.fsync)
    lines.append("Upload of 1 GiB through the LFS basic transfer (time to the 200 of the PUT: hashed, verified, fsynced)")
    lines.append(f"  upload rate                 {up_rate:8.0f} MiB/s")
    lines.append(f"  single-core SHA-256 rate    {sha:8.0f} MiB/s  (openssl, per CPU-second; coreutils sha256sum {sha_coreutils:.0f})")
    lines.append(f"  write+fsync rate (dd)       {fsync:8.0f} MiB/s")
    ok = up_rate >= AIM_UPLOAD_VS_SHA * sha
    lines.append(f"  upload / SHA-256            {up_rate / sha:8.2f}        aim >= {AIM_UPLOAD_VS_SHA}: {verdict(ok)}")
    lines.append(f"  upload / write+fsync        {up_rate / fsync:8.2f}")
    ok_cpu = up_cpu <= AIM_UPLOAD_CPU_PER_GIB
    lines.append(f"  server CPU-s per GiB        {up_cpu:8.2f}        aim <= {AIM_UPLOAD_CPU_PER_GIB}: {verdict(ok_cpu)}")
    ok_once = 0.98 <= up_written <= 1.02
    lines.append(f"  bytes written / object size {up_written:8.2f}        aim 1 (written once): {verdict(ok_once)}")
    lines.append(f"  verify call                 {verify_ms:8.1f} ms")
    all_ok &= ok and ok_cpu and ok_once
    out["upload"] = {
        "mib_s": round(up_rate, 1),
        "sha256_mib_s": round(sha, 1),
        "sha256sum_mib_s": round(sha_coreutils, 1),
        "write_fsync_mib_s": round(fsync, 1),
        "ratio_vs_sha256": round(up_rate / sha, 3),
        "ratio_vs_write_fsync": round(up_rate / fsync, 3),
        "server_cpu_s_per_gib": round(up_cpu, 3),
        "written_per_byte": round(up_written, 3),
        "runs_mib_s": [round(u.size / MIB / u.put_seconds) for u in up],
    }
    lines.append("")
    return all_ok


def report_memory(res: Results, lines: list[str], out: dict, all_ok: bool, args: argparse.Namespace) -> None:
    idle = res.idle_rss_kib / 1024
    lines.append(f"Server memory (idle RSS {idle:.1f} MiB, measured after start-up)")
    d_dl = res.rss_downloads_kib / 1024 - idle
    ok = d_dl <= AIM_RSS_DOWNLOADS_MIB
    all_ok &= ok
    lines.append(
        f"  peak under 64 downloads     {res.rss_downloads_kib / 1024:8.1f} MiB = idle + {d_dl:6.1f}   aim <= idle + {AIM_RSS_DOWNLOADS_MIB}: {verdict(ok)}"
        f"   (at rest just before: {res.rest_before_downloads_kib / 1024:.1f} MiB)"
    )
    out["rss"] = {"idle_mib": round(idle, 1), "downloads_64_peak_mib": round(res.rss_downloads_kib / 1024, 1),
                  "phases_peak_mib": {k: round(v / 1024, 1) for k, v in res.phase_rss_kib.items()}}
    lines.append("  peak RSS per phase (MiB, over the rounds): " + ", ".join(
        f"{k} {v / 1024:.0f}" for k, v in res.phase_rss_kib.items()))
    if res.big_upload:
        b = res.big_upload
        d_up = b.peak_rss_kib / 1024 - idle
        ok = d_up <= AIM_RSS_UPLOAD_MIB
        all_ok &= ok
        gib = b.size / GIB
        lines.append(
            f"  peak during {gib:.0f} GiB upload    {b.peak_rss_kib / 1024:8.1f} MiB = idle + {d_up:6.1f}   aim <= idle + {AIM_RSS_UPLOAD_MIB}: {verdict(ok)}"
            f"   (at rest just before: {res.rest_before_upload_kib / 1024:.1f} MiB)"
        )
        lines.append(
            f"  ({gib:.0f} GiB upload: {b.size / MIB / b.put_seconds:.0f} MiB/s, "
            f"{b.server_cpu_seconds / gib:.2f} CPU-s/GiB, {b.server_write_bytes / b.size:.2f} bytes written per byte)"
        )
        out["rss"]["upload_peak_mib"] = round(b.peak_rss_kib / 1024, 1)
        out["big_upload"] = {
            "gib": gib,
            "mib_s": round(b.size / MIB / b.put_seconds, 1),
            "server_cpu_s_per_gib": round(b.server_cpu_seconds / gib, 3),
            "written_per_byte": round(b.server_write_bytes / b.size, 3),
        }
    lines.append("")
    lines.append("All aims met." if all_ok else "Some aims are NOT MET (see above).")
    print("\n".join(lines))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"\nFigures also written to {args.json}")


def free_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("free-port")
    r = sub.add_parser("run")
    r.add_argument("--trove", required=True)
    r.add_argument("--trove-pid", type=int, required=True)
    r.add_argument("--token-file", required=True)
    r.add_argument("--nginx", required=True)
    r.add_argument("--nginx-pid", type=int, required=True)
    r.add_argument("--big", required=True)
    r.add_argument("--small", required=True)
    r.add_argument("--scratch", required=True)
    r.add_argument("--rounds", type=int, default=5)
    r.add_argument("--wrk-seconds", type=int, default=3)
    r.add_argument("--big-upload-gib", type=int, default=10)
    r.add_argument("--sizes", default="1g,10m,4k,64k",
                   help="download files measured, comma-separated: 1g, 10m, 4k, 64k (small files: request rates)")
    r.add_argument("--no-upload-rounds", action="store_true", help="skip the per-round 1 GiB upload")
    r.add_argument("--json")
    args = p.parse_args()
    if args.cmd == "free-port":
        free_port()
    else:
        if not 1 <= args.rounds <= 20 or not 1 <= args.wrk_seconds <= 60 or not 0 <= args.big_upload_gib <= 64:
            raise SystemExit("rounds must be 1..20, wrk seconds 1..60, big upload 0..64 GiB")
        run(args)


if __name__ == "__main__":
    main()
