//! The server's side of the `pre-receive` hook: for each push, a socket pair whose one end
//! receive-pack's hook inherits (`trove hook pre-receive` sends the ref updates and the
//! quarantine through it and prints the answer), and the task that answers on the other.
//!
//! The examination of the pushed objects (trees for the path rule, small blobs for LFS
//! pointers, sizes for the large-file rule: `trove_git::PushView::new_objects`) starts as
//! soon as `index-pack` has written the quarantine's pack and index, while receive-pack runs
//! its connectivity check, rather than once the hook is asked: the quarantine no longer
//! changes after `index-pack` (receive-pack only moves it into the repository once the hook
//! accepted), and the examination reads nothing else that a push could change. When the hook
//! asks, its quarantine must be the one examined, with the same files in it, or it is
//! examined again; every rule is still applied before receive-pack moves any ref.

use super::hook::{
    CheckedUpdate, HookRequest, LARGE_FILE_BYTES, MAX_REQUEST_BYTES, PullRequestFacts, PushFacts,
    Verdict, decide,
};
use crate::context::Context;
use crate::repos::push::Pusher;
use anyhow::Context as _;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use trove_git::{NewObjects, PushView, RefMove};
use trove_types::{GitOid, Sha256Hex};

/// How soon the server first looks for the push's quarantine once the pack has been sent to
/// git, and how often it looks again for the first [`LOOK_OFTEN_FOR`] looks: the
/// examination, which runs beside receive-pack's connectivity check, cannot start before
/// it is found, and a first push of 17,000 objects is indexed in about 70 ms (growing waits
/// had grown to 20 ms by then, the examination starting up to 20 ms late). After those,
/// each miss waits a quarter longer, up to [`LOOK_AT_MOST_EVERY`], so a pack that takes
/// minutes to index costs a few directory reads a second, not hundreds.
const LOOK_FIRST_AFTER: Duration = Duration::from_millis(2);
/// Looks made every [`LOOK_FIRST_AFTER`] before the waits grow (about 250 ms).
const LOOK_OFTEN_FOR: u32 = 125;
/// The longest wait between two looks for the quarantine.
const LOOK_AT_MOST_EVERY: Duration = Duration::from_millis(20);
/// The folders receive-pack makes for a push's quarantine, under `objects/`.
const QUARANTINE_PREFIX: &str = "tmp_objdir-incoming-";

/// A socket pair for one push.
pub struct HookSocket {
    /// The server's end.
    pub server: UnixStream,
    /// The end receive-pack inherits (and its hook after it); never 0, 1 or 2, which the
    /// child's standard streams replace.
    pub child: OwnedFd,
}

/// Makes the socket pair of one push. Both ends are closed on exec: the child's end is made
/// inheritable in the child only, just before git starts (`process::spawn`).
pub fn socket_pair() -> std::io::Result<HookSocket> {
    let (server, child) = UnixStream::pair()?;
    let child = OwnedFd::from(child);
    // A duplicate is numbered 3 or above.
    let child = if child.as_raw_fd() <= 2 {
        child.try_clone()?
    } else {
        child
    };
    Ok(HookSocket { server, child })
}

/// What the server needs to answer a push's hook.
pub struct HookCheck {
    pub context: Context,
    pub repo_id: i64,
    pub pusher: Pusher,
    pub git_dir: PathBuf,
    /// How git's own object checks run, for the objects the server's cannot vouch for.
    pub git_checks: trove_git::GitChecks,
    /// The most the answer may take (the git process's own deadline).
    pub timeout: Duration,
    /// The ref updates the request asks for, read from its start ([`watch_commands`]), so
    /// that how each ref moves is known before the hook asks.
    pub commands: oneshot::Receiver<Vec<Move>>,
}

/// A ref update's two sides (`None`: absent), as a request or the hook states it.
pub type Move = (Option<GitOid>, Option<GitOid>);

/// What git says of one [`Move`]: how the ref moves, and whether the new side is a commit.
type Judged = (RefMove, bool);

impl HookCheck {
    /// Answers the hook of the receive-pack whose process id is `pid`, on `socket`; until
    /// the hook asks, looks for the push's quarantine once `input_done` says the pack has
    /// been handed to git, and examines it as soon as `index-pack` has finished it. Returns
    /// when the hook has its answer, or when every process of the push closed the socket
    /// without asking (git refused the push before its hook, or it sent no ref update).
    pub async fn serve(
        mut self,
        socket: UnixStream,
        pid: Option<u32>,
        input_done: oneshot::Receiver<()>,
    ) {
        let repo_id = self.repo_id;
        match tokio::time::timeout(self.timeout, self.answer(socket, pid, input_done)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(repo.id = repo_id, error = %format!("{e:#}"), "answering the pre-receive hook");
            }
            Err(_) => tracing::warn!(
                repo.id = repo_id,
                "the pre-receive hook got no answer in time"
            ),
        }
    }

    async fn answer(
        &mut self,
        socket: UnixStream,
        pid: Option<u32>,
        input_done: oneshot::Receiver<()>,
    ) -> anyhow::Result<()> {
        socket.set_nonblocking(true)?;
        let mut socket = tokio::net::UnixStream::from_std(socket)?;
        let (mut reader, mut writer) = socket.split();
        let read = read_request(&mut reader);
        tokio::pin!(read);
        let mut input_done = Some(input_done);
        let mut looking = false;
        let mut look_after = LOOK_FIRST_AFTER;
        let mut looks: u32 = 0;
        let mut early: Option<Early> = None;
        let request = loop {
            tokio::select! {
                request = &mut read => break request?,
                sent = async { input_done.as_mut().expect("guarded").await }, if input_done.is_some() => {
                    input_done = None;
                    looking = sent.is_ok() && pid.is_some();
                }
                () = tokio::time::sleep(look_after), if looking => {
                    let (git_dir, pid) = (self.git_dir.clone(), pid.unwrap_or_default());
                    if let Ok(Some(found)) =
                        tokio::task::spawn_blocking(move || find_quarantine(&git_dir, pid)).await
                    {
                        looking = false;
                        // The commands come before the pack: known once it has been sent.
                        let moves = self.commands.try_recv().unwrap_or_default();
                        early = Some(Early::start(
                            self.git_dir.clone(),
                            found,
                            moves,
                            self.git_checks.clone(),
                        ));
                    } else {
                        looks += 1;
                        if looks >= LOOK_OFTEN_FOR {
                            look_after = (look_after + look_after / 4).min(LOOK_AT_MOST_EVERY);
                        }
                    }
                }
            }
        };
        let Some(request) = request else {
            return Ok(());
        };
        let verdict = match HookRequest::decode(&request) {
            Ok(request) => match self.check(request, early).await {
                Ok(refusals) => Verdict::from_refusals(&refusals),
                Err(e) => Verdict::unchecked(&e),
            },
            Err(e) => Verdict::unchecked(&e),
        };
        tracing::debug!(
            repo.id = self.repo_id,
            accepted = verdict.accepted,
            "pre-receive verdict"
        );
        writer.write_all(&verdict.encode()).await?;
        writer.shutdown().await?;
        Ok(())
    }

    /// The reasons to refuse the push `request` describes (none: it may land). `early` is
    /// the examination started before the hook asked, used only if it read the very
    /// quarantine the hook names, unchanged since.
    async fn check(
        &self,
        request: HookRequest,
        early: Option<Early>,
    ) -> anyhow::Result<Vec<String>> {
        let pusher = &self.pusher;
        if !pusher.can_write && !pusher.can_contribute {
            return Ok(decide(&PushFacts {
                pusher,
                updates: &[],
                objects: &NewObjects::default(),
                stored: &HashMap::new(),
                paths: &HashMap::new(),
                pull_requests: &HashMap::new(),
            }));
        }
        let quarantine = match &request.quarantine {
            Some(q) => Some(self.checked_quarantine(q).await?),
            None => None,
        };
        let (examined, judged) = match (&quarantine, early) {
            (Some(q), Some(early)) if early.quarantine == *q => early.result().await.unzip(),
            _ => (None, None),
        };
        tracing::debug!(
            repo.id = self.repo_id,
            examined_early = examined.is_some(),
            "pre-receive check"
        );
        let (git_dir, git_checks) = (self.git_dir.clone(), self.git_checks.clone());
        let (checked, objects, inspector) = tokio::task::spawn_blocking(move || {
            inspect(
                &git_dir,
                &git_checks,
                quarantine.as_deref(),
                request.updates,
                examined,
                judged.unwrap_or_default(),
            )
        })
        .await
        .context("inspecting the push")??;
        let pr_refs: Vec<(String, i64)> = checked
            .iter()
            .filter_map(|c| {
                crate::repos::discussions::pr_number(&c.update.name)
                    .map(|n| (c.update.name.clone(), n))
            })
            .collect();
        let db = &self.context.db;
        let oids: Vec<Sha256Hex> = objects
            .lfs_pointers
            .iter()
            .map(|(_, p)| p.oid.clone())
            .collect();
        let stored = if oids.is_empty() {
            HashMap::new()
        } else {
            db.repo_objects_sizes(self.repo_id, &oids).await?
        };
        let mut pull_requests = HashMap::new();
        for (name, num) in pr_refs {
            if let Some(d) = db.discussion(self.repo_id, num).await?
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
        let facts = PushFacts {
            pusher,
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

    /// The quarantine the hook names, resolved, if it is a quarantine folder of this
    /// repository (what git names; anything else is refused).
    async fn checked_quarantine(&self, named: &Path) -> anyhow::Result<PathBuf> {
        let (named, objects) = (named.to_owned(), self.git_dir.join("objects"));
        tokio::task::spawn_blocking(move || {
            let resolved = std::fs::canonicalize(&named)
                .with_context(|| format!("resolving the quarantine {}", named.display()))?;
            let objects = std::fs::canonicalize(&objects)?;
            let is_quarantine = resolved.parent() == Some(objects.as_path())
                && resolved
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(QUARANTINE_PREFIX));
            anyhow::ensure!(
                is_quarantine,
                "{} is not a quarantine of this repository",
                named.display()
            );
            Ok(resolved)
        })
        .await?
    }
}

/// Bytes at the start of a receive-pack request searched for its commands at most.
const MAX_COMMAND_BYTES: usize = 1 << 20;

/// Passes a receive-pack request body through unchanged, reading the ref update commands
/// at its start (`<old> <new> <ref>` pkt-lines up to the first flush) as they go by; what it
/// finds is sent once the flush has passed (nothing if the start is not as expected).
pub fn watch_commands(body: axum::body::Body) -> (axum::body::Body, oneshot::Receiver<Vec<Move>>) {
    use futures_util::StreamExt;
    let (tx, rx) = oneshot::channel();
    let mut watch = CommandWatch {
        buf: Vec::new(),
        pos: 0,
        found: Vec::new(),
        done: Some(tx),
    };
    let stream = body.into_data_stream().map(move |chunk| {
        if let Ok(chunk) = &chunk {
            watch.feed(chunk);
        }
        chunk
    });
    (axum::body::Body::from_stream(stream), rx)
}

/// The state of [`watch_commands`].
struct CommandWatch {
    /// The request's first bytes, up to the flush.
    buf: Vec<u8>,
    /// Where the next pkt-line starts in `buf`.
    pos: usize,
    found: Vec<Move>,
    /// `None` once the commands were sent (or given up).
    done: Option<oneshot::Sender<Vec<Move>>>,
}

impl CommandWatch {
    fn feed(&mut self, chunk: &[u8]) {
        if self.done.is_none() {
            return;
        }
        let room = MAX_COMMAND_BYTES.saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        loop {
            let rest = &self.buf[self.pos..];
            let Some(head) = rest.get(..4) else {
                break;
            };
            let len = std::str::from_utf8(head)
                .ok()
                .and_then(|h| usize::from_str_radix(h, 16).ok());
            match len {
                // The flush that ends the commands.
                Some(0) => return self.finish(),
                Some(len) if len > 4 => {
                    let Some(line) = rest.get(4..len) else {
                        break;
                    };
                    if let Some(found) = parse_command(line) {
                        self.found.push(found);
                    }
                    self.pos += len;
                }
                _ => return self.finish(),
            }
        }
        if self.buf.len() >= MAX_COMMAND_BYTES {
            self.finish();
        }
    }

    fn finish(&mut self) {
        if let Some(done) = self.done.take() {
            // Nobody listens when git refused the push before its hook.
            let _ = done.send(std::mem::take(&mut self.found));
        }
        self.buf = Vec::new();
    }
}

/// `<old> <new> <ref>` (the first command carries git's capabilities after a NUL).
fn parse_command(line: &[u8]) -> Option<Move> {
    let line = line.split(|&b| b == 0).next()?;
    let line = std::str::from_utf8(line).ok()?;
    let update = super::hook::RefUpdate::parse(line)?;
    Some((update.old, update.new))
}

/// Reads the hook's request to its end; `None` when the socket closed without one.
async fn read_request(
    reader: &mut (impl tokio::io::AsyncRead + Unpin),
) -> anyhow::Result<Option<Vec<u8>>> {
    let mut request = Vec::new();
    // The quarantine's path comes first, up to a few kilobytes.
    let limit = (MAX_REQUEST_BYTES + 64 * 1024) as u64;
    reader
        .take(limit + 1)
        .read_to_end(&mut request)
        .await
        .context("reading the hook's request")?;
    anyhow::ensure!(
        request.len() as u64 <= limit,
        "the hook's request is too large"
    );
    Ok((!request.is_empty()).then_some(request))
}

/// The quarantine of the receive-pack `pid` once `index-pack` has finished its pack:
/// receive-pack has `index-pack` write a `.keep` file saying `receive-pack <pid> on <host>`
/// next to the pack, and the index is the last file `index-pack` moves into place (after
/// its `--strict` checks passed). `None` while there is none (yet: or ever, for a small push
/// git unpacks into loose objects).
fn find_quarantine(git_dir: &Path, pid: u32) -> Option<PathBuf> {
    let mark = format!("receive-pack {pid} on ");
    for entry in std::fs::read_dir(git_dir.join("objects")).ok()?.flatten() {
        if !entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(QUARANTINE_PREFIX))
        {
            continue;
        }
        let Ok(files) = std::fs::read_dir(entry.path().join("pack")) else {
            continue;
        };
        for file in files.flatten() {
            let keep = file.path();
            if keep.extension().is_none_or(|e| e != "keep") {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&keep) else {
                continue;
            };
            if text.starts_with(&mark) && keep.with_extension("idx").is_file() {
                return std::fs::canonicalize(entry.path()).ok();
            }
        }
    }
    None
}

/// The files of a quarantine (path under it, size), sorted: what the examination read.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot(Vec<(PathBuf, u64)>);

impl Snapshot {
    /// Lists `quarantine` and its folders (`pack/`, loose objects' `xx/`), one level deep.
    fn of(quarantine: &Path) -> std::io::Result<Snapshot> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(quarantine)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                for inner in std::fs::read_dir(entry.path())? {
                    let inner = inner?;
                    let size = inner.metadata()?.len();
                    files.push((Path::new(&entry.file_name()).join(inner.file_name()), size));
                }
            } else {
                files.push((PathBuf::from(entry.file_name()), meta.len()));
            }
        }
        files.sort();
        Ok(Snapshot(files))
    }
}

/// What an examination started before the hook asked found: the new objects, and how the
/// ref updates the request asked for move.
type Found = (Snapshot, NewObjects, HashMap<Move, Judged>);

/// An examination started before the hook asked.
struct Early {
    /// The quarantine examined (resolved).
    quarantine: PathBuf,
    task: tokio::task::JoinHandle<anyhow::Result<Found>>,
}

impl Early {
    /// Examines `quarantine` and judges `moves` (the request's ref updates).
    fn start(
        git_dir: PathBuf,
        quarantine: PathBuf,
        moves: Vec<Move>,
        git_checks: trove_git::GitChecks,
    ) -> Early {
        let dir = quarantine.clone();
        let task = tokio::task::spawn_blocking(move || {
            let snapshot = Snapshot::of(&dir)?;
            let view = PushView::open(&git_dir, &dir)?;
            let objects = view.new_objects(LARGE_FILE_BYTES, &git_checks)?;
            let mut judged = HashMap::new();
            for (old, new) in moves {
                let verdict = judge(&view, old.as_ref(), new.as_ref())?;
                judged.insert((old, new), verdict);
            }
            Ok((snapshot, objects, judged))
        });
        Early { quarantine, task }
    }

    /// What the examination found, if it succeeded and the quarantine still holds the files
    /// it read (else the hook's check examines it again).
    async fn result(self) -> Option<(NewObjects, HashMap<Move, Judged>)> {
        let (snapshot, objects, judged) = match self.task.await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => {
                tracing::info!(error = %format!("{e:#}"), "early examination of a push failed; examining again");
                return None;
            }
            Err(_) => return None,
        };
        let dir = self.quarantine;
        let now = tokio::task::spawn_blocking(move || Snapshot::of(&dir)).await;
        match now {
            Ok(Ok(now)) if now == snapshot => Some((objects, judged)),
            _ => {
                tracing::info!(
                    "a push's quarantine changed after its examination; examining again"
                );
                None
            }
        }
    }
}

/// The git side of the check, blocking.
struct Inspector {
    /// Open already when the check needed it; else opened by [`Inspector::paths`].
    view: Option<PushView>,
    git_dir: PathBuf,
    quarantine: Option<PathBuf>,
    tips: Vec<GitOid>,
}

impl Inspector {
    /// Where `blobs` appear in the new history (the commits reachable from the pushed tips
    /// and from no ref yet): asked of refused pushes only.
    fn paths(self, blobs: &[GitOid]) -> anyhow::Result<HashMap<GitOid, String>> {
        let known: Vec<GitOid> = trove_git::GitRepo::open(&self.git_dir)?
            .ref_targets()?
            .into_iter()
            .map(|(_, oid)| oid)
            .collect();
        let view = match self.view {
            Some(view) => view,
            None => open_view(&self.git_dir, self.quarantine.as_deref())?,
        };
        Ok(view.paths_of(blobs, &self.tips, &known)?)
    }
}

/// The repository with the quarantine, or alone for a push of deletions only (git makes no
/// quarantine when no pack is sent).
fn open_view(git_dir: &Path, quarantine: Option<&Path>) -> anyhow::Result<PushView> {
    Ok(match quarantine {
        Some(q) => PushView::open(git_dir, q)?,
        None => PushView::open_without_quarantine(git_dir)?,
    })
}

type Inspected = (Vec<CheckedUpdate>, NewObjects, Option<Inspector>);

/// How `old` → `new` moves a ref, and whether `new` is a commit (`false` when absent).
fn judge(view: &PushView, old: Option<&GitOid>, new: Option<&GitOid>) -> anyhow::Result<Judged> {
    let movement = view.ref_move(old, new)?;
    let new_is_commit = match new {
        Some(new) => view.is_commit(new)?,
        None => false,
    };
    Ok((movement, new_is_commit))
}

/// How each ref moves and what the new objects hold (`examined`, `judged`: found already;
/// the objects git holds do not change, so neither does what is found of a pair of ids).
fn inspect(
    git_dir: &Path,
    git_checks: &trove_git::GitChecks,
    quarantine: Option<&Path>,
    updates: Vec<super::hook::RefUpdate>,
    examined: Option<NewObjects>,
    judged: HashMap<Move, Judged>,
) -> anyhow::Result<Inspected> {
    // What the early examination found needs no view of the repository: an accepted push
    // (most) then opens none on its way to the verdict.
    let mut view: Option<PushView> = None;
    let objects = match (quarantine, examined) {
        (Some(_), Some(examined)) => examined,
        (Some(_), None) => {
            let opened = view.insert(open_view(git_dir, quarantine)?);
            opened.new_objects(LARGE_FILE_BYTES, git_checks)?
        }
        (None, _) => NewObjects::default(),
    };
    let mut checked = Vec::with_capacity(updates.len());
    for update in updates {
        let (movement, new_is_commit) = match judged.get(&(update.old.clone(), update.new.clone()))
        {
            Some(&known) => known,
            None => {
                let opened = match &mut view {
                    Some(opened) => opened,
                    None => view.insert(open_view(git_dir, quarantine)?),
                };
                judge(opened, update.old.as_ref(), update.new.as_ref())?
            }
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
        quarantine: quarantine.map(Path::to_owned),
        tips,
    };
    Ok((checked, objects, Some(inspector)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// A bare repository and, beside its objects, a quarantine holding a pack of a commit
    /// the repository lacks (with a file the path rule refuses), kept for receive-pack `pid`
    /// as `index-pack --keep` leaves it.
    fn pushed(dir: &Path, pid: u32) -> (PathBuf, PathBuf) {
        let work = dir.join("work");
        std::fs::create_dir_all(&work).expect("work dir");
        git(&work, &["init", "-q"]);
        std::fs::write(work.join("a.txt"), "a\n").expect("file");
        std::fs::write(work.join("bad\u{1}name"), "b\n").expect("file");
        git(&work, &["add", "."]);
        git(
            &work,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-q",
                "-m",
                "c",
            ],
        );
        let bare = dir.join("r.git");
        git(dir, &["init", "-q", "--bare", "r.git"]);
        let quarantine = bare
            .join("objects")
            .join(format!("{QUARANTINE_PREFIX}test"));
        std::fs::create_dir_all(quarantine.join("pack")).expect("quarantine");
        let pack = Command::new("git")
            .arg("-C")
            .arg(&work)
            .args(["pack-objects", "--all", "--stdout", "-q"])
            .output()
            .expect("pack-objects");
        let mut index = Command::new("git")
            .arg("-C")
            .arg(&bare)
            .args([
                "index-pack",
                "--stdin",
                &format!("--keep=receive-pack {pid} on host"),
            ])
            .env("GIT_OBJECT_DIRECTORY", &quarantine)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("index-pack");
        std::io::Write::write_all(&mut index.stdin.take().expect("stdin"), &pack.stdout)
            .expect("pack sent");
        assert!(index.wait().expect("index-pack ends").success());
        (bare, quarantine)
    }

    fn pkt(line: &str) -> Vec<u8> {
        format!("{:04x}{line}", line.len() + 4).into_bytes()
    }

    fn watched(request: &[u8], chunk: usize) -> Option<Vec<Move>> {
        let (tx, mut rx) = oneshot::channel();
        let mut watch = CommandWatch {
            buf: Vec::new(),
            pos: 0,
            found: Vec::new(),
            done: Some(tx),
        };
        for part in request.chunks(chunk) {
            watch.feed(part);
        }
        rx.try_recv().ok()
    }

    #[test]
    fn the_commands_of_a_push_are_read_as_its_body_goes_by() {
        let (zero, a, b) = ("0".repeat(40), "a".repeat(40), "b".repeat(40));
        let mut request = pkt(&format!(
            "{a} {b} refs/heads/main\0report-status side-band-64k\n"
        ));
        request.extend(pkt(&format!("{zero} {b} refs/heads/dev\n")));
        request.extend(pkt(&format!("{a} {zero} refs/tags/v1\n")));
        request.extend(b"0000PACK\0\0\0\x02");
        let (oid_a, oid_b) = (GitOid::parse(&a).ok(), GitOid::parse(&b).ok());
        let expected = vec![(oid_a.clone(), oid_b.clone()), (None, oid_b), (oid_a, None)];
        for chunk in [1, 3, 7, 64, request.len()] {
            assert_eq!(
                watched(&request, chunk),
                Some(expected.clone()),
                "chunks of {chunk}"
            );
        }
        // Cut before the flush: nothing is sent (the check asks git at the hook's call).
        assert_eq!(watched(&request[..request.len() - 12], 5), None);
        // Not pkt-lines: given up at once, with what was read.
        assert_eq!(watched(b"zzzz", 4), Some(vec![]));
    }

    #[test]
    fn the_quarantine_found_is_the_one_kept_for_this_receive_pack_once_indexed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (bare, quarantine) = pushed(dir.path(), 42);
        let found = find_quarantine(&bare, 42).expect("found");
        assert_eq!(found, std::fs::canonicalize(&quarantine).expect("resolves"));
        // Another receive-pack's (4 is a prefix of 42's number, not its mark).
        assert_eq!(find_quarantine(&bare, 4), None);
        // Until index-pack has moved the index into place, the pack is not complete.
        for entry in std::fs::read_dir(quarantine.join("pack")).expect("pack dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "idx") {
                std::fs::remove_file(path).expect("removed");
            }
        }
        assert_eq!(find_quarantine(&bare, 42), None);
    }

    #[tokio::test]
    async fn an_early_examination_counts_only_while_the_quarantine_is_unchanged() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (bare, quarantine) = pushed(dir.path(), 7);
        let quarantine = std::fs::canonicalize(quarantine).expect("resolves");
        let checks = trove_git::GitChecks {
            git_bin: "git".into(),
            path_env: std::env::var_os("PATH").unwrap_or_default(),
            scratch: dir.path().join("scratch"),
        };
        let expected = PushView::open(&bare, &quarantine)
            .and_then(|view| view.new_objects(LARGE_FILE_BYTES, &checks))
            .expect("examined");
        assert_eq!(expected.bad_names.len(), 1, "{expected:?}");
        let tip = GitOid::parse(git(&dir.path().join("work"), &["rev-parse", "HEAD"]).trim()).ok();
        let moves = vec![(None, tip.clone())];
        let early = Early::start(
            bare.clone(),
            quarantine.clone(),
            moves.clone(),
            checks.clone(),
        );
        let judged = HashMap::from([((None, tip), (RefMove::Create, true))]);
        assert_eq!(early.result().await, Some((expected, judged)));

        let early = Early::start(bare.clone(), quarantine.clone(), moves, checks);
        // A file added after the examination began (a loose object, say): examined again.
        while !early.task.is_finished() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        std::fs::create_dir_all(quarantine.join("ab")).expect("loose folder");
        std::fs::write(quarantine.join("ab").join("c".repeat(38)), b"x").expect("loose file");
        assert_eq!(early.result().await, None);
    }
}
