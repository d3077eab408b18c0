#!/usr/bin/env python3
"""The LFS basic transfer of new bytes, side by side for one or more trove binaries: each round
starts every binary in turn (the order alternating between rounds) on a fresh data dir and
PUTs the same file of random bytes through batch -> PUT -> verify, so every chunk is new and
is packed, written with O_DIRECT and fsynced (bench/core.sh's per-round uploads are dedup hits
of its benchmark file). Per upload: MiB/s to the PUT's 200, the server's CPU-s/GiB (whole
process and per thread name), bytes written per byte, the SHA-256 rate of `openssl dgst`
per CPU-second taken in the same round, and the machine's load average.

    python3 bench/lfs_upload_fresh.py --trove A=/tmp/base-trove --trove B=target/release/trove \
        [--gib 1] [--rounds 4]

A benchmark, not a test. Servers bind 127.0.0.1 and are stopped by PID; the work dir (the file
and one data dir at a time) is removed on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from core_helper import MIB, Body, Trove, hash_segments, sha256_rate  # noqa: E402
from xet_bench import Proc, free_port, wait_http  # noqa: E402
from xet_upload_profile import thread_cpu  # noqa: E402


def one_upload(binary: str, work: Path, src: Path, oid: str, size: int) -> dict:
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TROVE_"))}
    env["NO_COLOR"] = "1"
    proc = Proc("trove", [binary, "serve", "--data-dir", str(data), "--listen", f"127.0.0.1:{port}"],
                work / "trove.log", env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/healthz")
        token = (data / "admin-token").read_text().strip()
        trove = Trove(url, token, proc.p.pid)
        repo = trove.create_repo(f"fresh-{uuid.uuid4().hex[:8]}")
        load = os.getloadavg()[0]
        threads0 = thread_cpu(proc.p.pid)
        up = trove.lfs_upload(repo, Body([(src, 0, size)]), oid)
        threads1 = thread_cpu(proc.p.pid)
    finally:
        proc.stop()
        shutil.rmtree(data, ignore_errors=True)
    gib = size / (1 << 30)
    per_thread = {k: round((threads1.get(k, 0) - threads0.get(k, 0)) / gib, 2) for k in threads1}
    return {
        "load": round(load, 2),
        "mib_s": round(size / MIB / up.put_seconds, 1),
        "cpu_s_per_gib": round(up.server_cpu_seconds / gib, 2),
        "written_per_byte": round(up.server_write_bytes / size, 2),
        "threads": {k: v for k, v in sorted(per_thread.items(), key=lambda kv: -kv[1]) if v >= 0.02},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trove", action="append", required=True, help="NAME=PATH, once per binary")
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--bench-dir", default=os.environ.get("BENCH_DIR", "/var/tmp"))
    args = ap.parse_args()
    if not 1 <= args.rounds <= 10 or not 0 < args.gib <= 4:
        raise SystemExit("--rounds 1..10, --gib up to 4")
    bins = [tuple(t.split("=", 1)) for t in args.trove]
    if any(len(b) != 2 for b in bins):
        raise SystemExit("--trove NAME=PATH")
    size = int(args.gib * (1 << 30))
    work = Path(tempfile.mkdtemp(prefix="trove-lfs-fresh.", dir=args.bench_dir))
    try:
        src = work / "file.bin"
        with open(src, "wb") as f:
            left = size
            while left:
                n = min(left, 64 * MIB)
                f.write(os.urandom(n))
                left -= n
        os.sync()
        oid = hash_segments([(src, 0, size)]).hexdigest()
        rows: dict[str, list[dict]] = {name: [] for name, _ in bins}
        for r in range(args.rounds):
            order = bins if r % 2 == 0 else list(reversed(bins))
            sha = sha256_rate(src, size)["openssl"]
            for name, path in order:
                row = one_upload(path, work, src, oid, size)
                row.update(round=r + 1, binary=name, sha256_mib_per_cpu_s=round(sha, 1),
                           ratio_to_sha256=round(row["mib_s"] / sha, 3))
                print(json.dumps(row), flush=True)
                rows[name].append(row)
        for name, rs in rows.items():
            def span(key: str) -> str:
                xs = sorted(x[key] for x in rs)
                return f"{statistics.median(xs)} ({xs[0]}..{xs[-1]})"
            print(f"{name}: MiB/s {span('mib_s')}, / SHA-256 {span('ratio_to_sha256')}, "
                  f"CPU-s/GiB {span('cpu_s_per_gib')}, load {span('load')}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
