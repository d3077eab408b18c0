//! `trove hook pre-receive`: the rules a push must pass, run by git between receiving the
//! objects (held in quarantine) and moving any ref. A refusal is printed on stderr, which
//! git relays to the pusher as `remote: …` lines, and the exit status 1 makes git reject
//! every ref of the push: nothing of it becomes visible.
//!
//! The rules:
//! - the pusher needs write access to the repository (the server checked it already; this is
//!   the last line of defence), or, to push to a pull request they opened, to be a
//!   contributor (a signed-in reader with a write-capable token);
//! - only branches (`refs/heads/*`), tags (`refs/tags/*`) with names git and the Hub accept,
//!   and existing open pull requests (`refs/pr/N`: by their author or a writer; never
//!   created or deleted by a push) may be pushed; a branch or PR must point at a commit;
//! - `main`, the default branch, cannot be deleted, and only administrators may rewrite its
//!   history (force-push); any other branch or tag may be deleted or force-pushed by anyone
//!   with write access;
//! - a file of 10 MiB or more must be stored with Git LFS: a larger blob that is not an LFS
//!   pointer is refused;
//! - every new LFS pointer must name an object uploaded to this repository (git-lfs uploads
//!   objects before pushing), with the size the pointer says;
//! - every name in every new tree passes the commit API's path rule
//!   ([`trove_git::entry_name_problem`]): no `.`, `..`, `.git` (in any spelling the rule
//!   knows), `/`, backslash or NUL, UTF-8 only;
//! - whatever git's own object checks refuse (malformed trees, commits and tags,
//!   `.gitmodules` abuse, the NTFS/HFS spellings of `.git`, links to missing objects): the
//!   server makes them while examining the quarantine, `trove_git::PushView::new_objects`,
//!   and runs git's where its own cannot vouch for an object.
//!
//! The server applies the rules (`hook_server`): this process, which git starts, only hands
//! it the ref updates and the quarantine through a socket the server made for this push and
//! passed down through receive-pack, and prints its verdict. The server knows who pushes
//! (it authorized the request); it started examining the quarantine as soon as `index-pack`
//! finished writing it, while receive-pack ran its own connectivity check.

use crate::repos::push::{ENV_HOOK_FD, Pusher};
use anyhow::Context;
use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use trove_git::{NewObjects, RefMove};
use trove_types::{BranchName, GitOid, LfsPointer, Sha256Hex};

/// Files this large or larger must go through LFS (the Hub's rule: 10 MiB).
pub const LARGE_FILE_BYTES: u64 = 10 * 1024 * 1024;
/// Lines of refusal shown at most; the rest are counted.
const MAX_MESSAGES: usize = 20;

/// What the hook knows of a pull request a push names (`refs/pr/N`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullRequestFacts {
    pub author_user_id: Option<i64>,
    /// Open or draft (closed and merged pull requests take no more commits).
    pub open: bool,
}

/// One line of the hook's input, `<old> <new> <ref>`, with absent sides as `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefUpdate {
    pub old: Option<GitOid>,
    pub new: Option<GitOid>,
    pub name: String,
}

impl RefUpdate {
    /// Parses one input line; the all-zero id means "absent".
    pub fn parse(line: &str) -> Option<RefUpdate> {
        let mut parts = line.trim_end_matches(['\n', '\r']).splitn(3, ' ');
        let side = |s: &str| -> Option<Option<GitOid>> {
            if s.len() == 40 && s.bytes().all(|b| b == b'0') {
                Some(None)
            } else {
                GitOid::parse(s).ok().map(Some)
            }
        };
        let old = side(parts.next()?)?;
        let new = side(parts.next()?)?;
        let name = parts.next()?.to_owned();
        (!name.is_empty()).then_some(RefUpdate { old, new, name })
    }
}

/// A ref update with what git says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckedUpdate {
    pub update: RefUpdate,
    pub movement: RefMove,
    /// Whether the new value is a commit (`false` for deletions).
    pub new_is_commit: bool,
}

/// Everything the rules look at.
pub struct PushFacts<'a> {
    pub pusher: &'a Pusher,
    pub updates: &'a [CheckedUpdate],
    pub objects: &'a NewObjects,
    /// Sizes of the LFS objects linked to this repository, among those the pointers name.
    pub stored: &'a HashMap<Sha256Hex, u64>,
    /// Where refused blobs appear, for the messages.
    pub paths: &'a HashMap<GitOid, String>,
    /// The pull requests the updates name, by full ref; absent = no such pull request.
    pub pull_requests: &'a HashMap<String, PullRequestFacts>,
}

/// The rules. Returns the reasons to refuse the push, empty when it may land.
pub fn decide(facts: &PushFacts<'_>) -> Vec<String> {
    let mut refusals = Vec::new();
    if !facts.pusher.can_write && !facts.pusher.can_contribute {
        refusals.push("You don't have write access to this repository".to_owned());
        return refusals;
    }
    for checked in facts.updates {
        let reason = if checked.update.name.starts_with("refs/pr/") {
            pull_request_refusal(facts.pusher, checked, facts.pull_requests)
        } else if !facts.pusher.can_write {
            Some(format!(
                "{}: you may push only to pull requests you opened (git push origin \
                 HEAD:refs/pr/N); you don't have write access to this repository",
                checked.update.name
            ))
        } else {
            ref_refusal(facts.pusher, checked)
        };
        if let Some(reason) = reason {
            refusals.push(reason);
        }
    }
    let name_of = |blob: &GitOid| {
        facts
            .paths
            .get(blob)
            .cloned()
            .unwrap_or_else(|| format!("blob {blob}"))
    };
    for (blob, size) in &facts.objects.large_blobs {
        let path = name_of(blob);
        refusals.push(format!(
            "{path} is {}: files of 10 MiB or more must be stored with Git LFS \
             (git lfs track {path:?}; to fix commits already made: \
             git lfs migrate import --include={path:?})",
            human_size(*size)
        ));
    }
    for bad in &facts.objects.bad_names {
        refusals.push(format!("tree {}: {}", bad.tree, bad.reason));
    }
    if let Some(said) = &facts.objects.refused_by_git {
        refusals.push(format!(
            "git's object checks refuse the pushed objects:\n{said}"
        ));
    }
    for (blob, LfsPointer { oid, size }) in &facts.objects.lfs_pointers {
        match facts.stored.get(oid) {
            Some(stored) if stored == size => {}
            Some(stored) => refusals.push(format!(
                "{}: the LFS pointer says {size} bytes but object {oid} has {stored}",
                name_of(blob)
            )),
            None => refusals.push(format!(
                "{}: LFS object {oid} was not uploaded to this repository; push the LFS \
                 objects first (git lfs push --all origin)",
                name_of(blob)
            )),
        }
    }
    if refusals.len() > MAX_MESSAGES {
        let more = refusals.len() - MAX_MESSAGES;
        refusals.truncate(MAX_MESSAGES);
        refusals.push(format!("… and {more} more"));
    }
    refusals
}

/// The rules for `refs/pr/N`: an existing open pull request, moved (fast-forward or
/// rewritten) by its author or a writer, to a commit.
fn pull_request_refusal(
    pusher: &Pusher,
    checked: &CheckedUpdate,
    pull_requests: &HashMap<String, PullRequestFacts>,
) -> Option<String> {
    let name = checked.update.name.as_str();
    let Some(num) = crate::repos::discussions::pr_number(name) else {
        return Some(format!("{name}: not a pull request ref (refs/pr/<number>)"));
    };
    if checked.movement == RefMove::Delete {
        return Some(format!(
            "{name}: pull request refs cannot be deleted; close pull request #{num} instead"
        ));
    }
    let Some(pr) = pull_requests
        .get(name)
        .filter(|_| checked.update.old.is_some())
    else {
        return Some(format!(
            "{name}: pull request #{num} does not exist; open it on the hub first \
             (create_pull_request), then push to it"
        ));
    };
    if !pr.open {
        return Some(format!(
            "{name}: pull request #{num} is closed or merged; reopen it to push"
        ));
    }
    if !pusher.can_write && (pusher.user_id.is_none() || pr.author_user_id != pusher.user_id) {
        return Some(format!(
            "{name}: only the author of pull request #{num} or a writer may push to it"
        ));
    }
    if !checked.new_is_commit {
        return Some(format!("{name}: a pull request must point at a commit"));
    }
    None
}

fn ref_refusal(pusher: &Pusher, checked: &CheckedUpdate) -> Option<String> {
    let name = checked.update.name.as_str();
    let short = name
        .strip_prefix("refs/heads/")
        .or_else(|| name.strip_prefix("refs/tags/"));
    let Some(short) = short else {
        return Some(format!(
            "{name}: only branches (refs/heads/*) and tags (refs/tags/*) can be pushed"
        ));
    };
    if let Err(e) = BranchName::parse(short) {
        return Some(format!("{name}: {e}"));
    }
    let is_branch = name.starts_with("refs/heads/");
    // The default branch cannot be deleted, and only administrators may rewrite it.
    if name.strip_prefix("refs/heads/") == Some(trove_types::DEFAULT_BRANCH) {
        match checked.movement {
            RefMove::Delete => {
                return Some("main: the default branch cannot be deleted".to_owned());
            }
            RefMove::Rewrite if !pusher.is_admin => {
                return Some(
                    "main: only administrators may rewrite the history of the default branch \
                     (force-push); fetch and merge or rebase, then push again"
                        .to_owned(),
                );
            }
            _ => {}
        }
    }
    if is_branch && checked.update.new.is_some() && !checked.new_is_commit {
        return Some(format!("{name}: a branch must point at a commit"));
    }
    None
}

fn human_size(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// What the hook sends the server: the quarantine git named (`GIT_QUARANTINE_PATH`; none for
/// a push of deletions only), then the ref update lines as git gave them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookRequest {
    pub quarantine: Option<PathBuf>,
    pub updates: Vec<RefUpdate>,
}

/// Bytes of ref update lines a hook request may carry (about 100 bytes a ref).
pub const MAX_REQUEST_BYTES: usize = 16 << 20;

impl HookRequest {
    /// The request as sent: `Q<path>\0` or `-\0`, then git's lines unchanged.
    pub fn encode(quarantine: Option<&Path>, lines: &[u8]) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        let mut out = Vec::with_capacity(lines.len() + 256);
        match quarantine {
            Some(path) => {
                out.push(b'Q');
                out.extend_from_slice(path.as_os_str().as_bytes());
            }
            None => out.push(b'-'),
        }
        out.push(0);
        out.extend_from_slice(lines);
        out
    }

    /// Parses what [`HookRequest::encode`] made.
    pub fn decode(bytes: &[u8]) -> anyhow::Result<HookRequest> {
        use std::os::unix::ffi::OsStrExt;
        let nul = bytes
            .iter()
            .position(|&b| b == 0)
            .context("no quarantine field")?;
        let quarantine = match &bytes[..nul] {
            [b'-'] => None,
            [b'Q', path @ ..] if !path.is_empty() => {
                Some(PathBuf::from(std::ffi::OsStr::from_bytes(path)))
            }
            _ => anyhow::bail!("bad quarantine field"),
        };
        let lines = std::str::from_utf8(&bytes[nul + 1..]).context("ref updates not UTF-8")?;
        let mut updates = Vec::new();
        for line in lines.lines() {
            if line.trim().is_empty() {
                continue;
            }
            updates
                .push(RefUpdate::parse(line).with_context(|| format!("bad update line {line:?}"))?);
        }
        Ok(HookRequest {
            quarantine,
            updates,
        })
    }
}

/// The server's answer: whether the push may land, and what to tell the pusher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub accepted: bool,
    /// Printed on the hook's stderr, which git relays as `remote: …` lines.
    pub message: String,
}

impl Verdict {
    /// The verdict on a push the rules refuse for `refusals` (accepted when empty).
    pub fn from_refusals(refusals: &[String]) -> Verdict {
        if refusals.is_empty() {
            return Verdict {
                accepted: true,
                message: String::new(),
            };
        }
        let mut message = "Push refused by Trove:\n".to_owned();
        for reason in refusals {
            message.push_str("  ");
            message.push_str(reason);
            message.push('\n');
        }
        Verdict {
            accepted: false,
            message,
        }
    }

    /// The verdict when the push could not be checked: refused.
    pub fn unchecked(error: &anyhow::Error) -> Verdict {
        Verdict {
            accepted: false,
            message: format!("Push refused: Trove could not check it ({error:#})\n"),
        }
    }

    /// `1` (accepted) or `0`, then the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![if self.accepted { b'1' } else { b'0' }];
        out.extend_from_slice(self.message.as_bytes());
        out
    }

    /// Parses what [`Verdict::encode`] made; anything else refuses the push.
    pub fn decode(bytes: &[u8]) -> Verdict {
        let message = String::from_utf8_lossy(bytes.get(1..).unwrap_or_default()).into_owned();
        match bytes.first() {
            Some(b'1') => Verdict {
                accepted: true,
                message,
            },
            Some(b'0') => Verdict {
                accepted: false,
                message,
            },
            _ => Verdict {
                accepted: false,
                message: "Push refused: Trove's server gave no verdict\n".to_owned(),
            },
        }
    }
}

/// Runs the hook, as git does (the repository as current directory, the ref updates on
/// stdin): hands the updates and the quarantine to the server that started this push,
/// through the socket it passed down ([`crate::repos::push::ENV_HOOK_FD`]), prints its
/// answer and exits 0 only if it accepted the push. Anything that goes wrong refuses it.
pub fn pre_receive() -> ExitCode {
    let verdict = ask_server().unwrap_or_else(|e| Verdict::unchecked(&e));
    eprint!("{}", verdict.message);
    if verdict.accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Set once [`inherited_socket`] took the descriptor.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// In the hook's process: the socket the server passed down (its number in
/// [`ENV_HOOK_FD`]).
fn inherited_socket() -> anyhow::Result<UnixStream> {
    let fd: i32 = std::env::var(ENV_HOOK_FD)
        .with_context(|| format!("{ENV_HOOK_FD} is not set: not run by Trove's server"))?
        .parse()
        .with_context(|| format!("{ENV_HOOK_FD} is not a number"))?;
    anyhow::ensure!(fd > 2, "{ENV_HOOK_FD} names a standard stream");
    let meta = std::fs::metadata(format!("/proc/self/fd/{fd}"))
        .with_context(|| format!("descriptor {fd} from the server is not open"))?;
    anyhow::ensure!(
        std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()),
        "descriptor {fd} from the server is not a socket"
    );
    anyhow::ensure!(
        !TAKEN.swap(true, Ordering::AcqRel),
        "the server's socket was taken already"
    );
    #[expect(
        unsafe_code,
        reason = "taking ownership of a descriptor inherited from the parent process"
    )]
    // SAFETY: `fd` is open (its /proc entry was just read) and is a socket; this process got
    // it from git, which inherited it from the server, and nothing in this process opened or
    // owns it: the standard library and the libraries this binary uses only own descriptors
    // they opened themselves, and `TAKEN` makes this the only owner made from the number.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(UnixStream::from(owned))
}

fn ask_server() -> anyhow::Result<Verdict> {
    use std::io::{Read, Write};
    let mut socket = inherited_socket()?;
    let mut lines = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_REQUEST_BYTES as u64 + 1)
        .read_to_end(&mut lines)
        .context("reading the ref updates")?;
    anyhow::ensure!(lines.len() <= MAX_REQUEST_BYTES, "too many ref updates");
    let quarantine = std::env::var_os("GIT_QUARANTINE_PATH").map(PathBuf::from);
    socket
        .write_all(&HookRequest::encode(quarantine.as_deref(), &lines))
        .context("asking the server")?;
    // Other processes of this push hold the same socket: shutting down (not closing) is
    // what tells the server the request is complete.
    socket
        .shutdown(std::net::Shutdown::Write)
        .context("asking the server")?;
    let mut answer = Vec::new();
    socket
        .take(1 << 20)
        .read_to_end(&mut answer)
        .context("reading the server's verdict")?;
    Ok(Verdict::decode(&answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(c: char) -> GitOid {
        GitOid::parse(&c.to_string().repeat(40)).expect("hex")
    }

    fn sha(c: char) -> Sha256Hex {
        Sha256Hex::parse(&c.to_string().repeat(64)).expect("hex")
    }

    fn writer(admin: bool) -> Pusher {
        Pusher {
            name: "alice".into(),
            user_id: Some(1),
            can_write: true,
            can_contribute: true,
            is_admin: admin,
        }
    }

    fn update(name: &str, movement: RefMove) -> CheckedUpdate {
        let (old, new) = match movement {
            RefMove::Create => (None, Some(oid('b'))),
            RefMove::Delete => (Some(oid('a')), None),
            RefMove::FastForward | RefMove::Rewrite => (Some(oid('a')), Some(oid('b'))),
        };
        CheckedUpdate {
            update: RefUpdate {
                old,
                new,
                name: name.into(),
            },
            movement,
            new_is_commit: true,
        }
    }

    fn refusals(pusher: &Pusher, updates: &[CheckedUpdate], objects: &NewObjects) -> Vec<String> {
        let stored = HashMap::from([(sha('1'), 100u64)]);
        decide(&PushFacts {
            pusher,
            updates,
            objects,
            stored: &stored,
            paths: &HashMap::from([(oid('f'), "weights.bin".to_owned())]),
            pull_requests: &HashMap::from([
                (
                    "refs/pr/1".to_owned(),
                    PullRequestFacts {
                        author_user_id: Some(2),
                        open: true,
                    },
                ),
                (
                    "refs/pr/2".to_owned(),
                    PullRequestFacts {
                        author_user_id: Some(1),
                        open: false,
                    },
                ),
            ]),
        })
    }

    #[test]
    fn pull_requests_take_pushes_from_their_author_or_writers_while_open() {
        let bob = Pusher {
            name: "bob".into(),
            user_id: Some(2),
            can_write: false,
            can_contribute: true,
            is_admin: false,
        };
        let none = NewObjects::default();
        assert!(refusals(&bob, &[update("refs/pr/1", RefMove::FastForward)], &none).is_empty());
        assert!(refusals(&bob, &[update("refs/pr/1", RefMove::Rewrite)], &none).is_empty());
        assert!(
            refusals(
                &writer(false),
                &[update("refs/pr/1", RefMove::FastForward)],
                &none
            )
            .is_empty()
        );
        let carol = Pusher {
            user_id: Some(3),
            ..bob.clone()
        };
        let got = refusals(&carol, &[update("refs/pr/1", RefMove::FastForward)], &none);
        assert!(got[0].contains("only the author"), "{got:?}");
        for (name, movement, why) in [
            ("refs/pr/1", RefMove::Delete, "cannot be deleted"),
            ("refs/pr/1", RefMove::Create, "does not exist"),
            ("refs/pr/9", RefMove::FastForward, "does not exist"),
            ("refs/pr/2", RefMove::FastForward, "closed or merged"),
            ("refs/pr/01", RefMove::FastForward, "not a pull request ref"),
            (
                "refs/heads/main",
                RefMove::FastForward,
                "only to pull requests you opened",
            ),
        ] {
            let got = refusals(&bob, &[update(name, movement)], &none);
            assert_eq!(got.len(), 1, "{name}");
            assert!(got[0].contains(why), "{name}: {got:?}");
        }
    }

    #[test]
    fn requests_and_verdicts_cross_the_socket_unchanged() {
        let zero = "0".repeat(40);
        let a = "a".repeat(40);
        let lines = format!("{zero} {a} refs/heads/main\n{a} {zero} refs/tags/v1\n");
        let q = Path::new("/data/repos/1.git/./objects/tmp_objdir-incoming-x Y");
        let got =
            HookRequest::decode(&HookRequest::encode(Some(q), lines.as_bytes())).expect("decodes");
        assert_eq!(got.quarantine.as_deref(), Some(q));
        assert_eq!(got.updates.len(), 2);
        assert_eq!(got.updates[1].name, "refs/tags/v1");
        let deletions =
            HookRequest::decode(&HookRequest::encode(None, lines.as_bytes())).expect("decodes");
        assert_eq!(deletions.quarantine, None);
        for bad in [
            &b""[..],
            b"x",
            b"Q\0",
            b"Z/x\0",
            b"-\0not a line\n",
            b"-\0\xff\n",
        ] {
            assert!(HookRequest::decode(bad).is_err(), "{bad:?}");
        }

        let refused = Verdict::from_refusals(&["a.bin is 12.0 MiB".to_owned()]);
        assert_eq!(
            refused.message,
            "Push refused by Trove:\n  a.bin is 12.0 MiB\n"
        );
        for verdict in [refused, Verdict::from_refusals(&[])] {
            assert_eq!(Verdict::decode(&verdict.encode()), verdict);
        }
        // No answer (the server went away) or a garbled one refuses the push.
        for bad in [&b""[..], b"yes"] {
            assert!(!Verdict::decode(bad).accepted, "{bad:?}");
        }
    }

    #[test]
    fn update_lines_parse_with_zero_ids_as_absent() {
        let zero = "0".repeat(40);
        let a = "a".repeat(40);
        let parsed = RefUpdate::parse(&format!("{zero} {a} refs/heads/dev\n")).expect("valid");
        assert_eq!(parsed.old, None);
        assert_eq!(parsed.new, Some(oid('a')));
        assert_eq!(parsed.name, "refs/heads/dev");
        assert_eq!(
            RefUpdate::parse(&format!("{a} {zero} refs/tags/v1")).map(|u| u.new),
            Some(None)
        );
        for bad in ["", "x y z", &format!("{a} {a}"), &format!("{a} {a} ")] {
            assert_eq!(RefUpdate::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn writers_push_branches_and_tags_in_every_way_except_breaking_main() {
        let alice = writer(false);
        let ok = [
            update("refs/heads/main", RefMove::FastForward),
            update("refs/heads/main", RefMove::Create),
            update("refs/heads/dev", RefMove::Rewrite),
            update("refs/heads/dev", RefMove::Delete),
            update("refs/tags/v1.0", RefMove::Create),
            update("refs/tags/v1.0", RefMove::Rewrite),
            update("refs/tags/v1.0", RefMove::Delete),
        ];
        assert!(refusals(&alice, &ok, &NewObjects::default()).is_empty());
        let force = refusals(
            &alice,
            &[update("refs/heads/main", RefMove::Rewrite)],
            &NewObjects::default(),
        );
        assert_eq!(force.len(), 1);
        assert!(force[0].contains("only administrators"), "{force:?}");
        let delete = refusals(
            &alice,
            &[update("refs/heads/main", RefMove::Delete)],
            &NewObjects::default(),
        );
        assert!(delete[0].contains("cannot be deleted"), "{delete:?}");
    }

    #[test]
    fn admins_may_force_push_main_but_nobody_deletes_it() {
        let root = writer(true);
        assert!(
            refusals(
                &root,
                &[update("refs/heads/main", RefMove::Rewrite)],
                &NewObjects::default()
            )
            .is_empty()
        );
        assert_eq!(
            refusals(
                &root,
                &[update("refs/heads/main", RefMove::Delete)],
                &NewObjects::default()
            )
            .len(),
            1
        );
    }

    #[test]
    fn readers_push_nothing() {
        let reader = Pusher {
            can_write: false,
            can_contribute: false,
            ..writer(true)
        };
        let got = refusals(
            &reader,
            &[update("refs/heads/dev", RefMove::Create)],
            &NewObjects::default(),
        );
        assert_eq!(got, ["You don't have write access to this repository"]);
    }

    #[test]
    fn only_valid_branch_and_tag_names_are_accepted() {
        let alice = writer(true);
        for bad in [
            "refs/pr/7",
            "refs/convert/parquet",
            "refs/notes/x",
            "HEAD",
            "refs/heads/-x",
        ] {
            assert_eq!(
                refusals(
                    &alice,
                    &[update(bad, RefMove::Create)],
                    &NewObjects::default()
                )
                .len(),
                1,
                "{bad}"
            );
        }
        let mut tree_branch = update("refs/heads/t", RefMove::Create);
        tree_branch.new_is_commit = false;
        assert!(
            refusals(&alice, &[tree_branch.clone()], &NewObjects::default())[0].contains("commit")
        );
        // A tag may name any object.
        tree_branch.update.name = "refs/tags/t".into();
        assert!(refusals(&alice, &[tree_branch], &NewObjects::default()).is_empty());
    }

    #[test]
    fn large_files_must_be_lfs_and_pointers_must_name_uploaded_objects() {
        let alice = writer(true);
        let main = [update("refs/heads/main", RefMove::FastForward)];
        let objects = NewObjects {
            large_blobs: vec![(oid('f'), 12 * 1024 * 1024)],
            ..NewObjects::default()
        };
        let got = refusals(&alice, &main, &objects);
        assert_eq!(got.len(), 1);
        assert!(got[0].starts_with("weights.bin is 12.0 MiB"), "{got:?}");

        let pointer = |c, size| LfsPointer { oid: sha(c), size };
        let good = NewObjects {
            lfs_pointers: vec![(oid('c'), pointer('1', 100))],
            ..NewObjects::default()
        };
        assert!(refusals(&alice, &main, &good).is_empty());
        let missing = NewObjects {
            lfs_pointers: vec![(oid('c'), pointer('2', 100))],
            ..NewObjects::default()
        };
        assert!(refusals(&alice, &main, &missing)[0].contains("was not uploaded"));
        let wrong_size = NewObjects {
            lfs_pointers: vec![(oid('c'), pointer('1', 99))],
            ..NewObjects::default()
        };
        assert!(refusals(&alice, &main, &wrong_size)[0].contains("99 bytes"));
    }

    #[test]
    fn trees_with_names_the_path_rule_refuses_are_refused() {
        let objects = NewObjects {
            bad_names: vec![trove_git::BadName {
                tree: oid('e'),
                reason: "Invalid path \"..\": '.' and '..' segments are not allowed".into(),
            }],
            ..NewObjects::default()
        };
        let got = refusals(
            &writer(true),
            &[update("refs/heads/main", RefMove::FastForward)],
            &objects,
        );
        assert_eq!(got.len(), 1);
        assert!(
            got[0].starts_with(&format!("tree {}: Invalid path", oid('e'))),
            "{got:?}"
        );
    }

    #[test]
    fn what_git_checks_refuse_is_a_refusal_with_git_words() {
        let alice = writer(false);
        let main = [update("refs/heads/main", RefMove::FastForward)];
        let objects = NewObjects {
            doubted: Some("a tree entry git's checks look at by name".into()),
            refused_by_git: Some("error: object 1234: gitmodulesUrl: disallowed".into()),
            ..NewObjects::default()
        };
        let got = refusals(&alice, &main, &objects);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("gitmodulesUrl: disallowed"), "{got:?}");
        let vouched = NewObjects {
            doubted: Some("a tree entry git's checks look at by name".into()),
            ..NewObjects::default()
        };
        assert!(refusals(&alice, &main, &vouched).is_empty());
    }

    #[test]
    fn long_lists_of_reasons_are_cut() {
        let alice = writer(true);
        let objects = NewObjects {
            large_blobs: (0..30)
                .map(|i| {
                    (
                        GitOid::parse(&format!("{i:040x}")).expect("hex"),
                        LARGE_FILE_BYTES,
                    )
                })
                .collect(),
            ..NewObjects::default()
        };
        let got = refusals(&alice, &[], &objects);
        assert_eq!(got.len(), MAX_MESSAGES + 1);
        assert_eq!(got.last().map(String::as_str), Some("… and 10 more"));
    }
}
