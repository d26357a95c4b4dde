//! The Prometheus text exposition of the runtime's counters: one table of metrics,
//! rendered in one place.

use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed};

use crate::mailer::MailCounters;
use crate::retention::Counters as RetentionCounters;
use crate::scheduler::ScheduleCounters;
use crate::service::ServiceHealth;
use crate::worker::Counters as EngineCounters;

/// What the exposition is made of.
pub(crate) struct Sources<'a> {
    pub engine: &'a EngineCounters,
    pub mail: &'a MailCounters,
    pub schedules: &'a ScheduleCounters,
    pub retention: &'a RetentionCounters,
    pub services: &'a [Arc<ServiceHealth>],
    pub instances: &'a [(String, String, i64)],
}

/// The text of `/metrics`.
pub(crate) fn render(s: &Sources<'_>) -> String {
    let (e, m, c, r) = (s.engine, s.mail, s.schedules, s.retention);
    let scalars: [(&str, &str, &str, u64); 16] = [
        (
            "clearflow_steps_total",
            "counter",
            "Steps executed and committed.",
            e.steps.load(Relaxed),
        ),
        (
            "clearflow_commits_total",
            "counter",
            "Engine commits.",
            e.commits.load(Relaxed),
        ),
        (
            "clearflow_commit_errors_total",
            "counter",
            "Engine commits that failed and were retried.",
            e.commit_errors.load(Relaxed),
        ),
        (
            "clearflow_mail_sent_total",
            "counter",
            "Messages delivered.",
            m.sent.load(Relaxed),
        ),
        (
            "clearflow_mail_retried_total",
            "counter",
            "Deliveries that failed temporarily and were rescheduled.",
            m.retried.load(Relaxed),
        ),
        (
            "clearflow_mail_dead_total",
            "counter",
            "Messages given up as dead letters.",
            m.dead.load(Relaxed),
        ),
        (
            "clearflow_schedule_fires_total",
            "counter",
            "Schedule fires that started an instance (decided by this daemon).",
            c.fired.load(Relaxed),
        ),
        (
            "clearflow_schedule_skips_total",
            "counter",
            "Schedule fires skipped because an earlier fire's instance was still running.",
            c.skipped.load(Relaxed),
        ),
        (
            "clearflow_schedule_failures_total",
            "counter",
            "Schedule fires whose start was refused.",
            c.failed.load(Relaxed),
        ),
        (
            "clearflow_schedule_cancels_total",
            "counter",
            "Running instances cancelled by a cancel_previous schedule.",
            c.cancelled.load(Relaxed),
        ),
        (
            "clearflow_retention_warned_total",
            "counter",
            "Expiry warnings of closed cases queued.",
            r.warned.load(Relaxed),
        ),
        (
            "clearflow_retention_deleted_total",
            "counter",
            "Closed cases deleted at the end of their retention period.",
            r.deleted.load(Relaxed),
        ),
        (
            "clearflow_retention_blocked",
            "gauge",
            "Closed cases due for deletion that need an administrator (last sweep).",
            r.blocked.load(Relaxed),
        ),
        (
            "clearflow_advances_total",
            "counter",
            "Instance advances committed.",
            e.advances.load(Relaxed),
        ),
        (
            "clearflow_services_down",
            "gauge",
            "Supervised services that are dead or stalled now.",
            s.services.iter().filter(|h| h.problem().is_some()).count() as u64,
        ),
        (
            "clearflow_services",
            "gauge",
            "Supervised services.",
            s.services.len() as u64,
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in scalars {
        out += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n");
    }
    let swept = r.swept_at.load(Acquire);
    if swept >= 0 {
        out += &format!(
            "# HELP clearflow_retention_swept_at_seconds Clock time of the last retention sweep.\n# TYPE clearflow_retention_swept_at_seconds gauge\nclearflow_retention_swept_at_seconds {}\n",
            swept / 1000
        );
    }
    out += "# HELP clearflow_service_restarts_total Restarts of a supervised service after a panic.\n# TYPE clearflow_service_restarts_total counter\n";
    for h in s.services {
        out += &format!(
            "clearflow_service_restarts_total{{service=\"{}\"}} {}\n",
            h.name(),
            h.restarts()
        );
    }
    out += "# HELP clearflow_instances Instances by workflow and status.\n# TYPE clearflow_instances gauge\n";
    for (wf, status, n) in s.instances {
        out += &format!("clearflow_instances{{workflow=\"{wf}\",status=\"{status}\"}} {n}\n");
    }
    out
}
