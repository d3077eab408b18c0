//! Failed authentication, limited per client address: a token bucket per IP that each
//! failure drains and time refills. Only failures are counted, so valid credentials are
//! never slowed; an address out of budget gets 429 with `Retry-After` for its next failure
//! (and, for password logins, before the password is even checked).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Anonymous `POST /api/validate-yaml` calls an address may make at once, then one per
/// refill period: the endpoint parses YAML for anyone, and signed-in clients (which the
/// Hub client is when it validates a card) are not limited.
pub const ANONYMOUS_VALIDATE_BURST: u32 = 30;
pub const ANONYMOUS_VALIDATE_REFILL: Duration = Duration::from_millis(500);

/// Above this many tracked addresses, full buckets are dropped.
const MAX_TRACKED: usize = 10_000;

#[derive(Debug)]
pub struct FailureLimiter {
    burst: f64,
    refill: Duration,
    buckets: Mutex<HashMap<Option<IpAddr>, Bucket>>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl FailureLimiter {
    pub fn new(burst: u32, refill: Duration) -> FailureLimiter {
        FailureLimiter {
            burst: f64::from(burst.max(1)),
            refill: refill.max(Duration::from_millis(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refilled(&self, bucket: Bucket, now: Instant) -> Bucket {
        let gained = now.duration_since(bucket.at).as_secs_f64() / self.refill.as_secs_f64();
        Bucket {
            tokens: (bucket.tokens + gained).min(self.burst),
            at: now,
        }
    }

    /// `Some(seconds to wait)` when `ip` has no failure left to spend.
    pub fn blocked(&self, ip: Option<IpAddr>, now: Instant) -> Option<u64> {
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = self.refilled(*buckets.get(&ip)?, now);
        (bucket.tokens < 1.0).then(|| self.wait_secs(bucket))
    }

    /// Records a failure; `Some(seconds to wait)` if the address was already out of budget.
    pub fn fail(&self, ip: Option<IpAddr>, now: Instant) -> Option<u64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED {
            let burst = self.burst;
            let refill = self.refill.as_secs_f64();
            buckets
                .retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() / refill < burst);
        }
        let bucket = buckets.entry(ip).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let mut refilled = self.refilled(*bucket, now);
        if refilled.tokens < 1.0 {
            *bucket = refilled;
            return Some(self.wait_secs(refilled));
        }
        refilled.tokens -= 1.0;
        *bucket = refilled;
        None
    }

    /// Spends one unit of `ip`'s budget for anything that is not a failure (a costly
    /// anonymous call); the same bucket arithmetic as [`FailureLimiter::fail`].
    pub fn spend(&self, ip: Option<IpAddr>, now: Instant) -> Option<u64> {
        self.fail(ip, now)
    }

    fn wait_secs(&self, bucket: Bucket) -> u64 {
        let missing = (1.0 - bucket.tokens).max(0.0);
        (missing * self.refill.as_secs_f64()).ceil().max(1.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_failures_then_429_then_refill() {
        let limiter = FailureLimiter::new(3, Duration::from_secs(10));
        let ip = Some("10.0.0.1".parse().expect("ip"));
        let other = Some("10.0.0.2".parse().expect("ip"));
        let t0 = Instant::now();
        assert_eq!(limiter.blocked(ip, t0), None);
        for _ in 0..3 {
            assert_eq!(limiter.fail(ip, t0), None);
        }
        assert_eq!(limiter.blocked(ip, t0), Some(10));
        assert_eq!(limiter.fail(ip, t0), Some(10));
        assert_eq!(limiter.blocked(other, t0), None, "per address");
        let later = t0 + Duration::from_secs(10);
        assert_eq!(limiter.blocked(ip, later), None);
        assert_eq!(limiter.fail(ip, later), None);
        assert!(limiter.blocked(ip, later).is_some());
    }
}
