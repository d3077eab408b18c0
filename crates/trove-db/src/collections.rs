//! Collections and their items. A collection belongs to a namespace (a user or an
//! organization); its items are repositories or other collections, kept in order
//! (`position` from 0, renumbered on every move so positions stay dense).

use crate::backend::{Conn, WritePool, with_conn, with_pool};
use crate::db::Db;
use crate::error::{DbError, Result, constraint_error};
use crate::repos::{REPO_COLUMNS_R, Repo};
use crate::search::{Cursor, Page, Visibility};
use sqlx::QueryBuilder;

/// A collection's row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collection {
    pub id: i64,
    /// The 24-hex id at the end of the slug.
    pub object_id: String,
    /// The owning user or organization, as spelled at creation.
    pub namespace: String,
    pub title: String,
    pub description: Option<String>,
    pub private: bool,
    pub theme: String,
    pub position: i64,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

const COLLECTION_COLUMNS: &str = "c.id, c.object_id, c.namespace, c.title, c.description, \
     c.private, c.theme, c.position, c.created_at, c.updated_at";

impl Collection {
    fn from_row_at(row: &impl crate::backend::DbRow, o: usize) -> Result<Collection> {
        Ok(Collection {
            id: row.try_get(o)?,
            object_id: row.try_get(o + 1)?,
            namespace: row.try_get(o + 2)?,
            title: row.try_get(o + 3)?,
            description: row.try_get(o + 4)?,
            private: row.try_get(o + 5)?,
            theme: row.try_get(o + 6)?,
            position: row.try_get(o + 7)?,
            created_at_ms: row.try_get(o + 8)?,
            updated_at_ms: row.try_get(o + 9)?,
        })
    }
}

/// What a new collection is made of; its position is after the namespace's last one.
#[derive(Clone, Debug)]
pub struct NewCollection<'a> {
    pub object_id: &'a str,
    pub namespace: &'a str,
    pub title: &'a str,
    pub description: Option<&'a str>,
    pub private: bool,
    pub theme: &'a str,
}

/// The fields an update changes; `None` keeps the current value.
#[derive(Clone, Debug, Default)]
pub struct CollectionChanges {
    pub title: Option<String>,
    pub description: Option<String>,
    pub private: Option<bool>,
    pub theme: Option<String>,
    /// The new place among the namespace's collections (clamped to the last one).
    pub position: Option<i64>,
}

/// What an item points at, by database id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemTarget {
    Repo(i64),
    Collection(i64),
}

/// An item with the row it points at.
#[derive(Clone, Debug)]
pub struct CollectionItem {
    pub id: i64,
    /// The 24-hex id the client names the item by (`item_object_id`).
    pub object_id: String,
    pub position: i64,
    pub note: Option<String>,
    pub target: ItemRow,
}

#[derive(Clone, Debug)]
pub enum ItemRow {
    Repo(Repo),
    Collection(Collection),
}

/// A listing of collections: those `visibility` lets the caller see, owned by one of
/// `owners` (any when empty) and containing every one of `items`, most recently updated
/// first.
#[derive(Clone, Debug)]
pub struct CollectionQuery {
    pub owners: Vec<String>,
    pub items: Vec<ItemTarget>,
    pub visibility: Visibility,
    pub after: Option<Cursor>,
    pub limit: u32,
}

/// An item update; `note: Some(None)` clears the note.
#[derive(Clone, Debug, Default)]
pub struct ItemChanges {
    pub note: Option<Option<String>>,
    pub position: Option<i64>,
}

impl Db {
    /// Creates a collection at the end of its namespace's list. A title already used in the
    /// namespace (ASCII case ignored) is a conflict.
    pub async fn create_collection(
        &self,
        new: &NewCollection<'_>,
        now_ms: i64,
    ) -> Result<Collection> {
        with_pool!(self, pool => {
            let sql = format!(
                "INSERT INTO collections (object_id, namespace, title, description, private, \
                 theme, position, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, \
                   (SELECT COALESCE(MAX(position) + 1, 0) FROM collections WHERE namespace = $7), $8, $9) \
                 RETURNING {}",
                COLLECTION_COLUMNS.replace("c.", "")
            );
            let row = sqlx::query(&sql)
                .bind(new.object_id)
                .bind(new.namespace)
                .bind(new.title)
                .bind(new.description)
                .bind(new.private)
                .bind(new.theme)
                .bind(new.namespace)
                .bind(now_ms)
                .bind(now_ms)
                .fetch_one(pool)
                .await
                .map_err(constraint_error("collection", "namespace"))?;
            Collection::from_row_at(&row, 0)
        })
    }

    /// The collection whose slug ends with `object_id`.
    pub async fn collection_by_object_id(&self, object_id: &str) -> Result<Option<Collection>> {
        with_pool!(self, pool => {
            let sql = format!("SELECT {COLLECTION_COLUMNS} FROM collections c WHERE c.object_id = $1");
            let row = sqlx::query(&sql)
                .bind(object_id)
                .fetch_optional(pool)
                .await?;
            row.map(|r| Collection::from_row_at(&r, 0)).transpose()
        })
    }

    /// The collection of `namespace` titled `title` (ASCII case ignored).
    pub async fn collection_by_title(
        &self,
        namespace: &str,
        title: &str,
    ) -> Result<Option<Collection>> {
        with_pool!(self, pool => {
            let sql = format!(
                "SELECT {COLLECTION_COLUMNS} FROM collections c WHERE c.namespace = $1 AND c.title = $2"
            );
            let row = sqlx::query(&sql)
                .bind(namespace)
                .bind(title)
                .fetch_optional(pool)
                .await?;
            row.map(|r| Collection::from_row_at(&r, 0)).transpose()
        })
    }

    /// Applies `changes` in one transaction (a move renumbers the namespace's collections).
    pub async fn update_collection(
        &self,
        id: i64,
        changes: &CollectionChanges,
        now_ms: i64,
    ) -> Result<Collection> {
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let done = sqlx::query(
                "UPDATE collections SET title = COALESCE($1, title), \
                 description = COALESCE($2, description), private = COALESCE($3, private), \
                 theme = COALESCE($4, theme), updated_at = $5 WHERE id = $6",
            )
            .bind(changes.title.as_deref())
            .bind(changes.description.as_deref())
            .bind(changes.private)
            .bind(changes.theme.as_deref())
            .bind(now_ms)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(constraint_error("collection", "collection"))?;
            if done.rows_affected() == 0 {
                return Err(DbError::NotFound { what: "collection" });
            }
            if let Some(position) = changes.position {
                let ids: Vec<i64> = sqlx::query_scalar(
                    "SELECT id FROM collections WHERE namespace = \
                     (SELECT namespace FROM collections WHERE id = $1) ORDER BY position, id",
                )
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
                for (at, other) in reorder(&ids, id, position).into_iter().enumerate() {
                    sqlx::query("UPDATE collections SET position = $1 WHERE id = $2")
                        .bind(at as i64)
                        .bind(other)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            let sql = format!("SELECT {COLLECTION_COLUMNS} FROM collections c WHERE c.id = $1");
            let row = sqlx::query(&sql).bind(id).fetch_one(&mut *tx).await?;
            let collection = Collection::from_row_at(&row, 0)?;
            tx.commit().await?;
            Ok(collection)
        })
    }

    /// Deletes a collection and its items; `false` if there was none.
    pub async fn delete_collection(&self, id: i64) -> Result<bool> {
        with_pool!(self, pool => {
            let done = sqlx::query("DELETE FROM collections WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// A page of collections, most recently updated first.
    pub async fn list_collections(&self, query: &CollectionQuery) -> Result<Page<Collection>> {
        with_pool!(self, pool => {
            let after = query.after.unwrap_or(Cursor {
                value: i64::MAX,
                id: i64::MAX,
            });
            let mut qb: QueryBuilder<'_, _> = QueryBuilder::new(format!(
                "SELECT {COLLECTION_COLUMNS} FROM collections c WHERE (c.updated_at, c.id) < ("
            ));
            qb.push_bind(after.value);
            qb.push(", ");
            qb.push_bind(after.id);
            qb.push(")");
            match &query.visibility {
                Visibility::Public => {
                    qb.push(" AND c.private = FALSE");
                }
                Visibility::PublicAnd { namespaces, .. } => {
                    qb.push(" AND (c.private = FALSE");
                    if !namespaces.is_empty() {
                        qb.push(" OR c.namespace IN (");
                        let mut list = qb.separated(", ");
                        for ns in namespaces {
                            list.push_bind(ns.clone());
                        }
                        qb.push(")");
                    }
                    qb.push(")");
                }
                Visibility::All => {}
            }
            if !query.owners.is_empty() {
                qb.push(" AND c.namespace IN (");
                let mut list = qb.separated(", ");
                for owner in &query.owners {
                    list.push_bind(owner.clone());
                }
                qb.push(")");
            }
            for item in &query.items {
                let (column, id) = match item {
                    ItemTarget::Repo(id) => ("repo_id", *id),
                    ItemTarget::Collection(id) => ("target_collection_id", *id),
                };
                qb.push(format!(
                    " AND EXISTS (SELECT 1 FROM collection_items i WHERE i.collection_id = c.id \
                     AND i.{column} = "
                ));
                qb.push_bind(id);
                qb.push(")");
            }
            qb.push(" ORDER BY c.updated_at DESC, c.id DESC LIMIT ");
            qb.push_bind(i64::from(query.limit) + 1);
            let rows = qb.build().fetch_all(pool).await?;
            let mut items = rows
                .iter()
                .map(|r| Collection::from_row_at(r, 0))
                .collect::<Result<Vec<_>>>()?;
            let next = if items.len() > query.limit as usize {
                items.truncate(query.limit as usize);
                items.last().map(|c| Cursor {
                    value: c.updated_at_ms,
                    id: c.id,
                })
            } else {
                None
            };
            Ok(Page { items, next })
        })
    }

    /// The collections of a namespace in their owner's order (for its page).
    pub async fn namespace_collections(&self, namespace: &str) -> Result<Vec<Collection>> {
        with_pool!(self, pool => {
            let sql = format!(
                "SELECT {COLLECTION_COLUMNS} FROM collections c WHERE c.namespace = $1 \
                 ORDER BY c.position, c.id"
            );
            let rows = sqlx::query(&sql)
                .bind(namespace)
                .fetch_all(pool)
                .await?;
            rows.iter().map(|r| Collection::from_row_at(r, 0)).collect()
        })
    }

    /// Every item of a collection, in order, with the rows they point at.
    pub async fn collection_items(&self, collection_id: i64) -> Result<Vec<CollectionItem>> {
        with_pool!(self, pool => {
            let repo_sql = format!(
                "SELECT i.id, i.object_id, i.position, i.note, {REPO_COLUMNS_R} \
                 FROM collection_items i JOIN repos r ON r.id = i.repo_id \
                 WHERE i.collection_id = $1"
            );
            let mut items = Vec::new();
            for row in sqlx::query(&repo_sql)
                .bind(collection_id)
                .fetch_all(pool)
                .await?
            {
                items.push(item_from_row(
                    &row,
                    ItemRow::Repo(Repo::from_row_at(&row, 4)?),
                )?);
            }
            let collection_sql = format!(
                "SELECT i.id, i.object_id, i.position, i.note, {COLLECTION_COLUMNS} \
                 FROM collection_items i JOIN collections c ON c.id = i.target_collection_id \
                 WHERE i.collection_id = $1"
            );
            for row in sqlx::query(&collection_sql)
                .bind(collection_id)
                .fetch_all(pool)
                .await?
            {
                let target = Collection::from_row_at(&row, 4)?;
                items.push(item_from_row(&row, ItemRow::Collection(target))?);
            }
            items.sort_by_key(|i| (i.position, i.id));
            Ok(items)
        })
    }

    /// Appends an item; a target already in the collection is a conflict, a missing one not
    /// found. Touches the collection's update time.
    pub async fn add_collection_item(
        &self,
        collection_id: i64,
        object_id: &str,
        target: ItemTarget,
        note: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        with_pool!(self, pool => {
            let (repo_id, target_id) = match target {
                ItemTarget::Repo(id) => (Some(id), None),
                ItemTarget::Collection(id) => (None, Some(id)),
            };
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO collection_items (object_id, collection_id, repo_id, \
                 target_collection_id, position, note, created_at) \
                 VALUES ($1, $2, $3, $4, (SELECT COALESCE(MAX(position) + 1, 0) FROM collection_items \
                 WHERE collection_id = $5), $6, $7)",
            )
            .bind(object_id)
            .bind(collection_id)
            .bind(repo_id)
            .bind(target_id)
            .bind(collection_id)
            .bind(note)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(constraint_error(
                "collection item",
                "collection item target",
            ))?;
            touch(Conn::from(&mut *tx), collection_id, now_ms).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Changes an item's note or place; `false` if the collection has no such item.
    pub async fn update_collection_item(
        &self,
        collection_id: i64,
        object_id: &str,
        changes: &ItemChanges,
        now_ms: i64,
    ) -> Result<bool> {
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let item_id: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM collection_items WHERE collection_id = $1 AND object_id = $2",
            )
            .bind(collection_id)
            .bind(object_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(item_id) = item_id else {
                return Ok(false);
            };
            if let Some(note) = &changes.note {
                sqlx::query("UPDATE collection_items SET note = $1 WHERE id = $2")
                    .bind(note.as_deref())
                    .bind(item_id)
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some(position) = changes.position {
                let ids: Vec<i64> = sqlx::query_scalar(
                    "SELECT id FROM collection_items WHERE collection_id = $1 ORDER BY position, id",
                )
                .bind(collection_id)
                .fetch_all(&mut *tx)
                .await?;
                for (at, other) in reorder(&ids, item_id, position).into_iter().enumerate() {
                    sqlx::query("UPDATE collection_items SET position = $1 WHERE id = $2")
                        .bind(at as i64)
                        .bind(other)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            touch(Conn::from(&mut *tx), collection_id, now_ms).await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Removes an item (the others keep their order); `false` if there was none.
    pub async fn delete_collection_item(
        &self,
        collection_id: i64,
        object_id: &str,
        now_ms: i64,
    ) -> Result<bool> {
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let done =
                sqlx::query("DELETE FROM collection_items WHERE collection_id = $1 AND object_id = $2")
                    .bind(collection_id)
                    .bind(object_id)
                    .execute(&mut *tx)
                    .await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            touch(Conn::from(&mut *tx), collection_id, now_ms).await?;
            tx.commit().await?;
            Ok(true)
        })
    }
}

fn item_from_row(row: &impl crate::backend::DbRow, target: ItemRow) -> Result<CollectionItem> {
    Ok(CollectionItem {
        id: row.try_get(0)?,
        object_id: row.try_get(1)?,
        position: row.try_get(2)?,
        note: row.try_get(3)?,
        target,
    })
}

async fn touch(conn: Conn<'_>, collection_id: i64, now_ms: i64) -> Result<()> {
    with_conn!(conn, c => {
        sqlx::query("UPDATE collections SET updated_at = $1 WHERE id = $2")
            .bind(now_ms)
            .bind(collection_id)
            .execute(c)
            .await?;
    });
    Ok(())
}

/// `ids` in order with `moved` taken out and put back at `position` (clamped to the ends).
fn reorder(ids: &[i64], moved: i64, position: i64) -> Vec<i64> {
    let mut rest: Vec<i64> = ids.iter().copied().filter(|&i| i != moved).collect();
    let at = usize::try_from(position.max(0))
        .unwrap_or(usize::MAX)
        .min(rest.len());
    rest.insert(at, moved);
    rest
}

#[cfg(test)]
mod tests {
    use super::reorder;

    #[test]
    fn a_moved_item_lands_where_asked_and_the_rest_keep_their_order() {
        assert_eq!(reorder(&[1, 2, 3, 4], 4, 0), vec![4, 1, 2, 3]);
        assert_eq!(reorder(&[1, 2, 3, 4], 1, 2), vec![2, 3, 1, 4]);
        assert_eq!(reorder(&[1, 2, 3, 4], 2, 99), vec![1, 3, 4, 2]);
        assert_eq!(reorder(&[1, 2, 3, 4], 3, -5), vec![3, 1, 2, 4]);
    }
}
