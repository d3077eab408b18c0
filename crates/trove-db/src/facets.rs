//! The values of one facet (task, library, language, license…) among the public repositories
//! of a type, most common first, with how many repositories have each: what a browsing page
//! offers as filters. Private repositories are never counted, so the values and numbers say
//! nothing about them.

use crate::backend::{Backend, with_pool};
use crate::db::Db;
use crate::error::Result;
use trove_types::RepoType;

/// Where a facet's values come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FacetSource {
    /// A model's pipeline tag (`repo_index.pipeline_tag`).
    PipelineTag,
    /// A model's library (`repo_index.library_name`).
    LibraryName,
    /// A Space's SDK (`repo_index.sdk`).
    Sdk,
    /// The card's `language` list (models keep languages as bare tags).
    CardLanguage,
    /// Derived tags with this prefix, e.g. `license:`; values are whole tags.
    TagPrefix(&'static str),
}

impl Db {
    /// Up to `limit` values of `source` among public repositories of `repo_type`, by how
    /// many repositories have them (ties by value).
    pub async fn facet_values(
        &self,
        repo_type: RepoType,
        source: FacetSource,
        limit: u32,
    ) -> Result<Vec<(String, i64)>> {
        with_pool!(self, pool => {
            let public = "JOIN repos r ON r.id = ri.repo_id AND r.private = FALSE \
                          WHERE ri.repo_type = $1";
            let sql = match source {
                FacetSource::PipelineTag => format!(
                    "SELECT ri.pipeline_tag, count(*) FROM repo_index ri {public} \
                     AND ri.pipeline_tag IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $2"
                ),
                FacetSource::LibraryName => format!(
                    "SELECT ri.library_name, count(*) FROM repo_index ri {public} \
                     AND ri.library_name IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $2"
                ),
                FacetSource::Sdk => format!(
                    "SELECT ri.sdk, count(*) FROM repo_index ri {public} \
                     AND ri.sdk IS NOT NULL GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $2"
                ),
                FacetSource::CardLanguage if self.backend() == Backend::Postgres => format!(
                    "SELECT l #>> '{{}}', count(DISTINCT ri.repo_id) FROM repo_index ri \
                     CROSS JOIN LATERAL jsonb_array_elements( \
                         CASE WHEN jsonb_typeof(ri.card_data::jsonb -> 'language') = 'array' \
                         THEN ri.card_data::jsonb -> 'language' \
                         ELSE jsonb_build_array(ri.card_data::jsonb -> 'language') END) l \
                     {public} AND ri.card_data IS NOT NULL \
                     AND jsonb_typeof(l) = 'string' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $2"
                ),
                FacetSource::CardLanguage => format!(
                    "SELECT l.value, count(DISTINCT ri.repo_id) FROM repo_index ri \
                     JOIN json_each(CASE WHEN json_type(ri.card_data, '$.language') = 'array' \
                         THEN json_extract(ri.card_data, '$.language') \
                         ELSE json_array(json_extract(ri.card_data, '$.language')) END) l \
                     {public} AND ri.card_data IS NOT NULL AND json_valid(ri.card_data) \
                     AND l.type = 'text' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $2"
                ),
                FacetSource::TagPrefix(_) => format!(
                    "SELECT t.tag, count(*) FROM repo_tags t \
                     JOIN repo_index ri ON ri.repo_id = t.repo_id {public} \
                     AND t.tag >= $2 AND t.tag < $3 GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $4"
                ),
            };
            let mut query = sqlx::query_as::<_, (String, i64)>(&sql).bind(repo_type.as_str());
            if let FacetSource::TagPrefix(prefix) = source {
                // A prefix range uses the tag index; LIKE would not (and would treat `_` as a
                // wildcard).
                query = query.bind(prefix).bind(prefix_end(prefix));
            }
            Ok(query.bind(i64::from(limit)).fetch_all(pool).await?)
        })
    }
}

/// The smallest string greater than every string starting with `prefix` (prefixes here are
/// ASCII and end with `:`).
fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.to_owned();
    match end.pop() {
        Some(last) => end.push(char::from_u32(last as u32 + 1).unwrap_or(char::MAX)),
        None => end.push(char::MAX),
    }
    end
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_ranges_end_after_the_prefix() {
        assert_eq!(prefix_end("license:"), "license;");
        assert!("license:mit" < prefix_end("license:").as_str());
        assert!("licensed" > prefix_end("license:").as_str());
    }
}
