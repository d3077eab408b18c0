//! An app's process: started in its own process group and working directory, with a
//! cleared environment and resource limits (util-linux `prlimit`, and `setpriv` to the
//! Space's own user when the hub runs as root), its output in the run log, checked until
//! it answers HTTP, and stopped with its whole group.

use super::cgroup::AppCgroup;
use super::isolation;
use super::logs::LogBuffer;
use crate::config::SpacesConfig;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// What to run and where.
pub struct Launch {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// The app's working directory (the exported files of its revision).
    pub cwd: PathBuf,
    /// The whole environment of the app.
    pub env: Vec<(String, String)>,
    /// Its own writable home (caches of the SDK).
    pub home: PathBuf,
    /// The uid and gid (same number) it runs as, through `setpriv`; `None`: the hub's.
    pub uid: Option<u32>,
    /// The loopback port it listens on.
    pub port: u16,
    /// Path of a request that answers once the app is ready.
    pub health_path: String,
    /// Where the running app's pid is recorded (`<pid>.pid`), so that a hub killed without
    /// stopping its apps stops them at its next start ([`stop_leftovers`]).
    pub pid_dir: PathBuf,
    /// A docker Space: `argv` is the engine's `run`, whose container enforces the limits;
    /// the container is removed when the app stops.
    pub container: Option<Container>,
    /// The app's own cgroup v2 (its limits), when the hub has a delegated subtree.
    pub cgroup: Option<AppCgroup>,
}

/// A container an app runs in.
#[derive(Clone, Debug)]
pub struct Container {
    pub engine: &'static str,
    pub name: String,
}

/// A started app: its process group and port.
pub struct AppProcess {
    pub port: u16,
    pid: Option<u32>,
    pid_file: Option<PathBuf>,
    container: Option<Container>,
    cgroup: Option<AppCgroup>,
}

/// A free loopback port for an app (bound and released; the app binds it right after).
pub fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// `argv` under the rlimits of `config` (util-linux `prlimit`) and, with `uid`, as that user
/// and group without supplementary groups or inheritable capabilities (util-linux `setpriv`):
/// what an app runs as, and a Python Space's build steps too. In a cgroup (`in_cgroup`),
/// memory and processes are the cgroup's limits and not rlimits.
pub fn confine(
    config: &SpacesConfig,
    uid: Option<u32>,
    in_cgroup: bool,
    argv: &[String],
) -> Vec<String> {
    let mut confined: Vec<String> = vec![
        "prlimit".into(),
        format!("--nofile={}", config.max_open_files),
        "--core=0".into(),
    ];
    if !in_cgroup {
        // Without a cgroup: memory as address space, processes per user.
        confined.extend([
            format!("--as={}", config.memory_limit_mb.saturating_mul(1 << 20)),
            format!("--nproc={}", config.max_processes),
        ]);
    }
    if config.cpu_time_secs > 0 {
        confined.push(format!("--cpu={}", config.cpu_time_secs));
    }
    confined.push("--".into());
    if let Some(uid) = uid {
        confined.extend([
            "setpriv".into(),
            format!("--reuid={uid}"),
            format!("--regid={uid}"),
            "--clear-groups".into(),
            "--inh-caps=-all".into(),
            "--".into(),
        ]);
    }
    confined.extend(argv.iter().cloned());
    confined
}

/// The command that runs `launch` under the limits of `config`.
fn command(config: &SpacesConfig, launch: &Launch) -> Command {
    if launch.container.is_some() {
        // The engine's client talks to its daemon; the container has the limits.
        let mut cmd = Command::new(&launch.argv[0]);
        cmd.args(&launch.argv[1..])
            .current_dir(&launch.cwd)
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        return cmd;
    }
    let mut argv = confine(config, launch.uid, launch.cgroup.is_some(), &launch.argv);
    if let Some(cgroup) = &launch.cgroup {
        argv = cgroup.wrap(argv);
    }
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(&launch.cwd)
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .env("HOME", &launch.home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so that stopping the app stops whatever it started.
        .process_group(0)
        .kill_on_drop(true);
    cmd
}

/// Starts the app; its output goes to `log`. `exited` is told the exit status.
pub fn spawn(
    config: &SpacesConfig,
    launch: &Launch,
    log: Arc<LogBuffer>,
) -> std::io::Result<(AppProcess, Child)> {
    match launch.uid {
        Some(uid) => {
            isolation::secure_home(&launch.home, uid)?;
            if let Some(blocked) = isolation::unreachable_ancestor(&launch.cwd, uid) {
                return Err(std::io::Error::other(format!(
                    "{} is not traversable by the app's user (uid {uid}), so the app cannot \
                     reach its files: set spaces.run_dir to a directory outside the data dir \
                     that every user may traverse to (docs/spaces.md)",
                    blocked.display()
                )));
            }
        }
        None => std::fs::create_dir_all(&launch.home)?,
    }
    let mut child = command(config, launch).spawn()?;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(copy_lines(out, log.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(copy_lines(err, log));
    }
    let pid = child.id();
    // The record names the working directory, which tells the app's process from an
    // unrelated one that got its pid later.
    let pid_file = pid.and_then(|pid| {
        std::fs::create_dir_all(&launch.pid_dir).ok()?;
        let file = launch.pid_dir.join(format!("{pid}.pid"));
        std::fs::write(&file, launch.cwd.as_os_str().as_encoded_bytes()).ok()?;
        Some(file)
    });
    Ok((
        AppProcess {
            port: launch.port,
            pid,
            pid_file,
            container: launch.container.clone(),
            cgroup: launch.cgroup.clone(),
        },
        child,
    ))
}

/// Copies a stream of the app's output into its log, line by line.
pub async fn copy_lines(stream: impl tokio::io::AsyncRead + Unpin, log: Arc<LogBuffer>) {
    let mut lines = BufReader::new(stream).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => log.push(&line),
            Ok(None) => break,
            // Not UTF-8: the line is dropped, the rest still logged.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => continue,
            Err(_) => break,
        }
    }
}

impl AppProcess {
    /// Stops the app and everything it started (`SIGKILL` to its process group).
    pub async fn stop(&self) {
        let Some(pid) = self.pid else { return };
        let status = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        if let Err(e) = status {
            tracing::warn!(pid, error = %e, "could not stop a space's process group");
        }
        if let Some(c) = &self.container {
            let removed = Command::new(c.engine)
                .args(["rm", "--force", &c.name])
                .env_clear()
                .envs(super::docker::engine_env())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .status();
            match tokio::time::timeout(Duration::from_secs(30), removed).await {
                Ok(Ok(_)) => {}
                _ => tracing::warn!(container = %c.name, "could not remove a space's container"),
            }
        }
        if let Some(cgroup) = &self.cgroup {
            cgroup.remove().await;
        }
        if let Some(file) = &self.pid_file {
            let _ = tokio::fs::remove_file(file).await;
        }
    }
}

/// Stops the apps a previous process of the hub left running (it was killed before it could
/// stop them): each `<pid>.pid` under `spaces_dir/*/pids/` whose process still works in the
/// directory it recorded.
pub async fn stop_leftovers(spaces_dir: &Path) {
    let Ok(spaces) = std::fs::read_dir(spaces_dir) else {
        return;
    };
    for space in spaces.flatten() {
        let Ok(records) = std::fs::read_dir(space.path().join("pids")) else {
            continue;
        };
        for record in records.flatten() {
            let path = record.path();
            let pid = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u32>().ok());
            let recorded = std::fs::read(&path).ok();
            if let (Some(pid), Some(recorded)) = (pid, recorded) {
                let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
                if cwd.is_some_and(|c| c.as_os_str().as_encoded_bytes() == recorded.as_slice()) {
                    tracing::info!(pid, "stopping a space app left by a previous run");
                    AppProcess {
                        port: 0,
                        pid: Some(pid),
                        pid_file: None,
                        container: None,
                        cgroup: None,
                    }
                    .stop()
                    .await;
                }
            }
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Whether the app answers `GET path` on its port with anything but a server error.
pub async fn answers(port: u16, path: &str) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        std::io::Result::Ok(head)
    };
    match tokio::time::timeout(Duration::from_secs(5), attempt).await {
        Ok(Ok(head)) => {
            // "HTTP/1.1 200"
            let status = std::str::from_utf8(&head[9..12])
                .ok()
                .and_then(|s| s.parse::<u16>().ok());
            status.is_some_and(|s| s < 500)
        }
        _ => false,
    }
}

/// Where the venv's executables are.
pub fn venv_bin(venv: &Path) -> PathBuf {
    venv.join("bin")
}
