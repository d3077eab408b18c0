//! `trove serve`: open the state, bootstrap the first admin, bind, serve until SIGTERM/SIGINT.
//! A start after an unclean stop checks the repositories (`repos::reconcile`; on PostgreSQL
//! under the `repo-check` lease, the socket answering only `/healthz` until this node may
//! serve: `NotYetServing`); `run` returns
//! this process's running marker after a clean stop, for the caller to remove once the
//! runtime has stopped.

use crate::cli::args::ServeArgs;
use crate::config::{Config, ServeOverrides};
use crate::repos::reconcile::{self, RunningMarker};
use crate::signing::UrlSigner;
use crate::state::AppState;
use anyhow::Context;
use std::path::Path;
use std::time::Duration;

pub async fn run(
    data_dir: &Path,
    database: Option<String>,
    git_dir: Option<std::path::PathBuf>,
    args: ServeArgs,
) -> anyhow::Result<Option<RunningMarker>> {
    // How long in-flight requests (uploads) may run on after a shutdown signal; whatever is
    // still running then is dropped, and its temporary files are removed (or swept at the
    // next start).
    let shutdown_grace = Duration::from_secs(args.shutdown_timeout);
    let drain_delay = Duration::from_secs(args.drain_delay);
    let mut config = Config::load(
        data_dir,
        ServeOverrides {
            listen: args.listen,
            public_url: args.public_url,
            config_file: args.config,
            storage: args.storage,
            database,
            git_dir,
        },
    )?;
    let db = crate::cli::admin::open_db(&config).await?;
    tracing::info!(
        db.backend = db.backend().as_str(),
        db.url = %config.database.url(data_dir),
        "database opened"
    );
    crate::cli::admin::warn_if_data_dir_is_shared(data_dir);
    let repos_dir = config.repos_dir();
    std::fs::create_dir_all(&repos_dir)
        .with_context(|| format!("creating {}", repos_dir.display()))?;
    let store = open_store(&config).await?;
    let signer = UrlSigner::load(&db, data_dir).await?;
    let new_admin_token = crate::cli::admin::bootstrap_admin(&db, data_dir).await?;

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let bound = listener.local_addr()?;
    if config.public_url.is_none() {
        config.public_url = Some(format!("http://{bound}"));
    }
    let url = config.public_url().to_owned();
    let db_handle = db.clone();
    let state = AppState::new(config, db, store, signer)?;
    let node = state.context.node.clone();
    tracing::info!(node = node.id(), "cluster.node");
    // The background check, when one runs.
    let mut check = None;
    // On PostgreSQL, what answers on the socket until this node serves: it may wait for
    // another node's repository check first.
    let mut waiting = None;
    let listener = std::sync::Arc::new(listener);
    let running = if state.db.backend() == trove_db::Backend::Postgres {
        waiting = Some(NotYetServing::spawn(listener.clone()));
        tracing::info!(listen = %bound, "answering /healthz while starting");
        let claim = tokio::select! {
            claim = reconcile::claim(&state, &repos_dir) => claim?,
            () = shutdown_signal() => {
                tracing::info!("stopped before serving");
                hand_over(async {
                    let _ = db_handle.release_lease(crate::cluster::leases::REPO_CHECK, node.id()).await;
                    crate::cluster::withdraw(&db_handle, &node).await;
                })
                .await;
                return Ok(None);
            }
        };
        if !claim.others.is_empty() {
            tracing::info!(
                nodes = claim.others.join(","),
                "repositories not checked: other nodes serve this hub (the next node to start alone checks them)"
            );
        } else if claim.left_behind.is_empty() {
            tracing::info!(
                "repositories not checked: every process before this one stopped cleanly"
            );
        }
        if let Some(leased) = claim.check {
            // As on SQLite below, but under the repo-check lease: the nodes starting
            // meanwhile wait for it before they serve.
            reconcile::start(&state)
                .await
                .context("checking the repositories against the database")?;
            let context = state.context.clone();
            check = Some(tokio::spawn(async move {
                match leased.run(&context).await {
                    Ok(done) => log_checked(&done),
                    Err(e) => tracing::error!(
                        error = %e,
                        "repository check abandoned: requests reach the repositories unchecked; \
                         the running markers are kept, so the next node to start alone checks again"
                    ),
                }
            }));
        }
        claim.running
    } else {
        start_sqlite(&state, &repos_dir, &mut check).await?
    };
    // A garbage collection killed mid-sweep leaves recorded xorbs moved aside.
    let restored = crate::storage::gc::recover_trash_unless_running(&state)
        .await
        .map_err(|e| anyhow::anyhow!("recovering xorbs a stopped GC moved aside: {e}"))?;
    match restored {
        Some(restored) => tracing::info!(xorbs_restored = restored, "chunk store checked"),
        None => tracing::info!("chunk store not checked: a collection runs on another node"),
    }
    sweep_trash(&state);
    crate::repos::index::spawn_jobs(state.context.clone());
    crate::webhooks::delivery::spawn(state.context.clone())
        .context("starting the webhook worker")?;
    let spaces_queue = crate::spaces::start(&state.space_host())
        .await
        .context("starting the spaces supervisor")?;
    tokio::spawn(async move {
        for task in [spaces_queue, check].into_iter().flatten() {
            let _ = task.await;
        }
        release_free_heap();
    });
    let git = state.git.clone();
    let context = state.context.clone();
    let spaces = state.spaces.clone();
    let app = crate::app(state);

    // Absolute, so the printed `$(cat …)` line works from any directory.
    let token_file = data_dir.join("admin-token");
    let token_file = std::path::absolute(&token_file).unwrap_or(token_file);
    let token_here = match new_admin_token {
        Some(token) => {
            println!(
                "Created the admin user 'admin'. Its token (saved in {}, mode 0600):",
                token_file.display()
            );
            println!("  {token}");
            true
        }
        None if token_file.exists() => {
            println!("The first admin's token is in {}", token_file.display());
            true
        }
        None => false,
    };
    if token_here {
        println!("Use it with the Hugging Face tools:");
        println!(
            "  export HF_ENDPOINT={url} HF_TOKEN=$(cat {})",
            shell_quoted(&token_file.display().to_string())
        );
    } else {
        // Another node (or another data dir) created the first admin: its token file is
        // there, not here, so no `cat` of a file that does not exist.
        println!("Use it with the Hugging Face tools, with a token of yours:");
        println!("  export HF_ENDPOINT={url} HF_TOKEN=...");
    }
    println!("More users and tokens: trove user create NAME / trove token create NAME");
    println!("{}", listening_lines(bound, &url));
    tracing::info!(listen = %bound, public_url = %url, data_dir = %data_dir.display(), "trove started");

    if let Some(waiting) = waiting {
        waiting.stop().await;
    }
    let listener = std::sync::Arc::try_unwrap(listener)
        .map_err(|_| anyhow::anyhow!("the socket is still in use by the start-up answers"))?;
    // The signal is watched once: it starts the drain (`/readyz` answers 503, no new
    // connection is accepted, in-flight requests run on) and the grace period.
    let (signalled_tx, signalled_rx) = tokio::sync::watch::channel(false);
    {
        let node = node.clone();
        let spaces = spaces.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            node.start_draining();
            if !drain_delay.is_zero() {
                tracing::info!(
                    node = node.id(),
                    delay_secs = drain_delay.as_secs(),
                    "draining: /readyz answers 503"
                );
                tokio::time::sleep(drain_delay).await;
            }
            tracing::info!(
                node = node.id(),
                "draining: new connections refused, in-flight requests finishing"
            );
            // Followed logs and proxied Space connections never end by themselves.
            node.start_closing();
            spaces.close_connections();
            let _ = signalled_tx.send(true);
        });
    }
    let signalled = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    // Every connection starts in the driver (plain GETs and HEADs, downloads sent with
    // `sendfile`), which hands the others to hyper; TCP_NODELAY is set on each, since
    // streamed answers end with small writes that Nagle's algorithm would hold back until
    // the client's delayed ACK.
    let server = crate::http::driver::serve(
        listener,
        app,
        crate::http::driver::HeadBudget::default(),
        signalled(signalled_rx.clone()),
    );
    let mut server = std::pin::pin!(server);
    let drained = tokio::select! {
        result = &mut server => { result.context("serving")?; true }
        () = async { signalled(signalled_rx).await; tokio::time::sleep(shutdown_grace).await } => {
            tracing::warn!("in-flight requests still running after the grace period; stopping anyway");
            false
        }
    };
    // A git process whose client went away runs on after the response; it ends on its own
    // terms now, not killed mid-write when the runtime stops.
    let clean = drained && git.wait_idle(shutdown_grace).await;
    // No app outlives the hub that started it.
    spaces.stop_apps().await;
    // Hand the background work to the other nodes at once rather than when the leases
    // expire; a repository check first stops here, for good.
    hand_over(async {
        reconcile::stop_checking(&context).await;
        release_leases(&db_handle, node.id()).await;
        crate::cluster::withdraw(&db_handle, &node).await;
    })
    .await;
    if clean {
        tracing::info!("trove stopped");
        Ok(Some(running))
    } else {
        tracing::warn!("trove stopped with work cut short: the next start checks the repositories");
        Ok(None)
    }
}

/// The start-up line naming the bound socket, and the public URL on a line of its own when
/// `--public-url` (or the configuration) gives another one: a URL behind a proxy is not
/// where this process listens, and an operator checking the socket needs both.
fn listening_lines(bound: std::net::SocketAddr, public_url: &str) -> String {
    let listening = format!("http://{bound}");
    let version = env!("CARGO_PKG_VERSION");
    if public_url.trim_end_matches('/') == listening {
        format!("Trove {version} listening on {listening}")
    } else {
        format!("Trove {version} listening on {listening}\nPublic URL: {public_url}")
    }
}

fn log_checked(done: &reconcile::Reconciled) {
    tracing::info!(
        repos.reinitialised = done.reinitialised.len(),
        repos.unreadable = done.unreadable.len(),
        repos.failed = done.failed.len(),
        orphans = done.orphans.len(),
        leftovers = done.leftovers.len(),
        "repositories checked"
    );
}

/// The start on SQLite (one serving process): announces this node, and when a process
/// before it did not stop cleanly, checks the repositories — what a request could trip over
/// before serving, the rest in the background (`check`). Returns this process's marker.
async fn start_sqlite(
    state: &AppState,
    repos_dir: &Path,
    check: &mut Option<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<RunningMarker> {
    let node = &state.context.node;
    crate::cluster::announce(&state.db, node)
        .await
        .context("announcing this node in the database")?;
    // This process's mark, removed after a clean stop; those found here belong to
    // processes that did not stop cleanly.
    let left_behind = RunningMarker::left_behind(repos_dir)
        .with_context(|| format!("reading {}", repos_dir.display()))?;
    let running = RunningMarker::create(repos_dir, node.id())
        .with_context(|| format!("marking {} as in use", repos_dir.display()))?;
    if left_behind.is_empty() {
        tracing::info!("repositories not checked: every process before this one stopped cleanly");
        return Ok(running);
    }
    // Before anything is served: what a request could trip over. The rest, repository by
    // repository, in the background; a request to a repository not yet checked checks it
    // first.
    reconcile::start(state)
        .await
        .context("checking the repositories against the database")?;
    let context = state.context.clone();
    *check = Some(tokio::spawn(async move {
        match reconcile::check_all(&context).await {
            Ok(done) => {
                log_checked(&done);
                // A failed check is tried again by the next start too.
                if done.failed.is_empty() {
                    RunningMarker::remove_all(&left_behind);
                }
            }
            Err(e) => tracing::error!(error = %e, "repositories not checked"),
        }
    }));
    Ok(running)
}

/// What answers on the socket while a node on PostgreSQL starts, before it serves (it may
/// wait for another node's repository check, `repos::reconcile::claim`): `/healthz` says
/// the process is alive, `/readyz` that it is not ready, and every other request gets 503
/// with the Hub's error headers — nothing reaches a repository.
struct NotYetServing {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// The bound socket, shared by [`NotYetServing`] and, once it has stopped, unwrapped for the
/// server proper.
struct SharedListener(std::sync::Arc<tokio::net::TcpListener>);

impl axum::serve::Listener for SharedListener {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(connection) => return connection,
                // Out of file descriptors, or a connection reset before it was accepted:
                // the next accept may work.
                Err(e) => {
                    tracing::debug!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

impl NotYetServing {
    fn spawn(listener: std::sync::Arc<tokio::net::TcpListener>) -> NotYetServing {
        use axum::routing::get;
        let app = axum::Router::new()
            .route("/healthz", get(crate::http::api::misc::healthz))
            .route(
                "/readyz",
                get(|| async {
                    (
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        [(axum::http::header::RETRY_AFTER, "5")],
                        "not ready: starting",
                    )
                }),
            )
            .fallback(|| async {
                crate::error::ApiError::Unavailable(
                    "This node is starting (it may wait for the check of the repositories \
                     after a crash); retry in a few seconds"
                        .into(),
                )
            });
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let served = axum::serve(SharedListener(listener), app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "start-up answers stopped");
            }
        });
        NotYetServing { stop, task }
    }

    /// Stops answering (a connection still open after a second is dropped) and gives the
    /// socket back.
    async fn stop(self) {
        let _ = self.stop.send(());
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(1), &mut task)
            .await
            .is_err()
        {
            task.abort();
            let _ = task.await;
        }
    }
}

/// How long a stopping node spends handing its work over through the database. Each call
/// to a database that has gone away waits for the pool's connect timeout (10 s), and there
/// are six of them: unbounded, a node whose PostgreSQL is gone would outlive its SIGTERM by
/// a minute. What is not released in time expires with its lease.
const HAND_OVER_BUDGET: Duration = Duration::from_secs(5);

/// Runs `work` (releasing leases, withdrawing this node) for at most [`HAND_OVER_BUDGET`].
async fn hand_over(work: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(HAND_OVER_BUDGET, work).await.is_err() {
        tracing::warn!(
            budget_secs = HAND_OVER_BUDGET.as_secs(),
            "the database did not answer in time: this node's leases and presence are left to \
             expire, the other nodes take its work over then"
        );
    }
}

async fn release_leases(db: &trove_db::Db, node: &str) {
    use crate::cluster::leases;
    for name in [
        leases::INDEX,
        leases::WEBHOOKS,
        leases::GC,
        leases::REPO_CHECK,
    ] {
        if let Err(e) = db.release_lease(name, node).await {
            tracing::warn!(lease = name, error = %e, "cluster.lease_release_failed");
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Gives the memory the allocator holds free back to the system, once the start-up's
/// one-off work (the Spaces found at start queued and looked at, the repository check) is
/// done. That work allocates and frees a lot on the runtime's threads; glibc keeps what was
/// freed in each thread's arena, where pages between live blocks are never returned on
/// their own: ~6 MiB of the idle RSS at 100,000 repositories and 5,000 Spaces
/// (docs/benchmarks-search.md, "Idle memory").
fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[expect(
        unsafe_code,
        reason = "malloc_trim has no preconditions: it only returns free pages of glibc's arenas"
    )]
    // SAFETY: malloc_trim takes a size and touches only the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
    tracing::debug!("start-up done: free heap given back");
}

/// Removes what deleted repositories left in the trash (a crash may interrupt a removal).
fn sweep_trash(state: &AppState) {
    let trash = state.trash_dir();
    tokio::task::spawn_blocking(move || {
        if let Ok(entries) = std::fs::read_dir(&trash) {
            for entry in entries.flatten() {
                if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                    tracing::warn!(path = %entry.path().display(), error = %e, "could not empty trash");
                }
            }
        }
    });
}

/// `path` as one shell word: as is when it holds only safe characters, else single-quoted.
fn shell_quoted(path: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+=:@%,".contains(c);
    if !path.is_empty() && path.chars().all(safe) {
        path.to_owned()
    } else {
        format!("'{}'", path.replace('\'', r"'\''"))
    }
}

/// The store `config` names, opened and (for a bucket) probed with a put, get and delete:
/// a wrong bucket, wrong credentials or an unreachable endpoint stop the start here.
pub async fn open_store(config: &Config) -> anyhow::Result<trove_store::Store> {
    use crate::config::StorageBackend;
    match config.storage.backend(&config.data_dir)? {
        StorageBackend::Local(root) => trove_store::Store::open_local(root.clone())
            .await
            .with_context(|| format!("opening the store in {}", root.display())),
        StorageBackend::S3(s3) => {
            let location = s3.display_url();
            let endpoint = s3.endpoint.clone().unwrap_or_else(|| "AWS".into());
            let store = trove_store::Store::open_s3(config.data_dir.join("lfs"), s3)
                .await
                .with_context(|| {
                    format!("opening the object store {location} at {endpoint} (bucket, credentials and endpoint must be right)")
                })?;
            tracing::info!(storage = %location, endpoint = %endpoint, "object store reachable");
            Ok(store)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::listening_lines;

    #[test]
    fn the_start_up_line_names_the_bound_socket_and_a_different_public_url_apart() {
        let bound: std::net::SocketAddr = "127.0.0.1:41234".parse().expect("address");
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            listening_lines(bound, "http://127.0.0.1:41234"),
            format!("Trove {version} listening on http://127.0.0.1:41234"),
            "one line when the public URL is the socket"
        );
        assert_eq!(
            listening_lines(bound, "https://hub.example.com"),
            format!(
                "Trove {version} listening on http://127.0.0.1:41234\nPublic URL: https://hub.example.com"
            ),
            "the socket first, the public URL apart"
        );
    }
}
