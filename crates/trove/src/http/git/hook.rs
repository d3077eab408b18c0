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
//!   knows), `/`, backslash or NUL, UTF-8 only. git itself checked the objects before this
//!   hook runs (`receive.fsckObjects`, see `trove_git::smart_http`): malformed commits,
//!   `.gitmodules` abuse and the NTFS/HFS spellings of `.git` never reach it.
//!
//! Who pushes and where comes from variables the server sets on the receive-pack process
//! (`repos::push`, the one place that writes and reads them); nothing a client sends can
//! set them.

use crate::repos::push::Pusher;
use anyhow::Context;
use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use trove_git::{NewObjects, PushView, RefMove};
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

/// Runs the hook: `data_dir` is Trove's, the current directory the repository (git runs
/// hooks there), the ref updates on stdin.
pub async fn pre_receive(data_dir: &Path, database: Option<&str>) -> ExitCode {
    match check_push(data_dir, database).await {
        Ok(refusals) if refusals.is_empty() => ExitCode::SUCCESS,
        Ok(refusals) => {
            eprintln!("Push refused by Trove:");
            for reason in refusals {
                eprintln!("  {reason}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("Push refused: Trove could not check it ({e:#})");
            ExitCode::FAILURE
        }
    }
}

async fn check_push(data_dir: &Path, database: Option<&str>) -> anyhow::Result<Vec<String>> {
    let (repo_id, pusher) = Pusher::from_env()?;
    let mut updates = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading the ref updates")?;
        if line.trim().is_empty() {
            continue;
        }
        updates.push(RefUpdate::parse(&line).with_context(|| format!("bad update line {line:?}"))?);
    }
    if !pusher.can_write && !pusher.can_contribute {
        return Ok(decide(&PushFacts {
            pusher: &pusher,
            updates: &[],
            objects: &NewObjects::default(),
            stored: &HashMap::new(),
            paths: &HashMap::new(),
            pull_requests: &HashMap::new(),
        }));
    }
    trove_git::tune_hook_process();
    let git_dir = PathBuf::from(std::env::var_os("GIT_DIR").unwrap_or_else(|| ".".into()));
    let quarantine = std::env::var_os("GIT_QUARANTINE_PATH").map(PathBuf::from);
    let inspected =
        tokio::task::spawn_blocking(move || inspect(&git_dir, quarantine.as_deref(), updates))
            .await
            .context("inspecting the push")??;
    let (checked, objects, inspector) = inspected;
    let pr_refs: Vec<(String, i64)> = checked
        .iter()
        .filter_map(|c| {
            crate::repos::discussions::pr_number(&c.update.name).map(|n| (c.update.name.clone(), n))
        })
        .collect();
    let (stored, pull_requests) = if objects.lfs_pointers.is_empty() && pr_refs.is_empty() {
        (HashMap::new(), HashMap::new())
    } else {
        let url = match database.filter(|u| !u.is_empty()) {
            Some(url) => trove_db::DatabaseUrl::parse(url)?,
            None => trove_db::DatabaseUrl::Sqlite(data_dir.join("trove.db")),
        };
        // One connection: the hook asks a few questions and exits.
        let options = trove_db::ConnectOptions {
            max_connections: Some(1),
            ..trove_db::ConnectOptions::default()
        };
        let db = trove_db::Db::connect(&url, &options)
            .await
            .context("opening the database")?;
        let oids: Vec<Sha256Hex> = objects
            .lfs_pointers
            .iter()
            .map(|(_, p)| p.oid.clone())
            .collect();
        let sizes = if oids.is_empty() {
            HashMap::new()
        } else {
            db.repo_objects_sizes(repo_id, &oids).await?
        };
        let mut pull_requests = HashMap::new();
        for (name, num) in pr_refs {
            if let Some(d) = db.discussion(repo_id, num).await?
                && d.is_pull_request
            {
                let open = matches!(
                    d.status,
                    trove_db::DiscussionStatus::Open | trove_db::DiscussionStatus::Draft
                );
                pull_requests.insert(
                    name,
                    PullRequestFacts {
                        author_user_id: d.author_user_id,
                        open,
                    },
                );
            }
        }
        db.close().await;
        (sizes, pull_requests)
    };
    let facts = PushFacts {
        pusher: &pusher,
        updates: &checked,
        objects: &objects,
        stored: &stored,
        paths: &HashMap::new(),
        pull_requests: &pull_requests,
    };
    let refusals = decide(&facts);
    if refusals.is_empty() {
        return Ok(refusals);
    }
    // Refused: name the files involved, which costs a walk of the new history.
    let mut named: Vec<GitOid> = objects.large_blobs.iter().map(|(b, _)| b.clone()).collect();
    named.extend(
        objects
            .lfs_pointers
            .iter()
            .filter(|(_, p)| stored.get(&p.oid) != Some(&p.size))
            .map(|(b, _)| b.clone()),
    );
    let paths = match inspector {
        Some(inspector) if !named.is_empty() => {
            tokio::task::spawn_blocking(move || inspector.paths(&named))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default()
        }
        _ => HashMap::new(),
    };
    Ok(decide(&PushFacts {
        paths: &paths,
        ..facts
    }))
}

/// The git side of the check, blocking.
struct Inspector {
    view: PushView,
    git_dir: PathBuf,
    tips: Vec<GitOid>,
}

impl Inspector {
    /// Where `blobs` appear in the new history (the commits reachable from the pushed tips
    /// and from no ref yet): asked of refused pushes only.
    fn paths(&self, blobs: &[GitOid]) -> anyhow::Result<HashMap<GitOid, String>> {
        let known: Vec<GitOid> = trove_git::GitRepo::open(&self.git_dir)?
            .ref_targets()?
            .into_iter()
            .map(|(_, oid)| oid)
            .collect();
        Ok(self.view.paths_of(blobs, &self.tips, &known)?)
    }
}

type Inspected = (Vec<CheckedUpdate>, NewObjects, Option<Inspector>);

fn inspect(
    git_dir: &Path,
    quarantine: Option<&Path>,
    updates: Vec<RefUpdate>,
) -> anyhow::Result<Inspected> {
    // A push of deletions only sends no pack, and git makes no quarantine for it.
    let view = match quarantine {
        Some(q) => PushView::open(git_dir, q)?,
        None => PushView::open_without_quarantine(git_dir)?,
    };
    let objects = match quarantine {
        Some(_) => view.new_objects(LARGE_FILE_BYTES)?,
        None => NewObjects::default(),
    };
    let mut checked = Vec::with_capacity(updates.len());
    for update in updates {
        let movement = view.ref_move(update.old.as_ref(), update.new.as_ref())?;
        let new_is_commit = match &update.new {
            Some(new) => view.is_commit(new)?,
            None => false,
        };
        checked.push(CheckedUpdate {
            update,
            movement,
            new_is_commit,
        });
    }
    let tips = checked
        .iter()
        .filter_map(|c| c.update.new.clone())
        .collect();
    let inspector = Inspector {
        view,
        git_dir: git_dir.to_owned(),
        tips,
    };
    Ok((checked, objects, Some(inspector)))
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
            lfs_pointers: vec![],
            bad_names: vec![],
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
