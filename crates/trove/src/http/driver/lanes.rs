//! The threads that serve the driver's connections: one per core, each running a
//! single-threaded runtime of its own. A connection is accepted on the main runtime and
//! given to the lane with the fewest connections, and stays there for its life: its
//! requests, their handlers and what they spawn run on that one thread, so serving a request
//! never wakes another thread. (On the multi-threaded runtime a woken connection's worker
//! woke a sleeping sibling to share the work, and back: a `futex` and a context switch per
//! request or so, a fifth of a small download's CPU.) Blocking work (git, SQLite, hashing)
//! still goes to each runtime's blocking threads; connections handed to hyper go back to the
//! main runtime.
//!
//! A lane's runtime lives until [`Lanes::stop`]: resources opened on it (a database
//! connection a handler opened, say) stay usable from the other runtimes until then.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::oneshot;

/// The lanes, shared by the accept loop (see the module docs).
#[derive(Clone)]
pub struct Lanes {
    inner: Arc<Inner>,
}

struct Inner {
    lanes: Vec<Lane>,
    /// Where the search for the least busy lane starts (in turn, so that ties spread).
    turn: AtomicUsize,
    /// The threads and their stop signals, taken by [`Lanes::stop`].
    running: std::sync::Mutex<Vec<(oneshot::Sender<()>, std::thread::JoinHandle<()>)>>,
}

struct Lane {
    handle: tokio::runtime::Handle,
    /// Connections being served on this lane.
    connections: Arc<AtomicUsize>,
}

impl Lanes {
    /// One lane per core this process may use (at least one).
    pub fn per_core() -> io::Result<Lanes> {
        let count = std::thread::available_parallelism().map_or(1, |n| n.get());
        Lanes::start(count)
    }

    /// `count` lanes (at least one), their threads started.
    pub fn start(count: usize) -> io::Result<Lanes> {
        let mut lanes = Vec::new();
        let mut running = Vec::new();
        for i in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(format!("trove-lane-{i}-blocking"))
                .build()?;
            let handle = runtime.handle().clone();
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("trove-lane-{i}"))
                .spawn(move || {
                    runtime.block_on(async {
                        let _ = stop_rx.await;
                    });
                    // Dropping the runtime waits for its blocking work (a commit whose
                    // client went away) to finish.
                    drop(runtime);
                })?;
            lanes.push(Lane {
                handle,
                connections: Arc::new(AtomicUsize::new(0)),
            });
            running.push((stop_tx, thread));
        }
        Ok(Lanes {
            inner: Arc::new(Inner {
                lanes,
                turn: AtomicUsize::new(0),
                running: std::sync::Mutex::new(running),
            }),
        })
    }

    /// How many lanes there are.
    pub fn count(&self) -> usize {
        self.inner.lanes.len()
    }

    /// Runs `connection` on the lane with the fewest connections.
    pub fn spawn<F>(&self, connection: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let lanes = &self.inner.lanes;
        let start = self.inner.turn.fetch_add(1, Ordering::Relaxed);
        let mut chosen = &lanes[start % lanes.len()];
        for step in 1..lanes.len() {
            let lane = &lanes[(start + step) % lanes.len()];
            if lane.connections.load(Ordering::Relaxed) < chosen.connections.load(Ordering::Relaxed)
            {
                chosen = lane;
            }
        }
        let served = Served(Arc::clone(&chosen.connections));
        served.0.fetch_add(1, Ordering::Relaxed);
        chosen.handle.spawn(async move {
            let _served = served;
            connection.await;
        });
    }

    /// Stops every lane: what still runs on them is dropped, and each lane's blocking work
    /// is waited for. Call it once the connections have been served.
    pub async fn stop(&self) {
        let running =
            std::mem::take(&mut *self.inner.running.lock().unwrap_or_else(|e| e.into_inner()));
        let joined = tokio::task::spawn_blocking(move || {
            for (stop, thread) in running {
                let _ = stop.send(());
                if thread.join().is_err() {
                    tracing::error!("a connection thread panicked while stopping");
                }
            }
        })
        .await;
        if let Err(e) = joined {
            tracing::error!(error = %e, "stopping the connection threads failed");
        }
    }
}

/// Counts a connection on its lane while it is served.
struct Served(Arc<AtomicUsize>);

impl Drop for Served {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn connections_spread_over_the_lanes_and_run_on_their_threads() {
        let lanes = Lanes::start(2).expect("lanes");
        assert_eq!(lanes.count(), 2);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (release_tx, release_rx) = tokio::sync::watch::channel(false);
        for _ in 0..4 {
            let tx = tx.clone();
            let mut release = release_rx.clone();
            lanes.spawn(async move {
                let name = std::thread::current().name().map(str::to_owned);
                let _ = tx.send(name);
                let _ = release.wait_for(|r| *r).await;
            });
        }
        let mut names = Vec::new();
        for _ in 0..4 {
            let name = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("served in time")
                .flatten()
                .expect("a named thread");
            names.push(name);
        }
        names.sort();
        assert_eq!(
            names,
            [
                "trove-lane-0",
                "trove-lane-0",
                "trove-lane-1",
                "trove-lane-1"
            ]
        );
        let counts: Vec<usize> = lanes
            .inner
            .lanes
            .iter()
            .map(|l| l.connections.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts, [2, 2]);
        let _ = release_tx.send(true);
        lanes.stop().await;
        assert!(
            lanes
                .inner
                .lanes
                .iter()
                .all(|l| l.connections.load(Ordering::Relaxed) == 0)
        );
    }

    #[tokio::test]
    async fn stopping_waits_for_blocking_work_on_the_lanes() {
        let lanes = Lanes::start(1).expect("lanes");
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (started_tx, started_rx) = oneshot::channel();
        let flag = Arc::clone(&done);
        lanes.spawn(async move {
            let work = tokio::task::spawn_blocking(move || {
                let _ = started_tx.send(());
                std::thread::sleep(Duration::from_millis(300));
                flag.store(true, Ordering::SeqCst);
            });
            let _ = work.await;
        });
        started_rx.await.expect("the blocking work started");
        lanes.stop().await;
        assert!(done.load(Ordering::SeqCst));
    }
}
