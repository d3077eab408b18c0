//! Discussions and pull requests: numbered per repository, each with an ordered list of
//! events. The rules (who may change what, which transitions are allowed) live in the
//! server's use-case layer; this module stores and reads.

use crate::backend::{WritePool, with_pool};
use crate::db::Db;
use crate::error::{DbError, Result, constraint_error};
use sqlx::Row;

/// Where a discussion or pull request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiscussionStatus {
    /// A pull request with no commits yet (opened through the API).
    Draft,
    Open,
    Closed,
    /// A merged pull request; final.
    Merged,
}

impl DiscussionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DiscussionStatus::Draft => "draft",
            DiscussionStatus::Open => "open",
            DiscussionStatus::Closed => "closed",
            DiscussionStatus::Merged => "merged",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "draft" => DiscussionStatus::Draft,
            "open" => DiscussionStatus::Open,
            "closed" => DiscussionStatus::Closed,
            "merged" => DiscussionStatus::Merged,
            _ => return None,
        })
    }
}

/// One discussion or pull request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discussion {
    pub id: i64,
    pub repo_id: i64,
    pub num: i64,
    pub title: String,
    pub is_pull_request: bool,
    pub status: DiscussionStatus,
    pub author_user_id: Option<i64>,
    /// The author's name; `None` once the account is deleted.
    pub author: Option<String>,
    /// For pull requests: the full ref they merge into (`refs/heads/main`).
    pub base_ref: Option<String>,
    /// For merged pull requests: the commit the base branch moved to.
    pub merge_commit: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

const DISCUSSION_COLUMNS: &str = "d.id, d.repo_id, d.num, d.title, d.is_pull_request, d.status, \
     d.author_user_id, u.name, d.base_ref, d.merge_commit, d.created_at, d.updated_at";
const DISCUSSION_FROM: &str = "discussions d LEFT JOIN users u ON u.id = d.author_user_id";

impl Discussion {
    fn from_row(row: &impl crate::backend::DbRow) -> Result<Discussion> {
        let status: String = row.try_get(5)?;
        Ok(Discussion {
            id: row.try_get(0)?,
            repo_id: row.try_get(1)?,
            num: row.try_get(2)?,
            title: row.try_get(3)?,
            is_pull_request: row.try_get(4)?,
            status: DiscussionStatus::parse(&status).ok_or_else(|| DbError::Corrupt {
                what: "discussion status",
                detail: status.clone(),
            })?,
            author_user_id: row.try_get(6)?,
            author: row.try_get(7)?,
            base_ref: row.try_get(8)?,
            merge_commit: row.try_get(9)?,
            created_at_ms: row.try_get(10)?,
            updated_at_ms: row.try_get(11)?,
        })
    }
}

/// What happened in a discussion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    Comment {
        /// The current text.
        raw: String,
        hidden: bool,
        /// When and by whom the text was last changed (`None`: never edited).
        edited: Option<(i64, Option<String>)>,
        /// Earlier versions, oldest first: text, author, time.
        history: Vec<CommentVersion>,
    },
    StatusChange {
        status: DiscussionStatus,
    },
    Commit {
        subject: String,
        oid: String,
    },
    TitleChange {
        from: String,
        to: String,
    },
}

/// An earlier version of an edited comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommentVersion {
    pub raw: String,
    pub author: Option<String>,
    pub created_at_ms: i64,
}

/// One event of a discussion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub id: i64,
    pub discussion_id: i64,
    pub author: Option<String>,
    pub created_at_ms: i64,
    pub kind: EventKind,
}

/// A new event, as the use-case layer describes it.
#[derive(Clone, Debug)]
pub enum NewEvent<'a> {
    Comment(&'a str),
    StatusChange(DiscussionStatus),
    Commit { subject: &'a str, oid: &'a str },
    TitleChange { from: &'a str, to: &'a str },
}

impl NewEvent<'_> {
    fn columns(&self) -> (&'static str, &str, Option<&str>) {
        match self {
            NewEvent::Comment(raw) => ("comment", raw, None),
            NewEvent::StatusChange(status) => ("status-change", status.as_str(), None),
            NewEvent::Commit { subject, oid } => ("commit", subject, Some(oid)),
            NewEvent::TitleChange { from, to } => ("title-change", to, Some(from)),
        }
    }
}

const EVENT_COLUMNS: &str = "e.id, e.discussion_id, u.name, e.created_at, e.kind, e.body, \
     e.detail, e.hidden, e.edited_at, editor.name";
const EVENT_FROM: &str = "discussion_events e LEFT JOIN users u ON u.id = e.author_user_id \
     LEFT JOIN users editor ON editor.id = e.editor_user_id";

impl Event {
    /// Reads a row of [`EVENT_COLUMNS`]; comment history is filled in by the caller.
    fn from_row(row: &impl crate::backend::DbRow) -> Result<Event> {
        let kind: String = row.try_get(4)?;
        let body: String = row.try_get(5)?;
        let detail: Option<String> = row.try_get(6)?;
        let corrupt = |what: &'static str| DbError::Corrupt {
            what,
            detail: kind.clone(),
        };
        let kind = match kind.as_str() {
            "comment" => {
                let edited_at: Option<i64> = row.try_get(8)?;
                EventKind::Comment {
                    raw: body,
                    hidden: row.try_get(7)?,
                    edited: edited_at
                        .map(|at| Ok::<_, DbError>((at, row.try_get(9)?)))
                        .transpose()?,
                    history: Vec::new(),
                }
            }
            "status-change" => EventKind::StatusChange {
                status: DiscussionStatus::parse(&body).ok_or_else(|| corrupt("event status"))?,
            },
            "commit" => EventKind::Commit {
                subject: body,
                oid: detail.ok_or_else(|| corrupt("commit event"))?,
            },
            "title-change" => EventKind::TitleChange {
                from: detail.ok_or_else(|| corrupt("title event"))?,
                to: body,
            },
            _ => return Err(corrupt("event kind")),
        };
        Ok(Event {
            id: row.try_get(0)?,
            discussion_id: row.try_get(1)?,
            author: row.try_get(2)?,
            created_at_ms: row.try_get(3)?,
            kind,
        })
    }
}

/// Which discussions a listing shows.
#[derive(Clone, Debug, Default)]
pub struct DiscussionFilter {
    /// `Some(true)`: pull requests only; `Some(false)`: discussions only.
    pub pull_requests: Option<bool>,
    /// `Some(true)`: open and draft; `Some(false)`: closed and merged.
    pub open: Option<bool>,
    /// Only those opened by this user name (any case).
    pub author: Option<String>,
}

/// A new discussion or pull request.
pub struct NewDiscussion<'a> {
    pub repo_id: i64,
    pub author_user_id: i64,
    pub title: &'a str,
    pub is_pull_request: bool,
    pub status: DiscussionStatus,
    pub base_ref: Option<&'a str>,
    /// The opening comment; none when empty.
    pub description: &'a str,
    pub now_ms: i64,
}

impl Db {
    /// Creates a discussion with the next number of its repository, and its opening comment,
    /// in one transaction.
    pub async fn create_discussion(&self, new: &NewDiscussion<'_>) -> Result<Discussion> {
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            // SQLite serialises writers, so the number read here is still free at the insert.
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO discussions (repo_id, num, title, is_pull_request, status, \
                     author_user_id, base_ref, created_at, updated_at) \
                 SELECT $1, COALESCE(MAX(num), 0) + 1, $2, $3, $4, $5, $6, $7, $8 \
                 FROM discussions WHERE repo_id = $9 RETURNING id",
            )
            .bind(new.repo_id)
            .bind(new.title)
            .bind(new.is_pull_request)
            .bind(new.status.as_str())
            .bind(new.author_user_id)
            .bind(new.base_ref)
            .bind(new.now_ms)
            .bind(new.now_ms)
            .bind(new.repo_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(constraint_error("discussion", "repo or user"))?;
            if !new.description.is_empty() {
                sqlx::query(
                    "INSERT INTO discussion_events \
                         (discussion_id, kind, author_user_id, body, created_at) \
                     VALUES ($1, 'comment', $2, $3, $4)",
                )
                .bind(id)
                .bind(new.author_user_id)
                .bind(new.description)
                .bind(new.now_ms)
                .execute(&mut *tx)
                .await?;
            }
            let sql = format!("SELECT {DISCUSSION_COLUMNS} FROM {DISCUSSION_FROM} WHERE d.id = $1");
            let row = sqlx::query(&sql).bind(id).fetch_one(&mut *tx).await?;
            tx.commit().await?;
            Discussion::from_row(&row)
        })
    }

    /// Removes a discussion and its events (undoing a creation whose follow-up failed).
    pub async fn delete_discussion(&self, discussion_id: i64) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query("DELETE FROM discussions WHERE id = $1")
                .bind(discussion_id)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    pub async fn discussion(&self, repo_id: i64, num: i64) -> Result<Option<Discussion>> {
        with_pool!(self, pool => {
            let sql = format!(
                "SELECT {DISCUSSION_COLUMNS} FROM {DISCUSSION_FROM} WHERE d.repo_id = $1 AND d.num = $2"
            );
            sqlx::query(&sql)
                .bind(repo_id)
                .bind(num)
                .fetch_optional(pool)
                .await?
                .as_ref()
                .map(Discussion::from_row)
                .transpose()
        })
    }

    /// One page of a repository's discussions, newest first, and how many match in all.
    pub async fn list_discussions(
        &self,
        repo_id: i64,
        filter: &DiscussionFilter,
        offset: u32,
        limit: u32,
    ) -> Result<(Vec<Discussion>, u64)> {
        with_pool!(self, pool => {
            let mut conditions = String::from("d.repo_id = $1");
            if let Some(pr) = filter.pull_requests {
                conditions.push_str(if pr {
                    " AND d.is_pull_request = TRUE"
                } else {
                    " AND d.is_pull_request = FALSE"
                });
            }
            if let Some(open) = filter.open {
                conditions.push_str(if open {
                    " AND d.status IN ('open', 'draft')"
                } else {
                    " AND d.status IN ('closed', 'merged')"
                });
            }
            if filter.author.is_some() {
                conditions.push_str(" AND u.name = $2");
            }
            let next_param = if filter.author.is_some() { 3 } else { 2 };
            let count_sql = format!("SELECT COUNT(*) FROM {DISCUSSION_FROM} WHERE {conditions}");
            let mut count = sqlx::query_scalar::<_, i64>(&count_sql).bind(repo_id);
            if let Some(author) = &filter.author {
                count = count.bind(author);
            }
            let total = count.fetch_one(pool).await?;
            let sql = format!(
                "SELECT {DISCUSSION_COLUMNS} FROM {DISCUSSION_FROM} WHERE {conditions} \
                 ORDER BY d.num DESC LIMIT ${} OFFSET ${}",
                next_param,
                next_param + 1
            );
            let mut query = sqlx::query(&sql).bind(repo_id);
            if let Some(author) = &filter.author {
                query = query.bind(author);
            }
            let rows = query
                .bind(i64::from(limit))
                .bind(i64::from(offset))
                .fetch_all(pool)
                .await?;
            let items = rows
                .iter()
                .map(Discussion::from_row)
                .collect::<Result<Vec<_>>>()?;
            Ok((items, u64::try_from(total).unwrap_or(0)))
        })
    }

    /// Every event of a discussion in order, comments with their edit history.
    pub async fn discussion_events(&self, discussion_id: i64) -> Result<Vec<Event>> {
        with_pool!(self, pool => {
            let sql = format!(
                "SELECT {EVENT_COLUMNS} FROM {EVENT_FROM} WHERE e.discussion_id = $1 ORDER BY e.id"
            );
            let rows = sqlx::query(&sql)
                .bind(discussion_id)
                .fetch_all(pool)
                .await?;
            let mut events = rows
                .iter()
                .map(Event::from_row)
                .collect::<Result<Vec<_>>>()?;
            let edits = sqlx::query(
                "SELECT c.event_id, c.body, u.name, c.created_at FROM comment_edits c \
                 JOIN discussion_events e ON e.id = c.event_id \
                 LEFT JOIN users u ON u.id = c.author_user_id \
                 WHERE e.discussion_id = $1 ORDER BY c.id",
            )
            .bind(discussion_id)
            .fetch_all(pool)
            .await?;
            for row in &edits {
                let event_id: i64 = row.try_get(0)?;
                let version = CommentVersion {
                    raw: row.try_get(1)?,
                    author: row.try_get(2)?,
                    created_at_ms: row.try_get(3)?,
                };
                if let Some(Event {
                    kind: EventKind::Comment { history, .. },
                    ..
                }) = events.iter_mut().find(|e| e.id == event_id)
                {
                    history.push(version);
                }
            }
            Ok(events)
        })
    }

    /// One event of a discussion, with its history.
    pub async fn discussion_event(
        &self,
        discussion_id: i64,
        event_id: i64,
    ) -> Result<Option<Event>> {
        Ok(self
            .discussion_events(discussion_id)
            .await?
            .into_iter()
            .find(|e| e.id == event_id))
    }

    /// Appends events to a discussion and, when `status` or `title` is given, changes it —
    /// all in one transaction. `merge_commit` is recorded with a merge. Returns the events
    /// added, in order.
    pub async fn record_discussion_events(
        &self,
        discussion: &Discussion,
        author_user_id: Option<i64>,
        changes: &DiscussionChanges<'_>,
        events: &[NewEvent<'_>],
        now_ms: i64,
    ) -> Result<Vec<Event>> {
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let updated = sqlx::query(
                "UPDATE discussions SET status = COALESCE($1, status), title = COALESCE($2, title), \
                     merge_commit = COALESCE($3, merge_commit), updated_at = $4 \
                 WHERE id = $5 AND status = $6",
            )
            .bind(changes.status.map(DiscussionStatus::as_str))
            .bind(changes.title)
            .bind(changes.merge_commit)
            .bind(now_ms)
            .bind(discussion.id)
            .bind(discussion.status.as_str())
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() == 0 {
                // Someone changed the status since the caller read it.
                return Err(DbError::Conflict {
                    what: "discussion status change",
                });
            }
            let mut ids = Vec::with_capacity(events.len());
            for event in events {
                let (kind, body, detail) = event.columns();
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO discussion_events \
                         (discussion_id, kind, author_user_id, body, detail, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                )
                .bind(discussion.id)
                .bind(kind)
                .bind(author_user_id)
                .bind(body)
                .bind(detail)
                .bind(now_ms)
                .fetch_one(&mut *tx)
                .await?;
                ids.push(id);
            }
            tx.commit().await?;
            let all = self.discussion_events(discussion.id).await?;
            Ok(all.into_iter().filter(|e| ids.contains(&e.id)).collect())
        })
    }

    /// Replaces a comment's text, keeping the old one in its history. `false` when the
    /// event is not a comment of that discussion.
    pub async fn edit_comment(
        &self,
        discussion_id: i64,
        event_id: i64,
        raw: &str,
        editor_user_id: i64,
        now_ms: i64,
    ) -> Result<bool> {
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let old: Option<CommentRow> = sqlx::query_as(
                "SELECT body, author_user_id, created_at, editor_user_id, edited_at \
                 FROM discussion_events WHERE id = $1 AND discussion_id = $2 AND kind = 'comment'",
            )
            .bind(event_id)
            .bind(discussion_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((body, author, created_at, editor, edited_at)) = old else {
                return Ok(false);
            };
            sqlx::query(
                "INSERT INTO comment_edits (event_id, body, author_user_id, created_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(event_id)
            .bind(body)
            .bind(editor.or(author))
            .bind(edited_at.unwrap_or(created_at))
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE discussion_events SET body = $1, edited_at = $2, editor_user_id = $3 WHERE id = $4",
            )
            .bind(raw)
            .bind(now_ms)
            .bind(editor_user_id)
            .bind(event_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Hides a comment (its text stays stored); `false` when the event is not a comment of
    /// that discussion.
    pub async fn hide_comment(&self, discussion_id: i64, event_id: i64) -> Result<bool> {
        with_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE discussion_events SET hidden = TRUE \
                 WHERE id = $1 AND discussion_id = $2 AND kind = 'comment'",
            )
            .bind(event_id)
            .bind(discussion_id)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Who wrote an event of a discussion: `None` when there is no such event, `Some(None)`
    /// when its author's account is gone.
    pub async fn event_author_id(
        &self,
        discussion_id: i64,
        event_id: i64,
    ) -> Result<Option<Option<i64>>> {
        with_pool!(self, pool => {
            Ok(sqlx::query_scalar(
                "SELECT author_user_id FROM discussion_events WHERE id = $1 AND discussion_id = $2",
            )
            .bind(event_id)
            .bind(discussion_id)
            .fetch_optional(pool)
            .await?)
        })
    }
}

/// A comment's text, author, creation time, last editor and edit time.
type CommentRow = (String, Option<i64>, i64, Option<i64>, Option<i64>);

/// What a recorded set of events changes on the discussion itself.
#[derive(Clone, Debug, Default)]
pub struct DiscussionChanges<'a> {
    pub status: Option<DiscussionStatus>,
    pub title: Option<&'a str>,
    pub merge_commit: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use trove_types::{RepoId, RepoName, RepoType};

    async fn setup(db: Db) -> (Db, i64, i64) {
        let name = RepoName::parse("alice").expect("name");
        let user = db.create_user(&name, None, false).await.expect("user");
        let id = RepoId::new(name, RepoName::parse("demo").expect("name"));
        let repo = db
            .create_repo(RepoType::Model, &id, false, user.id, 1)
            .await
            .expect("repo");
        (db, repo.id, user.id)
    }

    fn new(repo_id: i64, user: i64, title: &str, pr: bool) -> NewDiscussion<'_> {
        NewDiscussion {
            repo_id,
            author_user_id: user,
            title,
            is_pull_request: pr,
            status: if pr {
                DiscussionStatus::Draft
            } else {
                DiscussionStatus::Open
            },
            base_ref: pr.then_some("refs/heads/main"),
            description: "hello",
            now_ms: 1,
        }
    }

    crate::backend_tests! {
    async fn numbers_count_up_per_repository_and_listing_filters(db) -> Result<()> {
        let (db, repo, user) = setup(db).await;
        let a = db.create_discussion(&new(repo, user, "a", false)).await?;
        let b = db.create_discussion(&new(repo, user, "b", true)).await?;
        assert_eq!((a.num, b.num), (1, 2));
        assert_eq!(b.author.as_deref(), Some("alice"));
        let (all, total) = db
            .list_discussions(repo, &DiscussionFilter::default(), 0, 50)
            .await?;
        assert_eq!(total, 2);
        assert_eq!(all.iter().map(|d| d.num).collect::<Vec<_>>(), vec![2, 1]);
        let prs = DiscussionFilter {
            pull_requests: Some(true),
            ..Default::default()
        };
        assert_eq!(db.list_discussions(repo, &prs, 0, 50).await?.1, 1);
        let by_bob = DiscussionFilter {
            author: Some("BOB".into()),
            ..Default::default()
        };
        assert_eq!(db.list_discussions(repo, &by_bob, 0, 50).await?.1, 0);
        let by_alice = DiscussionFilter {
            author: Some("ALICE".into()),
            open: Some(true),
            ..Default::default()
        };
        assert_eq!(db.list_discussions(repo, &by_alice, 0, 50).await?.1, 2);
        let (page, _) = db
            .list_discussions(repo, &DiscussionFilter::default(), 1, 1)
            .await?;
        assert_eq!(page[0].num, 1);
        Ok(())
    }
    }

    crate::backend_tests! {
    async fn events_change_status_once_and_comments_keep_their_history(db) -> Result<()> {
        let (db, repo, user) = setup(db).await;
        let d = db.create_discussion(&new(repo, user, "a", false)).await?;
        let events = db.discussion_events(d.id).await?;
        assert_eq!(events.len(), 1, "the description is the first comment");
        let first = events[0].id;
        assert!(db.edit_comment(d.id, first, "hello again", user, 5).await?);
        let closed = DiscussionChanges {
            status: Some(DiscussionStatus::Closed),
            ..Default::default()
        };
        let added = db
            .record_discussion_events(
                &d,
                Some(user),
                &closed,
                &[
                    NewEvent::Comment("bye"),
                    NewEvent::StatusChange(DiscussionStatus::Closed),
                ],
                9,
            )
            .await?;
        assert_eq!(added.len(), 2);
        // A second change from the stale status is refused: someone else moved it.
        let again = db
            .record_discussion_events(&d, Some(user), &closed, &[], 10)
            .await;
        assert!(matches!(again, Err(DbError::Conflict { .. })));
        let now = db.discussion(repo, d.num).await?.expect("discussion");
        assert_eq!(now.status, DiscussionStatus::Closed);
        let events = db.discussion_events(d.id).await?;
        let EventKind::Comment {
            raw,
            history,
            edited,
            ..
        } = &events[0].kind
        else {
            panic!("first event is a comment");
        };
        assert_eq!(raw, "hello again");
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].raw, "hello");
        assert_eq!(edited.as_ref().map(|e| e.0), Some(5));
        assert!(db.hide_comment(d.id, first).await?);
        assert!(!db.hide_comment(d.id, added[1].id).await?, "not a comment");
        Ok(())
    }
    }
}
