//! The layering of the `trove` crate, checked on its sources: the infrastructure (the
//! `Context`, the event bus, the throttles, settings) never reaches up into a use case, the
//! use cases never into the application state (`AppState`: they take a `Context`), an HTTP
//! surface or the CLI, the surfaces never into the CLI, and axum stays in the HTTP layer (plus the two seams that turn our types into HTTP:
//! the `Caller` extractor and `ApiError`'s responses). The lower crates never depend on
//! each other. `ARCHITECTURE.md` draws the same map.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The layer of a source file, by its path under `src/`.
fn layer(relative: &str) -> &'static str {
    if relative.starts_with("cli/") || relative == "main.rs" {
        "cli"
    } else if relative.starts_with("http/") {
        "http"
    } else if relative == "lib.rs" {
        "root"
    } else if relative == "state.rs" {
        // The application put together: use cases and their services, below the surfaces.
        "app"
    } else if [
        "context.rs",
        "events/",
        "throttle/",
        "config.rs",
        "clock.rs",
        "cluster.rs",
        "signing.rs",
        "markdown.rs",
        "git_runtime.rs",
        "hash_ahead.rs",
    ]
    .iter()
    .any(|p| relative == *p || (p.ends_with('/') && relative.starts_with(p)))
    {
        // What every use case stands on.
        "infrastructure"
    } else {
        // repos/, accounts/, auth/, and the infrastructure files.
        "core"
    }
}

/// Lines of code (not comments) that mention `needle`.
fn mentions(text: &str, needle: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//"))
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

#[test]
fn no_layer_reaches_up() {
    let root = src();
    let mut files = Vec::new();
    sources(&root, &mut files);
    assert!(files.len() > 50, "found the sources");
    let mut violations = Vec::new();
    for file in files {
        let relative = file
            .strip_prefix(&root)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(&file).expect("utf-8 source");
        let forbidden: &[&str] = match layer(&relative) {
            "core" => &["crate::http", "crate::cli", "crate::state", "AppState"],
            "infrastructure" => &[
                "crate::http",
                "crate::cli",
                "crate::state",
                "crate::repos",
                "crate::storage",
                "crate::spaces",
                "crate::webhooks",
                "crate::accounts",
                "crate::collections",
                "crate::auth",
            ],
            "app" => &["crate::http", "crate::cli"],
            "http" => &["crate::cli"],
            _ => &[],
        };
        for needle in forbidden {
            for line in mentions(&text, needle) {
                violations.push(format!("{relative}: {line}"));
            }
        }
        // axum belongs to the HTTP layer; in the core only the two seams named above.
        let axum_allowed = matches!(layer(&relative), "http" | "cli" | "root" | "app")
            || relative == "auth/mod.rs"
            || relative == "error.rs";
        if !axum_allowed {
            for line in mentions(&text, "axum") {
                violations.push(format!("{relative}: {line}"));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports that run up a layer:\n{}",
        violations.join("\n")
    );
}

#[test]
fn lower_crates_stay_independent() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crates dir")
        .to_owned();
    let lower = [
        "trove-git",
        "trove-store",
        "trove-db",
        "trove-xet",
        "trove-infer",
        "trove-card",
    ];
    for name in lower {
        let manifest =
            std::fs::read_to_string(crates.join(name).join("Cargo.toml")).expect("manifest");
        let deps = manifest
            .split("[dependencies]")
            .nth(1)
            .map(|rest| rest.split("\n[").next().unwrap_or(rest))
            .unwrap_or("");
        for other in lower.iter().chain(["trove", "axum"].iter()) {
            if *other == name {
                continue;
            }
            let depends = deps.lines().any(|l| {
                l.trim_start().starts_with(&format!("{other}."))
                    || l.trim_start().starts_with(&format!("{other} "))
            });
            assert!(!depends, "{name} depends on {other}");
        }
    }
}
