//! The facets of the browsing pages — which filters each repo type offers, and their values
//! among public repositories — kept for a minute so a page view costs no aggregate queries.

use crate::error::ApiResult;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use trove_db::Db;
use trove_db::FacetSource;
use trove_types::RepoType;

/// How long computed facet values are served before being recomputed.
const TTL: Duration = Duration::from_secs(60);
/// Values shown per facet.
const VALUES_PER_FACET: u32 = 24;

/// How choosing a facet value filters the listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterParam {
    /// `pipeline_tag=<value>`.
    PipelineTag,
    /// `filter=<value>`: the value is a tag.
    Tag,
}

/// One facet of a repo type's browsing page.
#[derive(Clone, Copy, Debug)]
pub struct Facet {
    pub title: &'static str,
    pub source: FacetSource,
    pub param: FilterParam,
}

/// The facets offered for a repo type, in display order.
pub fn facets_of(repo_type: RepoType) -> &'static [Facet] {
    const fn tag(title: &'static str, source: FacetSource) -> Facet {
        Facet {
            title,
            source,
            param: FilterParam::Tag,
        }
    }
    const MODELS: &[Facet] = &[
        Facet {
            title: "Tasks",
            source: FacetSource::PipelineTag,
            param: FilterParam::PipelineTag,
        },
        tag("Libraries", FacetSource::LibraryName),
        tag("Languages", FacetSource::CardLanguage),
        tag("Licenses", FacetSource::TagPrefix("license:")),
    ];
    const DATASETS: &[Facet] = &[
        tag("Tasks", FacetSource::TagPrefix("task_categories:")),
        tag("Sizes", FacetSource::TagPrefix("size_categories:")),
        tag("Languages", FacetSource::TagPrefix("language:")),
        tag("Licenses", FacetSource::TagPrefix("license:")),
        tag("Formats", FacetSource::TagPrefix("format:")),
    ];
    const SPACES: &[Facet] = &[
        tag("SDKs", FacetSource::Sdk),
        tag("Licenses", FacetSource::TagPrefix("license:")),
    ];
    match repo_type {
        RepoType::Model => MODELS,
        RepoType::Dataset => DATASETS,
        RepoType::Space => SPACES,
    }
}

/// A facet with its current values: `(value, public repositories having it)`.
#[derive(Clone, Debug)]
pub struct FacetValues {
    pub facet: Facet,
    pub values: Vec<(String, i64)>,
}

/// The facets of one repo type with their values, and when they were computed.
type Computed = (Instant, Arc<Vec<FacetValues>>);

/// Facet values per repo type.
#[derive(Default)]
pub struct FacetCache {
    entries: Mutex<HashMap<RepoType, Computed>>,
}

impl FacetCache {
    /// The facets of `repo_type` with their values, recomputed when older than [`TTL`].
    /// Concurrent misses may both compute; the last one stored wins, which is harmless.
    pub async fn get(&self, db: &Db, repo_type: RepoType) -> ApiResult<Arc<Vec<FacetValues>>> {
        if let Some(fresh) = self.fresh(repo_type) {
            return Ok(fresh);
        }
        let mut computed = Vec::new();
        for facet in facets_of(repo_type) {
            let values = db
                .facet_values(repo_type, facet.source, VALUES_PER_FACET)
                .await?;
            computed.push(FacetValues {
                facet: *facet,
                values,
            });
        }
        let computed = Arc::new(computed);
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(repo_type, (Instant::now(), computed.clone()));
        }
        Ok(computed)
    }

    fn fresh(&self, repo_type: RepoType) -> Option<Arc<Vec<FacetValues>>> {
        let entries = self.entries.lock().ok()?;
        let (at, values) = entries.get(&repo_type)?;
        (at.elapsed() < TTL).then(|| values.clone())
    }
}

/// The label of a value: tags with a prefix (`license:mit`) show without it.
pub fn label(facet: &Facet, value: &str) -> String {
    match facet.source {
        FacetSource::TagPrefix(prefix) => value.strip_prefix(prefix).unwrap_or(value).to_owned(),
        _ => value.to_owned(),
    }
}
