//! Builds of a Space's revision: what the card asks for (`sdk`, `sdk_version`, `app_file`),
//! the revision's files exported to its own directory, and for Python SDKs a virtual
//! environment made by a pinned `uv`. When Spaces have users of their own, the steps that
//! run a Space's code (`uv venv`, and `uv pip install`, which runs the build backends of its
//! requirements) run as the Space's user under the app's rlimits, with a package cache of
//! the Space's own; the build log names no host path.

use super::isolation;
use super::logs::LogBuffer;
use crate::config::SpacesConfig;
use crate::context::Context;
use crate::error::ApiResult;
use crate::repos::card::Meta;
use crate::repos::content::{FileBytes, open};
use crate::repos::index::{analyze, snapshot};
use crate::repos::{RepoRef, with_git};
use futures_util::StreamExt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use trove_git::{Entry, EntryKind};
use trove_types::DEFAULT_BRANCH;
use trove_types::GitOid;

/// The installer every Python build uses, installed once into the tools cache.
pub const UV_VERSION: &str = "0.9.5";
/// How long a build step's output is still read after the step ended (a process it left
/// behind in a session of its own may hold its pipes open).
const OUTPUT_GRACE: Duration = Duration::from_secs(5);
/// Environment variables of the hub that builds keep: network and index settings.
const BUILD_ENV_PREFIXES: &[&str] = &["PIP_", "UV_", "SSL_CERT_", "REQUESTS_CA_BUNDLE"];
const BUILD_ENV_PROXIES: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
];

/// The SDK of a Space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sdk {
    Static,
    Gradio,
    Streamlit,
    Docker,
}

impl Sdk {
    fn parse(s: &str) -> Option<Sdk> {
        Some(match s {
            "static" => Sdk::Static,
            "gradio" => Sdk::Gradio,
            "streamlit" => Sdk::Streamlit,
            "docker" => Sdk::Docker,
            _ => return None,
        })
    }

    /// The PyPI package of a Python SDK.
    fn package(self) -> Option<&'static str> {
        match self {
            Sdk::Gradio => Some("gradio"),
            Sdk::Streamlit => Some("streamlit"),
            Sdk::Static | Sdk::Docker => None,
        }
    }
}

/// The container engines a docker Space may run on, in order of preference, with the
/// `info` format that prints their server's version.
const ENGINES: &[(&str, &str)] = &[
    ("docker", "{{.ServerVersion}}"),
    ("podman", "{{.Version.Version}}"),
];
/// The stage message of a docker Space on a host without a usable engine.
pub const NO_ENGINE: &str = "docker SDK needs a container engine; none is usable on this host";
/// The port a docker Space's container listens on when its card names none (the Hub's).
const DEFAULT_APP_PORT: u16 = 7860;

/// The first container engine whose binary runs and whose daemon (or socket) answers.
pub async fn container_engine() -> Option<&'static str> {
    for (binary, format) in ENGINES {
        let info = Command::new(binary)
            .args(["info", "--format", format])
            .env_clear()
            .envs(super::docker::engine_env())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .status();
        if let Ok(Ok(status)) = tokio::time::timeout(Duration::from_secs(10), info).await
            && status.success()
        {
            return Some(binary);
        }
    }
    None
}

/// The image a docker Space's revision is built into.
pub fn image_name(repo_id: i64, rev: &GitOid) -> String {
    format!("trove-space-{repo_id}:{rev}")
}

/// What the head of `main` asks for.
pub enum Plan {
    /// Nothing to run: no card `sdk`, or its app file is missing.
    NoApp(String),
    /// The card cannot be run here (an unknown SDK, docker without an engine, a bad version).
    ConfigError(String),
    Build(Spec),
}

/// A revision to build.
#[derive(Clone, Debug)]
pub struct Spec {
    pub rev: GitOid,
    pub sdk: Sdk,
    pub sdk_version: Option<String>,
    pub app_file: String,
    /// docker: the engine that builds and runs it, and the port its container listens on.
    pub engine: Option<&'static str>,
    pub app_port: u16,
    files: Vec<Entry>,
}

/// A built revision, ready to serve or start.
#[derive(Clone, Debug)]
pub struct Built {
    pub rev: GitOid,
    pub sdk: Sdk,
    pub app_file: String,
    pub engine: Option<&'static str>,
    pub app_port: u16,
    /// The revision's directory: `app/` (its files), `venv/`, `home/`.
    pub dir: PathBuf,
    /// The user (uid and gid) of the Space's app and folder; `None`: the hub's own.
    pub uid: Option<u32>,
}

impl Built {
    pub fn app_dir(&self) -> PathBuf {
        self.dir.join("app")
    }
}

/// The directory of a Space's logs: `<data>/spaces/<repo id>/`.
pub fn space_dir(state: &Context, repo_id: i64) -> PathBuf {
    state
        .config
        .data_dir
        .join("spaces")
        .join(repo_id.to_string())
}

/// Where the Spaces' built revisions live: `spaces.run_dir`, else `<data>/spaces`.
fn run_dir(state: &Context) -> PathBuf {
    state
        .config
        .spaces
        .run_dir
        .clone()
        .unwrap_or_else(|| state.config.data_dir.join("spaces"))
}

/// Where a Space's built revisions live: `<run dir>/<repo id>/`.
pub fn revisions_dir(state: &Context, repo_id: i64) -> PathBuf {
    run_dir(state).join(repo_id.to_string())
}

/// Reads the head of `main` and its card.
pub async fn plan(state: &Context, repo: &RepoRef) -> ApiResult<Plan> {
    let head = with_git(state, repo, |git| Ok(git.resolve_revision(DEFAULT_BRANCH)?)).await?;
    let Some(rev) = head else {
        return Ok(Plan::NoApp("the Space has no main branch".into()));
    };
    let snap = snapshot(state, repo, rev.clone()).await?;
    let analysis = analyze(state, repo, &snap, false).await?;
    let Meta::Space(meta) = &analysis.card.meta else {
        return Ok(Plan::NoApp("not a Space".into()));
    };
    let Some(sdk_name) = meta.sdk.as_deref() else {
        return Ok(Plan::NoApp("the card of README.md names no sdk".into()));
    };
    let Some(sdk) = Sdk::parse(sdk_name) else {
        return Ok(Plan::ConfigError(format!("unknown sdk {sdk_name:?}")));
    };
    if let Some(v) = &meta.sdk_version
        && !valid_version(v)
    {
        return Ok(Plan::ConfigError(format!(
            "sdk_version {v:?} is not a version"
        )));
    }
    let app_file = meta.app_file.clone().unwrap_or_else(|| match sdk {
        Sdk::Static => "index.html".into(),
        Sdk::Docker => "Dockerfile".into(),
        Sdk::Gradio | Sdk::Streamlit => "app.py".into(),
    });
    let app_file = if sdk == Sdk::Docker {
        "Dockerfile".into()
    } else {
        app_file
    };
    if !snap.files.iter().any(|e| e.path == app_file) {
        return Ok(Plan::NoApp(format!(
            "the app file {app_file} is not in the Space"
        )));
    }
    let app_port = match meta.app_port.as_deref() {
        None => DEFAULT_APP_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => return Ok(Plan::ConfigError(format!("app_port {p:?} is not a port"))),
        },
    };
    let engine = if sdk == Sdk::Docker {
        match container_engine().await {
            Some(engine) => Some(engine),
            None => return Ok(Plan::ConfigError(NO_ENGINE.into())),
        }
    } else {
        None
    };
    Ok(Plan::Build(Spec {
        rev,
        sdk,
        sdk_version: meta.sdk_version.clone(),
        app_file,
        engine,
        app_port,
        files: snap.files,
    }))
}

/// A version as pip reads it, kept to characters that cannot change the command's meaning.
fn valid_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 32
        && v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '!'))
}

/// Exports the revision and, for Python SDKs, builds its environment, in the Space's
/// folder made private to its user `uid` first (an existing one too). The error is the
/// message of the BUILD_ERROR; the details are in `log`.
pub async fn build(
    state: &Context,
    repo: &RepoRef,
    spec: &Spec,
    uid: Option<u32>,
    log: &Arc<LogBuffer>,
) -> Result<Built, String> {
    let space = revisions_dir(state, repo.repo.id);
    let redact = Redact::new(vec![
        (space.clone(), "<space>"),
        (run_dir(state), "<run dir>"),
        (state.config.spaces.cache_dir.clone(), "<cache>"),
        (state.config.data_dir.clone(), "<data>"),
    ]);
    build_revision(state, repo, spec, uid, &space, &redact, log)
        .await
        .map_err(|e| redact.apply(&e))
}

/// [`build`] of the revision into `space`, the Space's folder.
async fn build_revision(
    state: &Context,
    repo: &RepoRef,
    spec: &Spec,
    uid: Option<u32>,
    space: &Path,
    redact: &Redact,
    log: &Arc<LogBuffer>,
) -> Result<Built, String> {
    if let Some(uid) = uid {
        isolation::secure_space_dir(&run_dir(state), space, uid)
            .map_err(|e| format!("making {} private to the app: {e}", space.display()))?;
    }
    let dir = space.join(spec.rev.to_string());
    let built = Built {
        rev: spec.rev.clone(),
        sdk: spec.sdk,
        app_file: spec.app_file.clone(),
        engine: spec.engine,
        app_port: spec.app_port,
        dir: dir.clone(),
        uid,
    };
    let ready = dir.join(".ready");
    if tokio::fs::try_exists(&ready).await.unwrap_or(false) {
        log.push(&format!("revision {} already built", spec.rev));
        return Ok(built);
    }
    // A build interrupted by a crash left a partial directory: start over.
    if tokio::fs::try_exists(&dir).await.unwrap_or(false) {
        tokio::fs::remove_dir_all(&dir)
            .await
            .map_err(|e| format!("removing a partial build: {e}"))?;
    }
    log.push(&format!("exporting revision {}", spec.rev));
    export(state, repo, &spec.files, &built.app_dir())
        .await
        .map_err(|e| format!("exporting the files: {e}"))?;
    if let Some(engine) = spec.engine {
        let timeout = Duration::from_secs(state.config.spaces.build_timeout_secs);
        let argv = super::docker::build_argv(
            engine,
            &super::docker::hub_id(&state.signer),
            repo.repo.id,
            &image_name(repo.repo.id, &spec.rev),
            &built.app_dir().display().to_string(),
        );
        match tokio::time::timeout(
            timeout,
            step(
                "building the image",
                &argv,
                &super::docker::engine_env(),
                &built.app_dir(),
                redact,
                log,
            ),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(format!("the build took longer than {timeout:?}")),
        }
    }
    if let Some(package) = spec.sdk.package() {
        let config = &state.config.spaces;
        let user = match uid {
            Some(uid) => BuildUser::space(space, &built, uid)
                .map_err(|e| format!("preparing the build's folders for its user: {e}"))?,
            None => BuildUser::hub(config, built.app_dir()),
        };
        let timeout = Duration::from_secs(config.build_timeout_secs);
        let result = tokio::time::timeout(
            timeout,
            python_env(
                config,
                &run_dir(state),
                &built,
                &user,
                (package, spec.sdk_version.as_deref()),
                redact,
                log,
            ),
        )
        .await;
        if let Some(tmp) = &user.tmp {
            let _ = tokio::fs::remove_dir_all(tmp).await;
        }
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(format!("the build took longer than {timeout:?}")),
        }
    }
    tokio::fs::write(&ready, spec.rev.to_string())
        .await
        .map_err(|e| format!("marking the build done: {e}"))?;
    log.push("build done");
    Ok(built)
}

/// Writes every file of the revision under `to`, within the export budget.
async fn export(state: &Context, repo: &RepoRef, files: &[Entry], to: &Path) -> Result<(), String> {
    let budget = state.config.spaces.max_export_bytes;
    let mut total: u64 = 0;
    tokio::fs::create_dir_all(to)
        .await
        .map_err(|e| e.to_string())?;
    for entry in files {
        let Some(bytes) = FileBytes::of(repo, &entry.kind) else {
            continue;
        };
        if let EntryKind::File { size, .. } = &entry.kind {
            total = total.saturating_add(*size);
        }
        if total > budget {
            return Err(format!("the Space's files exceed {budget} bytes"));
        }
        // Tree paths passed the repository path rule (no `..`, no absolute paths).
        let path = to.join(&entry.path);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| e.to_string())?;
        }
        let opened = open(state, &bytes, None)
            .await
            .map_err(|e| format!("{}: {e:?}", entry.path))?
            .ok_or_else(|| format!("{}: its large-file content is missing", entry.path))?;
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| format!("{}: {e}", entry.path))?;
        let mut stream = opened.stream;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("{}: {e}", entry.path))?;
            file.write_all(&chunk)
                .await
                .map_err(|e| format!("{}: {e}", entry.path))?;
        }
        file.flush().await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Who runs a Python Space's build steps, and where they write.
#[derive(Debug)]
struct BuildUser {
    /// The Space's user (uid and gid); `None`: the hub's own.
    uid: Option<u32>,
    home: PathBuf,
    /// `TMPDIR`; `None`: the system's.
    tmp: Option<PathBuf>,
    /// The package caches: `uv/` and `pip/`.
    cache: PathBuf,
    /// The working directory, against which relative paths in `requirements.txt` resolve.
    cwd: PathBuf,
}

impl BuildUser {
    /// The hub's own user, with the package cache every build of the hub shares.
    fn hub(config: &SpacesConfig, cwd: PathBuf) -> BuildUser {
        BuildUser {
            uid: None,
            home: config.cache_dir.join("home"),
            tmp: None,
            cache: config.cache_dir.clone(),
            cwd,
        }
    }

    /// The Space's user `uid`, in the revision's files, writing only to folders of its own:
    /// the revision's `venv/`, `home/` (the app's) and `tmp/`, and the Space's package cache
    /// `<space>/cache/`, kept across its builds and shared with no other Space. All are
    /// inside the Space's folder, which no other Space's user enters.
    fn space(space: &Path, built: &Built, uid: u32) -> io::Result<BuildUser> {
        let (home, tmp, cache) = (
            built.dir.join("home"),
            built.dir.join("tmp"),
            space.join("cache"),
        );
        isolation::own_dir(&built.dir.join("venv"), uid, 0o755)?;
        isolation::own_dir(&tmp, uid, 0o700)?;
        isolation::own_dir(&cache, uid, 0o700)?;
        isolation::secure_home(&home, uid)?;
        Ok(BuildUser {
            uid: Some(uid),
            home,
            tmp: Some(tmp),
            cache,
            cwd: built.app_dir(),
        })
    }

    /// The command line of a step: as the Space's user under the app's rlimits (no cgroup:
    /// address space and processes are rlimits), or as is for the hub's user.
    fn command(&self, config: &SpacesConfig, argv: Vec<String>) -> Vec<String> {
        match self.uid {
            Some(uid) => super::process::confine(config, Some(uid), false, &argv),
            None => argv,
        }
    }

    /// The environment of its steps: a fresh `PATH`, `HOME` and `TMPDIR`, its caches, and
    /// the hub's network settings (proxies, certificates, package indexes).
    fn env(&self) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| {
                BUILD_ENV_PREFIXES.iter().any(|p| k.starts_with(p))
                    || BUILD_ENV_PROXIES.contains(&k.as_str())
            })
            .collect();
        let path = |p: &Path| p.display().to_string();
        env.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
        env.push(("HOME".into(), path(&self.home)));
        if let Some(tmp) = &self.tmp {
            env.push(("TMPDIR".into(), path(tmp)));
        }
        env.push(("UV_CACHE_DIR".into(), path(&self.cache.join("uv"))));
        env.push(("PIP_CACHE_DIR".into(), path(&self.cache.join("pip"))));
        env.push(("UV_NO_PROGRESS".into(), "1".into()));
        env.push(("UV_PYTHON_DOWNLOADS".into(), "never".into()));
        env.push(("LANG".into(), "C.UTF-8".into()));
        env
    }
}

/// Host paths in what a build logs, each replaced by a name that tells nothing of the
/// host's layout (`<space>/<revision>/app/…`).
#[derive(Clone, Debug)]
struct Redact {
    paths: Vec<(String, &'static str)>,
}

impl Redact {
    fn new(paths: Vec<(PathBuf, &'static str)>) -> Redact {
        let mut paths: Vec<(String, &'static str)> = paths
            .into_iter()
            .map(|(p, name)| (p.display().to_string(), name))
            .filter(|(p, _)| p.len() > 1)
            .collect();
        // The longest first: the Space's folder before the run dir that holds it.
        paths.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        Redact { paths }
    }

    fn apply(&self, line: &str) -> String {
        let mut out = line.to_owned();
        for (path, name) in &self.paths {
            if out.contains(path.as_str()) {
                out = out.replace(path.as_str(), name);
            }
        }
        out
    }
}

/// Runs one build step in `cwd`, its output in `log` with host paths redacted; an error
/// names the step. Whatever the step left running in its process group is killed when it
/// ends.
async fn step(
    what: &str,
    argv: &[String],
    env: &[(String, String)],
    cwd: &Path,
    redact: &Redact,
    log: &Arc<LogBuffer>,
) -> Result<(), String> {
    log.push(&redact.apply(&format!("$ {}", argv.join(" "))));
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir(cwd)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{what}: cannot start {}: {e}", redact.apply(&argv[0])))?;
    let out = child
        .stdout
        .take()
        .map(|s| tokio::spawn(copy_redacted(s, log.clone(), redact.clone())));
    let err = child
        .stderr
        .take()
        .map(|s| tokio::spawn(copy_redacted(s, log.clone(), redact.clone())));
    let pid = child.id();
    let status = child.wait().await.map_err(|e| format!("{what}: {e}"));
    if let Some(pid) = pid {
        // What the step left running (a build backend's children) goes with its group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
    for task in [out, err].into_iter().flatten() {
        let abort = task.abort_handle();
        if tokio::time::timeout(OUTPUT_GRACE, task).await.is_err() {
            abort.abort();
        }
    }
    let status = status?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// Copies a step's output into the build log line by line, host paths redacted.
async fn copy_redacted(
    stream: impl tokio::io::AsyncRead + Unpin,
    log: Arc<LogBuffer>,
    redact: Redact,
) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(stream).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => log.push(&redact.apply(&line)),
            Ok(None) => break,
            // Not UTF-8: the line is dropped, the rest still logged.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => continue,
            Err(_) => break,
        }
    }
}

/// The pinned `uv`, installed into the tools cache on first use by the hub's user (from
/// the hub's package index: a wheel, no Space's code).
async fn uv(
    config: &SpacesConfig,
    redact: &Redact,
    log: &Arc<LogBuffer>,
) -> Result<PathBuf, String> {
    let tools = config
        .cache_dir
        .join("tools")
        .join(format!("uv-{UV_VERSION}"));
    let exe = tools.join("bin").join("uv");
    if tokio::fs::try_exists(&exe).await.unwrap_or(false) {
        return Ok(exe);
    }
    let hub = BuildUser::hub(config, config.cache_dir.clone());
    let env = hub.env();
    let partial = config
        .cache_dir
        .join("tools")
        .join(format!(".uv-{UV_VERSION}-{}", uuid::Uuid::new_v4()));
    let python = config.python.display().to_string();
    let partial_s = partial.display().to_string();
    step(
        "creating the installer's environment",
        &[python, "-m".into(), "venv".into(), partial_s.clone()],
        &env,
        &hub.cwd,
        redact,
        log,
    )
    .await?;
    step(
        "installing the installer",
        &[
            format!("{partial_s}/bin/pip"),
            "install".into(),
            "--disable-pip-version-check".into(),
            format!("uv=={UV_VERSION}"),
        ],
        &env,
        &hub.cwd,
        redact,
        log,
    )
    .await?;
    // Another build may have finished first; either copy is the same version.
    match tokio::fs::rename(&partial, &tools).await {
        Ok(()) => {}
        Err(_) if tokio::fs::try_exists(&exe).await.unwrap_or(false) => {
            let _ = tokio::fs::remove_dir_all(&partial).await;
        }
        Err(e) => return Err(format!("installing the installer: {e}")),
    }
    Ok(exe)
}

/// A copy of the hub's `uv` that the Spaces' users may run, `<run dir>/.tools/uv-<version>`
/// (the hub's and read-only to them): the tools cache is usually in the hub's home, which
/// they cannot enter.
async fn uv_for_spaces(uv: &Path, run_dir: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let tools = run_dir.join(".tools");
    let exe = tools.join(format!("uv-{UV_VERSION}"));
    if tokio::fs::try_exists(&exe).await.unwrap_or(false) {
        return Ok(exe);
    }
    let fail = |e: io::Error| format!("copying the installer for the Space's user: {e}");
    tokio::fs::create_dir_all(&tools).await.map_err(fail)?;
    tokio::fs::set_permissions(&tools, std::fs::Permissions::from_mode(0o755))
        .await
        .map_err(fail)?;
    let partial = tools.join(format!(".uv-{UV_VERSION}-{}", uuid::Uuid::new_v4()));
    tokio::fs::copy(uv, &partial).await.map_err(fail)?;
    tokio::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))
        .await
        .map_err(fail)?;
    // Another build may have copied it first; either copy is the same.
    tokio::fs::rename(&partial, &exe).await.map_err(fail)?;
    Ok(exe)
}

/// The revision's virtual environment: `requirements.txt` plus the SDK package, pinned to
/// the card's `sdk_version` when it gives one (`sdk`: the package and that version), made
/// by `user`.
async fn python_env(
    config: &SpacesConfig,
    run_dir: &Path,
    built: &Built,
    user: &BuildUser,
    sdk: (&str, Option<&str>),
    redact: &Redact,
    log: &Arc<LogBuffer>,
) -> Result<(), String> {
    tokio::fs::create_dir_all(&config.cache_dir)
        .await
        .map_err(|e| format!("creating the cache dir: {e}"))?;
    let mut uv = uv(config, redact, log).await?;
    if user.uid.is_some() {
        uv = uv_for_spaces(&uv, run_dir).await?;
    }
    let env = user.env();
    let (venv_argv, install_argv) = python_env_argv(
        config,
        &uv,
        built,
        tokio::fs::try_exists(built.app_dir().join("requirements.txt"))
            .await
            .unwrap_or(false),
        sdk,
    );
    step(
        "creating the virtual environment",
        &user.command(config, venv_argv),
        &env,
        &user.cwd,
        redact,
        log,
    )
    .await?;
    step(
        "installing the requirements",
        &user.command(config, install_argv),
        &env,
        &user.cwd,
        redact,
        log,
    )
    .await
}

/// The two commands of [`python_env`]: `uv venv` and `uv pip install`.
fn python_env_argv(
    config: &SpacesConfig,
    uv: &Path,
    built: &Built,
    requirements: bool,
    (package, version): (&str, Option<&str>),
) -> (Vec<String>, Vec<String>) {
    let uv = uv.display().to_string();
    let venv = built.dir.join("venv").display().to_string();
    let create = vec![
        uv.clone(),
        "venv".into(),
        "--python".into(),
        config.python.display().to_string(),
        venv.clone(),
    ];
    let mut install = vec![
        uv,
        "pip".into(),
        "install".into(),
        "--python".into(),
        format!("{venv}/bin/python"),
    ];
    if requirements {
        install.push("-r".into());
        install.push(
            built
                .app_dir()
                .join("requirements.txt")
                .display()
                .to_string(),
        );
    }
    install.push(match version {
        Some(v) => format!("{package}=={v}"),
        None => package.to_owned(),
    });
    (create, install)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_plain() {
        assert!(valid_version("4.44.1"));
        assert!(valid_version("1.0rc1"));
        assert!(!valid_version(""));
        assert!(!valid_version("4; rm -rf /"));
        assert!(!valid_version(">=4"));
        assert!(!valid_version("4 --index-url=x"));
    }

    fn built(dir: &Path) -> Built {
        Built {
            rev: GitOid::parse("0123456789abcdef0123456789abcdef01234567").expect("oid"),
            sdk: Sdk::Gradio,
            app_file: "app.py".into(),
            engine: None,
            app_port: DEFAULT_APP_PORT,
            dir: dir.to_path_buf(),
            uid: None,
        }
    }

    fn space_user(space: &Path, built: &Built, uid: u32) -> BuildUser {
        BuildUser {
            uid: Some(uid),
            home: built.dir.join("home"),
            tmp: Some(built.dir.join("tmp")),
            cache: space.join("cache"),
            cwd: built.app_dir(),
        }
    }

    #[test]
    fn a_space_build_runs_uv_as_the_spaces_user_under_the_apps_rlimits() {
        let mut config = crate::config::Config::default().spaces;
        config.memory_limit_mb = 2048;
        config.max_processes = 512;
        config.cpu_time_secs = 600;
        let space = Path::new("/srv/run/7");
        let built = built(&space.join("rev"));
        let uv = Path::new("/srv/run/.tools/uv-0.9.5");
        let (venv, install) = python_env_argv(&config, uv, &built, true, ("gradio", Some("5.1")));
        let user = space_user(space, &built, 2_000_000_007);
        let confined = user.command(&config, install.clone());
        let limits = [
            "prlimit",
            "--nofile=4096",
            "--core=0",
            "--as=2147483648",
            "--nproc=512",
            "--cpu=600",
            "--",
            "setpriv",
            "--reuid=2000000007",
            "--regid=2000000007",
            "--clear-groups",
            "--inh-caps=-all",
            "--",
        ];
        assert_eq!(confined[..limits.len()], limits);
        assert_eq!(confined[limits.len()..], install);
        assert_eq!(
            install,
            [
                "/srv/run/.tools/uv-0.9.5",
                "pip",
                "install",
                "--python",
                "/srv/run/7/rev/venv/bin/python",
                "-r",
                "/srv/run/7/rev/app/requirements.txt",
                "gradio==5.1",
            ]
        );
        let confined = user.command(&config, venv.clone());
        assert_eq!(confined[..limits.len()], limits);
        assert_eq!(
            confined[limits.len()..],
            [
                "/srv/run/.tools/uv-0.9.5",
                "venv",
                "--python",
                "/usr/bin/python3",
                "/srv/run/7/rev/venv"
            ]
        );
        // Without a user of its own (the hub is not root), the step runs as is.
        let hub = BuildUser::hub(&config, built.app_dir());
        assert_eq!(hub.command(&config, venv.clone()), venv);
    }

    #[test]
    fn a_space_builds_with_home_temp_and_caches_in_its_own_folder() {
        let config = crate::config::Config::default().spaces;
        let space = Path::new("/srv/run/7");
        let built = built(&space.join("rev"));
        let env: std::collections::HashMap<String, String> =
            space_user(space, &built, 2_000_000_007)
                .env()
                .into_iter()
                .collect();
        assert_eq!(env["HOME"], "/srv/run/7/rev/home");
        assert_eq!(env["TMPDIR"], "/srv/run/7/rev/tmp");
        assert_eq!(env["UV_CACHE_DIR"], "/srv/run/7/cache/uv");
        assert_eq!(env["PIP_CACHE_DIR"], "/srv/run/7/cache/pip");
        assert_eq!(env["PATH"], "/usr/local/bin:/usr/bin:/bin");
        assert!(env.keys().all(|k| !k.starts_with("TROVE")), "{env:?}");
        let cache = config.cache_dir.display().to_string();
        assert!(env.values().all(|v| !v.contains(&cache)), "{env:?}");
        // The hub's own builds keep the cache every build of the hub shares.
        let hub: std::collections::HashMap<String, String> =
            BuildUser::hub(&config, built.app_dir())
                .env()
                .into_iter()
                .collect();
        assert_eq!(hub["UV_CACHE_DIR"], format!("{cache}/uv"));
        assert!(!hub.contains_key("TMPDIR"));
    }

    #[test]
    fn the_build_log_names_no_host_path() {
        let redact = Redact::new(vec![
            (PathBuf::from("/var/lib/trove-spaces/ab12/7"), "<space>"),
            (PathBuf::from("/var/lib/trove-spaces/ab12"), "<run dir>"),
            (PathBuf::from("/root/.cache/trove/spaces"), "<cache>"),
            (PathBuf::from("/srv/trove"), "<data>"),
        ]);
        assert_eq!(
            redact.apply(
                "$ /var/lib/trove-spaces/ab12/.tools/uv-0.9.5 pip install --python \
                 /var/lib/trove-spaces/ab12/7/abc/venv/bin/python -r \
                 /var/lib/trove-spaces/ab12/7/abc/app/requirements.txt gradio"
            ),
            "$ <run dir>/.tools/uv-0.9.5 pip install --python <space>/abc/venv/bin/python -r \
             <space>/abc/app/requirements.txt gradio"
        );
        assert_eq!(
            redact.apply("error at /srv/trove/spaces/7 and /root/.cache/trove/spaces/uv"),
            "error at <data>/spaces/7 and <cache>/uv"
        );
        assert_eq!(redact.apply("nothing to hide"), "nothing to hide");
    }

    /// The folders a Space's build writes are its user's; needs root (it changes owners).
    #[test]
    fn a_space_builds_into_folders_of_its_own_user() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if std::fs::metadata("/proc/self").map(|m| m.uid()).ok() != Some(0) {
            eprintln!("skipped: needs root");
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let space = tmp.path().join("7");
        let built = built(&space.join("rev"));
        std::fs::create_dir_all(built.app_dir()).expect("mkdir");
        let uid = 2_000_000_007;
        let user = BuildUser::space(&space, &built, uid).expect("prepare");
        assert_eq!(user.uid, Some(uid));
        let meta = |p: &Path| std::fs::symlink_metadata(p).expect("stat");
        for (dir, mode) in [
            (built.dir.join("venv"), 0o755),
            (built.dir.join("tmp"), 0o700),
            (built.dir.join("home"), 0o700),
            (space.join("cache"), 0o700),
        ] {
            let m = meta(&dir);
            assert_eq!(
                (m.uid(), m.gid(), m.permissions().mode() & 0o777),
                (uid, uid, mode),
                "{}",
                dir.display()
            );
        }
        // The revision's files stay the hub's.
        assert_eq!(meta(&built.app_dir()).uid(), 0);
        // A second build of the Space reuses its cache.
        BuildUser::space(&space, &built, uid).expect("again");
    }
}
