//! Complaint handling (WF1) and false accusation (WF3) through the real daemon: every
//! screening and disposal path, DOMAIN.md's acceptance examples, the sealed identity,
//! and the leak test — nothing of the whistleblower in logs, staff views or other mail.
//!
//! Each scenario runs on SQLite and PostgreSQL with the shipped workflows, the built-in
//! plugins, the demo organisation and a real SMTP server (`support/flagship.rs`).

use clearflow_testkit as support;
use clearflow_testkit::flagship;

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use flagship::Flagship;
use mail_parser::MessageParser;
use serde_json::{Value, json};
use support::Backend;

/// 09:00 in Shanghai (UTC+8, no daylight saving) on `y-m-d`.
pub(crate) fn sh(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 1, 0, 0).unwrap()
}

/// The Shanghai date of an RFC 3339 time.
fn sh_date(rfc3339: &str) -> String {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
        .with_timezone(&FixedOffset::east_opt(8 * 3600).unwrap())
        .format("%Y-%m-%d")
        .to_string()
}

/// The official complained about.
fn accused() -> Value {
    json!({
        "id": "E-1024", "name": "张三", "position": "某局局长", "email": "zhang.san@example.org",
        "department": "某局", "head_name": "某局党组书记", "head_email": "ju.head@example.org"
    })
}

/// A report the grading plugin finds `pending` (no keywords, no evidence): no joint review.
pub(crate) const PLAIN: &str = "反映某局局长张三工作作风粗暴，群众意见较大。";
/// A report graded `key` (贿赂, 收受礼金, evidence).
const KEY: &str = "实名举报某局局长张三收受贿赂，违规收受礼金。附转账记录两份。";

/// A whistleblower who wants mail, told apart by `tag`.
pub(crate) fn reporter(tag: &str) -> Value {
    json!({
        "name": format!("举报人{tag}"),
        "email": format!("reporter.{}@example.net", tag.to_lowercase()),
        "phone": "13800000000",
        "id_number": "110101198001010000",
        "contact_by_email": true
    })
}

fn reporter_email(tag: &str) -> String {
    format!("reporter.{}@example.net", tag.to_lowercase())
}

/// Files case `number` through the public intake (received today, Shanghai time).
pub(crate) fn file(
    f: &mut Flagship,
    number: &str,
    content: &str,
    who: Option<Value>,
) -> (String, String) {
    let today = sh_date(&f.d.now().to_rfc3339());
    let mut body = json!({"case": {
        "case_number": number, "received_on": today, "accused": accused(),
        "allegation": "违规收受礼金", "content": content,
        "evidence_count": if content == KEY { 2 } else { 0 }
    }});
    if let Some(r) = who {
        body["reporter"] = r;
    }
    f.intake(&body)
}

/// Screens `id` as accepted and assigns it to `handler`; a suspected or key case passes
/// the monthly joint review. The case then waits for its disposal.
pub(crate) fn accept(f: &mut Flagship, id: &str, handler: &str) {
    f.complete("wang.fang", id, "screen", json!({"decision": "accept"}));
    f.complete("wang.fang", id, "assign", json!({ "handler": handler }));
    if f.has_open_task(id, "joint_review") {
        f.complete(
            "huang.min",
            id,
            "joint_review",
            json!({"advice": "preliminary_verification"}),
        );
    }
    assert!(f.has_open_task(id, "dispose"), "{:?}", f.d.history(id));
}

fn vars(f: &Flagship, id: &str) -> Value {
    f.d.instance(id)["data"]["vars"].clone()
}

fn outcome(f: &Flagship, id: &str) -> Option<String> {
    f.d.instance(id)["instance"]["outcome"]
        .as_str()
        .map(str::to_owned)
}

/// Whether the history of `id` has an entry `kind` at `step`.
fn has(f: &Flagship, id: &str, kind: &str, step: &str) -> bool {
    f.d.history(id)
        .iter()
        .any(|(k, s)| k == kind && s.as_deref() == Some(step))
}

/// The public status by receipt code.
fn public(f: &Flagship, receipt: &str) -> Value {
    let (status, v) = f.status(receipt);
    assert_eq!(status, 200, "{v}");
    v
}

/// The one child of `parent` running `workflow`.
pub(crate) fn child(f: &Flagship, parent: &str, workflow: &str) -> Value {
    let kids: Vec<Value> = f
        .children(parent)
        .into_iter()
        .filter(|c| c["workflow"] == workflow)
        .collect();
    assert_eq!(
        kids.len(),
        1,
        "one {workflow} started by {parent}: {kids:?}"
    );
    kids[0].clone()
}

pub(crate) fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("id").to_owned()
}

/// The `X-Envelope-To` of a stored message.
fn envelope(raw: &[u8]) -> String {
    MessageParser::default()
        .parse(raw)
        .expect("a stored message parses")
        .header_raw("X-Envelope-To")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

/// Every delivered message (after the outbox is empty), raw.
fn messages(f: &mut Flagship) -> Vec<Vec<u8>> {
    f.delivered();
    f.smtp.messages()
}

/// Delivered messages whose envelope is exactly `address`.
fn mails_to(f: &mut Flagship, address: &str) -> Vec<Vec<u8>> {
    messages(f)
        .into_iter()
        .filter(|m| envelope(m) == address)
        .collect()
}

/// Delivered messages whose envelope names `address` at all.
fn mails_naming(f: &mut Flagship, address: &str) -> usize {
    messages(f)
        .iter()
        .filter(|m| envelope(m).contains(address))
        .count()
}

/// The decoded subject and text of a message.
fn text_of(raw: &[u8]) -> String {
    let m = MessageParser::default().parse(raw).expect("parses");
    format!(
        "{}\n{}\n{}",
        m.subject().unwrap_or_default(),
        m.body_text(0).unwrap_or_default(),
        m.body_html(0).unwrap_or_default()
    )
}

/// A message to the whistleblower: their address is its only recipient (envelope and
/// `To`, no `Cc`), and the text does not repeat it.
fn assert_whistleblower_only(raw: &[u8], address: &str) {
    assert_eq!(
        envelope(raw),
        address,
        "the envelope names the whistleblower alone"
    );
    let m = MessageParser::default().parse(raw).expect("parses");
    let to: Vec<&str> = m
        .to()
        .map(|a| a.iter().filter_map(|x| x.address()).collect())
        .unwrap_or_default();
    assert_eq!(to, [address]);
    assert!(m.cc().is_none() && m.bcc().is_none());
    assert!(
        !text_of(raw).contains(address),
        "the text quotes the address"
    );
}

/// The clarification's three tiers: drafted by wu.hao, self-reviewed by zhao.lei,
/// jointly reviewed by huang.min, finally reviewed by zhou.jian.
fn clarify(f: &mut Flagship, clar: &str) {
    let draft = json!({"number": "市纪澄〔2025〕3号", "date": "2025-10-20", "findings": "经核查，反映问题不属实。"});
    f.complete("wu.hao", clar, "draft", draft);
    f.complete("zhao.lei", clar, "self_review", json!({}));
    f.complete("huang.min", clar, "joint_review", json!({}));
    f.complete(
        "zhou.jian",
        clar,
        "final_review",
        json!({"comments": "同意"}),
    );
    assert_eq!(f.status_of(clar), "completed", "{:?}", f.d.history(clar));
}

// ---------------------------------------------------------------------------------------
// 1. Screening: out of scope, duplicate, forwarded up, forwarded down.

fn screening_outcomes(backend: Backend) {
    let mut f = Flagship::start(backend, sh(2025, 3, 3));
    // Out of scope and duplicate: filed, no acknowledgement.
    for (n, decision) in [
        ("JB-2025-0101", "out_of_scope"),
        ("JB-2025-0102", "duplicate"),
    ] {
        let (id, receipt) = file(&mut f, n, PLAIN, Some(reporter(n)));
        f.complete("wang.fang", &id, "screen", json!({ "decision": decision }));
        assert_eq!(f.status_of(&id), "completed");
        assert_eq!(outcome(&f, &id).as_deref(), Some(decision));
        assert!(has(&f, &id, "step_skipped", "acknowledge"));
        assert_eq!(public(&f, &receipt)["status"], "filed");
    }

    // Forwarded to a higher body within 5 working days, acknowledged as forwarded.
    let (up, receipt) = file(&mut f, "JB-2025-0103", PLAIN, Some(reporter("up")));
    f.complete(
        "wang.fang",
        &up,
        "screen",
        json!({"decision": "forward_higher"}),
    );
    let task = f.task("liu.yang", &up, "forward_higher");
    assert_eq!(sh_date(task["due"].as_str().unwrap()), "2025-03-10");
    f.complete(
        "liu.yang",
        &up,
        "forward_higher",
        json!({"forwarded_to": "省纪委监委", "reference": "转2025-1"}),
    );
    assert_eq!(outcome(&f, &up).as_deref(), Some("forwarded"));
    assert_eq!(public(&f, &receipt)["status"], "forwarded");

    // Forwarded to a lower body, which accepts; another, which transfers it on.
    let mut lower = Vec::new();
    for (n, reply) in [
        ("JB-2025-0104", json!({"accepted": true})),
        (
            "JB-2025-0105",
            json!({"accepted": false, "transferred_to": "某区监委"}),
        ),
        ("JB-2025-0106", Value::Null),
    ] {
        let (id, _) = file(&mut f, n, PLAIN, Some(reporter(n)));
        f.complete(
            "wang.fang",
            &id,
            "screen",
            json!({"decision": "forward_lower"}),
        );
        f.complete(
            "wang.fang",
            &id,
            "forward_lower",
            json!({"forwarded_to": "区纪委监委", "reference": format!("转{n}")}),
        );
        if !reply.is_null() {
            f.event("lower-body-reply", n, reply);
            assert_eq!(outcome(&f, &id).as_deref(), Some("forwarded"), "{n}");
        }
        lower.push(id);
    }
    // The third does not answer: on the fifth working day (Monday 10 March) it still
    // may; when that day has passed, the reminder task.
    let silent = &lower[2];
    f.d.set_clock(sh(2025, 3, 10) + chrono::TimeDelta::hours(14));
    f.d.settle();
    assert!(!f.has_open_task(silent, "lower_overdue"));
    assert_eq!(f.status_of(silent), "running");
    f.d.set_clock(sh(2025, 3, 11));
    f.d.settle();
    let task = f.task("wang.fang", silent, "lower_overdue");
    assert!(task["title"].as_str().unwrap().contains("JB-2025-0106"));
    f.complete(
        "wang.fang",
        silent,
        "lower_overdue",
        json!({"reply": "transferred", "note": "电话督促后已转办"}),
    );
    assert_eq!(outcome(&f, silent).as_deref(), Some("forwarded"));
    for id in &lower[..2] {
        assert!(
            !f.d.history(id)
                .iter()
                .any(|(_, s)| s.as_deref() == Some("lower_overdue")),
            "an answered transfer needs no reminder"
        );
    }

    // Acknowledgements: one for each forwarded case, none for the filed ones.
    for tag in ["JB-2025-0101", "JB-2025-0102"] {
        assert_eq!(mails_naming(&mut f, &reporter_email(tag)), 0, "{tag}");
    }
    for tag in ["up", "JB-2025-0104", "JB-2025-0105", "JB-2025-0106"] {
        assert_eq!(mails_to(&mut f, &reporter_email(tag)).len(), 1, "{tag}");
    }
}

#[test]
fn screening_outcomes_sqlite() {
    screening_outcomes(Backend::Sqlite);
}

#[test]
fn screening_outcomes_postgres() {
    screening_outcomes(Backend::Postgres);
}

// ---------------------------------------------------------------------------------------
// 2. 谈话函询: answered, and not answered within 15 working days.

fn inquiry_letter(backend: Backend) {
    let mut f = Flagship::start(backend, sh(2025, 3, 3));
    let (a, receipt_a) = file(&mut f, "JB-2025-0201", PLAIN, Some(reporter("a")));
    accept(&mut f, &a, "zhao.lei");
    f.complete(
        "zhao.lei",
        &a,
        "dispose",
        json!({"disposal": "inquiry_letter"}),
    );
    assert_eq!(public(&f, &receipt_a)["status"], "in_verification");
    assert!(
        !f.has_open_task(&a, "inquiry_report"),
        "waits for the answer"
    );
    f.event(
        "inquiry-answer",
        "JB-2025-0201",
        json!({"received_on": "2025-03-14"}),
    );
    // The handler reports within one month.
    let task = f.task("zhao.lei", &a, "inquiry_report");
    assert_eq!(task["assignee"], "zhao.lei");
    assert_eq!(sh_date(task["due"].as_str().unwrap()), "2025-04-03");
    f.complete(
        "zhao.lei",
        &a,
        "inquiry_report",
        json!({"verdict": "closed", "findings": "被反映人已如实说明，予以了结"}),
    );
    assert_eq!(vars(&f, &a)["finding"], "closed");
    assert_eq!(public(&f, &receipt_a)["status"], "concluded");
    f.complete(
        "zhao.lei",
        &a,
        "feedback",
        json!({"method": "phone", "result": "经函询，问题已予了结。"}),
    );
    assert_eq!(public(&f, &receipt_a)["feedback"], "经函询，问题已予了结。");

    // No answer: the wait ends with the 15th working day (Monday 24 March) and the
    // report is due.
    let (b, _) = file(&mut f, "JB-2025-0202", PLAIN, Some(reporter("b")));
    accept(&mut f, &b, "sun.li");
    f.complete(
        "sun.li",
        &b,
        "dispose",
        json!({"disposal": "inquiry_letter"}),
    );
    f.d.set_clock(sh(2025, 3, 24) + chrono::TimeDelta::hours(14));
    f.d.settle();
    assert!(!f.has_open_task(&b, "inquiry_report"));
    f.d.set_clock(sh(2025, 3, 25));
    f.d.settle();
    let task = f.task("sun.li", &b, "inquiry_report");
    assert_eq!(task["assignee"], "sun.li");
    assert!(has(&f, &b, "wait_timed_out", "inquiry_answer"));
    assert!(!has(&f, &a, "wait_timed_out", "inquiry_answer"));
    f.complete(
        "sun.li",
        &b,
        "inquiry_report",
        json!({"verdict": "further_verification", "findings": "逾期未说明，转初步核实"}),
    );
    assert_eq!(f.task("sun.li", &b, "verify")["assignee"], "sun.li");

    // The objection window of the first closes after 30 days: archived.
    f.d.set_clock(sh(2025, 4, 3));
    f.d.settle();
    assert_eq!(f.status_of(&a), "completed");
    assert_eq!(outcome(&f, &a).as_deref(), Some("closed"));
    assert_eq!(public(&f, &receipt_a)["status"], "archived");
    // Phone feedback sends no mail: the acknowledgement is the only one.
    assert_eq!(mails_to(&mut f, &reporter_email("a")).len(), 1);
}

#[test]
fn inquiry_letter_sqlite() {
    inquiry_letter(Backend::Sqlite);
}

#[test]
fn inquiry_letter_postgres() {
    inquiry_letter(Backend::Postgres);
}

// ---------------------------------------------------------------------------------------
// 3. 暂存待查 (a new clue, then expiry) and 予以了结.

fn held_pending_and_closed(backend: Backend) {
    let mut f = Flagship::start(backend, sh(2025, 3, 3));
    let (h, receipt) = file(&mut f, "JB-2025-0301", PLAIN, Some(reporter("h")));
    accept(&mut f, &h, "zhao.lei");
    f.complete(
        "zhao.lei",
        &h,
        "dispose",
        json!({"disposal": "held_pending"}),
    );
    assert_eq!(public(&f, &receipt)["status"], "held_pending");
    // A new clue reopens it: the handler chooses again, and holds it again.
    f.event("new-clue", "JB-2025-0301", json!({"note": "新线索"}));
    f.complete(
        "zhao.lei",
        &h,
        "dispose",
        json!({"disposal": "held_pending"}),
    );
    // Six months without a clue: closed (了结) and fed back.
    f.d.set_clock(sh(2025, 9, 2));
    f.d.settle();
    assert_eq!(vars(&f, &h)["finding"], Value::Null);
    f.d.set_clock(sh(2025, 9, 4));
    f.d.settle();
    assert_eq!(vars(&f, &h)["finding"], "closed");
    assert_eq!(public(&f, &receipt)["status"], "concluded");
    f.complete(
        "zhao.lei",
        &h,
        "feedback",
        json!({"method": "letter", "result": "暂存待查期满，予以了结。"}),
    );
    let v = public(&f, &receipt);
    assert_eq!(
        (v["status"].as_str(), v["feedback"].as_str()),
        (Some("feedback_given"), Some("暂存待查期满，予以了结。"))
    );

    // 予以了结, real name: concluded, then fed back.
    let (c, _) = file(&mut f, "JB-2025-0302", PLAIN, Some(reporter("c")));
    accept(&mut f, &c, "sun.li");
    f.complete(
        "sun.li",
        &c,
        "dispose",
        json!({"disposal": "closed_no_action"}),
    );
    assert_eq!(vars(&f, &c)["finding"], "closed");
    assert!(f.has_open_task(&c, "feedback"));
    assert!(f.children(&c).is_empty(), "nothing to clarify");

    // 予以了结, anonymous: no grading, no acknowledgement, no feedback; archived at once.
    let (anon, receipt) = file(&mut f, "JB-2025-0303", PLAIN, None);
    assert!(has(&f, &anon, "step_skipped", "grade"));
    accept(&mut f, &anon, "sun.li");
    f.complete(
        "sun.li",
        &anon,
        "dispose",
        json!({"disposal": "closed_no_action"}),
    );
    assert_eq!(f.status_of(&anon), "completed");
    assert_eq!(outcome(&f, &anon).as_deref(), Some("closed"));
    assert!(has(&f, &anon, "step_skipped", "acknowledge"));
    assert!(has(&f, &anon, "step_skipped", "feedback"));
    assert_eq!(public(&f, &receipt)["status"], "archived");
}

#[test]
fn held_pending_and_closed_sqlite() {
    held_pending_and_closed(Backend::Sqlite);
}

#[test]
fn held_pending_and_closed_postgres() {
    held_pending_and_closed(Backend::Postgres);
}

// ---------------------------------------------------------------------------------------
// 4. Verification: unfounded → clarification; malicious → clarification and false
//    accusation; substantiated → accountability with its fault-tolerance assessment.

/// Accepts, disposes as `disposal` and verifies case `number` as `verdict`.
pub(crate) fn verified(
    f: &mut Flagship,
    number: &str,
    content: &str,
    who: Value,
    disposal: &str,
    verdict: &str,
) -> String {
    let (id, _) = file(f, number, content, Some(who));
    accept(f, &id, "zhao.lei");
    f.complete("zhao.lei", &id, "dispose", json!({ "disposal": disposal }));
    let task = f.task("zhao.lei", &id, "verify");
    assert_eq!(task["assignee"], "zhao.lei");
    f.complete(
        "zhao.lei",
        &id,
        "verify",
        json!({"verdict": verdict, "findings": format!("核实结论：{verdict}")}),
    );
    id
}

/// Nothing of the reporter `r` in `v`.
pub(crate) fn assert_clean(what: &str, v: &Value, r: &Value) {
    let text = v.to_string();
    for field in ["name", "email", "phone", "id_number"] {
        let needle = r[field].as_str().unwrap();
        assert!(
            !text.contains(needle),
            "{what} contains the reporter's {field}: {text}"
        );
    }
}

fn verification_outcomes(backend: Backend) {
    let mut f = Flagship::start(backend, sh(2025, 3, 3));
    // Unfounded (a key case, after the joint review): the clarification starts with the
    // accused and the findings, nothing of the whistleblower.
    let r = reporter("u");
    let u = verified(
        &mut f,
        "JB-2025-0401",
        KEY,
        r.clone(),
        "preliminary_verification",
        "unfounded",
    );
    assert_eq!(vars(&f, &u)["grade"], "key");
    let clar = child(&f, &u, "clarification");
    let shown = f.d.instance(&id_of(&clar));
    let input = &shown["data"]["input"];
    assert_eq!(input["case_number"], "JB-2025-0401");
    assert_eq!(input["official"], accused());
    assert_eq!(input["findings"], "核实结论：unfounded");
    assert!(input.get("reporter").is_none(), "{input}");
    assert_clean("the clarification", &shown, &r);
    assert_eq!(vars(&f, &u)["public_status"], "verified");
    assert!(
        !f.has_open_task(&u, "feedback"),
        "waits for the clarification"
    );

    // Malicious (立案审查调查): clarification and false accusation side by side.
    let r = reporter("m");
    let m = verified(
        &mut f,
        "JB-2025-0402",
        PLAIN,
        r.clone(),
        "investigation",
        "malicious",
    );
    let clar = child(&f, &m, "clarification");
    let fa = child(&f, &m, "false-accusation");
    let fa_shown = f.d.instance(&id_of(&fa));
    assert_eq!(
        fa_shown["data"]["input"],
        json!({"case_number": "JB-2025-0402", "allegation": "违规收受礼金", "grounds": "核实结论：malicious"})
    );
    assert_clean("the false accusation", &fa_shown, &r);
    assert_clean("the clarification", &f.d.instance(&id_of(&clar)), &r);
    assert!(f.has_open_task(&id_of(&fa), "refer"));
    assert!(f.has_open_task(&id_of(&clar), "draft"));

    // Substantiated: accountability, which started its assessment with it.
    let r = reporter("s");
    let s = verified(
        &mut f,
        "JB-2025-0403",
        PLAIN,
        r.clone(),
        "preliminary_verification",
        "substantiated",
    );
    let acc = child(&f, &s, "accountability");
    let acc_shown = f.d.instance(&id_of(&acc));
    assert_eq!(acc_shown["data"]["input"]["matter"], "违规收受礼金");
    assert_eq!(acc_shown["data"]["input"]["official"], accused());
    assert_clean("the accountability", &acc_shown, &r);
    let ft = child(&f, &id_of(&acc), "fault-tolerance-assessment");
    assert_eq!(ft["parent_link"], "assessment");
    assert_eq!(ft["created_at"], acc["created_at"], "started together");
    assert!(
        f.children(&s)
            .iter()
            .all(|c| c["workflow"] == "accountability"),
        "the assessment belongs to the accountability case"
    );
    assert!(f.has_open_task(&id_of(&acc), "investigate"));
    assert!(f.has_open_task(&id_of(&ft), "record"));

    // Partly substantiated after an inquiry letter: accountability too.
    let (p, _) = file(&mut f, "JB-2025-0404", PLAIN, Some(reporter("p")));
    accept(&mut f, &p, "sun.li");
    f.complete(
        "sun.li",
        &p,
        "dispose",
        json!({"disposal": "inquiry_letter"}),
    );
    f.event(
        "inquiry-answer",
        "JB-2025-0404",
        json!({"received_on": "2025-03-05"}),
    );
    f.complete(
        "sun.li",
        &p,
        "inquiry_report",
        json!({"verdict": "partly_substantiated", "findings": "部分属实"}),
    );
    assert_eq!(vars(&f, &p)["finding"], "partly_substantiated");
    let acc = child(&f, &p, "accountability");
    assert_eq!(acc["status"], "running");
    child(&f, &id_of(&acc), "fault-tolerance-assessment");
}

#[test]
fn verification_outcomes_sqlite() {
    verification_outcomes(Backend::Sqlite);
}

#[test]
fn verification_outcomes_postgres() {
    verification_outcomes(Backend::Postgres);
}

// ---------------------------------------------------------------------------------------
// 5. DOMAIN.md's acceptance examples for complaints.

fn sample(name: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(flagship::root().join("examples/flagship").join(name)).unwrap(),
    )
    .unwrap()
}

fn acceptance_examples(backend: Backend) {
    // Friday 26 September 2025, 10:00 in Shanghai: the Friday before National Day.
    let mut f = Flagship::start(backend, Utc.with_ymd_and_hms(2025, 9, 26, 2, 0, 0).unwrap());
    let body = sample("complaint-key.json");
    let email = body["reporter"]["email"].as_str().unwrap().to_owned();
    let (k, receipt) = f.intake(&body);
    // Screening (with the acknowledgement) is due 15 working days later: 1–8 October are
    // off, Sunday 28 September and Saturday 11 October are make-up working days.
    let screen = f.task("wang.fang", &k, "screen");
    assert_eq!(sh_date(screen["due"].as_str().unwrap()), "2025-10-23");
    f.complete("wang.fang", &k, "screen", json!({"decision": "accept"}));
    let acks = mails_naming(&mut f, &email);
    assert_eq!(acks, 1, "acknowledged once");
    assert_eq!(
        mails_to(&mut f, &email).len(),
        1,
        "to the whistleblower alone"
    );

    // A repeat report of the same matter: no second acknowledgement.
    let mut repeat = body.clone();
    repeat["case"]["case_number"] = json!("JB-2025-0042-2");
    repeat["case"]["history"] = json!({"prior_reports": 1, "prior_substantiated": 0});
    let (r, _) = f.intake(&repeat);
    f.complete("liu.yang", &r, "screen", json!({"decision": "accept"}));
    assert!(has(&f, &r, "step_skipped", "acknowledge"));
    assert_eq!(mails_naming(&mut f, &email), 1, "no second acknowledgement");

    // Verification after the holiday finds the report unfounded; once clarified, the
    // feedback is due 15 working days after conclusion.
    f.complete("wang.fang", &k, "assign", json!({"handler": "zhao.lei"}));
    f.complete(
        "huang.min",
        &k,
        "joint_review",
        json!({"advice": "preliminary_verification"}),
    );
    f.complete(
        "zhao.lei",
        &k,
        "dispose",
        json!({"disposal": "preliminary_verification"}),
    );
    f.d.set_clock(sh(2025, 10, 9));
    f.d.settle();
    f.complete(
        "zhao.lei",
        &k,
        "verify",
        json!({"verdict": "unfounded", "findings": "反映问题失实"}),
    );
    let clar = id_of(&child(&f, &k, "clarification"));
    clarify(&mut f, &clar);
    assert_eq!(public(&f, &receipt)["status"], "concluded");
    let task = f.task("zhao.lei", &k, "feedback");
    // Thursday 9 October + 15 working days (Saturday 11 October works).
    assert_eq!(sh_date(task["due"].as_str().unwrap()), "2025-10-29");
    let result = "经核查，反映问题失实，已予澄清。";
    f.complete(
        "zhao.lei",
        &k,
        "feedback",
        json!({"method": "email", "result": result}),
    );
    // Mailed to the whistleblower alone, recorded, and readable by receipt code.
    let mine = mails_to(&mut f, &email);
    assert_eq!(mine.len(), 2, "acknowledgement and feedback");
    assert!(text_of(&mine[1]).contains(result) || text_of(&mine[0]).contains(result));
    assert_eq!(mails_naming(&mut f, &email), 2);
    for m in &mine {
        assert_whistleblower_only(m, &email);
    }
    // The outbox keeps the word `reporter`, never the address.
    let sent = f.d.get("/v1/mail?status=sent&limit=1000");
    let rows: Vec<&Value> = sent["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["instance_id"] == k.as_str())
        .filter(|m| m["step"] == "acknowledge" || m["step"] == "feedback_mail")
        .collect();
    assert_eq!(rows.len(), 2, "{sent}");
    for row in rows {
        assert!(row["recipients"].to_string().contains("reporter"), "{row}");
        assert!(!row.to_string().contains(&email), "{row}");
    }
    let v = vars(&f, &k);
    assert_eq!(v["feedback"], result);
    assert_eq!(v["feedback_record"]["method"], "email");
    assert_eq!(v["feedback_record"]["result"], result);
    let closed =
        f.d.get(&format!("/v1/tasks?instance={k}&status=any&limit=1000"));
    assert!(
        closed["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["step"] == "feedback"
                && t["status"] == "completed"
                && t["closed_by"] == "zhao.lei"),
        "{closed}"
    );
    let st = public(&f, &receipt);
    assert_eq!(
        (st["status"].as_str(), st["feedback"].as_str()),
        (Some("feedback_given"), Some(result))
    );
    // An objection with new evidence returns the case to verification.
    f.event(
        "objection",
        "JB-2025-0042",
        json!({"new_evidence": true, "note": "补充新的转账记录"}),
    );
    assert_eq!(public(&f, &receipt)["status"], "in_verification");
    assert_eq!(f.task("zhao.lei", &k, "verify")["assignee"], "zhao.lei");
    assert_eq!(f.status_of(&k), "running");

    // Anonymous: no acknowledgement, no feedback, no mail.
    let outside = |f: &mut Flagship| {
        messages(f)
            .iter()
            .filter(|m| !envelope(m).ends_with("@example.org"))
            .count()
    };
    let outside_before = outside(&mut f);
    let (anon, _) = f.intake(&sample("complaint-anonymous.json"));
    accept(&mut f, &anon, "sun.li");
    assert!(has(&f, &anon, "step_skipped", "acknowledge"));
    f.complete(
        "sun.li",
        &anon,
        "dispose",
        json!({"disposal": "closed_no_action"}),
    );
    assert!(has(&f, &anon, "step_skipped", "feedback"));
    assert!(has(&f, &anon, "step_skipped", "feedback_mail"));
    // A real-name reporter who gave no address: the acknowledgement is skipped and noted.
    let (nomail, _) = file(
        &mut f,
        "JB-2025-0050",
        PLAIN,
        Some(json!({"name": "无邮箱", "phone": "13900000000"})),
    );
    f.complete(
        "wang.fang",
        &nomail,
        "screen",
        json!({"decision": "accept"}),
    );
    assert!(
        has(&f, &nomail, "mail_skipped", "acknowledge"),
        "{:?}",
        f.d.history(&nomail)
    );
    assert_eq!(outside(&mut f), outside_before, "only staff notices since");
}

#[test]
fn acceptance_examples_sqlite() {
    acceptance_examples(Backend::Sqlite);
}

#[test]
fn acceptance_examples_postgres() {
    acceptance_examples(Backend::Postgres);
}

// ---------------------------------------------------------------------------------------
// 6. WF3: false accusation with the sealed identity.

fn false_accusation(backend: Backend) {
    let mut f = Flagship::start(backend, sh(2025, 3, 3));
    let r = reporter("f");
    let c = verified(
        &mut f,
        "JB-2025-0601",
        PLAIN,
        r.clone(),
        "investigation",
        "malicious",
    );
    let fa = id_of(&child(&f, &c, "false-accusation"));
    f.complete("zhou.jian", &fa, "refer", json!({"refer": true}));
    f.complete(
        "zhao.lei",
        &fa,
        "investigate",
        json!({"identity_needed": true, "reason": "核实举报人是否故意捏造", "findings": "…"}),
    );
    // Before the leader's approval, not even the custodian reads it through the case.
    let custodian = f.token("ma.guoqiang");
    let (status, v) =
        f.d.try_get_as(
            Some(&custodian),
            &format!("/v1/instances/{fa}/identity?reason=before-approval"),
        )
        .unwrap();
    assert_eq!(status, 403, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("identity_request"),
        "the refusal names the approval step: {v}"
    );
    assert_clean("a refusal before approval", &v, &r);
    f.complete(
        "zhou.jian",
        &fa,
        "identity_request",
        json!({"granted": true}),
    );
    assert_eq!(vars(&f, &fa)["identity_access"]["granted"], true);

    // The identity is in no view of the case or of the investigation.
    for user in ["zhou.jian", "zhao.lei", "admin"] {
        let token = f.token(user);
        for id in [&c, &fa] {
            let (status, v) =
                f.d.try_get_as(Some(&token), &format!("/v1/instances/{id}"))
                    .unwrap();
            assert_eq!(status, 200, "{user}: {v}");
            assert_clean(&format!("{user}'s view of {id}"), &v, &r);
        }
    }
    // Only the identity custodian reads it, with a reason.
    let reason = "诬告陷害调查需要，经分管领导批准";
    let path = format!(
        "/v1/instances/{fa}/identity?reason={}",
        reason
            .bytes()
            .map(|b| format!("%{b:02X}"))
            .collect::<String>()
    );
    for user in ["zhou.jian", "zhao.lei", "admin", "wang.fang"] {
        let token = f.token(user);
        let (status, v) = f.d.try_get_as(Some(&token), &path).unwrap();
        assert_eq!(status, 403, "{user}: {v}");
        assert_clean("a refusal", &v, &r);
    }
    let token = f.token("ma.guoqiang");
    let (status, v) =
        f.d.try_get_as(Some(&token), &format!("/v1/instances/{fa}/identity"))
            .unwrap();
    assert_eq!(status, 400, "a reason is required: {v}");
    let (status, v) = f.d.try_get_as(Some(&token), &path).unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["identity"]["name"], r["name"]);
    assert_eq!(v["identity"]["email"], r["email"]);
    assert_eq!(v["identity"]["id_number"], r["id_number"]);
    assert_eq!(v["instance"], c, "sealed with the complaint");
    assert_eq!(v["reason"], reason);
    assert_eq!(
        v["approval"],
        json!({"step": "identity_request", "by": "zhou.jian"}),
        "the read rests on the leader's approval"
    );
    // Through the complaint itself, never.
    let (status, v) =
        f.d.try_get_as(
            Some(&custodian),
            &format!("/v1/instances/{c}/identity?reason=direct"),
        )
        .unwrap();
    assert_eq!(status, 403, "{v}");
    // Audited: who and why, nothing of the identity.
    let audit = f.d.get("/v1/audit?limit=1000");
    let reads: Vec<&Value> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "identity.read")
        .collect();
    assert_eq!(reads.len(), 1, "{audit}");
    assert_eq!(reads[0]["actor"], "ma.guoqiang");
    assert_eq!(reads[0]["detail"]["reason"], reason);
    assert_eq!(reads[0]["detail"]["approval"]["by"], "zhou.jian");
    assert_eq!(reads[0]["instance_id"], c);
    assert_clean("the audit log", &audit, &r);
    let denied = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["actor"] == "zhou.jian" || a["actor"] == "zhao.lei")
        .count();
    assert!(denied >= 2, "refused reads are audited too: {audit}");

    // Confirmed: after a rejection, with a transfer to the judicial organs.
    f.complete(
        "zhao.lei",
        &fa,
        "conclude",
        json!({"result": "confirmed_judicial", "findings": "涉嫌诬告陷害罪"}),
    );
    f.reject("zhou.jian", &fa, "confirm", "证据需补充");
    f.complete(
        "zhao.lei",
        &fa,
        "conclude",
        json!({"result": "confirmed_judicial", "findings": "涉嫌诬告陷害罪，证据确实"}),
    );
    f.complete("zhou.jian", &fa, "confirm", json!({}));
    assert_eq!(f.status_of(&fa), "completed");
    assert_eq!(outcome(&f, &fa).as_deref(), Some("confirmed_judicial"));
    assert_eq!(
        f.d.instance(&fa)["result"]["output"],
        json!({"identity_accessed": true})
    );
    // The complaint still waits for the clarification.
    assert_eq!(f.status_of(&c), "running");
    assert!(!f.has_open_task(&c, "feedback"));
    let clar = id_of(&child(&f, &c, "clarification"));
    clarify(&mut f, &clar);
    assert!(f.has_open_task(&c, "feedback"));

    // Not confirmed, without reading the identity.
    let r2 = reporter("g");
    let c2 = verified(
        &mut f,
        "JB-2025-0602",
        PLAIN,
        r2,
        "investigation",
        "malicious",
    );
    let fa2 = id_of(&child(&f, &c2, "false-accusation"));
    f.complete("zhou.jian", &fa2, "refer", json!({"refer": true}));
    f.complete(
        "zhao.lei",
        &fa2,
        "investigate",
        json!({"identity_needed": false}),
    );
    assert!(has(&f, &fa2, "step_skipped", "identity_request"));
    f.complete(
        "zhao.lei",
        &fa2,
        "conclude",
        json!({"result": "not_confirmed", "findings": "证据不足"}),
    );
    f.complete("zhou.jian", &fa2, "confirm", json!({}));
    assert_eq!(outcome(&f, &fa2).as_deref(), Some("not_confirmed"));
    assert_eq!(
        f.d.instance(&fa2)["result"]["output"],
        json!({"identity_accessed": false})
    );
    // The investigation sent no mail to anyone outside the staff.
    let envelopes: Vec<String> = messages(&mut f).iter().map(|m| envelope(m)).collect();
    assert!(
        envelopes
            .iter()
            .filter(|e| e.contains("@example.net"))
            .all(|e| *e == reporter_email("f") || *e == reporter_email("g")),
        "{envelopes:?}"
    );
}

#[test]
fn false_accusation_sqlite() {
    false_accusation(Backend::Sqlite);
}

#[test]
fn false_accusation_postgres() {
    false_accusation(Backend::Postgres);
}

// ---------------------------------------------------------------------------------------
// 7. The leak test (issue 5).

const LEAK_NAME: &str = "王举报";
const LEAK_EMAIL: &str = "wang.jubao.leak@example.net";
const LEAK_PHONE: &str = "13912345678";
const LEAK_ID: &str = "330106199001011234";
const LEAK_ADDRESS: &str = "杭州市西湖区文三路一号";

fn leaks(text: &str) -> Vec<&'static str> {
    [LEAK_NAME, LEAK_EMAIL, LEAK_PHONE, LEAK_ID, LEAK_ADDRESS]
        .into_iter()
        .filter(|n| text.contains(n) || text.to_lowercase().contains(&n.to_lowercase()))
        .collect()
}

/// Every answer staff without the identity role get about the instances, tasks, mail,
/// audit log and schedules, and `clearflow instances show --json` of every instance.
fn collect(f: &mut Flagship, seen: &mut Vec<(String, String)>) {
    let ids: Vec<String> = f.d.list_all("").iter().map(id_of).collect();
    let users = [
        "zhao.lei",
        "huang.min",
        "zhou.jian",
        "wang.fang",
        "wu.hao",
        "he.xue",
        "admin",
    ];
    for user in users {
        let token = f.token(user);
        let get = |path: &str, seen: &mut Vec<(String, String)>| -> Value {
            let (status, v) = f.d.try_get_as(Some(&token), path).expect(path);
            seen.push((format!("{user} GET {path} → {status}"), v.to_string()));
            v
        };
        get("/v1/instances?limit=1000", seen);
        for id in &ids {
            get(&format!("/v1/instances/{id}"), seen);
        }
        let tasks = get("/v1/tasks?status=any&limit=1000", seen);
        for t in tasks["items"].as_array().into_iter().flatten() {
            get(&format!("/v1/tasks/{}", t["id"].as_str().unwrap()), seen);
        }
        for status in ["queued", "sent", "dead"] {
            get(&format!("/v1/mail?status={status}&limit=1000"), seen);
        }
        get("/v1/audit?limit=1000", seen);
        let schedules = get("/v1/schedules", seen);
        for s in schedules["items"].as_array().into_iter().flatten() {
            if let (Some(w), Some(n)) = (s["workflow"].as_str(), s["schedule"].as_str()) {
                get(&format!("/v1/schedules/{w}/{n}/fires?limit=100"), seen);
            }
        }
    }
    for id in &ids {
        let out = f.d.cli_ok(&["instances", "show", id.as_str(), "--json"]);
        serde_json::from_str::<Value>(&out).expect("instances show --json");
        seen.push((format!("clearflow instances show {id} --json"), out));
    }
    let out = f.d.cli_ok(&["mail", "list", "--json"]);
    seen.push(("clearflow mail list --json".into(), out));
    for user in ["zhao.lei", "wang.fang"] {
        let token = f.token(user);
        let out = f.d.cli_as(
            Some(&token),
            &["tasks", "list", "--status", "any", "--json"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        seen.push((
            format!("clearflow tasks list --json as {user}"),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ));
    }
}

fn leak_test(backend: Backend) {
    let mut f = Flagship::start(backend, sh(2025, 3, 3));
    let mut seen = Vec::new();
    let body = json!({
        "case": {
            "case_number": "JB-2025-0700", "received_on": "2025-03-03", "accused": accused(),
            "allegation": "违规收受礼金",
            "content": "实名举报某局局长张三收受贿赂，违规收受礼金。附转账记录两份。",
            "evidence_count": 2
        },
        "reporter": {
            "name": LEAK_NAME, "email": LEAK_EMAIL, "phone": LEAK_PHONE,
            "id_number": LEAK_ID, "address": LEAK_ADDRESS, "contact_by_email": true
        }
    });
    let (id, receipt) = f.intake(&body);
    assert_eq!(vars(&f, &id)["grade"], "key");
    let (status, v) = f.status("0000-0000-0000-0000-0000-0000-0000-0000");
    assert_eq!(status, 404, "{v}");
    collect(&mut f, &mut seen);
    f.complete("wang.fang", &id, "screen", json!({"decision": "accept"}));
    f.complete("wang.fang", &id, "assign", json!({"handler": "zhao.lei"}));
    f.complete(
        "huang.min",
        &id,
        "joint_review",
        json!({"advice": "preliminary_verification"}),
    );
    f.complete(
        "zhao.lei",
        &id,
        "dispose",
        json!({"disposal": "preliminary_verification"}),
    );
    collect(&mut f, &mut seen);
    f.complete(
        "zhao.lei",
        &id,
        "verify",
        json!({"verdict": "unfounded", "findings": "经初步核实，反映问题失实"}),
    );
    // The clarification's three tiers, with one rejection, then its three notices.
    let clar = id_of(&child(&f, &id, "clarification"));
    let draft = json!({"number": "市纪澄〔2025〕7号", "date": "2025-03-20", "findings": "经核查，反映张三收受礼金问题不属实。"});
    f.complete("wu.hao", &clar, "draft", draft.clone());
    f.complete("zhao.lei", &clar, "self_review", json!({}));
    f.reject("huang.min", &clar, "joint_review", "依据不充分");
    f.complete("wu.hao", &clar, "draft", draft);
    f.complete("zhao.lei", &clar, "self_review", json!({}));
    f.complete("huang.min", &clar, "joint_review", json!({}));
    collect(&mut f, &mut seen);
    f.complete("zhou.jian", &clar, "final_review", json!({}));
    assert_eq!(outcome(&f, &clar).as_deref(), Some("clarified"));
    let feedback = "经核查，您反映的问题失实，已对被反映人予以澄清。";
    f.complete(
        "zhao.lei",
        &id,
        "feedback",
        json!({"method": "email", "result": feedback}),
    );
    assert_eq!(public(&f, &receipt)["feedback"], feedback);
    // Reminders, escalations and the monthly joint review have their say too.
    f.d.set_clock(sh(2025, 4, 3));
    f.d.settle();
    assert_eq!(public(&f, &receipt)["status"], "archived");
    // Not even the custodian reads the identity through the complaint itself (only a
    // false-accusation investigation may, once approved); the attempt is on the record.
    let token = f.token("ma.guoqiang");
    let (status, v) =
        f.d.try_get_as(
            Some(&token),
            &format!("/v1/instances/{id}/identity?reason=leak-test"),
        )
        .unwrap();
    assert_eq!(status, 403, "{v}");
    assert!(leaks(&v.to_string()).is_empty(), "{v}");
    assert_eq!(
        leaks(&body["reporter"].to_string()).len(),
        5,
        "the search finds what is there"
    );
    collect(&mut f, &mut seen);

    // What was searched: staff see the case, the admin the mail, audit and schedules.
    let answered = |prefix: &str, needle: &str| {
        seen.iter().any(|(what, text)| {
            what.starts_with(prefix)
                && (what.ends_with("200") || what.starts_with("clearflow"))
                && text.contains(needle)
        })
    };
    assert!(answered("zhao.lei GET /v1/instances/", "JB-2025-0700"));
    assert!(answered("huang.min GET /v1/tasks/", "JB-2025-0700"));
    assert!(answered("admin GET /v1/mail?status=sent", "reporter"));
    assert!(answered("admin GET /v1/audit", "identity.used_for_mail"));
    assert!(answered("admin GET /v1/audit", "identity.read_refused"));
    assert!(answered("admin GET /v1/schedules", "monthly-joint-review"));
    assert!(answered("clearflow instances show", "clarification"));

    for (what, text) in &seen {
        assert!(
            leaks(text).is_empty(),
            "{what} leaks {:?}: {text}",
            leaks(text)
        );
    }
    let logs = f.d.logs();
    for line in logs.lines() {
        assert!(
            leaks(line).is_empty(),
            "the daemon log leaks {:?}: {line}",
            leaks(line)
        );
    }
    let all = messages(&mut f);
    let (mine, others): (Vec<_>, Vec<_>) =
        all.iter().partition(|m| envelope(m).contains(LEAK_EMAIL));
    assert_eq!(mine.len(), 2, "acknowledgement and feedback");
    for m in &mine {
        assert_whistleblower_only(m, LEAK_EMAIL);
        let body = text_of(m);
        assert!(
            leaks(&body).is_empty(),
            "the whistleblower's mail quotes {:?}",
            leaks(&body)
        );
    }
    assert!(
        others.len() >= 3 + 5,
        "notices and staff mail were sent: {}",
        others.len()
    );
    let notices = others
        .iter()
        .filter(|m| envelope(m) == "zhang.san@example.org" || envelope(m) == "ju.head@example.org")
        .count();
    assert_eq!(notices, 2, "the clarification notice and its copy");
    for m in &others {
        let raw = String::from_utf8_lossy(m);
        let decoded = text_of(m);
        assert!(
            leaks(&raw).is_empty() && leaks(&decoded).is_empty(),
            "mail to {} leaks {:?}",
            envelope(m),
            [leaks(&raw), leaks(&decoded)].concat()
        );
    }
    eprintln!(
        "leak test: {} API answers and CLI outputs, {} log lines, {} mails checked",
        seen.len(),
        logs.lines().count(),
        all.len()
    );
}

#[test]
fn leak_test_sqlite() {
    leak_test(Backend::Sqlite);
}

#[test]
fn leak_test_postgres() {
    leak_test(Backend::Postgres);
}
