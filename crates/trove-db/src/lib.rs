//! Trove's SQL side: the database (embedded SQLite, or PostgreSQL for a scale-out hub), its
//! migrations, and the queries, grouped by aggregate (users, organizations, tokens, repos,
//! gating, the audit log, LFS objects and locks, the Xet chunk store, the search index, likes
//! and discussions).
//!
//! Every query is a runtime-checked `sqlx::query` with bound, numbered parameters, written
//! once in SQL both engines accept and compiled for each (see `backend.rs`); the few that
//! must differ (search, JSON, upserts of SQLite's FTS tables) pick their text by
//! [`Db::backend`]. One logical schema, one migrations folder per engine, numbered alike.

mod audit;
mod backend;
mod collections;
mod compaction;
mod connect;
mod db;
mod discussions;
mod error;
mod facets;
mod gating;
mod hub_copy;
mod leases;
mod lfs;
mod lfs_files;
mod likes;
mod listing_epoch;
mod lock_sessions;
mod locks;
mod members;
mod orgs;
mod reader;
mod repo_lock;
mod repos;
mod search;
mod shared_epochs;
mod shared_secrets;
mod spaces;
mod storage;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod tokens;
mod usage;
mod users;
mod webhooks;
mod xet;

pub use audit::{AuditEvent, NewAuditEvent};
pub use collections::{
    Collection, CollectionChanges, CollectionItem, CollectionQuery, ItemChanges, ItemRow,
    ItemTarget, NewCollection,
};
pub use compaction::Compaction;
pub use discussions::{
    CommentVersion, Discussion, DiscussionChanges, DiscussionFilter, DiscussionStatus, Event,
    EventKind, NewDiscussion, NewEvent,
};
pub use error::{DbError, Result, is_storage_full_io};
pub use facets::FacetSource;
pub use gating::{AccessRequest, RequestStatus};
pub use hub_copy::{COPIED_TABLES, Claim, CopyError, SKIPPED_TABLES};
pub use leases::Lease;
pub use lfs_files::RepoLfsFile;
pub use listing_epoch::{Epochs, MovingRefs};
pub use locks::{LfsLock, LockOutcome, LockQuery};
pub use members::SessionMember;
pub use orgs::{Membership, Org, OrgRole};
pub use repo_lock::{INDEX_LOCK_CLASS, REPO_LOCK_CLASS, RepoLock, repo_lock_key};
pub use repos::{Gating, Repo, RepoStamp};
pub use search::{
    BulkRepo, CardParse, Cursor, IndexUpdate, ListQuery, Listed, Page, RepoIndex, SortKey,
    Visibility,
};
pub use spaces::{EnvKind, SpaceEnvEntry, SpaceSettings};
pub use storage::{ChunkLocation, GcRun, GcTotals, RepoStorage, StorageTotals};
pub use tokens::{NewScope, ScopeTarget, Token, TokenMember, TokenRole, TokenScope};
pub use usage::RepoUsage;
pub use users::User;
pub use webhooks::{AttemptOutcome, Delivery, NewDelivery, Watched, Webhook, WebhookSpec};
pub use xet::{LfsDownload, NewXorb, XetFile, XorbRecord, XorbViewer};

pub use backend::Backend;
pub use connect::{ConnectOptions, DatabaseUrl, InvalidDatabaseUrl, PostgresUrl, redact};

pub use db::{Db, unix_now_ms};
