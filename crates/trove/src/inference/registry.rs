//! Loaded models: one slot per (repository, commit), loaded once however many requests ask
//! at the same time, kept in memory while the budget allows (least recently used unloaded
//! first), each with its own concurrency limit and bounded queue; and why the models that
//! failed to load failed, so that their requests get that answer at once instead of another
//! load (a commit's files never change: a push that fixes them is a new key).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The load rate assumed before any load was measured (bytes of loaded weights per second).
const INITIAL_LOAD_RATE: u64 = 200 << 20;
/// Load failures remembered, the oldest forgotten first.
const REMEMBERED_FAILURES: usize = 1024;
use super::batch::Waiting;
use crate::error::{ApiError, ApiResult, Refusal};
use crate::repos::bounded::Bounded;
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore};
use trove_infer::Model;

/// Which model: a repository at one commit, from its safetensors or one of its GGUF files.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub repo_id: i64,
    pub commit: String,
    pub gguf: Option<String>,
}

struct Slot {
    model: OnceCell<Arc<Model>>,
    /// When the load under way began.
    load_started: Mutex<Option<Instant>>,
    permits: Arc<Semaphore>,
    /// Requests admitted and not finished (running or waiting for a permit or the load).
    admitted: AtomicUsize,
    last_used: AtomicU64,
    /// Single-input requests waiting to run together.
    waiting: Waiting,
}

/// The model's queue is full: come back later.
#[derive(Debug)]
pub struct Busy;

pub struct Registry {
    budget_bytes: u64,
    max_concurrent: usize,
    max_queue: usize,
    slots: Mutex<HashMap<Key, Arc<Slot>>>,
    tick: AtomicU64,
    /// Bytes of weights loaded per second, as the last loads measured it (a running mean).
    load_rate: AtomicU64,
    /// Why each model whose files could not be loaded failed (the message of its
    /// `ModelLoadFailed` answer).
    failures: Bounded<Key, String>,
}

/// A request let in for one model; leaves the queue when dropped.
pub struct Admission {
    slot: Arc<Slot>,
    key: Key,
}

impl Admission {
    /// The single-input requests waiting for the admitted request's model.
    pub fn waiting(&self) -> &Waiting {
        &self.slot.waiting
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.slot.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Registry {
    pub fn new(budget_bytes: u64, max_concurrent: usize, max_queue: usize) -> Registry {
        Registry {
            budget_bytes,
            max_concurrent: max_concurrent.max(1),
            max_queue,
            slots: Mutex::new(HashMap::new()),
            tick: AtomicU64::new(0),
            load_rate: AtomicU64::new(INITIAL_LOAD_RATE),
            failures: Bounded::new(REMEMBERED_FAILURES),
        }
    }

    /// The answer of the last load of `key`'s model, if it failed because of the model's
    /// files.
    pub fn failure(&self, key: &Key) -> Option<ApiError> {
        self.failures
            .get(key)
            .map(|message| ApiError::refused(Refusal::ModelLoadFailed, message))
    }

    pub fn budget_bytes(&self) -> u64 {
        self.budget_bytes
    }

    /// Lets a request in for `key`, or [`Busy`] when `max_concurrent + max_queue` requests
    /// are already in.
    pub fn admit(&self, key: &Key) -> Result<Admission, Busy> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let slot = slots
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Slot {
                    model: OnceCell::new(),
                    load_started: Mutex::new(None),
                    permits: Arc::new(Semaphore::new(self.max_concurrent)),
                    admitted: AtomicUsize::new(0),
                    last_used: AtomicU64::new(0),
                    waiting: Waiting::default(),
                })
            })
            .clone();
        let before = slot.admitted.fetch_add(1, Ordering::AcqRel);
        if before >= self.max_concurrent + self.max_queue {
            slot.admitted.fetch_sub(1, Ordering::AcqRel);
            return Err(Busy);
        }
        slot.last_used
            .store(self.tick.fetch_add(1, Ordering::AcqRel), Ordering::Release);
        Ok(Admission {
            slot,
            key: key.clone(),
        })
    }

    /// The admitted request's model, loaded by `load` if no one has yet (concurrent first
    /// requests wait for the one load); then models are unloaded, least recently used first,
    /// until the loaded ones fit the budget again. A load refused for the model's files
    /// (`ModelLoadFailed`) is remembered: the requests waiting for it, and any later one for
    /// the same key, get that answer without loading again.
    pub async fn model<F>(&self, admission: &Admission, load: F) -> ApiResult<Arc<Model>>
    where
        F: Future<Output = ApiResult<Model>>,
    {
        let slot = &admission.slot;
        let model = slot
            .model
            .get_or_try_init(|| async {
                // A waiter whose turn to load comes after a failed load finds it here.
                if let Some(failed) = self.failure(&admission.key) {
                    return Err(failed);
                }
                let started = Instant::now();
                *slot.load_started.lock().unwrap_or_else(|e| e.into_inner()) = Some(started);
                let loaded = load.await;
                if let Err(ApiError::InferenceRefused {
                    refusal: Refusal::ModelLoadFailed,
                    message,
                }) = &loaded
                {
                    self.failures.put(admission.key.clone(), message.clone());
                }
                *slot.load_started.lock().unwrap_or_else(|e| e.into_inner()) = None;
                let model = loaded?;
                self.measured(model.memory_bytes(), started.elapsed().as_secs_f64());
                Ok(Arc::new(model))
            })
            .await?
            .clone();
        self.evict(&admission.slot);
        Ok(model)
    }

    /// Whether the admitted request's model is loaded.
    pub fn is_ready(&self, admission: &Admission) -> bool {
        admission.slot.model.initialized()
    }

    /// Whether a load of the admitted request's model is under way.
    pub fn is_loading(&self, admission: &Admission) -> bool {
        admission
            .slot
            .load_started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Seconds until a model of `bytes` is loaded, at the measured load rate, less the time
    /// its load under way has already taken (at least one second while it is not done).
    pub fn estimated_secs(&self, admission: &Admission, bytes: u64) -> f64 {
        let rate = self.load_rate.load(Ordering::Acquire).max(1) as f64;
        let elapsed = admission
            .slot
            .load_started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .map_or(0.0, |s| s.elapsed().as_secs_f64());
        (bytes as f64 / rate - elapsed).max(1.0)
    }

    /// Folds one load's rate into the running mean.
    fn measured(&self, bytes: u64, secs: f64) {
        if secs <= 0.0 || bytes == 0 {
            return;
        }
        let rate = (bytes as f64 / secs) as u64;
        let old = self.load_rate.load(Ordering::Acquire);
        self.load_rate
            .store((old / 2).saturating_add(rate / 2).max(1), Ordering::Release);
    }

    /// Waits for one of the model's run permits (`None` only if the semaphore were closed,
    /// which the registry never does).
    pub async fn turn(&self, admission: &Admission) -> Option<OwnedSemaphorePermit> {
        admission.slot.permits.clone().acquire_owned().await.ok()
    }

    /// Whether a model of this repository is loaded (any commit): `warm`.
    pub fn is_loaded(&self, repo_id: i64) -> bool {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .iter()
            .any(|(k, s)| k.repo_id == repo_id && s.model.initialized())
    }

    /// The repositories with a model loaded (at any revision), ascending, each once.
    pub fn loaded_repo_ids(&self) -> Vec<i64> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let mut ids: Vec<i64> = slots
            .iter()
            .filter(|(_, s)| s.model.initialized())
            .map(|(k, _)| k.repo_id)
            .collect();
        drop(slots);
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Bytes the loaded models take.
    pub fn loaded_bytes(&self) -> u64 {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .values()
            .filter_map(|s| s.model.get())
            .map(|m| m.memory_bytes())
            .sum()
    }

    fn evict(&self, keep: &Arc<Slot>) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        // Slots that never loaded and have no one waiting are dropped on the way.
        slots.retain(|_, s| s.model.initialized() || s.admitted.load(Ordering::Acquire) > 0);
        let mut total: u64 = slots
            .values()
            .filter_map(|s| s.model.get())
            .map(|m| m.memory_bytes())
            .sum();
        while total > self.budget_bytes {
            // Only idle models go; busy ones stay (the budget is exceeded until they finish).
            let victim = slots
                .iter()
                .filter(|(_, s)| {
                    !Arc::ptr_eq(s, keep)
                        && s.model.initialized()
                        && s.admitted.load(Ordering::Acquire) == 0
                })
                .min_by_key(|(_, s)| s.last_used.load(Ordering::Acquire))
                .map(|(k, _)| k.clone());
            let Some(victim) = victim else { break };
            if let Some(slot) = slots.remove(&victim) {
                let bytes = slot.model.get().map_or(0, |m| m.memory_bytes());
                total = total.saturating_sub(bytes);
                tracing::info!(
                    repo.id = victim.repo_id,
                    commit = %victim.commit,
                    size_bytes = bytes,
                    "unloaded a model to stay within the inference memory budget"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: i64) -> Key {
        Key {
            gguf: None,
            repo_id: id,
            commit: "c".into(),
        }
    }

    #[test]
    fn admission_is_bounded_by_concurrency_plus_queue() {
        let registry = Registry::new(1 << 20, 1, 2);
        let a = registry.admit(&key(1)).expect("running");
        let b = registry.admit(&key(1)).expect("queued");
        let c = registry.admit(&key(1)).expect("queued");
        assert!(registry.admit(&key(1)).is_err(), "the queue is full");
        assert!(
            registry.admit(&key(2)).is_ok(),
            "another model has its own queue"
        );
        drop(b);
        let _d = registry.admit(&key(1)).expect("room again");
        drop((a, c));
    }

    #[tokio::test]
    async fn a_failed_load_is_remembered_for_its_key_only() {
        let registry = Registry::new(1 << 20, 1, 2);
        let loads = AtomicUsize::new(0);
        let broken = || async {
            loads.fetch_add(1, Ordering::AcqRel);
            Err(ApiError::refused(
                Refusal::ModelLoadFailed,
                "config.json: missing field `hidden_size`",
            ))
        };
        let admission = registry.admit(&key(1)).expect("admitted");
        let first = registry.model(&admission, broken()).await;
        let again = registry.model(&admission, broken()).await;
        for answer in [first, again] {
            match answer {
                Err(ApiError::InferenceRefused { refusal, message }) => {
                    assert_eq!(refusal, Refusal::ModelLoadFailed);
                    assert!(message.contains("hidden_size"), "{message}");
                }
                _ => panic!("the load's error"),
            }
        }
        assert_eq!(
            loads.load(Ordering::Acquire),
            1,
            "loaded once, then remembered"
        );
        assert!(registry.failure(&key(1)).is_some());
        assert!(!registry.is_loading(&admission));
        // Another commit (a push that fixes the files) is another key: it loads.
        assert!(registry.failure(&key(2)).is_none());
        // A failure that is not the model's files (a store error) is not remembered.
        let other = registry.admit(&key(3)).expect("admitted");
        let failed = registry
            .model(&other, async {
                Err(ApiError::internal(anyhow::anyhow!("disk unplugged")))
            })
            .await;
        assert!(failed.is_err());
        assert!(registry.failure(&key(3)).is_none());
    }
}
