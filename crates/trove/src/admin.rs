//! The admin verbs of the CLI. They open the same database as a running server (SQLite in WAL
//! mode with a busy timeout), so they are safe to use while it serves.

use crate::auth::{generate_token, hash_token};
use crate::cli::{RoleArg, TokenCommand, UserCommand};
use crate::clock::format_ms;
use anyhow::Context;
use trove_db::{Db, TokenRole, User};
use trove_types::RepoName;

/// Opens the database of `data_dir`, creating both when missing (the server's first start).
/// A new data dir is made readable by its owner only: it holds private repositories.
pub async fn open_db(data_dir: &std::path::Path) -> anyhow::Result<Db> {
    if !data_dir.exists() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    }
    Db::open(&data_dir.join("trove.db"))
        .await
        .context("opening the database")
}

/// Opens the database of an existing data dir, for the admin verbs: run in the wrong
/// directory they must say so, not quietly start an empty hub of their own.
pub async fn open_existing_db(data_dir: &std::path::Path) -> anyhow::Result<Db> {
    let db_file = data_dir.join("trove.db");
    anyhow::ensure!(
        db_file.exists(),
        "no Trove database at {}: run this where `trove serve` keeps its data, or pass \
         --data-dir DIR (or set TROVE_DATA_DIR); `trove serve --data-dir DIR` creates a new one",
        db_file.display()
    );
    open_db(data_dir).await
}

/// Warns when others may read the data dir (private repositories live there).
pub fn warn_if_data_dir_is_shared(data_dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(data_dir)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            data_dir = %data_dir.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the data dir is accessible to other local users; `chmod 700` it to keep private repositories private"
        );
    }
}

pub async fn run_user(db: &Db, command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Create { name, admin, email } => {
            let name = RepoName::parse_namespace(&name)?;
            let user = db.create_user(&name, email.as_deref(), admin).await?;
            eprintln!(
                "created user {}{}",
                user.name,
                if user.is_admin { " (admin)" } else { "" }
            );
            Ok(())
        }
    }
}

async fn find_user(db: &Db, name: &str) -> anyhow::Result<User> {
    db.user_by_name(name)
        .await?
        .with_context(|| format!("no user named {name:?}"))
}

pub async fn run_token(db: &Db, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { user, role, name } => {
            let user = find_user(db, &user).await?;
            let role = match role {
                RoleArg::Read => TokenRole::Read,
                RoleArg::Write => TokenRole::Write,
            };
            let label = name.unwrap_or_else(|| {
                format!("token-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
            });
            let token = generate_token();
            db.create_token(user.id, &label, role, &hash_token(&token))
                .await?;
            println!("{token}");
            Ok(())
        }
        TokenCommand::List { user } => {
            let user = find_user(db, &user).await?;
            for t in db.list_tokens(user.id).await? {
                let used = t
                    .last_used_at_ms
                    .map(format_ms)
                    .unwrap_or_else(|| "never".into());
                println!(
                    "{}\t{}\tcreated {}\tlast used {}",
                    t.name,
                    t.role.as_str(),
                    format_ms(t.created_at_ms),
                    used
                );
            }
            Ok(())
        }
        TokenCommand::Revoke { user, name } => {
            let user = find_user(db, &user).await?;
            anyhow::ensure!(
                db.revoke_token(user.id, &name).await?,
                "user {} has no token named {name:?}",
                user.name
            );
            eprintln!("revoked token {name:?} of {}", user.name);
            Ok(())
        }
    }
}

/// On first start (no user at all), creates `admin` with a write token saved to
/// `<data>/admin-token` (mode 0600). Returns the token when it was just created.
pub async fn bootstrap_admin(
    db: &Db,
    data_dir: &std::path::Path,
) -> anyhow::Result<Option<String>> {
    if db.count_users().await? > 0 {
        return Ok(None);
    }
    let name = RepoName::parse_namespace("admin").expect("'admin' is a valid user name");
    let user = db.create_user(&name, None, true).await?;
    let token = generate_token();
    db.create_token(
        user.id,
        "admin-bootstrap",
        TokenRole::Write,
        &hash_token(&token),
    )
    .await?;
    let path = data_dir.join("admin-token");
    let _ = std::fs::remove_file(&path);
    let mut file = crate::signing::create_private_file(&path)?;
    use std::io::Write;
    writeln!(file, "{token}")?;
    file.sync_all()?;
    Ok(Some(token))
}
