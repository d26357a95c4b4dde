//! The daemon's clock: the system clock, or a manual one that tests move by hand.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

/// A source of "now" that can be waited on.
#[derive(Clone)]
pub enum Clock {
    /// The system clock.
    System,
    /// A clock that only moves when told to.
    Manual(Arc<Manual>),
}

/// The state of a manual clock.
pub struct Manual {
    now: Mutex<DateTime<Utc>>,
    moved: Notify,
}

impl Clock {
    /// A manual clock standing at `start`.
    pub fn manual(start: DateTime<Utc>) -> Clock {
        Clock::Manual(Arc::new(Manual {
            now: Mutex::new(start),
            moved: Notify::new(),
        }))
    }

    /// Now, to the millisecond (the store's resolution).
    pub fn now(&self) -> DateTime<Utc> {
        let t = match self {
            Clock::System => Utc::now(),
            Clock::Manual(m) => *m.now.lock().expect("clock lock"),
        };
        DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
    }

    /// Moves a manual clock to `to` (never backwards). Returns the new time.
    pub fn set(&self, to: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Clock::System => None,
            Clock::Manual(m) => {
                let mut now = m.now.lock().expect("clock lock");
                if to > *now {
                    *now = to;
                }
                let t = *now;
                drop(now);
                m.moved.notify_waiters();
                Some(t)
            }
        }
    }

    /// Waits until the clock reads `at` or later.
    pub async fn sleep_until(&self, at: DateTime<Utc>) {
        match self {
            Clock::System => {
                let wait = (at - Utc::now()).to_std().unwrap_or_default();
                tokio::time::sleep(wait).await;
            }
            Clock::Manual(m) => loop {
                let moved = m.moved.notified();
                if self.now() >= at {
                    return;
                }
                moved.await;
            },
        }
    }

    /// Whether this is a manual clock.
    pub fn is_manual(&self) -> bool {
        matches!(self, Clock::Manual(_))
    }
}

/// How a background loop waits when it has nothing to do: until its next due time
/// (`next`, read on this clock), a poke, the poll interval (work made due by other
/// daemons), or shutdown — whichever comes first.
pub async fn idle(
    clock: &Clock,
    next: Option<DateTime<Utc>>,
    poke: &Notify,
    poll: std::time::Duration,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) {
    let due = async {
        match next {
            Some(t) => clock.sleep_until(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = due => {}
        _ = poke.notified() => {}
        _ = tokio::time::sleep(poll) => {}
        _ = shutdown.changed() => {}
    }
}

/// Milliseconds since the Unix epoch, as stored.
pub fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The instant for stored milliseconds.
pub fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_when_moved() {
        let start = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let clock = Clock::manual(start);
        let c2 = clock.clone();
        let sleeper =
            tokio::spawn(async move { c2.sleep_until(start + chrono::TimeDelta::hours(1)).await });
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.set(start + chrono::TimeDelta::minutes(30));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.set(start + chrono::TimeDelta::hours(2));
        tokio::time::timeout(std::time::Duration::from_secs(5), sleeper)
            .await
            .unwrap()
            .unwrap();
        clock.set(start);
        assert_eq!(
            clock.now(),
            start + chrono::TimeDelta::hours(2),
            "a manual clock never goes back"
        );
    }
}
