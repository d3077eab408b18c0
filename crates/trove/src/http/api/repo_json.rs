//! The repository object of the Hub API — what `model_info` / `dataset_info` /
//! `space_info` and the listings return — as one type whose properties are all optional:
//! a property is present when the repository has a value for it and the request asked for
//! it (`expand`, `full`, `cardData`…), absent otherwise (never `null` in its place).

use serde::Serialize;
use serde_json::Value;
use trove_db::Gating;

/// `{"name": "ns/name", "type": "model"}`, as discussions and likes name a repository.
#[derive(Serialize)]
pub struct RepoName {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// `gated`: `false`, `"auto"` or `"manual"`.
#[derive(Serialize)]
#[serde(untagged)]
pub enum GatedJson {
    Off(bool),
    On(&'static str),
}

impl From<Gating> for GatedJson {
    fn from(gating: Gating) -> Self {
        gating
            .hub_value()
            .map_or(GatedJson::Off(false), GatedJson::On)
    }
}

/// A file of the repository; `size`, `blobId` and `lfs` only with `blobs=true`.
#[derive(Serialize)]
pub struct Sibling {
    pub rfilename: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(rename = "blobId", skip_serializing_if = "Option::is_none")]
    pub blob_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lfs: Option<SiblingLfs>,
}

impl Sibling {
    pub fn name_only(rfilename: String) -> Self {
        Sibling {
            rfilename,
            size: None,
            blob_id: None,
            lfs: None,
        }
    }
}

#[derive(Serialize)]
pub struct SiblingLfs {
    pub sha256: String,
    pub size: u64,
    #[serde(rename = "pointerSize")]
    pub pointer_size: u64,
}

/// A Space's runtime: its stage, and why it is not running.
#[derive(Serialize)]
pub struct Runtime {
    pub stage: &'static str,
    pub hardware: Hardware,
    /// Seconds of idleness before the app sleeps (`sleep_time` in the client).
    #[serde(rename = "gcTimeout", skip_serializing_if = "Option::is_none")]
    pub gc_timeout: Option<i64>,
    #[serde(rename = "errorMessage", skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
}

#[derive(Serialize)]
pub struct Hardware {
    pub current: Option<String>,
    pub requested: Option<String>,
}

impl Runtime {
    /// The runtime of a Space as the supervisor sees it now, as `space_info` and the
    /// runtime endpoints return it.
    pub fn current(spaces: &crate::spaces::Supervisor, repo_id: i64) -> Self {
        match spaces.runtime(repo_id) {
            Some(view) => Runtime::of(&view),
            None => Runtime::no_app(),
        }
    }

    pub fn no_app() -> Self {
        Runtime {
            stage: "NO_APP_FILE",
            hardware: Hardware {
                current: None,
                requested: None,
            },
            gc_timeout: None,
            error_message: None,
        }
    }

    /// What the Spaces supervisor reports.
    pub fn of(view: &crate::spaces::RuntimeView) -> Self {
        Runtime {
            stage: view.stage.as_str(),
            gc_timeout: view.sleep_time_secs,
            error_message: view.message.clone(),
            ..Runtime::no_app()
        }
    }
}

/// The repository object. `_id` and `id` are always present.
#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RepoJson {
    #[serde(rename = "_id")]
    pub object_id: String,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gated: Option<GatedJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downloads: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downloads_all_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub likes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trending_score: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Value>,
    #[serde(rename = "library_name", skip_serializing_if = "Option::is_none")]
    pub library_name: Option<String>,
    #[serde(rename = "pipeline_tag", skip_serializing_if = "Option::is_none")]
    pub pipeline_tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sdk: Option<String>,
    /// A Space's app URL, as `gradio_client` finds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subdomain: Option<String>,
    #[serde(rename = "model-index", skip_serializing_if = "Option::is_none")]
    pub model_index: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card_data: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safetensors: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<Runtime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card_warnings: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub siblings: Option<Vec<Sibling>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_storage: Option<u64>,
    /// Models: `warm` when the hub has the model loaded for inference, else `cold`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inference: Option<&'static str>,
}

/// Clears `field` unless `keep` accepts its wire name.
fn keep_if<T>(field: &mut Option<T>, name: &str, keep: &impl Fn(&str) -> bool) {
    if !keep(name) {
        *field = None;
    }
}

impl RepoJson {
    /// Keeps `_id`, `id` and the properties whose wire name `keep` accepts.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        keep_if(&mut self.author, "author", &keep);
        keep_if(&mut self.sha, "sha", &keep);
        keep_if(&mut self.last_modified, "lastModified", &keep);
        keep_if(&mut self.created_at, "createdAt", &keep);
        keep_if(&mut self.private, "private", &keep);
        keep_if(&mut self.gated, "gated", &keep);
        keep_if(&mut self.disabled, "disabled", &keep);
        keep_if(&mut self.downloads, "downloads", &keep);
        keep_if(&mut self.downloads_all_time, "downloadsAllTime", &keep);
        keep_if(&mut self.likes, "likes", &keep);
        keep_if(&mut self.trending_score, "trendingScore", &keep);
        keep_if(&mut self.tags, "tags", &keep);
        keep_if(&mut self.library_name, "library_name", &keep);
        keep_if(&mut self.pipeline_tag, "pipeline_tag", &keep);
        keep_if(&mut self.sdk, "sdk", &keep);
        keep_if(&mut self.host, "host", &keep);
        keep_if(&mut self.subdomain, "subdomain", &keep);
        keep_if(&mut self.model_index, "model-index", &keep);
        keep_if(&mut self.card_data, "cardData", &keep);
        keep_if(&mut self.safetensors, "safetensors", &keep);
        keep_if(&mut self.config, "config", &keep);
        keep_if(&mut self.runtime, "runtime", &keep);
        keep_if(&mut self.card_warnings, "cardWarnings", &keep);
        keep_if(&mut self.siblings, "siblings", &keep);
        keep_if(&mut self.used_storage, "usedStorage", &keep);
        keep_if(&mut self.inference, "inference", &keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retain_keeps_the_ids_and_the_named_properties() {
        let mut repo = RepoJson {
            object_id: "1".into(),
            id: "a/b".into(),
            author: Some("a".into()),
            likes: Some(3),
            model_index: Some(Value::Null),
            ..RepoJson::default()
        };
        repo.retain(|p| p == "likes" || p == "model-index");
        let json = serde_json::to_value(&repo).expect("serializable");
        assert_eq!(
            json,
            serde_json::json!({"_id": "1", "id": "a/b", "likes": 3, "model-index": null})
        );
    }
}
