//! The threads that run models: a fixed pool of its own, so that a long generation or a
//! model load never occupies the async runtime's workers or its blocking pool (which serves
//! git, file reads and the database).

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed number of named threads taking jobs in order.
pub struct Pool {
    jobs: Mutex<Sender<Job>>,
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
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("trove-infer-{i}"))
                .spawn(move || worker(&rx));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start an inference thread");
            }
        }
        Pool {
            jobs: Mutex::new(tx),
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
        let job: Job = Box::new(move || {
            // The waiter may have gone (timeout, client disconnected): nothing to tell.
            let _ = tx.send(f());
        });
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job)
            .map_err(|_| PoolStopped)?;
        rx.await.map_err(|_| PoolStopped)
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
}
