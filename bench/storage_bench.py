#!/usr/bin/env python3
"""The storage acceptance benchmark of issue #13 (`../shared/xet.md` §5.7): how many bytes the
chunk store keeps for versioned model checkpoints and growing Parquet data uploaded through
the real `huggingface_hub` client, and how fast the server chunks and hashes an LFS upload.

Run through bench/storage.sh. A benchmark, not a test: it prints figures and marks the aims
met or missed; it fails only when something does not run.

Data set (numpy, fixed seeds): safetensors checkpoints of fp16 and bf16 tensors (an embedding,
`--layers` × {q, k, v, o, up, down, two norms}, an lm_head; weights N(0, 0.02)). Each later
version copies the previous one and replaces a fraction of its tensors by
`tensor + 1e-3·N(0, 1)` (every element changes): 5%, 10%, 25%, 50%, then one version inserts a
small tensor (the header and every data offset shift). A second fp16 series changes 10% per
checkpoint (the cold-cache aim). Parquet: one file that gains a row group per version.

Cases, each series in a fresh Trove data dir (so every figure is that series' alone):
  warm   one client cache (HF_HOME / HF_XET_CACHE) for every upload of the series
  cold   a fresh client cache per upload (dedup only through the global-dedup endpoint)
  lfs>xet   the base through LFS (HF_HUB_DISABLE_XET=1), a variant with tensors making up 10%
            of its bytes changed through Xet, cold
  xet>lfs   the base through Xet, that variant through LFS

Stored bytes come from `trove storage stats --json` with the server stopped (it is restarted
on the same data dir when the series goes on). Ideal = base file + the bytes each later
version changed. Every server binds 127.0.0.1 and is stopped by PID; the work dir is removed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MIB = 1 << 20
CHUNK_MAX = 128 * 1024  # the chunker's largest chunk: the allowance per edit boundary


# -- data set -------------------------------------------------------------------------------

@dataclass
class Version:
    path: Path
    size: int
    changed: int  # bytes that differ from the previous version (the whole file for the base)
    boundaries: int  # edit boundaries against the previous version (0 for the base)
    note: str


def tensor_shapes(layers: int, d: int, ffn: int, vocab: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {"embed.weight": (vocab, d), "lm_head.weight": (vocab, d)}
    for i in range(layers):
        p = f"layers.{i:02d}."
        for n in ("q", "k", "v", "o"):
            shapes[p + f"attn.{n}.weight"] = (d, d)
        shapes[p + "mlp.up.weight"] = (d, ffn)
        shapes[p + "mlp.down.weight"] = (ffn, d)
        shapes[p + "norm1.weight"] = (d,)
        shapes[p + "norm2.weight"] = (d,)
    return shapes


def to_raw(x: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "F16":
        return x.astype(np.float16)
    # bf16: the top half of each float32 (numpy has no bf16).
    return (x.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], dtype: str) -> dict[str, tuple[int, int]]:
    """Writes the safetensors layout (8-byte header length, JSON header padded with spaces to
    8 bytes, tensors back to back in name order); returns each tensor's [start, end) in the file."""
    header, offset = {}, 0
    names = sorted(tensors)
    for name in names:
        raw = tensors[name]
        header[name] = {"dtype": dtype, "shape": list(raw.shape), "data_offsets": [offset, offset + raw.nbytes]}
        offset += raw.nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    base = 8 + len(blob)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name in names:
            f.write(np.ascontiguousarray(tensors[name]).tobytes())
    return {n: (base + h["data_offsets"][0], base + h["data_offsets"][1]) for n, h in header.items()}


def boundaries_of(ranges: list[tuple[int, int]]) -> int:
    """Edit boundaries of a set of changed byte ranges: two per run of adjacent ranges."""
    runs, end = 0, None
    for s, e in sorted(ranges):
        if end is None or s > end:
            runs += 1
        end = e if end is None else max(end, e)
    return 2 * runs


def checkpoint_series(out: Path, name: str, dtype: str, seed: int, schedule: list, dims: dict) -> list[Version]:
    """Writes the series' files; each step is a fraction of tensors to perturb or "insert"."""
    rng = np.random.default_rng(seed)
    shapes = tensor_shapes(**dims)
    master = {n: rng.normal(0, 0.02, size=s).astype(np.float32) for n, s in shapes.items()}
    raw = {n: to_raw(x, dtype) for n, x in master.items()}
    path = out / f"{name}-0.safetensors"
    write_safetensors(path, raw, dtype)
    size = path.stat().st_size
    versions = [Version(path, size, size, 0, "base")]
    for k, step in enumerate(schedule, start=1):
        path = out / f"{name}-{k}.safetensors"
        if step == "insert":
            new = f"layers.{dims['layers'] // 2:02d}.attn.extra_bias"
            master[new] = rng.normal(0, 0.02, size=(4096,)).astype(np.float32)
            raw[new] = to_raw(master[new], dtype)
            offsets = write_safetensors(path, raw, dtype)
            s, e = offsets[new]
            header_end = min(offsets.values())[0]
            changed = header_end + (e - s)
            # The header changed (start of file) and the tensor went in: two edits.
            boundaries = 1 + 2
            note = f"insert a {raw[new].nbytes} B tensor"
        else:
            names = sorted(master)
            if isinstance(step, tuple):  # ("bytes", f): tensors in random order until f of the bytes
                order, total, picked, got = rng.permutation(len(names)), sum(r.nbytes for r in raw.values()), [], 0
                for i in order:
                    if got >= step[1] * total:
                        break
                    picked.append(int(i))
                    got += raw[names[i]].nbytes
                picked.sort()
                count, step = len(picked), got / total
            else:
                count = max(1, round(step * len(names)))
                picked = sorted(rng.choice(len(names), size=count, replace=False))
            for i in picked:
                n = names[i]
                master[n] = master[n] + 1e-3 * rng.standard_normal(master[n].shape).astype(np.float32)
                raw[n] = to_raw(master[n], dtype)
            offsets = write_safetensors(path, raw, dtype)
            ranges = [offsets[names[i]] for i in picked]
            changed = sum(e - s for s, e in ranges)
            boundaries = boundaries_of(ranges)
            note = f"{count}/{len(names)} tensors ({step:.0%}) changed, {changed / 2**20:.1f} MiB"
        note += f", first change at byte {first_difference(versions[-1].path, path):,}"
        versions.append(Version(path, path.stat().st_size, changed, boundaries, note))
    return versions


def first_difference(a: Path, b: Path) -> int:
    """Where two files first differ: a change inside the first chunk (the header, the first
    tensor) makes a cold client's first global-dedup query miss."""
    x, y = a.read_bytes(), b.read_bytes()
    n = min(len(x), len(y))
    differ = np.flatnonzero(np.frombuffer(x, np.uint8, n) != np.frombuffer(y, np.uint8, n))
    return int(differ[0]) if differ.size else n


def parquet_series(out: Path, versions: int, rows_per_group: int, base_groups: int) -> list[Version] | None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None

    made: dict = {}

    def group(i: int):
        if i not in made:
            rng = np.random.default_rng(1000 + i)
            ids = np.arange(i * rows_per_group, (i + 1) * rows_per_group, dtype=np.int64)
            hexes = rng.bytes(12 * rows_per_group).hex()
            text = [hexes[24 * j:24 * j + 24] for j in range(rows_per_group)]
            made[i] = pa.table({"id": ids, "score": rng.standard_normal(rows_per_group).astype(np.float32),
                                "text": text})
        return made[i]

    result: list[Version] = []
    for k in range(versions):
        path = out / f"data-{k}.parquet"
        with pq.ParquetWriter(path, group(0).schema) as w:
            for i in range(base_groups + k):
                w.write_table(group(i), row_group_size=rows_per_group)
        size = path.stat().st_size
        if not result:
            result.append(Version(path, size, size, 0, "base"))
        else:
            common = first_difference(result[-1].path, path)
            result.append(Version(path, size, size - common, 1,
                                  f"one row group appended ({size - common:,} B after the common prefix)"))
    return result


# -- servers and clients --------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TROVE_"))}


class Trove:
    """One data dir; the server is started and stopped (by PID) around stats reads."""

    def __init__(self, binary: str, data: Path, log: Path):
        self.binary, self.data, self.log_path = binary, data, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = clean_env()
        env["NO_COLOR"] = "1"
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen([self.binary, "serve", "--data-dir", str(self.data),
                                      "--listen", f"127.0.0.1:{self.port}"],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"trove exited ({self.proc.returncode}); see {self.log_path}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2):
                    break
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.1)
        else:
            raise RuntimeError("trove did not answer /healthz within 60 s")
        self.token = (self.data / "admin-token").read_text().strip()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc is not None:
            self.log.close()
        self.proc = None

    def stats(self) -> dict:
        """`trove storage stats --json`, the server stopped meanwhile and started again."""
        running = self.proc is not None
        self.stop()
        out = subprocess.run([self.binary, "storage", "stats", "--json", "--data-dir", str(self.data)],
                             capture_output=True, text=True, env=clean_env(), timeout=300, check=True)
        if running:
            self.start()
        return json.loads(out.stdout)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


UPLOAD = textwrap.dedent("""
    import json, sys, time
    from huggingface_hub import HfApi
    a = json.loads(sys.argv[1])
    api = HfApi()
    if a.get("create"):
        api.create_repo(a["repo"], repo_type=a["type"], exist_ok=True)
    t = time.perf_counter()
    api.upload_file(path_or_fileobj=a["file"], path_in_repo=a["path"], repo_id=a["repo"],
                    repo_type=a["type"], commit_message=a["message"])
    print("@@SECONDS@@", time.perf_counter() - t, flush=True)
""")


class Client:
    """Runs the real client in a subprocess, with a cache dir kept (warm) or fresh per upload."""

    def __init__(self, python: str, work: Path, trove: Trove, warm: bool):
        self.python, self.work, self.trove, self.warm = python, work, trove, warm
        self.home = Path(tempfile.mkdtemp(prefix="hf-home.", dir=work))

    def upload(self, v: Version, repo: str, repo_type: str, path_in_repo: str, xet: bool, create: bool) -> float:
        home = self.home if self.warm else Path(tempfile.mkdtemp(prefix="hf-home.", dir=self.work))
        env = clean_env()
        env.update({"HF_ENDPOINT": self.trove.url, "HF_TOKEN": self.trove.token, "HF_HOME": str(home),
                    "HF_XET_CACHE": str(home / "xet"), "HF_HUB_DISABLE_TELEMETRY": "1",
                    "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1"})
        if not xet:
            env["HF_HUB_DISABLE_XET"] = "1"
        args = {"file": str(v.path), "path": path_in_repo, "repo": repo, "type": repo_type,
                "message": v.note, "create": create}
        p = subprocess.run([self.python, "-c", UPLOAD, json.dumps(args)], capture_output=True, text=True,
                           env=env, timeout=900, stdin=subprocess.DEVNULL)
        if not self.warm:
            shutil.rmtree(home, ignore_errors=True)
        for line in p.stdout.splitlines():
            if line.startswith("@@SECONDS@@"):
                return float(line.split()[1])
        raise RuntimeError(f"upload failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")


# -- the run --------------------------------------------------------------------------------

@dataclass
class Outcome:
    case: str
    series: str
    logical: int
    stored: int
    ideal: int
    base_stored: int
    growth: int
    changed_after_base: int
    boundaries_after_base: int
    seconds: float
    lfs_uploads: int  # LFS objects the server received (the rest came through Xet)
    aims: list = field(default_factory=list)  # (name, value text, met)


def run_series(args, work: Path, case: str, series: str, versions: list[Version], repo_type: str,
               warm: bool, xet_for: callable) -> Outcome:
    data = work / f"data-{case}-{series}"
    trove = Trove(args.trove, data, work / f"trove-{case}-{series}.log")
    trove.start()
    client = Client(args.python, work, trove, warm)
    try:
        repo = f"admin/{series}"
        target = "model.safetensors" if repo_type == "model" else "data/train.parquet"
        t = time.perf_counter()
        client.upload(versions[0], repo, repo_type, target, xet_for(0), create=True)
        base_stored = trove.stats()["stored_bytes"]
        for k, v in enumerate(versions[1:], start=1):
            client.upload(v, repo, repo_type, target, xet_for(k), create=False)
        seconds = time.perf_counter() - t
        trove.stop()
        s = trove.stats()
    finally:
        trove.stop()
        shutil.rmtree(client.home, ignore_errors=True)
    changed = sum(v.changed for v in versions[1:])
    ideal = versions[0].size + changed
    o = Outcome(case, series, s["logical_bytes"], s["stored_bytes"], ideal, base_stored,
                s["stored_bytes"] - base_stored, changed, sum(v.boundaries for v in versions[1:]), seconds,
                trove.log_path.read_text().count("lfs object uploaded"))
    shutil.rmtree(data, ignore_errors=True)
    return o


def lfs_put(trove: Trove, repo: str, src: Path, oid: str, size: int) -> float | None:
    """One basic-transfer LFS upload of `src` into `repo`, timed from the PUT's first byte to
    its answer; None when the batch answer asks for no upload."""
    hdr = {"authorization": f"Bearer {trove.token}", "content-type": "application/json"}
    req = urllib.request.Request(trove.url + "/api/repos/create", method="POST", headers=hdr,
                                 data=json.dumps({"name": repo, "organization": "admin",
                                                  "type": "model"}).encode())
    urllib.request.urlopen(req, timeout=30).close()
    req = urllib.request.Request(
        f"{trove.url}/admin/{repo}.git/info/lfs/objects/batch", method="POST",
        headers={**hdr, "accept": "application/vnd.git-lfs+json", "content-type": "application/vnd.git-lfs+json"},
        data=json.dumps({"operation": "upload", "transfers": ["basic"],
                         "objects": [{"oid": oid, "size": size}]}).encode())
    with urllib.request.urlopen(req, timeout=30) as r:
        action = json.loads(r.read())["objects"][0].get("actions", {}).get("upload")
    if action is None:
        return None
    with open(src, "rb") as f:
        put = urllib.request.Request(action["href"], method="PUT", data=f,
                                     headers={**action.get("header", {}), "content-length": str(size),
                                              "content-type": "application/octet-stream"})
        t = time.perf_counter()
        urllib.request.urlopen(put, timeout=900).close()
        return time.perf_counter() - t


def ingest_inputs(work: Path, mib: int) -> list[tuple[str, Path]]:
    """The two inputs the ingest rate is measured on: random bytes (stored raw) and an fp16
    safetensors checkpoint of N(0, 0.02) tensors (byte-grouped + LZ4), `mib` MiB each."""
    rnd = work / "ingest-random.bin"
    with open(rnd, "wb") as f:
        for _ in range(mib // 16):
            f.write(os.urandom(16 * MIB))
    fp16 = work / "ingest-fp16.safetensors"
    rng = np.random.default_rng(5)
    per = 4 * MIB // 2  # 4 MiB tensors of 2-byte values
    tensors = {f"layers.{i:03d}.weight": to_raw(rng.normal(0, 0.02, per), "F16").reshape(1024, -1)
               for i in range(mib // 4)}
    write_safetensors(fp16, tensors, "F16")
    return [("random", rnd), ("fp16", fp16)]


def ingested_line(log: Path, oid: str) -> dict:
    """The fields of the server's `storage.lfs_ingested` line for `oid`."""
    for line in reversed(log.read_text().splitlines()):
        if "storage.lfs_ingested" in line and oid in line:
            return {k: v.strip('"') for k, v in re.findall(r'(\w+)=("[^"]*"|\S+)', line)}
    raise RuntimeError(f"no storage.lfs_ingested line for {oid} in {log}")


def ingest_rate(args, work: Path) -> list[dict]:
    """The server's LFS ingestion against the raw chunker + BLAKE3 rate over the same bytes.

    For each input, one basic PUT into a fresh data dir, timed from its first byte to its
    answer, which comes once the file is ingested: (a) the end-to-end rate. The server logs
    each stage's time (`storage.lfs_ingested`); (b) the chunking stage's rate is the size over
    the time that stage spent cutting and hashing (gear chunker + keyed BLAKE3, on its own
    thread while the body arrives). The raw rate is the `chunk_rate` example over the same
    bytes in memory, best of 3, in the same run; `ingest_stages` times each in-memory stage
    alone (SHA-256, gear, BLAKE3, packing) for the profile."""
    import hashlib
    out = []
    for kind, src in ingest_inputs(work, args.ingest_mib):
        size = src.stat().st_size
        h = hashlib.sha256()
        with open(src, "rb") as f:
            while b := f.read(16 * MIB):
                h.update(b)
        oid = h.hexdigest()
        trove = Trove(args.trove, work / f"data-ingest-{kind}", work / f"trove-ingest-{kind}.log")
        trove.start()
        try:
            load = os.getloadavg()[0]
            cpu0 = trove.cpu_seconds()
            put = lfs_put(trove, "ingest-a", src, oid, size)
            cpu1 = trove.cpu_seconds()
        finally:
            trove.stop()
        if put is None:
            raise RuntimeError("the LFS batch answer asked for no upload of fresh bytes")
        line = ingested_line(trove.log_path, oid)
        raw = json.loads(subprocess.run([args.chunk_rate, str(src), "3"], capture_output=True, text=True,
                                        timeout=600, check=True).stdout)
        stages = None
        if args.ingest_stages:
            stages = json.loads(subprocess.run([args.ingest_stages, str(src), "3"], capture_output=True,
                                               text=True, timeout=900, check=True).stdout)
        mib = size / MIB
        chunk_s = int(line["chunk_ms"]) / 1000
        r = {"kind": kind, "bytes": size, "load_before": load, "put_seconds": put, "put_cpu_s": cpu1 - cpu0,
             "raw_mib_s": raw["mib_per_s"], "stages_mib_s": stages, "server": line,
             "e2e_mib_s": mib / put, "stage_mib_s": mib / chunk_s if chunk_s > 0 else float("inf")}
        r["e2e_ratio"] = r["e2e_mib_s"] / r["raw_mib_s"]
        r["stage_ratio"] = r["stage_mib_s"] / r["raw_mib_s"]
        # The stage's thread CPU time: its work without the moments it was preempted by the
        # upload's own SHA-256 and writer threads (three busy threads on this machine's cores).
        cpu_ms = int(line.get("chunk_cpu_ms", 0))
        r["stage_cpu_mib_s"] = mib / (cpu_ms / 1000) if cpu_ms > 0 else None
        r["stage_cpu_ratio"] = r["stage_cpu_mib_s"] / r["raw_mib_s"] if cpu_ms > 0 else None
        out.append(r)
        src.unlink()
        shutil.rmtree(trove.data, ignore_errors=True)
    return out


def print_ingest(results: list[dict]) -> None:
    print("\nLFS ingest (basic PUT into a fresh data dir; the answer comes once the file is ingested)")
    for i in results:
        s, m = i["server"], i["bytes"] / MIB
        print(f"  {i['kind']} {m:.0f} MiB (load average {i['load_before']:.2f} before):")
        print(f"    raw gear chunker + BLAKE3 (chunk_rate, in memory, best of 3): {i['raw_mib_s']:8.1f} MiB/s")
        print(f"    (b) server chunking stage, {s['chunk_ms']} ms busy:            {i['stage_mib_s']:8.1f} MiB/s"
              f"  ratio {i['stage_ratio']:.2f}")
        if i["stage_cpu_ratio"] is not None:
            print(f"    (b) the same stage per CPU second, {s['chunk_cpu_ms']} ms CPU:       {i['stage_cpu_mib_s']:8.1f} MiB/s"
                  f"  ratio {i['stage_cpu_ratio']:.2f}  aim >= 0.8: {'met' if i['stage_cpu_ratio'] >= 0.8 else 'MISSED'}")
        print(f"    (a) PUT to ingested, {i['put_seconds']:.2f} s (Trove CPU {i['put_cpu_s']:.2f} s):"
              f"        {i['e2e_mib_s']:8.1f} MiB/s  ratio {i['e2e_ratio']:.2f}")
        print(f"    server stages (ms): receive+SHA-256+fsync {s['receive_ms']} (chunking beside it), then "
              f"wait for chunking {s['chunk_wait_ms']}, lookup {s['lookup_ms']}, read back {s['pack_read_ms']}, "
              f"pack {s['pack_ms']}, fsync+publish {s['publish_ms']}, records {s['record_ms']}; "
              f"after the body: {s['after_receive_ms']}; {s['chunks']} chunks, {s['new_xorbs']} xorbs, "
              f"{int(s['stored_bytes']):,} B stored")
        st = i["stages_mib_s"]
        if st:
            print(f"    in-memory stages alone (MiB/s, ingest_stages): SHA-256 {st['sha256']}, gear {st['gear']}, "
                  f"BLAKE3 {st['blake3']}, gear+BLAKE3 {st['raw_gear_blake3']}, stream chunker (16 KiB pieces) "
                  f"{st['stream_chunker_16k_pieces']} (median ratio to gear+BLAKE3 over alternated rounds "
                  f"{st.get('stream_over_raw_median')}), packing {st['pack']} ({st['scheme']})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trove", required=True)
    ap.add_argument("--chunk-rate", required=True, help="the trove-xet chunk_rate example binary")
    ap.add_argument("--ingest-stages", help="the trove-xet ingest_stages example binary (per-stage profile)")
    ap.add_argument("--only-ingest", action="store_true", help="measure the ingest rate only")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--bench-dir", default="/var/tmp")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--ffn", type=int, default=2048)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--parquet-rows", type=int, default=60_000, help="rows per row group")
    ap.add_argument("--ingest-mib", type=int, default=256)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    args.ingest_mib = max(16, args.ingest_mib // 16 * 16)

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="trove-storage-bench.", dir=args.bench_dir))
    try:
        if args.only_ingest:
            ingest = ingest_rate(args, work)
            print_ingest(ingest)
            load = os.getloadavg()
            print(f"\nmachine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
                  f"run took {time.monotonic() - started:.0f} s")
            if args.json:
                Path(args.json).write_text(json.dumps({"ingest": ingest, "load": load}, indent=2, default=str))
            return 0
        dims = {"layers": args.layers, "d": args.d, "ffn": args.ffn, "vocab": args.vocab}
        mixed = [0.05, 0.10, 0.25, 0.50, "insert"]
        series = {
            "fp16": (checkpoint_series(work, "fp16", "F16", 1, mixed, dims), "model"),
            "bf16": (checkpoint_series(work, "bf16", "BF16", 2, mixed, dims), "model"),
            "fp16-10pct": (checkpoint_series(work, "s10", "F16", 3, [0.10] * 4, dims), "model"),
        }
        pq_versions = parquet_series(work, 5, args.parquet_rows, 4)
        if pq_versions is None:
            print("pyarrow is not installed: the Parquet series is skipped", flush=True)
        else:
            series["parquet"] = (pq_versions, "dataset")
        print("data set (seconds %.0f)" % (time.monotonic() - started))
        for name, (vs, _) in series.items():
            print(f"  {name:11s} " + ", ".join(f"{v.size / MIB:.1f} MiB" for v in vs[:1]) +
                  "; then " + "; ".join(v.note for v in vs[1:]))

        outcomes: list[Outcome] = []
        for case, warm in (("warm", True), ("cold", False)):
            for name, (vs, rtype) in series.items():
                o = run_series(args, work, case, name, vs, rtype, warm, lambda k: True)
                outcomes.append(o)
                print(f"  {case:8s} {name:11s} done in {o.seconds:5.1f} s", flush=True)
        # The cross-path pair: 10% of the bytes (a tensor count alone may pick only norms).
        s10 = checkpoint_series(work, "cross", "F16", 4, [("bytes", 0.10)], dims)
        series["fp16-cross"] = (s10, "model")
        print(f"  fp16-cross  {s10[0].size / MIB:.1f} MiB; then {s10[1].note}")
        for case, xet_for in (("lfs>xet", lambda k: k > 0), ("xet>lfs", lambda k: k == 0)):
            o = run_series(args, work, case, "fp16-cross", s10, "model", False, xet_for)
            outcomes.append(o)
            print(f"  {case:8s} fp16-cross  done in {o.seconds:5.1f} s", flush=True)

        for o in outcomes:
            if o.case == "warm":
                o.aims.append(("stored <= 1.05 x ideal", f"{o.stored / o.ideal:.3f}", o.stored <= 1.05 * o.ideal))
            if o.case == "cold" and o.series == "fp16-10pct":
                r = o.logical / o.stored
                o.aims.append((f"logical/stored >= 3.0 at 10%, ideal {o.logical / o.ideal:.2f}", f"{r:.2f}", r >= 3.0))
            if o.case in ("lfs>xet", "xet>lfs"):
                allowed = 1.07 * o.changed_after_base + o.boundaries_after_base * CHUNK_MAX
                o.aims.append((f"growth <= 1.07 x changed + {o.boundaries_after_base} x 128 KiB = {allowed:,.0f} B",
                               f"{o.growth:,} B ({o.growth / o.changed_after_base:.3f} x changed)",
                               o.growth <= allowed))

        ingest = ingest_rate(args, work)

        print("\nper case (bytes; ideal = base + changed bytes of every later version; growth = stored "
              "after the last version - stored after the base)")
        print(f"  {'case':8s} {'series':11s} {'logical':>12s} {'stored':>12s} {'ideal':>12s} "
              f"{'st/logical':>10s} {'st/ideal':>9s} {'growth':>11s} {'changed':>11s} {'uploads':>8s}")
        for o in outcomes:
            print(f"  {o.case:8s} {o.series:11s} {o.logical:12,d} {o.stored:12,d} {o.ideal:12,d} "
                  f"{o.stored / o.logical:10.3f} {o.stored / o.ideal:9.3f} {o.growth:11,d} {o.changed_after_base:11,d} "
                  f"{len(series[o.series][0]):3d}, {o.lfs_uploads} LFS")
        print("\naims")
        for o in outcomes:
            for name, value, met in o.aims:
                print(f"  {o.case:8s} {o.series:11s} {name}: {value}  {'met' if met else 'MISSED'}")
        print_ingest(ingest)
        load = os.getloadavg()
        print(f"\nmachine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
              f"run took {time.monotonic() - started:.0f} s")
        if args.json:
            Path(args.json).write_text(json.dumps({"cases": [o.__dict__ for o in outcomes], "ingest": ingest,
                                                   "load": load}, indent=2, default=str))
        return 0
    except Exception:
        # The work dir goes; what the servers logged last goes to stderr first.
        for log in sorted(work.glob("trove-*.log")):
            lines = log.read_text(errors="replace").splitlines()
            print(f"--- last lines of {log.name}", *lines[-15:], sep="\n", file=sys.stderr)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
