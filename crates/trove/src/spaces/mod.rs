//! Spaces: the supervisor that builds a Space's `main` on every change and serves it.
//!
//! Each Space has a slot: its stage, the last successful build, what serves it now (a
//! directory of static files or an app process on a loopback port), and its build and run
//! logs. A change of `main` queues a build (bounded by a semaphore; a build that finds a
//! newer request queued behind it gives way). A new app process is started beside the old
//! one and swapped in once it answers; the old one is stopped after a grace period. An app
//! that dies is restarted with doubling waits, a bounded number of times. Apps idle longer
//! than their sleep time are stopped and started again by the next request.

pub mod build;
pub mod cgroup;
pub mod docker;
pub mod duplicate;
pub mod isolation;
pub mod logs;
pub mod process;
pub mod subdomain;

use crate::config::{AppUser, SpacesConfig};
use crate::context::Context;
use crate::repos::RepoRef;
use build::{Built, Plan, Sdk};
use logs::LogBuffer;
use process::{AppProcess, Launch};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use trove_db::Repo;
use trove_types::RepoType;

/// How long the old app keeps serving requests it already had after a new one is swapped in.
const SWAP_GRACE: Duration = Duration::from_secs(5);
/// How often idle apps are looked for.
const SLEEP_CHECK: Duration = Duration::from_secs(5);

/// A Space's stage, as the Hub names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    NoAppFile,
    ConfigError,
    Building,
    /// A new revision builds while the previous one still serves.
    RunningBuilding,
    BuildError,
    AppStarting,
    Running,
    RuntimeError,
    Sleeping,
    Paused,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::NoAppFile => "NO_APP_FILE",
            Stage::ConfigError => "CONFIG_ERROR",
            Stage::Building => "BUILDING",
            Stage::RunningBuilding => "RUNNING_BUILDING",
            Stage::BuildError => "BUILD_ERROR",
            Stage::AppStarting => "APP_STARTING",
            Stage::Running => "RUNNING",
            Stage::RuntimeError => "RUNTIME_ERROR",
            Stage::Sleeping => "SLEEPING",
            Stage::Paused => "PAUSED",
        }
    }
}

/// What the runtime API and pages show of a Space.
#[derive(Clone, Debug)]
pub struct RuntimeView {
    pub stage: Stage,
    /// Why it is not running (the error, or what is missing).
    pub message: Option<String>,
    pub sleep_time_secs: Option<i64>,
    /// The revision serving (or last built).
    pub revision: Option<String>,
}

/// Where an app request goes.
#[derive(Clone, Debug)]
pub enum Target {
    /// Files of a static Space; `index` answers the Space's root.
    Static { dir: PathBuf, index: String },
    /// An app on a loopback port. Gradio is told its public root and gets paths without
    /// it; Streamlit serves under the full path itself.
    Proxy { port: u16, keep_prefix: bool },
}

/// The answer to a request for a Space's app.
pub enum AppAnswer {
    Serve(Target),
    /// It was asleep (or is restarting) and is starting: the visitor waits.
    Waking,
    Down(RuntimeView),
}

struct Serving {
    target: Target,
    process: Option<Arc<AppProcess>>,
    /// Tells a dying process's monitor whether it is still the one serving.
    id: u64,
}

struct SlotState {
    stage: Stage,
    message: Option<String>,
    /// Generation of the newest build request; a build of an older one gives way.
    wanted: u64,
    /// Generation of what serves now; an older build never replaces it.
    served: u64,
    built: Option<Built>,
    serving: Option<Serving>,
    last_request: Instant,
    sleep_after: Option<Duration>,
    /// A start without a build (wake, restart after a crash) is under way.
    starting: bool,
    /// The app being started (spawned, not yet answering): [`Supervisor::stop_apps`] stops
    /// it too if the hub stops before it serves.
    launching: Option<Arc<process::AppProcess>>,
    restarts: u32,
    repo: Option<Repo>,
    /// The Space was deleted: nothing of it may start again, and what a build still
    /// writes is removed.
    removed: bool,
}

pub struct Slot {
    state: Mutex<SlotState>,
    pub build_log: Arc<LogBuffer>,
    pub run_log: Arc<LogBuffer>,
    /// Cancelled (and replaced) when the open proxied connections must end: the Space
    /// became private or gated, moved, or was deleted. Those still allowed reconnect and
    /// are authorized again.
    connections: Mutex<CancellationToken>,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The token that ends the connections proxied from now on.
    pub fn connection_token(&self) -> CancellationToken {
        self.connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Ends every open proxied connection (WebSocket, streamed answer).
    fn revoke_connections(&self) {
        let old = std::mem::take(&mut *self.connections.lock().unwrap_or_else(|e| e.into_inner()));
        old.cancel();
    }
}

/// What the Spaces use cases work with: the hub's [`Context`] (which it derefs to) and the
/// supervisor (`spaces`).
#[derive(Clone)]
pub struct SpaceHost {
    context: Context,
    pub spaces: Arc<Supervisor>,
}

impl SpaceHost {
    pub fn new(context: Context, spaces: Arc<Supervisor>) -> Self {
        SpaceHost { context, spaces }
    }
}

impl std::ops::Deref for SpaceHost {
    type Target = Context;

    fn deref(&self) -> &Context {
        &self.context
    }
}

/// The Spaces supervisor, one per server (held by the application state).
pub struct Supervisor {
    /// Set by `serve`: before it (and in tools that only open the state) nothing is built.
    started: AtomicBool,
    builds: Arc<Semaphore>,
    slots: Mutex<HashMap<i64, Arc<Slot>>>,
    next_id: AtomicU64,
    /// The hub's delegated cgroup v2 subtree, found once at start; `None`: rlimits only.
    cgroups: std::sync::OnceLock<Option<cgroup::Delegation>>,
    /// The host's accounts in the range of per-Space users, read once at start: a Space
    /// whose uid is one of theirs does not start.
    accounts: std::sync::OnceLock<isolation::Accounts>,
    /// The hub is on its way out ([`Self::close_connections`]): no connection is proxied
    /// any more, and an app that finishes starting is stopped at once.
    closing: AtomicBool,
}

impl Supervisor {
    pub fn new(config: &SpacesConfig) -> Self {
        Supervisor {
            started: AtomicBool::new(false),
            builds: Arc::new(Semaphore::new(config.max_concurrent_builds.max(1))),
            slots: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            cgroups: std::sync::OnceLock::new(),
            accounts: std::sync::OnceLock::new(),
            closing: AtomicBool::new(false),
        }
    }

    fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// The hub stops accepting connections: the connections proxied to apps end now (a
    /// WebSocket or a streamed answer would otherwise hold the drain until its grace period
    /// runs out; browsers reconnect, to another node behind a load balancer), and none is
    /// proxied from now on.
    pub fn close_connections(&self) {
        self.closing.store(true, Ordering::Release);
        let slots: Vec<Arc<Slot>> = {
            let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots.values().cloned().collect()
        };
        for slot in slots {
            slot.revoke_connections();
        }
    }

    /// Stops every app this process runs (each one's process group, container and cgroup,
    /// as a replaced app is stopped), once the hub has answered its last request: apps do
    /// not outlive the hub that started them, nor do those still starting (their start gives
    /// up; one spawned from now on is stopped at once: [`Self::close_connections`] comes
    /// first).
    pub async fn stop_apps(&self) {
        self.close_connections();
        let running: Vec<Arc<process::AppProcess>> = {
            let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            slots
                .values()
                .flat_map(|slot| {
                    let mut s = slot.lock();
                    let serving = s.serving.take().and_then(|serving| serving.process);
                    [serving, s.launching.take()]
                })
                .flatten()
                .collect()
        };
        if running.is_empty() {
            return;
        }
        tracing::info!(apps = running.len(), "stopping the spaces' apps");
        futures_util::future::join_all(running.iter().map(|p| p.stop())).await;
    }

    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    fn slot(&self, repo_id: i64) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .entry(repo_id)
            .or_insert_with(|| {
                Arc::new(Slot {
                    state: Mutex::new(SlotState {
                        stage: Stage::NoAppFile,
                        message: None,
                        wanted: 0,
                        served: 0,
                        built: None,
                        serving: None,
                        last_request: Instant::now(),
                        sleep_after: None,
                        starting: false,
                        launching: None,
                        restarts: 0,
                        repo: None,
                        removed: false,
                    }),
                    build_log: Arc::new(LogBuffer::new()),
                    run_log: Arc::new(LogBuffer::new()),
                    connections: Mutex::new(CancellationToken::new()),
                })
            })
            .clone()
    }

    /// The slot of a Space, if the supervisor knows it.
    pub fn existing_slot(&self, repo_id: i64) -> Option<Arc<Slot>> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.get(&repo_id).cloned()
    }

    /// The token that ends a connection proxied to the Space's app now (see
    /// [`Slot::connection_token`]).
    pub fn connection_token(&self, repo_id: i64) -> CancellationToken {
        let token = self
            .existing_slot(repo_id)
            .map(|slot| slot.connection_token())
            .unwrap_or_default();
        if self.is_closing() {
            token.cancel();
        }
        token
    }

    /// The Space's runtime; `None` when Spaces are not run by this process.
    pub fn runtime(&self, repo_id: i64) -> Option<RuntimeView> {
        if !self.is_started() {
            return None;
        }
        let Some(slot) = self.existing_slot(repo_id) else {
            return Some(RuntimeView {
                stage: Stage::NoAppFile,
                message: None,
                sleep_time_secs: None,
                revision: None,
            });
        };
        let s = slot.lock();
        Some(view(&s))
    }

    /// Where a request for the Space's app goes; counts as activity (sleep) and wakes a
    /// sleeping app.
    pub fn app_request(&self, state: &SpaceHost, repo_id: i64) -> AppAnswer {
        let Some(slot) = self.existing_slot(repo_id).filter(|_| self.is_started()) else {
            return AppAnswer::Down(RuntimeView {
                stage: Stage::NoAppFile,
                message: None,
                sleep_time_secs: None,
                revision: None,
            });
        };
        let mut s = slot.lock();
        s.last_request = Instant::now();
        if let Some(serving) = &s.serving {
            return AppAnswer::Serve(serving.target.clone());
        }
        if s.starting {
            return AppAnswer::Waking;
        }
        if s.stage == Stage::Sleeping
            && let (Some(built), Some(repo)) = (s.built.clone(), s.repo.clone())
        {
            s.starting = true;
            s.stage = Stage::AppStarting;
            let generation = s.served;
            drop(s);
            tokio::spawn(launch(state.clone(), slot, repo, built, generation));
            return AppAnswer::Waking;
        }
        AppAnswer::Down(view(&s))
    }
}

fn view(s: &SlotState) -> RuntimeView {
    RuntimeView {
        stage: s.stage,
        message: s.message.clone(),
        sleep_time_secs: s.sleep_after.map(|d| d.as_secs() as i64),
        revision: s.built.as_ref().map(|b| b.rev.to_string()),
    }
}

/// Starts the supervisor: every Space that is not paused is built (a revision built before
/// is reused as it is) and started, and idle apps are put to sleep from now on. Returns the
/// task that goes through the Spaces found at start (it ends once the last of them has a
/// build under way or done); `None` when Spaces are disabled.
pub async fn start(state: &SpaceHost) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let sup = &state.spaces;
    if !state.config.spaces.enabled {
        tracing::info!("spaces are disabled: apps are neither built nor run");
        return Ok(None);
    }
    process::stop_leftovers(&state.config.data_dir.join("spaces")).await;
    let _ = sup.accounts.set(app_users(state.config.spaces.run_as));
    let _ = sup
        .cgroups
        .set(find_cgroups(std::path::Path::new(cgroup::DEFAULT_ROOT)));
    sup.started.store(true, Ordering::Release);
    let observed = sup.clone();
    state
        .events
        .subscribe(Arc::new(move |context: &Context, events| {
            observe(&SpaceHost::new(context.clone(), observed.clone()), events);
        }));
    let spaces: Vec<Repo> = state.db.repos_of_type(RepoType::Space).await?;
    tracing::info!(spaces = spaces.len(), "spaces supervisor started");
    sweep_removed(state, &spaces).await;
    if let Some(engine) = build::container_engine().await {
        // Before any Space starts: every container of this hub is one a previous process
        // left behind.
        let hub = docker::hub_id(&state.signer);
        docker::remove_leftover_containers(engine, &hub).await;
        let ids: std::collections::HashSet<i64> = spaces.iter().map(|r| r.id).collect();
        tokio::spawn(async move {
            docker::remove_images_of_deleted(engine, &hub, |id| ids.contains(&id)).await;
        });
    }
    // Every Space is queued now (a newer request, e.g. a push, supersedes its turn) but
    // built in turn by one task that takes a build permit before it starts the next: a
    // task per Space up front would hold thousands of futures waiting for a permit, and
    // the heap they grew stays fragmented after they end (~30 MiB with 5,000 Spaces).
    let queued: Vec<(Arc<Slot>, u64)> = spaces
        .into_iter()
        .map(|repo| want_build(sup, repo))
        .collect();
    let st = state.clone();
    let start_queue = tokio::spawn(async move {
        for (slot, generation) in queued {
            let Ok(permit) = st.spaces.builds.clone().acquire_owned().await else {
                return;
            };
            let repo = {
                let s = slot.lock();
                if s.wanted != generation {
                    continue;
                }
                s.repo.clone()
            };
            if let Some(repo) = repo {
                tokio::spawn(build_with(permit, st.clone(), slot, repo, generation));
            }
        }
    });
    let st = state.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(SLEEP_CHECK).await;
            put_idle_apps_to_sleep(&st).await;
        }
    });
    Ok(Some(start_queue))
}

/// The host's accounts per-Space users must not collide with; says once, in the log, whose
/// user apps run as.
fn app_users(run_as: AppUser) -> isolation::Accounts {
    match run_as {
        AppUser::PerSpace { base } => {
            tracing::info!(
                uid_base = base,
                "spaces.users: each Space's app runs as its own uid and gid, uid_base + its \
                 repository id"
            );
            let accounts = isolation::Accounts::read(base);
            for (id, account) in accounts.iter() {
                tracing::warn!(
                    id,
                    account,
                    "spaces.users: a local account has an id in the range of Spaces' users; \
                     the Space with that uid will not start (choose another spaces.uid_base)"
                );
            }
            accounts
        }
        AppUser::Shared(uid) => {
            tracing::warn!(
                uid,
                "spaces.users: every app runs as the same uid (spaces.run_as_uid): a Space's app \
                 can read the other Spaces' files, private ones included, and their secrets; \
                 remove run_as_uid to give each Space its own user"
            );
            isolation::Accounts::default()
        }
        AppUser::Hub => {
            tracing::info!(
                "spaces.users: apps run as the hub's own user (it does not run as root, or \
                 spaces.run_as_uid = 0): they can read the hub's data dir and each other"
            );
            isolation::Accounts::default()
        }
    }
}

/// The delegated cgroup v2 subtree under `root` apps get their limits from, prepared; `None`
/// (rlimits only) when there is none. Says once, in the log, which it is.
fn find_cgroups(root: &std::path::Path) -> Option<cgroup::Delegation> {
    let self_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let found = cgroup::detect(root, &self_cgroup).and_then(|d| {
        d.prepare(std::process::id())
            .map(|()| d)
            .map_err(|e| e.to_string())
    });
    match found {
        Ok(delegation) => {
            tracing::info!(
                cgroup = %delegation.dir.display(),
                cpu = delegation.cpu,
                "spaces.limits: cgroup v2 (memory.max, pids.max, cpu.max per app)"
            );
            Some(delegation)
        }
        Err(why) => {
            tracing::info!(reason = %why, "spaces.limits: rlimits (no usable cgroup v2 subtree)");
            None
        }
    }
}

/// Queues a build of the Space's `main` (a no-op for other repos or when Spaces do not run
/// here). Returns at once; the build runs in the background.
pub fn schedule_build(state: &SpaceHost, repo: &Repo) {
    if repo.repo_type != RepoType::Space || !state.spaces.is_started() {
        return;
    }
    let (slot, generation) = want_build(&state.spaces, repo.clone());
    tokio::spawn(run_build(state.clone(), slot, repo.clone(), generation));
}

/// Records a new build request for the Space: its slot and the request's generation.
fn want_build(sup: &Supervisor, repo: Repo) -> (Arc<Slot>, u64) {
    let slot = sup.slot(repo.id);
    let generation = {
        let mut s = slot.lock();
        s.wanted += 1;
        s.repo = Some(repo);
        s.wanted
    };
    (slot, generation)
}

/// What the supervisor does about what happened to a repository: the events the use cases
/// report once, for webhooks and for it alike ([`Context::emit`]); subscribed by [`start`]. Every way `main`
/// moves (a push, an API commit, a merged pull request, a history rewrite) is a
/// `repo.content` event naming `refs/heads/main`, so each one rebuilds; a deleted Space
/// stops and its directories go; a moved one is started again under its new URL; a change
/// of visibility or gating ends the open connections to the app.
pub fn observe(state: &SpaceHost, events: &[crate::events::Event]) {
    use crate::events::{Action, Event};
    if !state.spaces.is_started() {
        return;
    }
    let main_ref = format!("refs/heads/{}", trove_types::DEFAULT_BRANCH);
    for event in events {
        let Event::Repo {
            action,
            scope,
            repo,
            updated_refs,
            moved_to,
            ..
        } = event
        else {
            continue;
        };
        if repo.repo_type != RepoType::Space {
            continue;
        }
        match (action, *scope) {
            (Action::Create, "repo") => schedule_build(state, repo),
            (Action::Delete, "repo") => remove(state, repo.id),
            (Action::Move, "repo") => {
                if let Some(to) = moved_to {
                    moved(state, repo, to);
                }
            }
            (Action::Update, "repo.config") => settings_changed(state, repo),
            (Action::Update, "repo.content") if updated_refs.iter().any(|r| r.name == main_ref) => {
                schedule_build(state, repo)
            }
            _ => {}
        }
    }
}

/// A deleted Space: its app stops, its open connections end, a build under way gives up,
/// and its revisions, logs and records are removed.
fn remove(state: &SpaceHost, repo_id: i64) {
    let slot = {
        let mut slots = state.spaces.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.remove(&repo_id)
    };
    let old = slot.as_ref().and_then(|slot| {
        let mut s = slot.lock();
        s.removed = true;
        s.wanted += 1;
        s.starting = false;
        s.serving.take()
    });
    if let Some(slot) = &slot {
        slot.revoke_connections();
    }
    let dirs = [
        build::revisions_dir(state, repo_id),
        build::space_dir(state, repo_id),
    ];
    let hub = docker::hub_id(&state.signer);
    tokio::spawn(async move {
        if let Some(process) = old.and_then(|o| o.process) {
            process.stop().await;
        }
        remove_dirs(&dirs).await;
        if let Some(engine) = build::container_engine().await {
            docker::remove_images_of_deleted(engine, &hub, |id| id != repo_id).await;
        }
        tracing::info!(
            repo.id = repo_id,
            "space deleted: app stopped, files removed"
        );
    });
}

async fn remove_dirs(dirs: &[PathBuf]) {
    for dir in dirs {
        match tokio::fs::remove_dir_all(dir).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %dir.display(), error = %e, "removing a space's files"),
        }
    }
}

/// A Space moved to `to` (`namespace/name`): its app is started again with its new root
/// path (the built revision is reused); the old URL answers like the repository's.
fn moved(state: &SpaceHost, old: &Repo, to: &str) {
    let Some((namespace, name)) = to.split_once('/') else {
        return;
    };
    let repo = Repo {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        ..old.clone()
    };
    if let Some(slot) = state.spaces.existing_slot(repo.id) {
        slot.revoke_connections();
    }
    schedule_build(state, &repo);
}

/// The Space's settings changed: when who may see it did, open connections end (new ones
/// are authorized again by the proxy, request by request).
fn settings_changed(state: &SpaceHost, repo: &Repo) {
    let Some(slot) = state.spaces.existing_slot(repo.id) else {
        return;
    };
    let audience_changed = {
        let mut s = slot.lock();
        let changed = s
            .repo
            .as_ref()
            .is_none_or(|old| old.private != repo.private || old.gated != repo.gated);
        s.repo = Some(repo.clone());
        changed
    };
    if audience_changed {
        slot.revoke_connections();
    }
}

/// Removes the directories of Spaces that no longer exist (deleted while the hub was down,
/// or before their files could go).
async fn sweep_removed(state: &SpaceHost, spaces: &[Repo]) {
    let mut roots = vec![state.config.data_dir.join("spaces")];
    if let Some(run_dir) = &state.config.spaces.run_dir {
        roots.push(run_dir.clone());
    }
    for root in roots {
        let Ok(mut entries) = tokio::fs::read_dir(&root).await else {
            continue;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let id = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<i64>().ok());
            if let Some(id) = id
                && !spaces.iter().any(|r| r.id == id)
            {
                tracing::info!(repo.id = id, "removing the files of a deleted space");
                remove_dirs(&[entry.path()]).await;
            }
        }
    }
}

async fn run_build(state: SpaceHost, slot: Arc<Slot>, repo: Repo, generation: u64) {
    let Ok(permit) = state.spaces.builds.clone().acquire_owned().await else {
        return;
    };
    build_with(permit, state, slot, repo, generation).await;
}

/// Builds and launches the Space holding a build permit (given back before the launch),
/// unless a newer build has been asked for.
async fn build_with(
    permit: tokio::sync::OwnedSemaphorePermit,
    state: SpaceHost,
    slot: Arc<Slot>,
    repo: Repo,
    generation: u64,
) {
    if slot.lock().wanted != generation {
        return;
    }
    let settings = match state.db.space_settings(repo.id).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(repo.id = repo.id, error = %e, "reading a space's settings");
            return;
        }
    };
    {
        let mut s = slot.lock();
        s.sleep_after = settings
            .sleep_time_secs
            .filter(|&t| t > 0)
            .map(|t| Duration::from_secs(t as u64));
        if settings.paused {
            let old = s.serving.take();
            s.stage = Stage::Paused;
            s.message = None;
            drop(s);
            stop_later(old, Duration::ZERO);
            return;
        }
    }
    let repo_ref = RepoRef::for_server(&state, &repo);
    let plan = match build::plan(&state, &repo_ref).await {
        Ok(plan) => plan,
        Err(e) => {
            tracing::error!(repo.id = repo.id, error = ?e, "reading a space's card");
            set_down(
                &slot,
                generation,
                Stage::BuildError,
                Some("the Space's files could not be read".into()),
            );
            return;
        }
    };
    let spec = match plan {
        Plan::NoApp(why) => return set_down(&slot, generation, Stage::NoAppFile, Some(why)),
        Plan::ConfigError(why) => {
            return set_down(&slot, generation, Stage::ConfigError, Some(why));
        }
        Plan::Build(spec) => spec,
    };
    {
        let mut s = slot.lock();
        s.stage = if s.serving.is_some() {
            Stage::RunningBuilding
        } else {
            Stage::Building
        };
        s.message = None;
    }
    let space_dir = build::space_dir(&state, repo.id);
    slot.build_log.restart(Some(space_dir.join("build.log")));
    let accounts = state.spaces.accounts.get_or_init(Default::default);
    let uid = match isolation::app_uid(state.config.spaces.run_as, repo.id, accounts) {
        Ok(uid) => uid,
        Err(why) => {
            slot.build_log.push(&why);
            return set_down(&slot, generation, Stage::ConfigError, Some(why));
        }
    };
    tracing::info!(repo.id = repo.id, revision = %spec.rev, sdk = ?spec.sdk, "space build started");
    let built = match build::build(&state, &repo_ref, &spec, uid, &slot.build_log).await {
        Ok(built) => built,
        Err(why) => {
            slot.build_log.push(&format!("BUILD FAILED: {why}"));
            tracing::info!(repo.id = repo.id, revision = %spec.rev, reason = %why, "space build failed");
            return set_down(&slot, generation, Stage::BuildError, Some(why));
        }
    };
    if slot.lock().removed {
        remove_dirs(&[built.dir]).await;
        return;
    }
    {
        let mut s = slot.lock();
        s.restarts = 0;
        // Built: the app starts. With an older revision serving, that one serves on until
        // the new one answers (RUNNING_BUILDING stays).
        if s.wanted == generation && s.serving.is_none() {
            s.stage = Stage::AppStarting;
        }
    }
    drop(permit);
    launch(state, slot, repo, built, generation).await;
}

/// Reports a stage without an app (no app file, a config or build error) unless a newer
/// build has been asked for. A build error leaves the previous revision serving.
fn set_down(slot: &Slot, generation: u64, stage: Stage, message: Option<String>) {
    let mut s = slot.lock();
    if s.wanted != generation {
        return;
    }
    let old = if stage == Stage::BuildError {
        None
    } else {
        s.served = generation;
        s.serving.take()
    };
    s.stage = stage;
    s.message = message;
    drop(s);
    stop_later(old, Duration::ZERO);
}

/// Stops a replaced app once its in-flight requests had `grace` to finish.
fn stop_later(old: Option<Serving>, grace: Duration) {
    if let Some(process) = old.and_then(|o| o.process) {
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            process.stop().await;
        });
    }
}

/// Serves a built revision: a static directory at once; an app started beside the one
/// serving, swapped in when it answers.
async fn launch(state: SpaceHost, slot: Arc<Slot>, repo: Repo, built: Built, generation: u64) {
    let id = state.spaces.next_id.fetch_add(1, Ordering::Relaxed);
    let started = match built.sdk {
        Sdk::Static => Ok((
            Target::Static {
                dir: built.app_dir(),
                index: built.app_file.clone(),
            },
            None,
        )),
        Sdk::Gradio | Sdk::Streamlit | Sdk::Docker => {
            start_app(&state, &slot, &repo, &built, id).await
        }
    };
    let mut s = slot.lock();
    s.starting = false;
    let launching = s.launching.take();
    match started {
        Ok((target, process)) => {
            if state.spaces.is_closing() {
                // `stop_apps` stops it: it has not looked yet if the app is still there to
                // take, else it took and stopped it already.
                s.launching = launching;
                return;
            }
            if generation < s.served || s.removed {
                drop(s);
                if let Some(p) = process {
                    tokio::spawn(async move { p.stop().await });
                }
                return;
            }
            let old = s.serving.replace(Serving {
                target,
                process,
                id,
            });
            s.served = generation;
            s.stage = Stage::Running;
            s.message = None;
            s.built = Some(built.clone());
            s.last_request = Instant::now();
            drop(s);
            tracing::info!(repo.id = repo.id, revision = %built.rev, "space running");
            stop_later(old, SWAP_GRACE);
        }
        Err(why) => {
            if generation < s.served || s.wanted != generation && s.wanted > generation {
                return;
            }
            s.stage = Stage::RuntimeError;
            s.message = Some(why.clone());
            s.built = Some(built.clone());
            drop(s);
            slot.run_log.push(&format!("APP FAILED: {why}"));
            tracing::info!(repo.id = repo.id, revision = %built.rev, reason = %why, "space app failed");
        }
    }
}

/// The environment of an app: what its SDK needs, the Space's identity, its variables and
/// secrets — nothing of the hub's own.
async fn app_env(
    state: &SpaceHost,
    repo: &Repo,
    built: &Built,
    port: u16,
) -> Result<Vec<(String, String)>, String> {
    let venv_bin = process::venv_bin(&built.dir.join("venv"));
    let mut env: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            format!("{}:/usr/local/bin:/usr/bin:/bin", venv_bin.display()),
        ),
        ("LANG".into(), "C.UTF-8".into()),
        ("PYTHONUNBUFFERED".into(), "1".into()),
        (
            "SPACE_ID".into(),
            format!("{}/{}", repo.namespace, repo.name),
        ),
        ("SPACE_AUTHOR_NAME".into(), repo.namespace.clone()),
        ("SPACE_REPO_NAME".into(), repo.name.clone()),
        ("HF_ENDPOINT".into(), state.public_url().to_owned()),
        ("PORT".into(), port.to_string()),
    ];
    if built.sdk == Sdk::Gradio {
        env.extend([
            ("GRADIO_SERVER_NAME".into(), "127.0.0.1".into()),
            ("GRADIO_SERVER_PORT".into(), port.to_string()),
            ("GRADIO_ROOT_PATH".into(), app_prefix(repo)),
            ("GRADIO_ANALYTICS_ENABLED".into(), "False".into()),
            (
                "GRADIO_TEMP_DIR".into(),
                built.dir.join("home/gradio").display().to_string(),
            ),
        ]);
    }
    let entries = state
        .db
        .space_env(repo.id)
        .await
        .map_err(|e| format!("reading the Space's variables: {e}"))?;
    // Secrets after variables: a secret wins over a variable of the same name.
    let (secrets, variables): (Vec<_>, Vec<_>) = entries
        .into_iter()
        .partition(|e| e.kind == trove_db::EnvKind::Secret);
    for e in variables.into_iter().chain(secrets) {
        env.retain(|(k, _)| k != &e.key);
        env.push((e.key, e.value));
    }
    Ok(env)
}

/// `/spaces/{ns}/{name}/app`: where the app is served on the hub.
pub fn app_prefix(repo: &Repo) -> String {
    format!("/spaces/{}/{}/app", repo.namespace, repo.name)
}

/// Where a Space's app is reached from outside, as `space_info`'s `host` names it (what
/// `gradio_client.Client("ns/name")` connects to): its app URL under the hub, with the
/// trailing slash clients resolve relative URLs against — served in every mode, so it
/// works wherever the hub's own URL does. With it, the Space's subdomain label when the hub
/// also serves Spaces on their own domains.
pub fn app_host(config: &crate::config::Config, repo: &Repo) -> (String, Option<String>) {
    let public_url = config.public_url().trim_end_matches('/');
    let label = config
        .spaces
        .subdomain_base
        .as_ref()
        .and_then(|_| subdomain::label(&repo.namespace, &repo.name));
    (format!("{public_url}{}/", app_prefix(repo)), label)
}

/// Starts the app of a Python SDK and waits until it answers.
/// Why a start gave up: the hub is stopping.
const HUB_STOPPING: &str = "the hub is stopping";

async fn start_app(
    state: &SpaceHost,
    slot: &Arc<Slot>,
    repo: &Repo,
    built: &Built,
    id: u64,
) -> Result<(Target, Option<Arc<AppProcess>>), String> {
    let config = &state.config.spaces;
    let port = process::free_port().map_err(|e| format!("no free port: {e}"))?;
    let mut env = app_env(state, repo, built, port).await?;
    let mut container = None;
    let python = built.dir.join("venv/bin/python").display().to_string();
    let prefix = app_prefix(repo);
    let (argv, health_path, keep_prefix) = match built.sdk {
        Sdk::Streamlit => (
            vec![
                python,
                "-m".into(),
                "streamlit".into(),
                "run".into(),
                built.app_file.clone(),
                "--server.port".into(),
                port.to_string(),
                "--server.address".into(),
                "127.0.0.1".into(),
                "--server.baseUrlPath".into(),
                prefix.trim_start_matches('/').to_owned(),
                "--server.headless".into(),
                "true".into(),
                "--browser.gatherUsageStats".into(),
                "false".into(),
                "--server.fileWatcherType".into(),
                "none".into(),
                // The hub's proxy is the origin the browser sees; its own checks apply.
                "--server.enableCORS".into(),
                "false".into(),
                "--server.enableXsrfProtection".into(),
                "false".into(),
            ],
            format!("{prefix}/_stcore/health"),
            true,
        ),
        Sdk::Docker => {
            let engine = built.engine.ok_or_else(|| build::NO_ENGINE.to_owned())?;
            let name = format!("trove-space-{}-{id}", repo.id);
            // The Space's variables reach the container by name (`--env KEY` takes the
            // client's value): no secret appears on a command line.
            let space_env: Vec<(String, String)> = app_env(state, repo, built, built.app_port)
                .await?
                .into_iter()
                .filter(|(k, _)| k != "PATH" && k != "HOME")
                .collect();
            let mut argv: Vec<String> = vec![
                engine.into(),
                "run".into(),
                "--rm".into(),
                "--init".into(),
                "--name".into(),
                name.clone(),
            ];
            argv.extend(docker::label_args(&docker::hub_id(&state.signer), repo.id));
            argv.extend([
                "--publish".into(),
                format!("127.0.0.1:{port}:{}", built.app_port),
                "--memory".into(),
                format!("{}m", config.memory_limit_mb),
                "--pids-limit".into(),
                config.max_processes.to_string(),
                "--ulimit".into(),
                format!("nofile={0}:{0}", config.max_open_files),
                "--cap-drop".into(),
                "ALL".into(),
                "--security-opt".into(),
                "no-new-privileges".into(),
            ]);
            if config.cpu_time_secs > 0 {
                argv.extend([
                    "--ulimit".into(),
                    format!("cpu={0}:{0}", config.cpu_time_secs),
                ]);
            }
            for (key, _) in &space_env {
                argv.extend(["--env".into(), key.clone()]);
            }
            argv.push(build::image_name(repo.id, &built.rev));
            env = docker::engine_env();
            env.extend(space_env);
            container = Some(process::Container { engine, name });
            (argv, "/".to_owned(), false)
        }
        _ => (vec![python, built.app_file.clone()], "/".to_owned(), false),
    };
    let launch = Launch {
        argv,
        cwd: built.app_dir(),
        env,
        home: built.dir.join("home"),
        // A container's user is the image's; the client runs as the hub's.
        uid: built.uid.filter(|_| container.is_none()),
        port,
        health_path,
        pid_dir: build::space_dir(state, repo.id).join("pids"),
        cgroup: match (&container, state.spaces.cgroups.get()) {
            (None, Some(Some(delegation))) => {
                let limits = cgroup::Limits {
                    memory_bytes: config.memory_limit_mb.saturating_mul(1 << 20),
                    max_pids: config.max_processes,
                    cpu_percent: config.cpu_limit_percent,
                };
                Some(
                    delegation
                        .create_app(&format!("space-{}-{id}", repo.id), &limits)
                        .map_err(|e| format!("cannot create the app's cgroup: {e}"))?,
                )
            }
            _ => None,
        },
        container,
    };
    slot.run_log
        .restart(Some(build::space_dir(state, repo.id).join("run.log")));
    slot.run_log
        .push(&format!("starting revision {} on port {port}", built.rev));
    let (process, mut child) = process::spawn(config, &launch, slot.run_log.clone())
        .map_err(|e| format!("cannot start the app: {e}"))?;
    let process = Arc::new(process);
    {
        // Under the slot's lock, where `stop_apps` looks once the hub is closing: an app
        // spawned after it looked is stopped here.
        let mut s = slot.lock();
        if state.spaces.is_closing() {
            drop(s);
            process.stop().await;
            return Err(HUB_STOPPING.to_owned());
        }
        s.launching = Some(process.clone());
    }
    let deadline = Instant::now() + Duration::from_secs(config.start_timeout_secs);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            process.stop().await;
            return Err(format!("the app exited before answering ({status})"));
        }
        if process::answers(port, &launch.health_path).await {
            break;
        }
        if state.spaces.is_closing() {
            process.stop().await;
            return Err(HUB_STOPPING.to_owned());
        }
        if Instant::now() > deadline {
            process.stop().await;
            return Err(format!(
                "the app did not answer within {} s",
                config.start_timeout_secs
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::spawn(monitor(
        state.clone(),
        slot.clone(),
        repo.clone(),
        built.clone(),
        (child, launch.cgroup.clone()),
        id,
    ));
    Ok((Target::Proxy { port, keep_prefix }, Some(process)))
}

/// Waits for a serving app to exit; if it still served (nobody stopped it on purpose), it
/// crashed: restart with doubling waits, up to the limit, then RUNTIME_ERROR stays.
async fn monitor(
    state: SpaceHost,
    slot: Arc<Slot>,
    repo: Repo,
    built: Built,
    (mut child, cgroup): (tokio::process::Child, Option<cgroup::AppCgroup>),
    id: u64,
) {
    let status = child.wait().await;
    let why = match status {
        _ if cgroup.as_ref().is_some_and(cgroup::AppCgroup::oom_killed) => format!(
            "the app was stopped: memory limit ({} MiB) reached",
            state.config.spaces.memory_limit_mb
        ),
        Ok(status) => format!("the app exited ({status})"),
        Err(e) => format!("the app was lost: {e}"),
    };
    if let Some(cgroup) = &cgroup {
        // Whatever the app left running goes with its cgroup.
        cgroup.remove().await;
    }
    let restart = {
        let mut s = slot.lock();
        if s.serving.as_ref().map(|x| x.id) != Some(id) {
            return;
        }
        s.serving = None;
        slot.run_log.push(&why);
        s.stage = Stage::RuntimeError;
        s.message = Some(why);
        if s.restarts >= state.config.spaces.max_restarts {
            None
        } else {
            s.restarts += 1;
            s.starting = true;
            Some((Duration::from_secs(1 << s.restarts.min(6)), s.served))
        }
    };
    let Some((wait, generation)) = restart else {
        return;
    };
    tracing::info!(
        repo.id = repo.id,
        wait_secs = wait.as_secs(),
        "space app crashed; restarting"
    );
    tokio::time::sleep(wait).await;
    relaunch(state, slot, repo, built, generation).await;
}

/// [`launch`] again after a crash, boxed: the app it starts is watched by [`monitor`].
fn relaunch(
    state: SpaceHost,
    slot: Arc<Slot>,
    repo: Repo,
    built: Built,
    generation: u64,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(launch(state, slot, repo, built, generation))
}

/// Stops the apps that had no request for longer than their sleep time.
async fn put_idle_apps_to_sleep(state: &SpaceHost) {
    let slots: Vec<(i64, Arc<Slot>)> = {
        let slots = state.spaces.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.iter().map(|(k, v)| (*k, v.clone())).collect()
    };
    for (repo_id, slot) in slots {
        let mut s = slot.lock();
        let idle = s
            .sleep_after
            .is_some_and(|after| s.last_request.elapsed() > after);
        let is_process = s.serving.as_ref().is_some_and(|x| x.process.is_some());
        if idle && is_process && s.stage == Stage::Running {
            let old = s.serving.take();
            s.stage = Stage::Sleeping;
            drop(s);
            tracing::info!(repo.id = repo_id, "space idle: sleeping");
            stop_later(old, Duration::ZERO);
        }
    }
}

/// Pauses a Space: its app stops until an admin restarts it.
pub async fn pause(state: &SpaceHost, repo: &Repo) -> crate::error::ApiResult<()> {
    let mut settings = state.db.space_settings(repo.id).await?;
    settings.paused = true;
    state
        .db
        .set_space_settings(repo.id, &settings, crate::clock::now_ms())
        .await?;
    if state.spaces.is_started() {
        let slot = state.spaces.slot(repo.id);
        let mut s = slot.lock();
        s.wanted += 1;
        let old = s.serving.take();
        s.stage = Stage::Paused;
        s.message = None;
        drop(s);
        stop_later(old, Duration::ZERO);
    }
    Ok(())
}

/// Unpauses and rebuilds (a built revision is reused unless `factory`).
pub async fn restart(state: &SpaceHost, repo: &Repo, factory: bool) -> crate::error::ApiResult<()> {
    let mut settings = state.db.space_settings(repo.id).await?;
    settings.paused = false;
    state
        .db
        .set_space_settings(repo.id, &settings, crate::clock::now_ms())
        .await?;
    if factory {
        let built = state
            .spaces
            .existing_slot(repo.id)
            .and_then(|slot| slot.lock().built.clone());
        if let Some(built) = built {
            // The marker alone: the serving app keeps its files until it is replaced.
            let _ = tokio::fs::remove_file(built.dir.join(".ready")).await;
        }
    }
    schedule_build(state, repo);
    Ok(())
}

/// Sets the sleep time (`None`: never sleep).
pub async fn set_sleep_time(
    state: &SpaceHost,
    repo: &Repo,
    seconds: Option<i64>,
) -> crate::error::ApiResult<()> {
    let mut settings = state.db.space_settings(repo.id).await?;
    settings.sleep_time_secs = seconds;
    state
        .db
        .set_space_settings(repo.id, &settings, crate::clock::now_ms())
        .await?;
    if let Some(slot) = state.spaces.existing_slot(repo.id) {
        slot.lock().sleep_after = seconds
            .filter(|&t| t > 0)
            .map(|t| Duration::from_secs(t as u64));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_ends_the_proxied_connections_open_and_any_opened_after() {
        let spaces = Supervisor::new(&crate::config::Config::default().spaces);
        let slot = spaces.slot(7); // a Space the supervisor knows
        let open = spaces.connection_token(7);
        let unknown = spaces.connection_token(8);
        assert!(!open.is_cancelled() && !unknown.is_cancelled());
        spaces.close_connections();
        assert!(open.is_cancelled(), "the connection open at close ends");
        assert!(
            !unknown.is_cancelled(),
            "a Space with no slot had nothing to end"
        );
        assert!(spaces.connection_token(7).is_cancelled());
        assert!(spaces.connection_token(8).is_cancelled());
        drop(slot);
    }
}
