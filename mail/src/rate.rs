//! A token bucket that spaces out sends to at most `rate_per_sec` a second.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// Allows bursts of up to one second's worth of sends, then one send per `1 / rate` seconds.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// `per_sec` must be at least 1 (checked by the configuration).
    pub(crate) fn new(per_sec: u32) -> Self {
        let rate = f64::from(per_sec.max(1));
        RateLimiter {
            rate,
            bucket: Mutex::new(Bucket {
                tokens: rate,
                last: Instant::now(),
            }),
        }
    }

    /// Waits until a send is allowed. Waiters are served in arrival order: the lock is
    /// Tokio's fair mutex and is held while waiting for the next token.
    pub(crate) async fn acquire(&self) {
        let mut bucket = self.bucket.lock().await;
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.rate);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return;
        }
        let wait = Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate);
        tokio::time::sleep(wait).await;
        // The token that accrued while sleeping is the one this send uses.
        bucket.tokens = 0.0;
        bucket.last = now + wait;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bursts_one_second_then_paces() {
        let limiter = RateLimiter::new(10);
        let start = Instant::now();
        for _ in 0..10 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        for _ in 0..15 {
            limiter.acquire().await;
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_millis(1510),
            "{elapsed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_time_refills_but_not_beyond_one_second() {
        let limiter = RateLimiter::new(5);
        for _ in 0..5 {
            limiter.acquire().await;
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
        let start = Instant::now();
        for _ in 0..5 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_senders_share_the_rate() {
        let limiter = std::sync::Arc::new(RateLimiter::new(4));
        let start = Instant::now();
        let tasks: Vec<_> = (0..12)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move { limiter.acquire().await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // 4 at once, then 8 more at 250 ms each.
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }
}
