//! One shape for the background loops (engine, mailer, scheduler, retention) and the
//! supervisor that runs them: restarts after a panic with backoff, health for `/readyz`,
//! and restarts for `/metrics`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};

use crate::clock::Clock;

/// What a round says about the next one.
pub(crate) enum Next {
    /// More work is waiting: run the next round at once.
    Now,
    /// Nothing to do until this time on the service's clock (or a poke, or the poll).
    Idle(Option<DateTime<Utc>>),
}

/// A background loop: rounds until shutdown.
pub(crate) trait Service: Send + Sync + 'static {
    /// The name in logs, `/readyz` and `/metrics`.
    fn name(&self) -> &'static str;
    /// The longest the loop idles between rounds (it also polls for work that other
    /// daemons made due); a round is expected at least this often.
    fn poll(&self) -> Duration;
    /// Poked when new work is stored.
    fn wake(&self) -> &Notify;
    /// The clock its due times are read on.
    fn clock(&self) -> &Clock;
    /// Whether the service runs at all in this configuration.
    fn enabled(&self) -> bool {
        true
    }
    /// One round. An error is logged and the round retried after a second; a panic
    /// ends the loop and the supervisor restarts it.
    fn round(self: &Arc<Self>) -> impl Future<Output = Result<Next, String>> + Send;
}

/// The health of one supervised service, shared with readiness and metrics.
#[derive(Debug)]
pub struct ServiceHealth {
    name: &'static str,
    enabled: AtomicBool,
    alive: AtomicBool,
    restarts: AtomicU64,
    /// Milliseconds since `epoch` of the last completed round (-1: none yet).
    last_round: AtomicI64,
    /// How long the service may go without completing a round before it counts as stalled.
    stall: Duration,
    epoch: Instant,
}

impl ServiceHealth {
    fn new(name: &'static str, poll: Duration) -> ServiceHealth {
        ServiceHealth {
            name,
            enabled: AtomicBool::new(true),
            alive: AtomicBool::new(false),
            restarts: AtomicU64::new(0),
            last_round: AtomicI64::new(-1),
            stall: (poll * 3).max(Duration::from_secs(60)),
            epoch: Instant::now(),
        }
    }

    /// The service's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// How many times the supervisor restarted it after a panic.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    fn beat(&self) {
        let at = self.epoch.elapsed().as_millis() as i64;
        self.last_round.store(at, Ordering::Relaxed);
    }

    /// Why the service is not healthy, if it is not: dead (its loop ended by a panic
    /// and has not been restarted yet) or stalled (no round completed within its
    /// expected interval).
    pub fn problem(&self) -> Option<String> {
        if !self.enabled.load(Ordering::Relaxed) {
            return None;
        }
        if !self.alive.load(Ordering::Relaxed) {
            return Some(format!("{} is not running", self.name));
        }
        let last = self.last_round.load(Ordering::Relaxed);
        let now = self.epoch.elapsed().as_millis() as i64;
        let since = if last < 0 { now } else { now - last };
        (since > self.stall.as_millis() as i64).then(|| {
            format!(
                "{} has not completed a round for {} s (expected within {} s)",
                self.name,
                since / 1000,
                self.stall.as_secs()
            )
        })
    }
}

/// Runs `svc`'s rounds until `shutdown` turns true; the round in progress is finished first.
async fn run<S: Service>(
    svc: Arc<S>,
    health: Arc<ServiceHealth>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            break;
        }
        health.alive.store(true, Ordering::Relaxed);
        match svc.round().await {
            Ok(Next::Now) => {
                health.beat();
                continue;
            }
            Ok(Next::Idle(next)) => {
                health.beat();
                crate::clock::idle(svc.clock(), next, svc.wake(), svc.poll(), &mut shutdown).await;
            }
            Err(e) => {
                tracing::error!(service = svc.name(), error = %e, "round failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
    tracing::info!(service = svc.name(), "stopped");
}

/// The first wait after a panic; it doubles with each panic in a row up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait before a restart.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Supervises `svc`: runs it, restarts it after a panic (logged with its message) with
/// backoff, and returns when it stopped for `shutdown`.
pub(crate) fn supervise<S: Service>(
    svc: Arc<S>,
    shutdown: watch::Receiver<bool>,
) -> (Arc<ServiceHealth>, tokio::task::JoinHandle<()>) {
    let health = Arc::new(ServiceHealth::new(svc.name(), svc.poll()));
    if !svc.enabled() {
        health.enabled.store(false, Ordering::Relaxed);
        return (health, tokio::spawn(async {}));
    }
    let h = health.clone();
    let handle = tokio::spawn(async move {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let started = Instant::now();
            let task = tokio::spawn(run(svc.clone(), h.clone(), shutdown.clone()));
            match task.await {
                Ok(()) => return,
                Err(e) => {
                    h.alive.store(false, Ordering::Relaxed);
                    h.restarts.fetch_add(1, Ordering::Relaxed);
                    let message = panic_message(e);
                    if started.elapsed() > MAX_BACKOFF * 2 {
                        backoff = FIRST_BACKOFF;
                    }
                    tracing::error!(
                        service = h.name,
                        panic = %message,
                        restart_in_ms = backoff.as_millis() as u64,
                        "service panicked; restarting"
                    );
                    let mut stop = shutdown.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    });
    (health, handle)
}

/// The message of a panicked task.
fn panic_message(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return e.to_string();
    }
    payload_message(&*e.into_panic())
}

/// The message of a caught panic payload.
pub(crate) fn payload_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    struct Flaky {
        rounds: AtomicU32,
        wake: Notify,
        clock: Clock,
    }

    impl Service for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }
        fn poll(&self) -> Duration {
            Duration::from_millis(10)
        }
        fn wake(&self) -> &Notify {
            &self.wake
        }
        fn clock(&self) -> &Clock {
            &self.clock
        }
        async fn round(self: &Arc<Self>) -> Result<Next, String> {
            let n = self.rounds.fetch_add(1, Ordering::SeqCst);
            if n == 2 {
                panic!("round {n} panicked");
            }
            Ok(Next::Idle(None))
        }
    }

    #[tokio::test]
    async fn a_panicked_service_is_restarted_and_counted() {
        let svc = Arc::new(Flaky {
            rounds: AtomicU32::new(0),
            wake: Notify::new(),
            clock: Clock::System,
        });
        let (tx, rx) = watch::channel(false);
        let (health, handle) = supervise(svc.clone(), rx);
        let deadline = Instant::now() + Duration::from_secs(10);
        while svc.rounds.load(Ordering::SeqCst) < 6 {
            assert!(Instant::now() < deadline, "the service was not restarted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(health.restarts(), 1);
        assert_eq!(health.problem(), None);
        tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .expect("stops on shutdown")
            .unwrap();
    }

    #[test]
    fn a_service_that_never_ran_is_reported() {
        let h = ServiceHealth::new("engine", Duration::from_millis(10));
        assert_eq!(h.problem().as_deref(), Some("engine is not running"));
        h.alive.store(true, Ordering::Relaxed);
        h.beat();
        assert_eq!(h.problem(), None);
        h.enabled.store(false, Ordering::Relaxed);
        h.alive.store(false, Ordering::Relaxed);
        assert_eq!(h.problem(), None, "a disabled service is never a problem");
    }
}
