//! Spaces: the runtime settings an owner chose (paused, sleep time) and the Space's
//! variables and secrets.

use crate::backend::{WritePool, with_pool};
use crate::db::Db;
use crate::error::{Result, constraint_error};
use sqlx::Row;

/// What the owner asked of a Space's runtime.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpaceSettings {
    pub paused: bool,
    /// Seconds without a request after which the app sleeps; `None`: never.
    pub sleep_time_secs: Option<i64>,
}

/// A variable or a secret of a Space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvKind {
    Variable,
    Secret,
}

impl EnvKind {
    fn as_str(self) -> &'static str {
        match self {
            EnvKind::Variable => "variable",
            EnvKind::Secret => "secret",
        }
    }
}

/// One variable or secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpaceEnvEntry {
    pub kind: EnvKind,
    pub key: String,
    pub value: String,
    pub description: Option<String>,
    pub updated_at_ms: i64,
}

impl Db {
    /// The Space's runtime settings (the defaults when none were ever set).
    pub async fn space_settings(&self, repo_id: i64) -> Result<SpaceSettings> {
        with_pool!(self, pool => {
            let row =
                sqlx::query("SELECT paused, sleep_time_secs FROM space_settings WHERE repo_id = $1")
                    .bind(repo_id)
                    .fetch_optional(pool)
                    .await?;
            Ok(match row {
                Some(row) => SpaceSettings {
                    paused: row.try_get("paused")?,
                    sleep_time_secs: row.try_get("sleep_time_secs")?,
                },
                None => SpaceSettings::default(),
            })
        })
    }

    /// Stores the Space's runtime settings.
    pub async fn set_space_settings(
        &self,
        repo_id: i64,
        settings: &SpaceSettings,
        now_ms: i64,
    ) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO space_settings (repo_id, paused, sleep_time_secs, updated_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (repo_id) DO UPDATE SET \
                 paused = excluded.paused, sleep_time_secs = excluded.sleep_time_secs, \
                 updated_at = excluded.updated_at",
            )
            .bind(repo_id)
            .bind(settings.paused)
            .bind(settings.sleep_time_secs)
            .bind(now_ms)
            .execute(pool)
            .await
            .map_err(constraint_error("space settings", "repo"))?;
            Ok(())
        })
    }

    /// The Space's variables and secrets, by key.
    pub async fn space_env(&self, repo_id: i64) -> Result<Vec<SpaceEnvEntry>> {
        with_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT kind, key, value, description, updated_at FROM space_env \
                 WHERE repo_id = $1 ORDER BY kind, key",
            )
            .bind(repo_id)
            .fetch_all(pool)
            .await?;
            rows.into_iter()
                .map(|row| {
                    let kind: String = row.try_get("kind")?;
                    Ok(SpaceEnvEntry {
                        kind: if kind == "secret" {
                            EnvKind::Secret
                        } else {
                            EnvKind::Variable
                        },
                        key: row.try_get("key")?,
                        value: row.try_get("value")?,
                        description: row.try_get("description")?,
                        updated_at_ms: row.try_get("updated_at")?,
                    })
                })
                .collect()
        })
    }

    /// Adds or replaces a variable or secret.
    pub async fn put_space_env(&self, repo_id: i64, entry: &SpaceEnvEntry) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO space_env (repo_id, kind, key, value, description, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (repo_id, kind, key) DO UPDATE SET \
                 value = excluded.value, description = excluded.description, \
                 updated_at = excluded.updated_at",
            )
            .bind(repo_id)
            .bind(entry.kind.as_str())
            .bind(&entry.key)
            .bind(&entry.value)
            .bind(&entry.description)
            .bind(entry.updated_at_ms)
            .execute(pool)
            .await
            .map_err(constraint_error("space variable", "repo"))?;
            Ok(())
        })
    }

    /// Removes a variable or secret; `false` if there was none.
    pub async fn delete_space_env(&self, repo_id: i64, kind: EnvKind, key: &str) -> Result<bool> {
        with_pool!(self, pool => {
            let done = sqlx::query("DELETE FROM space_env WHERE repo_id = $1 AND kind = $2 AND key = $3")
                .bind(repo_id)
                .bind(kind.as_str())
                .bind(key)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
    }
}

impl Db {
    /// Lets repository `to` read every large file `from` may read (its LFS objects, Xet
    /// files among them, and the xorbs it references), in one transaction: a duplicate's
    /// history names the same pointers. Returns how many LFS objects were linked.
    pub async fn copy_content_links(&self, from: i64, to: i64, now_ms: i64) -> Result<u64> {
        let _changing = self.changing_storage();
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let objects = sqlx::query(
                "INSERT INTO repo_lfs_objects (repo_id, sha256, created_at) \
                 SELECT $1, sha256, $2 FROM repo_lfs_objects WHERE repo_id = $3 \
                 ON CONFLICT DO NOTHING",
            )
            .bind(to)
            .bind(now_ms)
            .bind(from)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(
                "INSERT INTO xet_repo_xorbs (repo_id, hash, created_at) \
                 SELECT $1, hash, $2 FROM xet_repo_xorbs WHERE repo_id = $3 \
                 ON CONFLICT DO NOTHING",
            )
            .bind(to)
            .bind(now_ms)
            .bind(from)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(objects)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::backend_tests! {
    async fn settings_and_env_round_trip(db) {
        let name = trove_types::RepoName::parse("a").expect("name");
        let user = db.create_user(&name, None, false).await.expect("user");
        let id = trove_types::RepoId::new(name, trove_types::RepoName::parse("s").expect("name"));
        let repo = db
            .create_repo(trove_types::RepoType::Space, &id, false, user.id, 1)
            .await
            .expect("repo");
        assert_eq!(
            db.space_settings(repo.id).await.expect("read"),
            SpaceSettings::default()
        );
        let s = SpaceSettings {
            paused: true,
            sleep_time_secs: Some(300),
        };
        db.set_space_settings(repo.id, &s, 2).await.expect("write");
        assert_eq!(db.space_settings(repo.id).await.expect("read"), s);
        let secret = SpaceEnvEntry {
            kind: EnvKind::Secret,
            key: "TOKEN".into(),
            value: "v".into(),
            description: None,
            updated_at_ms: 3,
        };
        db.put_space_env(repo.id, &secret).await.expect("put");
        let var = SpaceEnvEntry {
            kind: EnvKind::Variable,
            key: "TOKEN".into(),
            value: "w".into(),
            description: Some("d".into()),
            updated_at_ms: 3,
        };
        db.put_space_env(repo.id, &var).await.expect("put");
        assert_eq!(db.space_env(repo.id).await.expect("env").len(), 2);
        assert!(
            db.delete_space_env(repo.id, EnvKind::Secret, "TOKEN")
                .await
                .expect("delete")
        );
        assert_eq!(db.space_env(repo.id).await.expect("env"), vec![var]);
    }
    }
}
