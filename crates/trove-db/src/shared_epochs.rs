//! The write epochs of a SQLite database shared by every process that opens it: the serving
//! process, the admin CLI run beside it, a second `trove serve` on the same file. A file next
//! to the database (`<database>-epochs`) holds the three counters of `listing_epoch.rs` — the
//! writes that can change a listing's answer or a repository's row, those that can change
//! what a token resolves to, and those that can change what an LFS download needs to know
//! (an object linked to or deleted from a repository, its Xet file recorded, compacted or
//! forgotten) — and every process moves them after such a write has committed,
//! so that a cache in any of them can tell at its next read that the database changed under
//! it, whichever process wrote.
//!
//! Reading costs one `pread` of 48 bytes and one `fstat` (no lock, no database transaction):
//! what lets a request ask "did anything change?" for far less than the query it would spare.
//!
//! Layout: three slots of 16 bytes (listings, accounts, storage), each a little-endian `u64` counter
//! followed by its check word ([`check_of`]). A writer holds an exclusive `flock` on the file
//! while it reads, increments and writes a slot, so two writers never lose a step. A reader
//! takes no lock: the check word scatters the counter's bits (a multiplication and a
//! rotation), so a slot caught mid-write — bytes of the old value with bytes of the new —
//! fails its check but by a freak match, and reads as "unknown" (the caller then leaves its
//! cache alone). Caches still expire their entries (their time-to-live), which bounds what
//! even such a freak could keep.
//!
//! Only writes through Trove's own database handle move the counters: a row changed by hand
//! (the `sqlite3` shell) while a server runs is seen once the caches' entries expire.
//!
//! A file removed, replaced or damaged while processes run (by hand: Trove never removes it)
//! must not let a cache keep what it should drop. So a counter never starts again from a
//! value a cache may have seen: a new file's counters, and a damaged slot's next value, are
//! drawn at random from the upper half of the range ([`fresh_start`]), a jump a cache takes
//! as a change (it empties itself) or as an epoch it has not reached (it keeps nothing) —
//! never as the epoch of what it holds. A process whose file was removed or replaced (its
//! handle's link count 0: one `fstat` with each read, and after each write, which then moves
//! the new file too) opens the file at the path again, made anew if missing. And a counter
//! read lower than one this process saw before (an old copy of the file put back) is moved
//! past the highest seen, and read as "unknown" meanwhile. What no process can tell: an old
//! copy put back before any reader saw the newer value; never put an old copy back (the file
//! holds no data: remove it instead).
//!
//! Nothing is fsynced: the counters matter only to processes running now, which all see the
//! page cache; after a crash of the machine every cache starts empty.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Which counter a write moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Repositories created, deleted, moved or re-set, their index rows, their likes.
    Listings = 0,
    /// Tokens revoked, users disabled or renamed, memberships changed.
    Accounts = 1,
    /// LFS objects linked to or deleted from repositories, Xet files recorded, repointed by
    /// compaction or forgotten by garbage collection.
    Storage = 2,
}

const SLOTS: u64 = 3;
const SLOT_LEN: u64 = 16;
const FILE_LEN: u64 = SLOTS * SLOT_LEN;

/// The three counters, as read together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Counters {
    pub(crate) listings: u64,
    pub(crate) accounts: u64,
    pub(crate) storage: u64,
}

impl Counters {
    pub(crate) fn of(&self, slot: Slot) -> u64 {
        match slot {
            Slot::Listings => self.listings,
            Slot::Accounts => self.accounts,
            Slot::Storage => self.storage,
        }
    }
}

/// The word stored after a counter: its bits scattered, so that halves of two counters do
/// not make a counter and its check.
fn check_of(counter: u64) -> u64 {
    (counter ^ 0x5452_4f56_4550_4f43) // "TROVEPOC"
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .rotate_left(29)
}

/// Where a new counter starts, or a damaged one goes on: a random value in [2^62, 2^63),
/// unlike any a cache can have seen of a counter counted from an earlier start (there is
/// room for 2^62 steps above it).
fn fresh_start() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // A per-process random key (the standard library's HashMap seed) hashing the time: a
    // fresh value for each call without a dependency.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (hasher.finish() >> 2) | (1 << 62)
}

fn encode(counter: u64) -> [u8; SLOT_LEN as usize] {
    let mut slot = [0u8; SLOT_LEN as usize];
    slot[..8].copy_from_slice(&counter.to_le_bytes());
    slot[8..].copy_from_slice(&check_of(counter).to_le_bytes());
    slot
}

/// The counter of a slot's bytes, `None` when its check does not match.
fn decode(slot: &[u8]) -> Option<u64> {
    let counter = u64::from_le_bytes(slot.get(..8)?.try_into().ok()?);
    let check = u64::from_le_bytes(slot.get(8..16)?.try_into().ok()?);
    (check == check_of(counter)).then_some(counter)
}

/// The epochs file of one database.
#[derive(Debug)]
pub(crate) struct SharedEpochs {
    path: PathBuf,
    /// The open file; replaced when the one at `path` is no longer it.
    file: std::sync::Mutex<std::sync::Arc<File>>,
    /// The highest value of each counter this process has read.
    seen: [std::sync::atomic::AtomicU64; SLOTS as usize],
    /// Whether an unreadable file was logged already.
    warned: std::sync::atomic::AtomicBool,
}

/// Opens the epochs file at `path`, creating it if missing; the slots it lacks (a new or a
/// shorter file) are written with a fresh start, the others kept.
fn open_file(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    file.lock()?;
    let made = (|| {
        let whole_slots = file.metadata()?.len() / SLOT_LEN;
        for slot in whole_slots..SLOTS {
            file.write_all_at(&encode(fresh_start()), slot * SLOT_LEN)?;
        }
        Ok(())
    })();
    file.unlock()?;
    made.map(|()| file)
}

/// Rewrites `slot`'s counter in `file` under the file's lock: `next` is given the counter as
/// it is (`None` when the slot is damaged or the file cut short) and says what to write
/// (`None`: leave it).
fn update_slot(
    file: &File,
    slot: Slot,
    next: impl FnOnce(Option<u64>) -> Option<u64>,
) -> io::Result<()> {
    let at = slot as u64 * SLOT_LEN;
    file.lock()?;
    let mut bytes = [0u8; SLOT_LEN as usize];
    let now = file
        .read_exact_at(&mut bytes, at)
        .ok()
        .and_then(|()| decode(&bytes));
    let written = match next(now) {
        Some(value) => file.write_all_at(&encode(value), at),
        None => Ok(()),
    };
    let unlocked = file.unlock();
    written.and(unlocked)
}

/// Moves `slot`'s counter in `file` by one. A slot that fails its check was damaged (by
/// hand: writers hold the lock) or cut short: it goes on from a fresh start, never from a
/// value a cache may have seen.
fn bump_file(file: &File, slot: Slot) -> io::Result<()> {
    update_slot(file, slot, |now| {
        Some(now.map_or_else(fresh_start, |counter| counter.wrapping_add(1)))
    })
}

/// Moves `slot`'s counter in `file` past `seen` if it is not already.
fn move_past(file: &File, slot: Slot, seen: u64) -> io::Result<()> {
    update_slot(file, slot, |now| match now {
        Some(counter) if counter > seen => None,
        _ => Some(seen.wrapping_add(1)),
    })
}

/// Whether `file` is still linked at some path (not removed or replaced).
fn still_linked(file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    file.metadata().is_ok_and(|meta| meta.nlink() > 0)
}

impl SharedEpochs {
    /// The epochs file of the SQLite database at `database` (see [`open_file`]).
    pub(crate) fn open(database: &Path) -> io::Result<SharedEpochs> {
        let path = SharedEpochs::path_of(database);
        let file = open_file(&path)?;
        Ok(SharedEpochs {
            path,
            file: std::sync::Mutex::new(std::sync::Arc::new(file)),
            seen: Default::default(),
            warned: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The open file, first opened again at the path if the one held was removed or
    /// replaced; `None` while it cannot be.
    fn current(&self) -> Option<std::sync::Arc<File>> {
        let held = {
            // A poisoned lock still holds a usable handle.
            let guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
            std::sync::Arc::clone(&guard)
        };
        if still_linked(&held) {
            return Some(held);
        }
        let reopened = match open_file(&self.path) {
            Ok(file) => std::sync::Arc::new(file),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e,
                    "the epochs file was removed and cannot be made again: caches stay unused");
                return None;
            }
        };
        tracing::warn!(path = %self.path.display(), "the epochs file was removed or replaced: opened anew");
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        *guard = std::sync::Arc::clone(&reopened);
        Some(reopened)
    }

    /// Where the epochs file of the database at `database` is: beside it, its name and
    /// `-epochs` (as SQLite's own `-wal` and `-shm`) — beside the file itself, symbolic links
    /// followed, so that every spelling of the path that SQLite opens as the same database
    /// names the same epochs file.
    pub(crate) fn path_of(database: &Path) -> PathBuf {
        let database = std::fs::canonicalize(database).unwrap_or_else(|_| database.to_owned());
        let mut name = database.into_os_string();
        name.push("-epochs");
        PathBuf::from(name)
    }

    /// The counters as they are now; `None` when the file could not be read or a slot was
    /// caught mid-write.
    pub(crate) fn read(&self) -> Option<Counters> {
        let file = self.current()?;
        let mut all = [0u8; FILE_LEN as usize];
        let read = file.read_exact_at(&mut all, 0).ok().and_then(|()| {
            let slot = |i: usize| decode(&all[i * SLOT_LEN as usize..(i + 1) * SLOT_LEN as usize]);
            Some(Counters {
                listings: slot(0)?,
                accounts: slot(1)?,
                storage: slot(2)?,
            })
        });
        if read.is_none() && !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
            // Once per process: a slot caught mid-write reads so too, harmlessly.
            tracing::warn!(path = %self.path.display(),
                "the epochs file cannot be read (cut short or damaged?): the request caches \
                 are not used until it is written again");
        }
        let counters = read?;
        let mut went_back = false;
        for slot in [Slot::Listings, Slot::Accounts, Slot::Storage] {
            let value = counters.of(slot);
            let seen =
                self.seen[slot as usize].fetch_max(value, std::sync::atomic::Ordering::AcqRel);
            if value < seen {
                // Lower than read before: an old copy put back (or a read that began before
                // one that saw a bump, which the move below makes a harmless extra step).
                went_back = true;
                if let Err(e) = move_past(&file, slot, seen) {
                    tracing::warn!(path = %self.path.display(), error = %e,
                        "an epochs counter went back and cannot be moved past what was seen");
                }
            }
        }
        (!went_back).then_some(counters)
    }

    /// Moves `slot`'s counter by one, under the file's lock.
    pub(crate) fn bump(&self, slot: Slot) -> io::Result<()> {
        let file = self
            .current()
            .ok_or_else(|| io::Error::other("the epochs file cannot be opened again"))?;
        bump_file(&file, slot)?;
        // Removed or replaced while this bump ran: the processes that opened the new file
        // would not see it; move that one too (once: a second removal meanwhile is the hand
        // of someone racing the server on purpose).
        if !still_linked(&file) {
            let again = self
                .current()
                .ok_or_else(|| io::Error::other("the epochs file cannot be opened again"))?;
            bump_file(&again, slot)?;
        }
        Ok(())
    }

    /// Moves `slot`'s counter, logging (never failing the write that already committed)
    /// when the file cannot be written: the other processes' caches then expire by their
    /// time-to-live only.
    pub(crate) fn bump_or_log(&self, slot: Slot) {
        if let Err(e) = self.bump(slot) {
            tracing::error!(
                path = %self.path.display(),
                error = %e,
                "could not record a write in the shared epochs file: other processes' caches \
                 may answer from before it until they expire"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moved(before: Counters, after: Counters) -> (u64, u64, u64) {
        (
            after.listings.wrapping_sub(before.listings),
            after.accounts.wrapping_sub(before.accounts),
            after.storage.wrapping_sub(before.storage),
        )
    }

    #[test]
    fn a_new_file_starts_every_counter_fresh_and_each_bump_moves_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("trove.db");
        let epochs = SharedEpochs::open(&db).expect("open");
        assert!(dir.path().join("trove.db-epochs").exists());
        let start = epochs.read().expect("read");
        for counter in [start.listings, start.accounts, start.storage] {
            assert!((1 << 62..1 << 63).contains(&counter), "{counter}");
        }
        epochs.bump(Slot::Accounts).expect("bump");
        assert_eq!(moved(start, epochs.read().expect("read")), (0, 1, 0));
        epochs.bump(Slot::Listings).expect("bump");
        epochs.bump(Slot::Listings).expect("bump");
        epochs.bump(Slot::Storage).expect("bump");
        assert_eq!(moved(start, epochs.read().expect("read")), (2, 1, 1));
    }

    #[test]
    fn every_handle_on_the_file_sees_the_others_bumps_and_reopening_keeps_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("trove.db");
        let server = SharedEpochs::open(&db).expect("open");
        let start = server.read().expect("read");
        let admin_cli = SharedEpochs::open(&db).expect("open");
        admin_cli.bump(Slot::Accounts).expect("bump");
        assert_eq!(moved(start, server.read().expect("read")), (0, 1, 0));
        drop(admin_cli);
        let again = SharedEpochs::open(&db).expect("open");
        assert_eq!(moved(start, again.read().expect("read")), (0, 1, 0));
    }

    #[test]
    fn a_damaged_slot_reads_as_unknown_and_goes_on_from_a_fresh_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("trove.db");
        let epochs = SharedEpochs::open(&db).expect("open");
        let file = epochs.current().expect("file");
        file.write_all_at(&encode(5), SLOT_LEN).expect("write");
        // The counter's first half from one value, the rest from another: a torn slot.
        let mut torn = encode(0x0000_0001_0000_0000);
        torn[..4].copy_from_slice(&encode(7)[..4]);
        file.write_all_at(&torn, SLOT_LEN).expect("write");
        assert_eq!(epochs.read(), None);
        epochs.bump(Slot::Accounts).expect("bump");
        let after = epochs.read().expect("mended").accounts;
        assert!(after >= 1 << 62, "not from 0 or 5: {after}");
    }

    #[test]
    fn concurrent_bumps_from_separate_handles_lose_no_step() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("trove.db");
        let start = SharedEpochs::open(&db).expect("open").read().expect("read");
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let db = db.clone();
                std::thread::spawn(move || {
                    let own = SharedEpochs::open(&db).expect("open");
                    for _ in 0..250 {
                        own.bump(Slot::Listings).expect("bump");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let end = SharedEpochs::open(&db).expect("open").read().expect("read");
        assert_eq!(moved(start, end), (1000, 0, 0));
    }

    #[test]
    fn a_database_named_through_a_symbolic_link_shares_the_real_files_epochs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("trove.db");
        std::fs::write(&db, b"").expect("database file");
        let link = dir.path().join("link.db");
        std::os::unix::fs::symlink(&db, &link).expect("symlink");
        let server = SharedEpochs::open(&db).expect("open");
        let start = server.read().expect("read");
        SharedEpochs::open(&link)
            .expect("open through the link")
            .bump(Slot::Accounts)
            .expect("bump");
        assert_eq!(moved(start, server.read().expect("read")), (0, 1, 0));
        assert!(!dir.path().join("link.db-epochs").exists());
    }

    #[test]
    fn a_short_file_is_made_whole_at_open_keeping_its_whole_slots() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("trove.db");
        let path = dir.path().join("trove.db-epochs");
        let mut cut = encode(5).to_vec();
        cut.extend_from_slice(&encode(9));
        cut.extend_from_slice(b"xx");
        std::fs::write(&path, cut).expect("write");
        let epochs = SharedEpochs::open(&db).expect("open");
        let read = epochs.read().expect("read");
        assert_eq!((read.listings, read.accounts), (5, 9));
        assert!(read.storage >= 1 << 62);
    }

    #[test]
    fn a_file_removed_or_replaced_under_a_process_is_followed_at_its_next_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("trove.db");
        let path = dir.path().join("trove.db-epochs");
        let server = SharedEpochs::open(&db).expect("open");
        let before = server.read().expect("read");
        std::fs::remove_file(&path).expect("remove");
        // The admin CLI, started now, makes a new file and moves it.
        let admin_cli = SharedEpochs::open(&db).expect("open");
        admin_cli.bump(Slot::Accounts).expect("bump");
        // The server follows the new file at once: its counters are not the old ones (a
        // fresh start lower than what it saw reads as unknown once, then is moved past).
        let after = server.read().or_else(|| server.read()).expect("reopened");
        assert_ne!(after.accounts, before.accounts);
        admin_cli.bump(Slot::Accounts).expect("bump");
        assert_eq!(moved(after, server.read().expect("read")), (0, 1, 0));

        // Replaced by a rename: the same.
        let other = dir.path().join("elsewhere");
        std::fs::write(&other, [encode(1), encode(2), encode(3)].concat()).expect("write");
        std::fs::rename(&other, &path).expect("rename");
        // Lower than what the server read before: unknown once, then moved past it.
        assert_eq!(server.read(), None);
        let moved_on = server.read().expect("read");
        assert!(moved_on.accounts > after.accounts, "{moved_on:?}");
    }

    #[test]
    fn a_bump_after_a_removal_moves_the_new_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("trove.db");
        let path = dir.path().join("trove.db-epochs");
        let server = SharedEpochs::open(&db).expect("open");
        // Removed while the server held it: a bump that landed in the removed file is lost
        // to the others; the server's next bump goes to the new one, which they read.
        let held = server.current().expect("file");
        std::fs::remove_file(&path).expect("remove");
        let admin_cli = SharedEpochs::open(&db).expect("open");
        let start = admin_cli.read().expect("read");
        bump_file(&held, Slot::Accounts).expect("bump the removed file");
        assert!(!still_linked(&held));
        server.bump(Slot::Accounts).expect("bump");
        assert_eq!(moved(start, admin_cli.read().expect("read")).1, 1);
    }

    #[test]
    fn an_old_copy_put_back_after_a_newer_value_was_read_is_moved_past_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("trove.db");
        let path = dir.path().join("trove.db-epochs");
        let server = SharedEpochs::open(&db).expect("open");
        let saved = std::fs::read(&path).expect("copy");
        let before = server.read().expect("read");
        SharedEpochs::open(&db)
            .expect("open")
            .bump(Slot::Accounts)
            .expect("bump");
        let newer = server.read().expect("read");
        assert_eq!(moved(before, newer), (0, 1, 0));
        // Written back in place (same file): the counter went back to a value seen before.
        std::fs::write(&path, &saved).expect("put back");
        assert_eq!(server.read(), None, "never the old value again");
        let after = server.read().expect("read");
        assert!(after.accounts > newer.accounts, "{after:?} {newer:?}");
    }
}
