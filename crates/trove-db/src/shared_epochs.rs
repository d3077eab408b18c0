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
//! Reading costs one `pread` of 48 bytes (no lock, no database transaction): what lets a
//! request ask "did anything change?" for far less than the query it would spare.
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
    file: File,
}

impl SharedEpochs {
    /// The epochs file of the SQLite database at `database`, created (every counter at 0)
    /// if missing; the slots a shorter file lacks are added at 0, the others kept.
    pub(crate) fn open(database: &Path) -> io::Result<SharedEpochs> {
        let path = SharedEpochs::path_of(database);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        file.lock()?;
        let made = (|| {
            let whole_slots = file.metadata()?.len() / SLOT_LEN;
            for slot in whole_slots..SLOTS {
                file.write_all_at(&encode(0), slot * SLOT_LEN)?;
            }
            Ok(())
        })();
        file.unlock()?;
        made.map(|()| SharedEpochs { path, file })
    }

    /// Where the epochs file of the database at `database` is: beside it, its name and
    /// `-epochs` (as SQLite's own `-wal` and `-shm`).
    pub(crate) fn path_of(database: &Path) -> PathBuf {
        let mut name = database.as_os_str().to_owned();
        name.push("-epochs");
        PathBuf::from(name)
    }

    /// The counters as they are now; `None` when the file could not be read or a slot was
    /// caught mid-write.
    pub(crate) fn read(&self) -> Option<Counters> {
        let mut all = [0u8; FILE_LEN as usize];
        self.file.read_exact_at(&mut all, 0).ok()?;
        let slot = |i: usize| decode(&all[i * SLOT_LEN as usize..(i + 1) * SLOT_LEN as usize]);
        Some(Counters {
            listings: slot(0)?,
            accounts: slot(1)?,
            storage: slot(2)?,
        })
    }

    /// Moves `slot`'s counter by one, under the file's lock.
    pub(crate) fn bump(&self, slot: Slot) -> io::Result<()> {
        let at = slot as u64 * SLOT_LEN;
        self.file.lock()?;
        let moved = (|| {
            let mut bytes = [0u8; SLOT_LEN as usize];
            self.file.read_exact_at(&mut bytes, at)?;
            // A slot that fails its check was damaged (by hand: writers hold the lock); any
            // new value tells the readers it moved.
            let next = decode(&bytes).unwrap_or(0).wrapping_add(1);
            self.file.write_all_at(&encode(next), at)
        })();
        let unlocked = self.file.unlock();
        moved.and(unlocked)
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

    fn counters(listings: u64, accounts: u64, storage: u64) -> Option<Counters> {
        Some(Counters {
            listings,
            accounts,
            storage,
        })
    }

    #[test]
    fn a_new_file_starts_both_counters_at_zero_and_each_bump_moves_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("trove.db");
        let epochs = SharedEpochs::open(&db).expect("open");
        assert!(dir.path().join("trove.db-epochs").exists());
        assert_eq!(epochs.read(), counters(0, 0, 0));
        epochs.bump(Slot::Accounts).expect("bump");
        assert_eq!(epochs.read(), counters(0, 1, 0));
        epochs.bump(Slot::Listings).expect("bump");
        epochs.bump(Slot::Listings).expect("bump");
        assert_eq!(epochs.read(), counters(2, 1, 0));
    }

    #[test]
    fn every_handle_on_the_file_sees_the_others_bumps_and_reopening_keeps_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("trove.db");
        let server = SharedEpochs::open(&db).expect("open");
        let admin_cli = SharedEpochs::open(&db).expect("open");
        admin_cli.bump(Slot::Accounts).expect("bump");
        assert_eq!(server.read(), counters(0, 1, 0));
        drop(admin_cli);
        let again = SharedEpochs::open(&db).expect("open");
        assert_eq!(again.read(), counters(0, 1, 0));
    }

    #[test]
    fn a_slot_that_fails_its_check_reads_as_unknown_and_a_bump_mends_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("trove.db");
        let epochs = SharedEpochs::open(&db).expect("open");
        epochs.bump(Slot::Accounts).expect("bump");
        // The counter's first half from one value, the rest from another: a torn slot.
        let mut torn = encode(0x0000_0001_0000_0000);
        torn[..4].copy_from_slice(&encode(7)[..4]);
        epochs.file.write_all_at(&torn, SLOT_LEN).expect("write");
        assert_eq!(epochs.read(), None);
        epochs.bump(Slot::Accounts).expect("bump");
        assert!(epochs.read().is_some());
    }

    #[test]
    fn concurrent_bumps_from_separate_handles_lose_no_step() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("trove.db");
        SharedEpochs::open(&db).expect("open");
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
        assert_eq!(
            SharedEpochs::open(&db).expect("open").read(),
            counters(1000, 0, 0)
        );
    }

    #[test]
    fn a_short_file_is_made_whole_at_open_keeping_its_whole_slots() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("trove.db");
        std::fs::write(dir.path().join("trove.db-epochs"), b"xx").expect("write");
        assert_eq!(
            SharedEpochs::open(&db).expect("open").read(),
            counters(0, 0, 0)
        );
        // A file cut after two slots: both kept, the third added.
        let mut older = encode(5).to_vec();
        older.extend_from_slice(&encode(9));
        std::fs::write(dir.path().join("trove.db-epochs"), older).expect("write");
        let epochs = SharedEpochs::open(&db).expect("open");
        assert_eq!(epochs.read(), counters(5, 9, 0));
        epochs.bump(Slot::Storage).expect("bump");
        assert_eq!(epochs.read(), counters(5, 9, 1));
    }
}
