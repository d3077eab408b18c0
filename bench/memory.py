#!/usr/bin/env python3
"""The memory aims of issue #17, measured on one binary, in the embedded (local) mode and in
S3 mode: peak RSS over idle during a large upload through the LFS basic transfer and through
the real Xet client (huggingface_hub + hf_xet `upload_file`), and under concurrent downloads
mixing LFS files (`/resolve/` GETs) and Xet files (hf_xet: reconstruction + `/xet/fetch`).

Run through bench/memory.sh. A benchmark, not a test: it prints figures against the aims and
fails only when something does not run. Every phase starts a fresh server on a fresh data dir
(removed at the end of the phase), so at most one large stored copy is on disk at a time.

Peak RSS: VmHWM after a reset through /proc/PID/clear_refs, and VmRSS polled every 20 ms
(`core_helper.RssPeak`). *Idle* is the server's VmRSS 10 s after its first /healthz answer,
before any transfer.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from core_helper import Body, RssPeak, Trove, cpu_seconds, status_kib  # noqa: E402

MIB = 1 << 20
GIB = 1 << 30

XET_UPLOAD = """
import sys
from huggingface_hub import HfApi
url, token, repo, path, name = sys.argv[1:6]
HfApi(endpoint=url, token=token).upload_file(path_or_fileobj=path, path_in_repo=name, repo_id=repo)
"""

XET_DOWNLOAD = """
import sys
from huggingface_hub import hf_hub_download
url, repo, name, out = sys.argv[1:5]
hf_hub_download(repo_id=repo, filename=name, local_dir=out, endpoint=url)
"""


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def disk_free_gb(path: str = "/") -> float:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize / 1e9


def stop(p: subprocess.Popen, sig: int = signal.SIGTERM, wait: float = 30) -> None:
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(wait)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def random_file(path: Path, size: int) -> str:
    """Writes `size` random bytes to `path`; answers their SHA-256."""
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 16 * MIB))
            h.update(block)
            f.write(block)
            left -= len(block)
    return h.hexdigest()


class S3:
    """A private s3s-fs on 127.0.0.1, its data under `root`."""

    def __init__(self, bin_path: str, root: Path):
        self.root = root
        (root / "bench").mkdir(parents=True)
        self.port = free_port()
        self.key = "bench-" + os.urandom(6).hex()
        self.secret = os.urandom(24).hex()
        self.log = open(root.parent / "s3s-fs.log", "w")
        self.p = subprocess.Popen(
            [bin_path, "--host", "127.0.0.1", "--port", str(self.port), "--access-key", self.key,
             "--secret-key", self.secret, str(root)],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("s3s-fs did not start")

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "TROVE_STORAGE": f"s3://bench/trove?endpoint=http://127.0.0.1:{self.port}&region=us-east-1",
        }

    def close(self) -> None:
        stop(self.p)
        self.log.close()


class Server:
    """`trove serve` on a fresh data dir (in S3 mode with a fresh bucket), both removed on close."""

    def __init__(self, args: argparse.Namespace, mode: str, name: str):
        self.dir = Path(args.work) / name
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        env = dict(os.environ)
        env.pop("TROVE_STORAGE", None)
        self.s3 = None
        if mode == "s3":
            self.s3 = S3(args.s3s_fs, self.dir / "s3")
            env.update(self.s3.env())
            if args.s3_memory_mib is not None:
                (self.dir / "data").mkdir()
                (self.dir / "data" / "trove.toml").write_text(
                    f"[storage]\ns3_memory_mib = {args.s3_memory_mib}\n")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.dir / "trove.log"
        self.log = open(self.log_path, "w")
        self.p = subprocess.Popen(
            [args.trove, "serve", "--data-dir", str(self.dir / "data"), "--listen", f"127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2):
                    break
            except Exception:  # noqa: BLE001 - not up yet
                if self.p.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"trove did not start: {self.log_path.read_text()[-2000:]}")
                time.sleep(0.05)
        self.rss_at_health = self.rss_mib()
        time.sleep(10)
        self.idle = self.rss_mib()
        self.token = (self.dir / "data" / "admin-token").read_text().strip()
        self.trove = Trove(self.url, self.token, self.p.pid)

    def rss_mib(self, key: str = "VmRSS") -> float:
        return status_kib(self.p.pid, key) / 1024

    def log_count(self, event: str) -> int:
        return self.log_path.read_text(errors="replace").count(event)

    def close(self) -> None:
        stop(self.p)
        self.log.close()
        if self.s3:
            self.s3.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def hf_env(args: argparse.Namespace, server: Server, scratch: Path) -> dict[str, str]:
    env = dict(os.environ)
    for k in ("HF_TOKEN", "HF_HOME", "HF_HUB_DISABLE_XET"):
        env.pop(k, None)
    env.update({
        "HF_ENDPOINT": server.url,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_CACHE": str(scratch / "hf-cache"),
        "HF_XET_CACHE": str(scratch / "xet-cache"),
        "HF_XET_CHUNK_CACHE_SIZE_BYTES": "0",
    })
    return env


def xet_upload(args, server: Server, repo: str, path: Path, name: str, scratch: Path) -> None:
    before = server.log_count("xet.shard_registered")
    subprocess.run([args.python, "-c", XET_UPLOAD, server.url, server.token, repo, str(path), name],
                   env=hf_env(args, server, scratch), check=True, timeout=3600,
                   stdout=subprocess.DEVNULL)
    if server.log_count("xet.shard_registered") == before:
        raise SystemExit("the Xet upload did not go through Xet (no xet.shard_registered logged)")


def phase_idle(args, mode: str) -> dict:
    s = Server(args, mode, f"{mode}-idle")
    try:
        time.sleep(50)
        return {"health": s.rss_at_health, "10s": s.idle, "60s": s.rss_mib(),
                "hwm": s.rss_mib("VmHWM"), "load": loadavg()}
    finally:
        s.close()


def phase_upload(args, mode: str, via: str, src: Path, oid: str) -> dict:
    # Other programs share the disk: checked again before each stored copy.
    if disk_free_gb() - src.stat().st_size / 1e9 < args.min_free_gb:
        raise SystemExit(f"{disk_free_gb():.1f} GB free on /: the upload would leave under "
                         f"{args.min_free_gb} GB; choose a smaller --gib")
    log(f"{mode}: {via} upload of {src.stat().st_size / GIB:.1f} GiB (disk free {disk_free_gb():.1f} GB)")
    s = Server(args, mode, f"{mode}-{via}")
    try:
        repo = s.trove.create_repo(f"up-{via}")
        t0, cpu0 = time.monotonic(), cpu_seconds(s.p.pid)
        if via == "lfs":
            up = s.trove.lfs_upload(repo, Body([(src, 0, src.stat().st_size)]), oid, watch_rss=True)
            peak = up.peak_rss_kib / 1024
        else:
            scratch = s.dir / "client"
            with RssPeak(s.p.pid) as rss:
                xet_upload(args, s, repo, src, "big.bin", scratch)
            peak = rss.peak_kib / 1024
        secs = time.monotonic() - t0
        cpu = cpu_seconds(s.p.pid) - cpu0
        time.sleep(2)
        after = s.rss_mib()
        return {"idle": s.idle, "peak": peak, "over": peak - s.idle, "after": after,
                "seconds": secs, "cpu_s_per_gib": cpu / args.gib, "load": loadavg()}
    finally:
        s.close()


def phase_downloads(args, mode: str, scratch: Path) -> dict:
    """A fresh server holding one LFS file and one Xet file; rounds of `lfs_conns` curl
    /resolve/ GETs of the first and `xet_procs` hf_xet downloads of the second at once."""
    log(f"{mode}: downloads (disk free {disk_free_gb():.1f} GB)")
    s = Server(args, mode, f"{mode}-dl")
    src = scratch / "dl-src.bin"
    try:
        repo = s.trove.create_repo("dl")
        size = int(args.dl_mib * MIB)
        oid = random_file(src, size)
        up = s.trove.lfs_upload(repo, Body([(src, 0, size)]), oid)
        s.trove.commit_lfs(repo, {"lfs.bin": (up.oid, size)})
        random_file(src, size)
        xet_upload(args, s, repo, src, "xet.bin", scratch / "up")
        src.unlink()
        loaded = s.rss_mib()
        rounds = []
        for r in range(args.rounds):
            outs = [scratch / f"dl-{r}-{i}" for i in range(args.xet_procs)]
            env = hf_env(args, s, scratch / f"dl-{r}")
            procs = []
            cpu0 = cpu_seconds(s.p.pid)
            with RssPeak(s.p.pid) as rss:
                t0 = time.monotonic()
                for _ in range(args.lfs_conns):
                    procs.append(subprocess.Popen(
                        ["curl", "-sS", "-L", "-o", "/dev/null", "--max-time", str(args.seconds),
                         f"{s.url}/{repo}/resolve/main/lfs.bin"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                for out in outs:
                    procs.append(subprocess.Popen(
                        [args.python, "-c", XET_DOWNLOAD, s.url, repo, "xet.bin", str(out)],
                        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                deadline = t0 + args.seconds + 30
                for p in procs:
                    try:
                        p.wait(max(0.1, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        stop(p, signal.SIGTERM, 5)
                secs = time.monotonic() - t0
            done_xet = sum(1 for o in outs if (o / "xet.bin").exists())
            for o in outs:
                shutil.rmtree(o, ignore_errors=True)
            shutil.rmtree(scratch / f"dl-{r}", ignore_errors=True)
            peak = rss.peak_kib / 1024
            rounds.append({"peak": peak, "over": peak - s.idle, "seconds": secs,
                           "cpu_s": cpu_seconds(s.p.pid) - cpu0,
                           "xet_done": done_xet, "after": s.rss_mib(), "load": loadavg()})
            log(f"  round {r + 1}: peak {peak:.1f} MiB (idle {s.idle:.1f}), {done_xet}/{args.xet_procs} Xet downloads whole")
            time.sleep(2)
        return {"idle": s.idle, "loaded": loaded, "rounds": rounds}
    finally:
        src.unlink(missing_ok=True)
        s.close()


def mmm(xs: list[float]) -> str:
    return f"{min(xs):.1f} / {statistics.median(xs):.1f} / {max(xs):.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trove", required=True)
    ap.add_argument("--python", required=True)
    ap.add_argument("--s3s-fs", default="")
    ap.add_argument("--modes", default="local,s3")
    ap.add_argument("--phases", default="idle,lfs,xet,dl")
    ap.add_argument("--gib", type=float, default=10, help="size of the uploads watched")
    ap.add_argument("--dl-mib", type=float, default=512, help="size of each downloaded file")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--lfs-conns", type=int, default=48)
    ap.add_argument("--xet-procs", type=int, default=16)
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--s3-memory-mib", type=int, default=None,
                    help="[storage] s3_memory_mib of the S3-mode servers (default: the binary's)")
    ap.add_argument("--work", required=True, help="data dirs (on the disk under test)")
    ap.add_argument("--src", required=True, help="source files (tmpfs: /dev/shm)")
    ap.add_argument("--min-free-gb", type=float, default=8)
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    modes = args.modes.split(",")
    phases = args.phases.split(",")
    src_dir = Path(args.src)
    src_dir.mkdir(parents=True, exist_ok=True)
    results: dict = {"binary": args.trove, "load_start": loadavg()}
    big = src_dir / "big.bin"
    try:
        for mode in modes:
            if "idle" in phases:
                log(f"{mode}: idle")
                results[f"{mode}.idle"] = phase_idle(args, mode)
        if "lfs" in phases or "xet" in phases:
            size = int(args.gib * GIB)
            # The stored copy and what the file system needs around it.
            if disk_free_gb() - size / 1e9 < args.min_free_gb:
                raise SystemExit(f"{disk_free_gb():.1f} GB free on /: a {args.gib} GiB upload would leave "
                                 f"under {args.min_free_gb} GB; choose a smaller --gib")
            log(f"source: {args.gib} GiB of random bytes in {big}")
            oid = random_file(big, size)
            for mode in modes:
                for via in ("lfs", "xet"):
                    if via in phases:
                        results[f"{mode}.{via}"] = phase_upload(args, mode, via, big, oid)
                        log(f"  {results[f'{mode}.{via}']}")
            big.unlink()
        if "dl" in phases:
            for mode in modes:
                results[f"{mode}.dl"] = phase_downloads(args, mode, src_dir)
    finally:
        big.unlink(missing_ok=True)
    results["load_end"] = loadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))

    print(f"\nbench/memory.py: {args.trove}; load {results['load_start']} -> {results['load_end']}")
    print("| mode | phase | idle MiB | peak MiB | over idle MiB (min / median / max) | aim | after MiB | load |")
    print("|---|---|---|---|---|---|---|---|")
    for mode in modes:
        i = results.get(f"{mode}.idle")
        if i:
            print(f"| {mode} | idle at /healthz, 10 s, 60 s | {i['health']:.1f} / {i['10s']:.1f} / {i['60s']:.1f} | "
                  f"{i['hwm']:.1f} | | < 40 | | {i['load']} |")
        for via, label in (("lfs", "LFS basic upload"), ("xet", "Xet upload (hf_xet)")):
            u = results.get(f"{mode}.{via}")
            if u:
                ok = "✅" if u["over"] <= 64 else "❌"
                print(f"| {mode} | {label} {args.gib:g} GiB, {u['seconds']:.0f} s, {u['cpu_s_per_gib']:.2f} CPU-s/GiB | "
                      f"{u['idle']:.1f} | {u['peak']:.1f} | "
                      f"{u['over']:.1f} | ≤ 64 {ok} | {u['after']:.1f} | {u['load']} |")
        d = results.get(f"{mode}.dl")
        if d:
            overs = [r["over"] for r in d["rounds"]]
            ok = "✅" if max(overs) <= 128 else "❌"
            cpu = statistics.median(r["cpu_s"] for r in d["rounds"])
            print(f"| {mode} | {args.lfs_conns} LFS + {args.xet_procs} hf_xet downloads, {len(overs)} rounds, "
                  f"server CPU {cpu:.0f} s/round | "
                  f"{d['idle']:.1f} (loaded {d['loaded']:.1f}) | {mmm([r['peak'] for r in d['rounds']])} | "
                  f"{mmm(overs)} | ≤ 128 {ok} | {d['rounds'][-1]['after']:.1f} | {d['rounds'][-1]['load']} |")


if __name__ == "__main__":
    main()
