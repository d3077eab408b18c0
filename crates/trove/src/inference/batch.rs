//! Single-input encoder requests run together. While a model is busy, the single-input
//! requests for it (feature extraction of one string, text classification of one string)
//! wait in its slot's [`Waiting`] list; the one whose turn comes takes the waiting requests
//! that ask the same of the model (the same task and options, up to
//! [`trove_infer::MAX_BATCH`]) and runs them as one padded batch, the path a list `inputs`
//! already takes, and each request gets its own row. Nobody waits for company: a request
//! that finds the model idle runs at once, alone or with whatever is already waiting, and
//! there is no delay window. An input that cannot run (no tokens, too long) gets its own
//! 422 and never fails the others. The list holds admitted requests only, so the model's
//! queue bound (`[inference] max_concurrent + max_queue`) bounds it too.

use crate::error::{ApiError, ApiResult};
use crate::inference::{Ready, Runtime, infer_error, timed_out};
use bytes::Bytes;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::oneshot;
use trove_infer::{InferError, MAX_BATCH, Model, Pooling, ScoreFunction};

/// What a single-input request asks of an encoder; requests asking the same can share a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Single {
    /// Feature extraction: the embedding, L2-normalized when asked.
    Embed { normalize: bool },
    /// Text classification: the label scores through this function (the model's own when
    /// `None`).
    Classify { function: Option<ScoreFunction> },
}

/// A single-input request's answer.
#[derive(Debug)]
pub enum Answer {
    /// The embedding's JSON, written on the inference thread (see [`embeddings_json`]).
    Embedding(Bytes),
    /// Label scores, highest first.
    Scores(Vec<(String, f32)>),
}

type Reply = oneshot::Sender<Result<Answer, InferError>>;

/// One request waiting for a run.
struct Pending {
    id: u64,
    single: Single,
    input: String,
    reply: Reply,
}

/// The single-input requests waiting for one model (one per registry slot).
#[derive(Default)]
pub struct Waiting {
    pending: Mutex<Vec<Pending>>,
    next_id: AtomicU64,
}

impl Waiting {
    /// Adds a request; its id and where its answer will come.
    fn push(
        &self,
        single: Single,
        input: String,
    ) -> (u64, oneshot::Receiver<Result<Answer, InferError>>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        self.lock().push(Pending {
            id,
            single,
            input,
            reply,
        });
        (id, answer)
    }

    /// Request `id` and the requests waiting after it that ask the same, in the order they
    /// came, up to `max` in all; `None` when `id` is no longer waiting (a run that took it
    /// is under way). Requests whose waiter has gone are dropped on the way.
    fn take(&self, id: u64, max: usize) -> Option<Vec<Pending>> {
        let mut pending = self.lock();
        let at = pending.iter().position(|p| p.id == id)?;
        let first = pending.remove(at);
        let single = first.single;
        let mut batch = vec![first];
        let mut i = 0;
        while i < pending.len() && batch.len() < max {
            if pending[i].reply.is_closed() {
                pending.remove(i);
            } else if pending[i].single == single {
                batch.push(pending.remove(i));
            } else {
                i += 1;
            }
        }
        Some(batch)
    }

    /// Forgets request `id` (its waiter gave up).
    fn remove(&self, id: u64) {
        self.lock().retain(|p| p.id != id);
    }

    /// Requests waiting now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Pending>> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Single-input requests run, and the runs that ran them.
#[derive(Default)]
pub struct Counts {
    requests: AtomicU64,
    runs: AtomicU64,
}

impl Counts {
    fn ran(&self, requests: usize) {
        self.requests.fetch_add(requests as u64, Ordering::Relaxed);
        self.runs.fetch_add(1, Ordering::Relaxed);
    }

    /// (requests, runs) so far.
    pub fn get(&self) -> (u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.runs.load(Ordering::Relaxed),
        )
    }
}

impl Runtime {
    /// Runs one input on an encoder, together with the other single-input requests waiting
    /// for the same model that ask the same (module documentation), within the request's
    /// time.
    pub async fn run_single(
        &self,
        ready: Ready,
        single: Single,
        input: String,
    ) -> ApiResult<Answer> {
        let Ready {
            model,
            admission,
            deadline,
            ..
        } = ready;
        let waiting = admission.waiting();
        let (id, mut answer) = waiting.push(single, input);
        let work = async {
            tokio::select! {
                biased;
                got = &mut answer => return Ok(got),
                permit = self.registry.turn(&admission) => {
                    let permit = permit.ok_or_else(|| {
                        ApiError::internal(anyhow::anyhow!("inference semaphore closed"))
                    })?;
                    // Not taken: a run that holds this request is under way and answers it.
                    if let Some(batch) = waiting.take(id, MAX_BATCH) {
                        self.singles.ran(batch.len());
                        let model = model.clone();
                        self.pool
                            .spawn(move || {
                                run_batch(&model, batch);
                                drop(permit);
                            })
                            .map_err(ApiError::internal)?;
                    }
                }
            }
            Ok::<_, ApiError>((&mut answer).await)
        };
        match tokio::time::timeout_at(deadline.into(), work).await {
            Ok(Ok(Ok(Ok(answer)))) => Ok(answer),
            Ok(Ok(Ok(Err(e)))) => Err(infer_error(e)),
            // The run's job went away without answering (the threads stopped, or it panicked).
            Ok(Ok(Err(_))) => Err(ApiError::internal(anyhow::anyhow!(
                "an inference run ended without an answer"
            ))),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                waiting.remove(id);
                Err(timed_out(self.config()))
            }
        }
    }
}

/// Runs requests that ask the same of the model as one batch and answers each.
fn run_batch(model: &Model, batch: Vec<Pending>) {
    let Some(single) = batch.first().map(|p| p.single) else {
        return;
    };
    let inputs: Vec<&str> = batch.iter().map(|p| p.input.as_str()).collect();
    let answers: Result<Vec<Result<Answer, InferError>>, InferError> = match model {
        Model::Decoder(_) => Err(InferError::Unsupported(
            "this task needs an encoder model".into(),
        )),
        Model::Encoder(encoder) => match single {
            Single::Embed { normalize } => {
                let pooled = encoder.pooling() != Pooling::Tokens;
                encoder.embed_each(&inputs, normalize).map(|all| {
                    all.into_iter()
                        .map(|one| {
                            one.and_then(|vectors| embeddings_json(vec![vectors], pooled, true))
                                .map(Answer::Embedding)
                        })
                        .collect()
                })
            }
            Single::Classify { function } => encoder
                .classify_each(&inputs, function)
                .map(|all| all.into_iter().map(|one| one.map(Answer::Scores)).collect()),
        },
    };
    match answers {
        Ok(answers) => {
            for (pending, answer) in batch.into_iter().zip(answers) {
                // The waiter may have gone (timeout, client disconnected): nothing to tell.
                let _ = pending.reply.send(answer);
            }
        }
        Err(e) => {
            let message = e.to_string();
            for pending in batch {
                let _ = pending.reply.send(Err(same_error(&e, &message)));
            }
        }
    }
}

/// A failure of a whole run, for each of its requests.
fn same_error(e: &InferError, message: &str) -> InferError {
    match e {
        InferError::Unsupported(m) => InferError::Unsupported(m.clone()),
        InferError::BadModel(m) => InferError::BadModel(m.clone()),
        InferError::BadInput(m) => InferError::BadInput(m.clone()),
        InferError::Runtime(_) => InferError::Runtime(message.to_owned()),
    }
}

/// Embeddings as the Hub shapes them — one pooled vector `[f32…]` for a string, `[[f32…]…]`
/// for a list; token-level models one more level — serialized on the inference thread
/// straight from the f32 values: each number in the shortest form that reads back to the
/// same f32 (9 digits at most), not widened to f64's 17 through a `serde_json::Value`.
pub fn embeddings_json(
    vectors: Vec<Vec<Vec<f32>>>,
    pooled: bool,
    single: bool,
) -> Result<Bytes, InferError> {
    let first = |v: Vec<Vec<f32>>| v.into_iter().next().unwrap_or_default();
    let json = match (pooled, single) {
        (true, true) => serde_json::to_vec(&vectors.into_iter().next().map(first)),
        (true, false) => serde_json::to_vec(&vectors.into_iter().map(first).collect::<Vec<_>>()),
        (false, true) => serde_json::to_vec(&vectors.into_iter().next()),
        (false, false) => serde_json::to_vec(&vectors),
    };
    json.map(Bytes::from)
        .map_err(|e| InferError::Runtime(format!("cannot write JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMBED: Single = Single::Embed { normalize: false };
    const CLASSIFY: Single = Single::Classify { function: None };

    #[test]
    fn a_run_takes_its_request_then_the_same_asks_in_order_up_to_the_bound() {
        let waiting = Waiting::default();
        let (a, _ra) = waiting.push(EMBED, "a".into());
        let (_b, _rb) = waiting.push(CLASSIFY, "b".into());
        let (_c, rc) = waiting.push(EMBED, "c".into());
        let (_d, _rd) = waiting.push(EMBED, "d".into());
        let (_e, _re) = waiting.push(Single::Embed { normalize: true }, "e".into());
        let (f, _rf) = waiting.push(EMBED, "f".into());
        drop(rc);
        let batch = waiting.take(a, 3).expect("waiting");
        let inputs: Vec<&str> = batch.iter().map(|p| p.input.as_str()).collect();
        assert_eq!(
            inputs,
            ["a", "d", "f"],
            "same asks only; a gone waiter dropped"
        );
        assert_eq!(waiting.len(), 2, "b and e wait for runs of their own");
        assert!(waiting.take(f, 16).is_none(), "f is in a run already");
        assert!(waiting.take(a, 16).is_none());
    }

    #[test]
    fn a_request_alone_runs_alone_and_a_gone_one_is_forgotten() {
        let waiting = Waiting::default();
        let (a, _ra) = waiting.push(EMBED, "a".into());
        assert_eq!(waiting.take(a, 16).map(|b| b.len()), Some(1));
        let (b, _rb) = waiting.push(EMBED, "b".into());
        waiting.remove(b);
        assert_eq!(waiting.len(), 0);
    }
}
