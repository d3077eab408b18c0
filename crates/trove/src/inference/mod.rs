//! Running the models the hub hosts (the Hub's `hf-inference` API): which repository,
//! revision and task a request means, with the same access rule as downloads; loading the
//! model once into the [`Registry`]; running it on the inference [`Pool`] within the
//! per-model concurrency limit, the queue bound and the request timeout; single-input
//! encoder requests that wait for the same model run together ([`batch`]).

pub mod batch;
pub mod pool;
pub mod registry;
pub mod source;

use crate::auth::Caller;
use crate::config::InferenceConfig;
use crate::context::Context;
use crate::error::{ApiError, ApiResult, Refusal};
use crate::repos::find_readable;
use pool::Pool;
use registry::{Admission, Key, Registry};
use source::Source;
use std::sync::Arc;
use std::time::{Duration, Instant};
use trove_infer::{DecoderKind, Family, Head, InferError, Model};
use trove_types::RepoType;

/// Seconds a client is told to wait when a model's queue is full.
const RETRY_AFTER_SECS: u64 = 1;

/// The tasks this hub runs, by the Hub's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    FeatureExtraction,
    SentenceSimilarity,
    TextClassification,
    TokenClassification,
    FillMask,
    TextGeneration,
    /// OpenAI-compatible chat completions.
    Conversational,
}

impl Task {
    pub fn parse(name: &str) -> Option<Task> {
        Some(match name {
            "feature-extraction" => Task::FeatureExtraction,
            "sentence-similarity" => Task::SentenceSimilarity,
            "text-classification" | "sentiment-analysis" => Task::TextClassification,
            "token-classification" | "ner" => Task::TokenClassification,
            "fill-mask" => Task::FillMask,
            "text-generation" => Task::TextGeneration,
            "conversational" => Task::Conversational,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Task::FeatureExtraction => "feature-extraction",
            Task::SentenceSimilarity => "sentence-similarity",
            Task::TextClassification => "text-classification",
            Task::TokenClassification => "token-classification",
            Task::FillMask => "fill-mask",
            Task::TextGeneration => "text-generation",
            Task::Conversational => "conversational",
        }
    }
}

/// The task a request names: the pipeline of the URL, or none (the model's own).
pub enum Requested<'a> {
    Default,
    Pipeline(&'a str),
    Chat,
}

/// The hub's inference service: settings, loaded models, threads.
pub struct Runtime {
    config: InferenceConfig,
    registry: Registry,
    pool: Pool,
    device: trove_infer::Device,
    /// Single-input requests run, and the runs they took ([`batch`]): fewer runs than
    /// requests is requests run together (`/metrics`).
    singles: batch::Counts,
}

impl Runtime {
    pub fn new(config: &InferenceConfig) -> Runtime {
        Runtime {
            registry: Registry::new(
                config.memory_mb.saturating_mul(1 << 20),
                config.max_concurrent,
                config.max_queue,
            ),
            pool: Pool::new(config.threads),
            device: trove_infer::default_device(),
            config: config.clone(),
            singles: batch::Counts::default(),
        }
    }

    /// Single-input requests run so far, and the runs they took.
    pub fn single_counts(&self) -> (u64, u64) {
        self.singles.get()
    }

    pub fn config(&self) -> &InferenceConfig {
        &self.config
    }

    /// `warm` when a model of the repository is loaded, else `cold` (model info's `inference`).
    pub fn status(&self, repo_id: i64) -> &'static str {
        if self.registry.is_loaded(repo_id) {
            "warm"
        } else {
            "cold"
        }
    }

    /// The repositories whose model is warm on this node (none when inference is off):
    /// what `list_models(inference="warm")` lists.
    pub fn warm_repo_ids(&self) -> Vec<i64> {
        if self.config.enabled {
            self.registry.loaded_repo_ids()
        } else {
            Vec::new()
        }
    }

    /// Bytes the loaded models take now.
    pub fn loaded_bytes(&self) -> u64 {
        self.registry.loaded_bytes()
    }

    /// Waits for a turn on the model, then runs `f` on it on the inference threads, all
    /// within what is left of the request's time; the model's run permit is held until `f`
    /// returns, even past a timeout (the work is still using the CPU).
    pub async fn run<T, F>(&self, ready: Ready, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Model) -> Result<T, InferError> + Send + 'static,
    {
        let Ready {
            model,
            admission,
            deadline,
            ..
        } = ready;
        let job = async {
            let permit =
                self.registry.turn(&admission).await.ok_or_else(|| {
                    ApiError::internal(anyhow::anyhow!("inference semaphore closed"))
                })?;
            self.pool
                .run(move || {
                    let out = f(&model);
                    drop((permit, admission));
                    out
                })
                .await
                .map_err(ApiError::internal)
        };
        match tokio::time::timeout_at(deadline.into(), job).await {
            Ok(Ok(out)) => out.map_err(infer_error),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(timed_out(&self.config)),
        }
    }
}

/// A request ready to run: admitted to its model's queue, the model loaded; the turn to
/// run is taken by [`Runtime::run`] or [`Runtime::run_single`].
pub struct Ready {
    pub model: Arc<Model>,
    pub task: Task,
    /// `namespace/name`, as the answers name the model.
    pub model_id: String,
    pub deadline: Instant,
    admission: Admission,
}

/// Finds the repository as a download would (private → not found, gated → the gate's
/// answer), decides the task, admits the request to the model's queue and loads the model
/// if needed.
#[allow(clippy::too_many_arguments)]
pub async fn prepare(
    state: &Context,
    runtime: &Arc<Runtime>,
    caller: &Caller,
    namespace: &str,
    name: &str,
    revision: Option<&str>,
    requested: Requested<'_>,
    wait_for_model: Option<bool>,
    gguf_file: Option<&str>,
) -> ApiResult<Ready> {
    if !runtime.config.enabled {
        return Err(ApiError::NotImplemented(
            "Inference is turned off on this hub".into(),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(runtime.config.timeout_secs);
    let repo = find_readable(state, caller, RepoType::Model, namespace, name).await?;
    repo.require_content(caller)?;
    let source = source::locate(state, repo, revision.unwrap_or("main"), gguf_file).await?;
    let model_id = source.repo_id();
    if source.disabled() {
        return Err(ApiError::refused(
            Refusal::InferenceDisabled,
            format!("Model {model_id} has inference turned off (`inference: false` in its card)"),
        ));
    }
    if source.repo.repo.inference_disabled {
        return Err(ApiError::refused(
            Refusal::InferenceDisabled,
            format!("Model {model_id} has inference turned off (a setting of the repository)"),
        ));
    }
    let task = choose_task(&source, requested)?;
    let needed = source.estimated_bytes();
    let budget = runtime.registry.budget_bytes();
    if needed > budget {
        return Err(ApiError::ModelTooLarge(format!(
            "The model {model_id} is too large to be loaded automatically ({} > {}). \
             Raise [inference] memory_mb on this hub to run it.",
            human(needed),
            human(budget)
        )));
    }
    let key = Key {
        repo_id: source.repo.repo.id,
        commit: source.commit.to_string(),
        gguf: source.gguf().map(str::to_owned),
    };
    // A model whose files failed to load answers why until a push changes them (a new
    // commit is a new key): not "loading" forever, not another load per request.
    if let Some(failed) = runtime.registry.failure(&key) {
        return Err(failed);
    }
    let admission = runtime
        .registry
        .admit(&key)
        .map_err(|_| ApiError::ModelBusy {
            message: format!("Model {model_id} is overloaded: too many requests are waiting"),
            retry_after_secs: RETRY_AFTER_SECS,
        })?;
    if !wait_for_model.unwrap_or(runtime.config.wait_for_model)
        && !runtime.registry.is_ready(&admission)
    {
        // The Hub's answer to a cold model: start loading it, say how long it should take.
        let estimated_time = runtime.registry.estimated_secs(&admission, needed);
        if !runtime.registry.is_loading(&admission) {
            let (state, runtime) = (state.clone(), runtime.clone());
            tokio::spawn(async move {
                let loaded = runtime
                    .registry
                    .model(&admission, load(&state, &runtime, &source))
                    .await;
                if let Err(e) = loaded {
                    tracing::warn!(model = %source.repo_id(), error = %e, "a model failed to load");
                }
            });
        }
        return Err(ApiError::ModelLoading {
            message: format!("Model {model_id} is currently loading"),
            estimated_time: (estimated_time * 10.0).round() / 10.0,
        });
    }
    let model = tokio::time::timeout_at(
        deadline.into(),
        runtime
            .registry
            .model(&admission, load(state, runtime, &source)),
    )
    .await
    .map_err(|_| timed_out(&runtime.config))??;
    check_fits(&model, task, &model_id)?;
    Ok(Ready {
        model,
        task,
        model_id,
        deadline,
        admission,
    })
}

async fn load(state: &Context, runtime: &Runtime, source: &Source) -> ApiResult<Model> {
    let started = Instant::now();
    let files = source::read_files(state, source).await?;
    let device = runtime.device.clone();
    let model = runtime
        .pool
        .run(move || Model::load(files, &device))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| load_error(e, &source.repo_id()))?;
    tracing::info!(
        repo.id = source.repo.repo.id,
        model = %source.repo_id(),
        commit = %source.commit,
        size_bytes = model.memory_bytes(),
        duration_ms = started.elapsed().as_millis() as u64,
        "loaded a model for inference"
    );
    Ok(model)
}

/// The task of a request: the one named, else the card's `pipeline_tag`, else what
/// `config.json`'s architecture does (a GGUF model generates text).
fn choose_task(source: &Source, requested: Requested<'_>) -> ApiResult<Task> {
    let family = if source.gguf().is_some() {
        Family::Decoder(DecoderKind::Llama)
    } else {
        Family::of(source.config()).map_err(infer_error)?
    };
    let head = Head::of(source.config());
    let native = native_task(family, head);
    let task = match requested {
        Requested::Chat => Task::Conversational,
        Requested::Pipeline(name) => Task::parse(name).ok_or_else(|| unsupported(name))?,
        Requested::Default => match source.pipeline_tag() {
            Some(tag) => Task::parse(tag).ok_or_else(|| unsupported(tag))?,
            None => native,
        },
    };
    if !fits(task, family, head) {
        return Err(ApiError::refused(
            Refusal::UnsupportedTask,
            format!(
                "Model {} doesn't support task '{}'. Supported task: '{}'",
                source.repo_id(),
                task.as_str(),
                native.as_str()
            ),
        ));
    }
    Ok(task)
}

/// The task a model of this family and head runs when nothing names one.
fn native_task(family: Family, head: Head) -> Task {
    match family {
        Family::Encoder(_) => match head {
            Head::SequenceClassification => Task::TextClassification,
            Head::TokenClassification => Task::TokenClassification,
            Head::MaskedLm => Task::FillMask,
            Head::Embeddings => Task::FeatureExtraction,
        },
        Family::Decoder(_) => Task::TextGeneration,
    }
}

/// Whether a model of this family and head can run `task`.
fn fits(task: Task, family: Family, head: Head) -> bool {
    let encoder = family.is_encoder();
    match task {
        Task::FeatureExtraction | Task::SentenceSimilarity => encoder,
        Task::TextClassification => encoder && head == Head::SequenceClassification,
        Task::TokenClassification => encoder && head == Head::TokenClassification,
        Task::FillMask => encoder && head == Head::MaskedLm,
        Task::TextGeneration | Task::Conversational => !encoder,
    }
}

/// What a model's metadata says about running it: the card's data and `pipeline_tag`,
/// `config.json` (the index's summary of it is enough: `model_type`, `architectures`) and
/// the names of its files — what model info and a listing both have without reading the
/// model's files.
pub struct Described<'a> {
    pub card_data: Option<&'a serde_json::Map<String, serde_json::Value>>,
    pub pipeline_tag: Option<&'a str>,
    pub config: Option<&'a serde_json::Value>,
    /// Whether a file at the top level is a `.gguf` ([`is_top_level_gguf`]).
    pub has_gguf: bool,
}

/// A file name a model could run from as GGUF: a `.gguf` at the top level of the repository.
pub fn is_top_level_gguf(path: &str) -> bool {
    !path.contains('/') && path.to_ascii_lowercase().ends_with(".gguf")
}

impl Runtime {
    /// `expand=inference` of model info and of a listing alike: `warm` when a model of the
    /// repository is loaded, `cold` when the hub would run it on a request to its own task,
    /// and nothing — as the Hub leaves the property out for a model no provider serves —
    /// when it would not: inference off on this hub, `inference: false` in the card, the
    /// repository's setting, or a task this hub does not run for that model (the card's
    /// `pipeline_tag`, else the one `config.json`'s architecture gives; a top-level
    /// `.gguf` file generates text). The same rules as a request's [`prepare`], from the
    /// same metadata, without its reads of the files.
    pub fn listed_status(
        &self,
        repo: &trove_db::Repo,
        model: Described<'_>,
    ) -> Option<&'static str> {
        if !self.config.enabled || repo.inference_disabled {
            return None;
        }
        if model
            .card_data
            .is_some_and(|c| source::card_turns_inference_off(c.get("inference")))
        {
            return None;
        }
        let config = model.config.filter(|c| c.get("model_type").is_some());
        let (family, head) = match config {
            Some(config) => (Family::of(config).ok(), Head::of(config)),
            None => (None, Head::Embeddings),
        };
        let family = match family {
            Some(family) => family,
            // No `config.json` the hub runs: a GGUF file at the top level still runs.
            None if model.has_gguf => Family::Decoder(DecoderKind::Llama),
            None => return None,
        };
        let task = match model.pipeline_tag {
            Some(tag) => Task::parse(tag)?,
            None => native_task(family, head),
        };
        fits(task, family, head).then(|| self.status(repo.id))
    }
}

/// What loading revealed: a chat request needs a chat template.
fn check_fits(model: &Model, task: Task, model_id: &str) -> ApiResult<()> {
    if task == Task::Conversational
        && let Model::Decoder(d) = model
        && !d.chats()
    {
        return Err(ApiError::refused(
            Refusal::UnsupportedTask,
            format!(
                "Model {model_id} has no chat template (tokenizer_config.json \
                 `chat_template`): use text-generation"
            ),
        ));
    }
    Ok(())
}

fn unsupported(task: &str) -> ApiError {
    ApiError::refused(
        Refusal::UnsupportedTask,
        format!(
            "Task '{task}' is not supported by this hub's inference (supported: \
             feature-extraction, sentence-similarity, text-classification, \
             token-classification, fill-mask, text-generation, chat completions)"
        ),
    )
}

fn timed_out(config: &InferenceConfig) -> ApiError {
    ApiError::Timeout(format!(
        "Inference did not finish within {} seconds",
        config.timeout_secs
    ))
}

/// The HTTP meaning of a failure of a loaded model (or of what a model's config says).
pub fn infer_error(e: InferError) -> ApiError {
    match e {
        InferError::Unsupported(m) => ApiError::refused(Refusal::UnsupportedTask, m),
        e @ InferError::BadModel(_) => ApiError::refused(Refusal::ModelLoadFailed, e.to_string()),
        InferError::BadInput(m) => ApiError::refused(Refusal::InvalidInput, m),
        e @ InferError::Runtime(_) => ApiError::internal(e),
    }
}

/// The HTTP meaning of a failed load: the files refused (broken, or describing what this hub
/// does not run) are `ModelLoadFailed`, which the registry remembers for the commit; a
/// failure of the tensor library is ours.
fn load_error(e: InferError, model_id: &str) -> ApiError {
    match e {
        InferError::Unsupported(m) | InferError::BadModel(m) | InferError::BadInput(m) => {
            ApiError::refused(
                Refusal::ModelLoadFailed,
                format!("Model {model_id} cannot be loaded: {m}"),
            )
        }
        e @ InferError::Runtime(_) => ApiError::internal(e),
    }
}

/// Sizes as the Hub's message writes them (`16GB`), with MB for small ones.
fn human(bytes: u64) -> String {
    const GB: u64 = 1 << 30;
    if bytes >= GB {
        format!("{}GB", bytes.div_ceil(GB))
    } else {
        format!("{}MB", bytes.div_ceil(1 << 20))
    }
}
