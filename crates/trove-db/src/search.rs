//! The search index: per-repository card and file metadata written by reindex, the tags
//! `filter=` matches, substring search over repo ids, and the listing query with keyset
//! pagination. Values derived from JSON stay JSON text here; the `trove` crate owns their shape.

use crate::backend::{Backend, Conn, Pool, WritePool, with_conn, with_pool};
use crate::db::Db;
use crate::error::Result;
use crate::repos::{REPO_COLUMN_COUNT, REPO_COLUMNS_R, Repo};
use sqlx::{QueryBuilder, Row};
use trove_types::RepoType;

/// What reindex writes for one repository.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexUpdate {
    /// Head of main that was indexed.
    pub sha: String,
    /// Its commit time, unix ms.
    pub last_modified_ms: i64,
    pub pipeline_tag: Option<String>,
    pub library_name: Option<String>,
    pub sdk: Option<String>,
    /// JSON array: the tags shown to clients.
    pub tags_json: String,
    /// Every value `filter=` matches (the tags and internal facets), without duplicates.
    pub facets: Vec<String>,
    /// JSON object or `None` when the repo has no card.
    pub card_data_json: Option<String>,
    /// JSON array of strings.
    pub card_warnings_json: String,
    /// JSON array of file paths.
    pub siblings_json: String,
    pub used_storage: i64,
    /// JSON `{"parameters": {...}, "total": n}`.
    pub safetensors_json: Option<String>,
    pub params_total: Option<i64>,
    /// JSON summary of config.json.
    pub config_json: Option<String>,
}

/// The front matter of one README.md blob, as parsed once and stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CardParse {
    /// JSON object, or `None` when the card has no front matter or it was refused.
    pub data_json: Option<String>,
    /// Why the front matter was refused, as shown to users.
    pub warning: Option<String>,
}

/// A repository's index row as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoIndex {
    pub sha: Option<String>,
    pub last_modified_ms: i64,
    pub pipeline_tag: Option<String>,
    pub library_name: Option<String>,
    pub sdk: Option<String>,
    pub tags_json: String,
    pub card_data_json: Option<String>,
    pub card_warnings_json: String,
    pub siblings_json: String,
    pub used_storage: i64,
    pub safetensors_json: Option<String>,
    pub params_total: Option<i64>,
    pub config_json: Option<String>,
    pub downloads: i64,
    pub downloads_all_time: i64,
    pub likes: i64,
    pub trending_score: i64,
}

const INDEX_COLUMNS: &str = "ri.sha, ri.last_modified, ri.pipeline_tag, ri.library_name, ri.sdk, \
     ri.tags, ri.card_data, ri.card_warnings, ri.siblings, ri.used_storage, ri.safetensors, \
     ri.params_total, ri.config, ri.downloads, ri.downloads_all_time, ri.likes, ri.trending_score";

/// [`INDEX_COLUMNS`] without the JSON documents (card data and warnings, file list,
/// safetensors and config summaries), in their place what a repository without them has: a
/// page that does not show them never reads or copies them.
const INDEX_COLUMNS_NO_DOCUMENTS: &str = "ri.sha, ri.last_modified, ri.pipeline_tag, \
     ri.library_name, ri.sdk, ri.tags, CAST(NULL AS TEXT), '[]', '[]', ri.used_storage, \
     CAST(NULL AS TEXT), ri.params_total, CAST(NULL AS TEXT), ri.downloads, ri.downloads_all_time, \
     ri.likes, ri.trending_score";

impl RepoIndex {
    fn from_row(row: &impl crate::backend::DbRow, o: usize) -> Result<RepoIndex> {
        Ok(RepoIndex {
            sha: row.try_get(o)?,
            last_modified_ms: row.try_get(o + 1)?,
            pipeline_tag: row.try_get(o + 2)?,
            library_name: row.try_get(o + 3)?,
            sdk: row.try_get(o + 4)?,
            tags_json: row.try_get(o + 5)?,
            card_data_json: row.try_get(o + 6)?,
            card_warnings_json: row.try_get(o + 7)?,
            siblings_json: row.try_get(o + 8)?,
            used_storage: row.try_get(o + 9)?,
            safetensors_json: row.try_get(o + 10)?,
            params_total: row.try_get(o + 11)?,
            config_json: row.try_get(o + 12)?,
            downloads: row.try_get(o + 13)?,
            downloads_all_time: row.try_get(o + 14)?,
            likes: row.try_get(o + 15)?,
            trending_score: row.try_get(o + 16)?,
        })
    }
}

/// Which repositories a listing may show, decided by the caller's identity (the `trove`
/// crate derives it from the same rule as per-repository access).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Visibility {
    /// Public repositories only.
    Public,
    /// Public ones plus the private ones in these namespaces or with these ids.
    PublicAnd {
        namespaces: Vec<String>,
        repo_ids: Vec<i64>,
    },
    /// Everything (administrators).
    All,
}

/// The orders a listing can be sorted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SortKey {
    Downloads,
    Likes,
    LastModified,
    CreatedAt,
    TrendingScore,
}

impl SortKey {
    fn column(self) -> &'static str {
        match self {
            SortKey::Downloads => "ri.downloads",
            SortKey::Likes => "ri.likes",
            SortKey::LastModified => "ri.last_modified",
            SortKey::CreatedAt => "ri.created_at",
            SortKey::TrendingScore => "ri.trending_score",
        }
    }

    /// The SQLite index that holds `(repo_type, value, repo_id, private)` for this order.
    fn index(self) -> &'static str {
        match self {
            SortKey::Downloads => "repo_index_downloads",
            SortKey::Likes => "repo_index_likes",
            SortKey::LastModified => "repo_index_last_modified",
            SortKey::CreatedAt => "repo_index_created_at",
            SortKey::TrendingScore => "repo_index_trending",
        }
    }

    fn value(self, index: &RepoIndex, repo: &Repo) -> i64 {
        match self {
            SortKey::Downloads => index.downloads,
            SortKey::Likes => index.likes,
            SortKey::LastModified => index.last_modified_ms,
            SortKey::CreatedAt => repo.created_at_ms,
            SortKey::TrendingScore => index.trending_score,
        }
    }
}

/// Where the previous page ended: the sort value and repo id of its last row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cursor {
    pub value: i64,
    pub id: i64,
}

/// A listing request, already validated. Equal queries have equal answers on the same data.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ListQuery {
    pub repo_type: RepoType,
    /// `Some(true)`: gated repositories only; `Some(false)`: ungated only.
    pub gated: Option<bool>,
    pub visibility: Visibility,
    pub author: Option<String>,
    /// Each must be a substring of `namespace/name` (case-insensitive).
    pub search: Vec<String>,
    /// Each must be one of the repo's facets.
    pub tags: Vec<String>,
    pub params_min: Option<i64>,
    pub params_max: Option<i64>,
    /// When set, only these repositories (a short list the caller holds, such as the
    /// models loaded for inference: each is one probe of the listing index).
    pub only_ids: Option<Vec<i64>>,
    pub sort: SortKey,
    pub ascending: bool,
    pub after: Option<Cursor>,
    /// Rows to return (one more is read to know whether a next page exists).
    pub limit: u32,
    /// Whether each item's JSON documents are read: card data and warnings, file list,
    /// safetensors and config summaries. When `false` those [`RepoIndex`] fields are empty
    /// (`None`, `"[]"`) whatever the repository has.
    pub documents: bool,
}

/// One listed repository.
#[derive(Clone, Debug)]
pub struct Listed {
    pub repo: Repo,
    pub index: RepoIndex,
}

/// A page of a listing and where the next one starts, if there is one.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

/// Trigram search cannot match fewer than three characters; shorter queries scan.
const TRIGRAM: usize = 3;

/// Listing plans. A filter matching at most this many repositories (estimated from the
/// facet counts) is evaluated first, through the inverted indexes, and its rows sorted;
/// a broader one walks the sort index and checks each row, which reaches a page of
/// results after about `limit × total / matches` rows. Both cost a few milliseconds at
/// this crossing point with 100,000 repositories.
const DRIVE_BELOW: f64 = 3000.0;

/// What probing one candidate in `repo_index_listing` costs, in steps of a walk of a sort
/// index (each step: one index entry tested against the candidates, which SQLite keeps in
/// memory behind a Bloom filter). Measured at 100,000 repositories with a warm page cache:
/// ~0.38 µs a probe, ~0.054 µs a step.
const PROBE_STEPS: f64 = 7.0;

/// Whether the `estimate` repositories a selective filter matches (found through an inverted
/// index) are cheaper to put in order by walking the sort index, testing each entry against
/// them, than by probing each of them and sorting. The walk stops after `rows` matches, about
/// `rows × total / estimate` entries if the matches are spread evenly over the order; the
/// probes cost `estimate`. For the two rare tags of the benchmark (~760 of 80,000 models, a
/// page of 20): ~2,200 steps instead of ~760 probes and a sort. A small match set stays with
/// the probes: walking past the order for it could read the whole index.
fn walk_candidates(estimate: f64, total: f64, rows: u32) -> bool {
    estimate * estimate * PROBE_STEPS > f64::from(rows) * total
}

/// Search terms at least this long are assumed to be selective.
const LONG_SEARCH: usize = 7;

/// The FTS5 token of a facet: a 64-bit FNV-1a hash in hex, so any tag text (spaces,
/// punctuation, any script) is one bare token.
pub(crate) fn facet_token(tag: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in tag.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("f{hash:016x}")
}

fn facet_tokens(tags: &[String]) -> String {
    let mut tokens: Vec<String> = tags.iter().map(|t| facet_token(t)).collect();
    tokens.sort();
    tokens.dedup();
    tokens.join(" ")
}

/// Writes a repository's facets: its repo_tags rows and, on SQLite, its row of the
/// `repo_facets` inverted index (PostgreSQL filters on repo_tags alone).
async fn write_facets(conn: Conn<'_>, repo_id: i64, tags: &[String], replace: bool) -> Result<()> {
    let fts = matches!(conn, Conn::Sqlite(_));
    with_conn!(conn, conn => {
        if replace {
            sqlx::query("DELETE FROM repo_tags WHERE repo_id = $1")
                .bind(repo_id)
                .execute(&mut *conn)
                .await?;
            if fts {
                sqlx::query("DELETE FROM repo_facets WHERE rowid = $1")
                    .bind(repo_id)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        for tag in tags {
            sqlx::query("INSERT INTO repo_tags (tag, repo_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(tag)
                .bind(repo_id)
                .execute(&mut *conn)
                .await?;
        }
        if fts && !tags.is_empty() {
            sqlx::query("INSERT INTO repo_facets (rowid, f) VALUES ($1, $2)")
                .bind(repo_id)
                .bind(facet_tokens(tags))
                .execute(&mut *conn)
                .await?;
        }
    });
    Ok(())
}

/// A LIKE pattern matching any text that contains `text` (`\\`, `%` and `_` escaped with
/// `\\`, PostgreSQL's default LIKE escape).
fn like_substring(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// `"text"` as an FTS5 phrase: with the trigram tokenizer a phrase matches exactly the rows
/// that contain it as a substring, whatever characters it holds.
fn fts_phrase(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

impl Visibility {
    /// Public repositories and the private ones of one namespace.
    pub fn public_and_namespace(namespace: impl Into<String>) -> Visibility {
        Visibility::PublicAnd {
            namespaces: vec![namespace.into()],
            repo_ids: Vec::new(),
        }
    }
}

pub(crate) fn push_visibility<'a, DB>(qb: &mut QueryBuilder<'a, DB>, visibility: &Visibility)
where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    push_visibility_on(qb, "r.private", "r.id", visibility, |qb, namespaces| {
        qb.push("r.namespace IN (");
        push_bound_list(qb, namespaces.iter().cloned());
        qb.push(")");
    });
}

/// The visibility filter of a listing, on repo_index's copy of `private` (`ri`): a private
/// repository of an allowed namespace is found through the repos name index, so public ones
/// never need their repos row.
fn push_index_visibility<'a, DB>(
    qb: &mut QueryBuilder<'a, DB>,
    repo_type: RepoType,
    visibility: &Visibility,
) where
    DB: sqlx::Database,
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    push_visibility_on(
        qb,
        "ri.private",
        "ri.repo_id",
        visibility,
        |qb, namespaces| {
            qb.push("ri.repo_id IN (SELECT n.id FROM repos n WHERE n.repo_type = ");
            qb.push_bind(repo_type.as_str());
            qb.push(" AND n.namespace IN (");
            push_bound_list(qb, namespaces.iter().cloned());
            qb.push("))");
        },
    );
}

/// ` AND (<private> = FALSE OR <in an allowed namespace> OR <id> IN (…))` as the caller's
/// visibility allows; `namespace_match` writes the namespace condition for the table at hand.
fn push_visibility_on<'a, DB>(
    qb: &mut QueryBuilder<'a, DB>,
    private_column: &str,
    id_column: &str,
    visibility: &Visibility,
    namespace_match: impl FnOnce(&mut QueryBuilder<'a, DB>, &[String]),
) where
    DB: sqlx::Database,
    i64: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    match visibility {
        Visibility::Public => {
            qb.push(format!(" AND {private_column} = FALSE"));
        }
        Visibility::PublicAnd {
            namespaces,
            repo_ids,
        } => {
            qb.push(format!(" AND ({private_column} = FALSE"));
            if !namespaces.is_empty() {
                qb.push(" OR ");
                namespace_match(qb, namespaces);
            }
            if !repo_ids.is_empty() {
                qb.push(format!(" OR {id_column} IN ("));
                push_bound_list(qb, repo_ids.iter().copied());
                qb.push(")");
            }
            qb.push(")");
        }
        Visibility::All => {}
    }
}

/// Binds each value, separated by commas (the inside of an `IN (…)`).
fn push_bound_list<'a, DB, T>(qb: &mut QueryBuilder<'a, DB>, values: impl IntoIterator<Item = T>)
where
    DB: sqlx::Database,
    T: 'a + sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let mut list = qb.separated(", ");
    for value in values {
        list.push_bind(value);
    }
}

/// How many repositories carry each tag (0 for unknown tags), and how many of `repo_type`
/// exist: one statement, so both come from one snapshot and one round trip.
async fn facet_counts(
    conn: Conn<'_>,
    repo_type: RepoType,
    tags: &[String],
) -> Result<(Vec<i64>, i64)> {
    with_conn!(conn, conn => {
        let mut qb: QueryBuilder<'_, _> =
            QueryBuilder::new("SELECT tag, n FROM facet_counts WHERE tag IN (");
        push_bound_list(&mut qb, tags.iter().cloned());
        qb.push(") UNION ALL SELECT NULL, n FROM type_counts WHERE repo_type = ");
        qb.push_bind(repo_type.as_str());
        let rows = qb.build().fetch_all(&mut *conn).await?;
        let mut counts = vec![0; tags.len()];
        let mut total = 0;
        for row in &rows {
            let tag: Option<String> = row.try_get(0)?;
            let n: i64 = row.try_get(1)?;
            match tag {
                Some(tag) => {
                    if let Some(i) = tags.iter().position(|t| *t == tag) {
                        counts[i] = n;
                    }
                }
                None => total = n,
            }
        }
        Ok((counts, total))
    })
}

/// Whether `namespace` has fewer than [`DRIVE_BELOW`] repositories of `repo_type`.
async fn author_is_selective(conn: Conn<'_>, repo_type: RepoType, namespace: &str) -> Result<bool> {
    with_conn!(conn, conn => {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT 1 FROM repos WHERE repo_type = $1 AND namespace = $2 \
             LIMIT $3)",
        )
        .bind(repo_type.as_str())
        .bind(namespace)
        .bind(DRIVE_BELOW as i64)
        .fetch_one(&mut *conn)
        .await?;
        Ok((n as f64) < DRIVE_BELOW)
    })
}

/// Whether a substring search matches fewer than [`DRIVE_BELOW`] repositories (counting
/// stops there, so a common term costs no more than a rare one). Long terms are taken as
/// selective without counting: evaluating their many trigrams twice costs more than it
/// could save.
async fn search_is_selective(conn: Conn<'_>, text: &str) -> Result<bool> {
    if text.chars().count() >= LONG_SEARCH {
        return Ok(true);
    }
    with_conn!(conn, conn => {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT 1 FROM repo_search WHERE repo_search MATCH $1 LIMIT $2)",
        )
        .bind(fts_phrase(text))
        .bind(DRIVE_BELOW as i64)
        .fetch_one(&mut *conn)
        .await?;
        Ok((n as f64) < DRIVE_BELOW)
    })
}

impl Db {
    /// Writes what reindex found, replacing the previous card, file and tag data in one
    /// transaction. Counters are left alone. `false` if the repository no longer exists.
    pub async fn write_repo_index(&self, repo_id: i64, update: &IndexUpdate) -> Result<bool> {
        let _changing = self.changing_listings();
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let done = sqlx::query(
                "UPDATE repo_index SET sha = $1, last_modified = $2, pipeline_tag = $3, \
                 library_name = $4, sdk = $5, tags = $6, card_data = $7, card_warnings = $8, \
                 siblings = $9, used_storage = $10, safetensors = $11, params_total = $12, config = $13 \
                 WHERE repo_id = $14",
            )
            .bind(&update.sha)
            .bind(update.last_modified_ms)
            .bind(&update.pipeline_tag)
            .bind(&update.library_name)
            .bind(&update.sdk)
            .bind(&update.tags_json)
            .bind(&update.card_data_json)
            .bind(&update.card_warnings_json)
            .bind(&update.siblings_json)
            .bind(update.used_storage)
            .bind(&update.safetensors_json)
            .bind(update.params_total)
            .bind(&update.config_json)
            .bind(repo_id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            write_facets(Conn::from(&mut *tx), repo_id, &update.facets, true).await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// The stored parse of the README.md blob `blob_oid` of a repository, if any.
    pub async fn card_parse(&self, repo_id: i64, blob_oid: &str) -> Result<Option<CardParse>> {
        with_pool!(self, pool => {
            let row =
                sqlx::query("SELECT data, warning FROM card_parses WHERE repo_id = $1 AND blob_oid = $2")
                    .bind(repo_id)
                    .bind(blob_oid)
                    .fetch_optional(pool)
                    .await?;
            row.map(|row| {
                Ok(CardParse {
                    data_json: row.try_get(0)?,
                    warning: row.try_get(1)?,
                })
            })
            .transpose()
        })
    }

    /// Stores the parse of a README.md blob; a blob's content never changes, so a row
    /// already there is kept. Nothing is stored for a repository that no longer exists.
    pub async fn save_card_parse(
        &self,
        repo_id: i64,
        blob_oid: &str,
        parse: &CardParse,
    ) -> Result<()> {
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO card_parses (repo_id, blob_oid, data, warning) \
                 SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM repos WHERE id = $5) \
                 ON CONFLICT (repo_id, blob_oid) DO NOTHING",
            )
            .bind(repo_id)
            .bind(blob_oid)
            .bind(&parse.data_json)
            .bind(&parse.warning)
            .bind(repo_id)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The index row of a repository (every repository has one).
    pub async fn repo_index(&self, repo_id: i64) -> Result<Option<RepoIndex>> {
        with_pool!(self, pool => {
            let sql = format!("SELECT {INDEX_COLUMNS} FROM repo_index ri WHERE ri.repo_id = $1");
            let row = sqlx::query(&sql)
                .bind(repo_id)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(|r| RepoIndex::from_row(r, 0)).transpose()
        })
    }

    /// Up to `limit` repositories with an id above `after_id` whose card and files were
    /// never indexed, by id.
    pub async fn repos_never_indexed(&self, after_id: i64, limit: u32) -> Result<Vec<Repo>> {
        with_pool!(self, pool => {
            let sql = format!(
                "SELECT {REPO_COLUMNS_R} FROM repo_index ri JOIN repos r ON r.id = ri.repo_id \
                 WHERE ri.sha IS NULL AND ri.repo_id > $1 ORDER BY ri.repo_id LIMIT $2"
            );
            let rows = sqlx::query(&sql)
                .bind(after_id)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            rows.iter().map(|r| Repo::from_row_at(r, 0)).collect()
        })
    }

    /// Every repository with an id above `after_id`, by id, `limit` at a time (for a full
    /// reindex).
    pub async fn repos_after(&self, after_id: i64, limit: u32) -> Result<Vec<Repo>> {
        with_pool!(self, pool => {
            let sql =
                format!("SELECT {REPO_COLUMNS_R} FROM repos r WHERE r.id > $1 ORDER BY r.id LIMIT $2");
            let rows = sqlx::query(&sql)
                .bind(after_id)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            rows.iter().map(|r| Repo::from_row_at(r, 0)).collect()
        })
    }

    /// One page of a listing, in the requested order with the repo id breaking ties.
    ///
    /// Selective filters (few matching repositories, by the facet counts; rare search terms)
    /// are evaluated first through the inverted indexes and their rows sorted; broad ones are
    /// checked row by row while walking the sort order's index, which stops after one page.
    pub async fn list_repos(&self, q: &ListQuery) -> Result<Page<Listed>> {
        with_pool!(self, pool => {
            // Every statement of the page on one connection: a pooled SQLite connection costs
            // a round trip to its thread on release, once instead of once per statement.
            let mut conn = pool.acquire().await?;
            let empty = Page {
                items: Vec::new(),
                next: None,
            };
            if q.only_ids.as_ref().is_some_and(Vec::is_empty) {
                return Ok(empty);
            }
            let mut tags = q.tags.clone();
            tags.sort();
            tags.dedup();
            let mut drive_facets = false;
            let mut walk_facets = false;
            if !tags.is_empty() {
                let (counts, total) = facet_counts(Conn::from(&mut *conn), q.repo_type, &tags).await?;
                if counts.iter().any(|&n| n <= 0) || total <= 0 {
                    return Ok(empty);
                }
                let total = total as f64;
                let estimate = counts
                    .iter()
                    .fold(total, |acc, &n| acc * (n as f64 / total));
                drive_facets = estimate < DRIVE_BELOW;
                walk_facets = walk_candidates(estimate, total, q.limit.saturating_add(1));
                // Most selective first, so a walked row is rejected by its first check.
                let mut by_count: Vec<(i64, String)> = counts.into_iter().zip(tags).collect();
                by_count.sort();
                tags = by_count.into_iter().map(|(_, t)| t).collect();
            }
            // SQLite's plans are chosen here; PostgreSQL's planner chooses from its statistics.
            let backend = self.backend();
            drive_facets &= backend == Backend::Sqlite;
            let mut drive_search = Vec::with_capacity(q.search.len());
            for text in &q.search {
                drive_search.push(
                    backend == Backend::Sqlite
                        && text.chars().count() >= TRIGRAM
                        && search_is_selective(Conn::from(&mut *conn), text).await?,
                );
            }

            // The author's size decides between its index and the sort walk (SQLite only).
            let author_drives = match &q.author {
                Some(author) if backend == Backend::Sqlite => {
                    author_is_selective(Conn::from(&mut *conn), q.repo_type, author).await?
                }
                _ => false,
            };
            let search_drives = drive_search.iter().any(|&d| d);
            // repos is joined only when a condition reads it (an author, a gate, a search term
            // matched against the name): visibility, type and the sort values are all in
            // repo_index's narrow indexes.
            let join_repos =
                q.author.is_some() || q.gated.is_some() || drive_search.iter().any(|&d| !d);
            // On SQLite the plan is named, not left to statistics that may predate an index:
            // candidates found by id (facets, search terms, an author's repositories) are
            // checked in repo_index_listing, one probe each, unless facets match enough of
            // them that walking the sort order is cheaper (`walk_candidates`); otherwise the
            // sort order's index is walked, and it carries `private` too.
            let probe_facets = drive_facets && !walk_facets;
            let from = match backend {
                Backend::Postgres => "repo_index ri".to_owned(),
                Backend::Sqlite
                    if probe_facets || search_drives || author_drives || q.only_ids.is_some() =>
                {
                    "repo_index ri INDEXED BY repo_index_listing".to_owned()
                }
                Backend::Sqlite => format!("repo_index ri INDEXED BY {}", q.sort.index()),
            };
            let index_columns = if q.documents {
                INDEX_COLUMNS
            } else {
                INDEX_COLUMNS_NO_DOCUMENTS
            };
            let mut qb: QueryBuilder<'_, _> = QueryBuilder::new(format!(
                "SELECT {REPO_COLUMNS_R}, {index_columns} FROM (SELECT ri.repo_id AS id, {} AS v \
                 FROM {from}{} WHERE ri.repo_type = ",
                q.sort.column(),
                if join_repos {
                    " JOIN repos r ON r.id = ri.repo_id"
                } else {
                    ""
                },
            ));
            qb.push_bind(q.repo_type.as_str());
            push_index_visibility(&mut qb, q.repo_type, &q.visibility);
            if let Some(ids) = &q.only_ids {
                qb.push(" AND ri.repo_id IN (");
                let mut list = qb.separated(", ");
                for id in ids {
                    list.push_bind(*id);
                }
                qb.push(")");
            }
            if let Some(author) = &q.author {
                // `r.repo_type` lets the (repo_type, namespace, name) index find a small author's
                // repos; for a prolific one, `+` keeps that index out and the sort index walks.
                if backend == Backend::Postgres {
                    qb.push(" AND r.namespace = ");
                } else if author_drives {
                    qb.push(" AND r.repo_type = ");
                    qb.push_bind(q.repo_type.as_str());
                    qb.push(" AND r.namespace = ");
                } else {
                    qb.push(" AND +r.namespace = ");
                }
                qb.push_bind(author.clone());
            }
            for (text, drive) in q.search.iter().zip(drive_search) {
                if backend == Backend::Postgres {
                    // The expression of the `repos_search` trigram index (0004 migration).
                    qb.push(" AND lower((r.namespace || '/' || r.name) COLLATE \"C\") LIKE ");
                    qb.push_bind(like_substring(&text.to_lowercase()));
                } else if drive {
                    qb.push(
                        " AND ri.repo_id IN (SELECT rowid FROM repo_search WHERE repo_search MATCH ",
                    );
                    qb.push_bind(fts_phrase(text));
                    qb.push(")");
                } else {
                    // Repo ids are ASCII, so ASCII lower() folds them as the trigram index does.
                    qb.push(" AND instr(lower(r.namespace || '/' || r.name), ");
                    qb.push_bind(text.to_lowercase());
                    qb.push(") > 0");
                }
            }
            if drive_facets {
                qb.push(" AND ri.repo_id IN (SELECT rowid FROM repo_facets WHERE repo_facets MATCH ");
                qb.push_bind(
                    tags.iter()
                        .map(|t| facet_token(t))
                        .collect::<Vec<_>>()
                        .join(" AND "),
                );
                qb.push(")");
            } else {
                for tag in &tags {
                    qb.push(" AND EXISTS (SELECT 1 FROM repo_tags t WHERE t.tag = ");
                    qb.push_bind(tag.clone());
                    qb.push(" AND t.repo_id = ri.repo_id)");
                }
            }
            match q.gated {
                Some(true) => {
                    qb.push(" AND r.gated <> 'off'");
                }
                Some(false) => {
                    qb.push(" AND r.gated = 'off'");
                }
                None => {}
            }
            if let Some(min) = q.params_min {
                qb.push(" AND ri.params_total >= ");
                qb.push_bind(min);
            }
            if let Some(max) = q.params_max {
                qb.push(" AND ri.params_total <= ");
                qb.push_bind(max);
            }
            let column = q.sort.column();
            let (cmp, dir) = if q.ascending {
                (">", "ASC")
            } else {
                ("<", "DESC")
            };
            if let Some(after) = q.after {
                qb.push(format!(" AND ({column}, ri.repo_id) {cmp} ("));
                qb.push_bind(after.value);
                qb.push(", ");
                qb.push_bind(after.id);
                qb.push(")");
            }
            qb.push(format!(" ORDER BY {column} {dir}, ri.repo_id {dir} LIMIT "));
            qb.push_bind(i64::from(q.limit) + 1);
            // The page's ids are chosen first, and only their rows read in full: sorting
            // thousands of candidates never carries their card JSON along.
            qb.push(format!(
                ") page JOIN repo_index ri ON ri.repo_id = page.id JOIN repos r ON r.id = page.id \
                 ORDER BY page.v {dir}, page.id {dir}"
            ));
            let rows = qb.build().fetch_all(&mut *conn).await?;
            let mut items = rows
                .iter()
                .map(|row| {
                    Ok(Listed {
                        repo: Repo::from_row_at(row, 0)?,
                        index: RepoIndex::from_row(row, REPO_COLUMN_COUNT)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let next = if items.len() > q.limit as usize {
                items.truncate(q.limit as usize);
                items.last().map(|l| Cursor {
                    value: q.sort.value(&l.index, &l.repo),
                    id: l.repo.id,
                })
            } else {
                None
            };
            Ok(Page { items, next })
        })
    }

    /// Counts one download of a repository on unix day `day`.
    pub async fn count_download(&self, repo_id: i64, day: i64) -> Result<()> {
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO repo_downloads (repo_id, day, count) VALUES ($1, $2, 1) \
                 ON CONFLICT (repo_id, day) DO UPDATE SET count = repo_downloads.count + 1",
            )
            .bind(repo_id)
            .bind(day)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE repo_index SET downloads = downloads + 1, \
                 downloads_all_time = downloads_all_time + 1, trending_score = trending_score + 1 \
                 WHERE repo_id = $1",
            )
            .bind(repo_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Recomputes the rolling counters (downloads of the last 30 days, trending score = the
    /// downloads and likes of the last 7) for `today` (unix day). Idempotent; returns how many
    /// repositories changed.
    pub async fn refresh_rolling_counters(&self, today: i64) -> Result<u64> {
        let _changing = self.changing_listings();
        with_pool!(self, pool => {
            let week_ago_ms = (today - 6) * 86_400_000;
            let done = sqlx::query(
                "WITH fresh AS ( \
                   SELECT ri.repo_id AS repo_id, \
                     CAST(COALESCE((SELECT SUM(d.count) FROM repo_downloads d \
                               WHERE d.repo_id = ri.repo_id AND d.day > $1 - 30), 0) AS BIGINT) AS downloads, \
                     CAST(COALESCE((SELECT SUM(d.count) FROM repo_downloads d \
                               WHERE d.repo_id = ri.repo_id AND d.day > $2 - 7), 0) AS BIGINT) \
                     + (SELECT COUNT(*) FROM likes l \
                        WHERE l.repo_id = ri.repo_id AND l.created_at >= $3) AS trending \
                   FROM repo_index ri \
                   WHERE ri.downloads > 0 OR ri.trending_score > 0 \
                      OR ri.repo_id IN (SELECT repo_id FROM repo_downloads WHERE day > $4 - 30) \
                      OR ri.repo_id IN (SELECT repo_id FROM likes WHERE created_at >= $5)) \
                 UPDATE repo_index SET downloads = fresh.downloads, trending_score = fresh.trending \
                 FROM fresh WHERE repo_index.repo_id = fresh.repo_id \
                   AND (repo_index.downloads != fresh.downloads \
                        OR repo_index.trending_score != fresh.trending)",
            )
            .bind(today)
            .bind(today)
            .bind(week_ago_ms)
            .bind(today)
            .bind(week_ago_ms)
            .execute(pool)
            .await?;
            Ok(done.rows_affected())
        })
    }

    /// Merges the segments of both full-text indexes into one each, after a bulk import
    /// (incremental writes rely on FTS5's automatic merging). Holds the write lock while it
    /// runs: seconds for 100,000 repositories.
    ///
    /// On PostgreSQL, the trigram index's pending list (GIN's fast-update buffer) is merged
    /// into the index instead.
    pub async fn compact_search_index(&self) -> Result<()> {
        match &self.pool {
            Pool::Sqlite(pool) => {
                sqlx::query("INSERT INTO repo_facets (repo_facets) VALUES ('optimize')")
                    .execute(pool)
                    .await?;
                sqlx::query("INSERT INTO repo_search (repo_search) VALUES ('optimize')")
                    .execute(pool)
                    .await?;
            }
            Pool::Postgres(pool) => {
                sqlx::query("SELECT gin_clean_pending_list('repos_search'::regclass)")
                    .execute(pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Refreshes the query planner's statistics (cheap; worth it after large imports).
    pub async fn optimize(&self) -> Result<()> {
        match &self.pool {
            Pool::Sqlite(pool) => {
                sqlx::query("PRAGMA optimize").execute(pool).await?;
            }
            Pool::Postgres(pool) => {
                // A bare ANALYZE also visits the shared catalogs, which only a superuser may
                // analyze (one notice each); Trove's role analyzes the tables of its schema.
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = current_schema()",
                )
                .fetch_all(pool)
                .await?;
                if !tables.is_empty() {
                    sqlx::query(&format!("ANALYZE {}", tables.join(", ")))
                        .execute(pool)
                        .await?;
                }
            }
        }
        Ok(())
    }
}

/// One repository of a bulk import: created and indexed in the same transaction.
#[derive(Clone, Debug)]
pub struct BulkRepo {
    pub repo_type: RepoType,
    pub namespace: String,
    pub name: String,
    pub private: bool,
    pub created_at_ms: i64,
    pub index: IndexUpdate,
    pub downloads: i64,
    pub downloads_all_time: i64,
    pub likes: i64,
}

impl Db {
    /// Creates and indexes many repositories in one transaction, without git repositories:
    /// for seeding benchmarks of listing and search. Downloads are recorded as yesterday's so
    /// that the rolling counters keep them.
    pub async fn bulk_import_indexed(
        &self,
        owner_user_id: i64,
        today: i64,
        repos: &[BulkRepo],
    ) -> Result<()> {
        let _changing = self.changing_listings();
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            for b in repos {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO repos \
                     (repo_type, namespace, name, private, owner_user_id, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                )
                .bind(b.repo_type.as_str())
                .bind(&b.namespace)
                .bind(&b.name)
                .bind(b.private)
                .bind(owner_user_id)
                .bind(b.created_at_ms)
                .bind(b.created_at_ms)
                .fetch_one(&mut *tx)
                .await?;
                let u = &b.index;
                sqlx::query(
                    "UPDATE repo_index SET sha = $1, last_modified = $2, pipeline_tag = $3, \
                     library_name = $4, sdk = $5, tags = $6, card_data = $7, card_warnings = $8, \
                     siblings = $9, used_storage = $10, safetensors = $11, params_total = $12, config = $13, \
                     downloads = $14, downloads_all_time = $15, likes = $16, trending_score = $17 \
                     WHERE repo_id = $18",
                )
                .bind(&u.sha)
                .bind(u.last_modified_ms)
                .bind(&u.pipeline_tag)
                .bind(&u.library_name)
                .bind(&u.sdk)
                .bind(&u.tags_json)
                .bind(&u.card_data_json)
                .bind(&u.card_warnings_json)
                .bind(&u.siblings_json)
                .bind(u.used_storage)
                .bind(&u.safetensors_json)
                .bind(u.params_total)
                .bind(&u.config_json)
                .bind(b.downloads)
                .bind(b.downloads_all_time)
                .bind(b.likes)
                .bind(b.downloads)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                if b.downloads > 0 {
                    sqlx::query("INSERT INTO repo_downloads (repo_id, day, count) VALUES ($1, $2, $3)")
                        .bind(id)
                        .bind(today - 1)
                        .bind(b.downloads)
                        .execute(&mut *tx)
                        .await?;
                }
                write_facets(Conn::from(&mut *tx), id, &u.facets, false).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_match_set_is_walked_in_order_only_when_it_is_large_for_its_page() {
        // The benchmark's two rare tags: ~760 of ~80,000 models, a page of 20 (21 rows read).
        assert!(walk_candidates(763.0, 79_814.0, 21));
        // Three tags ANDed, ~150 matches: probing them is cheaper than walking 11,000 entries.
        assert!(!walk_candidates(150.0, 79_814.0, 21));
        // The largest page (1,000) is never walked for a selective filter.
        assert!(!walk_candidates(DRIVE_BELOW, 79_814.0, 1_001));
    }
}
