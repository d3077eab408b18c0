"""HfFileSystem (fsspec) against the server: ls, info and ranged reads of an LFS file."""

from __future__ import annotations

from conftest import sha256_bytes, write_random, write_tree

READS = [(0, 100), (1_000_000, 4096), (2_999_000, 5000), (123_457, 1)]

FS = """
from huggingface_hub import HfFileSystem
fs = HfFileSystem()
repo = ARGS["repo"]
ls = fs.ls(f"{repo}/folder", detail=True)
info = fs.info(f"{repo}/folder/big.bin")
dir_info = fs.info(f"{repo}/folder/sub")
missing = attempt(fs.info, f"{repo}/folder/nope.bin")
reads = []
with fs.open(f"{repo}/folder/big.bin", "rb") as f:
    for offset, n in ARGS["reads"]:
        f.seek(offset)
        reads.append(f.read(n).hex())
cat = fs.cat_file(f"{repo}/folder/small.txt").decode()
emit({"ls": [{"name": e["name"], "type": e["type"], "size": e["size"]} for e in ls],
      "info": {"name": info["name"], "type": info["type"], "size": info["size"],
               "lfs": dict(info["lfs"]) if info.get("lfs") else None},
      "dir_type": dir_info["type"], "missing": missing, "reads": reads, "cat": cat,
      "glob": sorted(fs.glob(f"{repo}/**/*.txt"))})
"""


def test_hffilesystem_ls_info_and_ranged_reads(client, hub, tmp_path):
    src = tmp_path / "src"
    write_tree(src, {"folder/small.txt": b"small file\n", "folder/sub/x.txt": b"x\n", "top.txt": b"t"})
    big = write_random(src / "folder" / "big.bin", 3_000_000)
    repo = hub.create_repo("fs")
    client.py('api.upload_folder(repo_id=ARGS["repo"], folder_path=ARGS["src"])',
              args={"repo": repo, "src": str(src)})

    # reads with the default install (hf_xet active): downloads must not need Xet
    r = client.py(FS, xet=True, args={"repo": repo, "reads": READS}).result
    assert sorted((e["name"], e["type"]) for e in r["ls"]) == [
        (f"{repo}/folder/big.bin", "file"),
        (f"{repo}/folder/small.txt", "file"),
        (f"{repo}/folder/sub", "directory"),
    ]
    sizes = {e["name"]: e["size"] for e in r["ls"]}
    assert sizes[f"{repo}/folder/big.bin"] == len(big)
    assert r["info"]["type"] == "file" and r["info"]["size"] == len(big)
    assert r["info"]["lfs"]["sha256"] == sha256_bytes(big)
    assert r["dir_type"] == "directory"
    assert "FileNotFoundError" in r["missing"]["mro"], r["missing"]
    for (offset, n), got in zip(READS, r["reads"]):
        assert bytes.fromhex(got) == big[offset:offset + n], f"read at {offset}+{n}"
    assert r["cat"] == "small file\n"
    assert r["glob"] == sorted([f"{repo}/folder/small.txt", f"{repo}/folder/sub/x.txt", f"{repo}/top.txt"])
