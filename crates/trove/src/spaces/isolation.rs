//! Each Space's app as its own user: the uid (and gid, the same number) it runs as, the
//! host's accounts that number must not belong to, and the folders only the app and the hub
//! may enter — so that one Space's app reads neither another Space's files (private ones
//! included) nor, through `/proc/<pid>/environ`, another app's secrets.

use crate::config::{AppUser, MAX_APP_UID};
use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// `<run dir>/<repo id>/`: the hub (its owner) reads and writes, the app (its group)
/// reads and traverses, nobody else enters.
pub const SPACE_DIR_MODE: u32 = 0o750;
/// The app's home, its only writable folder: its own.
pub const HOME_MODE: u32 = 0o700;
/// Bits the run dir must not give group and others: every app traverses it to reach its
/// own folder, none lists the others' or renames them.
const RUN_DIR_DENIED: u32 = 0o066;
/// Entries of an app's home re-owned at most when its user changed (an upgrade from a shared
/// user): a bound on the walk, not a limit apps reach in practice.
const MAX_HOME_ENTRIES: usize = 1_000_000;

/// The uid of a Space's app with per-Space users: `base + repo id`, if within
/// [`MAX_APP_UID`] (repository ids are positive).
pub fn per_space_uid(base: u32, repo_id: i64) -> Option<u32> {
    let id = u32::try_from(repo_id).ok().filter(|&id| id > 0)?;
    base.checked_add(id).filter(|&uid| uid <= MAX_APP_UID)
}

/// The host's local users and groups (`/etc/passwd`, `/etc/group`) from a given id up:
/// ids a Space's user must not share.
#[derive(Debug, Default)]
pub struct Accounts {
    by_id: BTreeMap<u32, String>,
}

impl Accounts {
    /// The accounts of `passwd` and `group` (the files' text) whose id is at least `from`
    /// (and an app's: at most [`MAX_APP_UID`]).
    pub fn parse(passwd: &str, group: &str, from: u32) -> Accounts {
        let mut by_id = BTreeMap::new();
        for (text, kind) in [(passwd, "user"), (group, "group")] {
            for line in text.lines() {
                // name:password:id:...
                let mut fields = line.split(':');
                let (Some(name), Some(id)) = (fields.next(), fields.nth(1)) else {
                    continue;
                };
                if let Ok(id) = id.trim().parse::<u32>()
                    && (from..=MAX_APP_UID).contains(&id)
                {
                    by_id.entry(id).or_insert_with(|| format!("{kind} {name}"));
                }
            }
        }
        Accounts { by_id }
    }

    /// The local accounts of this host from `from` up (none when the files cannot be read).
    pub fn read(from: u32) -> Accounts {
        let read = |path| std::fs::read_to_string(path).unwrap_or_default();
        Accounts::parse(&read("/etc/passwd"), &read("/etc/group"), from)
    }

    /// The account that has `id`, as `user <name>` or `group <name>`.
    pub fn owner(&self, id: u32) -> Option<&str> {
        self.by_id.get(&id).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &str)> {
        self.by_id.iter().map(|(id, name)| (*id, name.as_str()))
    }
}

/// The uid (and gid) the app of Space `repo_id` runs as and its folder belongs to; `None`:
/// the hub's own user. The error is the Space's stage message.
pub fn app_uid(user: AppUser, repo_id: i64, accounts: &Accounts) -> Result<Option<u32>, String> {
    match user {
        AppUser::Hub => Ok(None),
        AppUser::Shared(uid) => Ok(Some(uid)),
        AppUser::PerSpace { base } => {
            let uid = per_space_uid(base, repo_id).ok_or_else(|| {
                format!(
                    "this Space has no user of its own: spaces.uid_base {base} plus its id \
                     {repo_id} is past {MAX_APP_UID}"
                )
            })?;
            match accounts.owner(uid) {
                Some(account) => Err(format!(
                    "this Space's user id {uid} belongs to the local {account}: choose another \
                     spaces.uid_base"
                )),
                None => Ok(Some(uid)),
            }
        }
    }
}

/// Whether a folder of `mode` owned by `owner:group` lets user `uid` (group `gid`, no
/// supplementary groups) through: the owner's bits apply to its owner, the group's to its
/// group, the others' to everyone else.
pub fn traversable(mode: u32, owner: u32, group: u32, uid: u32, gid: u32) -> bool {
    let bit = if owner == uid {
        0o100
    } else if group == gid {
        0o010
    } else {
        0o001
    };
    mode & bit != 0
}

/// The first folder on the way to `dir` that app `uid` (gid the same) may not traverse.
pub fn unreachable_ancestor(dir: &Path, uid: u32) -> Option<PathBuf> {
    dir.ancestors()
        .filter(|a| !a.as_os_str().is_empty())
        .find(|a| {
            std::fs::metadata(a)
                .is_ok_and(|m| !traversable(m.permissions().mode(), m.uid(), m.gid(), uid, uid))
        })
        .map(Path::to_path_buf)
}

/// Makes the Space's folder `<run dir>/<repo id>/` private to its app `uid`: the run dir is
/// created if missing and neither listable nor writable by others; the Space's folder is
/// created if missing and set to the hub's user, the app's group and [`SPACE_DIR_MODE`] —
/// a folder an earlier version left readable by everyone included. What is inside may stay
/// readable by others: nobody else gets in.
pub fn secure_space_dir(run_dir: &Path, space_dir: &Path, uid: u32) -> io::Result<()> {
    std::fs::create_dir_all(run_dir)?;
    let mode = std::fs::metadata(run_dir)?.permissions().mode() & 0o7777;
    if mode & RUN_DIR_DENIED != 0 {
        std::fs::set_permissions(
            run_dir,
            std::fs::Permissions::from_mode(mode & !RUN_DIR_DENIED),
        )?;
    }
    match std::fs::create_dir(space_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    // Closed before it changes group: the folder is never open to the wrong group.
    std::fs::set_permissions(space_dir, std::fs::Permissions::from_mode(0o700))?;
    std::os::unix::fs::chown(space_dir, None, Some(uid))?;
    std::fs::set_permissions(space_dir, std::fs::Permissions::from_mode(SPACE_DIR_MODE))
}

/// Makes `dir` (created if missing) a folder of `uid:uid` with `mode`, what it holds left
/// as it is: the virtualenv, temporary folder and package cache a Space's build writes as
/// its user. The parent must be the hub's, so that nobody swaps `dir` for a link meanwhile.
pub fn own_dir(dir: &Path, uid: u32, mode: u32) -> io::Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    if !std::fs::symlink_metadata(dir)?.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a folder",
            dir.display()
        )));
    }
    std::os::unix::fs::lchown(dir, Some(uid), Some(uid))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
}

/// Makes `home` the app's own (`uid:uid`, [`HOME_MODE`]), created if missing. A home an
/// earlier user of the Space owned (a shared user before per-Space ones) is handed over
/// with what it holds: links are not followed, and files with more than one link or owned
/// by root are left alone, so that nothing outside the home changes hands.
pub fn secure_home(home: &Path, uid: u32) -> io::Result<()> {
    std::fs::create_dir_all(home)?;
    let meta = std::fs::symlink_metadata(home)?;
    if !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a folder",
            home.display()
        )));
    }
    if meta.uid() != uid || meta.gid() != uid {
        hand_over(home, uid)?;
    }
    std::fs::set_permissions(home, std::fs::Permissions::from_mode(HOME_MODE))
}

/// Gives `home` and what it holds to `uid:uid` (see [`secure_home`]).
fn hand_over(home: &Path, uid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(home, Some(uid), Some(uid))?;
    let mut folders = vec![home.to_path_buf()];
    let mut seen = 0usize;
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder)? {
            seen += 1;
            if seen > MAX_HOME_ENTRIES {
                return Err(io::Error::other(format!(
                    "{} holds more than {MAX_HOME_ENTRIES} entries to hand over",
                    home.display()
                )));
            }
            let path = entry?.path();
            let meta = std::fs::symlink_metadata(&path)?;
            if meta.uid() == 0 || (meta.is_file() && meta.nlink() > 1) {
                continue;
            }
            std::os::unix::fs::lchown(&path, Some(uid), Some(uid))?;
            if meta.is_dir() {
                folders.push(path);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_space_gets_its_own_stable_uid_within_the_range() {
        assert_eq!(per_space_uid(2_000_000_000, 1), Some(2_000_000_001));
        assert_eq!(per_space_uid(2_000_000_000, 42), Some(2_000_000_042));
        assert_ne!(per_space_uid(100_000, 7), per_space_uid(100_000, 8));
        // Not a repository id, or past the last uid: none.
        assert_eq!(per_space_uid(2_000_000_000, 0), None);
        assert_eq!(per_space_uid(2_000_000_000, -3), None);
        assert_eq!(per_space_uid(2_000_000_000, i64::MAX), None);
        assert_eq!(per_space_uid(MAX_APP_UID - 1, 1), Some(MAX_APP_UID));
        assert_eq!(per_space_uid(MAX_APP_UID - 1, 2), None);
    }

    #[test]
    fn a_uid_of_a_local_account_is_refused() {
        let passwd = "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n\
                      odd:x:3000005:100::/:/bin/sh\nbroken line\nfar:x:4294967294:1::/:/bin/sh\n";
        let group = "root:x:0:\nteam:x:3000009:\n";
        let accounts = Accounts::parse(passwd, group, 3_000_000);
        assert_eq!(accounts.owner(0), None, "below the base: not kept");
        assert_eq!(
            accounts.owner(4_294_967_294),
            None,
            "past any app's uid: not kept"
        );
        assert_eq!(accounts.owner(3_000_005), Some("user odd"));
        assert_eq!(accounts.owner(3_000_009), Some("group team"));
        let per_space = AppUser::PerSpace { base: 3_000_000 };
        assert_eq!(app_uid(per_space, 4, &accounts), Ok(Some(3_000_004)));
        let taken = app_uid(per_space, 5, &accounts).expect_err("taken");
        assert!(taken.contains("user odd"), "{taken}");
        assert!(app_uid(per_space, 9, &accounts).is_err(), "a group's id");
        assert_eq!(app_uid(AppUser::Hub, 5, &accounts), Ok(None));
        assert_eq!(
            app_uid(AppUser::Shared(65534), 5, &accounts),
            Ok(Some(65534))
        );
        let far = AppUser::PerSpace { base: MAX_APP_UID };
        assert!(app_uid(far, 1, &accounts).is_err());
    }

    #[test]
    fn owner_bits_apply_to_the_owner_group_bits_to_the_group_others_to_the_rest() {
        let space = 2_000_000_007;
        // The Space's folder: root:<space gid> 0750.
        assert!(traversable(0o750, 0, space, space, space));
        assert!(!traversable(0o750, 0, space, space + 1, space + 1));
        // The run dir: 0711, everyone passes.
        assert!(traversable(0o711, 0, 0, space, space));
        // Owner bits win even when others' would allow.
        assert!(!traversable(0o071, space, 0, space, space));
        assert!(!traversable(0o700, 0, 0, space, space));
    }

    /// The folders as the hub sets them, checked as another Space's user would meet them.
    /// Needs root (it changes owners).
    #[test]
    fn a_space_folder_is_closed_to_other_spaces_and_an_old_open_one_is_closed_too() {
        if std::fs::metadata("/proc/self").map(|m| m.uid()).ok() != Some(0) {
            eprintln!("skipped: needs root");
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let run_dir = tmp.path().join("run");
        let (mine, other) = (2_000_000_011, 2_000_000_012);
        // As an earlier version left it: everything 0755, home owned by nobody.
        let space = run_dir.join("11");
        let home = space.join("abc/home");
        std::fs::create_dir_all(home.join("cache")).expect("mkdir");
        std::fs::write(home.join("cache/file"), "x").expect("write");
        std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        std::fs::set_permissions(&space, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        for p in [&home, &home.join("cache"), &home.join("cache/file")] {
            std::os::unix::fs::lchown(p, Some(65534), Some(65534)).expect("chown");
        }
        let root_file = home.join("root-owned");
        std::fs::write(&root_file, "kept").expect("write");

        secure_space_dir(&run_dir, &space, mine).expect("secure");
        secure_home(&home, mine).expect("home");

        let meta = |p: &Path| std::fs::symlink_metadata(p).expect("stat");
        assert_eq!(meta(&run_dir).permissions().mode() & 0o777, 0o711);
        let m = meta(&space);
        assert_eq!(
            (m.uid(), m.gid(), m.permissions().mode() & 0o777),
            (0, mine, 0o750)
        );
        for p in [&home, &home.join("cache"), &home.join("cache/file")] {
            assert_eq!(
                (meta(p).uid(), meta(p).gid()),
                (mine, mine),
                "{}",
                p.display()
            );
        }
        assert_eq!(meta(&home).permissions().mode() & 0o777, HOME_MODE);
        assert_eq!(
            meta(&root_file).uid(),
            0,
            "root's files are not handed over"
        );
        let app_dir = space.join("abc/app");
        std::fs::create_dir_all(&app_dir).expect("mkdir");
        assert_eq!(unreachable_ancestor(&app_dir, mine), None);
        assert_eq!(unreachable_ancestor(&app_dir, other), Some(space.clone()));
        // A new Space's folder is made closed from the start; a second pass changes nothing.
        let new = run_dir.join("12");
        secure_space_dir(&run_dir, &new, other).expect("secure");
        secure_space_dir(&run_dir, &new, other).expect("again");
        assert_eq!(unreachable_ancestor(&new, other), None);
        assert_eq!(unreachable_ancestor(&new, mine), Some(new.clone()));
    }
}
