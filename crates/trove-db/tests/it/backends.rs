//! What must hold across the two backends: one logical schema, migrations applied once when
//! several nodes start together, and clear, password-free errors when the server cannot be
//! reached or refuses the credentials.

use std::time::{Duration, Instant};
use trove_db::testing::{TestDb, applied_migrations, database_url, fresh_name, schema_columns};
use trove_db::{ConnectOptions, DatabaseUrl, Db, DbError};

fn postgres_url() -> Option<String> {
    std::env::var(trove_db::testing::POSTGRES_URL_ENV)
        .ok()
        .filter(|u| !u.is_empty())
}

#[tokio::test]
async fn both_backends_have_the_same_tables_columns_and_migrations() {
    let Some(pg) = TestDb::postgres().await else {
        eprintln!("TROVE_TEST_POSTGRES_URL unset: skipped");
        return;
    };
    let sqlite = TestDb::sqlite().await;
    let (a, b) = (sqlite.db(), pg.db());
    let sqlite_columns = schema_columns(&a).await.expect("sqlite schema");
    let pg_columns = schema_columns(&b).await.expect("postgres schema");
    assert!(
        sqlite_columns.len() > 100,
        "{} columns",
        sqlite_columns.len()
    );
    let only_sqlite: Vec<_> = sqlite_columns
        .iter()
        .filter(|c| !pg_columns.contains(c))
        .collect();
    let only_pg: Vec<_> = pg_columns
        .iter()
        .filter(|c| !sqlite_columns.contains(c))
        .collect();
    assert!(
        only_sqlite.is_empty() && only_pg.is_empty(),
        "only in SQLite: {only_sqlite:#?}\nonly in PostgreSQL: {only_pg:#?}"
    );
    assert_eq!(
        applied_migrations(&a).await.expect("sqlite migrations"),
        applied_migrations(&b).await.expect("postgres migrations"),
    );
    sqlite.drop().await;
    pg.drop().await;
}

#[tokio::test]
async fn nodes_starting_together_apply_the_migrations_once() {
    let Some(admin_url) = postgres_url() else {
        eprintln!("TROVE_TEST_POSTGRES_URL unset: skipped");
        return;
    };
    // An empty database, migrated by whichever of four "nodes" takes sqlx's advisory lock
    // first; without that lock the others' CREATE TABLEs would fail.
    let name = fresh_name();
    admin_exec(&admin_url, &format!("CREATE DATABASE {name}")).await;
    let url = DatabaseUrl::parse(&database_url(&admin_url, &name)).expect("url");
    let opens = (0..4).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { Db::connect(&url, &ConnectOptions::default()).await })
    });
    let mut dbs = Vec::new();
    for open in opens {
        dbs.push(
            open.await
                .expect("task")
                .expect("every node opens the database"),
        );
    }
    let applied = applied_migrations(&dbs[0]).await.expect("migrations");
    assert_eq!(applied.len(), postgres_migration_files(), "{applied:?}");
    for db in &dbs {
        db.close().await;
    }
    admin_exec(&admin_url, &format!("DROP DATABASE {name} WITH (FORCE)")).await;
}

/// The notices sqlx logs (target `sqlx::postgres::notice`), caught on this thread.
#[derive(Clone, Default)]
struct Notices(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Notices {
    fn taken(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().expect("notices"))
    }
}

impl tracing::Subscriber for Notices {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Text(String);
        impl tracing::field::Visit for Text {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={value:?} ", field.name()));
            }
        }
        if event.metadata().target() == "sqlx::postgres::notice" {
            let mut text = Text(String::new());
            event.record(&mut text);
            self.0.lock().expect("notices").push(text.0);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Every start after the first runs `CREATE TABLE IF NOT EXISTS _sqlx_migrations`; the
/// server's notice that it exists is no news and stays out of the start-up log, while a
/// notice of any other statement still reaches it.
#[tokio::test]
async fn a_restart_logs_no_notice_about_the_migrations_table() {
    let Some(admin_url) = postgres_url() else {
        eprintln!("TROVE_TEST_POSTGRES_URL unset: skipped");
        return;
    };
    let name = fresh_name();
    admin_exec(&admin_url, &format!("CREATE DATABASE {name}")).await;
    let db_url = database_url(&admin_url, &name);
    let url = DatabaseUrl::parse(&db_url).expect("url");
    let notices = Notices::default();
    // The test runtime has one thread: everything below logs through this subscriber.
    let _logging = tracing::subscriber::set_default(notices.clone());
    for start in ["first", "second"] {
        let db = Db::connect(&url, &ConnectOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{start} start: {e}"));
        db.close().await;
        assert_eq!(notices.taken(), Vec::<String>::new(), "{start} start");
    }
    {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&db_url)
            .await
            .expect("connection");
        sqlx::query("DROP TABLE IF EXISTS no_such_table")
            .execute(&mut conn)
            .await
            .expect("drop if exists");
        let _ = conn.close().await;
    }
    let other = notices.taken();
    assert!(
        other.len() == 1 && other[0].contains("no_such_table"),
        "another statement's notice is still logged: {other:?}"
    );
    admin_exec(&admin_url, &format!("DROP DATABASE {name} WITH (FORCE)")).await;
}

async fn admin_exec(admin_url: &str, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin_url)
        .await
        .expect("admin connection");
    sqlx::query(sql).execute(&mut conn).await.expect(sql);
    let _ = conn.close().await;
}

#[tokio::test]
async fn an_unreachable_server_fails_fast_and_never_shows_the_password() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = DatabaseUrl::parse(&format!("postgres://trove:hunter2@127.0.0.1:{port}/trove"))
        .expect("url");
    let options = ConnectOptions {
        max_connections: None,
        connect_timeout: Duration::from_secs(2),
    };
    let started = Instant::now();
    let err = Db::connect(&url, &options)
        .await
        .expect_err("nothing listens");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, DbError::Connect { .. }), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("postgres://trove:***@127.0.0.1"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[tokio::test]
async fn refused_credentials_fail_with_the_servers_reason() {
    let Some(admin_url) = postgres_url() else {
        eprintln!("TROVE_TEST_POSTGRES_URL unset: skipped");
        return;
    };
    // The same server and role, another password.
    let (scheme_user, rest) = admin_url.split_once('@').expect("user in the test URL");
    let user = scheme_user.rsplit_once(':').map_or(scheme_user, |(u, _)| u);
    let user = if user.ends_with('/') {
        scheme_user
    } else {
        user
    };
    let wrong = format!("{user}:not-the-password@{rest}");
    let url = DatabaseUrl::parse(&wrong).expect("url");
    let started = Instant::now();
    let err = Db::connect(&url, &ConnectOptions::default())
        .await
        .expect_err("wrong password");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("password authentication failed"), "{shown}");
    assert!(!shown.contains("not-the-password"), "{shown}");
}

/// How many migrations the PostgreSQL schema has: one `.sql` file each.
fn postgres_migration_files() -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    std::fs::read_dir(&dir)
        .expect("the migrations folder")
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "sql"))
        .count()
}
