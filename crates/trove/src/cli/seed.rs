//! `trove bench-seed-search`: fills a data dir's database with a synthetic catalogue of
//! repositories for the listing and search benchmark (`bench/search/`). Each repository gets
//! a realistic card that goes through the real card parser and tag derivation, and is written
//! through the same index columns reindex writes. No git repository is made per repository:
//! each `repos/<id>.git` is a symbolic link to one shared empty repository
//! (`bench-template.git` in the data dir), so that the server's start-up check finds every
//! folder it expects instead of initialising 100,000 of them. Only listing and search
//! are meant to be measured on them.

use crate::clock::now_ms;
use crate::repos::card::{FileFacts, Meta, derive_tags, hidden_facets, read_card};
use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use trove_db::{BulkRepo, IndexUpdate};
use trove_types::{RepoName, RepoType};

const BATCH: usize = 2000;

const LIBRARIES: &[&str] = &[
    "transformers",
    "transformers",
    "transformers",
    "diffusers",
    "sentence-transformers",
    "peft",
    "timm",
    "gguf",
    "keras",
    "onnx",
    "setfit",
    "spacy",
];
const PIPELINES: &[&str] = &[
    "text-generation",
    "text-generation",
    "text-classification",
    "token-classification",
    "fill-mask",
    "feature-extraction",
    "sentence-similarity",
    "text-to-image",
    "image-classification",
    "automatic-speech-recognition",
    "translation",
    "summarization",
    "question-answering",
    "object-detection",
    "text-to-speech",
    "zero-shot-classification",
];
const LANGUAGES: &[&str] = &[
    "en", "en", "en", "fr", "de", "es", "zh", "ja", "ru", "pt", "it", "ko", "ar", "hi", "nl",
];
const LICENSES: &[&str] = &[
    "apache-2.0",
    "apache-2.0",
    "mit",
    "mit",
    "cc-by-4.0",
    "openrail",
    "llama3",
    "gpl-3.0",
    "other",
    "bsd-3-clause",
    "cc-by-nc-4.0",
];
const TAGS: &[&str] = &[
    "pytorch",
    "safetensors",
    "bert",
    "llama",
    "mistral",
    "gpt2",
    "t5",
    "vit",
    "whisper",
    "lora",
    "chat",
    "code",
    "medical",
    "legal",
    "finance",
    "biology",
    "conversational",
    "instruct",
    "quantized",
    "4-bit",
    "8-bit",
    "merge",
    "distillation",
    "multilingual",
];
const ARCHS: &[&str] = &[
    "bert", "roberta", "llama", "mistral", "qwen", "gemma", "phi", "t5", "bart", "gpt2", "vit",
    "whisper", "clip", "deberta", "electra", "falcon", "mixtral", "stablelm", "detr", "wav2vec2",
];
const WORDS: &[&str] = &[
    "tiny",
    "small",
    "base",
    "large",
    "xl",
    "mini",
    "nano",
    "pro",
    "fast",
    "lite",
    "chat",
    "instruct",
    "code",
    "med",
    "legal",
    "fin",
    "sentiment",
    "ner",
    "qa",
    "summ",
    "translate",
    "detector",
    "classifier",
    "embed",
    "vision",
    "speech",
    "finetuned",
    "distilled",
    "v2",
    "v3",
];
const TASKS: &[&str] = &[
    "text-classification",
    "question-answering",
    "summarization",
    "translation",
    "text-generation",
    "token-classification",
    "image-classification",
    "audio-classification",
    "automatic-speech-recognition",
    "object-detection",
    "tabular-classification",
];
const SIZES: &[&str] = &[
    "n<1K",
    "1K<n<10K",
    "10K<n<100K",
    "100K<n<1M",
    "1M<n<10M",
    "10M<n<100M",
];
const SDKS: &[&str] = &["gradio", "gradio", "streamlit", "docker", "static"];
const COLORS: &[&str] = &[
    "red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray",
];

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

fn some<'a>(rng: &mut StdRng, items: &[&'a str], max: usize) -> Vec<&'a str> {
    let n = rng.random_range(0..=max);
    let mut out: Vec<&str> = Vec::new();
    for _ in 0..n {
        let item = pick(rng, items);
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

fn yaml_list(key: &str, items: &[&str]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let mut s = format!("{key}:\n");
    for i in items {
        s.push_str(&format!("- \"{i}\"\n"));
    }
    s
}

/// Downloads spread like the Hub's: most repos have a few, a handful have millions.
fn heavy_tail(rng: &mut StdRng, scale: f64) -> i64 {
    let u: f64 = rng.random_range(0.0..1.0);
    ((scale * u.powi(8)).exp() - 1.0).round() as i64
}

struct Generated {
    repo_type: RepoType,
    readme: String,
    files: Vec<String>,
    params: Option<u64>,
}

fn generate(rng: &mut StdRng, repo_type: RepoType, namespaces: &[String], i: usize) -> Generated {
    let mut files = vec![".gitattributes".to_owned(), "README.md".to_owned()];
    match repo_type {
        RepoType::Model => {
            let library = pick(rng, LIBRARIES);
            let pipeline = pick(rng, PIPELINES);
            let mut card = format!("---\nlibrary_name: {library}\npipeline_tag: {pipeline}\n");
            card.push_str(&yaml_list("language", &some(rng, LANGUAGES, 3)));
            card.push_str(&format!("license: {}\n", pick(rng, LICENSES)));
            card.push_str(&yaml_list("tags", &some(rng, TAGS, 5)));
            if rng.random_bool(0.3) {
                let ns = &namespaces[rng.random_range(0..namespaces.len())];
                card.push_str(&format!("datasets:\n- {ns}/{}-corpus\n", pick(rng, WORDS)));
            }
            if rng.random_bool(0.4) {
                let ns = &namespaces[rng.random_range(0..namespaces.len())];
                card.push_str(&format!("base_model: {ns}/{}-base\n", pick(rng, ARCHS)));
            }
            if rng.random_bool(0.2) {
                card.push_str(&format!(
                    "model-index:\n- name: m{i}\n  results:\n  - task:\n      type: {pipeline}\n    \
                     dataset:\n      type: glue\n      name: GLUE\n    metrics:\n    - type: accuracy\n      \
                     value: {:.3}\n",
                    rng.random_range(0.5..0.99)
                ));
            }
            card.push_str("---\n\n# Model card\n\nThis model was trained for the benchmark.\n");
            files.push("config.json".into());
            let params = 10u64.pow(rng.random_range(6..11)) * rng.random_range(1..10);
            if rng.random_bool(0.7) {
                files.push("model.safetensors".into());
            } else {
                files.push("pytorch_model.bin".into());
            }
            Generated {
                repo_type,
                readme: card,
                files,
                params: Some(params),
            }
        }
        RepoType::Dataset => {
            let mut card = String::from("---\n");
            card.push_str(&yaml_list("task_categories", &some(rng, TASKS, 2)));
            card.push_str(&yaml_list("language", &some(rng, LANGUAGES, 2)));
            card.push_str(&format!("license: {}\n", pick(rng, LICENSES)));
            card.push_str(&yaml_list("size_categories", &[pick(rng, SIZES)]));
            card.push_str("configs:\n- config_name: default\n  data_files: data/*.parquet\n---\n\n# Dataset\n");
            files.push("data/train-00000-of-00001.parquet".into());
            Generated {
                repo_type,
                readme: card,
                files,
                params: None,
            }
        }
        RepoType::Space => {
            let card = format!(
                "---\ntitle: Demo {i}\nemoji: 🚀\ncolorFrom: {}\ncolorTo: {}\nsdk: {}\nsdk_version: 4.36.1\n\
                 app_file: app.py\npinned: {}\nlicense: {}\n---\n",
                pick(rng, COLORS),
                pick(rng, COLORS),
                pick(rng, SDKS),
                rng.random_bool(0.1),
                pick(rng, LICENSES)
            );
            files.push("app.py".into());
            Generated {
                repo_type,
                readme: card,
                files,
                params: None,
            }
        }
    }
}

fn index_of(g: &Generated, sha: String, last_modified_ms: i64) -> IndexUpdate {
    let card = read_card(g.repo_type, &g.readme);
    let facts = FileFacts::from_paths(g.repo_type, g.files.iter().map(String::as_str));
    let tags = derive_tags(&card, &facts);
    let mut facets = tags.clone();
    facets.extend(hidden_facets(&card));
    let (pipeline_tag, library_name, sdk) = match &card.meta {
        Meta::Model(m) => (m.pipeline_tag.clone(), m.library_name.clone(), None),
        Meta::Space(s) => (None, None, s.sdk.clone()),
        Meta::Dataset(_) => (None, None, None),
    };
    let safetensors = g
        .params
        .filter(|_| g.files.iter().any(|f| f.ends_with(".safetensors")));
    IndexUpdate {
        sha,
        last_modified_ms,
        pipeline_tag,
        library_name,
        sdk,
        tags_json: serde_json::to_string(&tags).unwrap_or_default(),
        facets,
        card_data_json: card
            .data
            .as_ref()
            .and_then(|d| serde_json::to_string(d).ok()),
        card_warnings_json: serde_json::to_string(&card.warnings).unwrap_or_default(),
        siblings_json: serde_json::to_string(&g.files).unwrap_or_default(),
        used_storage: g.params.map_or(10_000, |p| (p * 2) as i64),
        safetensors_json: safetensors
            .map(|p| serde_json::json!({"parameters": {"BF16": p}, "total": p}).to_string()),
        params_total: safetensors.map(|p| p as i64),
        config_json: None,
    }
}

/// Points each repository's git folder that does not exist at one shared empty repository.
fn link_git_folders(
    config: &crate::config::Config,
    repos: &[trove_db::Repo],
) -> anyhow::Result<()> {
    let template = config.data_dir.join("bench-template.git");
    if !template.exists() {
        let author = crate::repos::folders::system_signature();
        let gitattributes = crate::repos::gitattributes::DEFAULT_GITATTRIBUTES.as_bytes();
        trove_git::GitRepo::init_bare(&template, &[(".gitattributes", gitattributes)], &author, 0)
            .context("creating the shared benchmark repository")?;
    }
    let template = std::fs::canonicalize(&template)?;
    let repos_dir = config.repos_dir();
    std::fs::create_dir_all(&repos_dir)?;
    for repo in repos {
        let dir = repos_dir.join(format!("{}.git", repo.id));
        if std::fs::symlink_metadata(&dir).is_err() {
            std::os::unix::fs::symlink(&template, &dir)
                .with_context(|| format!("linking {}", dir.display()))?;
        }
    }
    Ok(())
}

/// Creates `count` repositories (80% models, 15% datasets, 5% Spaces; 5% private) under
/// about `count / 30` namespaces.
pub async fn run(config: &crate::config::Config, count: usize, seed: u64) -> anyhow::Result<()> {
    let db = crate::cli::admin::open_db(config).await?;
    let owner = match db.user_by_name("seed").await? {
        Some(u) => u,
        None => db
            .create_user(&RepoName::parse_namespace("seed")?, None, false)
            .await
            .context("creating the seed user")?,
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let namespaces: Vec<String> = (0..(count / 30).max(10))
        .map(|i| format!("{}-{}{i}", pick(&mut rng, ARCHS), pick(&mut rng, WORDS)))
        .collect();
    let now = now_ms();
    let today = now / 86_400_000;
    let started = std::time::Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    for i in 0..count {
        let repo_type = match rng.random_range(0..100) {
            0..80 => RepoType::Model,
            80..95 => RepoType::Dataset,
            _ => RepoType::Space,
        };
        // Authors are skewed: a few publish a lot.
        let u: f64 = rng.random_range(0.0..1.0);
        let namespace = namespaces[((u * u * u) * namespaces.len() as f64) as usize].clone();
        let name = format!(
            "{}-{}-{}-{i}",
            pick(&mut rng, ARCHS),
            pick(&mut rng, WORDS),
            pick(&mut rng, WORDS)
        );
        let g = generate(&mut rng, repo_type, &namespaces, i);
        let created = now - rng.random_range(0..3 * 365 * 86_400_000i64);
        let modified = created + rng.random_range(0..=(now - created));
        let downloads = heavy_tail(&mut rng, 14.0);
        batch.push(BulkRepo {
            repo_type,
            namespace,
            name,
            private: rng.random_bool(0.05),
            created_at_ms: created,
            index: index_of(&g, format!("{:040x}", rng.random::<u128>()), modified),
            downloads,
            downloads_all_time: downloads * rng.random_range(1..5),
            likes: heavy_tail(&mut rng, 9.0),
        });
        if batch.len() == BATCH || i + 1 == count {
            db.bulk_import_indexed(owner.id, today, &batch).await?;
            batch.clear();
            eprintln!("seeded {} / {count} ({:.0?})", i + 1, started.elapsed());
        }
    }
    db.compact_search_index().await?;
    db.optimize().await?;
    link_git_folders(config, &db.all_repos().await?)?;
    db.close().await;
    eprintln!("done: {count} repositories in {:.1?}", started.elapsed());
    Ok(())
}
