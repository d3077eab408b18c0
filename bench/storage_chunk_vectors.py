"""Expected Xet file hashes for trove-xet's chunker test (crates/trove-xet/src/chunk.rs).

Writes the test's inputs to a temporary directory and hashes them with the real client
(`hf_xet.hash_files`), which chunks exactly as uploads do. Prints one hash per line, in the
order of the test's EXPECTED table.

    .venv/bin/python bench/storage_chunk_vectors.py
"""

import hashlib
import os
import tempfile

import hf_xet


def counter_bytes(seed: int, n: int) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(seed.to_bytes(8, "little") + i.to_bytes(8, "little")).digest()
        i += 1
    return bytes(out[:n])


def cases():
    for n in (1, 8191, 8192, 8193, 131072, 131073, 3000001):
        yield counter_bytes(7, n)
    yield bytes(1_000_000)
    yield counter_bytes(8, 300_000) + bytes(500_000) + counter_bytes(9, 700_001)


def main():
    with tempfile.TemporaryDirectory() as d:
        paths = []
        for i, data in enumerate(cases()):
            p = os.path.join(d, f"case{i}")
            with open(p, "wb") as f:
                f.write(data)
            paths.append(p)
        for info in hf_xet.hash_files(paths):
            print(info.hash)


if __name__ == "__main__":
    main()
