//! The glue for git's smart HTTP protocol: which service a request names, the `Git-Protocol`
//! header, the pkt-line preamble of a refs advertisement, and the exact `git upload-pack` /
//! `git receive-pack` command lines that serve a request.
//!
//! Clone, fetch and push are served by git itself (`--stateless-rpc`), as the large forges
//! do: every protocol version and capability git speaks works without being reimplemented.
//! This module decides what those processes see — their arguments (a vector, never a shell),
//! their whole environment (cleared, then only what is listed here) and their configuration
//! (given with `-c`, so nothing on disk or in the server's environment changes it).

use crate::error::GitError;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The two services of smart HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// Clone and fetch.
    UploadPack,
    /// Push.
    ReceivePack,
}

impl Service {
    /// From the `service=` query parameter of `info/refs` or the last path segment of an RPC.
    pub fn parse(name: &str) -> Option<Service> {
        match name {
            "git-upload-pack" => Some(Service::UploadPack),
            "git-receive-pack" => Some(Service::ReceivePack),
            _ => None,
        }
    }

    /// `git-upload-pack` or `git-receive-pack`.
    pub fn name(self) -> &'static str {
        match self {
            Service::UploadPack => "git-upload-pack",
            Service::ReceivePack => "git-receive-pack",
        }
    }

    /// The git subcommand: `upload-pack` or `receive-pack`.
    fn subcommand(self) -> &'static str {
        match self {
            Service::UploadPack => "upload-pack",
            Service::ReceivePack => "receive-pack",
        }
    }

    /// Content type of the `info/refs` answer.
    pub fn advertisement_content_type(self) -> &'static str {
        match self {
            Service::UploadPack => "application/x-git-upload-pack-advertisement",
            Service::ReceivePack => "application/x-git-receive-pack-advertisement",
        }
    }

    /// Content type the client must send with an RPC request.
    pub fn request_content_type(self) -> &'static str {
        match self {
            Service::UploadPack => "application/x-git-upload-pack-request",
            Service::ReceivePack => "application/x-git-receive-pack-request",
        }
    }

    /// Content type of an RPC answer.
    pub fn result_content_type(self) -> &'static str {
        match self {
            Service::UploadPack => "application/x-git-upload-pack-result",
            Service::ReceivePack => "application/x-git-receive-pack-result",
        }
    }
}

/// A `Git-Protocol` header value that is safe to hand to git as `GIT_PROTOCOL`: colon-separated
/// `key` or `key=value` items of letters, digits and `.-_` (e.g. `version=2`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitProtocol(String);

impl GitProtocol {
    /// Longest value accepted; git itself sends about a dozen bytes.
    const MAX_LEN: usize = 256;

    /// `None` when the value is not of the expected shape.
    pub fn parse(value: &str) -> Option<GitProtocol> {
        let word = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        let valid = !value.is_empty()
            && value.len() <= Self::MAX_LEN
            && value.split(':').all(|item| match item.split_once('=') {
                Some((key, val)) => word(key) && word(val),
                None => word(item),
            });
        valid.then(|| GitProtocol(value.to_owned()))
    }

    /// Whether the client asks for protocol version 2.
    pub fn is_v2(&self) -> bool {
        self.0.split(':').any(|item| item == "version=2")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The preamble of a v0/v1 `info/refs` answer: `# service=<name>` as a pkt-line, then a
/// flush-pkt. A protocol v2 upload-pack answer has none (the client reads `version 2` first);
/// receive-pack speaks only v0/v1, so its answer always has it.
pub fn advertisement_preamble(service: Service, protocol: Option<&GitProtocol>) -> Vec<u8> {
    if service == Service::UploadPack && protocol.is_some_and(GitProtocol::is_v2) {
        return Vec::new();
    }
    let line = format!("# service={}\n", service.name());
    format!("{:04x}{line}0000", line.len() + 4).into_bytes()
}

/// Everything a git subprocess is allowed to know.
#[derive(Clone, Debug)]
pub struct GitCommandSettings {
    /// The `git` executable.
    pub git_bin: PathBuf,
    /// `PATH` for git to find its helpers (`git-upload-pack`, `git-index-pack`, …).
    pub path_env: OsString,
    /// Largest pack `receive-pack` accepts (`receive.maxInputSize`), in bytes.
    pub max_push_bytes: u64,
    /// For receive-pack: folder holding the `pre-receive` hook (`core.hooksPath`).
    pub hooks_dir: Option<PathBuf>,
    /// For receive-pack: variables passed to the hook (the pusher, the repository). Set by
    /// the server only; nothing in them comes from the request.
    pub hook_env: Vec<(String, OsString)>,
}

/// `git_bin` with a cleared environment: `PATH` (for git's helpers) and no system or user
/// configuration, so only what the caller gives with `-c` applies; no prompt; C locale.
fn cleared_git(git_bin: &Path, path_env: &std::ffi::OsStr) -> Command {
    let mut command = Command::new(git_bin);
    command.env_clear();
    command.env("PATH", path_env);
    command.env("GIT_CONFIG_NOSYSTEM", "1");
    command.env("GIT_CONFIG_GLOBAL", "/dev/null");
    command.env("GIT_TERMINAL_PROMPT", "0");
    command.env("LC_ALL", "C");
    command
}

/// The `git <service> --stateless-rpc [--advertise-refs] <repo>` command, with a cleared
/// environment. Stdio is left to the caller.
pub fn rpc_command(
    settings: &GitCommandSettings,
    service: Service,
    repo_dir: &Path,
    advertise_refs: bool,
    protocol: Option<&GitProtocol>,
) -> Command {
    let mut command = cleared_git(&settings.git_bin, &settings.path_env);
    if let Some(protocol) = protocol {
        command.env("GIT_PROTOCOL", protocol.as_str());
    }
    for (key, value) in config(settings, service) {
        command.arg("-c").arg(format!("{key}={value}"));
    }
    command.arg(service.subcommand()).arg("--stateless-rpc");
    if advertise_refs {
        command.arg("--advertise-refs");
    }
    command.arg(repo_dir);
    if service == Service::ReceivePack {
        for (key, value) in &settings.hook_env {
            command.env(key, value);
        }
    }
    command
}

/// git's fsck findings raised to errors when git's own checks run ([`fsck_by_git`]): the
/// ones git only warns about by default — paths that no checkout could hold, every spelling
/// of `.git` NTFS or HFS+ would read as `.git`, NUL bytes in commits, `.gitmodules` that do
/// not parse, symlinked `.gitattributes`, `.gitignore`, `.mailmap` (git skips, with a
/// warning, an id it does not know, so older gits accept the list).
pub(crate) const FSCK_ERRORS: &[&str] = &[
    "hasDotgit",
    "hasDot",
    "hasDotdot",
    "emptyName",
    "fullPathname",
    "largePathname",
    "nullSha1",
    "nulInCommit",
    "gitmodulesParse",
    "gitattributesSymlink",
    "gitignoreSymlink",
    "mailmapSymlink",
];

/// What git's own object checks run with, for the objects [`crate::fsck`] cannot vouch for
/// ([`fsck_by_git`]).
#[derive(Clone, Debug)]
pub struct GitChecks {
    /// The `git` executable.
    pub git_bin: PathBuf,
    /// `PATH` for git to find its helpers.
    pub path_env: OsString,
    /// A folder for the pack the check writes (removed after).
    pub scratch: PathBuf,
}

/// The most of git's message kept when its checks refuse a push.
const MAX_FSCK_MESSAGE: usize = 2048;

/// Runs git's own object checks over `ids`, objects of the quarantine `quarantine` of
/// `git_dir`, as `receive.fsckObjects` would have inside `index-pack`: `git pack-objects`
/// packs them and `git index-pack --strict` (with [`FSCK_ERRORS`] raised to errors) reads
/// the pack into a scratch folder, checking every object and that every object they name
/// exists with its type, in the push or the repository. Returns git's message when it
/// refuses them. The environment is the hook's (the repository with the quarantine), and
/// nothing is written but the scratch pack, removed after.
pub(crate) fn fsck_by_git(
    checks: &GitChecks,
    git_dir: &Path,
    quarantine: &Path,
    ids: &[git2::Oid],
) -> Result<Option<String>, GitError> {
    use std::io::Write;
    use std::process::Stdio;
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let scratch = checks
        .scratch
        .join(format!("fsck-{}-{run}", std::process::id()));
    let io = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| GitError::Io {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(&scratch).map_err(io("creating", &scratch))?;
    let _removed = RemovedAfter(scratch.clone());
    let git = |args: &[&str]| {
        let mut command = cleared_git(&checks.git_bin, &checks.path_env);
        command.env("GIT_DIR", git_dir);
        command.env("GIT_OBJECT_DIRECTORY", quarantine);
        command.env("GIT_ALTERNATE_OBJECT_DIRECTORIES", git_dir.join("objects"));
        command.args(args);
        command
    };
    let strict = format!(
        "--strict={}",
        FSCK_ERRORS
            .iter()
            .map(|id| format!("{}=error", id.to_ascii_lowercase()))
            .collect::<Vec<_>>()
            .join(",")
    );
    let pack_path = scratch.join("check.pack");
    let message_path = scratch.join("message");
    let message = std::fs::File::create(&message_path).map_err(io("creating", &message_path))?;
    let spawn = |what: &'static str| io(what, git_dir);
    let mut packer = git(&["pack-objects", "--stdout", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(spawn("starting git pack-objects for"))?;
    let packed = packer
        .stdout
        .take()
        .map(Stdio::from)
        .unwrap_or(Stdio::null());
    let pack_arg = pack_path.to_string_lossy().into_owned();
    let indexer = message
        .try_clone()
        .map_err(io("opening", &message_path))
        .and_then(|message| {
            git(&["index-pack", &strict, "--stdin", &pack_arg])
                .stdin(packed)
                .stdout(Stdio::null())
                .stderr(Stdio::from(message))
                .spawn()
                .map_err(spawn("starting git index-pack for"))
        });
    let mut indexer = match indexer {
        Ok(indexer) => indexer,
        Err(e) => {
            // pack-objects would wait for its list: stopped, and reaped.
            let _ = packer.kill();
            let _ = packer.wait();
            return Err(e);
        }
    };
    // pack-objects reads the whole list before it writes: no deadlock with its output.
    if let Some(input) = packer.stdin.take() {
        let mut input = std::io::BufWriter::new(input);
        // A write that fails means pack-objects is gone; its status says why.
        let _ = ids
            .iter()
            .try_for_each(|id| writeln!(input, "{id}"))
            .and_then(|()| input.flush());
    }
    let packed_ok = packer
        .wait()
        .map_err(spawn("waiting for git pack-objects in"))?;
    let indexed_ok = indexer
        .wait()
        .map_err(spawn("waiting for git index-pack in"))?;
    if packed_ok.success() && indexed_ok.success() {
        return Ok(None);
    }
    let mut said = std::fs::read(&message_path).unwrap_or_default();
    said.truncate(MAX_FSCK_MESSAGE);
    let said = String::from_utf8_lossy(&said).trim().to_owned();
    // index-pack stops at the first object it refuses, and pack-objects, writing to it,
    // then dies of the closed pipe: index-pack's word counts first.
    Ok(Some(if indexed_ok.success() {
        format!("git could not read the pushed objects back ({packed_ok})")
    } else if said.is_empty() {
        format!("git's object checks refused the pushed objects ({indexed_ok})")
    } else {
        said
    }))
}

/// A folder removed (with what it holds) when this is dropped.
struct RemovedAfter(PathBuf);

impl Drop for RemovedAfter {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The configuration every served request runs with.
fn config(settings: &GitCommandSettings, service: Service) -> Vec<(&'static str, String)> {
    let mut config = vec![
        // Objects, the packs' indexes and refs reach the disk before a push is acknowledged
        // (git's default skips loose objects, which is what small pushes write, and refs; a
        // pack whose index were lost with power would leave its objects unreadable while the
        // ref naming them survived).
        ("core.fsync", "objects,pack-metadata,reference".to_owned()),
        ("core.fsyncMethod", "fsync".to_owned()),
        // An API commit holds a branch's lock file for a few milliseconds; wait for it
        // rather than failing the push.
        ("core.filesRefLockTimeout", "2000".to_owned()),
    ];
    match service {
        Service::UploadPack => {
            // Partial clones (`--filter=blob:none`) of repositories with many files.
            config.push(("uploadpack.allowFilter", "true".to_owned()));
        }
        Service::ReceivePack => {
            config.push(("receive.maxInputSize", settings.max_push_bytes.to_string()));
            // gc would daemonize out of the request and race other writers; it is left to
            // maintenance, not to whichever push crosses the threshold.
            config.push(("receive.autogc", "false".to_owned()));
            // Every ref of a push lands or none does (when the client asks `--atomic`),
            // and the report tells which.
            config.push(("receive.advertiseAtomic", "true".to_owned()));
            config.push(("receive.advertisePushOptions", "false".to_owned()));
            // Rules are the pre-receive hook's; git's own per-ref denials would only
            // duplicate them with less helpful messages.
            config.push(("receive.denyDeletes", "false".to_owned()));
            config.push(("receive.denyNonFastForwards", "false".to_owned()));
            // Every pushed object is checked as git's fsck would (malformed commits and
            // tags, `.gitmodules` with option-like URLs or paths, symlinked `.gitmodules`,
            // trees out of order…), but by the server, beside receive-pack's own
            // connectivity check rather than inside `index-pack`, where the checks run one
            // thread at a time: `crate::fsck` vouches for the plainly good objects, and git's
            // own checks ([`fsck_by_git`]) judge the rest before the hook answers.
            config.push(("receive.fsckObjects", "false".to_owned()));
            if let Some(hooks) = &settings.hooks_dir {
                config.push(("core.hooksPath", hooks.to_string_lossy().into_owned()));
            }
        }
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_parse_from_their_wire_names_only() {
        assert_eq!(Service::parse("git-upload-pack"), Some(Service::UploadPack));
        assert_eq!(
            Service::parse("git-receive-pack"),
            Some(Service::ReceivePack)
        );
        for bad in ["upload-pack", "git-upload-archive", "", "git-upload-pack\n"] {
            assert_eq!(Service::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn git_protocol_accepts_what_git_sends_and_nothing_odd() {
        assert!(GitProtocol::parse("version=2").expect("valid").is_v2());
        assert!(!GitProtocol::parse("version=1").expect("valid").is_v2());
        assert!(
            GitProtocol::parse("version=2:object-format=sha1")
                .expect("valid")
                .is_v2()
        );
        for bad in [
            "",
            "version=2;rm -rf /",
            "version=2\nX=1",
            "version=",
            "=2",
            "a::b",
            "version=2 ",
            &"a".repeat(300),
        ] {
            assert_eq!(GitProtocol::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn preamble_is_a_service_pkt_line_and_a_flush_except_for_v2_fetches() {
        assert_eq!(
            advertisement_preamble(Service::UploadPack, None),
            b"001e# service=git-upload-pack\n0000"
        );
        let v2 = GitProtocol::parse("version=2").expect("valid");
        assert!(advertisement_preamble(Service::UploadPack, Some(&v2)).is_empty());
        assert_eq!(
            advertisement_preamble(Service::ReceivePack, Some(&v2)),
            b"001f# service=git-receive-pack\n0000"
        );
    }

    #[test]
    fn commands_are_argument_vectors_with_a_cleared_environment() {
        let settings = GitCommandSettings {
            git_bin: "git".into(),
            path_env: "/usr/bin:/bin".into(),
            max_push_bytes: 1000,
            hooks_dir: Some("/data/hooks".into()),
            hook_env: vec![("TROVE_PUSH_REPO_ID".into(), "7".into())],
        };
        let v2 = GitProtocol::parse("version=2").expect("valid");
        let command = rpc_command(
            &settings,
            Service::ReceivePack,
            Path::new("/data/repos/7.git"),
            false,
            Some(&v2),
        );
        let args: Vec<_> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.contains(&"receive.maxInputSize=1000".to_owned()));
        assert!(args.contains(&"core.hooksPath=/data/hooks".to_owned()));
        assert!(args.contains(&"receive.fsckObjects=false".to_owned()));
        assert_eq!(
            &args[args.len() - 3..],
            ["receive-pack", "--stateless-rpc", "/data/repos/7.git"]
        );
        let env: Vec<_> = command
            .get_envs()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.is_some()))
            .collect();
        assert!(env.contains(&("GIT_PROTOCOL".into(), true)));
        assert!(env.contains(&("TROVE_PUSH_REPO_ID".into(), true)));

        let fetch = rpc_command(
            &settings,
            Service::UploadPack,
            Path::new("/r.git"),
            true,
            None,
        );
        let env: Vec<_> = fetch
            .get_envs()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert!(!env.iter().any(|k| k.starts_with("TROVE_")));
        assert!(!env.contains(&"GIT_PROTOCOL".to_owned()));
        assert!(fetch.get_args().any(|a| a == "--advertise-refs"));
    }
}
