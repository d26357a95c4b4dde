//! Throughput and send latency to the loopback aiosmtpd server over pooled connections.
//!
//! `cargo bench -p clearflow-mail --bench throughput` prints messages/s and p50/p99 of
//! `Transport::send` for a few pool sizes; it asserts nothing. The target is ≥ 500 messages/s.

use std::time::{Duration, Instant};

use clearflow_mail::{Mail, Security, SmtpConfig, Transport, TransportConfig, message_id};
use clearflow_testkit::smtp::{ServerOptions, SmtpServer};

const MESSAGES: usize = 2000;

fn mail(i: usize) -> Mail {
    Mail {
        id: i.to_string(),
        message_id: message_id(&format!("bench-{i}"), "clearflow.test"),
        from: "Clearflow <noreply@clearflow.test>".into(),
        to: vec![format!("user{}@example.org", i % 50)],
        cc: vec![],
        bcc: vec![],
        subject: format!("通知 #{i}: your task is due"),
        text: "A task assigned to you is due in 2 working days.\n".repeat(10),
        html: Some("<p>A task assigned to you is due in 2 working days.</p>\n".repeat(10)),
        headers: vec![],
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

async fn run(pool_max: u32, senders: usize) {
    let server = SmtpServer::start(ServerOptions::default());
    let mut cfg = SmtpConfig::new("127.0.0.1", Security::Plain);
    cfg.port = Some(server.port());
    cfg.pool_max = pool_max;
    let transport = Transport::new(&TransportConfig::Smtp(cfg)).expect("transport");

    // Warm up: open the pooled connections.
    for i in 0..pool_max as usize {
        transport
            .send(&mail(MESSAGES + i))
            .await
            .expect("warm-up send");
    }

    let start = Instant::now();
    let tasks: Vec<_> = (0..senders)
        .map(|s| {
            let transport = transport.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for i in (s..MESSAGES).step_by(senders) {
                    let t = Instant::now();
                    transport.send(&mail(i)).await.expect("send");
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(MESSAGES);
    for t in tasks {
        latencies.extend(t.await.expect("sender task"));
    }
    let elapsed = start.elapsed();
    latencies.sort();
    let stored = server
        .wait_for_messages(MESSAGES + pool_max as usize, Duration::from_secs(10))
        .len();
    println!(
        "pool_max={pool_max:<2} senders={senders:<2} {MESSAGES} messages in {:>6.2} s = {:>6.0} msg/s, \
         send p50 {:>6.2} ms, p99 {:>6.2} ms, stored {stored}",
        elapsed.as_secs_f64(),
        MESSAGES as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() {
    println!("clearflow-mail throughput to loopback aiosmtpd (target >= 500 msg/s)");
    for (pool_max, senders) in [(1, 1), (2, 4), (4, 8)] {
        run(pool_max, senders).await;
    }
}
