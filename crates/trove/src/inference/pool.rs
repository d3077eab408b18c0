//! The threads that run models: a fixed pool of its own, so that a long generation or a
//! model load never occupies the async runtime's workers or its blocking pool (which serves
//! git, file reads and the database).
//!
//! Each thread is the one worker of its own rayon pool. candle's CPU kernels (softmax and
//! layer norm in `candle-nn`, the `gemm` crate's matrix products) hand their parallel parts
//! to rayon's *current* pool: from a plain thread that is rayon's global pool, so every such
//! operation woke the global workers, the caller slept until they were done, and the workers
//! then spun in `sched_yield` waiting for the next one — a third of the hub's CPU under a
//! stream of small requests, taken from the client and the HTTP side on a small machine. On
//! a one-worker pool the same parallel parts run inline on the thread that asked, and
//! concurrent requests still use as many cores as there are inference threads.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed number of named threads taking jobs in order.
pub struct Pool {
    jobs: Mutex<Sender<Job>>,
    /// Kept so the threads' pools live as long as this; each runs [`worker`] until `jobs`
    /// is dropped.
    _threads: Vec<rayon::ThreadPool>,
}

/// The pool's threads are gone (the process is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the inference threads have stopped")]
pub struct PoolStopped;

impl Pool {
    /// Starts `threads` threads (at least one).
    pub fn new(threads: usize) -> Pool {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut pools = Vec::new();
        for i in 0..threads.max(1) {
            let built = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .thread_name(move |_| format!("trove-infer-{i}"))
                .build();
            match built {
                Ok(pool) => {
                    let rx = rx.clone();
                    // The pool's one worker takes jobs from the shared queue until it closes.
                    pool.spawn(move || worker(&rx));
                    pools.push(pool);
                }
                Err(e) => tracing::error!(error = %e, "could not start an inference thread"),
            }
        }
        Pool {
            jobs: Mutex::new(tx),
            _threads: pools,
        }
    }

    /// Runs `f` on one of the pool's threads and waits for its result without blocking the
    /// caller's thread.
    pub async fn run<T, F>(&self, f: F) -> Result<T, PoolStopped>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.spawn(move || {
            // The waiter may have gone (timeout, client disconnected): nothing to tell.
            let _ = tx.send(f());
        })?;
        rx.await.map_err(|_| PoolStopped)
    }

    /// Queues `f` for one of the pool's threads and returns at once; `f` tells whoever waits
    /// for it itself.
    pub fn spawn<F>(&self, f: F) -> Result<(), PoolStopped>
    where
        F: FnOnce() + Send + 'static,
    {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(Box::new(f))
            .map_err(|_| PoolStopped)
    }
}

fn worker(jobs: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let rx = jobs.lock().unwrap_or_else(|e| e.into_inner());
            rx.recv()
        };
        let Ok(job) = job else { return };
        // A panicking model must not take the thread with it.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
            tracing::error!("an inference job panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_on_its_own_threads_and_survives_a_panic() {
        let pool = Pool::new(2);
        let name = pool
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .expect("ran");
        assert!(name.is_some_and(|n| n.starts_with("trove-infer-")));
        let panicked = pool.run(|| -> u8 { panic!("boom") }).await;
        assert!(panicked.is_err(), "the waiter hears the job died");
        assert_eq!(pool.run(|| 7).await.expect("still running"), 7);
    }

    #[tokio::test]
    async fn rayon_work_in_a_job_stays_on_its_thread() {
        let pool = Pool::new(2);
        let (threads, names) = pool
            .run(|| {
                use rayon::prelude::*;
                let names: std::collections::HashSet<Option<String>> = (0..64)
                    .into_par_iter()
                    .map(|_| std::thread::current().name().map(str::to_owned))
                    .collect();
                (rayon::current_num_threads(), names)
            })
            .await
            .expect("ran");
        assert_eq!(threads, 1);
        assert_eq!(
            names.len(),
            1,
            "one thread did all the parallel parts: {names:?}"
        );
        assert!(
            names
                .iter()
                .all(|n| n.as_deref().is_some_and(|n| n.starts_with("trove-infer-")))
        );
    }
}
