//! The type and size of every object in a folder's packs, read from each pack's index and the
//! headers of its entries: no object is inflated, and a delta's type is found once per chain
//! rather than by walking the chain again for every object on it.
//!
//! This is what a `pre-receive` hook needs to know of every pushed object before it reads the
//! few it examines, and asking libgit2 one object at a time (`Odb::read_header`) walks each
//! delta chain to its base: on a first push of 17,000 objects packed with deep chains, that
//! was a third of the hook's time.
//!
//! Nothing here is trusted blindly: whatever cannot be read this way (an index version or
//! object format this does not know, a truncated entry, a delta whose base is in another
//! pack) is simply left out, and the caller asks libgit2 for it.

use git2::{ObjectType, Oid};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// An object's type and, for a blob, its size (of the blob itself, not of its packed form).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub id: Oid,
    pub kind: ObjectType,
    pub size: Size,
    /// Where the object lies, for [`crate::pack_read::PackReader`].
    pub at: EntryAt,
}

/// The size in a [`Header`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Size {
    /// A blob's size; for another type, its size when stored whole, 0 when it is a delta
    /// (not read: nothing needs it).
    Known(u64),
    /// A blob stored as a delta: its size is in the first bytes the delta inflates to, read
    /// by [`crate::pack_read::PackReader::delta_size`] (in the threads that examine the
    /// objects, not before they start).
    OfDelta,
}

/// An entry of one of [`Contents::packs`]: the pack's place there, the entry's in
/// [`Pack::entries`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EntryAt {
    pub pack: usize,
    pub entry: usize,
}

/// A pack whose entries' headers were read.
pub(crate) struct Pack {
    pub path: PathBuf,
    /// Every entry, in the order they lie in the pack.
    pub entries: Vec<Entry>,
    /// For each entry stored as a delta, the entry it applies to (`None`: stored whole, or
    /// its base is not in this pack).
    pub bases: Vec<Option<usize>>,
    /// Whether another entry of this pack is a delta against this one.
    pub is_base: Vec<bool>,
    /// Where the entries end (the pack's checksum starts).
    pub end: u64,
}

impl Pack {
    /// Where entry `k`'s compressed data ends at the latest: where the next entry starts.
    pub(crate) fn data_end(&self, k: usize) -> u64 {
        self.entries.get(k + 1).map_or(self.end, |next| next.offset)
    }
}

/// Pack indexes larger than this are not read (their objects go through libgit2): about
/// two million objects, whose entries take about 100 MiB here.
const MAX_INDEX_BYTES: u64 = 64 << 20;
const OID_BYTES: usize = 20;

/// What an object folder (a push's quarantine) holds, read without libgit2.
pub(crate) struct Contents {
    /// Every object's id, packed or loose, sorted, each once: the ids libgit2's
    /// `Odb::foreach` lists for the folder.
    pub ids: Vec<Oid>,
    /// The packed objects whose type and size could be read from their pack, pack after
    /// pack, each pack's in the order they lie in it (so that reading them in this order goes
    /// forward through the pack, a delta soon after its base). An object in two packs is
    /// listed twice.
    pub packed: Vec<Header>,
    /// The packs [`EntryAt`] points into.
    pub packs: Vec<Pack>,
}

/// Lists the objects of `objects_dir`: the ids of each pack from its index (which has them
/// sorted already, where `Odb::foreach` sorts every index again), loose objects by their
/// folders. `None` when the folder holds what this does not read: alternates, an index of
/// another version, too large or damaged, a folder that cannot be listed; the caller then
/// asks libgit2.
pub(crate) fn contents(objects_dir: &Path) -> Option<Contents> {
    // Objects of other folders would count as the quarantine's.
    if objects_dir.join("info/alternates").try_exists().ok()? {
        return None;
    }
    let mut ids = Vec::new();
    loose_ids(objects_dir, &mut ids)?;
    let mut packed = Vec::new();
    let mut packs = Vec::new();
    let dir = match std::fs::read_dir(objects_dir.join("pack")) {
        Ok(dir) => Some(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(_) => return None,
    };
    for entry in dir.into_iter().flatten() {
        let idx = entry.ok()?.path();
        if idx.extension().is_none_or(|e| e != "idx") {
            continue;
        }
        let pack = idx.with_extension("pack");
        // An index without its pack is ignored, by git and by libgit2 alike.
        if !pack.try_exists().ok()? {
            continue;
        }
        let index = read_index(&idx)?;
        ids.extend_from_slice(&index.ids);
        // Headers that cannot be read this way are asked of libgit2 one by one.
        if let Some((headers, read)) = read_pack(&index, pack, packs.len()) {
            packed.extend(headers);
            packs.push(read);
        }
    }
    // Runs already sorted (one per pack), and a loose copy of a packed object is possible.
    ids.sort_unstable();
    ids.dedup();
    Some(Contents { ids, packed, packs })
}

/// Adds the ids of the loose objects of `objects_dir` (`xx/` + 38 hex digits, as libgit2
/// reads them) to `ids`. `None` if a folder cannot be listed.
fn loose_ids(objects_dir: &Path, ids: &mut Vec<Oid>) -> Option<()> {
    let dir = match std::fs::read_dir(objects_dir) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(()),
        Err(_) => return None,
    };
    let mut hex = String::with_capacity(2 * OID_BYTES);
    for entry in dir {
        let entry = entry.ok()?;
        let prefix = entry.file_name();
        let Some(prefix) = prefix
            .to_str()
            .filter(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        else {
            continue;
        };
        if !std::fs::metadata(entry.path()).ok()?.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(entry.path()).ok()? {
            let name = file.ok()?.file_name();
            let Some(rest) = name.to_str().filter(|r| {
                r.len() == 2 * OID_BYTES - 2 && r.bytes().all(|b| b.is_ascii_hexdigit())
            }) else {
                continue;
            };
            hex.clear();
            hex.push_str(prefix);
            hex.push_str(rest);
            ids.push(Oid::from_str(&hex).ok()?);
        }
    }
    Some(())
}

/// A version 2 pack index: ids in order and where each object starts in the pack.
struct Index {
    ids: Vec<Oid>,
    offsets: Vec<u64>,
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn read_index(path: &Path) -> Option<Index> {
    let len = std::fs::metadata(path).ok()?.len();
    if len > MAX_INDEX_BYTES {
        return None;
    }
    let data = std::fs::read(path).ok()?;
    if data.get(..4)? != b"\xfftOc" || be32(&data, 4)? != 2 {
        return None;
    }
    let fanout = 8;
    let count = be32(&data, fanout + 255 * 4)? as usize;
    let ids_at = fanout + 256 * 4;
    let offsets_at = ids_at + count * (OID_BYTES + 4);
    let large_at = offsets_at + count * 4;
    // Trailer: the pack's checksum and the index's own.
    if data.len() < large_at + 2 * OID_BYTES {
        return None;
    }
    let mut ids = Vec::with_capacity(count);
    let mut offsets = Vec::with_capacity(count);
    for i in 0..count {
        let raw = data.get(ids_at + i * OID_BYTES..ids_at + (i + 1) * OID_BYTES)?;
        ids.push(Oid::from_bytes(raw).ok()?);
        let small = be32(&data, offsets_at + i * 4)?;
        let offset = if small & 0x8000_0000 == 0 {
            u64::from(small)
        } else {
            let at = large_at + (small & 0x7fff_ffff) as usize * 8;
            u64::from_be_bytes(data.get(at..at + 8)?.try_into().ok()?)
        };
        offsets.push(offset);
    }
    // Each id once, in order: what git writes, and what lets a caller take the entries of a
    // pack for its list of ids without sorting them.
    if !ids.windows(2).all(|w| w[0] < w[1]) {
        return None;
    }
    Some(Index { ids, offsets })
}

/// Where a packed entry's content comes from.
#[derive(Clone, Copy)]
pub(crate) enum Base {
    /// A whole object of this type.
    Whole(ObjectType),
    /// A delta against the entry at this offset.
    Offset(u64),
    /// A delta against the object of this id.
    Id(Oid),
}

/// A pack entry's header.
pub(crate) struct Entry {
    pub offset: u64,
    pub base: Base,
    /// The object's size for a whole object; a delta's size is that of the delta.
    pub size: u64,
    /// Where the compressed data starts.
    pub data_at: u64,
}

/// Reads forward through a pack, skipping what is not needed.
pub(crate) struct Cursor {
    reader: BufReader<std::fs::File>,
    at: u64,
}

impl Cursor {
    /// A cursor at the start of `file`, reading through a buffer of `buffer` bytes.
    pub(crate) fn new(file: std::fs::File, buffer: usize) -> Cursor {
        Cursor {
            reader: BufReader::with_capacity(buffer, file),
            at: 0,
        }
    }

    pub(crate) fn seek(&mut self, to: u64) -> Option<()> {
        let by = i64::try_from(to).ok()? - i64::try_from(self.at).ok()?;
        self.reader.seek_relative(by).ok()?;
        self.at = to;
        Some(())
    }

    fn byte(&mut self) -> Option<u8> {
        let mut b = [0u8; 1];
        self.reader.read_exact(&mut b).ok()?;
        self.at += 1;
        Some(b[0])
    }

    pub(crate) fn bytes(&mut self, into: &mut [u8]) -> Option<()> {
        self.reader.read_exact(into).ok()?;
        self.at += into.len() as u64;
        Some(())
    }

    /// An entry's header at the current position.
    fn entry(&mut self, offset: u64) -> Option<Entry> {
        let mut c = self.byte()?;
        let code = (c >> 4) & 7;
        let mut size = u64::from(c & 15);
        let mut shift = 4;
        while c & 0x80 != 0 {
            c = self.byte()?;
            if shift > 57 {
                return None;
            }
            size |= u64::from(c & 0x7f) << shift;
            shift += 7;
        }
        let base = match code {
            1 => Base::Whole(ObjectType::Commit),
            2 => Base::Whole(ObjectType::Tree),
            3 => Base::Whole(ObjectType::Blob),
            4 => Base::Whole(ObjectType::Tag),
            6 => {
                let mut c = self.byte()?;
                let mut back = u64::from(c & 0x7f);
                while c & 0x80 != 0 {
                    c = self.byte()?;
                    back = back.checked_add(1)?.checked_mul(128)? | u64::from(c & 0x7f);
                }
                Base::Offset(offset.checked_sub(back).filter(|_| back > 0)?)
            }
            7 => {
                let mut raw = [0u8; OID_BYTES];
                self.bytes(&mut raw)?;
                Base::Id(Oid::from_bytes(&raw).ok()?)
            }
            _ => return None,
        };
        Some(Entry {
            offset,
            base,
            size,
            data_at: self.at,
        })
    }
}

/// The headers of a pack's entries, `number` being its place in [`Contents::packs`].
fn read_pack(index: &Index, path: PathBuf, number: usize) -> Option<(Vec<Header>, Pack)> {
    let file = std::fs::File::open(&path).ok()?;
    let pack_len = file.metadata().ok()?.len();
    let mut cursor = Cursor::new(file, 64 * 1024);
    let mut head = [0u8; 12];
    cursor.bytes(&mut head)?;
    if &head[..4] != b"PACK" || !matches!(be32(&head, 4)?, 2 | 3) {
        return None;
    }
    if be32(&head, 8)? as usize != index.ids.len() {
        return None;
    }
    // Entries in the order they lie in the pack, each read once, forward.
    let mut order: Vec<usize> = (0..index.ids.len()).collect();
    order.sort_unstable_by_key(|&i| index.offsets[i]);
    let mut entries = Vec::with_capacity(order.len());
    for &i in &order {
        let offset = index.offsets[i];
        cursor.seek(offset)?;
        entries.push(cursor.entry(offset)?);
    }
    // entries[k] is the object index.ids[order[k]]; `at_offset` finds k by offset.
    let at_offset = |offset: u64| entries.binary_search_by_key(&offset, |e| e.offset).ok();
    let mut position = vec![0usize; order.len()];
    for (k, &i) in order.iter().enumerate() {
        position[i] = k;
    }
    let base_of = |k: usize| -> Option<Option<usize>> {
        match entries[k].base {
            Base::Whole(_) => Some(None),
            Base::Offset(offset) => at_offset(offset).map(Some),
            Base::Id(id) => index.ids.binary_search(&id).ok().map(|i| Some(position[i])),
        }
    };
    // The type at the end of each chain, found once per entry.
    let mut kinds: Vec<Option<ObjectType>> = vec![None; entries.len()];
    let mut chain = Vec::new();
    for k in 0..entries.len() {
        chain.clear();
        let mut at = k;
        let kind = loop {
            if let Some(kind) = kinds[at] {
                break Some(kind);
            }
            match base_of(at) {
                Some(None) => match entries[at].base {
                    Base::Whole(kind) => break Some(kind),
                    _ => break None,
                },
                Some(Some(base)) if chain.len() <= entries.len() => {
                    chain.push(at);
                    at = base;
                }
                // A base outside this pack, or a cycle: unknown.
                _ => break None,
            }
        };
        if let Some(kind) = kind {
            kinds[at] = Some(kind);
            for &c in &chain {
                kinds[c] = Some(kind);
            }
        }
    }
    let bases: Vec<Option<usize>> = (0..entries.len()).map(|k| base_of(k).flatten()).collect();
    let mut is_base = vec![false; entries.len()];
    for &base in bases.iter().flatten() {
        is_base[base] = true;
    }
    // A delta's result size is read only where it matters, for blobs (the rules look at
    // their sizes), and later, by whoever examines the blob.
    let mut headers = Vec::with_capacity(entries.len());
    for (k, entry) in entries.iter().enumerate() {
        let Some(kind) = kinds[k] else { continue };
        let size = match entry.base {
            Base::Whole(_) => Size::Known(entry.size),
            _ if kind != ObjectType::Blob => Size::Known(0),
            _ => Size::OfDelta,
        };
        headers.push(Header {
            id: index.ids[order[k]],
            kind,
            size,
            at: EntryAt {
                pack: number,
                entry: k,
            },
        });
    }
    let end = pack_len.checked_sub(OID_BYTES as u64)?;
    let pack = Pack {
        path,
        entries,
        bases,
        is_base,
        end,
    };
    Some((headers, pack))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack_read::PackReader;
    use std::collections::HashSet;
    use std::io::Write;
    use std::process::{Command, Stdio};

    fn git(dir: &Path, args: &[&str], envs: &[(&str, &Path)], stdin: &[u8]) -> Vec<u8> {
        let mut child = Command::new("git")
            .arg("--git-dir")
            .arg(dir)
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .envs(envs.iter().map(|(k, v)| (*k, *v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("git runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin)
            .expect("write stdin");
        let out = child.wait_with_output().expect("git ends");
        assert!(out.status.success(), "git {args:?} failed");
        out.stdout
    }

    /// A history where files grow commit after commit, so that a packer stores blobs and
    /// trees as deltas of one another (deep chains with a large depth).
    fn history(commits: usize) -> Vec<u8> {
        let mut stream = Vec::new();
        let mut body = String::new();
        for c in 0..commits {
            body.push_str(&format!(
                "line {c} of a file that grows with every commit\n"
            ));
            let msg = format!("commit {c}\n");
            stream.extend_from_slice(
                format!(
                    "commit refs/heads/main\ncommitter t <t@example.invalid> {} +0000\ndata {}\n{msg}",
                    1_700_000_000 + c,
                    msg.len()
                )
                .as_bytes(),
            );
            for f in 0..3 {
                let data = format!("{f}\n{body}");
                stream.extend_from_slice(
                    format!(
                        "M 100644 inline d{}/f{f}.txt\ndata {}\n{data}\n",
                        c % 4,
                        data.len()
                    )
                    .as_bytes(),
                );
            }
        }
        stream
    }

    /// Every id libgit2 lists for the object folder `objects_dir`, sorted.
    fn libgit2_ids(objects_dir: &Path) -> Vec<Oid> {
        let odb = git2::Odb::new().expect("odb");
        odb.add_disk_alternate(&objects_dir.to_string_lossy())
            .expect("objects");
        let mut ids = Vec::new();
        odb.foreach(|id| {
            ids.push(*id);
            true
        })
        .expect("list");
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Lists `objects_dir`, checks the ids against libgit2's, and every header the listing
    /// read against what libgit2 says of that object (blob sizes read as the workers do),
    /// and every packed object's content read by [`PackReader`] against libgit2's, read
    /// in pack order as the hook does and again in reverse (bases no longer kept).
    fn assert_agrees_with_libgit2(objects_dir: &Path) -> Contents {
        let contents = contents(objects_dir).expect("listed without libgit2");
        assert_eq!(contents.ids, libgit2_ids(objects_dir), "the same ids");
        let odb = git2::Odb::new().expect("odb");
        odb.add_disk_alternate(&objects_dir.to_string_lossy())
            .expect("objects");
        let mut reader = PackReader::new(&contents.packs);
        for header in &contents.packed {
            let (size, kind) = odb.read_header(header.id).expect("header");
            assert_eq!(header.kind, kind, "{}", header.id);
            if kind == ObjectType::Blob {
                let read = match header.size {
                    Size::Known(size) => size,
                    Size::OfDelta => reader.delta_size(header.at).expect("delta size"),
                };
                assert_eq!(read, size as u64, "{}", header.id);
            }
            let content = reader.read(header.at).expect("content read from the pack");
            let object = odb.read(header.id).expect("object");
            assert!(*content == *object.data(), "content of {}", header.id);
        }
        let mut reader = PackReader::new(&contents.packs);
        for header in contents.packed.iter().rev() {
            let content = reader.read(header.at).expect("content read from the pack");
            let object = odb.read(header.id).expect("object");
            assert!(*content == *object.data(), "content of {}", header.id);
        }
        contents
    }

    /// A bare repository of `commits` commits made by fast-import and repacked with deep
    /// delta chains.
    fn deep_repo(at: &Path, commits: usize) {
        git(at, &["init", "-q", "--bare"], &[], b"");
        git(at, &["fast-import", "--quiet"], &[], &history(commits));
        git(
            at,
            &["repack", "-adfq", "--depth=100", "--window=50"],
            &[],
            b"",
        );
    }

    /// `git index-pack` of `pack` into the quarantine-like folder `objects`, with `repo`'s
    /// objects as its alternate (for `--fix-thin`), as receive-pack does.
    fn index_into(repo: &Path, objects: &Path, pack: &[u8]) {
        std::fs::create_dir_all(objects.join("pack")).expect("quarantine");
        let alternates = repo.join("objects");
        git(
            repo,
            &["index-pack", "--stdin", "--fix-thin"],
            &[
                ("GIT_OBJECT_DIRECTORY", objects),
                ("GIT_ALTERNATE_OBJECT_DIRECTORIES", &alternates),
            ],
            pack,
        );
    }

    #[test]
    fn types_and_blob_sizes_match_libgit2_through_deep_and_thin_deltas() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src.git");
        deep_repo(&src, 120);
        let listed = assert_agrees_with_libgit2(&src.join("objects"));
        assert_eq!(listed.packed.len(), listed.ids.len(), "every header read");
        assert!(
            listed
                .packed
                .iter()
                .any(|h| matches!(h.size, Size::OfDelta)),
            "blobs stored as deltas"
        );

        // A thin pack of the last 40 commits, completed by index-pack as receive-pack has it
        // do: deltas against objects of the repository, whose bases are appended whole.
        let dst = dir.path().join("dst.git");
        git(&dst, &["init", "-q", "--bare"], &[], b"");
        let old = String::from_utf8(git(&src, &["rev-parse", "main~40"], &[], b"")).expect("hex");
        git(
            &dst,
            &[
                "fetch",
                "-q",
                &src.to_string_lossy(),
                &format!("{}:refs/heads/main", old.trim()),
            ],
            &[],
            b"",
        );
        let thin = git(
            &src,
            &["pack-objects", "--thin", "--stdout", "--revs", "-q"],
            &[],
            format!("main\n^{}\n", old.trim()).as_bytes(),
        );
        let quarantine = dir.path().join("incoming");
        index_into(&dst, &quarantine, &thin);
        let listed = assert_agrees_with_libgit2(&quarantine);
        assert!(listed.ids.len() > 40, "{} objects pushed", listed.ids.len());
        assert_eq!(listed.packed.len(), listed.ids.len(), "every header read");
    }

    #[test]
    fn damaged_pack_data_is_never_read_as_other_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src.git");
        deep_repo(&src, 30);
        let objects = src.join("objects");
        let good = contents(&objects).expect("listed");
        let odb = git2::Odb::new().expect("odb");
        odb.add_disk_alternate(&objects.to_string_lossy())
            .expect("objects");
        let truth: Vec<Vec<u8>> = good
            .packed
            .iter()
            .map(|h| odb.read(h.id).expect("object").data().to_vec())
            .collect();
        let pack = &good.packs[0];
        let bytes = std::fs::read(&pack.path).expect("pack");
        let damaged_dir = dir.path().join("damaged");
        std::fs::create_dir_all(damaged_dir.join("pack")).expect("dir");
        let name = pack.path.file_name().expect("name");
        let idx = pack.path.with_extension("idx");
        std::fs::copy(
            &idx,
            damaged_dir.join("pack").join(idx.file_name().expect("idx")),
        )
        .expect("idx");
        // One byte changed inside the compressed data of entries spread over the pack.
        let step = (pack.entries.len() / 40).max(1);
        let mut refused = 0;
        for entry in pack.entries.iter().step_by(step) {
            let mut copy = bytes.clone();
            let at = usize::try_from(entry.data_at).expect("offset") + 2;
            copy[at] ^= 0x5a;
            std::fs::write(damaged_dir.join("pack").join(name), &copy).expect("write");
            let damaged = contents(&damaged_dir).expect("listed");
            let mut reader = PackReader::new(&damaged.packs);
            for (header, truth) in damaged.packed.iter().zip(&truth) {
                match reader.read(header.at) {
                    Some(content) => assert!(*content == **truth, "{} misread", header.id),
                    None => refused += 1,
                }
            }
        }
        assert!(refused > 0, "damage is noticed");
    }

    #[test]
    fn ids_of_several_packs_and_loose_objects_match_libgit2() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src.git");
        deep_repo(&src, 60);
        let dst = dir.path().join("dst.git");
        git(&dst, &["init", "-q", "--bare"], &[], b"");
        let quarantine = dir.path().join("incoming");
        // Two packs that share objects (the second holds all of the first's), as two
        // index-pack runs would leave them.
        for range in ["main~30", "main"] {
            let pack = git(
                &src,
                &["pack-objects", "--stdout", "--revs", "-q"],
                &[],
                format!("{range}\n").as_bytes(),
            );
            index_into(&dst, &quarantine, &pack);
        }
        // Loose objects (what receive-pack's unpack-objects writes for small pushes): one of
        // them also packed, and stray files libgit2 does not list.
        let blob = git(
            &dst,
            &["hash-object", "-w", "--stdin"],
            &[("GIT_OBJECT_DIRECTORY", &quarantine)],
            b"a loose blob\n",
        );
        let packed_too =
            String::from_utf8(git(&src, &["rev-parse", "main:d0/f0.txt"], &[], b"")).expect("hex");
        let content = git(&src, &["cat-file", "blob", packed_too.trim()], &[], b"");
        git(
            &dst,
            &["hash-object", "-w", "--stdin"],
            &[("GIT_OBJECT_DIRECTORY", &quarantine)],
            &content,
        );
        std::fs::create_dir_all(quarantine.join("ab")).expect("folder");
        std::fs::write(quarantine.join("ab/tmp_obj_x"), b"").expect("stray");
        std::fs::write(quarantine.join("ab").join("0".repeat(37)), b"").expect("stray");
        std::fs::write(quarantine.join("cd"), b"").expect("stray");
        std::fs::write(quarantine.join("pack/pack-stray.idx"), b"no pack beside it")
            .expect("stray");

        let listed = assert_agrees_with_libgit2(&quarantine);
        let blob = Oid::from_str(String::from_utf8_lossy(&blob).trim()).expect("id");
        assert!(listed.ids.contains(&blob), "the loose blob is listed");
        assert_eq!(listed.packs.len(), 2, "two packs read");
        // Each pack's headers are read; an object in both packs is there twice.
        let distinct_packed: HashSet<Oid> = listed.packed.iter().map(|h| h.id).collect();
        assert_eq!(distinct_packed.len() + 1, listed.ids.len());
        assert!(listed.packed.len() > distinct_packed.len());
    }

    #[test]
    fn what_the_listing_does_not_read_is_left_to_libgit2() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Nothing at all: nothing listed.
        let empty = contents(dir.path()).expect("an empty folder is read");
        assert!(empty.ids.is_empty() && empty.packed.is_empty());
        // An index this does not read (damaged, or of another version).
        std::fs::create_dir_all(dir.path().join("pack")).expect("pack dir");
        std::fs::write(
            dir.path().join("pack/pack-1.idx"),
            b"\xfftOc\0\0\0\x02short",
        )
        .expect("idx");
        std::fs::write(dir.path().join("pack/pack-1.pack"), b"PACK").expect("pack");
        assert!(contents(dir.path()).is_none());
        std::fs::remove_file(dir.path().join("pack/pack-1.idx")).expect("rm");
        assert!(contents(dir.path()).is_some());
        // An index whose ids are out of order (git writes them sorted, each once).
        let repo = dir.path().join("r.git");
        deep_repo(&repo, 3);
        let objects = repo.join("objects");
        assert!(contents(&objects).is_some());
        let idx = std::fs::read_dir(objects.join("pack"))
            .expect("pack dir")
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "idx"))
            .expect("an index");
        let mut bytes = std::fs::read(&idx).expect("idx");
        let ids_at = 8 + 256 * 4;
        let (first, second) = bytes[ids_at..ids_at + 2 * OID_BYTES].split_at_mut(OID_BYTES);
        first.swap_with_slice(second);
        let mut permissions = std::fs::metadata(&idx).expect("meta").permissions();
        #[expect(clippy::permissions_set_readonly_false, reason = "a test's own file")]
        permissions.set_readonly(false);
        std::fs::set_permissions(&idx, permissions).expect("writable");
        std::fs::write(&idx, &bytes).expect("idx");
        assert!(contents(&objects).is_none());
        // Alternates: their objects would be listed as the folder's.
        std::fs::create_dir_all(dir.path().join("info")).expect("info");
        std::fs::write(dir.path().join("info/alternates"), b"/elsewhere\n").expect("alt");
        assert!(contents(dir.path()).is_none());
    }
}
