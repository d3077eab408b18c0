//! Safetensors metadata: parameter counts per dtype, read from the headers of
//! `model.safetensors` or of the shards named by `model.safetensors.index.json`, with range
//! reads (a header is the first `8 + n` bytes of the file, whatever its size).

use super::RepoRef;
use super::content::read_range;
use crate::context::Context;
use crate::error::ApiResult;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use trove_git::{Entry, EntryKind};

pub const SINGLE_FILE: &str = "model.safetensors";
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// Headers larger than this are refused (the format allows 100 MB; real ones are KiBs to a
/// few MiB even for the largest models).
const MAX_HEADER: u64 = 16 << 20;
/// Index files larger than this are refused.
const MAX_INDEX: u64 = 32 << 20;
/// More shards than this are refused.
const MAX_SHARDS: usize = 4096;

/// The Hub's `safetensors` field of model info.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub parameters: BTreeMap<String, u64>,
    pub total: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("{path}: the file is shorter than its header")]
    Truncated { path: String },
    #[error("{path}: the header is {len} bytes, more than the 16 MiB we read")]
    TooLarge { path: String, len: u64 },
    #[error("{path}: the header is not valid JSON: {detail}")]
    Json { path: String, detail: String },
    #[error("{path}: tensor {tensor:?} has no valid dtype and shape")]
    Tensor { path: String, tensor: String },
    #[error("{path}: the parameter count overflows")]
    Overflow { path: String },
    #[error("{INDEX_FILE}: {0}")]
    Index(String),
    #[error("{path}: the file named by the index is missing")]
    MissingShard { path: String },
    #[error("{path}: its content is not stored on this server")]
    Unavailable { path: String },
}

/// Counts parameters per dtype in a parsed header (`__metadata__` is skipped).
pub fn count_parameters(path: &str, header: &Map<String, Value>) -> Result<Summary, HeaderError> {
    let mut summary = Summary::default();
    for (name, tensor) in header {
        if name == "__metadata__" {
            continue;
        }
        let bad = || HeaderError::Tensor {
            path: path.to_owned(),
            tensor: name.clone(),
        };
        let dtype = tensor
            .get("dtype")
            .and_then(Value::as_str)
            .ok_or_else(bad)?;
        let shape = tensor
            .get("shape")
            .and_then(Value::as_array)
            .ok_or_else(bad)?;
        let mut count: u64 = 1;
        for dim in shape {
            let dim = dim.as_u64().ok_or_else(bad)?;
            count = count
                .checked_mul(dim)
                .ok_or_else(|| HeaderError::Overflow {
                    path: path.to_owned(),
                })?;
        }
        add(&mut summary, dtype, count, path)?;
    }
    Ok(summary)
}

fn add(summary: &mut Summary, dtype: &str, count: u64, path: &str) -> Result<(), HeaderError> {
    let overflow = || HeaderError::Overflow {
        path: path.to_owned(),
    };
    let slot = summary.parameters.entry(dtype.to_owned()).or_insert(0);
    *slot = slot.checked_add(count).ok_or_else(overflow)?;
    summary.total = summary.total.checked_add(count).ok_or_else(overflow)?;
    Ok(())
}

/// The shard paths an index names (`weight_map` values), relative to the repository root.
pub fn shards_of_index(index: &Value) -> Result<BTreeSet<String>, HeaderError> {
    let map = index
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| HeaderError::Index("no `weight_map` object".into()))?;
    let shards: BTreeSet<String> = map
        .values()
        .map(|v| v.as_str().map(str::to_owned))
        .collect::<Option<_>>()
        .ok_or_else(|| HeaderError::Index("`weight_map` values must be file names".into()))?;
    if shards.len() > MAX_SHARDS {
        return Err(HeaderError::Index(format!("more than {MAX_SHARDS} shards")));
    }
    Ok(shards)
}

/// Reads and parses the header of one safetensors file.
pub async fn read_header(
    state: &Context,
    repo: &RepoRef,
    path: &str,
    file: &EntryKind,
) -> ApiResult<Result<Map<String, Value>, HeaderError>> {
    let unavailable = || HeaderError::Unavailable {
        path: path.to_owned(),
    };
    let truncated = || HeaderError::Truncated {
        path: path.to_owned(),
    };
    let Some(prefix) = read_range(state, repo, file, 0, 8).await? else {
        return Ok(Err(unavailable()));
    };
    let Ok(prefix) = <[u8; 8]>::try_from(prefix.as_slice()) else {
        return Ok(Err(truncated()));
    };
    let len = u64::from_le_bytes(prefix);
    if len > MAX_HEADER {
        return Ok(Err(HeaderError::TooLarge {
            path: path.to_owned(),
            len,
        }));
    }
    let Some(bytes) = read_range(state, repo, file, 8, len).await? else {
        return Ok(Err(unavailable()));
    };
    if (bytes.len() as u64) < len {
        return Ok(Err(truncated()));
    }
    Ok(match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(HeaderError::Json {
            path: path.to_owned(),
            detail: "not an object".into(),
        }),
        Err(e) => Err(HeaderError::Json {
            path: path.to_owned(),
            detail: e.to_string(),
        }),
    })
}

/// Parameter counts of the repository at the commit whose root files are `files`: from the
/// index and its shards when there is an index, else from `model.safetensors`; `None` when
/// there is neither.
pub async fn summarize(
    state: &Context,
    repo: &RepoRef,
    files: &[Entry],
) -> ApiResult<Option<Result<Summary, HeaderError>>> {
    let find = |path: &str| files.iter().find(|e| e.path == path).map(|e| &e.kind);
    if let Some(index_file) = find(INDEX_FILE) {
        let shards = match read_index(state, repo, index_file).await? {
            Ok(index) => match shards_of_index(&index) {
                Ok(shards) => shards,
                Err(e) => return Ok(Some(Err(e))),
            },
            Err(e) => return Ok(Some(Err(e))),
        };
        let mut total = Summary::default();
        for shard in shards {
            let Some(kind) = find(&shard) else {
                return Ok(Some(Err(HeaderError::MissingShard { path: shard })));
            };
            let summary = match read_header(state, repo, &shard, kind).await? {
                Ok(header) => count_parameters(&shard, &header),
                Err(e) => Err(e),
            };
            let summary = match summary {
                Ok(s) => s,
                Err(e) => return Ok(Some(Err(e))),
            };
            for (dtype, n) in summary.parameters {
                if let Err(e) = add(&mut total, &dtype, n, &shard) {
                    return Ok(Some(Err(e)));
                }
            }
        }
        return Ok(Some(Ok(total)));
    }
    let Some(single) = find(SINGLE_FILE) else {
        return Ok(None);
    };
    Ok(Some(
        match read_header(state, repo, SINGLE_FILE, single).await? {
            Ok(header) => count_parameters(SINGLE_FILE, &header),
            Err(e) => Err(e),
        },
    ))
}

/// Reads and parses a safetensors index file.
pub async fn read_index(
    state: &Context,
    repo: &RepoRef,
    file: &EntryKind,
) -> ApiResult<Result<Value, HeaderError>> {
    if let EntryKind::File { size, .. } = file
        && *size > MAX_INDEX
    {
        return Ok(Err(HeaderError::Index(format!(
            "larger than {MAX_INDEX} bytes"
        ))));
    }
    let Some(bytes) = read_range(state, repo, file, 0, MAX_INDEX).await? else {
        return Ok(Err(HeaderError::Unavailable {
            path: INDEX_FILE.into(),
        }));
    };
    Ok(serde_json::from_slice(&bytes).map_err(|e| HeaderError::Index(e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn header(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn counts_per_dtype_and_total() {
        let h = header(json!({
            "__metadata__": {"format": "pt"},
            "a": {"dtype": "F32", "shape": [10, 20], "data_offsets": [0, 800]},
            "b": {"dtype": "F32", "shape": [5], "data_offsets": [800, 820]},
            "c": {"dtype": "BF16", "shape": [], "data_offsets": [820, 822]},
        }));
        let s = count_parameters("m", &h).expect("valid");
        assert_eq!(s.parameters["F32"], 205);
        assert_eq!(s.parameters["BF16"], 1);
        assert_eq!(s.total, 206);
    }

    #[test]
    fn bad_tensors_and_overflow_are_errors() {
        let h = header(json!({"a": {"dtype": "F32", "shape": [-1]}}));
        assert!(matches!(
            count_parameters("m", &h),
            Err(HeaderError::Tensor { .. })
        ));
        let h = header(json!({"a": {"dtype": "F32", "shape": [u64::MAX, 2]}}));
        assert!(matches!(
            count_parameters("m", &h),
            Err(HeaderError::Overflow { .. })
        ));
    }

    #[test]
    fn index_names_its_shards_once() {
        let index = json!({"metadata": {}, "weight_map": {
            "a": "model-00001-of-00002.safetensors",
            "b": "model-00002-of-00002.safetensors",
            "c": "model-00001-of-00002.safetensors",
        }});
        let shards = shards_of_index(&index).expect("valid");
        assert_eq!(shards.len(), 2);
        assert!(shards_of_index(&json!({"weight_map": {"a": 1}})).is_err());
        assert!(shards_of_index(&json!({})).is_err());
    }
}
