//! The grammar of the command line (clap derive): commands, their arguments and flags.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "trove", version, about = "A self-hostable Hugging Face Hub")]
pub struct Cli {
    /// Directory holding all state: database, git repositories, large files.
    #[arg(long, global = true, env = "TROVE_DATA_DIR", default_value = crate::config::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,

    /// The metadata database: `sqlite://<path>` (default `<data-dir>/trove.db`) or
    /// `postgres://user:password@host:port/db`, which several Trove nodes can share. Prefer
    /// `TROVE_DATABASE` or `[database] url` in trove.toml to keep a password off the command
    /// line.
    #[arg(long, global = true, env = "TROVE_DATABASE", hide_env_values = true)]
    pub database: Option<String>,

    /// The folder of the git repositories (default `<data-dir>/repos`): a shared volume when
    /// several nodes serve one hub. Also `[storage] git_dir` in trove.toml.
    #[arg(long, global = true, env = "TROVE_GIT_DIR")]
    pub git_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start the hub.
    Serve(ServeArgs),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage access tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage organizations and their members.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Show the audit log of security events, newest first.
    Audit {
        /// Only the events of this organization (or user).
        #[arg(long)]
        org: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Git hooks, run by git itself while serving a push (not for people).
    #[command(subcommand, hide = true)]
    Hook(HookCommand),
    /// Rebuild the search index (cards, tags, safetensors counts) from each repository's
    /// `main`: all repositories, or the one given. Safe while the server runs.
    Reindex {
        /// `ns/name` of a model, or `dataset:ns/name`, `space:ns/name`, `model:ns/name`.
        repo: Option<String>,
    },
    /// Free what no ref of any repository references any more from the chunk store (LFS
    /// objects, Xet files, xorbs), once older than the grace period. Safe while the server runs.
    Gc {
        /// Report what would be freed; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Grace period: nothing uploaded or linked more recently is freed (`0s`, `90m`, `12h`,
        /// `28d`; default 28d, longer than clients cache xorbs).
        #[arg(long)]
        grace: Option<String>,
    },
    /// The chunk store's figures.
    #[command(subcommand)]
    Storage(StorageCommand),
    /// Move this stopped embedded hub (the data dir's SQLite database, local object store and
    /// git repositories) into the scale-out mode: its metadata into an empty PostgreSQL
    /// database, its objects into a bucket, each verified. Resumable: run it again after an
    /// interruption. `--git-dir DIR`: also copy the git repositories to DIR (the folder the
    /// new nodes will use); without it they stay where they are.
    Migrate(MigrateArgs),
    /// Check every xorb (every chunk decompressed and hashed) and every Xet file (terms and
    /// file hash); names the files a damaged xorb affects. Exits nonzero on damage.
    Fsck {
        /// First rebuild the derived indices (the dedup chunk index, records of xorb files
        /// on disk, which xorbs each file names) from the xorbs and file records. Safe while
        /// the server runs.
        #[arg(long)]
        repair_index: bool,
    },
    /// Fill the database with synthetic indexed repositories for the search benchmark
    /// (bench/search/); never on a data dir that matters.
    #[command(hide = true)]
    BenchSeedSearch {
        /// How many repositories to create.
        #[arg(long, default_value_t = 100_000)]
        repos: usize,
        /// Random seed: the same seed gives the same catalogue.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Fill the chunk store with valid xorbs no file names, for the GC benchmark and the GC
    /// crash test (bench/storage.sh); never on a data dir that matters.
    #[command(hide = true)]
    BenchSeedStorage {
        #[arg(long, default_value_t = 1000)]
        xorbs: usize,
        #[arg(long, default_value_t = 1000)]
        chunks_per_xorb: usize,
        #[arg(long, default_value_t = 64)]
        chunk_bytes: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum StorageCommand {
    /// Logical bytes, stored bytes and the dedup ratio, overall, per namespace and per repo.
    Stats {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Move whole-file LFS objects stored before the chunk store into it. Resumable: run it
    /// again after an interruption. Safe while the server runs.
    Migrate,
}

#[derive(Subcommand, Debug)]
pub enum HookCommand {
    /// Check a push before git moves any ref (ref updates on stdin).
    PreReceive,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "TROVE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Base URL clients use to reach this server, when behind a proxy.
    #[arg(long, env = "TROVE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// TOML configuration file (default: trove.toml in the data dir, if present).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Grace period in seconds for requests still in flight (uploads, pushes) once the
    /// node stops accepting connections on SIGTERM/SIGINT (at once, or after
    /// --drain-delay); whatever still runs then is cut off. git processes whose client
    /// already left get up to as long again to finish before the process exits.
    #[arg(long, env = "TROVE_SHUTDOWN_TIMEOUT", default_value_t = 30)]
    pub shutdown_timeout: u64,
    /// Seconds between SIGTERM and refusing new connections, during which `/readyz` already
    /// answers 503 so that a load balancer's health check takes this node out first.
    #[arg(long, env = "TROVE_DRAIN_DELAY", default_value_t = 0)]
    pub drain_delay: u64,
    /// Where large files live: s3://bucket[/prefix]?endpoint=URL&region=R (credentials from
    /// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or [storage] credentials_file), or
    /// file:///path. Default: lfs/ in the data dir.
    #[arg(long, env = "TROVE_STORAGE")]
    pub storage: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user.
    Create {
        name: String,
        /// Make the user an administrator (full rights on every repository).
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        email: Option<String>,
        /// A display name (the Hub's full name).
        #[arg(long)]
        fullname: Option<String>,
    },
    /// Change a user's profile.
    Set {
        name: String,
        /// A display name (the Hub's full name); "" clears it.
        #[arg(long)]
        fullname: Option<String>,
    },
    /// List users.
    List,
    /// Disable a user: their tokens and sessions stop working at once; their data stays.
    Disable { name: String },
    /// Enable a disabled user again.
    Enable { name: String },
    /// Set the password for the web login (read from stdin, one line, at least 8 characters).
    SetPassword { name: String },
}

#[derive(Subcommand, Debug)]
pub enum OrgCommand {
    /// Create an organization with USER as its first admin.
    Create {
        name: String,
        #[arg(long)]
        owner: String,
        /// A display name.
        #[arg(long)]
        fullname: Option<String>,
    },
    /// List organizations.
    List,
    /// Add a member, or change their role.
    AddMember {
        org: String,
        user: String,
        #[arg(long, value_enum)]
        role: OrgRoleArg,
    },
    /// Remove a member (not the last admin).
    RemoveMember { org: String, user: String },
    /// List an organization's members and their roles.
    Members { org: String },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OrgRoleArg {
    Read,
    Contributor,
    Write,
    Admin,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RoleArg {
    Read,
    Write,
    FineGrained,
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token and print it (only the token) on stdout. It is shown this once.
    Create {
        /// The token's owner (or `--user`).
        #[arg(required_unless_present = "user_flag", conflicts_with = "user_flag")]
        user: Option<String>,
        #[arg(long = "user", hide = true)]
        user_flag: Option<String>,
        #[arg(long, value_enum, default_value = "write")]
        role: RoleArg,
        /// A label to list and revoke the token by (default: a generated one).
        #[arg(long)]
        name: Option<String>,
        /// Fine-grained: a repository the permissions apply to, `TYPE:NS/NAME`
        /// (e.g. `model:acme/detector`); repeatable.
        #[arg(long = "repo")]
        repos: Vec<String>,
        /// Fine-grained: a user or organization whose repositories the permissions apply to;
        /// repeatable.
        #[arg(long = "namespace")]
        namespaces: Vec<String>,
        /// Fine-grained: a permission (`repo.content.read`, `repo.write`,
        /// `discussion.write`); repeatable.
        #[arg(long = "permission")]
        permissions: Vec<String>,
        /// Lifetime, like `30d`, `12h`, `15m` (default: no expiry).
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// List a user's tokens (never the secrets).
    List {
        #[arg(required_unless_present = "user_flag", conflicts_with = "user_flag")]
        user: Option<String>,
        #[arg(long = "user", hide = true)]
        user_flag: Option<String>,
    },
    /// Revoke a user's token by its label.
    Revoke {
        #[arg(required_unless_present = "user_flag", conflicts_with = "user_flag")]
        user: Option<String>,
        #[arg(long = "user", hide = true)]
        user_flag: Option<String>,
        #[arg(long)]
        name: String,
    },
}

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// The PostgreSQL database to fill: `postgres://user:password@host:port/db`, empty or
    /// holding an interrupted migration of this hub. Prefer `TROVE_MIGRATE_TO` to keep the
    /// password off the command line.
    #[arg(long, env = "TROVE_MIGRATE_TO", hide_env_values = true)]
    pub to: String,

    /// The bucket to fill: `s3://bucket[/prefix]?endpoint=http://host:port&region=…`.
    /// Credentials from `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` or `[storage]
    /// credentials_file`, never from the URL.
    #[arg(long)]
    pub storage: String,

    /// Objects copied at once.
    #[arg(long, default_value_t = crate::storage::relocate::DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
}
