//! End-to-end tests of complaint intake, receipt codes and the reporter's sealed identity,
//! on the real daemon with SQLite and PostgreSQL and a real SMTP server.
//!
//! One complaint with a recognisable reporter runs through the fixture workflow
//! `tests/fixtures/intake/complaint-intake.yaml`; the reporter's name, email and ID
//! number are then searched for in the raw database, the daemon's log, the API's views
//! and every email not addressed to the reporter.

use clearflow_testkit as support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::model::{AuditEntry, AuditPage, IdentityRead, IntakeReply, MailList, StatusReply};
use support::smtp;
use support::{BIN, Backend, Daemon, Options};

const NAME: &str = "Qiuyue Zhangfeng-Recognisable";
const EMAIL: &str = "whistle.qiuyue@example.net";
const ID_NUMBER: &str = "330106198812125678";
const PHONE: &str = "+86 571 8765 4321";

/// The strings that must never leak.
const SECRETS: [&str; 4] = [NAME, EMAIL, ID_NUMBER, PHONE];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/intake")
}

fn assert_no_secret(what: &str, text: &str) {
    for s in SECRETS {
        assert!(
            !text.contains(s),
            "{what} contains the reporter's `{s}`:\n{text}"
        );
    }
}

/// A new token of `user` (`clearflow tokens create`).
fn token(d: &Daemon, user: &str) -> String {
    d.create_token(user, "never")
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

fn get_as(d: &Daemon, path: &str, bearer: Option<&str>) -> (u16, Value) {
    let mut req = http().get(format!("{}{path}", d.url()));
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let r = req.send().expect("GET");
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn post_raw(d: &Daemon, path: &str, body: &Value) -> (u16, String, Duration) {
    let t = Instant::now();
    let r = http()
        .post(format!("{}{path}", d.url()))
        .json(body)
        .send()
        .expect("POST");
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    (status, text, t.elapsed())
}

fn status_of(d: &Daemon, receipt: &str) -> (u16, Value) {
    d.try_post("/v1/public/status", &json!({ "receipt": receipt }))
        .expect("POST status")
}

fn complaint(with_reporter: bool) -> Value {
    let mut body = json!({
        "case": {
            "content": "The head of the procurement office accepted gifts from a supplier.",
            "accused": { "name": "Official Li", "department": "Procurement Office" },
            "category": "integrity",
            "attachments": [{ "name": "receipt-scan.pdf", "size": 182044, "sha256": "ab12" }],
        }
    });
    if with_reporter {
        body["reporter"] = json!({
            "name": NAME,
            "email": EMAIL,
            "phone": PHONE,
            "id_number": ID_NUMBER,
            "address": "12 Wulin Road, Hangzhou",
        });
    }
    body
}

struct Setup {
    daemon: Daemon,
    smtp: smtp::SmtpServer,
    _keys: tempfile::TempDir,
}

fn setup(backend: Backend) -> Setup {
    setup_with(backend, "")
}

/// [`setup`] with `more` appended to the configuration.
fn setup_with(backend: Backend, more: &str) -> Setup {
    let smtp = smtp::SmtpServer::start(smtp::ServerOptions::default());
    let keydir = tempfile::tempdir().expect("tempdir");
    let key = keydir.path().join("identity.key");
    let out = Command::new(&*BIN)
        .args(["identity", "keygen"])
        .arg(&key)
        .output()
        .expect("keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key_text = std::fs::read_to_string(&key).expect("key");
    let users = "[[users]]\nid = \"reader\"\nname = \"Reader\"\nemail = \"reader@example.org\"\nroles = [\"identity-reader\"]\n\n\
         [[users]]\nid = \"clerk\"\nname = \"Clerk\"\nemail = \"clerk@example.org\"\nroles = [\"intake\"]\n"
        .to_owned();
    // The clerk reads cases; only the identity reader may open the sealed identity.
    let roles = "[roles.identity-reader]\nread_identity = true\nread_instances = true\n\n\
         [roles.intake]\nread_instances = true\ntasks = true\n"
        .to_owned();
    let extra = format!(
        "[intake]\nworkflow = \"complaint-intake\"\nintake_per_hour = 1\nintake_burst = 6\n\
         status_per_minute = 1\nstatus_burst = 40\nreceipt_per_hour = 1\nreceipt_burst = 5\n\n\
         [mail]\ntemplates = \"{templates}\"\nretry_initial_seconds = 1\n\n\
         [mail.transport]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"plain\"\n",
        templates = fixtures().join("templates").display(),
        port = smtp.port(),
    ) + more;
    let daemon = Daemon::start_with(
        backend,
        &fixtures(),
        Options {
            // The key comes from the environment here; the key file is checked by
            // `refuses_intake_without_a_key` and the unit tests.
            env: vec![("CLEARFLOW_IDENTITY_KEY".into(), key_text.trim().into())],
            extra,
            users,
            roles,
            ..Options::default()
        },
    );
    Setup {
        daemon,
        smtp,
        _keys: keydir,
    }
}

fn only_instance(d: &Daemon, skip: &[String]) -> String {
    let all = d.instances("workflow=complaint-intake");
    let fresh: Vec<String> = all
        .iter()
        .map(|i| i.id.clone())
        .filter(|id| !skip.contains(id))
        .collect();
    assert_eq!(fresh.len(), 1, "{all:?}");
    fresh[0].clone()
}

fn waits_for(d: &mut Daemon, id: &str, event: &str) {
    let id = id.to_owned();
    let event = event.to_owned();
    d.wait_until(
        &format!("instance waits for `{event}`"),
        Duration::from_secs(60),
        |d| d.show_instance(&id).waiting.to_string().contains(&event),
    );
}

fn envelope_to(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    text.lines()
        .find_map(|l| l.strip_prefix("X-Envelope-To: "))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Every byte of the store, or every row of its tables as text.
pub(crate) fn raw_store(d: &Daemon) -> String {
    match d.backend {
        Backend::Sqlite => {
            let base = d.dir.path().join("store/clearflow.db");
            let mut all = Vec::new();
            for suffix in ["", "-wal", "-shm"] {
                let p = PathBuf::from(format!("{}{suffix}", base.display()));
                if let Ok(b) = std::fs::read(&p) {
                    all.extend(b);
                }
            }
            assert!(all.len() > 10_000, "the database file was read");
            String::from_utf8_lossy(&all).into_owned()
        }
        Backend::Postgres => {
            use sqlx::{Connection, Row};
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&d.store_url)
                    .await
                    .expect("connect");
                let tables: Vec<String> =
                    sqlx::query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                        .fetch_all(&mut conn)
                        .await
                        .expect("tables")
                        .iter()
                        .map(|r| r.get::<String, _>("tablename"))
                        .collect();
                assert!(tables.contains(&"identities".to_owned()), "{tables:?}");
                let mut out = String::new();
                for t in tables {
                    let rows = sqlx::query(&format!("SELECT t::text AS row FROM {t} t"))
                        .fetch_all(&mut conn)
                        .await
                        .expect("rows");
                    for r in rows {
                        out += &r.get::<String, _>("row");
                        out.push('\n');
                    }
                }
                out
            })
        }
    }
}

fn intake_end_to_end(backend: Backend) {
    let Setup {
        mut daemon,
        smtp,
        _keys,
    } = setup(backend);
    let d = &mut daemon;

    // Intake: a receipt code, shown once, of 32 characters in groups of four.
    let (status, text, _) = post_raw(d, "/v1/public/intake", &complaint(true));
    assert_eq!(status, 201, "{text}");
    assert_no_secret("the intake answer", &text);
    let receipt = serde_json::from_str::<IntakeReply>(&text)
        .expect("an intake reply")
        .receipt;
    assert_eq!(receipt.len(), 39, "{receipt}");
    assert_eq!(receipt.split('-').count(), 8, "{receipt}");
    let id = only_instance(d, &[]);

    // The case holds the case data and the reporter's kind only.
    let shown = d.show_instance(&id);
    assert_eq!(
        shown.data["input"]["reporter"],
        json!({ "type": "real_name", "contact_by_email": true })
    );
    assert_eq!(shown.data["input"]["category"], "integrity");
    assert_eq!(shown.instance.workflow, "complaint-intake");

    // The acknowledgement goes to the reporter, the staff notice to the office.
    waits_for(d, &id, "screened");
    let mails = smtp.wait_for_messages(2, Duration::from_secs(60));
    assert_eq!(mails.len(), 2, "acknowledgement and staff notice");
    let to_reporter: Vec<&Vec<u8>> = mails.iter().filter(|m| envelope_to(m) == EMAIL).collect();
    assert_eq!(to_reporter.len(), 1, "one acknowledgement to the reporter");
    assert!(String::from_utf8_lossy(to_reporter[0]).contains("your report was received"));
    for m in mails.iter().filter(|m| envelope_to(m) != EMAIL) {
        assert_eq!(envelope_to(m), "intake-office@example.org");
        assert_no_secret("the staff notice", &String::from_utf8_lossy(m));
    }

    // Public status as the workflow moves.
    let (code, v) = status_of(d, &receipt);
    assert_eq!(
        (code, v.clone()),
        (200, json!({ "status": "received", "feedback": null }))
    );
    d.post(
        &format!("/v1/instances/{id}/signal"),
        &json!({ "name": "screened" }),
    );
    waits_for(d, &id, "concluded");
    let (code, v) = status_of(d, &receipt.to_lowercase().replace('-', " "));
    assert_eq!(code, 200, "{v}");
    let reply: StatusReply = serde_json::from_value(v).expect("a status reply");
    assert_eq!(reply.status, "under verification");
    let cli = d.cli_ok(&["status", "--receipt", &receipt]);
    assert_eq!(cli.trim(), "status: under verification");

    let feedback = "The allegation was verified; the official received a warning.";
    d.post(
        &format!("/v1/instances/{id}/signal"),
        &json!({ "name": "concluded", "data": { "feedback": feedback } }),
    );
    d.wait_until("the case is concluded", Duration::from_secs(60), |d| {
        d.show_instance(&id).instance.status == "completed"
    });
    let (code, v) = status_of(d, &receipt);
    assert_eq!(code, 200);
    assert_eq!(v, json!({ "status": "concluded", "feedback": feedback }));
    let mails = smtp.wait_for_messages(3, Duration::from_secs(60));
    let to_reporter: Vec<String> = mails
        .iter()
        .filter(|m| envelope_to(m) == EMAIL)
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    assert_eq!(to_reporter.len(), 2, "acknowledgement and feedback");
    assert!(to_reporter.iter().any(|m| m.contains(feedback)));

    // Reading the identity: a token, the permission and a reason are all required.
    let path = format!("/v1/instances/{id}/identity");
    assert_eq!(get_as(d, &format!("{path}?reason=x"), None).0, 401);
    let (code, v) = get_as(d, &format!("{path}?reason=audit"), Some(&token(d, "clerk")));
    assert_eq!(code, 403, "{v}");
    assert_no_secret("a refused identity read", &v.to_string());
    let reader = token(d, "reader");
    let (code, v) = get_as(d, &path, Some(&reader));
    assert_eq!(code, 400, "{v}");
    let (code, v) = get_as(d, &format!("{path}?reason=%20%20"), Some(&reader));
    assert_eq!(code, 400, "{v}");
    let reason = "WF3 false-accusation investigation 2025-17";
    let (code, v) = get_as(
        d,
        &format!("{path}?reason=WF3%20false-accusation%20investigation%202025-17"),
        Some(&reader),
    );
    assert_eq!(code, 200, "{v}");
    let read: IdentityRead = serde_json::from_value(v).expect("an identity read");
    assert_eq!(read.identity.name.as_deref(), Some(NAME));
    assert_eq!(read.identity.email.as_deref(), Some(EMAIL));
    assert_eq!(read.identity.id_number.as_deref(), Some(ID_NUMBER));
    assert_eq!(read.reason, reason);

    // Every use of the identity is in the audit log with who and why, and nothing of it.
    // Raw bodies, for the secret checks below; typed reads of the same bodies.
    let shown = d.instance(&id);
    let audit = d.get("/v1/audit?limit=1000");
    let page: AuditPage = serde_json::from_value(audit.clone()).expect("an audit page");
    let uses: Vec<&AuditEntry> = page
        .items
        .iter()
        .filter(|a| a.instance_id.as_deref() == Some(id.as_str()))
        .collect();
    let reads: Vec<&&AuditEntry> = uses.iter().filter(|a| a.kind == "identity.read").collect();
    assert_eq!(reads.len(), 1, "{audit}");
    assert_eq!(reads[0].actor, "reader");
    assert_eq!(reads[0].detail["reason"], reason);
    let mail_uses = uses
        .iter()
        .filter(|a| a.kind == "identity.used_for_mail")
        .count();
    assert_eq!(mail_uses, 2, "one record per message to the reporter");
    assert_no_secret("the audit log", &audit.to_string());
    assert_no_secret("`instances show`", &shown.to_string());
    let cli = d.cli_ok(&["instances", "show", &id, "--json"]);
    assert_no_secret("`clearflow instances show`", &cli);
    let (_, mail_list) = d.try_get("/v1/mail?limit=100").expect("mail list");
    assert_no_secret("the outbox listing", &mail_list.to_string());
    let outbox: MailList = serde_json::from_value(mail_list.clone()).expect("a mail list");
    assert_eq!(outbox.items.len(), 3, "{mail_list}");

    // An anonymous complaint: no identity, no mail to the reporter, a note instead.
    let (status, text, _) = post_raw(d, "/v1/public/intake", &complaint(false));
    assert_eq!(status, 201, "{text}");
    let anon_receipt = serde_json::from_str::<Value>(&text).expect("json")["receipt"]
        .as_str()
        .expect("receipt")
        .to_owned();
    let anon = only_instance(d, std::slice::from_ref(&id));
    waits_for(d, &anon, "screened");
    let shown = d.show_instance(&anon);
    assert_eq!(
        shown.data["input"]["reporter"],
        json!({ "type": "anonymous", "contact_by_email": false })
    );
    let skipped: Vec<_> = shown
        .history
        .iter()
        .filter(|h| h.kind == "mail_skipped")
        .collect();
    assert_eq!(skipped.len(), 1, "{shown:?}");
    assert_eq!(skipped[0].step.as_deref(), Some("acknowledge"));
    let (code, _) = get_as(
        d,
        &format!("/v1/instances/{anon}/identity?reason=check"),
        Some(&reader),
    );
    assert_eq!(code, 404);
    assert_eq!(status_of(d, &anon_receipt).0, 200);

    // A wrong code and an unknown case are indistinguishable: same status, same body,
    // and the same Argon2 work (the unknown lookup id runs a dummy verification).
    let mut wrong = receipt.clone();
    let last = wrong.pop().expect("char");
    wrong.push(if last == '0' { '1' } else { '0' });
    let unknown = "ZZZZ-ZZZZ-0000-0000-0000-0000-0000-0000";
    let (s1, b1, t1) = post_raw(d, "/v1/public/status", &json!({ "receipt": wrong }));
    let (s2, b2, t2) = post_raw(d, "/v1/public/status", &json!({ "receipt": unknown }));
    let (s3, b3, t3) = post_raw(d, "/v1/public/status", &json!({ "receipt": "nonsense" }));
    assert_eq!((s1, s2, s3), (404, 404, 404));
    assert_eq!(b1, b2);
    assert_eq!(b2, b3);
    // One more try of the unknown case (the wrong code's lookup id is near its limit).
    let (s5, _, t5) = post_raw(d, "/v1/public/status", &json!({ "receipt": unknown }));
    assert_eq!(s5, 404);
    let wrong_t = t1;
    let unknown_t = t2.min(t5);
    eprintln!(
        "status timing: wrong code {wrong_t:?}, unknown case {unknown_t:?} (first {t2:?}), malformed {t3:?}"
    );
    assert!(
        unknown_t * 3 > wrong_t && wrong_t * 3 > unknown_t,
        "timing tells the cases apart: wrong {wrong_t:?} vs unknown {unknown_t:?}"
    );

    // Online guessing of one code stops: 5 tries per lookup id in a burst, and the
    // anonymous case's code was checked once above.
    let mut guess = anon_receipt.clone();
    let last = guess.pop().expect("char");
    guess.push(if last == 'Z' { 'Y' } else { 'Z' });
    let codes: Vec<u16> = (0..6).map(|_| status_of(d, &guess).0).collect();
    assert_eq!(codes, vec![404, 404, 404, 404, 429, 429]);
    // …and even the right code is refused while its lookup id is locked.
    assert_eq!(status_of(d, &anon_receipt).0, 429);

    // Per address: random codes until the address is limited.
    let mut limited = false;
    for i in 0..45 {
        let (code, body) = status_of(d, &format!("{i:0>8}-0000-0000-0000-0000-0000-0000"));
        if code == 429 {
            assert!(body.to_string().contains("too many requests"), "{body}");
            limited = true;
            break;
        }
        assert_eq!(code, 404);
    }
    assert!(limited, "the status endpoint limits one address");

    // Bad bodies are refused without quoting them.
    for bad in [
        json!({ "case": {}, "reporter": { "name": 5, "email": EMAIL } }),
        json!({ "case": {}, "reporter": NAME }),
        json!({ "case": {}, "reporter": { "email": format!("{NAME} <{EMAIL}>") } }),
    ] {
        let (code, text, _) = post_raw(d, "/v1/public/intake", &bad);
        assert_eq!(code, 400, "{text}");
        assert_no_secret("an intake error", &text);
    }

    // Intake is limited per address: 6 in a burst; 5 were used (3 refused bodies).
    let codes: Vec<u16> = (0..2)
        .map(|_| post_raw(d, "/v1/public/intake", &complaint(false)).0)
        .collect();
    assert_eq!(codes, vec![201, 429]);

    // Nothing of the identity in clear in the store, nor in the daemon's log.
    assert_no_secret("the raw store", &raw_store(d));
    assert_no_secret("the daemon log", &d.logs());
}

#[test]
fn intake_receipt_status_and_identity_sqlite() {
    intake_end_to_end(Backend::Sqlite);
}

#[test]
fn intake_receipt_status_and_identity_postgres() {
    intake_end_to_end(Backend::Postgres);
}

/// `[retention]` for the retention tests: one year, warned 30 days before, swept at every
/// move of the clock.
const RETENTION: &str = "\n[retention]\nkeep = \"1y\"\nwarn_before = \"30d\"\nevery_seconds = 1\n";

/// Files a complaint with a reporter and concludes it; returns its instance and receipt
/// code once its three mails are delivered.
fn close_a_case(d: &mut Daemon, smtp: &smtp::SmtpServer) -> (String, String) {
    let (status, text, _) = post_raw(d, "/v1/public/intake", &complaint(true));
    assert_eq!(status, 201, "{text}");
    let receipt = serde_json::from_str::<IntakeReply>(&text)
        .expect("an intake reply")
        .receipt;
    let closed = only_instance(d, &[]);
    waits_for(d, &closed, "screened");
    d.post(
        &format!("/v1/instances/{closed}/signal"),
        &json!({ "name": "screened" }),
    );
    waits_for(d, &closed, "concluded");
    d.post(
        &format!("/v1/instances/{closed}/signal"),
        &json!({ "name": "concluded", "data": { "feedback": "verified" } }),
    );
    d.wait_until("the case is concluded", Duration::from_secs(60), |d| {
        d.show_instance(&closed).instance.status == "completed"
    });
    assert_eq!(smtp.wait_for_messages(3, Duration::from_secs(60)).len(), 3);
    (closed, receipt)
}

fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
    s.parse().expect("time")
}

/// Moves the clock to `t` and waits for a retention sweep at that time.
fn sweep_at(d: &mut Daemon, t: chrono::DateTime<chrono::Utc>) {
    d.set_clock(t);
    d.wait_until(
        &format!("a retention sweep at {t}"),
        Duration::from_secs(60),
        |d| d.metric("clearflow_retention_swept_at_seconds") >= t.timestamp() as u64,
    );
}

/// The retention records of `case` in the audit log, oldest first.
fn retention_audit(d: &Daemon, case: &str) -> Vec<AuditEntry> {
    d.get_typed::<AuditPage>("/v1/audit?limit=1000")
        .items
        .into_iter()
        .filter(|a| a.instance_id.as_deref() == Some(case) && a.kind.starts_with("retention."))
        .collect()
}

/// Closed cases expire: a warning to the administrators 30 days before, a hold that keeps
/// the case past its expiry, and at the end the whole case — instance, history, mail,
/// receipt code and sealed identity — deleted in one audited step, while a running case
/// stays untouched.
fn closed_cases_expire_after_a_warning(backend: Backend) {
    let Setup {
        mut daemon,
        smtp,
        _keys,
    } = setup_with(backend, RETENTION);
    let d = &mut daemon;
    let (closed, receipt) = close_a_case(d, &smtp);
    // A second case stays open all along: it must never be touched.
    let (status, text, _) = post_raw(d, "/v1/public/intake", &complaint(false));
    assert_eq!(status, 201, "{text}");
    let open = only_instance(d, std::slice::from_ref(&closed));

    // Closed at the clock's start (2025-03-03 17:00 in Shanghai): kept one calendar
    // year, warned 30 days before.
    let list = |d: &Daemon| -> Value {
        let out = d.admin_cli(&["retention", "list", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json")
    };
    let items = list(d)["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 1, "only the closed case is listed: {items:?}");
    assert_eq!(items[0]["case"], json!(closed));
    assert_eq!(items[0]["due"]["decision"], "wait");
    assert_eq!(items[0]["due"]["warn_at"], "2026-02-01T09:00:00Z");
    assert_eq!(items[0]["due"]["expires_at"], "2026-03-03T09:00:00Z");

    // A minute before the warning: nothing.
    sweep_at(d, at("2026-02-01T08:59:00Z"));
    assert_eq!(d.metric("clearflow_retention_warned_total"), 0);
    // The warning, once, however many sweeps follow.
    sweep_at(d, at("2026-02-01T09:00:00Z"));
    sweep_at(d, at("2026-02-02T09:00:00Z"));
    assert_eq!(d.metric("clearflow_retention_warned_total"), 1);
    // The closed case's three, the open case's staff notice, and the warning.
    let mails = smtp.wait_for_messages(5, Duration::from_secs(60));
    let warnings: Vec<String> = mails
        .iter()
        .filter(|m| envelope_to(m) == "admin@example.org")
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .collect();
    assert_eq!(warnings.len(), 1, "one warning to the admin role");
    assert!(warnings[0].contains(&closed), "{}", warnings[0]);
    assert_no_secret("the retention warning", &warnings[0]);

    // On hold, the case outlives its expiry.
    let out = d.admin_cli(&["retention", "hold", &closed, "--reason", "申诉复查 appeal"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sweep_at(d, at("2026-03-10T09:00:00Z"));
    assert_eq!(d.show_instance(&closed).instance.status, "completed");
    assert_eq!(status_of(d, &receipt).0, 200);
    assert_eq!(list(d)["items"][0]["due"]["decision"], "held");
    // Released: deleted at the next sweep.
    let out = d.admin_cli(&["retention", "release", &closed]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sweep_at(d, at("2026-03-10T09:01:00Z"));
    assert_eq!(d.metric("clearflow_retention_deleted_total"), 1);
    assert_eq!(
        d.try_get(&format!("/v1/instances/{closed}"))
            .expect("GET")
            .0,
        404
    );
    assert_eq!(status_of(d, &receipt).0, 404, "the receipt code is gone");
    assert_eq!(d.show_instance(&open).instance.status, "running");
    assert!(list(d)["items"].as_array().expect("items").is_empty());

    // Every step is in the audit log; the deletion counts what it removed.
    let records = retention_audit(d, &closed);
    let kinds: Vec<&str> = records.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "retention.warned",
            "retention.held",
            "retention.released",
            "retention.deleted"
        ]
    );
    let deleted = records[3].detail.clone();
    assert_eq!(deleted["deleted"]["instances"], 1, "{deleted}");
    assert_eq!(deleted["deleted"]["receipts"], 1, "{deleted}");
    assert_eq!(deleted["deleted"]["identities"], 1, "{deleted}");
    // Acknowledgement, staff notice, feedback and the warning.
    assert_eq!(deleted["deleted"]["outbox"], 4, "{deleted}");
    assert!(
        deleted["deleted"]["history"].as_u64().expect("history") > 5,
        "{deleted}"
    );
    assert_no_secret("the audit log", &d.get("/v1/audit?limit=1000").to_string());
    // The history chains of what remains are intact, and the deleted one is not missed.
    let out = d.admin_cli(&["audit", "verify"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        d.logs()
            .contains("closed case deleted at the end of its retention period")
    );
}

#[test]
fn closed_cases_expire_after_a_warning_sqlite() {
    closed_cases_expire_after_a_warning(Backend::Sqlite);
}

#[test]
fn closed_cases_expire_after_a_warning_postgres() {
    closed_cases_expire_after_a_warning(Backend::Postgres);
}

/// Two daemons on one PostgreSQL database sweep the same case at the same clock times:
/// it is warned once and deleted once.
#[test]
fn two_daemons_warn_and_delete_a_case_once() {
    let Setup {
        mut daemon,
        smtp,
        _keys,
    } = setup_with(Backend::Postgres, RETENTION);
    let (closed, _) = close_a_case(&mut daemon, &smtp);
    let mut other = Daemon::start_beside(&daemon);
    for (t, mails) in [
        ("2026-02-01T09:00:00Z", 4),
        ("2026-02-15T09:00:00Z", 4),
        ("2026-03-03T09:00:00Z", 4),
        ("2026-03-04T09:00:00Z", 4),
    ] {
        let t = at(t);
        std::thread::scope(|s| {
            s.spawn(|| daemon.set_clock(t));
            s.spawn(|| other.set_clock(t));
        });
        sweep_at(&mut daemon, t);
        sweep_at(&mut other, t);
        // The warning is delivered before the clock moves on.
        let got = smtp.wait_for_messages(mails, Duration::from_secs(60));
        let heads: Vec<String> = got
            .iter()
            .map(|m| {
                String::from_utf8_lossy(m)
                    .lines()
                    .filter(|l| l.starts_with("Message-ID:") || l.starts_with("Subject:"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        assert_eq!(got.len(), mails, "at {t}: {heads:#?}");
    }
    assert_eq!(
        daemon
            .try_get(&format!("/v1/instances/{closed}"))
            .expect("GET")
            .0,
        404
    );
    let total = |name: &str| daemon.metric(name) + other.metric(name);
    assert_eq!(total("clearflow_retention_warned_total"), 1);
    assert_eq!(total("clearflow_retention_deleted_total"), 1);
    let kinds: Vec<String> = retention_audit(&daemon, &closed)
        .iter()
        .map(|a| a.kind.clone())
        .collect();
    assert_eq!(kinds, ["retention.warned", "retention.deleted"]);
    other.terminate();
}

#[test]
fn refuses_intake_without_a_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("clearflow.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"sqlite://{}/db.sqlite\"\n[intake]\nworkflow = \"complaint-intake\"\n",
            dir.path().display()
        ),
    )
    .expect("config");
    let run = |extra_env: Option<(&str, &str)>| {
        let mut cmd = Command::new(&*BIN);
        cmd.args(["serve", "--config"])
            .arg(&config)
            .current_dir(dir.path())
            .env_remove("CLEARFLOW_IDENTITY_KEY");
        if let Some((k, v)) = extra_env {
            cmd.env(k, v);
        }
        cmd.output().expect("serve")
    };
    let out = run(None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("complaint intake is enabled") && err.contains("identity keygen"),
        "{err}"
    );
    // A malformed key is refused too.
    let out = run(Some(("CLEARFLOW_IDENTITY_KEY", "c2hvcnQ=")));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expected 32 bytes"), "{err}");
    // A key file others can read is refused.
    let key = dir.path().join("identity.key");
    let out = Command::new(&*BIN)
        .args(["identity", "keygen"])
        .arg(&key)
        .output()
        .expect("keygen");
    assert!(out.status.success());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let out = run(Some((
        "CLEARFLOW__IDENTITY__KEY_FILE",
        key.to_str().expect("utf-8"),
    )));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("readable by others"));
    // And keygen never overwrites a key.
    let again = Command::new(&*BIN)
        .args(["identity", "keygen"])
        .arg(&key)
        .output()
        .expect("keygen");
    assert!(!again.status.success());
}
