//! `GET /metrics`: the chunk store's figures, how inference ran single-input requests, how
//! many downloads were answered again from the answer cache (`throttle::answer_cache`) and
//! how many Xet-uploaded bytes were hashed before their shard (`hash_ahead`), in the
//! Prometheus text format (version 0.0.4).
//! Readable by a site administrator's token, or by the scraper token of `[metrics] token`
//! in trove.toml (compared by digest; it grants nothing else).

use crate::auth::token::{hash_token, token_from_header};
use crate::auth::{Access, Caller};
use crate::error::ApiResult;
use crate::http::api::admin_storage::require_site;
use crate::state::AppState;
use crate::storage::metrics::{StorageMetrics, gather};
use axum::extract::{FromRequestParts, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use std::fmt::Write;

const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn metrics(State(state): State<AppState>, mut parts: Parts) -> ApiResult<Response> {
    if !presents_scraper_token(&state, &parts) {
        let caller = Caller::from_request_parts(&mut parts, &state).await?;
        require_site(&caller, Access::Read)?;
    }
    let figures = gather(&state).await?;
    let mut text = render(&figures);
    let (requests, runs) = state.inference.single_counts();
    render_inference(&mut text, requests, runs);
    render_counters(
        &mut text,
        &[
            (
                "trove_download_answers_reused_total",
                "Downloads answered again from the answers kept for the same request, without the router.",
                state.auth.answers.reused(),
            ),
            (
                "trove_xet_bytes_hashed_ahead_total",
                "Bytes of Xet-uploaded files whose SHA-256 was computed while their xorbs arrived, before the shard.",
                state.hash_ahead.used_bytes(),
            ),
        ],
    );
    Ok(([(CONTENT_TYPE, CONTENT_TYPE_TEXT)], text).into_response())
}

/// Whether the request carries the configured scraper token.
fn presents_scraper_token(state: &AppState, parts: &Parts) -> bool {
    let Some(expected) = state.config.metrics.token.as_deref() else {
        return false;
    };
    parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(token_from_header)
        .is_some_and(|given| hash_token(&given) == hash_token(expected))
}

/// The text exposition: `# HELP`, `# TYPE` and one sample per metric.
pub fn render(m: &StorageMetrics) -> String {
    let gauges: [(&str, &str, f64); 7] = [
        (
            "trove_storage_logical_bytes",
            "Large-file bytes counted once per repository linking them.",
            m.logical_bytes as f64,
        ),
        (
            "trove_storage_stored_bytes",
            "Bytes of xorbs on disk.",
            m.stored_bytes as f64,
        ),
        (
            "trove_storage_raw_bytes",
            "Uncompressed bytes of the chunks the xorbs hold.",
            m.raw_bytes as f64,
        ),
        (
            "trove_storage_dedup_ratio",
            "Logical bytes over stored bytes (0 for an empty store).",
            m.dedup_ratio(),
        ),
        (
            "trove_storage_lfs_objects",
            "Distinct large files.",
            m.lfs_objects as f64,
        ),
        ("trove_storage_xorbs", "Xorbs recorded.", m.xorbs as f64),
        (
            "trove_storage_chunks",
            "Chunks in the dedup index.",
            m.chunks as f64,
        ),
    ];
    let counters: [(&str, &str, f64); 5] = [
        (
            "trove_gc_runs_total",
            "Garbage collections finished (dry runs excluded).",
            m.gc_runs as f64,
        ),
        (
            "trove_gc_freed_bytes_total",
            "Xorb bytes garbage collection freed.",
            m.gc_bytes_freed as f64,
        ),
        (
            "trove_gc_freed_chunks_total",
            "Chunks garbage collection freed.",
            m.gc_chunks_freed as f64,
        ),
        (
            "trove_gc_deleted_xorbs_total",
            "Xorbs garbage collection deleted.",
            m.gc_xorbs_deleted as f64,
        ),
        (
            "trove_gc_forgotten_objects_total",
            "Large files garbage collection forgot.",
            m.gc_objects_forgotten as f64,
        ),
    ];
    let mut out = String::new();
    for (kind, rows) in [("gauge", &gauges[..]), ("counter", &counters[..])] {
        for (name, help, value) in rows {
            // Writing to a String cannot fail.
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP trove_gc_last_run_timestamp_seconds When the last garbage collection finished.\n\
         # TYPE trove_gc_last_run_timestamp_seconds gauge\n\
         trove_gc_last_run_timestamp_seconds {}",
        m.gc_last_finished_secs
    );
    out
}

/// Appends the inference counters: single-input requests run and the runs they took (fewer
/// runs than requests: requests run together, `inference/batch.rs`).
fn render_inference(out: &mut String, requests: u64, runs: u64) {
    render_counters(
        out,
        &[
            (
                "trove_inference_single_requests_total",
                "Single-input encoder requests run.",
                requests,
            ),
            (
                "trove_inference_single_runs_total",
                "Runs of the model that answered them (several requests waiting together run as one).",
                runs,
            ),
        ],
    );
}

/// Appends counters: name, help and value each.
fn render_counters(out: &mut String, counters: &[(&str, &str, u64)]) {
    for (name, help, value) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inference_counters_are_counters() {
        let mut text = String::new();
        render_inference(&mut text, 12, 3);
        assert!(text.contains("# TYPE trove_inference_single_requests_total counter\n"));
        assert!(text.contains("\ntrove_inference_single_requests_total 12\n"));
        assert!(text.ends_with("\ntrove_inference_single_runs_total 3\n"));
    }

    #[test]
    fn every_sample_has_help_and_type_and_parses_as_a_number() {
        let m = StorageMetrics {
            logical_bytes: 300,
            stored_bytes: 100,
            gc_runs: 2,
            gc_bytes_freed: 7,
            ..StorageMetrics::default()
        };
        let text = render(&m);
        let mut names = Vec::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.split_once(' ').expect("name value");
            value.parse::<f64>().expect("a number");
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}");
            assert!(text.contains(&format!("# HELP {name} ")), "{name}");
            names.push(name.to_owned());
        }
        assert_eq!(names.len(), 13);
        assert!(text.contains("\ntrove_storage_dedup_ratio 3\n"));
        assert!(text.contains("\ntrove_gc_runs_total 2\n"));
        assert!(text.contains("# TYPE trove_gc_freed_bytes_total counter\n"));
        let names_sorted: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(names_sorted.len(), names.len(), "no duplicate metric");
    }
}
