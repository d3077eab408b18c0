//! A Xet upload's file hashed while its xorbs arrive, so that the shard that names it finds
//! most of its SHA-256 done.
//!
//! The client sends a new file's bytes as xorbs — its own, in the file's order, the first one
//! starting with the file's first chunk — and only then the shard saying which xorbs make up
//! which file. The server must hash the file itself before it records the SHA-256 the LFS
//! pointer names; done after the shard, that hash is the one stage of an upload the client
//! waits for with nothing else to do (a second per GiB). So the xorbs an uploader stores into
//! a repository are hashed as one chain, in the order their uploads began, from the first
//! one after the uploader's last shard; the SHA-256 state after each is kept. A shard's file
//! whose first terms are the chain's first xorbs, each whole, continues from the state after
//! the last of them and hashes only the rest.
//!
//! The chain is a guess; what makes it safe is that only an exact match is used: the file's
//! terms are compared with the xorbs the chain hashed, one by one from the first, by hash
//! and by whole chunk range, and the bytes hashed are those stored under that hash (checked
//! against it when they arrived, never changed since). An upload whose xorbs began out of
//! order, a file that starts inside a xorb, a xorb sent before and not again: the match
//! ends there and the rest is rebuilt as before. A shard ends its uploader's chain (the next
//! upload starts a new one).
//!
//! This module keeps the order and the states only: the use case that stored a xorb hands it
//! over with the job that reads its bytes back (`repos::xet`, through `repos::rebuild`), run
//! on the blocking pool when the xorb's turn comes.

use sha2::Sha256;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use trove_xet::XetHash;
use trove_xet::shard::Term;

/// Chains kept at once: one per repository and user with an upload under way.
const MAX_CHAINS: usize = 64;
/// Xorbs one chain follows (of up to 64 MiB each: a file of 256 GiB); a chain that long
/// hashes no more, and the rest of its file is rebuilt after the shard.
const MAX_CHAIN_XORBS: usize = 4096;
/// A chain no xorb joined for this long belongs to an upload given up: the next xorb of its
/// uploader starts a new one.
const IDLE: Duration = Duration::from_secs(600);
/// The longest a shard waits for its chain to hash the xorbs already stored.
const SETTLE_WAIT: Duration = Duration::from_secs(60);
/// Uploads that may end while one begun before them has not (each held until then): past
/// that, the chain stops rather than hold more for an upload that may never end.
const MAX_WAITING: usize = 64;

/// Whose xorbs form one chain: a repository, and the user uploading (none for a token that
/// names no user).
pub type Uploader = (i64, Option<i64>);

/// The chains of the uploads under way, and how many bytes shards found hashed.
#[derive(Default)]
pub struct HashAhead {
    chains: Mutex<HashMap<Uploader, Arc<Chain>>>,
    used_bytes: AtomicU64,
}

/// One uploader's xorbs, hashed in the order their uploads began.
pub struct Chain {
    state: Mutex<ChainState>,
    /// Woken when the hashing thread has nothing left to do.
    idle: tokio::sync::Notify,
}

/// Feeds a stored xorb's bytes, decompressed, to the hasher it is given (blocking: it runs
/// on the blocking pool). The use case that stored the xorb knows how to read it.
pub type HashJob = Box<dyn FnOnce(&mut Sha256) -> std::io::Result<()> + Send>;

/// A stored xorb waiting for its turn in the chain.
struct Stored {
    xorb: XetHash,
    chunks: u32,
    bytes: u64,
    hash_into: HashJob,
}

struct ChainState {
    /// Tickets handed out: the next xorb upload's place in the chain.
    issued: u64,
    /// The place of the next xorb to hash.
    next: u64,
    /// Xorb uploads that ended, by place, not yet hashed: a stored xorb, or `None` for one
    /// that failed or was not received (it ends the chain there).
    ended: BTreeMap<u64, Option<Stored>>,
    /// Whether a thread is hashing the chain.
    hashing: bool,
    /// Nothing more is hashed: a shard took the chain, it was dropped, a place was empty or a
    /// read failed.
    stopped: bool,
    /// The SHA-256 state after each xorb hashed, in the chain's order.
    steps: Vec<Step>,
    touched: Instant,
}

struct Step {
    xorb: XetHash,
    chunks: u32,
    bytes: u64,
    after: Sha256,
}

/// A file's hash begun: the state after its first `terms` terms, `bytes` long.
pub struct Head {
    pub terms: usize,
    pub bytes: u64,
    pub hasher: Sha256,
}

/// A xorb upload's place in its uploader's chain. [`Ticket::stored`] gives the chain the
/// xorb; dropped without it (a refused or failed upload), the chain ends at this place.
pub struct Ticket {
    chain: Arc<Chain>,
    place: u64,
    ended: bool,
}

impl HashAhead {
    /// The place of a xorb upload of `uploader` that begins now.
    pub fn ticket(&self, uploader: Uploader) -> Ticket {
        let chain = self.chain_of(uploader);
        let place = {
            let mut state = lock(&chain.state);
            state.touched = Instant::now();
            state.issued += 1;
            state.issued - 1
        };
        Ticket {
            chain,
            place,
            ended: false,
        }
    }

    /// `uploader`'s chain, a new one if it has none or only one given up.
    fn chain_of(&self, uploader: Uploader) -> Arc<Chain> {
        let mut chains = lock(&self.chains);
        if let Some(chain) = chains.get(&uploader) {
            if lock(&chain.state).touched.elapsed() < IDLE {
                return chain.clone();
            }
            if let Some(old) = chains.remove(&uploader) {
                old.stop();
            }
        }
        if chains.len() >= MAX_CHAINS {
            chains.retain(|_, c| {
                let keep = lock(&c.state).touched.elapsed() < IDLE;
                if !keep {
                    c.stop();
                }
                keep
            });
        }
        if chains.len() >= MAX_CHAINS
            && let Some(oldest) = chains
                .iter()
                .min_by_key(|(_, c)| lock(&c.state).touched)
                .map(|(k, _)| *k)
            && let Some(old) = chains.remove(&oldest)
        {
            old.stop();
        }
        let chain = Arc::new(Chain {
            state: Mutex::new(ChainState {
                issued: 0,
                next: 0,
                ended: BTreeMap::new(),
                hashing: false,
                stopped: false,
                steps: Vec::new(),
                touched: Instant::now(),
            }),
            idle: tokio::sync::Notify::new(),
        });
        chains.insert(uploader, chain.clone());
        chain
    }

    /// Takes `uploader`'s chain for a shard, once it has hashed every xorb already stored
    /// (waiting at most [`SETTLE_WAIT`]): nothing more joins it, the uploader's next xorb
    /// starts a new one.
    pub async fn take(&self, uploader: Uploader) -> Option<Arc<Chain>> {
        let chain = lock(&self.chains).remove(&uploader)?;
        let deadline = tokio::time::Instant::now() + SETTLE_WAIT;
        loop {
            let idle = chain.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if !lock(&chain.state).hashing {
                break;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                break;
            }
        }
        chain.stop();
        Some(chain)
    }

    /// Counts `bytes` a shard found hashed.
    pub fn note_used(&self, bytes: u64) {
        self.used_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes of files whose hash shards found done, since the start.
    pub fn used_bytes(&self) -> u64 {
        self.used_bytes.load(Ordering::Relaxed)
    }
}

impl Chain {
    /// The longest run of `terms`, from the first, that the chain hashed from its start:
    /// term `i` is the chain's `i`-th xorb, whole. `None` if not even the first is.
    pub fn head(&self, terms: &[Term]) -> Option<Head> {
        let state = lock(&self.state);
        let matched = terms
            .iter()
            .zip(&state.steps)
            .take_while(|(term, step)| {
                term.xorb == step.xorb && term.chunk_start == 0 && term.chunk_end == step.chunks
            })
            .count();
        let last = state.steps.get(matched.checked_sub(1)?)?;
        Some(Head {
            terms: matched,
            bytes: state.steps[..matched].iter().map(|s| s.bytes).sum(),
            hasher: last.after.clone(),
        })
    }

    /// Hashes nothing more; what was hashed stays readable.
    fn stop(&self) {
        let mut state = lock(&self.state);
        state.stopped = true;
        state.ended.clear();
    }

    /// Records how the upload at `place` ended and starts hashing if the chain waits for it.
    fn end(self: &Arc<Self>, place: u64, xorb: Option<Stored>) {
        let mut state = lock(&self.state);
        if state.stopped {
            return;
        }
        state.ended.insert(place, xorb);
        if state.ended.len() > MAX_WAITING {
            state.stopped = true;
            state.ended.clear();
            return;
        }
        if state.hashing || !state.ended.contains_key(&state.next) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            state.stopped = true;
            return;
        };
        state.hashing = true;
        drop(state);
        let chain = self.clone();
        runtime.spawn_blocking(move || chain.hash_what_ended());
    }

    /// Hashes the ended uploads in order, until the next one has not ended.
    fn hash_what_ended(&self) {
        loop {
            let mut state = lock(&self.state);
            let next = state.next;
            let xorb = match state.ended.remove(&next) {
                Some(_) if state.stopped => None,
                Some(xorb) => xorb,
                None => {
                    state.hashing = false;
                    drop(state);
                    self.idle.notify_waiters();
                    return;
                }
            };
            state.next += 1;
            let Some(stored) = xorb else {
                state.stopped = true;
                continue;
            };
            if state.steps.len() >= MAX_CHAIN_XORBS {
                state.stopped = true;
                continue;
            }
            let mut hasher = match state.steps.last() {
                Some(step) => step.after.clone(),
                None => Sha256::default(),
            };
            drop(state);
            let Stored {
                xorb,
                chunks,
                bytes,
                hash_into,
            } = stored;
            let hashed = hash_into(&mut hasher);
            let mut state = lock(&self.state);
            match hashed {
                Ok(()) => state.steps.push(Step {
                    xorb,
                    chunks,
                    bytes,
                    after: hasher,
                }),
                Err(e) => {
                    tracing::warn!(xorb = %xorb, error = %e, "xet.hash_ahead_failed");
                    state.stopped = true;
                }
            }
        }
    }
}

impl Ticket {
    /// The upload stored xorb `xorb` (`chunks` chunks, `bytes` bytes once decompressed):
    /// the chain may hash it, when its turn comes, with `hash_into`.
    pub fn stored(mut self, xorb: XetHash, chunks: u32, bytes: u64, hash_into: HashJob) {
        self.ended = true;
        self.chain.end(
            self.place,
            Some(Stored {
                xorb,
                chunks,
                bytes,
                hash_into,
            }),
        );
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.ended {
            self.chain.end(self.place, None);
        }
    }
}

/// A lock whose holder never panics while holding it (no code here can), taken even if a
/// panic elsewhere poisoned it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    /// A stored xorb of `chunks` chunks whose bytes are `data`, hashed from memory.
    fn stored(ticket: Ticket, xorb: u8, chunks: u32, data: Vec<u8>) {
        let bytes = data.len() as u64;
        ticket.stored(
            XetHash::from_bytes([xorb; 32]),
            chunks,
            bytes,
            Box::new(move |h: &mut Sha256| {
                h.update(&data);
                Ok(())
            }),
        );
    }

    fn term(xorb: u8, chunk_start: u32, chunk_end: u32) -> Term {
        Term {
            xorb: XetHash::from_bytes([xorb; 32]),
            chunk_start,
            chunk_end,
            unpacked_len: 0,
        }
    }

    /// Uploads that end while an earlier one has not are held only up to a bound: past it
    /// the chain stops, holds nothing, and hashes nothing more.
    #[tokio::test]
    async fn a_chain_waiting_on_an_upload_that_never_ends_stops_holding_the_later_ones() {
        let ahead = HashAhead::default();
        let stuck = ahead.ticket((1, Some(1)));
        let later: Vec<Ticket> = (0..MAX_WAITING)
            .map(|_| ahead.ticket((1, Some(1))))
            .collect();
        for ticket in later {
            stored(ticket, 2, 1, vec![2; 10]);
        }
        let chain = stuck.chain.clone();
        {
            let state = lock(&chain.state);
            assert_eq!(state.ended.len(), MAX_WAITING);
            assert!(!state.stopped);
        }
        stored(ahead.ticket((1, Some(1))), 3, 1, vec![3; 10]);
        {
            let state = lock(&chain.state);
            assert!(state.stopped && state.ended.is_empty());
        }
        stored(stuck, 1, 1, vec![1; 10]);
        assert!(chain.head(&[term(1, 0, 1)]).is_none());
        assert!(lock(&chain.state).steps.is_empty() && !lock(&chain.state).hashing);
    }

    /// Stored xorbs are hashed in the order their uploads began, whatever order they end
    /// in; a shard takes the chain once it has hashed them, and the uploader's next upload
    /// starts a new chain.
    #[tokio::test]
    async fn xorbs_are_hashed_in_the_order_their_uploads_began() {
        let ahead = HashAhead::default();
        let tickets: Vec<Ticket> = (0..3).map(|_| ahead.ticket((2, None))).collect();
        // They end last first.
        for (i, ticket) in tickets.into_iter().enumerate().rev() {
            stored(ticket, i as u8, 2, vec![i as u8; 1000 + i]);
        }
        let chain = ahead.take((2, None)).await.expect("a chain");
        let terms: Vec<Term> = (0..3).map(|i| term(i, 0, 2)).collect();
        let head = chain.head(&terms).expect("hashed ahead");
        assert_eq!((head.terms, head.bytes), (3, 3003));
        let mut expected = Sha256::default();
        for i in 0..3u8 {
            expected.update(vec![i; 1000 + i as usize]);
        }
        assert_eq!(head.hasher.finalize(), expected.finalize());
        // A file starting with the second xorb matches nothing; one cut in the second, or
        // starting inside the first, only what comes before the cut.
        assert!(chain.head(&terms[1..]).is_none());
        assert_eq!(
            chain.head(&[term(0, 0, 2), term(1, 0, 1)]).map(|h| h.terms),
            Some(1)
        );
        assert!(chain.head(&[term(0, 1, 2)]).is_none());
        // Taken: the next upload starts a chain of its own.
        assert!(ahead.take((2, None)).await.is_none());
        let next = ahead.ticket((2, None));
        assert!(!Arc::ptr_eq(&next.chain, &chain));
    }

    /// A xorb whose bytes cannot be read stops the chain where it stands.
    #[tokio::test]
    async fn a_xorb_that_cannot_be_read_ends_the_chain_there() {
        let ahead = HashAhead::default();
        let (a, b, c) = (
            ahead.ticket((3, None)),
            ahead.ticket((3, None)),
            ahead.ticket((3, None)),
        );
        stored(a, 1, 1, vec![1; 10]);
        b.stored(
            XetHash::from_bytes([2; 32]),
            1,
            10,
            Box::new(|_: &mut Sha256| Err(std::io::Error::other("gone"))),
        );
        stored(c, 3, 1, vec![3; 10]);
        let chain = ahead.take((3, None)).await.expect("a chain");
        let head = chain
            .head(&[term(1, 0, 1), term(2, 0, 1), term(3, 0, 1)])
            .expect("the first");
        assert_eq!(head.terms, 1);
    }
}
