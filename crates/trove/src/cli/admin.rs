//! The admin verbs of the CLI. They open the same database as a running server (SQLite in WAL
//! mode with a busy timeout), so they are safe to use while it serves.

use crate::accounts;
use crate::accounts::profile;
use crate::auth::password;
use crate::auth::token::parse_lifetime;
use crate::auth::{generate_token, hash_token};
use crate::cli::args::{OrgCommand, OrgRoleArg, RoleArg, TokenCommand, UserCommand};
use crate::clock::format_ms;
use crate::config::Config;
use anyhow::Context;
use trove_db::{DatabaseUrl, Db, DbError, OrgRole, ScopeTarget, TokenRole, User};
use trove_types::RepoName;

/// Opens the database `config` names (by default the data dir's SQLite file), creating the
/// data dir when missing (the server's first start). A new data dir is made readable by its
/// owner only: it holds private repositories.
pub async fn open_db(config: &Config) -> anyhow::Result<Db> {
    let data_dir = &config.data_dir;
    if !data_dir.exists() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    }
    connect(config).await
}

/// Connects to the database `config` names; creates nothing but a SQLite file's schema.
async fn connect(config: &Config) -> anyhow::Result<Db> {
    let url = config.database.url(&config.data_dir);
    // A connection error names the server, with the password redacted.
    Db::connect(&url, &config.database.connect_options())
        .await
        .context("opening the database")
}

/// Opens the database of an existing hub, for the admin verbs: run in the wrong directory
/// they must say so, not quietly start an empty hub of their own. (A PostgreSQL database is
/// the hub's wherever it is run from.)
pub async fn open_existing_db(config: &Config) -> anyhow::Result<Db> {
    if let DatabaseUrl::Sqlite(db_file) = config.database.url(&config.data_dir) {
        anyhow::ensure!(
            db_file.exists(),
            "no Trove database at {}: run this where `trove serve` keeps its data, or pass \
             --data-dir DIR (or set TROVE_DATA_DIR); for a hub on PostgreSQL, pass \
             --database URL (or set TROVE_DATABASE) as its nodes are given; \
             `trove serve --data-dir DIR` creates a new one",
            db_file.display()
        );
    }
    // Never the data dir's creation: on PostgreSQL an admin verb needs none (the hub is the
    // database), and a directory left behind by a verb run in the wrong place is a trap.
    connect(config).await
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

/// The audit log's actor for changes made on the command line.
const CLI_ACTOR: &str = "cli";

pub async fn run_user(db: &Db, command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Create {
            name,
            admin,
            email,
            fullname,
        } => {
            let name = account_name(&name, "user")?;
            if let Some(raw) = &fullname {
                profile::parse_fullname(raw).map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            let user = db
                .create_user(&name, email.as_deref(), admin)
                .await
                .map_err(|e| taken(e, name.as_str()))?;
            eprintln!(
                "created user {}{}",
                user.name,
                if user.is_admin { " (admin)" } else { "" }
            );
            accounts::audit(
                db,
                "cli",
                "user.create",
                Some(&user.name),
                Some(&user.name),
                user.is_admin.then_some("site admin"),
            )
            .await;
            if let Some(raw) = &fullname {
                profile::set_fullname(db, CLI_ACTOR, &user, raw)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            Ok(())
        }
        UserCommand::Set { name, fullname } => {
            let user = find_user(db, &name).await?;
            let Some(raw) = fullname else {
                anyhow::bail!("nothing to change: pass --fullname NAME (\"\" clears it)");
            };
            profile::set_fullname(db, CLI_ACTOR, &user, &raw)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            match profile::parse_fullname(&raw).ok().flatten() {
                Some(full) => eprintln!("{} is now shown as {full:?}", user.name),
                None => eprintln!("{} has no full name now", user.name),
            }
            Ok(())
        }
        UserCommand::List => {
            let users = db.list_users().await?;
            if users.is_empty() {
                println!("(no users)");
            }
            for u in users {
                println!(
                    "{}\t{}{}\tcreated {}",
                    u.name,
                    if u.is_admin { "admin" } else { "user" },
                    if u.disabled { " (disabled)" } else { "" },
                    format_ms(u.created_at_ms)
                );
            }
            Ok(())
        }
        UserCommand::Disable { name } => set_disabled(db, &name, true).await,
        UserCommand::Enable { name } => set_disabled(db, &name, false).await,
        UserCommand::SetPassword { name } => {
            let user = find_user(db, &name).await?;
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            let password = line.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(
                password.chars().count() >= password::MIN_PASSWORD_LEN,
                "the password must have at least {} characters",
                password::MIN_PASSWORD_LEN
            );
            let phc = password::hash_password(password)?;
            db.set_password_hash(user.id, &phc).await?;
            accounts::audit(
                db,
                CLI_ACTOR,
                "user.password",
                Some(&user.name),
                Some(&user.name),
                None,
            )
            .await;
            eprintln!("password set for {}", user.name);
            Ok(())
        }
    }
}

async fn set_disabled(db: &Db, name: &str, disabled: bool) -> anyhow::Result<()> {
    let user = find_user(db, name).await?;
    db.set_user_disabled(user.id, disabled).await?;
    if disabled {
        db.delete_sessions_of(user.id).await?;
    }
    let action = if disabled {
        "user.disable"
    } else {
        "user.enable"
    };
    accounts::audit(
        db,
        CLI_ACTOR,
        action,
        Some(&user.name),
        Some(&user.name),
        None,
    )
    .await;
    eprintln!(
        "{} {}",
        if disabled { "disabled" } else { "enabled" },
        user.name
    );
    Ok(())
}

/// "name taken" in words, for a name that is a user or an organization already.
fn taken(e: DbError, name: &str) -> anyhow::Error {
    match e {
        DbError::Conflict { .. } => {
            anyhow::anyhow!("the name {name:?} is taken (by a user or an organization)")
        }
        e => e.into(),
    }
}

async fn find_user(db: &Db, name: &str) -> anyhow::Result<User> {
    db.user_by_name(name)
        .await?
        .with_context(|| format!("no user named {name:?}"))
}

pub async fn run_org(db: &Db, command: OrgCommand) -> anyhow::Result<()> {
    match command {
        OrgCommand::Create {
            name,
            owner,
            fullname,
        } => {
            let owner = find_user(db, &owner).await?;
            let name = account_name(&name, "organization")?;
            let org = db
                .create_org(&name, fullname.as_deref())
                .await
                .map_err(|e| taken(e, name.as_str()))?;
            accounts::audit(
                db,
                CLI_ACTOR,
                "org.create",
                Some(&org.name),
                Some(&org.name),
                None,
            )
            .await;
            accounts::orgs::set_member(db, CLI_ACTOR, &org, &owner, OrgRole::Admin).await?;
            eprintln!(
                "created organization {} with admin {}",
                org.name, owner.name
            );
            Ok(())
        }
        OrgCommand::List => {
            let orgs = db.list_orgs().await?;
            if orgs.is_empty() {
                println!("(no organizations)");
            }
            for org in orgs {
                let members = db.org_members(org.id).await?.len();
                println!(
                    "{}\t{} member{}\tcreated {}",
                    org.name,
                    members,
                    if members == 1 { "" } else { "s" },
                    format_ms(org.created_at_ms)
                );
            }
            Ok(())
        }
        OrgCommand::AddMember { org, user, role } => {
            let org = accounts::orgs::find_org(db, &org).await?;
            let user = find_user(db, &user).await?;
            let role = match role {
                OrgRoleArg::Read => OrgRole::Read,
                OrgRoleArg::Contributor => OrgRole::Contributor,
                OrgRoleArg::Write => OrgRole::Write,
                OrgRoleArg::Admin => OrgRole::Admin,
            };
            accounts::orgs::set_member(db, CLI_ACTOR, &org, &user, role).await?;
            eprintln!(
                "{} is now a member of {} with the {} role",
                user.name, org.name, role
            );
            Ok(())
        }
        OrgCommand::RemoveMember { org, user } => {
            let org = accounts::orgs::find_org(db, &org).await?;
            let user = find_user(db, &user).await?;
            anyhow::ensure!(
                accounts::orgs::remove_member(db, CLI_ACTOR, &org, &user).await?,
                "{} is not a member of {}",
                user.name,
                org.name
            );
            eprintln!("removed {} from {}", user.name, org.name);
            Ok(())
        }
        OrgCommand::Members { org } => {
            let org = accounts::orgs::find_org(db, &org).await?;
            for (user, role) in db.org_members(org.id).await? {
                println!("{}\t{}", user.name, role);
            }
            Ok(())
        }
    }
}

pub async fn run_audit(db: &Db, org: Option<String>, limit: u32) -> anyhow::Result<()> {
    let events = db.audit_events(org.as_deref(), None, limit).await?;
    if events.is_empty() {
        println!("(no events)");
        return Ok(());
    }
    println!("TIME\tACTOR\tACTION\tNAMESPACE\tTARGET\tDETAIL");
    for e in events {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            format_ms(e.at_ms),
            e.actor.as_deref().unwrap_or("-"),
            e.action,
            e.namespace.as_deref().unwrap_or("-"),
            e.target.as_deref().unwrap_or("-"),
            e.detail.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

pub async fn run_token(db: &Db, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            user,
            user_flag,
            role,
            name,
            repos,
            namespaces,
            permissions,
            expires_in,
        } => {
            let user = find_user(db, &user.or(user_flag).unwrap_or_default()).await?;
            let role = match role {
                RoleArg::Read => TokenRole::Read,
                RoleArg::Write => TokenRole::Write,
                RoleArg::FineGrained => TokenRole::FineGrained,
            };
            let lifetime_ms = expires_in
                .map(|text| {
                    parse_lifetime(&text).with_context(|| {
                        format!("--expires-in {text:?}: expected a number and d, h, m or s")
                    })
                })
                .transpose()?;
            let label = name.unwrap_or_else(|| {
                format!("token-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
            });
            let spec = accounts::tokens::TokenSpec {
                name: label,
                role: Some(role),
                repos,
                namespaces,
                permissions,
                lifetime_ms,
            };
            let (secret, _) = accounts::tokens::create(db, CLI_ACTOR, &user, spec)
                .await
                .map_err(|e| match e.downcast::<DbError>() {
                    Ok(DbError::Conflict { .. }) => {
                        anyhow::anyhow!("{} already has a token of that name", user.name)
                    }
                    Ok(e) => e.into(),
                    Err(e) => e,
                })?;
            println!("{secret}");
            Ok(())
        }
        TokenCommand::List { user, user_flag } => {
            let user = find_user(db, &user.or(user_flag).unwrap_or_default()).await?;
            let tokens = db.list_tokens(user.id).await?;
            if tokens.is_empty() {
                println!("(no tokens for {})", user.name);
            }
            let now = trove_db::unix_now_ms();
            for t in tokens {
                let used = t
                    .last_used_at_ms
                    .map(format_ms)
                    .unwrap_or_else(|| "never".into());
                let expires = match t.expires_at_ms {
                    None => "never expires".to_owned(),
                    Some(at) if at <= now => format!("expired {}", format_ms(at)),
                    Some(at) => format!("expires {}", format_ms(at)),
                };
                let scopes: Vec<String> = t
                    .scopes
                    .iter()
                    .map(|s| {
                        let target = match &s.target {
                            ScopeTarget::Repo {
                                repo_type,
                                namespace,
                                name,
                                ..
                            } => format!("{repo_type}:{namespace}/{name}"),
                            ScopeTarget::Namespace(ns) => format!("namespace:{ns}"),
                        };
                        format!("{target}={}", s.permissions.join("+"))
                    })
                    .collect();
                println!(
                    "{}\t{}\tcreated {}\tlast used {}\t{}{}",
                    t.name,
                    t.role.as_str(),
                    format_ms(t.created_at_ms),
                    used,
                    expires,
                    if scopes.is_empty() {
                        String::new()
                    } else {
                        format!("\t{}", scopes.join(" "))
                    }
                );
            }
            Ok(())
        }
        TokenCommand::Revoke {
            user,
            user_flag,
            name,
        } => {
            let user = find_user(db, &user.or(user_flag).unwrap_or_default()).await?;
            anyhow::ensure!(
                accounts::tokens::revoke(db, CLI_ACTOR, &user, &name).await?,
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
        None,
        &[],
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

/// A user or organization name, refused in words about accounts (the rule is a repo
/// name's, whose own message speaks of repos).
fn account_name(name: &str, what: &str) -> anyhow::Result<RepoName> {
    RepoName::parse_namespace(name).map_err(|e| {
        let why = e.0.rsplit_once(": ").map_or(e.0.as_str(), |(_, why)| why);
        anyhow::anyhow!("Invalid {what} name {name:?}: {why}")
    })
}
