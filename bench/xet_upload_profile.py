#!/usr/bin/env python3
"""Where a Xet upload's time goes on the server: one file uploaded with the default client
(`HfApi.upload_file`, hf_xet) to a fresh Trove, `--rounds` times (a new repo and new random
bytes each round), reporting the client's rate (timed inside the client around the one call,
and around the whole client process), Trove's CPU seconds per GiB (whole
process, and per thread name from /proc/PID/task), the machine's load, and the server's
stage logs summed over the upload (`xet.xorb_stored`: receive, validate, publish+record per
xorb; `xet.shard_registered`: the file rebuilt and hashed — the part not hashed ahead while
its xorbs arrived, `hashed_ahead_bytes` —, then recorded).

    .venv/bin/python bench/xet_upload_profile.py --trove target/release/trove [--gib 1] [--rounds 3] [--drop-caches]

A benchmark, not a test. The server binds 127.0.0.1, is stopped by PID, the work dir removed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from xet_bench import HUB_UPLOAD, MIB, Proc, free_port, wait_http  # noqa: E402


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name (summed over threads of that name)."""
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def fields(line: str) -> dict[str, str]:
    return {k: v.strip('"') for k, v in re.findall(r'(\w+)=("[^"]*"|\S+)', line)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trove", required=True)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bench-dir", default=os.environ.get("BENCH_DIR", "/var/tmp"))
    ap.add_argument("--drop-caches", action="store_true",
                    help="empty the page cache before each upload (root only): on a VM whose host backs "
                         "guest memory lazily, new page cache costs more than reused, so rounds differ "
                         "otherwise (docs/benchmarks.md)")
    args = ap.parse_args()
    if not 1 <= args.rounds <= 10 or not 0 < args.gib <= 8:
        raise SystemExit("--rounds 1..10, --gib up to 8")
    work = Path(tempfile.mkdtemp(prefix="trove-xet-upload.", dir=args.bench_dir))
    size = int(args.gib * (1 << 30))
    trove = None
    try:
        data = work / "data"
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TROVE_"))}
        env["NO_COLOR"] = "1"
        log = work / "trove.log"
        trove = Proc("trove", [args.trove, "serve", "--data-dir", str(data), "--listen", f"127.0.0.1:{port}"],
                     log, env)
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/healthz")
        token = (data / "admin-token").read_text().strip()
        rows = []
        for r in range(args.rounds):
            src = work / "file.bin"
            with open(src, "wb") as f:
                left = size
                while left:
                    n = min(left, 64 * MIB)
                    f.write(os.urandom(n))
                    left -= n
            import urllib.request
            name = f"xet-up-{r}"
            req = urllib.request.Request(url + "/api/repos/create", method="POST",
                                         data=json.dumps({"name": name, "type": "model"}).encode(),
                                         headers={"authorization": f"Bearer {token}",
                                                  "content-type": "application/json"})
            urllib.request.urlopen(req, timeout=30).close()
            if args.drop_caches:
                os.sync()
                Path("/proc/sys/vm/drop_caches").write_text("3\n")
                with open(src, "rb") as f:  # the client reads its file from memory, as before
                    while f.read(64 * MIB):
                        pass
            log_at = log.stat().st_size
            load = os.getloadavg()[0]
            cpu0, threads0 = trove.cpu_seconds(), thread_cpu(trove.p.pid)
            home = Path(tempfile.mkdtemp(prefix="hf-home.", dir=work))
            cenv = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TROVE_"))}
            cenv.update({"HF_HOME": str(home), "HF_ENDPOINT": url, "HF_TOKEN": token,
                         "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
            import resource
            import subprocess
            kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            p = subprocess.run([args.python, "-c", HUB_UPLOAD,
                                json.dumps({"file": str(src), "path": "f.bin", "repo": f"admin/{name}"})],
                               capture_output=True, text=True, env=cenv, timeout=1800, stdin=subprocess.DEVNULL)
            wall = time.perf_counter() - t
            if p.returncode != 0:
                raise SystemExit(f"client failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
            # The client's own time around the one `upload_file` call (as bench/xet.sh
            # reports it), without the interpreter's start and imports.
            marked = [line for line in p.stdout.splitlines() if line.startswith("@@RESULT@@")]
            call = json.loads(marked[-1][len("@@RESULT@@"):])["seconds"] if marked else wall
            cpu1, threads1 = trove.cpu_seconds(), thread_cpu(trove.p.pid)
            kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            client_cpu = (kids1.ru_utime - kids0.ru_utime) + (kids1.ru_stime - kids0.ru_stime)
            shutil.rmtree(home, ignore_errors=True)
            with open(log) as f:
                f.seek(log_at)
                lines = f.read().splitlines()
            stages: dict[str, int] = {}
            for line in lines:
                if "xet.xorb_stored" in line or "xet.shard_registered" in line:
                    for k, v in fields(line).items():
                        if k.endswith(("_ms", "_bytes")):
                            stages[k] = stages.get(k, 0) + int(v)
            gib = size / (1 << 30)
            per_thread = {k: round((threads1.get(k, 0) - threads0.get(k, 0)) / gib, 2) for k in threads1}
            per_thread = {k: v for k, v in sorted(per_thread.items(), key=lambda kv: -kv[1]) if v > 0}
            row = {"round": r + 1, "load_before": round(load, 2), "mib_s": round(size / MIB / call, 1),
                   "process_mib_s": round(size / MIB / wall, 1),
                   "server_cpu_s_per_gib": round((cpu1 - cpu0) / gib, 2),
                   "client_cpu_s_per_gib": round(client_cpu / gib, 2), "threads_cpu_s_per_gib": per_thread,
                   "stages_ms": stages}
            print(json.dumps(row), flush=True)
            rows.append(row)
            src.unlink()
        print(f"median over {args.rounds}: {statistics.median(r['mib_s'] for r in rows):.1f} MiB/s, "
              f"server {statistics.median(r['server_cpu_s_per_gib'] for r in rows):.2f} CPU-s/GiB")
    finally:
        if trove is not None:
            trove.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
