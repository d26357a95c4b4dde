//! End-to-end tests of email delivery through the real daemon and a real SMTP server
//! (`scripts/smtp_server.py`, aiosmtpd with STARTTLS, a CA-signed test certificate and
//! AUTH required): headers and content as delivered, an outage, a SIGKILL in the middle of
//! sending, dead letters and their retry, and logs that carry no address.

use clearflow_testkit as support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::TimeDelta;
use mail_parser::MessageParser;
use serde_json::json;
use support::model::{MailList, OutboxMessage};
use support::smtp::{ServerOptions, SmtpServer};
use support::{Backend, Daemon, Options};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/mail")
}

/// A STARTTLS + AUTH server, as production relays are.
fn server(reject: Option<&str>) -> SmtpServer {
    SmtpServer::start(ServerOptions {
        reject: reject.map(str::to_owned),
        ..ServerOptions::starttls_auth("clearflow", "s3cret-测试")
    })
}

/// A daemon on `backend` sending through `server`; `mail` adds lines to `[mail]`.
fn daemon(backend: Backend, server: &SmtpServer, mail: &str) -> Daemon {
    let extra = support::smtp_config(server, mail);
    let users = std::fs::read_to_string(fixtures().join("users.toml")).expect("users fixture");
    Daemon::start_with(
        backend,
        &fixtures().join("workflows"),
        Options {
            extra,
            users,
            ..Options::default()
        },
    )
}

/// The outbox as `clearflow mail list --json` shows it.
fn outbox(d: &Daemon, status: Option<&str>) -> Vec<OutboxMessage> {
    let mut args = vec!["mail", "list", "--json", "--limit", "1000"];
    if let Some(s) = status {
        args.extend(["--status", s]);
    }
    let out = d.cli_ok(&args);
    let v: MailList = serde_json::from_str(&out).expect("mail list --json");
    v.items
}

fn header(raw: &[u8], name: &str) -> Option<String> {
    MessageParser::default()
        .parse(raw)
        .expect("a stored message parses")
        .header_raw(name)
        .map(|h| h.trim().to_owned())
}

/// Message-ID (without angle brackets) → every stored copy.
fn by_message_id(messages: &[Vec<u8>]) -> BTreeMap<String, Vec<Vec<u8>>> {
    let mut out: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for m in messages {
        let parsed = MessageParser::default()
            .parse(m)
            .expect("a stored message parses");
        let id = parsed.message_id().expect("a Message-ID").to_owned();
        out.entry(id).or_default().push(m.clone());
    }
    out
}

fn strip_brackets(id: &str) -> &str {
    id.trim().trim_start_matches('<').trim_end_matches('>')
}

/// Logs carry outbox ids, codes and classes, never an address or a raw SMTP reply.
fn assert_logs_clean(d: &Daemon, addresses: &[&str]) {
    let logs = d.logs();
    for needle in addresses.iter().copied().chain([
        "5.1.1",
        "mailbox unavailable",
        "queued as",
        "Connection refused",
    ]) {
        assert!(
            !logs.contains(needle),
            "the daemon log contains {needle:?}:\n{logs}"
        );
    }
    assert!(
        !logs.contains("@jw.example.cn"),
        "the daemon log contains a recipient address:\n{logs}"
    );
}

fn start_bulk(d: &Daemon, n: usize, to: &str) -> Vec<String> {
    (0..n)
        .map(|i| {
            d.start_instance("bulk", &json!({ "to": to, "n": i }), None)
                .0
        })
        .collect()
}

#[test]
fn notify_step_delivers_to_cc_bcc_and_roles_over_starttls_with_auth() {
    let smtp = server(None);
    let mut d = daemon(Backend::Sqlite, &smtp, "");
    let (id, _) = d.start_instance(
        "notify",
        &json!({
            "to": "handler@jw.example.cn",
            "bcc": "audit@jw.example.cn",
            "case_number": "JB-2025-0042",
            "title": "初步核实",
        }),
        None,
    );
    d.wait_until("the message is sent", Duration::from_secs(60), |d| {
        outbox(d, Some("sent")).len() == 1
    });
    let messages = smtp.wait_for_messages(1, Duration::from_secs(10));
    assert_eq!(messages.len(), 1, "exactly one message is delivered");
    let raw = &messages[0];
    let msg = MessageParser::default().parse(raw).expect("parses");

    let row = &outbox(&d, None)[0];
    assert_eq!(row.instance_id.as_deref(), Some(id.as_str()));
    assert_eq!(row.step.as_deref(), Some("tell"));
    assert_eq!(row.attempts, 1);
    assert_eq!(
        msg.message_id(),
        Some(strip_brackets(&row.message_id)),
        "the delivered Message-ID is the outbox row's"
    );

    let from = msg.from().and_then(|a| a.first()).expect("From");
    assert_eq!(from.name(), Some("纪检监察信访室"));
    assert_eq!(from.address(), Some("noreply@clearflow.test"));
    let addrs = |list: Option<&mail_parser::Address>| -> Vec<String> {
        list.map(|a| {
            a.iter()
                .filter_map(|x| x.address().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
    };
    let mut to = addrs(msg.to());
    to.sort();
    assert_eq!(
        to,
        [
            "handler@jw.example.cn",
            "wang.fang@jw.example.cn",
            "zhao.lei@jw.example.cn"
        ],
        "To: the address and the members of role reviewer"
    );
    assert_eq!(addrs(msg.cc()), ["sun.li@jw.example.cn"], "Cc: role leader");
    assert!(msg.bcc().is_none() && msg.header_raw("Bcc").is_none());
    let raw_text = String::from_utf8_lossy(raw);
    assert!(
        !raw_text
            .lines()
            .filter(|l| !l.starts_with("X-Envelope-"))
            .any(|l| l.contains("audit@")),
        "the Bcc address leaked into the message:\n{raw_text}"
    );
    let envelope: BTreeSet<String> = header(raw, "X-Envelope-To")
        .expect("envelope")
        .split(',')
        .map(|a| a.trim().to_owned())
        .collect();
    let want: BTreeSet<String> = [
        "handler@jw.example.cn",
        "wang.fang@jw.example.cn",
        "zhao.lei@jw.example.cn",
        "sun.li@jw.example.cn",
        "audit@jw.example.cn",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(
        envelope, want,
        "every recipient, the bcc one included, got it"
    );

    // zh-CN: the first To recipient is not a known user; the step's recipients' locale
    // falls back to the default, zh-CN.
    assert_eq!(
        msg.subject(),
        Some("【新任务】初步核实（案件编号 JB-2025-0042）")
    );
    assert!(raw_text.contains("multipart/alternative"), "{raw_text}");
    let text = msg.body_text(0).expect("a text part");
    assert!(text.contains("您有一项新的待办任务"), "{text}");
    assert!(text.contains("案件编号：JB-2025-0042"), "{text}");
    // The link opens the case page of the web console (a task mail: its task page).
    assert!(text.contains(&format!("/cases/{id}")), "{text}");
    let html = msg.body_html(0).expect("an HTML part");
    assert!(html.contains("<td>初步核实</td>"), "{html}");
    assert!(html.contains("<td>JB-2025-0042</td>"), "{html}");
    assert_eq!(
        header(raw, "Auto-Submitted").as_deref(),
        Some("auto-generated")
    );

    d.settle();
    assert_eq!(d.show_instance(&id).instance.status, "completed");
    assert_eq!(d.metric("clearflow_mail_sent_total"), 1);
    assert_logs_clean(
        &d,
        &[
            "handler@jw.example.cn",
            "audit@jw.example.cn",
            "sun.li@",
            "wang.fang@",
        ],
    );
}

fn outage_then_every_message_once(backend: Backend) {
    const N: usize = 20;
    let mut smtp = server(None);
    smtp.stop();
    let mut d = daemon(backend, &smtp, "");
    start_bulk(&d, N, "desk@jw.example.cn");
    d.wait_until(
        "every message failed once (connection refused)",
        Duration::from_secs(60),
        |d| {
            let rows = outbox(d, Some("queued"));
            rows.len() == N && rows.iter().all(|r| r.attempts == 1)
        },
    );
    for r in outbox(&d, None) {
        let err = r.last_error.expect("the failure is recorded");
        assert!(err.contains("refused"), "{err}");
    }
    // Without time passing, nothing is tried again: backoff is on the daemon's clock.
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        outbox(&d, None)
            .iter()
            .all(|r| r.attempts == 1 && r.status == "queued")
    );
    assert!(smtp.messages().is_empty());

    smtp.restart_with(|_| {});
    d.advance(TimeDelta::minutes(2));
    d.wait_until("every message is sent", Duration::from_secs(60), |d| {
        outbox(d, Some("sent")).len() == N
    });
    let rows = outbox(&d, None);
    assert!(
        rows.iter().all(|r| r.attempts == 2),
        "one failed and one successful attempt each: {rows:#?}"
    );
    let delivered = by_message_id(&smtp.wait_for_messages(N, Duration::from_secs(10)));
    let expected: BTreeSet<String> = rows
        .iter()
        .map(|r| strip_brackets(&r.message_id).to_owned())
        .collect();
    assert_eq!(delivered.keys().cloned().collect::<BTreeSet<_>>(), expected);
    for (id, copies) in &delivered {
        assert_eq!(copies.len(), 1, "{id} delivered {} times", copies.len());
    }
    assert_eq!(d.metric("clearflow_mail_retried_total"), N as u64);
    assert_eq!(d.metric("clearflow_mail_sent_total"), N as u64);
    assert_logs_clean(&d, &["desk@jw.example.cn"]);
}

#[test]
fn outage_then_every_message_once_sqlite() {
    outage_then_every_message_once(Backend::Sqlite);
}

#[test]
fn outage_then_every_message_once_postgres() {
    outage_then_every_message_once(Backend::Postgres);
}

fn sigkill_mid_send_loses_nothing(backend: Backend) {
    const N: usize = 500;
    let mut smtp = server(None);
    // Queue all 500 before sending starts, so the kill lands in the middle of sending
    // (the first attempts fail: connection refused).
    smtp.stop();
    let mut d = daemon(backend, &smtp, "");
    start_bulk(&d, N, "bulk@jw.example.cn");
    d.wait_until(
        "all 500 messages are queued and tried once",
        Duration::from_secs(120),
        |d| {
            let rows = outbox(d, Some("queued"));
            rows.len() == N && rows.iter().all(|r| r.attempts == 1)
        },
    );
    smtp.restart_with(|_| {});
    d.advance(TimeDelta::minutes(2));
    let mut at_kill = 0;
    d.wait_until(
        "some messages are delivered",
        Duration::from_secs(60),
        |_| {
            at_kill = smtp.messages().len();
            at_kill >= 100
        },
    );
    d.kill9();
    assert!(
        at_kill < N,
        "all {N} were delivered before the kill: the test proves nothing"
    );
    // The killed daemon's claims run out after their lease (two minutes on its clock).
    d.clock_start += TimeDelta::minutes(10);
    d.restart();
    d.wait_until(
        "all 500 messages are recorded as sent",
        Duration::from_secs(120),
        |d| outbox(d, Some("sent")).len() == N,
    );
    let rows = outbox(&d, None);
    assert_eq!(rows.len(), N);
    let expected: BTreeMap<String, &OutboxMessage> = rows
        .iter()
        .map(|r| (strip_brackets(&r.message_id).to_owned(), r))
        .collect();
    assert_eq!(expected.len(), N, "every outbox row has its own Message-ID");
    let messages = smtp.messages();
    let delivered = by_message_id(&messages);
    // Every message is in the maildir, and nothing else is.
    assert_eq!(
        delivered.keys().collect::<BTreeSet<_>>(),
        expected.keys().collect::<BTreeSet<_>>(),
        "the delivered Message-IDs are exactly the outbox's"
    );
    // A duplicate is a re-send of the same row: same Message-ID, same message.
    let mut duplicates = 0;
    for (id, copies) in &delivered {
        let first = MessageParser::default().parse(&copies[0]).expect("parses");
        for c in &copies[1..] {
            duplicates += 1;
            let again = MessageParser::default().parse(c).expect("parses");
            assert_eq!(again.message_id(), Some(id.as_str()));
            assert_eq!(again.subject(), first.subject(), "{id}");
            assert_eq!(again.body_text(0), first.body_text(0), "{id}");
        }
        assert_eq!(
            first.subject(),
            Some(expected[id].subject.as_str()),
            "{id} carries its own row's subject"
        );
    }
    assert_eq!(messages.len(), N + duplicates);
    // Only a message delivered but not yet recorded at the kill can repeat: at most
    // `mail.concurrency` (4 by default) sends are in that window at once.
    assert!(duplicates <= 4, "{duplicates} duplicates");
    eprintln!("{N} messages, {at_kill} delivered before SIGKILL, {duplicates} delivered twice");
    assert_logs_clean(&d, &["bulk@jw.example.cn"]);
}

#[test]
fn sigkill_mid_send_loses_nothing_sqlite() {
    sigkill_mid_send_loses_nothing(Backend::Sqlite);
}

#[test]
fn sigkill_mid_send_loses_nothing_postgres() {
    sigkill_mid_send_loses_nothing(Backend::Postgres);
}

fn rejected_recipient_is_a_dead_letter(backend: Backend) {
    let mut smtp = server(Some("^nobody@"));
    let mut d = daemon(backend, &smtp, "");
    start_bulk(&d, 1, "nobody@jw.example.cn");
    start_bulk(&d, 1, "desk@jw.example.cn");
    d.wait_until("one sent, one dead", Duration::from_secs(60), |d| {
        outbox(d, Some("sent")).len() == 1 && outbox(d, Some("dead")).len() == 1
    });
    let dead = outbox(&d, Some("dead"));
    let row = &dead[0];
    let id = row.id.clone();
    assert_eq!(row.attempts, 1, "a permanent failure is not retried");
    let reply = row.last_error.as_deref().expect("the reply is kept");
    assert!(reply.contains("550"), "{reply}");
    assert!(reply.contains("5.1.1 mailbox unavailable"), "{reply}");
    assert_eq!(row.recipients["to"], json!(["nobody@jw.example.cn"]));

    let api: MailList = d.get_typed("/v1/mail?status=dead");
    assert_eq!(api.items.len(), 1);
    assert_eq!(api.items[0].id, id);
    assert_eq!(api.items[0].last_error, row.last_error);
    let text = d.cli_ok(&["mail", "list", "--status", "dead"]);
    assert!(text.contains(&id) && text.contains("5.1.1"), "{text}");
    assert_eq!(d.metric("clearflow_mail_dead_total"), 1);
    assert_eq!(d.metric("clearflow_mail_sent_total"), 1);

    // The mailbox is fixed; the administrator queues the message again.
    smtp.restart_with(|o| o.reject = None);
    let out = d.cli_ok(&["mail", "retry", &id]);
    assert!(out.contains("queued"), "{out}");
    d.wait_until(
        "the retried message is sent",
        Duration::from_secs(60),
        |d| outbox(d, Some("sent")).len() == 2,
    );
    assert!(outbox(&d, Some("dead")).is_empty());
    let delivered = smtp.wait_for_messages(2, Duration::from_secs(10));
    let to: BTreeSet<String> = delivered
        .iter()
        .map(|m| header(m, "X-Envelope-To").expect("envelope"))
        .collect();
    assert_eq!(
        to,
        ["desk@jw.example.cn", "nobody@jw.example.cn"]
            .map(str::to_owned)
            .into()
    );
    // A second retry of a sent message is refused.
    let again = d.cli(&["mail", "retry", &id]);
    assert!(!again.status.success());
    assert_eq!(d.metric("clearflow_mail_dead_total"), 1);
    assert_eq!(d.metric("clearflow_mail_sent_total"), 2);
    assert_logs_clean(&d, &["nobody@jw.example.cn", "desk@jw.example.cn"]);
}

#[test]
fn rejected_recipient_is_a_dead_letter_sqlite() {
    rejected_recipient_is_a_dead_letter(Backend::Sqlite);
}

#[test]
fn rejected_recipient_is_a_dead_letter_postgres() {
    rejected_recipient_is_a_dead_letter(Backend::Postgres);
}

/// One refused address costs only that recipient the message: the server refuses
/// `nobody@` (550 at RCPT), the other four recipients each get it, and the outbox row
/// records every recipient's state.
fn a_refused_recipient_does_not_cost_the_others_the_message(backend: Backend) {
    let smtp = server(Some("^nobody@"));
    let mut d = daemon(backend, &smtp, "");
    d.start_instance(
        "notify",
        &json!({
            "to": "nobody@jw.example.cn",
            "bcc": "audit@jw.example.cn",
            "case_number": "JB-2025-0043",
            "title": "初步核实",
        }),
        None,
    );
    d.wait_until("the message is done", Duration::from_secs(60), |d| {
        outbox(d, Some("sent")).len() == 1
    });
    let delivered = smtp.wait_for_messages(4, Duration::from_secs(10));
    let to: BTreeSet<String> = delivered
        .iter()
        .map(|m| header(m, "X-Envelope-To").expect("envelope"))
        .collect();
    assert_eq!(
        to,
        [
            "audit@jw.example.cn",
            "sun.li@jw.example.cn",
            "wang.fang@jw.example.cn",
            "zhao.lei@jw.example.cn",
        ]
        .map(str::to_owned)
        .into(),
        "each accepted recipient got the message once, the refused one not at all"
    );
    let ids: BTreeSet<String> = delivered
        .iter()
        .map(|m| header(m, "Message-ID").expect("Message-ID"))
        .collect();
    assert_eq!(ids.len(), 1, "one message, one Message-ID");
    let row = &outbox(&d, None)[0];
    assert_eq!(row.attempts, 1, "{row:?}");
    let delivery = row.delivery.as_object().expect("delivery");
    assert_eq!(delivery.len(), 5, "{row:?}");
    assert_eq!(
        delivery["nobody@jw.example.cn"]["state"], "refused",
        "{row:?}"
    );
    assert!(
        delivery["nobody@jw.example.cn"]["reply"]
            .as_str()
            .is_some_and(|r| r.contains("550")),
        "{row:?}"
    );
    for a in ["audit@", "sun.li@", "wang.fang@", "zhao.lei@"] {
        assert_eq!(
            delivery[&format!("{a}jw.example.cn")]["state"],
            "sent",
            "{row:?}"
        );
    }
    let error = row.last_error.as_deref().expect("the refusal is kept");
    assert!(
        error.starts_with("refused for 1 of 5 recipients: 550"),
        "{error}"
    );
    assert_eq!(d.metric("clearflow_mail_sent_total"), 1);
    assert_eq!(d.metric("clearflow_mail_dead_total"), 0);
    assert_logs_clean(&d, &["nobody@jw.example.cn", "audit@jw.example.cn"]);
}

#[test]
fn a_refused_recipient_does_not_cost_the_others_the_message_sqlite() {
    a_refused_recipient_does_not_cost_the_others_the_message(Backend::Sqlite);
}

#[test]
fn a_refused_recipient_does_not_cost_the_others_the_message_postgres() {
    a_refused_recipient_does_not_cost_the_others_the_message(Backend::Postgres);
}
