//! Mail benchmark: outbox throughput through the daemon, from the commit that queues a
//! message to the SMTP server's `250`. Prints figures; asserts nothing.
//!
//! ```text
//! cargo bench -p clearflow --bench mail -- [--messages N] [--concurrency N] [--processes N]
//! ```
//!
//! Each scenario runs the real engine worker and mail sender in this process on a fresh
//! SQLite store (system clock): instances of a one-notify-step workflow are started, the
//! worker commits their outbox rows, and the sender delivers them over pooled plain-SMTP
//! connections to `scripts/smtp_server.py` on loopback. Two phases per scenario:
//!
//! - **burst**: N messages queued at once; *throughput* is N over the time from the first
//!   commit to the last delivery recorded.
//! - **paced**: messages queued at half the burst throughput for about five seconds;
//!   *commit → delivery* p50 / p99 come from the outbox rows (`sent_at - created_at`),
//!   so they measure a sender that keeps up, not the length of a backlog.
//!
//! One aiosmtpd process handles about 150–170 messages a second on one core, so the
//! sink, not the daemon, is the limit with one process. The scenarios therefore run
//! against 1 and P (`--processes`, default 4) aiosmtpd processes sharing the port with
//! SO_REUSEPORT, and against the maildir transport (no network: the outbox's own ceiling).

use clearflow_testkit::smtp;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use clearflow_runtime::clock::{Clock, ms};
use clearflow_runtime::config::{EngineConfig, MailConfig};
use clearflow_runtime::mailer::Mailer;
use clearflow_runtime::registry::{Registry, Sources};
use clearflow_runtime::worker::Worker;
use clearflow_store::Store;
use clearflow_store::{Durability, StoreConfig};
use serde_json::json;
use sqlx::Row;

const WORKFLOW: &str = r#"
id: bench-mail
steps:
  - id: tell
    notify:
      template: task-reminder
      to: "${ input.to }"
      locale: en
      data:
        task: { title: "message ${ input.n }", due: null }
        case: { number: "B-${ input.n }" }
  - end: done
"#;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut messages = 3000usize;
    let mut concurrency = 16usize;
    let mut processes = 4usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match a.as_str() {
            "--messages" => messages = num("--messages").max(1),
            "--concurrency" => concurrency = num("--concurrency").max(1),
            "--processes" => processes = num("--processes").max(1),
            // cargo bench passes `--bench`.
            _ => {}
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "clearflow mail benchmark: {cores} cores, {messages} messages per burst, \
         mail.concurrency {concurrency} (SMTP pool of as many connections), SQLite store"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut plan: Vec<(String, Option<usize>)> = vec![
        ("smtp, 1 aiosmtpd process".into(), Some(1)),
        (
            format!("smtp, {processes} aiosmtpd processes"),
            Some(processes),
        ),
        ("maildir (no network)".into(), None),
    ];
    plan.dedup_by(|a, b| a.1 == b.1);
    for (label, procs) in plan {
        println!("\n== {label}");
        let server = procs.map(|p| {
            smtp::SmtpServer::start(smtp::ServerOptions {
                processes: p,
                ..smtp::ServerOptions::default()
            })
        });
        let dir = tempfile::tempdir().expect("temporary folder");
        rt.block_on(scenario(dir.path(), server.as_ref(), messages, concurrency));
        if let Some(s) = &server {
            let stored = s.messages().len();
            println!("  messages stored by the server     {stored}");
        }
    }
}

async fn scenario(
    dir: &Path,
    server: Option<&smtp::SmtpServer>,
    messages: usize,
    concurrency: usize,
) {
    let wf_dir = dir.join("workflows");
    std::fs::create_dir_all(&wf_dir).expect("workflows folder");
    std::fs::write(wf_dir.join("bench-mail.yaml"), WORKFLOW).expect("workflow file");
    let url = format!("sqlite://{}", dir.join("bench.db").display());
    let store = Store::open(&StoreConfig {
        url: url.clone(),
        durability: Durability::Normal,
        ..StoreConfig::default()
    })
    .await
    .expect("opening the store");
    let clock = Clock::System;
    let registry = Arc::new(Registry::new());
    let problems = registry
        .reload(
            &Sources {
                workflows: wf_dir.clone(),
                calendars: wf_dir.join("calendars"),
                templates: Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/templates"),
                users: None,
                limits: Default::default(),
            },
            &[],
            &store,
            ms(clock.now()),
        )
        .await;
    assert!(problems.is_empty(), "workflow problems: {problems:?}");
    let transport = match server {
        Some(s) => {
            let mut smtp =
                clearflow_mail::SmtpConfig::new("127.0.0.1", clearflow_mail::Security::Plain);
            smtp.port = Some(s.port());
            smtp.pool_max = concurrency as u32;
            clearflow_mail::TransportConfig::Smtp(smtp)
        }
        None => clearflow_mail::TransportConfig::Maildir {
            path: dir.join("maildir"),
        },
    };
    let mail_cfg = MailConfig {
        transport,
        concurrency,
        retry_initial_seconds: 1,
        ..MailConfig::default()
    };
    let worker = Arc::new(Worker::new(
        store.clone(),
        registry,
        clock.clone(),
        EngineConfig {
            node_id: Some("bench".into()),
            poll_ms: 20,
            ..EngineConfig::default()
        },
        mail_cfg.clone(),
    ));
    let mailer = Arc::new(
        Mailer::new(
            store.clone(),
            mail_cfg,
            clock.clone(),
            "bench".into(),
            worker.mail_wake(),
        )
        .expect("mail transport"),
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let engine = tokio::spawn(worker.clone().run(stopped.clone()));
    let sender = tokio::spawn(mailer.clone().run(stopped));
    let probe = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .expect("probe connection");

    // Warm up: open the pool's connections.
    queue(&worker, &store, 0, concurrency * 2).await;
    wait_sent(&mailer, concurrency * 2).await;
    let base = concurrency * 2;

    // Burst.
    let t = Instant::now();
    queue(&worker, &store, base, messages).await;
    let queued_s = t.elapsed().as_secs_f64();
    wait_sent(&mailer, base + messages).await;
    let (first, last, _) = span(&probe, base).await;
    let burst = messages as f64 / ((last - first).max(1) as f64 / 1000.0);
    println!(
        "  burst: {messages} queued in {queued_s:.2} s; delivered {burst:.0} msg/s \
         (first commit to last delivery {:.2} s)",
        (last - first) as f64 / 1000.0
    );

    // Paced at half that rate, in 20 ms slices, for about five seconds.
    let rate = (burst / 2.0).max(10.0);
    let slices = 250usize;
    let per_slice = (rate / 50.0).max(1.0);
    let from = base + messages;
    let mut sent = 0usize;
    let t = Instant::now();
    for i in 0..slices {
        let due = ((i + 1) as f64 * per_slice) as usize;
        if due > sent {
            queue(&worker, &store, from + sent, due - sent).await;
            sent = due;
        }
        let next = Duration::from_millis(20 * (i as u64 + 1));
        if let Some(wait) = next.checked_sub(t.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
    wait_sent(&mailer, from + sent).await;
    let (_, _, mut latencies) = span(&probe, from).await;
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    println!(
        "  paced: {sent} messages at {rate:.0} msg/s offered; commit → delivery p50 {} ms, \
         p99 {} ms, max {} ms",
        pct(0.5),
        pct(0.99),
        latencies.last().copied().unwrap_or_default()
    );
    let retried = mailer.counters().retried.load(Relaxed);
    let dead = mailer.counters().dead.load(Relaxed);
    if retried + dead > 0 {
        println!("  retried {retried}, dead {dead}");
    }
    let _ = stop.send(true);
    let _ = engine.await;
    let _ = sender.await;
}

/// Starts `n` instances (numbered from `from`) in transactions of up to 256, as the
/// API would under load; each queues one message when the worker runs it.
async fn queue(worker: &Worker, store: &Store, from: usize, n: usize) {
    let mut i = from;
    while i < from + n {
        let now = worker.now();
        let trees: Vec<_> = (i..(i + 256).min(from + n))
            .map(|k| {
                worker
                    .tree(
                        "bench-mail",
                        json!({ "to": format!("user{}@bench.example.org", k % 97), "n": k }),
                        None,
                        "bench",
                        None,
                        now,
                    )
                    .expect("building an instance")
            })
            .collect();
        i += trees.len();
        store
            .start(&trees, ms(now))
            .await
            .expect("starting instances");
        worker.poke();
    }
}

async fn wait_sent(mailer: &Mailer, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while (mailer.counters().sent.load(Relaxed) as usize) < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} messages were sent in ten minutes",
            mailer.counters().sent.load(Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Over the rows queued for instances numbered `from` and above (ids are time-ordered,
/// so skip the first `from` rows): the first commit, the last delivery, and every
/// commit → delivery latency, in milliseconds.
async fn span(probe: &sqlx::AnyPool, from: usize) -> (i64, i64, Vec<i64>) {
    let rows = sqlx::query(
        "SELECT created_at, sent_at FROM outbox WHERE status = 'sent' ORDER BY created_at, id",
    )
    .fetch_all(probe)
    .await
    .expect("reading the outbox");
    let mut first = i64::MAX;
    let mut last = 0i64;
    let mut latencies = Vec::new();
    for r in rows.iter().skip(from) {
        let created: i64 = r.try_get("created_at").expect("created_at");
        let sent: i64 = r.try_get("sent_at").expect("sent_at");
        first = first.min(created);
        last = last.max(sent);
        latencies.push(sent - created);
    }
    (first, last, latencies)
}
