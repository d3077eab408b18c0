//! What a push brings, seen from git's `pre-receive` hook: the objects waiting in the
//! quarantine (git keeps a push's objects apart until every hook agrees), and how each ref
//! would move.
//!
//! Only objects that are new to the repository are examined: the quarantine may also hold
//! delta bases copied from the repository to complete a thin pack, and those were accepted
//! before.

use crate::Result;
use crate::error::GitError;
use crate::fsck::{self, Link};
use crate::pack_headers::{self, EntryAt, Header, Size};
use crate::pack_read::PackReader;
use crate::repo::{from_git2, to_git2};
use crate::smart_http::{GitChecks, fsck_by_git};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use trove_types::{GitOid, LFS_POINTER_MAX_LEN, LfsPointer};

/// How far [`PushView::paths_of`] walks back through new history looking for a blob.
const MAX_COMMITS_SEARCHED: usize = 10_000;

/// How a ref moves in a push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefMove {
    Create,
    Delete,
    /// The new commit descends from the old one.
    FastForward,
    /// Anything else: history is rewritten (a force push), or the ref changes kind.
    Rewrite,
}

/// The new objects of a push that matter to the Hub's rules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewObjects {
    /// Blobs of `large_blob_bytes` or more that are not LFS pointers: id and size.
    pub large_blobs: Vec<(GitOid, u64)>,
    /// LFS pointer blobs: id and what they point at.
    pub lfs_pointers: Vec<(GitOid, LfsPointer)>,
    /// Entries of new trees whose names break the path rule ([`crate::entry_name_problem`]).
    pub bad_names: Vec<BadName>,
    /// Why git's own object checks had to run (the first object the checks made here could
    /// not vouch for, [`crate::fsck`]); `None` when every new object was vouched for.
    pub doubted: Option<String>,
    /// What git's own checks refused, when they ran and refused.
    pub refused_by_git: Option<String>,
}

/// A tree entry a push may not bring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadName {
    /// The tree holding the entry.
    pub tree: GitOid,
    /// Why the name is refused.
    pub reason: String,
}

/// The largest commit or tag the examination reads (real ones are a few KiB, signed ones
/// too); a larger one is left to git's own checks.
const MAX_COMMIT_OR_TAG_BYTES: u64 = 1 << 20;

/// Threads examining a push's new objects at most ([`PushView::new_objects`]).
const MAX_WORKERS: usize = 4;
/// Fewer objects than this per thread are not worth a thread of their own.
const MIN_OBJECTS_PER_WORKER: usize = 2048;

/// A repository as its `pre-receive` hook sees it: its own objects plus the quarantine.
pub struct PushView {
    own: Handles,
    /// Where the repository and the quarantine are, for threads that open handles of their
    /// own (libgit2's are not shared between threads). `None`: a push of deletions only.
    dirs: Option<(PathBuf, PathBuf)>,
}

/// What one thread reads a push's objects through.
struct Handles {
    /// The repository with the quarantine added as an alternate: sees old and new objects.
    combined: git2::Repository,
    /// The repository alone, without the quarantine.
    existing: git2::Repository,
    /// The quarantine alone.
    quarantine: git2::Odb<'static>,
}

impl Handles {
    fn open(git_dir: &Path, quarantine_dir: &Path) -> Result<Handles> {
        let open = |action| {
            git2::Repository::open_bare(git_dir).map_err(|source| GitError::Git { action, source })
        };
        let combined = open("opening repository")?;
        combined
            .odb()
            .and_then(|odb| odb.add_disk_alternate(&quarantine_dir.to_string_lossy()))
            .map_err(GitError::git("adding the quarantine"))?;
        let existing = open("opening repository")?;
        let quarantine = git2::Odb::new().map_err(GitError::git("opening quarantine"))?;
        quarantine
            .add_disk_alternate(&quarantine_dir.to_string_lossy())
            .map_err(GitError::git("opening quarantine"))?;
        Ok(Handles {
            combined,
            existing,
            quarantine,
        })
    }

    /// What [`PushView::new_objects`] finds among `items`; `packs` reads the packed ones;
    /// `kinds` are the types of the packed objects, for the links the object checks find.
    fn examine(
        &self,
        items: &[Item],
        packs: &mut PackReader<'_>,
        large_blob_bytes: u64,
        kinds: &Kinds,
    ) -> Result<Examined> {
        let existing = self
            .existing
            .odb()
            .map_err(GitError::git("opening object database"))?;
        // Asked only of objects with something to report: almost every pushed object is new
        // and has nothing, and the question costs a look-up of a loose object file for each
        // one the repository lacks. Without NO_REFRESH, libgit2 would also rescan the pack
        // folder each time (a first push of 17,000 objects spent most of its hook there); a
        // pack that appeared since the repository was opened goes unseen, so its objects
        // count as new and are reported, which errs on the safe side.
        let is_new = |id| !existing.exists_ext(id, git2::OdbLookupFlags::NO_REFRESH);
        let mut names = AcceptedNames::default();
        let mut out = Examined::default();
        let mut links = Vec::new();
        for &(id, header) in items {
            let known = match header {
                Some(Header {
                    kind,
                    size: Size::Known(size),
                    ..
                }) => Some((kind, size)),
                Some(Header {
                    kind,
                    size: Size::OfDelta,
                    at,
                    ..
                }) => packs.delta_size(at).map(|size| (kind, size)),
                None => None,
            };
            let at = header.map(|h| h.at);
            let (kind, size) = match known {
                Some(known) => known,
                None => {
                    let (size, kind) = self
                        .quarantine
                        .read_header(id)
                        .map_err(GitError::git("reading object header"))?;
                    (kind, size as u64)
                }
            };
            if header.is_none() {
                out.loose_kinds.push((id, kind));
            }
            links.clear();
            let checked = match kind {
                git2::ObjectType::Tree => {
                    let tree = self.read(packs, id, kind, at, "reading tree")?;
                    let bad = names.problems(tree.data());
                    if !bad.is_empty() && is_new(id) {
                        out.found
                            .bad_names
                            .extend(bad.into_iter().map(|reason| BadName {
                                tree: from_git2(id),
                                reason,
                            }));
                    }
                    fsck::tree(tree.data(), &mut links, &mut out.attributes)
                }
                git2::ObjectType::Commit | git2::ObjectType::Tag => {
                    match self.read_within(packs, id, kind, at, size)? {
                        Some(object) if kind == git2::ObjectType::Commit => {
                            fsck::commit(object.data(), &mut links)
                        }
                        Some(object) => fsck::tag(object.data(), &mut links),
                        None => Err(fsck::Doubt("a commit or tag too large to read here")),
                    }
                }
                git2::ObjectType::Blob => {
                    if size <= LFS_POINTER_MAX_LEN as u64 {
                        let object = self.read(packs, id, kind, at, "reading blob")?;
                        if let Some(pointer) = LfsPointer::parse(object.data())
                            && is_new(id)
                        {
                            out.found.lfs_pointers.push((from_git2(id), pointer));
                        }
                    }
                    if size >= large_blob_bytes && is_new(id) {
                        out.found.large_blobs.push((from_git2(id), size));
                    }
                    Ok(())
                }
                _ => Err(fsck::Doubt("an object of no known type")),
            };
            if let Err(doubt) = checked {
                out.doubts.push((Some(id), doubt.0));
            }
            for &link in &links {
                match kinds.get(&IdKey::of(link.id)) {
                    Some(&found) if found == link.kind => {}
                    Some(_) => out
                        .doubts
                        .push((Some(id), "a link to an object of another type")),
                    None => out.foreign.push((id, link)),
                }
            }
        }
        Ok(out)
    }

    /// A commit or tag as [`Handles::read`] reads it, within a budget: `None`, nothing read,
    /// when its header says it is larger than [`MAX_COMMIT_OR_TAG_BYTES`], or when it is
    /// packed and its pack reader cannot rebuild it (that reader's own bound, 16 MiB, covers
    /// a delta, whose header says 0). A commit inflates from a few bytes of a pack to as
    /// much as it says: read whole, a hostile one would be the server's memory, not git's.
    fn read_within(
        &self,
        packs: &mut PackReader<'_>,
        id: git2::Oid,
        kind: git2::ObjectType,
        at: Option<EntryAt>,
        size: u64,
    ) -> Result<Option<Content<'_>>> {
        if size > MAX_COMMIT_OR_TAG_BYTES {
            return Ok(None);
        }
        match at {
            Some(at) => Ok(packs.read(at).map(Content::Packed)),
            None => self
                .read(packs, id, kind, None, "reading a commit or tag")
                .map(Some),
        }
    }

    /// Reads a quarantined object that should be of type `kind`, from its pack when `at`
    /// says where it lies and [`PackReader`] can, else through libgit2: another type there
    /// means its header was misread, and the push is refused rather than judged on a wrong
    /// reading.
    fn read(
        &self,
        packs: &mut PackReader<'_>,
        id: git2::Oid,
        kind: git2::ObjectType,
        at: Option<EntryAt>,
        action: &'static str,
    ) -> Result<Content<'_>> {
        if let Some(content) = at.and_then(|at| packs.read(at)) {
            return Ok(Content::Packed(content));
        }
        let object = self.quarantine.read(id).map_err(GitError::git(action))?;
        if object.kind() != kind {
            return Err(GitError::Git {
                action,
                source: git2::Error::from_str(&format!(
                    "object {id} is a {}, not the {kind} its header said",
                    object.kind()
                )),
            });
        }
        Ok(Content::Read(object))
    }
}

/// An object's content, read from its pack or through libgit2.
enum Content<'r> {
    Packed(Rc<[u8]>),
    Read(git2::OdbObject<'r>),
}

impl Content<'_> {
    fn data(&self) -> &[u8] {
        match self {
            Content::Packed(content) => content,
            Content::Read(object) => object.data(),
        }
    }
}

/// An object to examine, with its type, size and place when its pack's index told them.
type Item = (git2::Oid, Option<Header>);

/// The types of the packed objects of a push, by id.
type Kinds = HashMap<IdKey, git2::ObjectType>;

/// An object id as a map key: compared as bytes, hashed by its first eight (with the map's
/// own random keys, so ids chosen to collide would need 64 equal bits each). A first push's
/// examination looks up some 75,000 links; whole ids through `git2::Oid`'s hash and
/// libgit2's comparison cost it a tenth of its time.
#[derive(Clone, Copy, PartialEq, Eq)]
struct IdKey([u8; 20]);

impl IdKey {
    fn of(id: git2::Oid) -> IdKey {
        let mut key = [0; 20];
        let bytes = id.as_bytes();
        let n = bytes.len().min(key.len());
        key[..n].copy_from_slice(&bytes[..n]);
        IdKey(key)
    }
}

impl std::hash::Hash for IdKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut prefix = [0; 8];
        prefix.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_ne_bytes(prefix));
    }
}

/// What one thread's examination found.
#[derive(Default)]
struct Examined {
    found: NewObjects,
    /// Objects the object checks could not vouch for, and why; `None`: a finding that
    /// counts whatever the repository holds (a `.gitattributes` blob new trees name).
    doubts: Vec<(Option<git2::Oid>, &'static str)>,
    /// Links (and the object holding each) to objects of no known type yet: loose objects
    /// of the push, or the repository's.
    foreign: Vec<(git2::Oid, Link)>,
    /// Types of the objects whose pack headers were not read.
    loose_kinds: Vec<(git2::Oid, git2::ObjectType)>,
    /// Blobs that trees name as `.gitattributes`.
    attributes: Vec<git2::Oid>,
}

impl Examined {
    fn merge(&mut self, other: Examined) {
        self.found.large_blobs.extend(other.found.large_blobs);
        self.found.lfs_pointers.extend(other.found.lfs_pointers);
        self.found.bad_names.extend(other.found.bad_names);
        self.doubts.extend(other.doubts);
        self.foreign.extend(other.foreign);
        self.loose_kinds.extend(other.loose_kinds);
        self.attributes.extend(other.attributes);
    }
}

/// The objects to examine: the packed ones in the order they lie in their packs (libgit2
/// then reads a delta soon after its base, often still in its cache of bases), then the
/// others (loose, or in a pack whose headers could not be read), asked of libgit2; each id
/// once. `ids` is every object of the quarantine, sorted, distinct.
fn work_list(ids: &[git2::Oid], packed: Vec<Header>) -> Vec<Item> {
    let mut packed_ids: Vec<git2::Oid> = packed.iter().map(|h| h.id).collect();
    packed_ids.sort_unstable();
    let count = packed_ids.len();
    packed_ids.dedup();
    let mut items: Vec<Item> = Vec::with_capacity(ids.len());
    if packed_ids.len() == count {
        items.extend(packed.iter().map(|h| (h.id, Some(*h))));
    } else {
        let mut taken = HashSet::with_capacity(packed_ids.len());
        items.extend(
            packed
                .iter()
                .filter(|h| taken.insert(h.id))
                .map(|h| (h.id, Some(*h))),
        );
    }
    let mut known = packed_ids.iter().peekable();
    for &id in ids {
        while known.next_if(|k| **k < id).is_some() {}
        if known.next_if(|k| **k == id).is_none() {
            items.push((id, None));
        }
    }
    items
}

/// The tree entry names a push's examination already found good: a first push names the same
/// few folders and files in thousands of trees, and the rule is a pure function of the name.
#[derive(Default)]
struct AcceptedNames(HashSet<Vec<u8>>);

/// Names remembered at most per examination (each at most a few hundred bytes).
const MAX_ACCEPTED_NAMES: usize = 64 * 1024;

impl AcceptedNames {
    /// What the path rule says of each entry of a raw tree (`<mode> <name>\0<id>`…).
    fn problems(&mut self, tree: &[u8]) -> Vec<String> {
        let mut problems = Vec::new();
        let mut rest = tree;
        while !rest.is_empty() {
            // Refused here; the object checks (`fsck::tree`) doubt it too.
            let Some((fsck::TreeEntry { name, .. }, next)) = fsck::split_entry(rest) else {
                problems.push("malformed tree".to_owned());
                break;
            };
            rest = next;
            if self.0.contains(name) {
                continue;
            }
            match crate::entry_name_problem(name) {
                Some(problem) => problems.push(problem),
                None if self.0.len() < MAX_ACCEPTED_NAMES => {
                    self.0.insert(name.to_vec());
                }
                None => {}
            }
        }
        problems
    }
}

impl PushView {
    /// Opens the bare repository `git_dir` together with the quarantine folder git names in
    /// `GIT_QUARANTINE_PATH`.
    pub fn open(git_dir: &Path, quarantine_dir: &Path) -> Result<PushView> {
        Ok(PushView {
            own: Handles::open(git_dir, quarantine_dir)?,
            dirs: Some((git_dir.to_owned(), quarantine_dir.to_owned())),
        })
    }

    /// Opens the repository for a push that brought no objects (deletions only): git makes
    /// no quarantine then.
    pub fn open_without_quarantine(git_dir: &Path) -> Result<PushView> {
        let open =
            || git2::Repository::open_bare(git_dir).map_err(GitError::git("opening repository"));
        Ok(PushView {
            own: Handles {
                combined: open()?,
                existing: open()?,
                quarantine: git2::Odb::new().map_err(GitError::git("opening quarantine"))?,
            },
            dirs: None,
        })
    }

    /// Lists the quarantine's objects that the repository does not have yet, picks out
    /// large blobs, LFS pointers and tree entries with names the path rule refuses, and
    /// checks every object as git's `fsck` would ([`crate::fsck`]; what those checks cannot
    /// vouch for is checked by git itself, with `git`). Lists the objects from the packs'
    /// indexes and the loose objects' folders, reads packed objects' headers from their
    /// entries ([`pack_headers`]), and trees, commits, tags and blobs small enough to be
    /// pointers from the packs ([`PackReader`]); libgit2 for whatever those do not read.
    ///
    /// Every new tree is checked, whatever refers to it (a commit, a tag, nothing), so no
    /// path that breaks the rule can become reachable through this push.
    ///
    /// A large push (a repository's first brings every tree of its history) is shared out
    /// between a few threads, each reading a run of the objects (in pack order) through
    /// handles of its own; the findings come out in id order however many threads read them.
    pub fn new_objects(&self, large_blob_bytes: u64, git: &GitChecks) -> Result<NewObjects> {
        let Some((git_dir, quarantine_dir)) = &self.dirs else {
            return Ok(NewObjects::default());
        };
        let contents = match pack_headers::contents(quarantine_dir) {
            Some(contents) => contents,
            // What the listing does not read (alternates, an index it does not know) is
            // listed by libgit2, and every object's header asked of it.
            None => {
                let mut ids = Vec::new();
                self.own
                    .quarantine
                    .foreach(|oid| {
                        ids.push(*oid);
                        true
                    })
                    .map_err(GitError::git("listing pushed objects"))?;
                // A pack and a loose copy of one object may both be present.
                ids.sort_unstable();
                ids.dedup();
                pack_headers::Contents {
                    ids,
                    packed: Vec::new(),
                    packs: Vec::new(),
                }
            }
        };
        // One pack whose every object's header was read (a push's usual quarantine): its
        // entries are the ids, each once (an index lists each id once), nothing to merge.
        let items = if contents.packs.len() == 1 && contents.packed.len() == contents.ids.len() {
            contents.packed.iter().map(|h| (h.id, Some(*h))).collect()
        } else {
            work_list(&contents.ids, contents.packed)
        };
        let kinds: Kinds = items
            .iter()
            .filter_map(|(id, header)| header.map(|h| (IdKey::of(*id), h.kind)))
            .collect();
        let (packs, kinds) = (&contents.packs, &kinds);
        let workers = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(MAX_WORKERS)
            .min(items.len() / MIN_OBJECTS_PER_WORKER)
            .max(1);
        let per_worker = items.len().div_ceil(workers).max(1);
        let mut examined = std::thread::scope(|scope| {
            let mut parts = items.chunks(per_worker);
            let first = parts.next().unwrap_or_default();
            let others: Vec<_> = parts
                .map(|part| {
                    scope.spawn(move || {
                        Handles::open(git_dir, quarantine_dir)?.examine(
                            part,
                            &mut PackReader::new(packs),
                            large_blob_bytes,
                            kinds,
                        )
                    })
                })
                .collect();
            // This thread reads the first run itself, through the view's own handles.
            let mut examined =
                self.own
                    .examine(first, &mut PackReader::new(packs), large_blob_bytes, kinds)?;
            for other in others {
                // A thread that panicked hit a bug: the panic goes on here.
                let part = other
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
                examined.merge(part);
            }
            Ok::<_, GitError>(examined)
        })?;
        self.check_foreign_links(&mut examined)?;
        self.check_attributes(&mut examined)?;
        let existing = self
            .own
            .existing
            .odb()
            .map_err(GitError::git("opening object database"))?;
        let is_new = |id: &git2::Oid| !existing.exists_ext(*id, git2::OdbLookupFlags::NO_REFRESH);
        // An object the repository holds already was accepted before (a delta base the
        // pack was completed with, or an object sent again).
        let doubt = examined
            .doubts
            .iter()
            .find(|(id, _)| id.as_ref().is_none_or(is_new));
        let mut found = examined.found;
        if let Some((id, why)) = doubt {
            found.doubted = Some(match id {
                Some(id) => format!("{why} (object {id})"),
                None => (*why).to_owned(),
            });
            // A push refused for its names already needs no more checks.
            if found.bad_names.is_empty() {
                let new: Vec<git2::Oid> = items.iter().map(|(id, _)| *id).filter(is_new).collect();
                found.refused_by_git = fsck_by_git(git, git_dir, quarantine_dir, &new)?;
            }
        }
        // Read in pack order; reported in id order, a tree's entries in their order.
        found.large_blobs.sort_by(|a, b| a.0.cmp(&b.0));
        found.lfs_pointers.sort_by(|a, b| a.0.cmp(&b.0));
        found.bad_names.sort_by(|a, b| a.tree.cmp(&b.tree));
        Ok(found)
    }

    /// Checks the links the examination could not settle from the pack headers: each must
    /// name an object of the push (read loose) or of the repository, of the type it says.
    fn check_foreign_links(&self, examined: &mut Examined) -> Result<()> {
        if examined.foreign.is_empty() {
            return Ok(());
        }
        // New trees of a push name the same held files over and over (each commit's root
        // names every file): each object is looked up once.
        examined
            .foreign
            .sort_unstable_by_key(|(_, link)| (link.id, link.kind.raw()));
        examined
            .foreign
            .dedup_by_key(|(_, link)| (link.id, link.kind.raw()));
        let loose: Kinds = examined
            .loose_kinds
            .iter()
            .map(|&(id, kind)| (IdKey::of(id), kind))
            .collect();
        let existing = self
            .own
            .existing
            .odb()
            .map_err(GitError::git("opening object database"))?;
        for (from, link) in &examined.foreign {
            let kind = match loose.get(&IdKey::of(link.id)) {
                Some(&kind) => Some(kind),
                None => existing.read_header(link.id).ok().map(|(_, kind)| kind),
            };
            match kind {
                Some(kind) if kind == link.kind => {}
                Some(_) => examined
                    .doubts
                    .push((Some(*from), "a link to an object of another type")),
                None => examined
                    .doubts
                    .push((Some(*from), "a link to an object neither pushed nor held")),
            }
        }
        Ok(())
    }

    /// Checks the blobs trees name `.gitattributes`, wherever they are (the push or the
    /// repository), each once.
    fn check_attributes(&self, examined: &mut Examined) -> Result<()> {
        examined.attributes.sort_unstable();
        examined.attributes.dedup();
        let odb = self
            .own
            .combined
            .odb()
            .map_err(GitError::git("opening object database"))?;
        for &id in &examined.attributes {
            let fine = match odb.read_header(id) {
                Ok((size, git2::ObjectType::Blob))
                    if size as u64 <= fsck::MAX_GITATTRIBUTES_BYTES =>
                {
                    let blob = odb
                        .read(id)
                        .map_err(GitError::git("reading .gitattributes"))?;
                    fsck::gitattributes(blob.data()).map_err(|d| d.0)
                }
                Ok(_) => Err("a .gitattributes that is large or not a file"),
                Err(_) => Err("a .gitattributes neither pushed nor held"),
            };
            if let Err(why) = fine {
                // Counts even if the repository holds the blob: a new tree names it.
                examined.doubts.push((None, why));
            }
        }
        Ok(())
    }

    /// How `old` → `new` moves a ref (`None` = absent).
    pub fn ref_move(&self, old: Option<&GitOid>, new: Option<&GitOid>) -> Result<RefMove> {
        let (old, new) = match (old, new) {
            (None, None) => return Ok(RefMove::Delete),
            (None, Some(_)) => return Ok(RefMove::Create),
            (Some(_), None) => return Ok(RefMove::Delete),
            (Some(old), Some(new)) => (to_git2(old), to_git2(new)),
        };
        if old == new {
            return Ok(RefMove::FastForward);
        }
        let (Some(old), Some(new)) = (self.peel_commit(old)?, self.peel_commit(new)?) else {
            return Ok(RefMove::Rewrite);
        };
        let descends = self
            .own
            .combined
            .graph_descendant_of(new, old)
            .map_err(GitError::git("comparing history"))?;
        Ok(if descends {
            RefMove::FastForward
        } else {
            RefMove::Rewrite
        })
    }

    /// Whether `oid` names a commit (branches may point at nothing else).
    pub fn is_commit(&self, oid: &GitOid) -> Result<bool> {
        match self
            .own
            .combined
            .odb()
            .and_then(|o| o.read_header(to_git2(oid)))
        {
            Ok((_, kind)) => Ok(kind == git2::ObjectType::Commit),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(false),
            Err(e) => Err(GitError::Git {
                action: "reading object header",
                source: e,
            }),
        }
    }

    /// Where the `blobs` appear in the commits reachable from `tips` but not from
    /// `known` (the refs before the push): the first path found for each, to name files in
    /// a refusal. Blobs not found are left out.
    pub fn paths_of(
        &self,
        blobs: &[GitOid],
        tips: &[GitOid],
        known: &[GitOid],
    ) -> Result<HashMap<GitOid, String>> {
        let mut wanted: HashSet<git2::Oid> = blobs.iter().map(to_git2).collect();
        let mut found = HashMap::new();
        let mut walk = self
            .own
            .combined
            .revwalk()
            .map_err(GitError::git("walking history"))?;
        for tip in tips {
            if let Ok(Some(commit)) = self.peel_commit(to_git2(tip)) {
                walk.push(commit)
                    .map_err(GitError::git("walking history"))?;
            }
        }
        for seen in known {
            if let Ok(Some(commit)) = self.peel_commit(to_git2(seen)) {
                // A ref pointing outside this history cannot be hidden; it does no harm.
                let _ = walk.hide(commit);
            }
        }
        let mut trees_seen = HashSet::new();
        for commit in walk.take(MAX_COMMITS_SEARCHED) {
            if wanted.is_empty() {
                break;
            }
            let commit = commit.map_err(GitError::git("walking history"))?;
            let tree = self
                .own
                .combined
                .find_commit(commit)
                .and_then(|c| c.tree())
                .map_err(GitError::git("reading tree"))?;
            self.search_tree(&tree, "", &mut wanted, &mut trees_seen, &mut found)?;
        }
        Ok(found)
    }

    fn search_tree(
        &self,
        tree: &git2::Tree<'_>,
        prefix: &str,
        wanted: &mut HashSet<git2::Oid>,
        trees_seen: &mut HashSet<git2::Oid>,
        found: &mut HashMap<GitOid, String>,
    ) -> Result<()> {
        if !trees_seen.insert(tree.id()) {
            return Ok(());
        }
        for entry in tree.iter() {
            let name = String::from_utf8_lossy(entry.name_bytes());
            let path = if prefix.is_empty() {
                name.into_owned()
            } else {
                format!("{prefix}/{name}")
            };
            match entry.kind() {
                Some(git2::ObjectType::Tree) => {
                    let sub = self
                        .own
                        .combined
                        .find_tree(entry.id())
                        .map_err(GitError::git("reading tree"))?;
                    self.search_tree(&sub, &path, wanted, trees_seen, found)?;
                }
                Some(git2::ObjectType::Blob) if wanted.remove(&entry.id()) => {
                    found.insert(from_git2(entry.id()), path);
                }
                _ => {}
            }
            if wanted.is_empty() {
                break;
            }
        }
        Ok(())
    }

    /// The commit `oid` leads to through tags; `None` for anything else or a missing object.
    fn peel_commit(&self, oid: git2::Oid) -> Result<Option<git2::Oid>> {
        let object = match self.own.combined.find_object(oid, None) {
            Ok(object) => object,
            Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
            Err(e) => {
                return Err(GitError::Git {
                    action: "reading object",
                    source: e,
                });
            }
        };
        Ok(object
            .peel(git2::ObjectType::Commit)
            .ok()
            .map(|commit| commit.id()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_tree(names: &[&[u8]]) -> Vec<u8> {
        let mut tree = Vec::new();
        for name in names {
            tree.extend_from_slice(b"100644 ");
            tree.extend_from_slice(name);
            tree.push(0);
            tree.extend_from_slice(&[7u8; 20]);
        }
        tree
    }

    #[test]
    fn names_found_good_are_remembered_and_bad_ones_reported_every_time() {
        let mut names = AcceptedNames::default();
        let tree = raw_tree(&[b"README.md", b"..", b"ok.txt", b".git"]);
        for _ in 0..2 {
            let problems = names.problems(&tree);
            assert_eq!(problems.len(), 2, "{problems:?}");
        }
        assert_eq!(names.0.len(), 2);
        assert!(
            names
                .problems(&raw_tree(&[b"README.md", b"src"]))
                .is_empty()
        );
    }

    #[test]
    fn a_truncated_tree_is_a_problem() {
        let mut names = AcceptedNames::default();
        let mut tree = raw_tree(&[b"a.txt"]);
        tree.truncate(tree.len() - 1);
        assert_eq!(names.problems(&tree), ["malformed tree"]);
        assert_eq!(names.problems(b"100644 no-nul"), ["malformed tree"]);
        assert!(names.problems(b"").is_empty());
    }
}
