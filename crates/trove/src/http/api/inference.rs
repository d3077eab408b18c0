//! The Hub's inference API for the models the hub hosts (`hf-inference`'s wire format):
//! `POST /models/{repo}` and `/models/{repo}/pipeline/{task}` with `{"inputs", "parameters"}`,
//! and the OpenAI-compatible `POST /models/{repo}/v1/chat/completions`, streamed as
//! server-sent events when asked. Answers have exactly the shapes `InferenceClient` parses.

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, Refusal};
use crate::http::extract::{ApiJson, ApiPath, QueryParams};
use crate::inference::batch::{Answer, Single, embeddings_json};
use crate::inference::{self, Ready, Requested, Task};
use crate::state::AppState;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use trove_infer::{Aggregation, ChatMessage, FinishReason, GenerationParams, Model, ScoreFunction};
use trove_types::Revision;

/// `POST /models/{ns}/{name}`: the model's own task.
pub async fn run_default(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<ApiPath<(String, String)>, ApiError>,
    query: QueryParams,
    headers: HeaderMap,
    InferenceJson(body): InferenceJson,
) -> Result<Response, InferenceError> {
    let ApiPath((ns, name)) = path?;
    let wait = wait_for_model(&headers, &body)?;
    let ready = prepare(
        &state,
        &caller,
        &ns,
        &name,
        &query,
        Requested::Default,
        wait,
        query.get("gguf_file"),
    )
    .await?;
    Ok(run_task(&state, ready, body).await?)
}

/// `POST /models/{ns}/{name}/pipeline/{task}`.
pub async fn run_pipeline(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<ApiPath<(String, String, String)>, ApiError>,
    query: QueryParams,
    headers: HeaderMap,
    InferenceJson(body): InferenceJson,
) -> Result<Response, InferenceError> {
    let ApiPath((ns, name, task)) = path?;
    let wait = wait_for_model(&headers, &body)?;
    let ready = prepare(
        &state,
        &caller,
        &ns,
        &name,
        &query,
        Requested::Pipeline(&task),
        wait,
        query.get("gguf_file"),
    )
    .await?;
    Ok(run_task(&state, ready, body).await?)
}

/// Resolves, checks and loads (or finds loaded) the model a request names; `gguf` is the
/// request's choice of a GGUF file, if any.
#[allow(clippy::too_many_arguments)]
async fn prepare(
    state: &AppState,
    caller: &Caller,
    ns: &str,
    name: &str,
    query: &QueryParams,
    requested: Requested<'_>,
    wait: Option<bool>,
    gguf: Option<&str>,
) -> ApiResult<Ready> {
    // Checked as every route's revision is, before git sees it.
    let revision = query
        .get("revision")
        .map(Revision::parse)
        .transpose()
        .map_err(|e| ApiError::refused(Refusal::InvalidRequest, e.to_string()))?;
    inference::prepare(
        state,
        &state.inference,
        caller,
        ns,
        name,
        revision.as_ref().map(Revision::as_str),
        requested,
        wait,
        gguf,
    )
    .await
}

/// Whether the request waits for a model that is still loading: the Hub's
/// `x-wait-for-model` header, or `options.wait_for_model` in the body (`None`: the hub's
/// setting decides).
fn wait_for_model(headers: &HeaderMap, body: &Value) -> ApiResult<Option<bool>> {
    if let Some(value) = headers.get("x-wait-for-model") {
        return match value.to_str().map(str::to_ascii_lowercase).as_deref() {
            Ok("true" | "1") => Ok(Some(true)),
            Ok("false" | "0") => Ok(Some(false)),
            _ => Err(ApiError::refused(
                Refusal::InvalidRequest,
                "x-wait-for-model must be true or false",
            )),
        };
    }
    match body.get("options").and_then(|o| o.get("wait_for_model")) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid("`options.wait_for_model` must be a boolean")),
    }
}

/// `inputs` or a parameter refused (422 `InvalidInput`).
fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::refused(Refusal::InvalidInput, message)
}

/// The JSON body of an inference request: [`ApiJson`], refused as the inference API refuses
/// (400 `InvalidJson`), so that every answer of these routes has its `X-Error-Code`.
pub struct InferenceJson(pub Value);

impl<S: Send + Sync> FromRequest<S> for InferenceJson {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match ApiJson::<Value>::from_request(req, state).await {
            Ok(ApiJson(value)) => Ok(InferenceJson(value)),
            Err(ApiError::BadRequest(message)) => {
                Err(ApiError::refused(Refusal::InvalidJson, message))
            }
            Err(other) => Err(other),
        }
    }
}

/// An error of the inference routes: an [`ApiError`], with the refusals that do not say
/// which they are (a path or a revision refused by what these routes share with the rest of
/// the API) given the inference API's codes, so that every 400 and 422 of these routes
/// carries an `X-Error-Code`; rendered by the API's one mapping.
pub struct InferenceError(ApiError);

impl From<ApiError> for InferenceError {
    fn from(e: ApiError) -> Self {
        InferenceError(match e {
            ApiError::BadRequest(message) => ApiError::refused(Refusal::InvalidRequest, message),
            ApiError::UnprocessableEntity(message) => invalid(message),
            other => other,
        })
    }
}

impl IntoResponse for InferenceError {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

/// One input or a batch of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum Texts {
    One(String),
    Many(Vec<String>),
}

impl Texts {
    fn list(&self) -> Vec<String> {
        match self {
            Texts::One(s) => vec![s.clone()],
            Texts::Many(v) => v.clone(),
        }
    }
}

/// `inputs` and the parameters of a request, wherever the client put them (feature
/// extraction sends them at the root, the other tasks under `parameters`).
fn field<'a>(body: &'a Value, name: &str) -> Option<&'a Value> {
    body.get("parameters")
        .and_then(|p| p.get(name))
        .filter(|v| !v.is_null())
        .or_else(|| body.get(name).filter(|v| !v.is_null()))
}

fn parse<T: serde::de::DeserializeOwned>(
    value: Option<&Value>,
    what: &str,
) -> ApiResult<Option<T>> {
    value
        .map(|v| serde_json::from_value(v.clone()))
        .transpose()
        .map_err(|e| invalid(format!("Invalid `{what}`: {e}")))
}

fn inputs<T: serde::de::DeserializeOwned>(body: &Value) -> ApiResult<T> {
    parse(body.get("inputs"), "inputs")?.ok_or_else(|| invalid("Missing `inputs`"))
}

async fn run_task(state: &AppState, ready: Ready, body: Value) -> ApiResult<Response> {
    let max_inputs = state.inference.config().max_inputs;
    let check_count = |n: usize| {
        if n == 0 || n > max_inputs {
            Err(invalid(format!(
                "`inputs` must hold between 1 and {max_inputs} texts"
            )))
        } else {
            Ok(())
        }
    };
    // An encoder does both: the Hub's sentence-transformers pipeline answers by the shape of
    // `inputs` (a pair object → similarity, text → embeddings), whatever URL was used.
    let pair = body
        .get("inputs")
        .is_some_and(|i| i.get("source_sentence").is_some());
    let task = match ready.task {
        Task::FeatureExtraction if pair => Task::SentenceSimilarity,
        Task::SentenceSimilarity if !pair => Task::FeatureExtraction,
        task => task,
    };
    match task {
        Task::FeatureExtraction => {
            let texts: Texts = inputs(&body)?;
            let normalize = parse::<bool>(field(&body, "normalize"), "normalize")?.unwrap_or(false);
            if let Texts::One(input) = texts {
                let single = Single::Embed { normalize };
                return match state.inference.run_single(ready, single, input).await? {
                    Answer::Embedding(json) => Ok(json_response(json)),
                    Answer::Scores(_) => Err(wrong_answer()),
                };
            }
            let list = texts.list();
            check_count(list.len())?;
            let out = state
                .inference
                .run(ready, move |model| {
                    let encoder = encoder(model)?;
                    let pooled = encoder.pooling() != trove_infer::Pooling::Tokens;
                    let vectors = encoder.embed(&list, normalize)?;
                    embeddings_json(vectors, pooled, false)
                })
                .await?;
            Ok(json_response(out))
        }
        Task::SentenceSimilarity => {
            #[derive(Deserialize)]
            struct Pair {
                source_sentence: String,
                sentences: Vec<String>,
            }
            let pair: Pair = inputs(&body)?;
            check_count(pair.sentences.len())?;
            let scores = state
                .inference
                .run(ready, move |model| {
                    encoder(model)?.similarity(&pair.source_sentence, &pair.sentences)
                })
                .await?;
            Ok(Json(scores).into_response())
        }
        Task::TextClassification => {
            let texts: Texts = inputs(&body)?;
            let function =
                match parse::<String>(field(&body, "function_to_apply"), "function_to_apply")? {
                    None => None,
                    Some(name) => Some(ScoreFunction::parse(&name).ok_or_else(|| {
                        invalid(format!(
                            "`function_to_apply` must be sigmoid, softmax or none, not {name:?}"
                        ))
                    })?),
                };
            let top_k = parse::<usize>(field(&body, "top_k"), "top_k")?;
            let label_scores = move |mut scores: Vec<(String, f32)>| {
                if let Some(k) = top_k {
                    scores.truncate(k);
                }
                scores
                    .into_iter()
                    .map(|(label, score)| LabelScore { label, score })
                    .collect::<Vec<_>>()
            };
            if let Texts::One(input) = texts {
                let single = Single::Classify { function };
                return match state.inference.run_single(ready, single, input).await? {
                    Answer::Scores(scores) => Ok(Json([label_scores(scores)]).into_response()),
                    Answer::Embedding(_) => Err(wrong_answer()),
                };
            }
            let list = texts.list();
            check_count(list.len())?;
            let out = state
                .inference
                .run(ready, move |model| {
                    let all = encoder(model)?.classify(&list, function)?;
                    Ok(all.into_iter().map(label_scores).collect::<Vec<_>>())
                })
                .await?;
            Ok(Json(out).into_response())
        }
        Task::TokenClassification => {
            let texts: Texts = inputs(&body)?;
            let list = texts.list();
            check_count(list.len())?;
            let aggregation = match parse::<String>(
                field(&body, "aggregation_strategy"),
                "aggregation_strategy",
            )? {
                None => Aggregation::Simple,
                // The pipeline's own refusal of a name it does not know is a 400.
                Some(name) => Aggregation::parse(&name).ok_or_else(|| {
                    ApiError::refused(Refusal::InvalidRequest, format!(
                        "'{name}' is not a valid aggregation_strategy: use one of none, simple, \
                         first, average, max"
                    ))
                })?,
            };
            let ignore = parse::<Vec<String>>(field(&body, "ignore_labels"), "ignore_labels")?
                .unwrap_or_else(|| vec!["O".to_owned()]);
            // The input is refused past the model's length anyway, so no chunking: `stride`
            // is checked and has nothing to overlap.
            parse::<u32>(field(&body, "stride"), "stride")?;
            let single = matches!(texts, Texts::One(_));
            let mut out = state
                .inference
                .run(ready, move |model| {
                    Ok(
                        trove_infer::entities(encoder(model)?, &list, aggregation, &ignore)?
                            .into_iter()
                            .map(|entities| {
                                entities
                                    .into_iter()
                                    .map(EntityJson::from)
                                    .collect::<Vec<_>>()
                            })
                            .collect::<Vec<_>>(),
                    )
                })
                .await?;
            Ok(if single {
                Json(out.pop().unwrap_or_default()).into_response()
            } else {
                Json(out).into_response()
            })
        }
        Task::FillMask => {
            let text: String = inputs(&body)?;
            let top_k = parse::<usize>(field(&body, "top_k"), "top_k")?.unwrap_or(5);
            if top_k == 0 {
                return Err(invalid(
                    "Input validation error: `top_k` must be strictly positive",
                ));
            }
            let targets = match field(&body, "targets") {
                None => None,
                Some(Value::String(one)) => Some(vec![one.clone()]),
                Some(v) => parse::<Vec<String>>(Some(v), "targets")?,
            };
            if let Some(targets) = &targets
                && (targets.is_empty() || targets.len() > max_inputs)
            {
                return Err(invalid(format!(
                    "Input validation error: `targets` must hold between 1 and {max_inputs} words"
                )));
            }
            let mut out = state
                .inference
                .run(ready, move |model| {
                    encoder(model)?.fill_mask(&text, top_k, targets.as_deref())
                })
                .await?;
            let json = |fills: Vec<trove_infer::Fill>| -> Vec<FillJson> {
                fills.into_iter().map(FillJson::from).collect()
            };
            Ok(if out.len() == 1 {
                Json(json(out.pop().unwrap_or_default())).into_response()
            } else {
                Json(out.into_iter().map(json).collect::<Vec<_>>()).into_response()
            })
        }
        Task::TextGeneration => {
            let prompt: String = inputs(&body)?;
            if body.get("stream").and_then(Value::as_bool) == Some(true) {
                return Err(ApiError::refused(
                    Refusal::InvalidRequest,
                    "Streaming text-generation is not served here: use /v1/chat/completions \
                     with stream=true",
                ));
            }
            let mut params = generation_params(state, &body, true)?;
            let details = parse::<bool>(field(&body, "details"), "details")?.unwrap_or(false);
            params.logprobs = details;
            // TGI names the seed only when tokens were drawn with it.
            let seed = params.samples().then_some(params.seed);
            let full = parse::<bool>(field(&body, "return_full_text"), "return_full_text")?
                .unwrap_or(false);
            let run_prompt = prompt.clone();
            let generated = state
                .inference
                .run(ready, move |model| {
                    decoder(model)?.generate(&run_prompt, &params, true, &mut |_, _| true)
                })
                .await?;
            let text = if full {
                format!("{prompt}{}", generated.text)
            } else {
                generated.text.clone()
            };
            let details = details.then(|| GenerationDetails {
                finish_reason: generated.finish.tgi(),
                generated_tokens: generated.tokens.len(),
                seed,
                prefill: Vec::new(),
                tokens: generated
                    .tokens
                    .iter()
                    .map(|t| TokenJson {
                        id: t.id,
                        text: t.text.clone(),
                        logprob: t.logprob,
                        special: t.special,
                    })
                    .collect(),
            });
            Ok(Json(vec![GenerationJson {
                generated_text: text,
                details,
            }])
            .into_response())
        }
        Task::Conversational => Err(ApiError::refused(
            Refusal::UnsupportedTask,
            "Chat models answer at /v1/chat/completions",
        )),
    }
}

/// A single-input run answered with another task's answer: never, as each request asks
/// one thing of its run.
fn wrong_answer() -> ApiError {
    ApiError::internal(anyhow::anyhow!("a single-input run answered another task"))
}

/// A response of JSON already written.
fn json_response(json: Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
}

fn encoder(model: &Model) -> Result<&trove_infer::Encoder, trove_infer::InferError> {
    match model {
        Model::Encoder(e) => Ok(e),
        Model::Decoder(_) => Err(trove_infer::InferError::Unsupported(
            "this task needs an encoder model".into(),
        )),
    }
}

fn decoder(model: &Model) -> Result<&trove_infer::Decoder, trove_infer::InferError> {
    match model {
        Model::Decoder(d) => Ok(d),
        Model::Encoder(_) => Err(trove_infer::InferError::Unsupported(
            "this task needs a text-generation model".into(),
        )),
    }
}

/// A token-classification answer element: a token (`entity`, `index`) or a group
/// (`entity_group`).
#[derive(Serialize)]
struct EntityJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    entity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entity_group: Option<String>,
    score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
    word: String,
    start: usize,
    end: usize,
}

impl From<trove_infer::Entity> for EntityJson {
    fn from(e: trove_infer::Entity) -> Self {
        let (entity, entity_group) = if e.grouped {
            (None, Some(e.label))
        } else {
            (Some(e.label), None)
        };
        EntityJson {
            entity,
            entity_group,
            score: e.score,
            index: e.index,
            word: e.word,
            start: e.start,
            end: e.end,
        }
    }
}

#[derive(Serialize)]
struct FillJson {
    score: f32,
    token: u32,
    token_str: String,
    sequence: String,
}

impl From<trove_infer::Fill> for FillJson {
    fn from(f: trove_infer::Fill) -> Self {
        FillJson {
            score: f.score,
            token: f.token,
            token_str: f.token_str,
            sequence: f.sequence,
        }
    }
}

#[derive(Serialize)]
struct LabelScore {
    label: String,
    score: f32,
}

#[derive(Serialize)]
struct GenerationJson {
    generated_text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<GenerationDetails>,
}

#[derive(Serialize)]
struct GenerationDetails {
    finish_reason: &'static str,
    generated_tokens: usize,
    seed: Option<u64>,
    prefill: Vec<TokenJson>,
    tokens: Vec<TokenJson>,
}

#[derive(Serialize)]
struct TokenJson {
    id: u32,
    text: String,
    logprob: Option<f32>,
    special: bool,
}

/// Generation parameters of a TGI body (`tgi`: under `parameters`, `max_new_tokens`) or an
/// OpenAI body (at the root, `max_tokens`), checked against the hub's limits.
fn generation_params(state: &AppState, body: &Value, tgi: bool) -> ApiResult<GenerationParams> {
    let limit = state.inference.config().max_new_tokens;
    let get = |name: &str| {
        if tgi {
            field(body, name)
        } else {
            body.get(name).filter(|v| !v.is_null())
        }
    };
    let max_new = parse::<usize>(
        get(if tgi { "max_new_tokens" } else { "max_tokens" }),
        "max_tokens",
    )?
    .unwrap_or(if tgi { 20 } else { 100 });
    if max_new > limit {
        return Err(invalid(format!(
            "Input validation error: `max_new_tokens` must be <= {limit}. Given: {max_new}"
        )));
    }
    let temperature = parse::<f64>(get("temperature"), "temperature")?;
    if temperature.is_some_and(|t| !(0.0..=100.0).contains(&t)) {
        return Err(invalid(
            "Input validation error: `temperature` must be between 0 and 100",
        ));
    }
    let top_p = parse::<f64>(get("top_p"), "top_p")?;
    if top_p.is_some_and(|p| !(p > 0.0 && p <= 1.0)) {
        return Err(invalid(
            "Input validation error: `top_p` must be > 0.0 and <= 1.0",
        ));
    }
    let stop = match get("stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(v) => parse::<Vec<String>>(Some(v), "stop")?.unwrap_or_default(),
    };
    Ok(GenerationParams {
        max_new_tokens: max_new,
        temperature,
        top_k: parse::<usize>(get("top_k"), "top_k")?.filter(|k| *k > 0),
        top_p: top_p.filter(|p| *p < 1.0),
        do_sample: parse::<bool>(get("do_sample"), "do_sample")?.unwrap_or(false),
        seed: parse::<u64>(get("seed"), "seed")?.unwrap_or_else(rand::random),
        stop,
        logprobs: false,
    })
}

/// A chat message's `content`: a string or a list of text parts.
fn message_text(content: &Value) -> ApiResult<String> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => Ok(parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("")),
        _ => Err(invalid(
            "a message's `content` must be a string or a list of parts",
        )),
    }
}

#[derive(Deserialize)]
struct ChatRequest {
    messages: Vec<Value>,
    #[serde(default)]
    stream: bool,
}

/// `POST /models/{ns}/{name}/v1/chat/completions` (OpenAI-compatible).
pub async fn chat_completions(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<ApiPath<(String, String)>, ApiError>,
    query: QueryParams,
    headers: HeaderMap,
    InferenceJson(body): InferenceJson,
) -> Result<Response, InferenceError> {
    let ApiPath((ns, name)) = path?;
    let request: ChatRequest = serde_json::from_value(body.clone())
        .map_err(|e| invalid(format!("Invalid chat request: {e}")))?;
    if request.messages.is_empty() || request.messages.len() > state.inference.config().max_inputs {
        return Err(invalid(format!(
            "`messages` must hold between 1 and {} messages",
            state.inference.config().max_inputs
        ))
        .into());
    }
    let messages = request
        .messages
        .iter()
        .map(|m| {
            Ok(ChatMessage {
                role: m
                    .get("role")
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid("a message has no `role`"))?
                    .to_owned(),
                content: message_text(m.get("content").unwrap_or(&Value::Null))?,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let params = generation_params(&state, &body, false)?;
    let wait = wait_for_model(&headers, &body)?;
    // A chat request may name the GGUF file as its `model` (the OpenAI field).
    let gguf = query.get("gguf_file").or_else(|| {
        body.get("model")
            .and_then(Value::as_str)
            .filter(|m| m.to_ascii_lowercase().ends_with(".gguf"))
    });
    let ready = prepare(
        &state,
        &caller,
        &ns,
        &name,
        &query,
        Requested::Chat,
        wait,
        gguf,
    )
    .await?;
    let model_id = ready.model_id.clone();
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    if !request.stream {
        let generated = state
            .inference
            .run(ready, move |model| {
                let decoder = decoder(model)?;
                let prompt = decoder.chat_prompt(&messages)?;
                decoder.generate(&prompt, &params, false, &mut |_, _| true)
            })
            .await?;
        let completion = generated.tokens.len();
        return Ok(Json(ChatCompletion {
            id,
            object: "chat.completion",
            created,
            model: model_id,
            system_fingerprint: "trove",
            choices: vec![ChatChoice {
                index: 0,
                message: ChatOut {
                    role: "assistant",
                    content: generated.text,
                },
                finish_reason: generated.finish.openai(),
                logprobs: None,
            }],
            usage: Usage {
                prompt_tokens: generated.prompt_tokens,
                completion_tokens: completion,
                total_tokens: generated.prompt_tokens + completion,
            },
        })
        .into_response());
    }
    // Streaming: the generation runs on the inference threads and hands each piece to the
    // response body through a channel; a reader that goes away stops the generation.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<StreamEvent>();
    let runtime = state.inference.clone();
    let pieces = tx.clone();
    tokio::spawn(async move {
        let result = runtime
            .run(ready, move |model| {
                let decoder = decoder(model)?;
                let prompt = decoder.chat_prompt(&messages)?;
                decoder.generate(&prompt, &params, false, &mut |piece, _| {
                    piece.is_empty() || pieces.send(StreamEvent::Piece(piece.to_owned())).is_ok()
                })
            })
            .await;
        let _ = tx.send(StreamEvent::Done(result.map(|g| g.finish)));
    });
    let chunk = move |delta: Delta, finish: Option<&'static str>| ChatChunk {
        id: id.clone(),
        object: "chat.completion.chunk",
        created,
        model: model_id.clone(),
        system_fingerprint: "trove",
        choices: vec![ChunkChoice {
            index: 0,
            delta,
            finish_reason: finish,
            logprobs: None,
        }],
    };
    let stream = futures_util::stream::unfold((rx, false), move |(mut rx, done)| {
        let chunk = chunk.clone();
        async move {
            if done {
                return None;
            }
            let event = rx.recv().await;
            let (text, done) = match event {
                Some(StreamEvent::Piece(piece)) => (
                    sse(&chunk(
                        Delta {
                            role: "assistant",
                            content: piece,
                        },
                        None,
                    )),
                    false,
                ),
                Some(StreamEvent::Done(Ok(finish))) => {
                    let last = sse(&chunk(
                        Delta {
                            role: "assistant",
                            content: String::new(),
                        },
                        Some(finish.openai()),
                    ));
                    (format!("{last}data: [DONE]\n\n"), true)
                }
                Some(StreamEvent::Done(Err(e))) => (
                    sse(&StreamError {
                        error: e.to_string(),
                    }),
                    true,
                ),
                None => return None,
            };
            Some((
                Ok::<_, std::convert::Infallible>(Bytes::from(text)),
                (rx, done),
            ))
        }
    });
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

enum StreamEvent {
    Piece(String),
    Done(ApiResult<FinishReason>),
}

fn sse<T: Serialize>(value: &T) -> String {
    match serde_json::to_string(value) {
        Ok(json) => format!("data: {json}\n\n"),
        Err(_) => String::new(),
    }
}

#[derive(Serialize)]
struct StreamError {
    error: String,
}

#[derive(Serialize)]
struct ChatCompletion {
    id: String,
    object: &'static str,
    created: u64,
    model: String,
    system_fingerprint: &'static str,
    choices: Vec<ChatChoice>,
    usage: Usage,
}

#[derive(Serialize)]
struct ChatChoice {
    index: u32,
    message: ChatOut,
    finish_reason: &'static str,
    logprobs: Option<Value>,
}

#[derive(Serialize)]
struct ChatOut {
    role: &'static str,
    content: String,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: usize,
    completion_tokens: usize,
    total_tokens: usize,
}

#[derive(Serialize, Clone)]
struct ChatChunk {
    id: String,
    object: &'static str,
    created: u64,
    model: String,
    system_fingerprint: &'static str,
    choices: Vec<ChunkChoice>,
}

#[derive(Serialize, Clone)]
struct ChunkChoice {
    index: u32,
    delta: Delta,
    finish_reason: Option<&'static str>,
    logprobs: Option<Value>,
}

#[derive(Serialize, Clone)]
struct Delta {
    role: &'static str,
    content: String,
}
