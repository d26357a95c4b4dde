//! The flagship review, decision and follow-up paths end to end (DOMAIN.md WF2, WF4, WF5
//! and WF1's monthly joint review), through the real daemon, the built-in plugins and a
//! real SMTP server, on SQLite and PostgreSQL.
//!
//! Staff act with their own tokens; every assertion on a mail reads the delivered
//! message (envelope, headers, decoded text) and ties it to the step that queued it by
//! its Message-ID.

use clearflow_testkit as support;
use clearflow_testkit::flagship;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use flagship::Flagship;
use mail_parser::MessageParser;
use serde_json::{Value, json};
use support::Backend;

/// A time on the Asia/Shanghai wall clock (UTC+8, no daylight saving).
fn sh(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap() - TimeDelta::hours(8)
}

/// A sample from `examples/flagship/`.
fn sample(file: &str) -> Value {
    let path = flagship::root().join("examples/flagship").join(file);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("sample")).expect("json")
}

/// One delivered message, tied to the outbox row that queued it.
#[derive(Debug, Clone)]
struct Mail {
    message_id: String,
    instance: String,
    step: String,
    /// The SMTP envelope's recipients.
    envelope: BTreeSet<String>,
    subject: String,
    /// Every decoded text part (plain and HTML) and every header, for leak checks.
    text: String,
}

fn strip_brackets(id: &str) -> &str {
    id.trim().trim_start_matches('<').trim_end_matches('>')
}

/// Every message the SMTP server received (after the outbox has drained), decoded.
/// Asserts that no message became a dead letter.
fn mails(f: &mut Flagship) -> Vec<Mail> {
    f.delivered();
    let dead = f.d.get("/v1/mail?status=dead&limit=10");
    assert_eq!(dead["items"], json!([]), "no dead letters");
    let rows = f.d.get("/v1/mail?limit=1000")["items"]
        .as_array()
        .expect("items")
        .clone();
    let by_id: BTreeMap<String, (String, String)> = rows
        .iter()
        .map(|r| {
            (
                strip_brackets(r["message_id"].as_str().expect("message_id")).to_owned(),
                (
                    r["instance_id"].as_str().unwrap_or_default().to_owned(),
                    r["step"].as_str().unwrap_or_default().to_owned(),
                ),
            )
        })
        .collect();
    f.smtp
        .messages()
        .iter()
        .map(|raw| {
            let m = MessageParser::default().parse(raw).expect("a message");
            let message_id = m.message_id().expect("Message-ID").to_owned();
            let (instance, step) = by_id
                .get(&message_id)
                .cloned()
                .unwrap_or_else(|| panic!("{message_id} is not in the outbox"));
            let envelope = m
                .header_raw("X-Envelope-To")
                .expect("envelope")
                .split(',')
                .map(|a| a.trim().to_owned())
                .collect();
            let mut text = String::from_utf8_lossy(raw).into_owned();
            for i in 0.. {
                let Some(t) = m.body_text(i) else { break };
                text += "\n";
                text += &t;
            }
            for i in 0.. {
                let Some(t) = m.body_html(i) else { break };
                text += "\n";
                text += &t;
            }
            Mail {
                message_id,
                instance,
                step,
                envelope,
                subject: m.subject().unwrap_or_default().to_owned(),
                text,
            }
        })
        .collect()
}

/// The mails `instance` sent from `step`.
fn sent<'a>(mails: &'a [Mail], instance: &str, step: &str) -> Vec<&'a Mail> {
    mails
        .iter()
        .filter(|m| m.instance == instance && m.step == step)
        .collect()
}

fn set(addrs: &[&str]) -> BTreeSet<String> {
    addrs.iter().map(|a| (*a).to_owned()).collect()
}

/// The one child of `parent` running `workflow`.
fn child(f: &Flagship, parent: &str, workflow: &str) -> String {
    let found: Vec<String> = f
        .children(parent)
        .iter()
        .filter(|c| c["workflow"] == workflow)
        .map(|c| c["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {workflow} child of {parent}: {found:?}"
    );
    found[0].clone()
}

/// The output of `step` in the shown instance's data.
fn output(f: &Flagship, instance: &str, step: &str) -> Value {
    f.d.instance(instance)["data"][step].clone()
}

/// The outcome of a completed instance.
fn outcome(f: &Flagship, instance: &str) -> String {
    let shown = f.d.instance(instance);
    assert_eq!(shown["instance"]["status"], "completed", "{shown:#}");
    shown["instance"]["outcome"]
        .as_str()
        .expect("outcome")
        .to_owned()
}

/// The raw history entries of an instance.
fn history(f: &Flagship, instance: &str) -> Vec<Value> {
    f.d.instance(instance)["history"]
        .as_array()
        .expect("history")
        .clone()
}

/// Adds a user to the directory of the running daemon (SIGHUP reloads the users file).
fn add_user(f: &mut Flagship, entry: &str) {
    let path = f.d.users_path();
    let mut text = std::fs::read_to_string(&path).expect("users file");
    text += entry;
    std::fs::write(&path, text).expect("users file");
    f.d.options.users += entry;
    let loads = |d: &support::Daemon| d.logs().matches("workflows loaded").count();
    let before = loads(&f.d);
    f.d.signal("HUP");
    // The users file is read before the workflows, so the new user is known after this.
    f.d.wait_until("the users file is reloaded", Duration::from_secs(30), |d| {
        loads(d) > before
    });
}

/// The accused official of the samples, as the clarification input names them.
fn official() -> Value {
    sample("complaint-key.json")["case"]["accused"].clone()
}

fn draft_form() -> Value {
    json!({"number": "市纪澄〔2025〕3号", "date": "2025-10-20", "findings": "经核查，反映张三收受贿赂的问题不属实。"})
}

/// `user` tries the open `step` task and is refused for separation of duties; the
/// refusal names every step in `names`.
fn refused_sod(f: &mut Flagship, user: &str, instance: &str, step: &str, names: &[&str]) {
    let (status, v) = f.try_complete(user, instance, step, json!({}));
    assert_eq!(status, 403, "{user} completing {step}: {v}");
    let text = v.to_string();
    assert!(text.contains("separation of duties"), "{text}");
    for n in names {
        assert!(text.contains(n), "the refusal names `{n}`: {text}");
    }
    assert!(f.has_open_task(instance, step), "{step} stays open");
    // Claiming it is refused the same way, so nobody holds a task they cannot complete.
    let task = f.task(user, instance, step);
    let token = f.token(user);
    let (status, v) =
        f.d.try_post_as(
            Some(&token),
            &format!("/v1/tasks/{}/claim", task["id"].as_str().expect("id")),
            &json!({}),
        )
        .expect("claim");
    assert_eq!(status, 403, "{user} claiming {step}: {v}");
    assert!(v.to_string().contains("separation of duties"), "{v}");
    assert!(
        f.task(user, instance, step)["claimed_by"].is_null(),
        "the task stays unclaimed"
    );
}

/// WF2 from a real-name complaint found unfounded: three tiers, a rejection at each
/// (the reason in history, back to the draft), the drafter refused as self-reviewer,
/// delivery to the official, the department head and personnel with the records
/// filed, no principal approval by default; the feedback to the whistleblower follows.
/// No mail but the whistleblower's own carries anything of the whistleblower.
fn clarification_reviews_and_delivery(backend: Backend) {
    let mut f = Flagship::start(backend, sh(2025, 10, 9, 10, 0));
    let body = sample("complaint-key.json");
    let (complaint, _receipt) = f.intake(&body);
    f.complete(
        "wang.fang",
        &complaint,
        "screen",
        json!({"decision": "accept"}),
    );
    f.complete(
        "wang.fang",
        &complaint,
        "assign",
        json!({"handler": "zhao.lei"}),
    );
    f.complete(
        "huang.min",
        &complaint,
        "joint_review",
        json!({"advice": "preliminary_verification"}),
    );
    f.complete(
        "zhao.lei",
        &complaint,
        "dispose",
        json!({"disposal": "preliminary_verification"}),
    );
    f.complete(
        "zhao.lei",
        &complaint,
        "verify",
        json!({"verdict": "unfounded", "findings": "反映问题失实"}),
    );
    let c = child(&f, &complaint, "clarification");
    let input = f.d.instance(&c)["data"]["input"].clone();
    assert_eq!(input["official"], official());
    assert!(!input.to_string().contains("reporter"), "{input}");

    // Round 1: the drafter may not self-review; the self-review rejects.
    f.complete("wu.hao", &c, "draft", draft_form());
    refused_sod(
        &mut f,
        "wu.hao",
        &c,
        "self_review",
        &["draft", "self_review"],
    );
    f.reject("zhao.lei", &c, "self_review", "事实表述不准确");
    // Round 2: the joint review rejects.
    f.complete("wu.hao", &c, "draft", draft_form());
    f.complete("zhao.lei", &c, "self_review", json!({}));
    f.reject("huang.min", &c, "joint_review", "依据不充分");
    // Round 3: the final review rejects.
    f.complete("wu.hao", &c, "draft", draft_form());
    f.complete("zhao.lei", &c, "self_review", json!({}));
    f.complete("huang.min", &c, "joint_review", json!({}));
    f.reject("zhou.jian", &c, "final_review", "范围过宽");
    // Round 4: approved at every tier; no principal approval by default.
    f.complete("wu.hao", &c, "draft", draft_form());
    f.complete("zhao.lei", &c, "self_review", json!({"comments": "无误"}));
    f.complete("huang.min", &c, "joint_review", json!({"comments": "同意"}));
    f.complete("zhou.jian", &c, "final_review", json!({"comments": "同意"}));
    f.d.wait_until(
        "the clarification is delivered",
        Duration::from_secs(60),
        |d| d.instance(&c)["instance"]["status"] == "completed",
    );
    assert_eq!(outcome(&f, &c), "clarified");

    // Every rejection is in history with its reason, and control went back to the draft.
    let h = history(&f, &c);
    for (step, reason) in [
        ("self_review", "事实表述不准确"),
        ("joint_review", "依据不充分"),
        ("final_review", "范围过宽"),
    ] {
        let i = h
            .iter()
            .position(|e| {
                e["kind"] == "task_rejected" && e["step"] == step && e["detail"]["reason"] == reason
            })
            .unwrap_or_else(|| panic!("{step} rejected with `{reason}` in history: {h:#?}"));
        let next = h[i + 1..]
            .iter()
            .find(|e| e["kind"] == "step_waiting")
            .expect("a next task");
        assert_eq!(
            next["step"], "draft",
            "a rejected {step} returns to the draft"
        );
    }
    let completed = |step: &str| {
        h.iter()
            .filter(|e| e["kind"] == "task_completed" && e["step"] == step)
            .count()
    };
    assert_eq!(
        (
            completed("draft"),
            completed("self_review"),
            completed("joint_review"),
            completed("final_review"),
            completed("principal_approval"),
        ),
        (4, 3, 2, 1, 0)
    );
    assert!(
        h.iter()
            .any(|e| e["kind"] == "step_skipped" && e["step"] == "principal_approval"),
        "principal approval is skipped unless configured"
    );
    // The records filing by the plugin: the integrity and the personnel record.
    let filing = output(&f, &c, "filing");
    let records: BTreeSet<&str> = filing["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            assert_eq!(e["official_id"], "E-1024");
            assert_eq!(e["document_ref"], "市纪澄〔2025〕3号");
            e["record"].as_str().expect("record")
        })
        .collect();
    assert_eq!(records, BTreeSet::from(["integrity", "personnel"]));

    // Feedback to the whistleblower within 15 working days of the conclusion (Thursday
    // 9 October 2025, counting the make-up Saturday 11 October): Wednesday 29 October.
    let task = f.task("zhao.lei", &complaint, "feedback");
    let due = DateTime::parse_from_rfc3339(task["due"].as_str().expect("due")).expect("rfc3339");
    assert_eq!(
        (due.with_timezone(&Utc) + TimeDelta::hours(8))
            .date_naive()
            .to_string(),
        "2025-10-29",
        "{task}"
    );
    // Feedback by email, then the complaint is in its objection window.
    f.complete(
        "zhao.lei",
        &complaint,
        "feedback",
        json!({"method": "email", "result": "经核查，反映问题失实，已予澄清。"}),
    );
    let all = mails(&mut f);
    let notice = sent(&all, &c, "notice");
    assert_eq!(notice.len(), 1, "one notice to the official");
    assert_eq!(notice[0].envelope, set(&["zhang.san@example.org"]));
    assert!(
        notice[0].text.contains("澄清正名通知书"),
        "{}",
        notice[0].text
    );
    assert!(notice[0].text.contains("市纪澄〔2025〕3号"));
    let copy = sent(&all, &c, "notice_copy");
    assert_eq!(copy.len(), 1, "one copy to the department head");
    assert_eq!(copy[0].envelope, set(&["zhujianju.head@example.org"]));
    let records = sent(&all, &c, "records_notice");
    assert_eq!(records.len(), 1, "one notice to personnel");
    assert_eq!(
        records[0].envelope,
        set(&["he.xue@example.org", "lin.feng@example.org"])
    );
    assert!(sent(&all, &c, "briefing").is_empty(), "no briefing asked");
    let workflow_mails: Vec<&str> = all
        .iter()
        .filter(|m| m.instance == c)
        .map(|m| m.step.as_str())
        .filter(|s| ["notice", "notice_copy", "records_notice", "briefing"].contains(s))
        .collect();
    assert_eq!(workflow_mails.len(), 3, "{workflow_mails:?}");
    // The whistleblower's mails go to them alone; no other mail carries anything of them.
    let reporter = &body["reporter"];
    let secrets = [
        reporter["name"].as_str().unwrap(),
        reporter["email"].as_str().unwrap(),
        reporter["phone"].as_str().unwrap(),
        reporter["id_number"].as_str().unwrap(),
    ];
    let mut to_reporter = 0;
    for m in &all {
        if m.envelope.contains("li.ming@example.net") {
            assert_eq!(m.envelope, set(&["li.ming@example.net"]), "{m:?}");
            assert!(["acknowledge", "feedback_mail"].contains(&m.step.as_str()));
            to_reporter += 1;
            continue;
        }
        for s in secrets {
            assert!(
                !m.text.contains(s),
                "the {} mail to {:?} carries `{s}`",
                m.step,
                m.envelope
            );
        }
    }
    assert_eq!(to_reporter, 2, "acknowledgement and feedback");
}

#[test]
fn clarification_reviews_and_delivery_sqlite() {
    clarification_reviews_and_delivery(Backend::Sqlite);
}

#[test]
fn clarification_reviews_and_delivery_postgres() {
    clarification_reviews_and_delivery(Backend::Postgres);
}

/// WF2 with principal approval configured and a briefing: one user holding both the
/// handler and the guidance role cannot complete both the self-review and the joint
/// review; the principal's rejection returns to the draft; delivery is four mails.
fn clarification_principal_separation_and_briefing(backend: Backend) {
    let mut f = Flagship::start(backend, sh(2025, 10, 9, 10, 0));
    add_user(
        &mut f,
        "\n[[users]]\nid = \"qian.dual\"\nname = \"钱双\"\nemail = \"qian.dual@example.org\"\n\
         roles = [\"handler\", \"guidance\"]\nlocale = \"zh-CN\"\n",
    );
    let (c, created) = f.d.start_instance(
        "clarification",
        &json!({
            "case_number": "JB-2025-0050",
            "official": official(),
            "allegation": "利用职务便利收受贿赂",
            "findings": "反映问题失实",
            "principal_approval": true,
        }),
        Some("clarification-JB-2025-0050"),
    );
    assert!(created);
    f.d.settle();
    let mut draft = draft_form();
    draft["briefing_audience"] = json!(["dept.a@example.org", "dept.b@example.org"]);
    f.complete("wu.hao", &c, "draft", draft.clone());
    f.complete("qian.dual", &c, "self_review", json!({}));
    refused_sod(
        &mut f,
        "qian.dual",
        &c,
        "joint_review",
        &["self_review", "joint_review"],
    );
    f.complete("xu.tao", &c, "joint_review", json!({}));
    f.complete("zhou.jian", &c, "final_review", json!({}));
    f.reject("ma.guoqiang", &c, "principal_approval", "再斟酌");
    assert_eq!(
        f.task("wu.hao", &c, "draft")["step"],
        "draft",
        "back to the draft"
    );
    f.complete("wu.hao", &c, "draft", draft);
    // The same split of duties in the second round, with other people.
    f.complete("zhao.lei", &c, "self_review", json!({}));
    f.complete("qian.dual", &c, "joint_review", json!({}));
    f.complete("zhou.jian", &c, "final_review", json!({}));
    f.complete("ma.guoqiang", &c, "principal_approval", json!({}));
    f.d.wait_until(
        "the clarification is delivered",
        Duration::from_secs(60),
        |d| d.instance(&c)["instance"]["status"] == "completed",
    );
    assert_eq!(outcome(&f, &c), "clarified");
    let h = history(&f, &c);
    assert!(h.iter().any(|e| e["kind"] == "task_rejected"
        && e["step"] == "principal_approval"
        && e["detail"]["reason"] == "再斟酌"));
    let all = mails(&mut f);
    let by_step = |step: &str| -> Vec<BTreeSet<String>> {
        sent(&all, &c, step)
            .iter()
            .map(|m| m.envelope.clone())
            .collect()
    };
    assert_eq!(by_step("notice"), [set(&["zhang.san@example.org"])]);
    assert_eq!(
        by_step("notice_copy"),
        [set(&["zhujianju.head@example.org"])]
    );
    assert_eq!(
        by_step("briefing"),
        [set(&["dept.a@example.org", "dept.b@example.org"])]
    );
    assert_eq!(
        by_step("records_notice"),
        [set(&["he.xue@example.org", "lin.feng@example.org"])]
    );
    let briefing = sent(&all, &c, "briefing")[0];
    assert!(
        briefing.text.contains("澄清正名通知书"),
        "{}",
        briefing.text
    );
}

#[test]
fn clarification_principal_separation_and_briefing_sqlite() {
    clarification_principal_separation_and_briefing(Backend::Sqlite);
}

#[test]
fn clarification_principal_separation_and_briefing_postgres() {
    clarification_principal_separation_and_briefing(Backend::Postgres);
}

/// The acceptance example: the daemon is killed (SIGKILL) right after the final approval
/// is accepted, before the engine or the sender ran; after restart exactly three notice
/// mails are delivered, each once.
fn clarification_crash_after_approval(backend: Backend) {
    let mut f = Flagship::start(backend, sh(2025, 10, 9, 10, 0));
    let (c, _) = f.d.start_instance(
        "clarification",
        &json!({
            "case_number": "JB-2025-0051",
            "official": official(),
            "allegation": "利用职务便利收受贿赂",
            "findings": "反映问题失实",
        }),
        None,
    );
    f.d.settle();
    f.complete("wu.hao", &c, "draft", draft_form());
    f.complete("zhao.lei", &c, "self_review", json!({}));
    f.complete("huang.min", &c, "joint_review", json!({}));
    // The task notices so far are out, so the kill lands in the approval's window alone
    // (a kill between a delivery and its recording re-sends that message, by design).
    let drained = f.delivered().len();
    let (status, v) = f.try_complete("zhou.jian", &c, "final_review", json!({}));
    assert_eq!(status, 202, "{v}");
    f.d.kill9();
    let before = f.smtp.messages().len();
    let before_restart = f.d.logs();
    f.d.restart();
    // No clock move: the restarted daemon (a new `HOST-PID` node id) releases the dead
    // process's claims at start on both backends instead of waiting out their lease.
    f.d.wait_until(
        "the clarification completes after the restart",
        Duration::from_secs(60),
        |d| d.instance(&c)["instance"]["status"] == "completed",
    );
    assert_eq!(outcome(&f, &c), "clarified");
    let all = mails(&mut f);
    let notices: Vec<&Mail> = all
        .iter()
        .filter(|m| {
            m.instance == c
                && ["notice", "notice_copy", "records_notice"].contains(&m.step.as_str())
        })
        .collect();
    let ids: BTreeSet<&str> = notices.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(
        (notices.len(), ids.len()),
        (3, 3),
        "exactly three notices, each delivered once: {notices:#?}"
    );
    let steps: BTreeSet<&str> = notices.iter().map(|m| m.step.as_str()).collect();
    assert_eq!(
        steps,
        BTreeSet::from(["notice", "notice_copy", "records_notice"])
    );
    // No message at all was delivered twice.
    let every: BTreeSet<&str> = all.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(every.len(), all.len(), "a Message-ID delivered twice");
    // Where the kill landed: how many notices were out before the restart.
    let early = [
        "Some(\"notice\")",
        "Some(\"notice_copy\")",
        "Some(\"records_notice\")",
    ]
    .iter()
    .filter(|s| before_restart.contains(*s))
    .count();
    eprintln!(
        "delivered before the approval: {drained}; before the kill: {before}; in all: {}; notices sent before the kill: {early}",
        all.len()
    );
}

#[test]
fn clarification_crash_after_approval_sqlite() {
    clarification_crash_after_approval(Backend::Sqlite);
}

#[test]
fn clarification_crash_after_approval_postgres() {
    clarification_crash_after_approval(Backend::Postgres);
}

/// The handler completes the responsibility investigation of `acc`.
fn investigate(f: &mut Flagship, acc: &str) {
    f.complete(
        "zhao.lei",
        acc,
        "investigate",
        json!({"findings": "违反三资管理办法", "responsibility": "direct"}),
    );
}

fn factor(rating: &str) -> Value {
    json!({"rating": rating, "evidence": "会议纪要及相关记录"})
}

/// WF4: three accountability cases, each with exactly one linked assessment started
/// with it. The decision does not exist until the assessment has ended (pinned: the
/// `decide` task is not created while `wait_assessment` waits). The three outcomes, one
/// forced by an exclusion against the panel's choice, each with its decision document
/// rendered, delivered to the official and filed.
fn accountability_and_fault_tolerance(backend: Backend) {
    let mut f = Flagship::start(backend, sh(2024, 1, 8, 10, 0));
    // A deputy leader, so that the leader on the panel can be refused the signature.
    add_user(
        &mut f,
        "\n[[users]]\nid = \"feng.deputy\"\nname = \"冯副\"\nemail = \"feng.deputy@example.org\"\n\
         roles = [\"leader\"]\nlocale = \"zh-CN\"\n",
    );
    let favourable = json!({
        "motive": factor("favourable"), "objective_conditions": factor("favourable"),
        "procedure": factor("favourable"), "nature": factor("favourable"),
        "consequences": factor("favourable"), "remedial_action": factor("favourable"),
    });
    let mixed = json!({
        "motive": factor("favourable"), "objective_conditions": factor("favourable"),
        "procedure": factor("neutral"), "nature": factor("neutral"),
        "consequences": factor("neutral"), "remedial_action": factor("neutral"),
    });
    // (case, factors, exclusions, panel's choice, recommendation, outcome, decision)
    let cases = [
        (
            "ZZ-2025-0007",
            favourable.clone(),
            json!({}),
            "exempted",
            "exempted",
            "exempted",
            json!({"decision": "no_accountability", "reasons": "容错免责"}),
        ),
        (
            "ZZ-2025-0008",
            mixed,
            json!({"vanity_project": false}),
            "mitigated",
            "mitigated",
            "mitigated",
            json!({"decision": "sanction", "sanction": "party_warning", "effective_on": "2024-03-01", "reasons": "从轻处理"}),
        ),
        (
            "ZZ-2025-0009",
            favourable,
            json!({"personal_gain": true}),
            "exempted",
            "not_tolerated",
            "not_tolerated",
            json!({"decision": "sanction", "sanction": "gov_demerit", "effective_on": "2024-03-01", "reasons": "谋取私利，不予容错"}),
        ),
    ];
    let mut started = Vec::new();
    for (case, ..) in &cases {
        let mut input = sample("accountability.json");
        input["case_number"] = json!(case);
        let (acc, created) = f.d.start_instance("accountability", &input, Some(case));
        assert!(created);
        started.push(acc);
    }
    f.d.settle();
    let mut assessments = Vec::new();
    for acc in &started {
        let a = child(&f, acc, "fault-tolerance-assessment");
        let shown = f.d.instance(acc);
        assert_eq!(
            shown["children"].as_array().map(Vec::len),
            Some(1),
            "{shown:#}"
        );
        assert_eq!(
            f.d.instance(&a)["instance"]["parent_link"],
            "assessment",
            "linked as `assessment`"
        );
        assert_eq!(f.status_of(&a), "running");
        assessments.push(a);
    }
    // Only three assessments in all: one per case.
    assert_eq!(f.d.list_all("workflow=fault-tolerance-assessment").len(), 3);

    for (i, (case, factors, exclusions, chosen, recommended, expect, decision)) in
        cases.iter().enumerate()
    {
        let (acc, a) = (&started[i], &assessments[i]);
        // The third case's assessment ends before the investigation: the decision then
        // waits for the investigation alone.
        if i != 2 {
            investigate(&mut f, acc);
            // The invariant: no decision while the assessment runs.
            assert!(!f.has_open_task(acc, "decide"), "no decision task yet");
            let token = f.token("zhou.jian");
            let (status, v) =
                f.d.try_get_as(
                    Some(&token),
                    &format!("/v1/tasks?instance={acc}&status=open"),
                )
                .expect("tasks");
            assert_eq!((status, v["items"].clone()), (200, json!([])), "{v}");
            let waiting = f.d.instance(acc)["waiting"].to_string();
            assert!(
                waiting.contains("assessment"),
                "waits on the link: {waiting}"
            );
        }

        // The first case is recorded by the leader who sits on the panel.
        let recorder = if i == 0 { "zhou.jian" } else { "huang.min" };
        f.complete(
            recorder,
            a,
            "record",
            json!({"factors": factors, "exclusions": exclusions}),
        );
        let score = output(&f, a, "score");
        assert_eq!(score["recommendation"], *recommended, "{case}: {score}");
        let task = f.task("gao.yan", a, "panel");
        assert!(
            task["title"].as_str().unwrap().contains(recommended),
            "{task}"
        );
        f.complete(
            "gao.yan",
            a,
            "panel",
            json!({"outcome": chosen, "reasons": ["出于公心", "及时挽回损失"], "basis": "《容错纠错实施办法》第五条",
                   "number": format!("市纪容〔2024〕{}号", i + 1), "date": "2024-02-20"}),
        );
        assert!(!f.has_open_task(acc, "decide"), "still no decision task");
        if i == 0 {
            // Who recorded the factors may not sign the decision.
            refused_sod(&mut f, "zhou.jian", a, "sign", &["record", "sign"]);
            f.complete("feng.deputy", a, "sign", json!({}));
        } else {
            f.complete("zhou.jian", a, "sign", json!({}));
        }
        f.d.wait_until("the assessment ends", Duration::from_secs(60), |d| {
            d.instance(a)["instance"]["status"] == "completed"
        });
        assert_eq!(outcome(&f, a), *expect, "{case}");
        if i == 2 {
            assert!(f.has_open_task(acc, "investigate"));
            assert!(
                !f.has_open_task(acc, "decide"),
                "the investigation is not done"
            );
            investigate(&mut f, acc);
        }
        let decide = f.task("zhou.jian", acc, "decide");
        assert!(
            decide["title"].as_str().unwrap().contains(expect),
            "{decide}"
        );
        f.complete("zhou.jian", acc, "decide", decision.clone());
        let shown = f.d.instance(acc);
        assert_eq!(shown["instance"]["status"], "completed", "{shown:#}");
        assert_eq!(shown["result"]["output"]["fault_tolerance"], *expect);
        let rendered = output(&f, a, "render");
        assert_eq!(rendered["title"], "容错免责决定书");
        let filing = output(&f, a, "filing");
        assert_eq!(
            filing["entries"].as_array().map(Vec::len),
            Some(2),
            "{filing}"
        );
    }
    let follow_ups: Vec<Value> = f.d.list_all("workflow=follow-up-visits");
    assert_eq!(follow_ups.len(), 2, "a follow-up for each sanction");
    assert!(
        f.children(&started[0])
            .iter()
            .all(|c| c["workflow"] != "follow-up-visits")
    );
    child(&f, &started[1], "follow-up-visits");
    child(&f, &started[2], "follow-up-visits");

    let all = mails(&mut f);
    for (i, (.., expect, _)) in cases.iter().enumerate() {
        let a = &assessments[i];
        let notice = sent(&all, a, "decision_notice");
        assert_eq!(notice.len(), 1);
        assert_eq!(notice[0].envelope, set(&["lan.mou@example.org"]));
        let phrase = match *expect {
            "exempted" => "决定对你予以免责",
            "mitigated" => "决定对你从轻或减轻处理",
            _ => "决定不予容错",
        };
        assert!(notice[0].text.contains(phrase), "{}", notice[0].text);
        assert!(
            notice[0]
                .text
                .contains(&format!("市纪容〔2024〕{}号", i + 1))
        );
        let records = sent(&all, a, "records_notice");
        assert_eq!(records.len(), 1);
        assert_eq!(
            records[0].envelope,
            set(&["he.xue@example.org", "lin.feng@example.org"])
        );
    }
}

#[test]
fn accountability_and_fault_tolerance_sqlite() {
    accountability_and_fault_tolerance(Backend::Sqlite);
}

#[test]
fn accountability_and_fault_tolerance_postgres() {
    accountability_and_fault_tolerance(Backend::Postgres);
}

/// WF5: the impact-period end of every sanction type from the real plugin through the
/// workflow; for a Party warning effective 2024-03-01, three visit reminders and visit
/// tasks, then personnel told on 2025-01-29, 30 days before the end on 2025-02-28.
fn follow_up_visits_and_impact_period(backend: Backend) {
    let mut f = Flagship::start(backend, sh(2024, 3, 1, 10, 0));
    let table = [
        ("party_warning", 12, "2025-02-28"),
        ("party_serious_warning", 18, "2025-08-31"),
        ("party_post_removal", 24, "2026-02-28"),
        ("party_probation_1y", 12, "2025-02-28"),
        ("party_probation_2y", 24, "2026-02-28"),
        ("party_expulsion", 60, "2029-02-28"),
        ("gov_warning", 6, "2024-08-31"),
        ("gov_demerit", 12, "2025-02-28"),
        ("gov_major_demerit", 18, "2025-08-31"),
        ("gov_demotion", 24, "2026-02-28"),
        ("gov_dismissal", 24, "2026-02-28"),
    ];
    let mut ids = Vec::new();
    for (sanction, ..) in table {
        let mut input = sample("follow-up.json");
        input["sanction"] = json!(sanction);
        let (id, _) =
            f.d.start_instance("follow-up-visits", &input, Some(sanction));
        ids.push(id);
    }
    f.d.settle();
    for ((sanction, months, end), id) in table.iter().zip(&ids) {
        let p = output(&f, id, "period");
        assert_eq!(
            (p["months"].as_i64(), p["impact_end"].as_str()),
            (Some(*months), Some(*end)),
            "{sanction}: {p}"
        );
        let end = chrono::NaiveDate::parse_from_str(end, "%Y-%m-%d").unwrap();
        let remind = (end - TimeDelta::days(30)).to_string();
        assert_eq!(p["remind_on"].as_str(), Some(remind.as_str()), "{sanction}");
    }
    // Follow the Party warning alone through time.
    for id in &ids[1..] {
        f.d.post(
            &format!("/v1/instances/{id}/cancel"),
            &json!({"reason": "checked"}),
        );
    }
    let w = &ids[0];
    assert_eq!(
        output(&f, w, "period")["remind_on"].as_str(),
        Some("2025-01-29")
    );
    let visits = [
        ((2024, 5, 27), (2024, 6, 1), "2024-06-01"),
        ((2024, 8, 27), (2024, 9, 1), "2024-09-01"),
        ((2024, 11, 26), (2024, 12, 1), "2024-12-01"),
    ];
    for (n, ((ry, rm, rd), (vy, vm, vd), on)) in visits.into_iter().enumerate() {
        // The day before the reminder: nothing yet.
        f.d.set_clock(sh(ry, rm, rd, 0, 0) - TimeDelta::minutes(1));
        f.d.settle();
        let count = |f: &mut Flagship| sent(&mails(f), w, "visit_reminder").len();
        assert_eq!(count(&mut f), n, "visit reminders before {on}");
        f.d.set_clock(sh(ry, rm, rd, 0, 1));
        f.d.settle();
        let all = mails(&mut f);
        let reminders = sent(&all, w, "visit_reminder");
        assert_eq!(reminders.len(), n + 1, "the reminder of visit {}", n + 1);
        let last = reminders
            .iter()
            .find(|m| m.text.contains(on))
            .unwrap_or_else(|| panic!("a reminder names {on}: {reminders:#?}"));
        assert_eq!(
            last.envelope,
            set(&[
                "zhao.lei@example.org",
                "wu.hao@example.org",
                "sun.li@example.org",
                "zheng.jing@example.org"
            ])
        );
        assert!(!f.has_open_task(w, "visit_task"), "no visit before its day");
        f.d.set_clock(sh(vy, vm, vd, 9, 0));
        f.d.settle();
        let task = f.task("zhao.lei", w, "visit_task");
        assert!(
            task["title"]
                .as_str()
                .unwrap()
                .contains(&format!("第{}次回访", n + 1)),
            "{task}"
        );
        f.complete(
            "zhao.lei",
            w,
            "visit_task",
            json!({"visited_on": on, "summary": "思想稳定，工作积极", "assessment": "positive"}),
        );
        if n == 0 {
            follow_up_week(&mut f);
        }
    }
    // The day before the reminder date: personnel are not told yet.
    f.d.set_clock(sh(2025, 1, 28, 23, 59));
    f.d.settle();
    assert!(sent(&mails(&mut f), w, "promotion_notice").is_empty());
    assert_eq!(f.status_of(w), "running");
    f.d.set_clock(sh(2025, 1, 29, 0, 1));
    f.d.settle();
    f.d.wait_until("the follow-up completes", Duration::from_secs(30), |d| {
        d.instance(w)["instance"]["status"] == "completed"
    });
    let all = mails(&mut f);
    let notice = sent(&all, w, "promotion_notice");
    assert_eq!(notice.len(), 1, "one reminder to personnel");
    assert_eq!(
        notice[0].envelope,
        set(&["he.xue@example.org", "lin.feng@example.org"])
    );
    assert!(notice[0].text.contains("2025-02-28"), "{}", notice[0].text);
    let out = f.d.instance(w)["result"]["output"].clone();
    assert_eq!(out["impact_end"], "2025-02-28");
    assert_eq!(out["remind_on"], "2025-01-29");
    let records = out["visits"].as_array().expect("visit records");
    assert_eq!(records.len(), 3, "one record per visit: {out}");
    assert_eq!(records[2]["visited_on"], "2024-12-01");
    // The cancelled ones sent nothing after they were cancelled.
    for id in &ids[1..] {
        assert_eq!(f.status_of(id), "cancelled");
        assert!(all.iter().all(|m| m.instance != *id));
    }
}

/// The follow-up week campaign (回访教育周) fires at 09:00 on the first Monday of June
/// (3 June 2024): guidance compiles the list, the digest goes to handlers and personnel.
fn follow_up_week(f: &mut Flagship) {
    // The clock jumped over the clarification month (15 April to mid-May): those
    // schedules caught up with their latest fire each. None is the follow-up week.
    let of_campaign = |f: &Flagship, campaign: &str| -> Vec<String> {
        f.d.list_all("workflow=campaigns")
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .filter(|id| f.d.instance(id)["data"]["input"]["campaign"] == campaign)
            .collect()
    };
    f.d.set_clock(sh(2024, 6, 3, 8, 59));
    f.d.settle();
    let before = f.d.list_all("workflow=campaigns").len();
    assert!(of_campaign(f, "follow-up-week").is_empty());
    assert_eq!(of_campaign(f, "clarification-month").len(), before);
    f.d.set_clock(sh(2024, 6, 3, 9, 0));
    f.d.wait_until("the campaign starts", Duration::from_secs(60), |d| {
        d.list_all("workflow=campaigns").len() > before
    });
    f.d.settle();
    assert_eq!(
        f.d.list_all("workflow=campaigns").len(),
        before + 1,
        "one fire"
    );
    let started = of_campaign(f, "follow-up-week");
    assert_eq!(started.len(), 1, "the follow-up week fires once");
    let id = started[0].clone();
    f.complete(
        "xu.tao",
        &id,
        "compile",
        json!({"rows": [
            {"case": "ZZ-2024-0100", "title": "第2次回访", "state": "visit_due", "due": "2024-09-01"}
        ]}),
    );
    assert_eq!(outcome(f, &id), "sent");
    let all = mails(f);
    let digest = sent(&all, &id, "follow_up_digest");
    assert_eq!(digest.len(), 1, "one digest");
    assert_eq!(
        digest[0].envelope,
        set(&[
            "zhao.lei@example.org",
            "wu.hao@example.org",
            "sun.li@example.org",
            "zheng.jing@example.org",
            "he.xue@example.org",
            "lin.feng@example.org",
        ])
    );
    assert!(
        digest[0].text.contains("ZZ-2024-0100"),
        "{}",
        digest[0].text
    );
    assert!(sent(&all, &id, "clarification_digest").is_empty());
}

#[test]
fn follow_up_visits_and_impact_period_sqlite() {
    follow_up_visits_and_impact_period(Backend::Sqlite);
}

#[test]
fn follow_up_visits_and_impact_period_postgres() {
    follow_up_visits_and_impact_period(Backend::Postgres);
}

/// A complaint intake body: the key sample with another case number, content and reporter.
fn complaint(case: &str, content: &str, evidence: u32, reporter: Option<&str>) -> Value {
    let mut body = sample("complaint-key.json");
    body["case"]["case_number"] = json!(case);
    body["case"]["content"] = json!(content);
    body["case"]["allegation"] = json!(format!("{case}所涉问题"));
    body["case"]["evidence_count"] = json!(evidence);
    match reporter {
        Some(email) => {
            body["reporter"]["email"] = json!(email);
            body["reporter"]["name"] = json!("举报人");
        }
        None => {
            body.as_object_mut().unwrap().remove("reporter");
        }
    }
    body
}

/// WF1's monthly joint review: complaints graded pending / suspected / key by the real
/// plugin, one key case concluded and archived; at 09:00 on the first working day of
/// October 2025 (the 9th, after the National Day holiday) the agenda lists exactly the
/// running suspected and key cases. The quarterly digest fires at the same minute: each
/// office's head gets the report task, and the report is mailed to intake.
fn monthly_joint_review_and_quarterly_digest(backend: Backend) {
    let mut f = Flagship::start(backend, sh(2025, 9, 30, 10, 0));
    let bodies = [
        (
            "JB-2025-0101",
            "实名举报某局局长在工程招标中收受贿赂，并违规收受礼金。",
            2,
            "key",
        ),
        (
            "JB-2025-0102",
            "实名反映某局副局长违规公款吃喝。",
            0,
            "suspected",
        ),
        (
            "JB-2025-0103",
            "反映某窗口单位办事拖延，态度生硬。",
            0,
            "pending",
        ),
        (
            "JB-2025-0104",
            "实名举报某科长索贿受贿，挪用公款。",
            1,
            "key",
        ),
    ];
    let mut ids = BTreeMap::new();
    for (i, (case, content, evidence, grade)) in bodies.iter().enumerate() {
        let (id, _) = f.intake(&complaint(
            case,
            content,
            *evidence,
            Some(&format!("reporter{i}@example.net")),
        ));
        let vars = f.d.instance(&id)["data"]["vars"].clone();
        assert_eq!(vars["grade"], *grade, "{case}: {vars}");
        ids.insert(*case, id);
    }
    // An anonymous report is not graded.
    let (anon, _) = f.intake(&complaint(
        "JB-2025-0105",
        "匿名举报某局局长收受贿赂。",
        3,
        None,
    ));
    assert_eq!(f.d.instance(&anon)["data"]["vars"]["grade"], Value::Null);
    for id in ids.values() {
        f.complete("wang.fang", id, "screen", json!({"decision": "accept"}));
        f.complete("wang.fang", id, "assign", json!({"handler": "zhao.lei"}));
    }
    // JB-2025-0104 is concluded: reviewed, closed with no action, fed back, no objection.
    let done = ids["JB-2025-0104"].clone();
    f.complete(
        "huang.min",
        &done,
        "joint_review",
        json!({"advice": "closed_no_action"}),
    );
    f.complete(
        "zhao.lei",
        &done,
        "dispose",
        json!({"disposal": "closed_no_action"}),
    );
    f.complete(
        "zhao.lei",
        &done,
        "feedback",
        json!({"method": "in_person", "result": "经核查，予以了结。"}),
    );
    f.event("objection", "JB-2025-0104", json!({"new_evidence": false}));
    f.d.wait_until(
        "the concluded case is archived",
        Duration::from_secs(30),
        |d| d.instance(&done)["instance"]["status"] == "completed",
    );

    // No agenda before the fire; then 09:00 on 9 October (Shanghai).
    f.d.set_clock(sh(2025, 10, 9, 8, 59));
    f.d.settle();
    assert!(f.d.list_all("workflow=monthly-joint-review").is_empty());
    f.d.set_clock(sh(2025, 10, 9, 9, 0));
    f.d.wait_until("the joint review starts", Duration::from_secs(60), |d| {
        !d.list_all("workflow=monthly-joint-review").is_empty()
            && d.list_all("workflow=quarterly-results-digest").len() == 2
    });
    f.d.settle();
    let reviews = f.d.list_all("workflow=monthly-joint-review");
    assert_eq!(reviews.len(), 1, "one meeting");
    let review = reviews[0]["id"].as_str().unwrap().to_owned();
    let all = mails(&mut f);
    let agenda = sent(&all, &review, "agenda_mail");
    assert_eq!(agenda.len(), 1, "one agenda mail");
    let agenda = agenda[0];
    assert_eq!(
        agenda.envelope,
        set(&[
            "huang.min@example.org",
            "xu.tao@example.org",
            "zhao.lei@example.org",
            "wu.hao@example.org",
            "sun.li@example.org",
            "zheng.jing@example.org",
            "zhou.jian@example.org",
            "li.na@jw.example.cn",
            "wang.fang@example.org",
            "liu.yang@example.org",
        ])
    );
    for (case, listed) in [
        ("JB-2025-0101", true),
        ("JB-2025-0102", true),
        ("JB-2025-0103", false),
        ("JB-2025-0104", false),
        ("JB-2025-0105", false),
    ] {
        assert_eq!(
            agenda.text.contains(case),
            listed,
            "{case} listed: {listed}\n{}",
            agenda.text
        );
    }
    assert!(agenda.subject.contains("共2件"), "{}", agenda.subject);
    let pos = |case: &str| agenda.text.find(case).expect("listed");
    assert!(pos("JB-2025-0101") < pos("JB-2025-0102"), "oldest first");
    assert!(agenda.text.contains("2025-10-09"), "the meeting date");
    f.complete(
        "huang.min",
        &review,
        "minutes",
        json!({"held_on": "2025-10-09", "conclusions": "一案一策"}),
    );
    assert_eq!(outcome(&f, &review), "reviewed");

    // The quarterly digest: one instance per office, the report task on its head.
    let digests = f.d.list_all("workflow=quarterly-results-digest");
    let mut heads = BTreeMap::new();
    for d in &digests {
        let id = d["id"].as_str().unwrap().to_owned();
        let assignee = f.d.instance(&id)["data"]["input"]["assignee"]
            .as_str()
            .unwrap()
            .to_owned();
        heads.insert(assignee, id);
    }
    assert_eq!(
        heads.keys().map(String::as_str).collect::<Vec<_>>(),
        ["sun.li", "zhao.lei"]
    );
    let q = heads["zhao.lei"].clone();
    let task = f.task("zhao.lei", &q, "report");
    assert_eq!(task["assignee"], "zhao.lei", "{task}");
    f.complete(
        "zhao.lei",
        &q,
        "report",
        json!({"quarter": "2025年第三季度", "rows": [
            {"case": "JB-2025-0104", "title": "予以了结", "state": "closed", "due": "2025-09-30"}
        ]}),
    );
    assert_eq!(outcome(&f, &q), "reported");
    let all = mails(&mut f);
    let digest = sent(&all, &q, "digest_mail");
    assert_eq!(digest.len(), 1);
    assert_eq!(
        digest[0].envelope,
        set(&[
            "li.na@jw.example.cn",
            "wang.fang@example.org",
            "liu.yang@example.org"
        ])
    );
    assert!(
        digest[0].text.contains("JB-2025-0104"),
        "{}",
        digest[0].text
    );
}

#[test]
fn monthly_joint_review_and_quarterly_digest_sqlite() {
    monthly_joint_review_and_quarterly_digest(Backend::Sqlite);
}

#[test]
fn monthly_joint_review_and_quarterly_digest_postgres() {
    monthly_joint_review_and_quarterly_digest(Backend::Postgres);
}
