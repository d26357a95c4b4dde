//! Provisional deadlines: reported when computed, recomputed when the calendars change.
//!
//! A working-day deadline that runs past the last year its calendar covers is counted on
//! weekends only and marked provisional by the core (`Instance::provisional`, history
//! `deadline_provisional`, once per instance and step). When a reload (SIGHUP, or the
//! start of the daemon) finds different calendars, every instance holding a provisional
//! timer gets a `Recalendar` event: the core recomputes those timers from the time they
//! were first counted from and moves them, in the same transaction as any other advance.

use clearflow_core::engine::{Event, HistoryEntry};

use crate::worker::Worker;

/// Logs the warning for a `deadline_provisional` history entry.
pub fn warn(instance: &str, entry: &HistoryEntry) {
    tracing::warn!(
        instance,
        step = entry.step.as_deref().unwrap_or_default(),
        span = %entry.detail["span"],
        until = %entry.detail["until"],
        calendar = %entry.detail["calendar"],
        "provisional deadline: it runs past the last year the calendar covers, so it was \
         counted on weekends only; add the next year's calendar file and reload (SIGHUP)"
    );
}

/// Queues a `Recalendar` event for every instance holding a provisional timer.
pub async fn calendars_changed(worker: &Worker) {
    let ids = match worker.store.provisional_instances().await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::error!(error = %e, "finding provisional deadlines failed; they keep their times until the next reload");
            return;
        }
    };
    let mut queued = 0usize;
    for id in &ids {
        match worker.send(id, &Event::Recalendar, "system").await {
            Ok(true) => queued += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::error!(instance = %id, error = %e, "queuing the recomputation of a provisional deadline failed")
            }
        }
    }
    if !ids.is_empty() {
        tracing::info!(
            instances = queued,
            "calendars changed: recomputing provisional deadlines"
        );
    }
}
