//! Builds of a Space's revision: what the card asks for (`sdk`, `sdk_version`, `app_file`),
//! the revision's files exported to its own directory, and for Python SDKs a virtual
//! environment made by a pinned `uv` with a package cache shared by every build.

use super::logs::LogBuffer;
use crate::config::SpacesConfig;
use crate::context::Context;
use crate::error::ApiResult;
use crate::repos::card::Meta;
use crate::repos::content::{FileBytes, open};
use crate::repos::index::{analyze, snapshot};
use crate::repos::{RepoRef, with_git};
use futures_util::StreamExt;
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
    if let Some(uid) = uid {
        super::isolation::secure_space_dir(&run_dir(state), &space, uid)
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
        let timeout = Duration::from_secs(config.build_timeout_secs);
        let result = tokio::time::timeout(
            timeout,
            python_env(config, &built, package, spec.sdk_version.as_deref(), log),
        )
        .await;
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

/// The environment builds run with: a fresh `PATH` and `HOME`, the caches, and the hub's
/// network settings (proxies, certificates, package indexes).
fn build_env(config: &SpacesConfig) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            BUILD_ENV_PREFIXES.iter().any(|p| k.starts_with(p))
                || BUILD_ENV_PROXIES.contains(&k.as_str())
        })
        .collect();
    let cache = &config.cache_dir;
    env.push(("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()));
    env.push(("HOME".into(), cache.join("home").display().to_string()));
    env.push((
        "UV_CACHE_DIR".into(),
        cache.join("uv").display().to_string(),
    ));
    env.push((
        "PIP_CACHE_DIR".into(),
        cache.join("pip").display().to_string(),
    ));
    env.push(("UV_NO_PROGRESS".into(), "1".into()));
    env.push(("UV_PYTHON_DOWNLOADS".into(), "never".into()));
    env.push(("LANG".into(), "C.UTF-8".into()));
    env
}

/// Runs one build step, its output in `log`; an error names the step.
async fn step(
    what: &str,
    argv: &[String],
    env: &[(String, String)],
    log: &Arc<LogBuffer>,
) -> Result<(), String> {
    log.push(&format!("$ {}", argv.join(" ")));
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{what}: cannot start {}: {e}", argv[0]))?;
    let out = child
        .stdout
        .take()
        .map(|s| tokio::spawn(super::process::copy_lines(s, log.clone())));
    let err = child
        .stderr
        .take()
        .map(|s| tokio::spawn(super::process::copy_lines(s, log.clone())));
    let status = child.wait().await.map_err(|e| format!("{what}: {e}"))?;
    for task in [out, err].into_iter().flatten() {
        let _ = task.await;
    }
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

/// The pinned `uv`, installed into the tools cache on first use.
async fn uv(
    config: &SpacesConfig,
    env: &[(String, String)],
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
    let partial = config
        .cache_dir
        .join("tools")
        .join(format!(".uv-{UV_VERSION}-{}", uuid::Uuid::new_v4()));
    let python = config.python.display().to_string();
    let partial_s = partial.display().to_string();
    step(
        "creating the installer's environment",
        &[python, "-m".into(), "venv".into(), partial_s.clone()],
        env,
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
        env,
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

/// The revision's virtual environment: `requirements.txt` plus the SDK package, pinned to
/// the card's `sdk_version` when it gives one.
async fn python_env(
    config: &SpacesConfig,
    built: &Built,
    package: &str,
    version: Option<&str>,
    log: &Arc<LogBuffer>,
) -> Result<(), String> {
    let env = build_env(config);
    tokio::fs::create_dir_all(&config.cache_dir)
        .await
        .map_err(|e| format!("creating the cache dir: {e}"))?;
    let uv = uv(config, &env, log).await?.display().to_string();
    let venv = built.dir.join("venv").display().to_string();
    step(
        "creating the virtual environment",
        &[
            uv.clone(),
            "venv".into(),
            "--python".into(),
            config.python.display().to_string(),
            venv.clone(),
        ],
        &env,
        log,
    )
    .await?;
    let mut argv = vec![
        uv,
        "pip".into(),
        "install".into(),
        "--python".into(),
        format!("{venv}/bin/python"),
    ];
    let requirements = built.app_dir().join("requirements.txt");
    if tokio::fs::try_exists(&requirements).await.unwrap_or(false) {
        argv.push("-r".into());
        argv.push(requirements.display().to_string());
    }
    argv.push(match version {
        Some(v) => format!("{package}=={v}"),
        None => package.to_owned(),
    });
    step("installing the requirements", &argv, &env, log).await
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
}
