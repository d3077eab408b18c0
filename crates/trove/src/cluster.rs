//! What one node of a hub knows about the others: its own id, whether it is draining (a
//! SIGTERM came; `/readyz` answers 503 from then on), and leases — the rows in the shared
//! database through which background work (the search index's jobs, webhook delivery,
//! garbage collection) runs on exactly one node at a time and moves to another node when
//! its holder dies. On SQLite there is one node and every lease is its own; the code path
//! is the same.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use trove_db::Db;

/// How long a lease lasts unless renewed. A node that dies holds its work back this long
/// at most.
pub const LEASE_TTL: Duration = Duration::from_secs(15);
/// How often a holder renews (and a waiting node asks): a third of the term, so that one
/// slow renewal does not lose the lease.
pub const LEASE_RENEW: Duration = Duration::from_secs(5);

/// The leases of the background jobs, by name (what `GET /api/admin/cluster` lists).
pub mod leases {
    /// Index repositories never indexed, roll the download counters every hour.
    pub const INDEX: &str = "index";
    /// Drain the webhook delivery queue.
    pub const WEBHOOKS: &str = "webhooks";
    /// A garbage collection of the store (and putting back what a stopped one moved aside).
    pub const GC: &str = "gc";
    /// On PostgreSQL, held by a starting node while it decides whether the repositories need
    /// the check of a start after a crash, and by the node that checks them until its walk
    /// ends (`repos::reconcile::claim`): no other node serves meanwhile.
    pub const REPO_CHECK: &str = "repo-check";
}

/// [`LEASE_TTL`] in milliseconds, as the lease rows count it.
pub(crate) fn ttl_ms() -> i64 {
    i64::try_from(LEASE_TTL.as_millis()).unwrap_or(i64::MAX)
}

/// This node.
#[derive(Debug)]
pub struct Node {
    id: String,
    draining: AtomicBool,
    /// Cancelled when the node stops accepting connections on its way out: answers that
    /// never end by themselves (a followed log, a proxied Space connection) end then, so
    /// that the drain waits only for work that finishes.
    closing: CancellationToken,
}

impl Node {
    /// A node named `TROVE_NODE_ID` when set (stable names read better in logs and in the
    /// lease table), else `<host>-<pid>-<random>`: unique among the nodes of a hub, and new
    /// at each start, so a restarted node never mistakes its predecessor's leases for its own.
    pub fn from_env() -> Node {
        let id = std::env::var("TROVE_NODE_ID")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty() && s.len() <= 200)
            .unwrap_or_else(|| {
                let host = std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| "node".to_owned());
                let nonce: u32 = rand::random();
                format!("{host}-{}-{nonce:08x}", std::process::id())
            });
        Node::named(id)
    }

    pub fn named(id: String) -> Node {
        Node {
            id,
            draining: AtomicBool::new(false),
            closing: CancellationToken::new(),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// From now on `/readyz` answers 503: a load balancer stops sending new requests here.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The node stops accepting connections: every answer that follows [`Self::closing`]
    /// ends.
    pub fn start_closing(&self) {
        self.closing.cancel();
    }

    /// Cancelled once the node stops accepting connections ([`Self::start_closing`]).
    pub fn closing(&self) -> &CancellationToken {
        &self.closing
    }
}

/// Runs `job` on this node for as long as it holds the lease `name`, for ever: waits (asking
/// every [`LEASE_RENEW`]) while another node holds it, starts `job` once it has it, renews
/// it while `job` runs, and drops `job` (cancelling it at its next await) if a renewal finds
/// the lease taken over — a node cut off from the database long enough for its lease to
/// expire stops, and another node's copy runs instead. `job` must be safe to restart from
/// the beginning (every job given here is idempotent). When `job` returns, the lease is
/// released and the loop starts over.
pub async fn run_while_leased<F, Fut>(
    db: Db,
    node: std::sync::Arc<Node>,
    name: &'static str,
    job: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    if db.backend() == trove_db::Backend::Sqlite {
        // One process serves a SQLite hub: the job is its own, with no lease to wait for (a
        // process killed a moment ago would otherwise hold the work back until its lease
        // expired).
        job().await;
        return;
    }
    let ttl_ms = i64::try_from(LEASE_TTL.as_millis()).unwrap_or(i64::MAX);
    loop {
        if node.is_draining() {
            return;
        }
        match db
            .try_lease(name, node.id(), ttl_ms, crate::clock::now_ms())
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tokio::time::sleep(LEASE_RENEW).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(lease = name, error = %e, "cluster.lease_failed");
                tokio::time::sleep(LEASE_RENEW).await;
                continue;
            }
        }
        tracing::info!(lease = name, node = node.id(), "cluster.lease_taken");
        let renew = async {
            let mut tick = tokio::time::interval(LEASE_RENEW);
            tick.tick().await;
            loop {
                tick.tick().await;
                if node.is_draining() {
                    return "draining";
                }
                match db
                    .try_lease(name, node.id(), ttl_ms, crate::clock::now_ms())
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => return "taken over",
                    // A database that does not answer: keep going while the lease may still
                    // be ours; the next renewal that answers decides.
                    Err(e) => {
                        tracing::warn!(lease = name, error = %e, "cluster.lease_renew_failed")
                    }
                }
            }
        };
        let why = tokio::select! {
            () = job() => "job finished",
            why = renew => why,
        };
        tracing::info!(
            lease = name,
            node = node.id(),
            reason = why,
            "cluster.lease_ended"
        );
        if why != "taken over" {
            let _ = db.release_lease(name, node.id()).await;
        }
        if why == "job finished" {
            tokio::time::sleep(LEASE_RENEW).await;
        }
    }
}

/// Holds the lease `name` for one run of `work` (a garbage collection asked for by an
/// admin): `Err(holder)` at once when another node holds it; else runs `work`, renewing the
/// lease meanwhile, and releases it after. On SQLite `work` simply runs (no lease).
pub async fn run_once_leased<T, Fut>(
    db: &Db,
    node: &Node,
    name: &'static str,
    work: Fut,
) -> Result<T, LeaseHeld>
where
    Fut: Future<Output = T>,
{
    if db.backend() == trove_db::Backend::Sqlite {
        // As for run_while_leased: one process serves a SQLite hub, and a lease left by a
        // `trove gc` killed a moment ago would otherwise refuse the next run, and skip the
        // restart's recovery of what it had moved aside, until it expired.
        return Ok(work.await);
    }
    let ttl_ms = i64::try_from(LEASE_TTL.as_millis()).unwrap_or(i64::MAX);
    let now = crate::clock::now_ms();
    let taken = db
        .try_lease(name, node.id(), ttl_ms, now)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(lease = name, error = %e, "cluster.lease_failed");
            false
        });
    if !taken {
        let holder = db
            .lease(name, now)
            .await
            .ok()
            .flatten()
            .map_or_else(|| "unknown".to_owned(), |l| l.holder);
        return Err(LeaseHeld { holder });
    }
    let _renewer = {
        let (db, id) = (db.clone(), node.id().to_owned());
        AbortOnDrop(tokio::spawn(async move {
            let mut tick = tokio::time::interval(LEASE_RENEW);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = db
                    .try_lease(name, &id, ttl_ms, crate::clock::now_ms())
                    .await
                {
                    tracing::warn!(lease = name, error = %e, "cluster.lease_renew_failed");
                }
            }
        }))
    };
    // The renewer stops when this function returns or is dropped (a cancelled request).
    let out = work.await;
    let _ = db.release_lease(name, node.id()).await;
    Ok(out)
}

/// Another node holds the lease.
#[derive(Debug)]
pub struct LeaseHeld {
    pub holder: String,
}

/// A spawned task aborted when this is dropped.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What `GET /api/admin/cluster` answers: the node that answered and who holds each lease.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    pub node: String,
    pub draining: bool,
    pub backend: &'static str,
    pub leases: Vec<LeaseView>,
}

#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseView {
    pub name: String,
    pub holder: String,
    pub taken_at: i64,
    pub expires_at: i64,
}

/// This node and the leases held now.
pub async fn status(db: &Db, node: &Node) -> trove_db::Result<ClusterStatus> {
    let leases = db.leases(crate::clock::now_ms()).await?;
    Ok(ClusterStatus {
        node: node.id().to_owned(),
        draining: node.is_draining(),
        backend: db.backend().as_str(),
        leases: leases
            .into_iter()
            .map(|l| LeaseView {
                name: l.name,
                holder: l.holder,
                taken_at: l.taken_at,
                expires_at: l.expires_at,
            })
            .collect(),
    })
}

/// The lease every serving node holds on its own name while it runs: how a starting node
/// knows whether others are serving.
fn presence_lease(node: &Node) -> String {
    format!("node:{}", node.id())
}

/// Announces this node (its presence lease) and keeps announcing it while the process
/// runs. Called before [`others_serving`], so that of two nodes starting together at least
/// one sees the other.
pub async fn announce(db: &Db, node: &std::sync::Arc<Node>) -> trove_db::Result<()> {
    let ttl_ms = i64::try_from(LEASE_TTL.as_millis()).unwrap_or(i64::MAX);
    let name = presence_lease(node);
    db.try_lease(&name, node.id(), ttl_ms, crate::clock::now_ms())
        .await?;
    let (db, node) = (db.clone(), node.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(LEASE_RENEW);
        loop {
            tick.tick().await;
            if node.is_draining() {
                let _ = db.release_lease(&name, node.id()).await;
                return;
            }
            if let Err(e) = db
                .try_lease(&name, node.id(), ttl_ms, crate::clock::now_ms())
                .await
            {
                tracing::warn!(error = %e, "cluster.presence_renew_failed");
            }
        }
    });
    Ok(())
}

/// The other nodes serving this hub now. A presence lease that has not expired may be a
/// node killed a moment ago (a crashed node restarting, under a new id): the other leases are
/// read twice, a renewal period apart, and only those renewed meanwhile count. Empty on
/// SQLite, which one process serves.
pub async fn others_serving(db: &Db, node: &Node) -> trove_db::Result<Vec<String>> {
    if db.backend() == trove_db::Backend::Sqlite {
        return Ok(Vec::new());
    }
    serving_except(db, Some(&presence_lease(node))).await
}

/// The nodes serving the hub of `db` now, read as [`others_serving`] reads them, on either
/// backend (an embedded server holds its presence lease in its SQLite file too): what
/// `trove migrate` checks before copying a hub that must be stopped.
pub async fn nodes_serving(db: &Db) -> trove_db::Result<Vec<String>> {
    serving_except(db, None).await
}

async fn serving_except(db: &Db, own: Option<&str>) -> trove_db::Result<Vec<String>> {
    let others = |leases: Vec<trove_db::Lease>| -> Vec<trove_db::Lease> {
        leases
            .into_iter()
            .filter(|l| l.name.starts_with("node:") && Some(l.name.as_str()) != own)
            .collect()
    };
    let first = others(db.leases(crate::clock::now_ms()).await?);
    if first.is_empty() {
        return Ok(Vec::new());
    }
    tokio::time::sleep(LEASE_RENEW + Duration::from_secs(1)).await;
    let second = others(db.leases(crate::clock::now_ms()).await?);
    Ok(second
        .into_iter()
        .filter(|l| {
            first
                .iter()
                .find(|f| f.name == l.name)
                .is_none_or(|f| l.expires_at > f.expires_at)
        })
        .map(|l| l.holder)
        .collect())
}

/// Gives up this node's presence lease (a clean stop).
pub async fn withdraw(db: &Db, node: &Node) {
    let _ = db.release_lease(&presence_lease(node), node.id()).await;
}
