//! Integration tests of trove-db against real databases: SQLite (in memory and on disk) and,
//! when `TROVE_TEST_POSTGRES_URL` names a server, PostgreSQL (a fresh database per test).

mod accounts;
mod backends;
mod cluster;
mod hub_copy;
mod lfs;
mod locks;
mod open;
mod repos;
mod search;
mod tokens;
mod users;

use trove_db::{Db, User};
use trove_types::{RepoId, RepoName, Sha256Hex};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

pub fn name(s: &str) -> RepoName {
    RepoName::parse_namespace(s).expect("test names are valid")
}

pub fn repo_id(s: &str) -> RepoId {
    RepoId::parse(s).expect("test repo ids are valid")
}

/// A distinct, valid oid per byte.
pub fn oid(byte: u8) -> Sha256Hex {
    Sha256Hex::from_digest(&[byte; 32])
}

pub async fn user(db: &Db, n: &str) -> User {
    db.create_user(&name(n), None, false)
        .await
        .expect("create test user")
}
