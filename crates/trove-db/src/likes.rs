//! Likes: who likes which repository, newest first both ways. The per-repository count in
//! `repo_index` is kept by triggers in the same transaction as the like itself.

use crate::backend::with_pool;
use crate::db::Db;
use crate::error::{Result, constraint_error};
use crate::repos::{REPO_COLUMN_COUNT, REPO_COLUMNS_R, Repo};
use crate::search::{Cursor, Page, Visibility, push_visibility};
use crate::users::{USER_COLUMNS, User};
use sqlx::QueryBuilder;

impl Db {
    /// Records that `user_id` likes `repo_id`; `false` if they already did.
    pub async fn like(&self, user_id: i64, repo_id: i64, now_ms: i64) -> Result<bool> {
        let _changing = self.changing_listings();
        with_pool!(self, pool => {
            let done = sqlx::query(
                "INSERT INTO likes (user_id, repo_id, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_id, repo_id) DO NOTHING",
            )
            .bind(user_id)
            .bind(repo_id)
            .bind(now_ms)
            .execute(pool)
            .await
            .map_err(constraint_error("like", "repo or user"))?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Withdraws a like; `false` if there was none.
    pub async fn unlike(&self, user_id: i64, repo_id: i64) -> Result<bool> {
        let _changing = self.changing_listings();
        with_pool!(self, pool => {
            let done = sqlx::query("DELETE FROM likes WHERE user_id = $1 AND repo_id = $2")
                .bind(user_id)
                .bind(repo_id)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// The users who like a repository, most recent like first. Cursors carry the like's
    /// time as `value` and the user (or, for [`Db::liked_repos`], repo) id.
    pub async fn likers(
        &self,
        repo_id: i64,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Page<(User, i64)>> {
        with_pool!(self, pool => {
            let after = after.unwrap_or(Cursor {
                value: i64::MAX,
                id: i64::MAX,
            });
            let sql = format!(
                "SELECT {USER_COLUMNS}, l.created_at FROM likes l JOIN users ON users.id = l.user_id \
                 WHERE l.repo_id = $1 AND (l.created_at, l.user_id) < ($2, $3) \
                 ORDER BY l.created_at DESC, l.user_id DESC LIMIT $4"
            );
            let rows = sqlx::query(&sql)
                .bind(repo_id)
                .bind(after.value)
                .bind(after.id)
                .bind(i64::from(limit) + 1)
                .fetch_all(pool)
                .await?;
            let mut items = rows
                .iter()
                .map(|row| {
                    use sqlx::Row;
                    Ok((
                        User::from_row(row, 0)?,
                        row.try_get::<i64, _>(crate::users::USER_COLUMN_COUNT)?,
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            let next = page_end(&mut items, limit, |(u, t)| Cursor {
                value: *t,
                id: u.id,
            });
            Ok(Page { items, next })
        })
    }

    /// The repositories a user likes that `visibility` lets the caller see, most recent first.
    pub async fn liked_repos(
        &self,
        user_id: i64,
        visibility: &Visibility,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Page<(Repo, i64)>> {
        with_pool!(self, pool => {
            let after = after.unwrap_or(Cursor {
                value: i64::MAX,
                id: i64::MAX,
            });
            let mut qb: QueryBuilder<'_, _> = QueryBuilder::new(format!(
                "SELECT {REPO_COLUMNS_R}, l.created_at FROM likes l JOIN repos r ON r.id = l.repo_id \
                 WHERE l.user_id = "
            ));
            qb.push_bind(user_id);
            push_visibility(&mut qb, visibility);
            qb.push(" AND (l.created_at, l.repo_id) < (");
            qb.push_bind(after.value);
            qb.push(", ");
            qb.push_bind(after.id);
            qb.push(") ORDER BY l.created_at DESC, l.repo_id DESC LIMIT ");
            qb.push_bind(i64::from(limit) + 1);
            let rows = qb.build().fetch_all(pool).await?;
            let mut items = rows
                .iter()
                .map(|row| {
                    use sqlx::Row;
                    Ok((
                        Repo::from_row_at(row, 0)?,
                        row.try_get::<i64, _>(REPO_COLUMN_COUNT)?,
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            let next = page_end(&mut items, limit, |(r, t)| Cursor {
                value: *t,
                id: r.id,
            });
            Ok(Page { items, next })
        })
    }
}

/// Trims the look-ahead row; the cursor of the last kept row when there is a next page.
fn page_end<T>(items: &mut Vec<T>, limit: u32, cursor: impl Fn(&T) -> Cursor) -> Option<Cursor> {
    if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(cursor)
    } else {
        None
    }
}
