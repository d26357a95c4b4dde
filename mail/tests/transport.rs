//! End-to-end tests of `Transport` against the real `scripts/smtp_server.py` and a maildir.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clearflow_mail::{
    ConfigError, FailureKind, Mail, Security, SendError, SmtpConfig, Transport, TransportConfig,
    message_id,
};
use clearflow_testkit::smtp::{ServerOptions, SmtpServer, read_maildir};
use mail_parser::MessageParser;

const DOMAIN: &str = "clearflow.test";

fn mail(id: &str) -> Mail {
    Mail {
        id: id.into(),
        message_id: message_id(id, DOMAIN),
        from: "Clearflow <noreply@clearflow.test>".into(),
        to: vec!["handler@example.org".into()],
        cc: vec![],
        bcc: vec![],
        subject: format!("message {id}"),
        text: format!("body of {id}\n"),
        html: None,
        headers: vec![],
    }
}

fn plain_config(server: &SmtpServer) -> SmtpConfig {
    let mut cfg = SmtpConfig::new("127.0.0.1", Security::Plain);
    cfg.port = Some(server.port());
    cfg.timeout = Duration::from_secs(5);
    cfg
}

fn transport(cfg: SmtpConfig) -> Transport {
    Transport::new(&TransportConfig::Smtp(cfg)).expect("valid transport config")
}

fn password_file(server: &SmtpServer, password: &str) -> PathBuf {
    let path = server.scratch_dir().join("password");
    std::fs::write(&path, format!("{password}\n")).unwrap();
    path
}

/// A mail with a Chinese subject, HTML, Cc, Bcc and an extra header.
fn rich_mail() -> Mail {
    Mail {
        id: "0190b7c2-8f4e-7a3b-9c1d-2e3f4a5b6c7d".into(),
        message_id: message_id("0190b7c2-8f4e-7a3b-9c1d-2e3f4a5b6c7d", DOMAIN),
        from: "信访办 <office@clearflow.test>".into(),
        to: vec![
            "张三 <zhangsan@example.org>".into(),
            "li@example.org".into(),
        ],
        cc: vec!["head@example.org".into()],
        bcc: vec!["audit@example.org".into()],
        subject: "关于举报事项的受理告知书（第 12 号）".into(),
        text: "您好：\n您的举报已受理，受理编号 A-12。\n".into(),
        html: Some("<p>您好：</p><p>您的举报已<b>受理</b>，受理编号 A-12。</p>".into()),
        headers: vec![("Auto-Submitted".into(), "auto-generated".into())],
    }
}

/// Reads a stored message back and checks every header and both bodies of [`rich_mail`].
fn assert_rich_mail(raw: &[u8]) {
    let msg = MessageParser::default()
        .parse(raw)
        .expect("stored message parses");
    assert_eq!(msg.subject(), Some("关于举报事项的受理告知书（第 12 号）"));
    assert_eq!(
        msg.message_id(),
        Some("0190b7c2-8f4e-7a3b-9c1d-2e3f4a5b6c7d@clearflow.test")
    );
    let from = msg.from().and_then(|a| a.first()).expect("From");
    assert_eq!(from.name(), Some("信访办"));
    assert_eq!(from.address(), Some("office@clearflow.test"));
    let to: Vec<_> = msg
        .to()
        .expect("To")
        .iter()
        .map(|a| (a.name().map(str::to_owned), a.address().unwrap().to_owned()))
        .collect();
    assert_eq!(
        to,
        [
            (Some("张三".to_owned()), "zhangsan@example.org".to_owned()),
            (None, "li@example.org".to_owned())
        ]
    );
    let cc: Vec<_> = msg.cc().expect("Cc").iter().map(|a| a.address()).collect();
    assert_eq!(cc, [Some("head@example.org")]);
    assert!(msg.bcc().is_none(), "a Bcc header was written");
    assert!(msg.header_raw("Bcc").is_none());
    assert!(msg.date().is_some(), "no Date header");
    assert_eq!(
        msg.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-generated")
    );
    assert_eq!(
        body(msg.body_text(0)),
        "您好：\n您的举报已受理，受理编号 A-12。"
    );
    assert_eq!(
        body(msg.body_html(0)),
        "<p>您好：</p><p>您的举报已<b>受理</b>，受理编号 A-12。</p>"
    );
    let raw_text = String::from_utf8_lossy(raw);
    assert!(raw_text.contains("multipart/alternative"), "{raw_text}");
    // What recipients see: everything but the delivery agent's envelope record.
    let seen: Vec<&str> = raw_text
        .lines()
        .filter(|l| !l.starts_with("X-Envelope-"))
        .collect();
    assert!(
        !seen.iter().any(|l| l.contains("audit@")),
        "the Bcc address leaked:\n{raw_text}"
    );

    // Bcc is delivered: the envelope names it.
    let envelope_to: Vec<&str> = msg
        .header_raw("X-Envelope-To")
        .expect("X-Envelope-To")
        .split(',')
        .map(str::trim)
        .collect();
    assert_eq!(
        envelope_to,
        [
            "zhangsan@example.org",
            "li@example.org",
            "head@example.org",
            "audit@example.org"
        ]
    );
}

/// A decoded body with MIME's CRLF line ends made LF and trailing line ends dropped.
fn body(decoded: Option<std::borrow::Cow<'_, str>>) -> String {
    let text = decoded.expect("body part present");
    text.replace("\r\n", "\n").trim_end_matches('\n').to_owned()
}

fn expect_err(result: Result<clearflow_mail::Delivered, SendError>) -> SendError {
    match result {
        Ok(d) => panic!("expected a failure, got delivered: {}", d.reply),
        Err(e) => e,
    }
}

#[tokio::test]
async fn plain_smtp_to_loopback_delivers_and_reports_the_reply() {
    let server = SmtpServer::start(ServerOptions::default());
    let delivered = transport(plain_config(&server))
        .send(&mail("1"))
        .await
        .expect("delivered");
    assert!(delivered.reply.starts_with("250 "), "{}", delivered.reply);

    let messages = server.wait_for_messages(1, Duration::from_secs(5));
    assert_eq!(messages.len(), 1);
    let msg = MessageParser::default().parse(&messages[0]).unwrap();
    assert_eq!(msg.message_id(), Some("1@clearflow.test"));
    assert_eq!(msg.subject(), Some("message 1"));
    assert_eq!(body(msg.body_text(0)), "body of 1");
    assert_eq!(
        msg.header_raw("X-Envelope-From").map(str::trim),
        Some("noreply@clearflow.test")
    );
}

#[tokio::test]
async fn chinese_subject_html_and_bcc_read_back_from_the_smtp_server() {
    let server = SmtpServer::start(ServerOptions::default());
    transport(plain_config(&server))
        .send(&rich_mail())
        .await
        .expect("delivered");
    let messages = server.wait_for_messages(1, Duration::from_secs(5));
    assert_eq!(messages.len(), 1, "one message for four recipients");
    assert_rich_mail(&messages[0]);
}

#[tokio::test]
async fn starttls_with_the_test_ca_and_auth() {
    let server = SmtpServer::start(ServerOptions {
        starttls: true,
        auth: Some(("clearflow".into(), "s3cret pass".into())),
        ..ServerOptions::default()
    });
    let mut cfg = SmtpConfig::new("127.0.0.1", Security::StartTls);
    cfg.port = Some(server.port());
    cfg.ca_file = Some(server.ca_file().unwrap().to_path_buf());
    cfg.username = Some("clearflow".into());
    cfg.password_file = Some(password_file(&server, "s3cret pass"));

    let delivered = transport(cfg.clone())
        .send(&rich_mail())
        .await
        .expect("delivered over starttls");
    assert!(delivered.reply.starts_with("250 "), "{}", delivered.reply);
    let messages = server.wait_for_messages(1, Duration::from_secs(5));
    assert_eq!(messages.len(), 1);
    assert_rich_mail(&messages[0]);

    // A wrong password is refused for good, with the server's reply.
    let mut wrong = cfg.clone();
    let path = server.scratch_dir().join("wrong-password");
    std::fs::write(&path, "guess").unwrap();
    wrong.password_file = Some(path);
    let err = expect_err(transport(wrong).send(&mail("2")).await);
    assert_eq!(err.kind, FailureKind::Permanent, "{err}");
    assert!(err.reply.starts_with("535 "), "{err}");

    // Without credentials the server refuses the mail itself.
    let mut anonymous = cfg.clone();
    (anonymous.username, anonymous.password_file) = (None, None);
    let err = expect_err(transport(anonymous).send(&mail("3")).await);
    assert_eq!(err.kind, FailureKind::Permanent, "{err}");
    assert!(err.reply.starts_with("530 "), "{err}");

    // The system roots do not know the test CA: a TLS failure, worth retrying.
    let mut untrusted = cfg;
    untrusted.ca_file = None;
    let err = expect_err(transport(untrusted).send(&mail("4")).await);
    assert_eq!(err.kind, FailureKind::Temporary, "{err}");
    assert!(err.reply.contains("invalid peer certificate"), "{err}");

    assert_eq!(
        server.messages().len(),
        1,
        "only the authenticated send arrived"
    );
}

#[tokio::test]
async fn starttls_is_required_when_configured() {
    // A server that offers no STARTTLS must not get the message in clear text.
    let server = SmtpServer::start(ServerOptions::default());
    let mut cfg = SmtpConfig::new("127.0.0.1", Security::StartTls);
    cfg.port = Some(server.port());
    let err = expect_err(transport(cfg).send(&mail("1")).await);
    assert_eq!(err.kind, FailureKind::Temporary, "{err}");
    assert!(err.reply.contains("STARTTLS"), "{err}");
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn implicit_tls_with_auth() {
    let server = SmtpServer::start(ServerOptions {
        tls: true,
        auth: Some(("u".into(), "p".into())),
        ..ServerOptions::default()
    });
    let mut cfg = SmtpConfig::new("localhost", Security::Tls);
    cfg.port = Some(server.port());
    cfg.ca_file = Some(server.ca_file().unwrap().to_path_buf());
    cfg.username = Some("u".into());
    cfg.password_file = Some(password_file(&server, "p"));
    transport(cfg)
        .send(&mail("1"))
        .await
        .expect("delivered over implicit tls");
    assert_eq!(server.wait_for_messages(1, Duration::from_secs(5)).len(), 1);
}

#[tokio::test]
async fn rejected_recipient_is_permanent_with_the_servers_reply() {
    let server = SmtpServer::start(ServerOptions {
        reject: Some("^nobody@".into()),
        tempfail: Some("^busy@".into()),
        ..ServerOptions::default()
    });
    let transport = transport(plain_config(&server));

    let mut rejected = mail("1");
    rejected.cc = vec!["nobody@example.org".into()];
    let err = expect_err(transport.send(&rejected).await);
    assert_eq!(err.kind, FailureKind::Permanent);
    assert_eq!(err.reply, "550 5.1.1 mailbox unavailable");

    let mut deferred = mail("2");
    deferred.to = vec!["busy@example.org".into()];
    let err = expect_err(transport.send(&deferred).await);
    assert_eq!(err.kind, FailureKind::Temporary);
    assert!(err.reply.starts_with("451 4.3.0"), "{err}");

    // The failed connections were not reused in a bad state: the next send goes through.
    transport.send(&mail("3")).await.expect("delivered");
    let messages = server.wait_for_messages(1, Duration::from_secs(5));
    assert_eq!(messages.len(), 1);
    let msg = MessageParser::default().parse(&messages[0]).unwrap();
    assert_eq!(msg.message_id(), Some("3@clearflow.test"));
}

#[tokio::test]
async fn invalid_address_is_permanent() {
    let server = SmtpServer::start(ServerOptions::default());
    let mut bad = mail("1");
    bad.to = vec!["not an address".into()];
    let err = expect_err(transport(plain_config(&server)).send(&bad).await);
    assert_eq!(err.kind, FailureKind::Permanent);
    assert!(err.reply.contains("not an address"), "{err}");
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn server_down_is_temporary() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = SmtpConfig::new("127.0.0.1", Security::Plain);
    cfg.port = Some(port);
    let err = expect_err(transport(cfg).send(&mail("1")).await);
    assert_eq!(err.kind, FailureKind::Temporary);
    assert!(err.reply.contains("refused"), "{err}");
}

#[tokio::test]
async fn silent_server_times_out_as_temporary() {
    // Accepts connections but never sends a greeting.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut cfg = SmtpConfig::new("127.0.0.1", Security::Plain);
    cfg.port = Some(listener.local_addr().unwrap().port());
    cfg.timeout = Duration::from_secs(1);
    let start = Instant::now();
    let err = expect_err(transport(cfg).send(&mail("1")).await);
    assert_eq!(err.kind, FailureKind::Temporary);
    assert!(err.reply.contains("timed out"), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    drop(listener);
}

#[tokio::test]
async fn server_restarted_on_the_same_port_is_used_again() {
    let mut first = SmtpServer::start(ServerOptions::default());
    let port = first.port();
    let transport = transport(plain_config(&first));
    transport.send(&mail("1")).await.expect("delivered");
    let status = first.stop().expect("server was running");
    assert!(
        status.success(),
        "smtp_server.py exited with {status} on SIGTERM"
    );

    let err = expect_err(transport.send(&mail("2")).await);
    assert_eq!(err.kind, FailureKind::Temporary, "{err}");

    let second = SmtpServer::start(ServerOptions {
        port,
        ..ServerOptions::default()
    });
    transport
        .send(&mail("2"))
        .await
        .expect("delivered after restart");
    assert_eq!(first.messages().len(), 1);
    assert_eq!(second.wait_for_messages(1, Duration::from_secs(5)).len(), 1);
}

/// A pooled connection the server dropped while idle (here: a restart) costs no attempt:
/// the send goes over a fresh connection at once.
#[tokio::test]
async fn connection_dropped_while_pooled_is_replaced_within_the_same_send() {
    let mut server = SmtpServer::start(ServerOptions::default());
    let transport = transport(plain_config(&server));
    transport.send(&mail("before")).await.expect("delivered");
    server.restart_with(|_| {});
    transport
        .send(&mail("after"))
        .await
        .expect("the stale pooled connection is replaced, not reported");
    // Both runs' maildirs are read: one message each, none twice.
    assert_eq!(server.wait_for_messages(2, Duration::from_secs(5)).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_transport_delivers_200_messages() {
    let server = SmtpServer::start(ServerOptions::default());
    let mut cfg = plain_config(&server);
    cfg.pool_max = 4;
    let transport = transport(cfg);
    let tasks: Vec<_> = (0..8)
        .map(|sender| {
            let transport = transport.clone();
            tokio::spawn(async move {
                for i in (sender..200).step_by(8) {
                    transport
                        .send(&mail(&format!("pool-{i}")))
                        .await
                        .unwrap_or_else(|e| panic!("message {i}: {e}"));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let messages = server.wait_for_messages(200, Duration::from_secs(10));
    let mut ids: Vec<String> = messages
        .iter()
        .map(|raw| {
            let msg = MessageParser::default().parse(raw).unwrap();
            msg.message_id().unwrap().to_owned()
        })
        .collect();
    ids.sort();
    ids.dedup();
    let mut expected: Vec<String> = (0..200)
        .map(|i| format!("pool-{i}@clearflow.test"))
        .collect();
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(messages.len(), 200, "no duplicates");
}

#[tokio::test]
async fn rate_limit_spaces_out_sends() {
    let server = SmtpServer::start(ServerOptions::default());
    let mut cfg = plain_config(&server);
    cfg.rate_per_sec = Some(20);
    let transport = transport(cfg);
    let start = Instant::now();
    // 20 go at once (one second's burst), the next 10 at 50 ms each.
    for i in 0..30 {
        transport.send(&mail(&i.to_string())).await.expect("sent");
    }
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(490), "{elapsed:?}");
    assert_eq!(
        server.wait_for_messages(30, Duration::from_secs(5)).len(),
        30
    );
}

#[tokio::test]
async fn maildir_transport_stores_messages_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mail");
    let transport = Transport::new(&TransportConfig::Maildir { path: root.clone() }).unwrap();
    let delivered = transport.send(&rich_mail()).await.expect("stored");
    assert!(delivered.reply.contains("/new/"), "{}", delivered.reply);
    for i in 0..20 {
        transport.send(&mail(&i.to_string())).await.unwrap();
    }

    let messages = read_maildir(&root);
    assert_eq!(messages.len(), 21);
    let rich = messages
        .iter()
        .find(|raw| String::from_utf8_lossy(raw).contains("multipart/alternative"))
        .expect("the rich mail");
    assert_rich_mail(rich);
    assert!(
        !rich.windows(2).any(|w| w == b"\r\n"),
        "maildir files use LF"
    );
    assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(root.join("new")).unwrap().count(), 21);
}

#[test]
fn plain_smtp_to_a_remote_host_is_refused() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let err = Transport::new(&TransportConfig::Smtp(SmtpConfig::new(
        "smtp.example.org",
        Security::Plain,
    )))
    .unwrap_err();
    assert!(
        matches!(err, ConfigError::PlainToRemoteHost { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("plain smtp is only allowed to a loopback host")
    );

    for host in ["localhost", "127.0.0.1", "::1"] {
        let cfg = TransportConfig::Smtp(SmtpConfig::new(host, Security::Plain));
        assert!(Transport::new(&cfg).is_ok(), "{host}");
    }
}

#[test]
fn unusable_configs_are_refused_with_a_clear_error() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _guard = runtime.enter();
    let dir = tempfile::tempdir().unwrap();
    let check = |cfg: SmtpConfig, expected: &str| {
        let err = Transport::new(&TransportConfig::Smtp(cfg)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(expected),
            "{text:?} should mention {expected:?}"
        );
        assert!(text.starts_with(char::is_lowercase), "{text}");
        assert!(!text.ends_with('.'), "{text}");
    };
    let base = SmtpConfig::new("mail.example.org", Security::StartTls);

    let mut cfg = base.clone();
    cfg.username = Some("u".into());
    cfg.password_file = Some(dir.path().join("missing"));
    check(cfg, "cannot read smtp password file");

    let mut cfg = base.clone();
    cfg.username = Some("u".into());
    check(cfg, "needs password_file or password_env");

    let mut cfg = base.clone();
    cfg.username = Some("u".into());
    cfg.password_env = Some("CLEARFLOW_TEST_UNSET_PASSWORD_VARIABLE".into());
    check(cfg, "is not set");

    let garbage = dir.path().join("ca.pem");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let mut cfg = base.clone();
    cfg.ca_file = Some(garbage);
    check(cfg, "cannot use ca_file");

    let mut cfg = base.clone();
    cfg.pool_max = 0;
    check(cfg, "pool_max");

    let mut cfg = base.clone();
    cfg.rate_per_sec = Some(0);
    check(cfg, "rate_per_sec");
}

#[test]
fn transport_is_created_outside_a_runtime_and_used_inside_one() {
    let server = SmtpServer::start(ServerOptions::default());
    let transport = Transport::new(&TransportConfig::Smtp(plain_config(&server))).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(transport.send(&mail("1")))
        .expect("delivered");
    assert_eq!(server.wait_for_messages(1, Duration::from_secs(5)).len(), 1);
}
