//! Server configuration, loaded once into typed values: defaults, then an optional TOML file
//! (`--config`, or `trove.toml` in the data dir), then environment variables, then flags.
//! Every environment variable Trove reads is listed in [`ENV_VARS`].

use anyhow::Context;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Every environment variable Trove reads, with what it sets.
pub const ENV_VARS: &[(&str, &str)] = &[
    (
        "TROVE_DATA_DIR",
        "directory holding all state (default ./trove-data)",
    ),
    (
        "TROVE_LISTEN",
        "address to listen on (default 127.0.0.1:8080)",
    ),
    (
        "TROVE_PUBLIC_URL",
        "base URL clients reach the server at (default http://<listen>)",
    ),
    (
        "TROVE_LFS_MULTIPART_THRESHOLD",
        "LFS objects larger than this many bytes upload in parts",
    ),
    (
        "TROVE_LFS_PART_SIZE",
        "size in bytes of each part of a multipart LFS upload",
    ),
    (
        "TROVE_MAX_COMMIT_BYTES",
        "largest accepted commit request body, in bytes",
    ),
    (
        "TROVE_GIT_BIN",
        "the git executable serving clone, fetch and push (default: git on PATH)",
    ),
    (
        "TROVE_MAX_PUSH_BYTES",
        "largest git push accepted, in bytes (pack size)",
    ),
    (
        "TROVE_GIT_TIMEOUT_SECS",
        "longest a clone, fetch or push request may run, in seconds",
    ),
    (
        "TROVE_AUTH_FAILURE_BURST",
        "failed authentications an address may make in a burst before getting 429",
    ),
    (
        "TROVE_AUTH_FAILURE_REFILL_SECS",
        "seconds after which one more failed authentication is allowed",
    ),
    (
        "TROVE_AUTH_ALLOW_SIGNUP",
        "true or false: whether visitors may create their own account at /signup (default false)",
    ),
    (
        "TROVE_TOKEN_CACHE_MS",
        "how long a token's owner and memberships are reused, in ms (default 1000; 0: never); bounds how late another node's revocation takes effect",
    ),
    (
        "TROVE_SPACES_SUBDOMAIN_BASE",
        "serve each Space's app at {ns}-{name}.<this domain> too (e.g. spaces.hub.example)",
    ),
    (
        "TROVE_SPACES_UID_BASE",
        "as root: each Space's app runs as uid and gid <this> + its repository id (default 2000000000)",
    ),
    (
        "TROVE_SPACES_RUN_AS_UID",
        "as root: run every Space's app as this one uid (apps can then read each other); 0: as the hub's user",
    ),
    (
        "TROVE_DATABASE",
        "database URL: sqlite://<path> (default <data-dir>/trove.db) or postgres://user:password@host:port/db",
    ),
    (
        "TROVE_LISTING_CACHE_MS",
        "how long a listing answer (/api/models…) is reused, in ms (default 2000; 0: never cached)",
    ),
    (
        "TROVE_MIGRATE_TO",
        "trove migrate: the PostgreSQL database to move the hub into (same as --to)",
    ),
    (
        "TROVE_INFERENCE_ENABLED",
        "true or false: whether the hub runs the models it hosts (default true)",
    ),
    (
        "TROVE_INFERENCE_WAIT_FOR_MODEL",
        "true or false: whether a request for a model still loading waits for it (default true) or gets the Hub's 503 with estimated_time",
    ),
    (
        "TROVE_INFERENCE_MEMORY_MB",
        "memory budget of the loaded models, in MiB (default 4096)",
    ),
    (
        "TROVE_INFERENCE_MAX_CONCURRENT",
        "requests one model runs at once (default 1)",
    ),
    (
        "TROVE_INFERENCE_MAX_QUEUE",
        "requests that may wait for one model before 503 (default 8)",
    ),
    (
        "TROVE_INFERENCE_TIMEOUT_SECS",
        "longest an inference request may wait and run, in seconds (default 120)",
    ),
    (
        "TROVE_WEBHOOKS_ALLOW_PRIVATE_TARGETS",
        "true or false: whether webhooks may deliver to loopback, private, link-local and other non-public addresses (default false)",
    ),
    (
        "TROVE_WEBHOOKS_ALLOWED_TARGETS",
        "comma-separated networks (10.0.0.0/8, fd00::/8, 192.168.1.20) webhooks may deliver to although not public",
    ),
    ("TROVE_LOG", "log filter, e.g. info or trove=debug"),
];

pub const DEFAULT_DATA_DIR: &str = "./trove-data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// The server's settings after every source has been merged and checked.
#[derive(Clone, Debug)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Base of every absolute URL we emit; `None` until the listener is bound, then `http://<addr>`.
    pub public_url: Option<String>,
    pub lfs: LfsConfig,
    pub limits: Limits,
    pub git: GitConfig,
    pub auth: AuthConfig,
    pub spaces: SpacesConfig,
    pub log: LogConfig,
    pub webhooks: WebhooksConfig,
    pub storage: StorageConfig,
    pub metrics: MetricsConfig,
    pub database: DatabaseConfig,
    pub inference: InferenceConfig,
}

/// Running the hosted models (`[inference]` in trove.toml).
#[derive(Clone, Debug)]
pub struct InferenceConfig {
    /// Whether `/models/{repo}` runs models at all.
    pub enabled: bool,
    /// Memory the loaded models' weights may take together; least recently used models are
    /// unloaded to make room, and a model larger than this is refused.
    pub memory_mb: u64,
    /// Requests one model runs at the same time.
    pub max_concurrent: usize,
    /// Requests that may wait for one model; one more gets 503 with `Retry-After`.
    pub max_queue: usize,
    /// Longest a request may wait for its turn and run.
    pub timeout_secs: u64,
    /// Threads of the pool that runs models (never the async runtime's).
    pub threads: usize,
    /// Largest `max_new_tokens` / `max_tokens` a generation may ask for.
    pub max_new_tokens: usize,
    /// Largest number of inputs in one request (a batch of sentences).
    pub max_inputs: usize,
    /// Whether a request for a model that is not loaded yet waits for the load (the default:
    /// `InferenceClient` does not retry a 503) or gets the Hub's 503 "is currently loading"
    /// with `estimated_time`; a request's `x-wait-for-model` header or
    /// `options.wait_for_model` decides for itself.
    pub wait_for_model: bool,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        InferenceConfig {
            enabled: true,
            memory_mb: 4096,
            max_concurrent: 1,
            max_queue: 8,
            timeout_secs: 120,
            threads: 2,
            max_new_tokens: 1024,
            max_inputs: 64,
            wait_for_model: true,
        }
    }
}

/// Where the metadata lives (`[database]` in trove.toml, `--database`, `TROVE_DATABASE`).
#[derive(Clone, Debug, Default)]
pub struct DatabaseConfig {
    /// `None`: the SQLite file `<data-dir>/trove.db`. Shown redacted by `Debug`.
    pub url: Option<trove_db::DatabaseUrl>,
    /// Connection pool size per process (default 8 for SQLite, 16 for PostgreSQL).
    pub max_connections: Option<u32>,
    /// How long a listing answer may be reused (`None`: [`DEFAULT_LISTING_CACHE_MS`]; 0
    /// disables the cache). Writes on this node invalidate it at once; this bounds how late
    /// another node's writes and download counts show (see `repos/listing_cache.rs`).
    pub listing_cache_ms: Option<u64>,
}

/// How long a listing answer is reused by default, in milliseconds.
pub const DEFAULT_LISTING_CACHE_MS: u64 = 2000;

impl DatabaseConfig {
    /// The database to open for `data_dir`.
    pub fn url(&self, data_dir: &Path) -> trove_db::DatabaseUrl {
        self.url
            .clone()
            .unwrap_or_else(|| trove_db::DatabaseUrl::Sqlite(data_dir.join("trove.db")))
    }

    /// How long a listing answer may be reused; zero when it is never cached.
    pub fn listing_cache_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.listing_cache_ms.unwrap_or(DEFAULT_LISTING_CACHE_MS))
    }

    pub fn connect_options(&self) -> trove_db::ConnectOptions {
        trove_db::ConnectOptions {
            max_connections: self.max_connections,
            ..trove_db::ConnectOptions::default()
        }
    }
}

/// `GET /metrics` (`[metrics]` in trove.toml).
#[derive(Clone, Debug, Default)]
pub struct MetricsConfig {
    /// A bearer token a scraper may present instead of a site administrator's token.
    pub token: Option<String>,
}

/// Logging (`[log]` in trove.toml).
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// One `trove::access` line per request at INFO (method, path, status, bytes, duration,
    /// user, request id; never the query string or a credential).
    pub access: bool,
}

/// Webhook deliveries (`[webhooks]` in trove.toml).
#[derive(Clone, Debug)]
pub struct WebhooksConfig {
    /// A PEM file of CA certificates trusted for https receivers, besides the system's
    /// (for receivers with a private CA).
    pub extra_ca_file: Option<PathBuf>,
    /// Deliveries in flight at once (to different webhooks; one webhook's are sent in turn).
    pub max_concurrent_deliveries: usize,
    /// Attempts per delivery before it is logged as failed.
    pub max_attempts: u32,
    /// The wait before the second attempt, in seconds; each later one waits twice as long.
    pub first_retry_secs: u64,
    /// Whether deliveries may go to any address, loopback, private and link-local ones
    /// included (for hubs whose receivers are all on the internal network).
    pub allow_private_targets: bool,
    /// Networks deliveries may go to although they are not public; every other non-public
    /// address is refused (`webhooks::target`).
    pub allowed_targets: Vec<ipnet::IpNet>,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            extra_ca_file: None,
            max_concurrent_deliveries: 8,
            max_attempts: 4,
            first_retry_secs: 1,
            allow_private_targets: false,
            allowed_targets: Vec::new(),
        }
    }
}

/// The chunk store (`[storage]` in trove.toml).
#[derive(Clone, Debug)]
pub struct StorageConfig {
    /// Which files a global-dedup query may learn about.
    pub dedup_scope: DedupScope,
    /// GC compacts xorbs whose live bytes are below this fraction of their bytes (0: never).
    pub compact_below: f64,
    /// Where the git repositories live (`--git-dir`, `TROVE_GIT_DIR`, `[storage] git_dir`):
    /// `<data-dir>/repos` when unset. Several nodes need it on a shared volume.
    pub git_dir: Option<PathBuf>,
    /// Where objects live (`[storage] url`, `TROVE_STORAGE`, `--storage`): `s3://bucket[/prefix]?
    /// endpoint=…&region=…`, `file:///path`, or `None` for `lfs/` under the data dir.
    pub url: Option<String>,
    /// A file with the bucket's credentials (`aws_access_key_id = …` lines, as in the AWS
    /// credentials file); without it, the `AWS_*` environment variables.
    pub credentials_file: Option<PathBuf>,
    /// Downloads answer with a redirect to a presigned bucket URL (S3 only).
    pub redirect_downloads: bool,
    /// How long a presigned download URL is valid.
    pub presign_ttl_secs: u64,
    /// Bytes of upload bodies held in memory at once for the bucket (`[storage]
    /// s3_memory_mib`, S3 only; see [`trove_store::S3Config::memory`]).
    pub s3_memory: u64,
}

/// The default `[storage] presign_ttl_secs`: long enough for a client to start the GET.
pub const DEFAULT_PRESIGN_TTL_SECS: u64 = 300;

/// Where the store's objects live, as [`StorageConfig::backend`] reads it.
#[derive(Debug)]
pub enum StorageBackend {
    /// A local directory.
    Local(PathBuf),
    /// A bucket; uploads are staged in the local directory beside it.
    S3(trove_store::S3Config),
}

impl StorageConfig {
    /// The backend `url` names, with credentials from the file or the environment. The
    /// credentials are never read from the URL (a command line is visible to every user).
    pub fn backend(&self, data_dir: &Path) -> anyhow::Result<StorageBackend> {
        let Some(url) = self.url.as_deref().filter(|u| !u.is_empty()) else {
            return Ok(StorageBackend::Local(data_dir.join("lfs")));
        };
        if let Some(path) = url.strip_prefix("file://") {
            anyhow::ensure!(
                path.starts_with('/'),
                "storage URL {url:?}: file:// needs an absolute path (file:///srv/trove/lfs)"
            );
            return Ok(StorageBackend::Local(PathBuf::from(path)));
        }
        let Some(rest) = url.strip_prefix("s3://") else {
            anyhow::bail!(
                "storage URL {url:?}: expected s3://bucket?endpoint=…&region=… or file:///path"
            );
        };
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        anyhow::ensure!(
            !location.contains('@'),
            "storage URL: credentials do not belong in the URL; use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or [storage] credentials_file"
        );
        let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
        anyhow::ensure!(
            !bucket.is_empty()
                && bucket.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'-'
                    || b == b'.'),
            "storage URL {url:?}: {bucket:?} is not a bucket name"
        );
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };
        let mut endpoint = None;
        let mut region = None;
        let mut checksum = trove_store::S3Checksum::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "endpoint" => {
                    anyhow::ensure!(
                        v.starts_with("http://") || v.starts_with("https://"),
                        "storage URL: endpoint {v:?} must start with http:// or https://"
                    );
                    endpoint = Some(v.trim_end_matches('/').to_owned());
                }
                "region" => region = Some(v.into_owned()),
                "checksum" => {
                    checksum = match &*v {
                        "crc64nvme" => trove_store::S3Checksum::Crc64Nvme,
                        "sha256" => trove_store::S3Checksum::Sha256,
                        _ => {
                            anyhow::bail!("storage URL: checksum {v:?} must be crc64nvme or sha256")
                        }
                    }
                }
                other => {
                    anyhow::bail!(
                        "storage URL: unknown parameter {other:?} (endpoint, region, checksum)"
                    )
                }
            }
        }
        let (access_key_id, secret_access_key, session_token) = match &self.credentials_file {
            Some(path) => credentials_from_file(path)?,
            None => {
                let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
                match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
                    (Some(id), Some(secret)) => (id, secret, var("AWS_SESSION_TOKEN")),
                    _ => anyhow::bail!(
                        "storage {url}: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or [storage] credentials_file"
                    ),
                }
            }
        };
        Ok(StorageBackend::S3(trove_store::S3Config {
            bucket: bucket.to_owned(),
            prefix,
            endpoint,
            region: region.unwrap_or_else(|| "us-east-1".to_owned()),
            access_key_id,
            secret_access_key,
            session_token,
            checksum,
            memory: self.s3_memory,
        }))
    }
}

/// `aws_access_key_id`, `aws_secret_access_key` and optionally `aws_session_token` from an
/// AWS-style credentials file (`key = value` lines; of its sections, `[default]` or the first).
fn credentials_from_file(path: &Path) -> anyhow::Result<(String, String, Option<String>)> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!("reading [storage] credentials_file {}: {e}", path.display())
    })?;
    // Sections in file order, each with its keys; keys before any header form section "".
    let mut sections: Vec<(String, HashMap<String, String>)> =
        vec![(String::new(), HashMap::new())];
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            sections.push((name.trim().to_owned(), HashMap::new()));
        } else if let Some((k, v)) = line.split_once('=')
            && let Some((_, keys)) = sections.last_mut()
        {
            keys.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let pick = sections
        .iter()
        .position(|(name, _)| name == "default")
        .or_else(|| sections.iter().position(|(_, keys)| !keys.is_empty()))
        .unwrap_or(0);
    let mut found = std::mem::take(&mut sections[pick].1);
    let mut take = |k: &str| found.remove(k).filter(|v| !v.is_empty());
    match (take("aws_access_key_id"), take("aws_secret_access_key")) {
        (Some(id), Some(secret)) => Ok((id, secret, take("aws_session_token"))),
        _ => anyhow::bail!(
            "[storage] credentials_file {}: needs aws_access_key_id and aws_secret_access_key",
            path.display()
        ),
    }
}

/// The default `[storage] compact_below`: xorbs more than half dead are rewritten.
pub const DEFAULT_COMPACT_BELOW: f64 = 0.5;

/// The files a global-dedup answer may describe: those the querying token's repository
/// links, or those of any repository of its namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DedupScope {
    Repo,
    Namespace,
}

/// Spaces: how apps are built and run (`[spaces]` in trove.toml).
#[derive(Clone, Debug)]
pub struct SpacesConfig {
    /// Whether `serve` builds and runs Spaces at all.
    pub enabled: bool,
    /// Shared installer and package caches, outside the data dir (`TROVE_SPACES_CACHE`).
    pub cache_dir: PathBuf,
    /// The Python that virtual environments are made from.
    pub python: PathBuf,
    /// Builds running at once; more wait in the queue.
    pub max_concurrent_builds: usize,
    /// Longest one build may take; then it is stopped and reported BUILD_ERROR.
    pub build_timeout_secs: u64,
    /// Longest an app may take to answer its first request after it starts.
    pub start_timeout_secs: u64,
    /// Largest total size of the files a Space's revision may export.
    pub max_export_bytes: u64,
    /// Address space of an app's processes, MiB (`RLIMIT_AS`).
    pub memory_limit_mb: u64,
    /// CPU seconds an app's process may use (`RLIMIT_CPU`); 0: unlimited.
    pub cpu_time_secs: u64,
    /// Processes (and threads) of the app's user (`RLIMIT_NPROC`).
    pub max_processes: u64,
    /// Open files of one app process (`RLIMIT_NOFILE`).
    pub max_open_files: u64,
    /// CPU share of an app where cgroup v2 limits apply (`cpu.max`), percent of one core;
    /// 0: unlimited.
    pub cpu_limit_percent: u64,
    /// Per-Space subdomain mode: `{ns}-{name}.{subdomain_base}` serves the app at `/`
    /// (see `spaces::subdomain`); `None`: only the path URL.
    pub subdomain_base: Option<String>,
    /// Restarts after an app's crash, with doubling waits, before RUNTIME_ERROR stays.
    pub max_restarts: u32,
    /// Where built revisions live (exported files, virtualenv, the app's home); `None`:
    /// `<data>/spaces`. Apps running as another user must be able to reach it and must not
    /// reach the data dir, so then it defaults to
    /// `/var/lib/trove-spaces/<id of the data dir>` (`TROVE_SPACES_RUN_DIR` to choose).
    pub run_dir: Option<PathBuf>,
    /// The user (and group, same number) apps run as, through `setpriv`.
    pub run_as: AppUser,
}

/// Whose uid and gid a Space's app runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppUser {
    /// The hub's own user: the hub does not run as root, or `run_as_uid = 0`.
    Hub,
    /// Every app as this one uid and gid (an explicit `run_as_uid`): apps can read each
    /// other's files and environment, and the hub says so in its log at start.
    Shared(u32),
    /// Each Space as its own uid and gid, `base` + the repository's id: the default when
    /// the hub runs as root (`uid_base`, `TROVE_SPACES_UID_BASE`).
    PerSpace { base: u32 },
}

/// The default first uid of Spaces' apps: above the ranges systemd hands out to system and
/// regular users (< 60000), to its dynamic users (61184–65519) and to nspawn containers
/// (524288–1879048191, `0x6FFFFFFF`), and below its "foreign" range (`0x7FFE0000`) and
/// 2^31, past which some tools read uids as negative. Repository ids up to 147,352,575
/// stay under the foreign range; ids up to 147,483,646 get a uid at all.
pub const DEFAULT_UID_BASE: u32 = 2_000_000_000;
/// The smallest `uid_base`: above `nobody` (65534) and the 16-bit uids of older systems.
pub const MIN_UID_BASE: u32 = 65_536;
/// The largest uid an app gets (2^31 − 2: below the range some tools read as negative).
pub const MAX_APP_UID: u32 = (1 << 31) - 2;

impl AppUser {
    /// What `run_as_uid` (0: the hub's user; another uid: one shared uid) and `uid_base`
    /// given by the operator mean, for a hub run as root or not. The two exclude each other.
    fn resolve(
        run_as_uid: Option<u32>,
        uid_base: Option<u32>,
        hub_is_root: bool,
    ) -> anyhow::Result<AppUser> {
        match (run_as_uid, uid_base) {
            (Some(_), Some(_)) => anyhow::bail!(
                "[spaces] run_as_uid (TROVE_SPACES_RUN_AS_UID) and uid_base \
                 (TROVE_SPACES_UID_BASE) exclude each other: run_as_uid runs every app as one \
                 user, uid_base gives each Space its own"
            ),
            (Some(0), None) => Ok(AppUser::Hub),
            (Some(uid), None) => Ok(AppUser::Shared(uid)),
            (None, Some(base)) => {
                anyhow::ensure!(
                    hub_is_root,
                    "[spaces] uid_base (TROVE_SPACES_UID_BASE) needs the hub to run as root: \
                     only root may run apps as other users"
                );
                anyhow::ensure!(
                    (MIN_UID_BASE..MAX_APP_UID).contains(&base),
                    "[spaces] uid_base (TROVE_SPACES_UID_BASE) must be between {MIN_UID_BASE} and \
                     {MAX_APP_UID}"
                );
                Ok(AppUser::PerSpace { base })
            }
            (None, None) if hub_is_root => Ok(AppUser::PerSpace {
                base: DEFAULT_UID_BASE,
            }),
            (None, None) => Ok(AppUser::Hub),
        }
    }
}

/// The effective uid of this process (the owner of `/proc/self`); `None` if unknown.
fn effective_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// Authentication: the limit on failed attempts per client address.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// Failures an address may make in a burst.
    pub failure_burst: u32,
    /// One failure is forgiven per this many seconds.
    pub failure_refill_secs: u64,
    /// Whether visitors may create their own account at `/signup` (`[auth] allow_signup`).
    pub allow_signup: bool,
    /// How long what a token resolves to (owner, memberships) and a repository's row may be
    /// reused, in ms (`None`: see [`AuthConfig::token_cache_ttl`]). Revocations, disabled
    /// users, membership and repository changes are seen at once by every process on a
    /// SQLite database; on PostgreSQL this bounds how late another node's take effect (see
    /// `throttle/token_cache.rs`).
    pub token_cache_ms: Option<u64>,
}

/// How long a token's resolution and a repository's row are reused by default when the
/// database counts every process's writes (SQLite), in milliseconds. Every write that could
/// change them empties the caches first; this only bounds an entry's age.
pub const DEFAULT_TOKEN_CACHE_MS: u64 = 60_000;

/// The longest time-to-live an operator may give those caches: an hour.
pub const MAX_TOKEN_CACHE_MS: u64 = 3_600_000;

impl AuthConfig {
    /// How long a token's resolution and a repository's row may be reused; zero when they
    /// are never cached. Unless configured: [`DEFAULT_TOKEN_CACHE_MS`] when
    /// `shares_epochs` (the database counts the writes of every process that could make an
    /// entry stale: [`trove_db::Db::shares_epochs`]), else zero, so that another node's
    /// revocation holds for the very next request.
    pub fn token_cache_ttl(&self, shares_epochs: bool) -> std::time::Duration {
        let default = if shares_epochs {
            DEFAULT_TOKEN_CACHE_MS
        } else {
            0
        };
        std::time::Duration::from_millis(self.token_cache_ms.unwrap_or(default))
    }
}

/// Git over HTTP (clone, fetch, push).
#[derive(Clone, Debug)]
pub struct GitConfig {
    /// The `git` executable; its `upload-pack` and `receive-pack` serve every request.
    pub git_bin: PathBuf,
    /// Largest pack a push may send (`receive.maxInputSize`).
    pub max_push_bytes: u64,
    /// Largest fetch negotiation request body (wants and haves), after decompression.
    pub max_fetch_request_bytes: u64,
    /// Longest one request (one git subprocess) may run; then it is killed.
    pub timeout_secs: u64,
    /// Git subprocesses running at once; further requests wait for a slot.
    pub max_processes: usize,
}

#[derive(Clone, Debug)]
pub struct LfsConfig {
    /// Objects strictly larger than this are offered the multipart transfer.
    pub multipart_threshold: u64,
    pub part_size: u64,
    /// How long signed upload/download URLs stay valid.
    pub signed_url_ttl_secs: u64,
}

#[derive(Clone, Debug)]
pub struct Limits {
    pub max_commit_bytes: u64,
    /// Largest single NDJSON line in a commit (one inline file, base64-encoded).
    pub max_commit_line_bytes: usize,
    pub max_lfs_object_bytes: u64,
    pub max_json_body_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            listen: DEFAULT_LISTEN.parse().expect("constant address parses"),
            public_url: None,
            lfs: LfsConfig {
                multipart_threshold: 1 << 30,
                part_size: 256 << 20,
                signed_url_ttl_secs: 24 * 3600,
            },
            limits: Limits {
                max_commit_bytes: 512 << 20,
                max_commit_line_bytes: 128 << 20,
                max_lfs_object_bytes: 10 << 40,
                max_json_body_bytes: 16 << 20,
            },
            git: GitConfig {
                git_bin: PathBuf::from("git"),
                max_push_bytes: 8 << 30,
                max_fetch_request_bytes: 64 << 20,
                timeout_secs: 3600,
                max_processes: 32,
            },
            auth: AuthConfig {
                failure_burst: 20,
                failure_refill_secs: 3,
                allow_signup: false,
                token_cache_ms: None,
            },
            spaces: SpacesConfig {
                enabled: true,
                cache_dir: std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_else(std::env::temp_dir)
                    .join(".cache/trove/spaces"),
                python: PathBuf::from("/usr/bin/python3"),
                max_concurrent_builds: 1,
                build_timeout_secs: 1200,
                start_timeout_secs: 180,
                max_export_bytes: 1 << 30,
                memory_limit_mb: 4096,
                cpu_time_secs: 0,
                max_processes: 4096,
                max_open_files: 4096,
                subdomain_base: None,
                cpu_limit_percent: 0,
                max_restarts: 3,
                run_dir: None,
                run_as: AppUser::Hub,
            },
            log: LogConfig { access: true },
            webhooks: WebhooksConfig::default(),
            storage: StorageConfig {
                dedup_scope: DedupScope::Repo,
                compact_below: DEFAULT_COMPACT_BELOW,
                git_dir: None,
                url: None,
                credentials_file: None,
                redirect_downloads: false,
                presign_ttl_secs: DEFAULT_PRESIGN_TTL_SECS,
                s3_memory: trove_store::DEFAULT_S3_MEMORY,
            },
            metrics: MetricsConfig::default(),
            database: DatabaseConfig::default(),
            inference: InferenceConfig::default(),
        }
    }
}

/// The TOML file's shape; every key optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    public_url: Option<String>,
    lfs_multipart_threshold: Option<u64>,
    lfs_part_size: Option<u64>,
    max_commit_bytes: Option<u64>,
    max_lfs_object_bytes: Option<u64>,
    git_bin: Option<PathBuf>,
    max_push_bytes: Option<u64>,
    git_timeout_secs: Option<u64>,
    auth_failure_burst: Option<u32>,
    auth_failure_refill_secs: Option<u64>,
    auth: Option<FileAuth>,
    spaces: Option<FileSpaces>,
    log: Option<FileLog>,
    webhooks: Option<FileWebhooks>,
    storage: Option<FileStorage>,
    metrics: Option<FileMetrics>,
    database: Option<FileDatabase>,
    inference: Option<FileInference>,
}

/// `[inference]` of the TOML file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileInference {
    enabled: Option<bool>,
    memory_mb: Option<u64>,
    max_concurrent: Option<usize>,
    max_queue: Option<usize>,
    timeout_secs: Option<u64>,
    threads: Option<usize>,
    max_new_tokens: Option<usize>,
    max_inputs: Option<usize>,
    wait_for_model: Option<bool>,
}

/// `[database]` of the TOML file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileDatabase {
    url: Option<String>,
    max_connections: Option<u32>,
    listing_cache_ms: Option<u64>,
}

/// `[metrics]` of the TOML file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileMetrics {
    token: Option<String>,
}

/// `[auth]` of the TOML file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileAuth {
    allow_signup: Option<bool>,
    token_cache_ms: Option<u64>,
}

/// `[log]` of the TOML file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileLog {
    access: Option<bool>,
}

/// `[webhooks]` of the TOML file.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileWebhooks {
    extra_ca_file: Option<PathBuf>,
    max_concurrent_deliveries: Option<usize>,
    max_attempts: Option<u32>,
    first_retry_secs: Option<u64>,
    allow_private_targets: Option<bool>,
    allowed_targets: Option<Vec<String>>,
}

/// `[storage]` of the TOML file; every key optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileStorage {
    dedup_scope: Option<DedupScope>,
    compact_below: Option<f64>,
    git_dir: Option<PathBuf>,
    url: Option<String>,
    credentials_file: Option<PathBuf>,
    redirect_downloads: Option<bool>,
    presign_ttl_secs: Option<u64>,
    s3_memory_mib: Option<u64>,
}

/// `[spaces]` of the TOML file; every key optional.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileSpaces {
    enabled: Option<bool>,
    cache_dir: Option<PathBuf>,
    python: Option<PathBuf>,
    max_concurrent_builds: Option<usize>,
    build_timeout_secs: Option<u64>,
    start_timeout_secs: Option<u64>,
    max_export_bytes: Option<u64>,
    memory_limit_mb: Option<u64>,
    cpu_time_secs: Option<u64>,
    max_processes: Option<u64>,
    max_open_files: Option<u64>,
    subdomain_base: Option<String>,
    cpu_limit_percent: Option<u64>,
    max_restarts: Option<u32>,
    run_dir: Option<PathBuf>,
    /// One uid for every app, or 0 for "as the hub's user".
    run_as_uid: Option<u32>,
    /// The first uid of per-Space users.
    uid_base: Option<u32>,
}

/// What the command line gave `serve` (flags already merged with their env vars by clap).
#[derive(Default)]
pub struct ServeOverrides {
    pub listen: Option<SocketAddr>,
    pub public_url: Option<String>,
    pub config_file: Option<PathBuf>,
    /// `--storage` (or `TROVE_STORAGE`): where objects live.
    pub storage: Option<String>,
    /// `--database` (or `TROVE_DATABASE`, merged by clap).
    pub database: Option<String>,
    /// `--git-dir` (or `TROVE_GIT_DIR`, merged by clap).
    pub git_dir: Option<PathBuf>,
}

impl Config {
    /// The folder of the git repositories: `[storage] git_dir` or `<data-dir>/repos`.
    pub fn repos_dir(&self) -> PathBuf {
        self.storage
            .git_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("repos"))
    }

    pub fn load(data_dir: &Path, overrides: ServeOverrides) -> anyhow::Result<Self> {
        let mut config = Config {
            data_dir: data_dir.to_path_buf(),
            ..Config::default()
        };
        let file = match &overrides.config_file {
            Some(path) => Some(read_file_config(path)?),
            None => {
                let default = data_dir.join("trove.toml");
                if default.exists() {
                    Some(read_file_config(&default)?)
                } else {
                    None
                }
            }
        };
        // The environment's choice of the apps' user replaces the file's as a whole: the
        // two settings exclude each other, so one source must name both.
        let mut app_user = env_app_user()?;
        if let Some(file) = file {
            if let (None, None, Some(f)) = (app_user.0, app_user.1, &file.spaces) {
                app_user = (f.run_as_uid, f.uid_base);
            }
            config.apply_file(file)?;
        }
        config.apply_env()?;
        config.spaces.run_as =
            AppUser::resolve(app_user.0, app_user.1, effective_uid() == Some(0))?;
        if let Some(url) = overrides.database.as_deref().filter(|u| !u.is_empty()) {
            config.database.url = Some(trove_db::DatabaseUrl::parse(url)?);
        }
        if let Some(git_dir) = overrides.git_dir.filter(|d| !d.as_os_str().is_empty()) {
            config.storage.git_dir = Some(git_dir);
        }
        if let Some(listen) = overrides.listen {
            config.listen = listen;
        }
        if let Some(url) = overrides.public_url {
            config.public_url = Some(url);
        }
        if let Some(storage) = overrides.storage {
            config.storage.url = Some(storage);
        }
        config.validate()?;
        Ok(config)
    }

    fn apply_file(&mut self, file: FileConfig) -> anyhow::Result<()> {
        if let Some(v) = file.listen {
            self.listen = v;
        }
        if let Some(v) = file.public_url {
            self.public_url = Some(v);
        }
        if let Some(v) = file.lfs_multipart_threshold {
            self.lfs.multipart_threshold = v;
        }
        if let Some(v) = file.lfs_part_size {
            self.lfs.part_size = v;
        }
        if let Some(v) = file.max_commit_bytes {
            self.limits.max_commit_bytes = v;
        }
        if let Some(v) = file.max_lfs_object_bytes {
            self.limits.max_lfs_object_bytes = v;
        }
        if let Some(v) = file.git_bin {
            self.git.git_bin = v;
        }
        if let Some(v) = file.max_push_bytes {
            self.git.max_push_bytes = v;
        }
        if let Some(v) = file.git_timeout_secs {
            self.git.timeout_secs = v;
        }
        if let Some(v) = file.auth_failure_burst {
            self.auth.failure_burst = v;
        }
        if let Some(v) = file.auth_failure_refill_secs {
            self.auth.failure_refill_secs = v;
        }
        if let Some(f) = file.auth {
            self.auth.allow_signup = f.allow_signup.unwrap_or(self.auth.allow_signup);
            self.auth.token_cache_ms = f.token_cache_ms.or(self.auth.token_cache_ms);
        }
        if let Some(f) = file.log {
            self.log.access = f.access.unwrap_or(self.log.access);
        }
        if let Some(f) = file.webhooks {
            let w = &mut self.webhooks;
            w.extra_ca_file = f.extra_ca_file.or_else(|| w.extra_ca_file.clone());
            w.max_concurrent_deliveries = f
                .max_concurrent_deliveries
                .unwrap_or(w.max_concurrent_deliveries);
            w.max_attempts = f.max_attempts.unwrap_or(w.max_attempts);
            w.first_retry_secs = f.first_retry_secs.unwrap_or(w.first_retry_secs);
            w.allow_private_targets = f.allow_private_targets.unwrap_or(w.allow_private_targets);
            if let Some(targets) = f.allowed_targets {
                w.allowed_targets = parse_targets(targets.iter().map(String::as_str))
                    .context("[webhooks] allowed_targets")?;
            }
        }
        self.apply_storage(file.storage);
        if let Some(f) = file.inference {
            let i = &mut self.inference;
            i.enabled = f.enabled.unwrap_or(i.enabled);
            i.memory_mb = f.memory_mb.unwrap_or(i.memory_mb);
            i.max_concurrent = f.max_concurrent.unwrap_or(i.max_concurrent);
            i.max_queue = f.max_queue.unwrap_or(i.max_queue);
            i.timeout_secs = f.timeout_secs.unwrap_or(i.timeout_secs);
            i.threads = f.threads.unwrap_or(i.threads);
            i.max_new_tokens = f.max_new_tokens.unwrap_or(i.max_new_tokens);
            i.max_inputs = f.max_inputs.unwrap_or(i.max_inputs);
            i.wait_for_model = f.wait_for_model.unwrap_or(i.wait_for_model);
        }
        if let Some(token) = file.metrics.and_then(|m| m.token) {
            // An empty token would let anyone in: it means none.
            self.metrics.token = Some(token).filter(|t| !t.trim().is_empty());
        }
        if let Some(f) = file.spaces {
            let s = &mut self.spaces;
            s.enabled = f.enabled.unwrap_or(s.enabled);
            s.cache_dir = f.cache_dir.unwrap_or_else(|| s.cache_dir.clone());
            s.python = f.python.unwrap_or_else(|| s.python.clone());
            s.max_concurrent_builds = f.max_concurrent_builds.unwrap_or(s.max_concurrent_builds);
            s.build_timeout_secs = f.build_timeout_secs.unwrap_or(s.build_timeout_secs);
            s.start_timeout_secs = f.start_timeout_secs.unwrap_or(s.start_timeout_secs);
            s.max_export_bytes = f.max_export_bytes.unwrap_or(s.max_export_bytes);
            s.memory_limit_mb = f.memory_limit_mb.unwrap_or(s.memory_limit_mb);
            s.cpu_time_secs = f.cpu_time_secs.unwrap_or(s.cpu_time_secs);
            s.max_processes = f.max_processes.unwrap_or(s.max_processes);
            s.max_open_files = f.max_open_files.unwrap_or(s.max_open_files);
            s.subdomain_base = f.subdomain_base.or_else(|| s.subdomain_base.clone());
            s.cpu_limit_percent = f.cpu_limit_percent.unwrap_or(s.cpu_limit_percent);
            s.max_restarts = f.max_restarts.unwrap_or(s.max_restarts);
            s.run_dir = f.run_dir.or_else(|| s.run_dir.clone());
        }
        if let Some(f) = file.database {
            if let Some(url) = f.url.as_deref().filter(|u| !u.is_empty()) {
                self.database.url = Some(trove_db::DatabaseUrl::parse(url)?);
            }
            self.database.max_connections = f.max_connections.or(self.database.max_connections);
            self.database.listing_cache_ms = f.listing_cache_ms.or(self.database.listing_cache_ms);
        }
        Ok(())
    }

    fn apply_storage(&mut self, file: Option<FileStorage>) {
        let Some(file) = file else { return };
        if let Some(v) = file.dedup_scope {
            self.storage.dedup_scope = v;
        }
        if let Some(v) = file.compact_below {
            self.storage.compact_below = v;
        }
        if let Some(v) = file.git_dir {
            self.storage.git_dir = Some(v);
        }
        if let Some(v) = file.url {
            self.storage.url = Some(v);
        }
        if let Some(v) = file.credentials_file {
            self.storage.credentials_file = Some(v);
        }
        if let Some(v) = file.redirect_downloads {
            self.storage.redirect_downloads = v;
        }
        if let Some(v) = file.presign_ttl_secs {
            self.storage.presign_ttl_secs = v;
        }
        if let Some(v) = file.s3_memory_mib {
            self.storage.s3_memory = v.saturating_mul(1 << 20);
        }
    }

    fn apply_env(&mut self) -> anyhow::Result<()> {
        if let Some(v) = std::env::var("TROVE_STORAGE")
            .ok()
            .filter(|v| !v.is_empty())
        {
            self.storage.url = Some(v);
        }
        if let Some(v) = env_u64("TROVE_LFS_MULTIPART_THRESHOLD")? {
            self.lfs.multipart_threshold = v;
        }
        if let Some(v) = env_u64("TROVE_LFS_PART_SIZE")? {
            self.lfs.part_size = v;
        }
        if let Some(v) = env_u64("TROVE_MAX_COMMIT_BYTES")? {
            self.limits.max_commit_bytes = v;
        }
        if let Some(v) = std::env::var_os("TROVE_GIT_BIN").filter(|v| !v.is_empty()) {
            self.git.git_bin = PathBuf::from(v);
        }
        if let Some(v) = env_u64("TROVE_MAX_PUSH_BYTES")? {
            self.git.max_push_bytes = v;
        }
        if let Some(v) = env_u64("TROVE_GIT_TIMEOUT_SECS")? {
            self.git.timeout_secs = v;
        }
        if let Some(v) = env_u64("TROVE_AUTH_FAILURE_BURST")? {
            self.auth.failure_burst = u32::try_from(v).unwrap_or(u32::MAX);
        }
        if let Some(v) = env_u64("TROVE_AUTH_FAILURE_REFILL_SECS")? {
            self.auth.failure_refill_secs = v;
        }
        if let Some(v) = env_bool("TROVE_AUTH_ALLOW_SIGNUP")? {
            self.auth.allow_signup = v;
        }
        if let Some(v) = env_u64("TROVE_TOKEN_CACHE_MS")? {
            self.auth.token_cache_ms = Some(v);
        }
        if let Some(v) = std::env::var_os("TROVE_SPACES_CACHE").filter(|v| !v.is_empty()) {
            self.spaces.cache_dir = PathBuf::from(v);
        }
        if let Some(v) = env_u64("TROVE_SPACES_MEMORY_LIMIT_MB")? {
            self.spaces.memory_limit_mb = v;
        }
        if let Ok(v) = std::env::var("TROVE_SPACES_SUBDOMAIN_BASE")
            && !v.is_empty()
        {
            self.spaces.subdomain_base = Some(v);
        }
        if let Some(v) = std::env::var_os("TROVE_SPACES_RUN_DIR").filter(|v| !v.is_empty()) {
            self.spaces.run_dir = Some(PathBuf::from(v));
        }
        if let Ok(url) = std::env::var("TROVE_DATABASE")
            && !url.is_empty()
        {
            self.database.url = Some(trove_db::DatabaseUrl::parse(&url)?);
        }
        if let Some(v) = env_u64("TROVE_LISTING_CACHE_MS")? {
            self.database.listing_cache_ms = Some(v);
        }
        if let Some(v) = env_bool("TROVE_INFERENCE_ENABLED")? {
            self.inference.enabled = v;
        }
        if let Some(v) = env_bool("TROVE_INFERENCE_WAIT_FOR_MODEL")? {
            self.inference.wait_for_model = v;
        }
        if let Some(v) = env_u64("TROVE_INFERENCE_MEMORY_MB")? {
            self.inference.memory_mb = v;
        }
        if let Some(v) = env_u64("TROVE_INFERENCE_MAX_CONCURRENT")? {
            self.inference.max_concurrent = usize::try_from(v).unwrap_or(usize::MAX);
        }
        if let Some(v) = env_u64("TROVE_INFERENCE_MAX_QUEUE")? {
            self.inference.max_queue = usize::try_from(v).unwrap_or(usize::MAX);
        }
        if let Some(v) = env_u64("TROVE_INFERENCE_TIMEOUT_SECS")? {
            self.inference.timeout_secs = v;
        }
        if let Some(v) = env_bool("TROVE_WEBHOOKS_ALLOW_PRIVATE_TARGETS")? {
            self.webhooks.allow_private_targets = v;
        }
        if let Ok(v) = std::env::var("TROVE_WEBHOOKS_ALLOWED_TARGETS")
            && !v.trim().is_empty()
        {
            self.webhooks.allowed_targets =
                parse_targets(v.split(',')).context("TROVE_WEBHOOKS_ALLOWED_TARGETS")?;
        }
        Ok(())
    }

    fn validate(&mut self) -> anyhow::Result<()> {
        if self.spaces.run_as != AppUser::Hub && self.spaces.run_dir.is_none() {
            // Apps run as another user cannot (and must not) enter the data dir (0700):
            // their revisions live outside it unless the operator chose a place.
            self.spaces.run_dir = Some(shared_run_dir(&self.data_dir));
        }
        anyhow::ensure!(
            self.inference.max_concurrent > 0
                && self.inference.threads > 0
                && self.inference.timeout_secs > 0
                && self.inference.max_inputs > 0,
            "[inference] max_concurrent, threads, timeout_secs and max_inputs must be positive"
        );
        anyhow::ensure!(
            self.database.max_connections != Some(0),
            "[database] max_connections must be positive"
        );
        anyhow::ensure!(
            self.lfs.part_size >= 1 << 20,
            "the LFS part size must be at least 1 MiB"
        );
        anyhow::ensure!(
            self.limits.max_commit_bytes > 0,
            "max_commit_bytes must be positive"
        );
        anyhow::ensure!(
            self.git.max_push_bytes > 0 && self.git.timeout_secs > 0,
            "max_push_bytes and git_timeout_secs must be positive"
        );
        anyhow::ensure!(
            self.auth
                .token_cache_ms
                .is_none_or(|ms| ms <= MAX_TOKEN_CACHE_MS),
            "[auth] token_cache_ms (TROVE_TOKEN_CACHE_MS) must be at most {MAX_TOKEN_CACHE_MS} \
             (an hour): it bounds how late a write the caches cannot see takes effect"
        );
        anyhow::ensure!(
            self.auth.failure_burst > 0 && self.auth.failure_refill_secs > 0,
            "auth_failure_burst and auth_failure_refill_secs must be positive"
        );
        anyhow::ensure!(
            self.spaces.max_concurrent_builds > 0 && self.spaces.memory_limit_mb > 0,
            "spaces.max_concurrent_builds and spaces.memory_limit_mb must be positive"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.storage.compact_below),
            "[storage] compact_below must be between 0 and 1 (0 disables compaction)"
        );
        anyhow::ensure!(
            (1..=256).contains(&self.webhooks.max_concurrent_deliveries)
                && (1..=20).contains(&self.webhooks.max_attempts)
                && self.webhooks.first_retry_secs <= 3600,
            "webhooks.max_concurrent_deliveries must be 1 to 256, webhooks.max_attempts 1 to 20 \
             and webhooks.first_retry_secs at most 3600"
        );
        if let Some(base) = &mut self.spaces.subdomain_base {
            *base = base.trim_matches('.').to_ascii_lowercase();
            anyhow::ensure!(
                valid_base(base),
                "spaces.subdomain_base must be a DNS name such as spaces.hub.example, not {base:?}"
            );
        }
        if let Some(url) = &mut self.public_url {
            anyhow::ensure!(
                url.starts_with("http://") || url.starts_with("https://"),
                "the public URL must start with http:// or https://"
            );
            while url.ends_with('/') {
                url.pop();
            }
        }
        Ok(())
    }

    /// The base URL, known once the listener is bound.
    pub fn public_url(&self) -> &str {
        self.public_url
            .as_deref()
            .unwrap_or("http://127.0.0.1:8080")
    }
}

fn read_file_config(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

/// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`); unset or empty is `None`.
fn env_bool(name: &str) -> anyhow::Result<Option<bool>> {
    let Ok(v) = std::env::var(name) else {
        return Ok(None);
    };
    parse_bool(&v).with_context(|| format!("{name} must be true or false"))
}

fn parse_bool(v: &str) -> anyhow::Result<Option<bool>> {
    match v.trim().to_ascii_lowercase().as_str() {
        "" => Ok(None),
        "true" | "1" | "yes" | "on" => Ok(Some(true)),
        "false" | "0" | "no" | "off" => Ok(Some(false)),
        other => anyhow::bail!("{other:?} is not a boolean"),
    }
}

/// Whether `base` is usable as `subdomain_base`: dot-separated DNS labels, lowercase.
fn valid_base(base: &str) -> bool {
    !base.is_empty()
        && base.len() <= 200
        && base.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// Where a hub run as root keeps its Spaces' revisions by default:
/// `/var/lib/trove-spaces/<16 hex of the data dir's path>` — outside the data dir, under
/// parents every user may traverse, one folder per hub on the machine.
fn shared_run_dir(data_dir: &Path) -> PathBuf {
    use sha2::{Digest, Sha256};
    let absolute = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    let digest = Sha256::digest(absolute.as_os_str().as_encoded_bytes());
    let id: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    PathBuf::from("/var/lib/trove-spaces").join(id)
}

/// `TROVE_SPACES_RUN_AS_UID` and `TROVE_SPACES_UID_BASE`.
fn env_app_user() -> anyhow::Result<(Option<u32>, Option<u32>)> {
    let uid = |name: &str| -> anyhow::Result<Option<u32>> {
        env_u64(name)?
            .map(|v| u32::try_from(v).with_context(|| format!("{name} must be a uid")))
            .transpose()
    };
    Ok((
        uid("TROVE_SPACES_RUN_AS_UID")?,
        uid("TROVE_SPACES_UID_BASE")?,
    ))
}

/// Networks such as `10.0.0.0/8` or `fd00::/8`; a lone address is a network of one.
fn parse_targets<'a>(items: impl Iterator<Item = &'a str>) -> anyhow::Result<Vec<ipnet::IpNet>> {
    items
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let net = match item.parse::<std::net::IpAddr>() {
                Ok(address) => ipnet::IpNet::from(address),
                Err(_) => item.parse::<ipnet::IpNet>().with_context(|| {
                    format!("{item:?} is not a network such as 10.0.0.0/8 or an address")
                })?,
            };
            Ok(net.trunc())
        })
        .collect()
}

fn env_u64(name: &str) -> anyhow::Result<Option<u64>> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map(Some)
            .with_context(|| format!("{name} must be an integer")),
        Err(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config of a data dir whose `trove.toml` says `text`.
    fn load_toml(dir: &Path, text: &str) -> anyhow::Result<Config> {
        std::fs::write(dir.join("trove.toml"), text).expect("write");
        Config::load(dir, ServeOverrides::default())
    }

    #[test]
    fn apps_run_as_another_user_get_a_run_dir_outside_the_data_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let load = |text: &str| load_toml(dir.path(), text).expect("loads");
        let shared = load("[spaces]\nrun_as_uid = 1234\n").spaces.run_dir;
        let shared = shared.expect("a default run dir");
        assert!(shared.starts_with("/var/lib/trove-spaces"), "{shared:?}");
        assert!(!shared.starts_with(dir.path()));
        assert_eq!(
            shared_run_dir(dir.path()),
            shared,
            "stable for one data dir"
        );
        assert_ne!(shared_run_dir(&dir.path().join("other")), shared);
        let chosen = load("[spaces]\nrun_as_uid = 1234\nrun_dir = \"/srv/apps\"\n");
        assert_eq!(chosen.spaces.run_dir, Some(PathBuf::from("/srv/apps")));
        // Apps run as the hub's own user keep `<data>/spaces`.
        assert_eq!(load("[spaces]\nrun_as_uid = 0\n").spaces.run_dir, None);
        if effective_uid() == Some(0) {
            let per_space = load("[spaces]\nuid_base = 3000000\n").spaces;
            assert_eq!(per_space.run_as, AppUser::PerSpace { base: 3_000_000 });
            assert_eq!(per_space.run_dir, Some(shared));
        }
        let both = "[spaces]\nrun_as_uid = 1234\nuid_base = 3000000\n";
        assert!(load_toml(dir.path(), both).is_err());
    }

    #[test]
    fn a_hub_run_as_root_gives_each_space_its_own_user_unless_told_otherwise() {
        let resolve = |uid, base, root| AppUser::resolve(uid, base, root);
        assert_eq!(
            resolve(None, None, true).expect("default"),
            AppUser::PerSpace {
                base: DEFAULT_UID_BASE
            }
        );
        assert_eq!(resolve(None, None, false).expect("default"), AppUser::Hub);
        assert_eq!(
            resolve(None, Some(3_000_000), true).expect("base"),
            AppUser::PerSpace { base: 3_000_000 }
        );
        // An explicit uid is one user for every app; 0 keeps the hub's own.
        assert_eq!(
            resolve(Some(65534), None, true).expect("shared"),
            AppUser::Shared(65534)
        );
        assert_eq!(resolve(Some(0), None, true).expect("hub"), AppUser::Hub);
        // Both at once, a base among ordinary users' uids or past 2^31, or per-Space users
        // without root: refused.
        assert!(resolve(Some(65534), Some(3_000_000), true).is_err());
        assert!(resolve(None, Some(1000), true).is_err());
        assert!(resolve(None, Some(MAX_APP_UID), true).is_err());
        assert!(resolve(None, Some(3_000_000), false).is_err());
        const { assert!(DEFAULT_UID_BASE >= MIN_UID_BASE && DEFAULT_UID_BASE < MAX_APP_UID) };
    }

    #[test]
    fn git_repositories_live_in_the_data_dir_unless_a_git_dir_is_given() {
        let dir = tempfile::tempdir().expect("tempdir");
        let default = load_toml(dir.path(), "").expect("loads");
        assert_eq!(default.repos_dir(), dir.path().join("repos"));
        let file =
            load_toml(dir.path(), "[storage]\ngit_dir = \"/mnt/shared/git\"\n").expect("loads");
        assert_eq!(file.repos_dir(), PathBuf::from("/mnt/shared/git"));
        // The command line (or TROVE_GIT_DIR, merged by clap) wins over the file.
        let flag = Config::load(
            dir.path(),
            ServeOverrides {
                git_dir: Some("/srv/git".into()),
                ..Default::default()
            },
        )
        .expect("loads");
        assert_eq!(flag.repos_dir(), PathBuf::from("/srv/git"));
    }

    #[test]
    fn the_database_is_sqlite_in_the_data_dir_unless_configured_and_never_shows_its_password() {
        let dir = tempfile::tempdir().expect("tempdir");
        let default = load_toml(dir.path(), "").expect("loads");
        assert!(matches!(
            default.database.url(dir.path()),
            trove_db::DatabaseUrl::Sqlite(p) if p == dir.path().join("trove.db")
        ));
        let file = load_toml(
            dir.path(),
            "[database]\nurl = \"postgres://trove:s3cret@db.example/hub\"\nmax_connections = 4\n",
        )
        .expect("loads");
        assert_eq!(file.database.max_connections, Some(4));
        assert_eq!(
            file.database.url(dir.path()).redacted(),
            "postgres://trove:***@db.example/hub"
        );
        assert!(!format!("{file:?}").contains("s3cret"));
        // The command line wins over the file.
        let flag = Config::load(
            dir.path(),
            ServeOverrides {
                database: Some("sqlite:///tmp/other.db".into()),
                ..Default::default()
            },
        )
        .expect("loads");
        assert_eq!(
            flag.database.url(dir.path()).redacted(),
            "sqlite:///tmp/other.db"
        );
        for bad in [
            "[database]\nmax_connections = 0\n",
            "[database]\nurl = \"mysql://x@y/z\"\n",
            "[database]\nport = 5432\n",
        ] {
            let err = load_toml(dir.path(), bad).expect_err(bad);
            assert!(!format!("{err:#}").contains("s3cret"));
        }
    }

    #[test]
    fn bases_are_dns_names() {
        assert!(valid_base("spaces.hub.example"));
        assert!(valid_base("localhost"));
        assert!(!valid_base(""));
        assert!(!valid_base(".spaces.example"));
        assert!(!valid_base("Spaces.example"));
        assert!(!valid_base("spaces.example:8080"));
        assert!(!valid_base("-a.example"));
    }

    #[test]
    fn file_values_apply_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\npublic_url = \"https://hub.example/\"\n",
        )
        .expect("write");
        let config = Config::load(
            dir.path(),
            ServeOverrides {
                config_file: Some(path.clone()),
                ..Default::default()
            },
        )
        .expect("loads");
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.public_url(), "https://hub.example");

        std::fs::write(&path, "lisen = \"127.0.0.1:9000\"\n").expect("write");
        assert!(
            Config::load(
                dir.path(),
                ServeOverrides {
                    config_file: Some(path),
                    ..Default::default()
                }
            )
            .is_err()
        );
    }

    #[test]
    fn signup_is_off_by_default_and_the_auth_table_turns_it_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config::load(dir.path(), ServeOverrides::default()).expect("loads");
        assert!(!config.auth.allow_signup);
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "[auth]\nallow_signup = true\n").expect("write");
        let config = Config::load(
            dir.path(),
            ServeOverrides {
                config_file: Some(path.clone()),
                ..Default::default()
            },
        )
        .expect("loads");
        assert!(config.auth.allow_signup);
        std::fs::write(&path, "[auth]\nallow_sign_up = true\n").expect("write");
        let typo = Config::load(
            dir.path(),
            ServeOverrides {
                config_file: Some(path),
                ..Default::default()
            },
        );
        assert!(typo.is_err(), "an unknown [auth] key is refused");
    }

    #[test]
    fn booleans_from_the_environment() {
        assert_eq!(parse_bool("true").ok(), Some(Some(true)));
        assert_eq!(parse_bool(" ON ").ok(), Some(Some(true)));
        assert_eq!(parse_bool("0").ok(), Some(Some(false)));
        assert_eq!(parse_bool("").ok(), Some(None));
        assert!(parse_bool("maybe").is_err());
    }

    #[test]
    fn webhook_and_subdomain_settings_are_read_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let load = |text: &str| load_toml(dir.path(), text);
        let config = load(
            "[webhooks]\nmax_concurrent_deliveries = 3\nmax_attempts = 2\nfirst_retry_secs = 5\n\
             [spaces]\nsubdomain_base = \"Spaces.Hub.Example.\"\ncpu_limit_percent = 50\n",
        )
        .expect("loads");
        assert_eq!(config.webhooks.max_concurrent_deliveries, 3);
        assert_eq!(config.webhooks.max_attempts, 2);
        assert_eq!(config.webhooks.first_retry_secs, 5);
        assert_eq!(
            config.spaces.subdomain_base.as_deref(),
            Some("spaces.hub.example")
        );
        assert_eq!(config.spaces.cpu_limit_percent, 50);
        let defaults = load("").expect("loads");
        assert_eq!(defaults.webhooks.max_concurrent_deliveries, 8);
        assert_eq!(defaults.webhooks.max_attempts, 4);
        assert!(defaults.spaces.subdomain_base.is_none());
        for bad in [
            "[webhooks]\nmax_attempts = 0\n",
            "[webhooks]\nmax_concurrent_deliveries = 0\n",
            "[webhooks]\nfirst_retry_secs = 100000\n",
            "[spaces]\nsubdomain_base = \"spaces.example:8080\"\n",
            "[spaces]\nsubdomain_base = \"a..b\"\n",
            "[webhooks]\nallowed_targets = [\"10.0.0.0/33\"]\n",
            "[webhooks]\nallowed_targets = [\"intranet\"]\n",
            "[webhooks]\nallowed_targets = \"10.0.0.0/8\"\n",
        ] {
            assert!(load(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn webhook_targets_are_public_only_unless_the_operator_allows_more() {
        let dir = tempfile::tempdir().expect("tempdir");
        let defaults = load_toml(dir.path(), "").expect("loads");
        assert!(!defaults.webhooks.allow_private_targets);
        assert!(defaults.webhooks.allowed_targets.is_empty());
        let config = load_toml(
            dir.path(),
            "[webhooks]\nallow_private_targets = true\n\
             allowed_targets = [\"10.1.2.3/8\", \"fd00::/8\", \"192.168.1.20\"]\n",
        )
        .expect("loads");
        assert!(config.webhooks.allow_private_targets);
        let nets: Vec<String> = config
            .webhooks
            .allowed_targets
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(nets, ["10.0.0.0/8", "fd00::/8", "192.168.1.20/32"]);
        // The environment's form: comma-separated.
        let nets = parse_targets(" 10.0.0.0/8, ::1 ,".split(',')).expect("parses");
        assert_eq!(nets.len(), 2);
        assert!(parse_targets("10.0.0.0/8,nope".split(',')).is_err());
    }

    #[test]
    fn flags_win_over_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("trove.toml"),
            "listen = \"127.0.0.1:9000\"\n",
        )
        .expect("write");
        let config = Config::load(
            dir.path(),
            ServeOverrides {
                listen: Some("127.0.0.1:9001".parse().expect("addr")),
                ..Default::default()
            },
        )
        .expect("loads");
        assert_eq!(config.listen.port(), 9001);
    }

    #[test]
    fn public_url_needs_a_scheme() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = ServeOverrides {
            public_url: Some("hub.example".into()),
            ..Default::default()
        };
        assert!(Config::load(dir.path(), bad).is_err());
    }

    #[test]
    fn compact_below_is_a_fraction_and_defaults_to_a_half() {
        let dir = tempfile::tempdir().expect("tempdir");
        let load = |text: &str| load_toml(dir.path(), text);
        assert_eq!(load("").expect("loads").storage.compact_below, 0.5);
        let c = load("[storage]\ncompact_below = 0.25\n").expect("loads");
        assert_eq!(c.storage.compact_below, 0.25);
        // 0 disables compaction.
        let c = load("[storage]\ncompact_below = 0\n").expect("loads");
        assert_eq!(c.storage.compact_below, 0.0);
        for bad in ["1.5", "-0.1", "\"half\"", "nan"] {
            assert!(
                load(&format!("[storage]\ncompact_below = {bad}\n")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn storage_urls_name_a_backend_and_credentials_never_come_from_the_url() {
        let dir = tempfile::tempdir().expect("tempdir");
        let creds = dir.path().join("creds");
        std::fs::write(
            &creds,
            "[other]\naws_access_key_id = nope\n\n[default]\naws_access_key_id = AKID\naws_secret_access_key = s3cr3t\n",
        )
        .expect("write");
        let storage = |url: Option<&str>| StorageConfig {
            url: url.map(str::to_owned),
            credentials_file: Some(creds.clone()),
            ..Config::default().storage
        };
        match storage(None).backend(dir.path()).expect("default") {
            StorageBackend::Local(root) => assert_eq!(root, dir.path().join("lfs")),
            other => panic!("{other:?}"),
        }
        match storage(Some("file:///srv/lfs"))
            .backend(dir.path())
            .expect("file")
        {
            StorageBackend::Local(root) => assert_eq!(root, PathBuf::from("/srv/lfs")),
            other => panic!("{other:?}"),
        }
        let url = "s3://trove-bucket/hub1/?endpoint=http://127.0.0.1:3900/&region=garage";
        match storage(Some(url)).backend(dir.path()).expect("s3") {
            StorageBackend::S3(c) => {
                assert_eq!(c.bucket, "trove-bucket");
                assert_eq!(c.prefix, "hub1/");
                assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
                assert_eq!(c.region, "garage");
                assert_eq!(c.checksum, trove_store::S3Checksum::Crc64Nvme);
                assert_eq!(
                    (c.access_key_id.as_str(), c.secret_access_key.as_str()),
                    ("AKID", "s3cr3t")
                );
                assert!(
                    !format!("{c:?}").contains("s3cr3t"),
                    "the secret never in Debug"
                );
            }
            other => panic!("{other:?}"),
        }
        match storage(Some("s3://b?checksum=sha256")).backend(dir.path()) {
            Ok(StorageBackend::S3(c)) => assert_eq!(c.checksum, trove_store::S3Checksum::Sha256),
            other => panic!("{other:?}"),
        }
        for bad in [
            "s3://key:secret@bucket",
            "s3://b?checksum=md5",
            "s3://",
            "s3://Bad_Bucket",
            "s3://b?endpoint=ftp://x",
            "s3://b?colour=blue",
            "gs://bucket",
            "file://relative/path",
        ] {
            assert!(storage(Some(bad)).backend(dir.path()).is_err(), "{bad}");
        }
        std::fs::write(&creds, "aws_access_key_id = only-the-id\n").expect("write");
        assert!(storage(Some("s3://b")).backend(dir.path()).is_err());
        let c = load_toml(
            dir.path(),
            "[storage]\nurl = \"s3://b\"\nredirect_downloads = true\npresign_ttl_secs = 60\ns3_memory_mib = 16\n",
        )
        .expect("loads");
        assert_eq!(c.storage.url.as_deref(), Some("s3://b"));
        assert!(c.storage.redirect_downloads);
        assert_eq!(c.storage.presign_ttl_secs, 60);
        assert_eq!(c.storage.s3_memory, 16 << 20);
        assert_eq!(
            Config::default().storage.s3_memory,
            trove_store::DEFAULT_S3_MEMORY
        );
    }
}
