//! The shipped flagship workflows driven through the engine: every expression evaluates, inputs of linked workflows fit their schemas, and every mail renders.
//!
//! A small simulator plays the daemon: it answers plugin calls with outputs shaped as
//! the built-in plugins give them, completes and rejects tasks, fires timers and ends
//! linked instances. Each queued mail is rendered with the shipped templates in both
//! locales, so a template reading a value its step does not give fails here, not when
//! the mail is due. The real plugins, the store and SMTP are the end-to-end tests' job.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Asia::Shanghai;
use clearflow_core::engine::{self, Effect, Env, Event, Instance, Status};
use clearflow_core::{Catalog, Workflow};
use serde_json::{Value, json};

fn dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows")
}

static CALENDARS: LazyLock<clearflow_time::Calendars> =
    LazyLock::new(|| clearflow_time::load_dir(&dir().join("calendars")).unwrap());

static TEMPLATES: LazyLock<clearflow_templates::Templates> =
    LazyLock::new(|| clearflow_templates::load_dir(&dir().join("templates")).unwrap());

static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
    let mut wfs = Vec::new();
    for e in std::fs::read_dir(dir()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml") {
            let src = std::fs::read_to_string(&p).unwrap();
            wfs.push(Arc::new(
                clearflow_core::load(&p.display().to_string(), &src)
                    .unwrap_or_else(|d| panic!("{d:#?}")),
            ));
        }
    }
    Catalog::build(wfs).0
});

fn workflow(id: &str) -> &'static Workflow {
    CATALOG
        .get(id)
        .unwrap_or_else(|| panic!("no workflow {id}"))
}

/// A time in Shanghai.
fn sh(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    Shanghai
        .with_ymd_and_hms(y, m, d, h, 0, 0)
        .unwrap()
        .with_timezone(&Utc)
}

fn sh_date(t: DateTime<Utc>) -> String {
    t.with_timezone(&Shanghai).format("%Y-%m-%d").to_string()
}

#[derive(Debug, Clone)]
struct Task {
    no: u32,
    token: u32,
    step: String,
    title: Option<String>,
    role: Option<String>,
    assignee: Option<String>,
    due: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
struct Mail {
    step: String,
    template: String,
    to: Vec<String>,
    cc: Vec<String>,
    data: Value,
}

#[derive(Debug, Clone)]
struct Call {
    token: u32,
    step: String,
    plugin: String,
    input: Value,
}

#[derive(Debug, Clone)]
struct Start {
    workflow: String,
    input: Value,
    link: String,
    seq: u32,
}

/// One instance and what it has asked of the shell so far.
struct Sim {
    wf: &'static Workflow,
    inst: Instance,
    now: DateTime<Utc>,
    timers: BTreeMap<u32, DateTime<Utc>>,
    tasks: Vec<Task>,
    calls: Vec<Call>,
    mails: Vec<Mail>,
    /// Steps whose task-assigned notice was queued.
    assigned: Vec<String>,
    starts: Vec<Start>,
    history: Vec<String>,
}

impl Sim {
    fn start(id: &str, input: Value, now: DateTime<Utc>) -> Sim {
        let wf = workflow(id);
        let (inst, fx) =
            engine::create(wf, format!("{id}-1"), input, Some("wang.fang".into()), now)
                .unwrap_or_else(|e| panic!("{id}: {e}"));
        let mut sim = Sim {
            wf,
            inst,
            now,
            timers: BTreeMap::new(),
            tasks: Vec::new(),
            calls: Vec::new(),
            mails: Vec::new(),
            assigned: Vec::new(),
            starts: Vec::new(),
            history: Vec::new(),
        };
        sim.effects(fx);
        sim.apply(Event::Start);
        sim
    }

    fn apply(&mut self, event: Event) {
        let env = Env::new(self.now, &CALENDARS);
        let t = engine::apply(self.wf, &mut self.inst, event, &env);
        self.history.extend(
            t.history
                .iter()
                .map(|h| format!("{} {}", h.kind, h.step.clone().unwrap_or_default())),
        );
        self.effects(t.effects);
        if let Status::Failed { step, error } = &self.inst.status {
            panic!(
                "{} failed at {step}: {error}\n{:#?}",
                self.wf.id, self.history
            );
        }
    }

    fn effects(&mut self, fx: Vec<Effect>) {
        for e in fx {
            match e {
                Effect::ArmTimer { timer, at } => {
                    self.timers.insert(timer, at);
                }
                Effect::CancelTimer { timer } => {
                    self.timers.remove(&timer);
                }
                Effect::CallPlugin {
                    token,
                    step,
                    plugin,
                    input,
                    ..
                } => self.calls.push(Call {
                    token,
                    step,
                    plugin,
                    input,
                }),
                Effect::StartInstance {
                    workflow: child,
                    input,
                    link,
                    seq,
                    ..
                } => {
                    // The linked workflow accepts the input (the daemon creates it with it).
                    engine::create(
                        workflow(&child),
                        "child".into(),
                        input.clone(),
                        None,
                        self.now,
                    )
                    .unwrap_or_else(|e| panic!("{} starts {child}: {e}", self.wf.id));
                    self.starts.push(Start {
                        workflow: child,
                        input,
                        link,
                        seq,
                    });
                }
                Effect::QueueMail {
                    step,
                    template,
                    to,
                    cc,
                    data,
                    ..
                } => {
                    // A step's store lists are filled by the daemon (tests/digest.rs);
                    // here each renders as an empty list.
                    let mut shown = data.clone();
                    if let Some(clearflow_core::workflow::NodeKind::Notify(n)) =
                        self.wf.node_by_id(&step).map(|n| &n.kind)
                        && let Some(obj) = shown.as_object_mut()
                    {
                        for q in &n.lists {
                            obj.insert(q.name.clone(), json!([]));
                        }
                    }
                    render_both(&template, &shown);
                    // The notice of a new task goes to its role at every task step;
                    // the tests below look at the workflows' own mails.
                    if template == "task-assigned" {
                        self.assigned.push(step);
                        continue;
                    }
                    self.mails.push(Mail {
                        step,
                        template,
                        to,
                        cc,
                        data,
                    });
                }
                Effect::CreateTask {
                    task,
                    token,
                    step,
                    title,
                    role,
                    assignee,
                    due,
                    ..
                } => self.tasks.push(Task {
                    no: task,
                    token,
                    step,
                    title,
                    role,
                    assignee,
                    due,
                }),
                Effect::CloseTask { task } => self.tasks.retain(|t| t.no != task),
                Effect::ReassignTask { task, role } => {
                    for t in self.tasks.iter_mut().filter(|t| t.no == task) {
                        t.role = Some(role.clone());
                    }
                }
                Effect::RescheduleTask { task, due, .. } => {
                    for t in self.tasks.iter_mut().filter(|t| t.no == task) {
                        t.due = Some(due);
                    }
                }
                Effect::ReopenTask { task, reasons } => {
                    panic!("{}: task {task} refused: {reasons:?}", self.wf.id)
                }
                Effect::Subscribe { .. } | Effect::Unsubscribe { .. } | Effect::Ended { .. } => {}
            }
        }
    }

    /// The open task of `step` (the latest created).
    fn task(&self, step: &str) -> Task {
        self.tasks
            .iter()
            .rev()
            .find(|t| t.step == step)
            .cloned()
            .unwrap_or_else(|| {
                panic!(
                    "no task {step}; tasks: {:?}\n{:#?}",
                    self.tasks, self.history
                )
            })
    }

    fn complete(&mut self, step: &str, actor: &str, form: Value) {
        let t = self.task(step);
        self.tasks.retain(|x| x.token != t.token || x.step != step);
        self.apply(Event::TaskCompleted {
            token: t.token,
            task: Some(t.no),
            actor: actor.into(),
            form,
        });
    }

    fn reject(&mut self, step: &str, actor: &str, reason: &str) {
        let t = self.task(step);
        self.tasks.retain(|x| x.token != t.token || x.step != step);
        self.apply(Event::TaskRejected {
            token: t.token,
            task: Some(t.no),
            actor: actor.into(),
            reason: reason.into(),
        });
    }

    /// Answers the pending call of `step` with `output`; returns the call's input.
    fn plugin(&mut self, step: &str, plugin: &str, output: Value) -> Value {
        let i = self
            .calls
            .iter()
            .position(|c| c.step == step)
            .unwrap_or_else(|| panic!("no call from {step}: {:?}", self.calls));
        let call = self.calls.remove(i);
        assert_eq!(call.plugin, plugin);
        self.apply(Event::PluginDone {
            token: call.token,
            attempt: 1,
            result: Ok(output),
        });
        call.input
    }

    /// Fires the earliest timer; returns when it was due.
    fn fire(&mut self) -> DateTime<Utc> {
        let (&timer, &at) = self
            .timers
            .iter()
            .min_by_key(|(_, at)| **at)
            .expect("no timer armed");
        self.timers.remove(&timer);
        self.now = self.now.max(at);
        self.apply(Event::Timer { timer });
        at
    }

    fn signal(&mut self, name: &str, key: &str, data: Value) {
        self.apply(Event::Signal {
            name: name.into(),
            key: Some(key.into()),
            data,
        });
    }

    fn end_link(&mut self, workflow: &str, outcome: &str, output: Value) {
        let s = self
            .starts
            .iter()
            .rev()
            .find(|s| s.workflow == workflow)
            .cloned()
            .unwrap_or_else(|| panic!("{workflow} was not started"));
        self.apply(Event::LinkEnded {
            link: s.link,
            seq: s.seq,
            outcome: outcome.into(),
            output,
        });
    }

    fn mails_of(&self, step: &str) -> Vec<&Mail> {
        self.mails.iter().filter(|m| m.step == step).collect()
    }

    fn outcome(&self) -> Option<&str> {
        self.inst.status.outcome()
    }

    fn vars(&self) -> &Value {
        &self.inst.data["vars"]
    }
}

/// Renders a queued mail in both locales, as the mailer would.
fn render_both(template: &str, data: &Value) {
    for locale in ["zh-CN", "en"] {
        let mut ctx = data.as_object().cloned().unwrap_or_default();
        ctx.insert(
            "instance".into(),
            json!({"id": "i1", "workflow": "w", "started_at": "2025-01-06T01:00:00+00:00"}),
        );
        ctx.insert("step".into(), json!("s"));
        ctx.insert(
            "recipient".into(),
            json!({"address": "x@example.org", "name": null, "locale": locale}),
        );
        ctx.insert(
            "case_url".into(),
            json!("http://127.0.0.1:7878/v1/instances/i1"),
        );
        ctx.insert("status_url".into(), json!("http://127.0.0.1:7878/follow"));
        ctx.insert("now".into(), json!("2025-01-06T01:00:00+00:00"));
        TEMPLATES
            .render(template, Some(locale), &Value::Object(ctx))
            .unwrap_or_else(|e| panic!("{template} {locale}: {e}\ndata: {data:#}"));
    }
}

fn accused() -> Value {
    json!({
        "id": "E-1024", "name": "张三", "position": "某局局长", "email": "zhang.san@example.org",
        "department": "某局", "head_name": "某局党组书记", "head_email": "ju.head@example.org"
    })
}

fn complaint(real_name: bool) -> Value {
    json!({
        "case_number": "JB-2025-0042",
        "received_on": "2025-09-26",
        "reporter": {
            "type": if real_name { "real_name" } else { "anonymous" },
            "contact_by_email": real_name,
        },
        "accused": accused(),
        "allegation": "违规收受礼金",
        "content": "实名举报某局局长张三收受贿赂，违规收受礼金。",
        "evidence_count": 1,
    })
}

fn grade(grade: &str, repeat: bool) -> Value {
    json!({"grade": grade, "score": 7, "reasons": ["key keyword \"贿赂\" (+3)"], "repeat": repeat})
}

/// A real-name complaint received on the Friday before the National Day holiday of
/// 2025: the screening (and with it the acknowledgement) is due 15 working days later,
/// skipping 1–8 October and counting the make-up days 28 September and 11 October.
#[test]
fn acknowledgement_deadline_skips_national_day() {
    let mut s = Sim::start("complaint-handling", complaint(true), sh(2025, 9, 26, 10));
    let input = s.plugin("grade", "grade-report", grade("key", false));
    assert_eq!(input["reporter"], json!({"real_name": true}));
    assert_eq!(input["history"], json!({}));
    let screen = s.task("screen");
    assert_eq!(screen.role.as_deref(), Some("intake"));
    assert_eq!(sh_date(screen.due.unwrap()), "2025-10-23");
    assert_eq!(s.vars()["public_status"], "received");
}

/// The main path: graded key, accepted and acknowledged, joint review, verification
/// finds it unfounded (clarification), feedback by email, an objection with new
/// evidence returns the case to verification, which now finds it substantiated
/// (accountability); feedback again; no objection; archived.
#[test]
fn complaint_unfounded_then_objection_then_substantiated() {
    let mut s = Sim::start("complaint-handling", complaint(true), sh(2025, 9, 26, 10));
    s.plugin("grade", "grade-report", grade("key", false));
    s.complete("screen", "wang.fang", json!({"decision": "accept"}));
    let ack = s.mails_of("acknowledge");
    assert_eq!(ack.len(), 1);
    assert_eq!(ack[0].template, "acknowledge-receipt");
    assert_eq!(ack[0].to, ["reporter"], "the whistleblower alone");
    assert_eq!(ack[0].data["forwarded"], false);
    s.complete("assign", "wang.fang", json!({"handler": "zhao.lei"}));
    let jr = s.task("joint_review");
    assert_eq!(jr.role.as_deref(), Some("guidance"));
    assert!(jr.title.unwrap().contains("(key)"));
    s.complete(
        "joint_review",
        "huang.min",
        json!({"advice": "preliminary_verification"}),
    );
    assert_eq!(s.task("dispose").assignee.as_deref(), Some("zhao.lei"));
    s.complete(
        "dispose",
        "zhao.lei",
        json!({"disposal": "preliminary_verification"}),
    );
    s.complete(
        "verify",
        "zhao.lei",
        json!({"verdict": "unfounded", "findings": "反映问题失实"}),
    );
    let start = s.starts.last().unwrap().clone();
    assert_eq!(start.workflow, "clarification");
    assert_eq!(start.input["official"], accused());
    assert_eq!(start.input["findings"], "反映问题失实");
    assert!(!start.input.to_string().contains("reporter"));
    s.end_link(
        "clarification",
        "clarified",
        json!({"document_number": "市纪澄〔2025〕3号"}),
    );
    assert_eq!(s.vars()["public_status"], "concluded");
    // Concluded on the Friday before National Day: feedback is due 15 working days later.
    assert_eq!(sh_date(s.task("feedback").due.unwrap()), "2025-10-23");
    s.complete(
        "feedback",
        "zhao.lei",
        json!({"method": "email", "result": "经核查，反映问题失实，已予澄清。"}),
    );
    assert_eq!(s.vars()["public_status"], "feedback_given");
    assert_eq!(s.vars()["feedback"], "经核查，反映问题失实，已予澄清。");
    assert_eq!(s.vars()["feedback_record"]["method"], "email");
    let fb = s.mails_of("feedback_mail");
    assert_eq!(
        (fb.len(), fb[0].template.as_str()),
        (1, "reporter-feedback")
    );
    s.signal("objection", "JB-2025-0042", json!({"new_evidence": true}));
    assert_eq!(s.vars()["public_status"], "in_verification");
    s.complete(
        "verify",
        "zhao.lei",
        json!({"verdict": "substantiated", "findings": "查实"}),
    );
    assert_eq!(s.starts.last().unwrap().workflow, "accountability");
    s.end_link("accountability", "sanction", json!({}));
    s.complete(
        "feedback",
        "zhao.lei",
        json!({"method": "in_person", "result": "问题属实，已依规处理。"}),
    );
    assert_eq!(
        s.mails_of("feedback_mail").len(),
        1,
        "in-person feedback sends no mail"
    );
    s.fire(); // the objection window closes
    assert_eq!(s.outcome(), Some("substantiated"));
    assert_eq!(s.vars()["public_status"], "archived");
}

#[test]
fn anonymous_duplicate_and_repeat_reports() {
    // Anonymous: not graded, no joint review, no acknowledgement, no feedback.
    let mut s = Sim::start("complaint-handling", complaint(false), sh(2025, 3, 3, 9));
    assert!(s.calls.is_empty());
    s.complete("screen", "wang.fang", json!({"decision": "accept"}));
    assert!(s.mails.is_empty());
    s.complete("assign", "wang.fang", json!({"handler": "sun.li"}));
    s.complete("dispose", "sun.li", json!({"disposal": "closed_no_action"}));
    assert!(s.tasks.iter().all(|t| t.step != "feedback"));
    assert_eq!(s.outcome(), Some("closed"));
    // A duplicate is filed without acknowledgement.
    let mut s = Sim::start("complaint-handling", complaint(true), sh(2025, 3, 3, 9));
    s.plugin("grade", "grade-report", grade("pending", false));
    s.complete("screen", "wang.fang", json!({"decision": "duplicate"}));
    assert!(s.mails.is_empty());
    assert_eq!(s.outcome(), Some("duplicate"));
    // A repeat report gets no second acknowledgement.
    let mut s = Sim::start("complaint-handling", complaint(true), sh(2025, 3, 3, 9));
    s.plugin("grade", "grade-report", grade("suspected", true));
    s.complete("screen", "wang.fang", json!({"decision": "accept"}));
    assert!(s.mails_of("acknowledge").is_empty());
}

#[test]
fn forwarding_to_higher_and_lower_bodies() {
    let mut s = Sim::start("complaint-handling", complaint(true), sh(2025, 3, 3, 9));
    s.plugin("grade", "grade-report", grade("pending", false));
    s.complete("screen", "wang.fang", json!({"decision": "forward_higher"}));
    assert_eq!(s.mails_of("acknowledge")[0].data["forwarded"], true);
    let t = s.task("forward_higher");
    assert_eq!(sh_date(t.due.unwrap()), "2025-03-10");
    s.complete(
        "forward_higher",
        "wang.fang",
        json!({"forwarded_to": "省纪委监委", "reference": "转2025-1"}),
    );
    assert_eq!(s.outcome(), Some("forwarded"));

    let mut s = Sim::start("complaint-handling", complaint(true), sh(2025, 3, 3, 9));
    s.plugin("grade", "grade-report", grade("pending", false));
    s.complete("screen", "wang.fang", json!({"decision": "forward_lower"}));
    s.complete(
        "forward_lower",
        "wang.fang",
        json!({"forwarded_to": "区纪委监委", "reference": "转2025-2"}),
    );
    let due = s.fire(); // the lower body did not answer within 5 working days
    assert_eq!(sh_date(due), "2025-03-10");
    s.complete("lower_overdue", "wang.fang", json!({"reply": "accepted"}));
    assert_eq!(s.outcome(), Some("forwarded"));
}

#[test]
fn inquiry_letter_and_held_pending() {
    let mut s = Sim::start("complaint-handling", complaint(true), sh(2025, 3, 3, 9));
    s.plugin("grade", "grade-report", grade("pending", false));
    s.complete("screen", "wang.fang", json!({"decision": "accept"}));
    s.complete("assign", "wang.fang", json!({"handler": "zhao.lei"}));
    s.complete("dispose", "zhao.lei", json!({"disposal": "inquiry_letter"}));
    s.signal(
        "inquiry-answer",
        "JB-2025-0042",
        json!({"received_on": "2025-03-14"}),
    );
    s.complete(
        "inquiry_report",
        "zhao.lei",
        json!({"verdict": "unfounded", "findings": "说明属实"}),
    );
    assert_eq!(s.starts.last().unwrap().workflow, "clarification");

    let mut s = Sim::start("complaint-handling", complaint(true), sh(2025, 3, 3, 9));
    s.plugin("grade", "grade-report", grade("pending", false));
    s.complete("screen", "wang.fang", json!({"decision": "accept"}));
    s.complete("assign", "wang.fang", json!({"handler": "zhao.lei"}));
    s.complete("dispose", "zhao.lei", json!({"disposal": "held_pending"}));
    s.signal("new-clue", "JB-2025-0042", json!({"note": "新线索"}));
    s.complete("dispose", "zhao.lei", json!({"disposal": "held_pending"}));
    s.fire(); // six months without a clue
    assert_eq!(s.vars()["finding"], "closed");
    s.complete(
        "feedback",
        "zhao.lei",
        json!({"method": "phone", "result": "暂存待查后了结"}),
    );
    s.fire();
    assert_eq!(s.outcome(), Some("closed"));
}

#[test]
fn malicious_report_starts_clarification_and_false_accusation() {
    let mut s = Sim::start("complaint-handling", complaint(true), sh(2025, 3, 3, 9));
    s.plugin("grade", "grade-report", grade("suspected", false));
    s.complete("screen", "wang.fang", json!({"decision": "accept"}));
    s.complete("assign", "wang.fang", json!({"handler": "zhao.lei"}));
    s.complete(
        "joint_review",
        "huang.min",
        json!({"advice": "preliminary_verification"}),
    );
    s.complete(
        "dispose",
        "zhao.lei",
        json!({"disposal": "preliminary_verification"}),
    );
    s.complete(
        "verify",
        "zhao.lei",
        json!({"verdict": "malicious", "findings": "捏造事实"}),
    );
    let started: Vec<&str> = s.starts.iter().map(|x| x.workflow.as_str()).collect();
    assert_eq!(started, ["clarification", "false-accusation"]);
    assert!(!s.starts[1].input.to_string().contains("reporter"));
    s.end_link("false-accusation", "confirmed_sanction", json!({}));
    assert!(
        s.tasks.iter().all(|t| t.step != "feedback"),
        "waits for both"
    );
    s.end_link("clarification", "clarified", json!({}));
    s.task("feedback");
}

fn clarification_input(principal: bool) -> Value {
    json!({
        "case_number": "JB-2025-0042",
        "official": accused(),
        "allegation": "违规收受礼金",
        "findings": "反映问题失实",
        "principal_approval": principal,
    })
}

fn draft() -> Value {
    json!({"number": "市纪澄〔2025〕3号", "date": "2025-10-20", "findings": "经核查，反映问题不属实。"})
}

fn rendered() -> Value {
    json!({"title": "澄清正名通知书", "text": "澄清正名通知书\n……", "html": "<article>…</article>"})
}

/// Three tiers with two rejections, then delivery: exactly three mails.
#[test]
fn clarification_three_tiers_rejections_and_three_mails() {
    let mut s = Sim::start(
        "clarification",
        clarification_input(false),
        sh(2025, 10, 9, 9),
    );
    s.complete("draft", "wu.hao", draft());
    s.reject("self_review", "zhao.lei", "事实表述不准确");
    s.complete("draft", "wu.hao", draft());
    s.complete("self_review", "zhao.lei", json!({}));
    s.reject("joint_review", "huang.min", "依据不充分");
    s.complete("draft", "wu.hao", draft());
    s.complete("self_review", "zhao.lei", json!({}));
    s.complete("joint_review", "huang.min", json!({}));
    s.reject("final_review", "zhou.jian", "范围过宽");
    s.complete("draft", "wu.hao", draft());
    s.complete("self_review", "zhao.lei", json!({}));
    s.complete("joint_review", "huang.min", json!({}));
    s.complete("final_review", "zhou.jian", json!({"comments": "同意"}));
    assert!(s.tasks.iter().all(|t| t.step != "principal_approval"));
    let input = s.plugin("render", "render-document", rendered());
    assert_eq!(
        input,
        json!({
            "number": "市纪澄〔2025〕3号", "issuer": "市纪委监委", "date": "2025-10-20",
            "official": {"name": "张三", "position": "某局局长"},
            "document": {"kind": "clarification", "allegation": "违规收受礼金", "findings": "经核查，反映问题不属实。"},
            "copies_to": ["某局党组书记"]
        })
    );
    let filing = s.plugin(
        "filing",
        "file-to-records",
        json!({"entries": [
            {"record": "integrity", "official_id": "E-1024", "summary": "澄清正名：……", "document_ref": "市纪澄〔2025〕3号", "filed_on": "2025-10-20"},
            {"record": "personnel", "official_id": "E-1024", "summary": "澄清正名材料归档：……", "document_ref": "市纪澄〔2025〕3号", "filed_on": "2025-10-20"}
        ]}),
    );
    assert_eq!(
        filing,
        json!({"official_id": "E-1024", "document_ref": "市纪澄〔2025〕3号", "filed_on": "2025-10-20",
               "source": {"kind": "clarification", "allegation": "违规收受礼金"}})
    );
    let sent: Vec<(&str, &str, Vec<String>)> = s
        .mails
        .iter()
        .map(|m| {
            (
                m.step.as_str(),
                m.data["mode"].as_str().unwrap_or("-"),
                m.to.clone(),
            )
        })
        .collect();
    assert_eq!(
        sent,
        [
            ("notice", "notice", vec!["zhang.san@example.org".to_owned()]),
            (
                "notice_copy",
                "copy",
                vec!["ju.head@example.org".to_owned()]
            ),
            ("records_notice", "-", vec!["role:personnel".to_owned()]),
        ]
    );
    assert_eq!(s.outcome(), Some("clarified"));
}

#[test]
fn clarification_with_principal_approval_and_briefing() {
    let mut s = Sim::start(
        "clarification",
        clarification_input(true),
        sh(2025, 10, 9, 9),
    );
    let mut d = draft();
    d["briefing_audience"] = json!(["dept.a@example.org", "dept.b@example.org"]);
    s.complete("draft", "wu.hao", d);
    s.complete("self_review", "zhao.lei", json!({}));
    s.complete("joint_review", "huang.min", json!({}));
    s.complete("final_review", "zhou.jian", json!({}));
    s.reject("principal_approval", "ma.guoqiang", "再斟酌");
    let mut d = draft();
    d["briefing_audience"] = json!(["dept.a@example.org", "dept.b@example.org"]);
    s.complete("draft", "wu.hao", d);
    s.complete("self_review", "zhao.lei", json!({}));
    s.complete("joint_review", "huang.min", json!({}));
    s.complete("final_review", "zhou.jian", json!({}));
    s.complete("principal_approval", "ma.guoqiang", json!({}));
    s.plugin("render", "render-document", rendered());
    s.plugin("filing", "file-to-records", json!({"entries": []}));
    let steps: Vec<&str> = s.mails.iter().map(|m| m.step.as_str()).collect();
    assert_eq!(
        steps,
        ["notice", "notice_copy", "briefing", "records_notice"]
    );
    let briefing = &s.mails_of("briefing")[0];
    assert_eq!(briefing.to, ["dept.a@example.org", "dept.b@example.org"]);
    assert_eq!(briefing.data["mode"], "briefing");
    assert_eq!(s.outcome(), Some("clarified"));
}

#[test]
fn false_accusation_with_identity_access() {
    let input =
        json!({"case_number": "JB-2025-0042", "allegation": "违规收受礼金", "grounds": "捏造事实"});
    let mut s = Sim::start("false-accusation", input.clone(), sh(2025, 3, 3, 9));
    s.complete("refer", "zhou.jian", json!({"refer": true}));
    s.complete(
        "investigate",
        "zhao.lei",
        json!({"identity_needed": true, "reason": "核实举报人动机", "findings": "…"}),
    );
    s.complete("identity_request", "zhou.jian", json!({"granted": true}));
    assert_eq!(s.vars()["identity_access"]["granted"], true);
    s.complete(
        "conclude",
        "zhao.lei",
        json!({"result": "confirmed_judicial", "findings": "涉嫌诬告陷害罪"}),
    );
    s.reject("confirm", "zhou.jian", "证据需补充");
    s.complete(
        "conclude",
        "zhao.lei",
        json!({"result": "confirmed_judicial", "findings": "涉嫌诬告陷害罪"}),
    );
    s.complete("confirm", "zhou.jian", json!({}));
    assert_eq!(s.outcome(), Some("confirmed_judicial"));
    assert_eq!(
        s.inst.status,
        Status::Completed {
            outcome: "confirmed_judicial".into(),
            output: json!({"identity_accessed": true})
        }
    );
    assert!(s.mails.is_empty());

    let mut s = Sim::start("false-accusation", input.clone(), sh(2025, 3, 3, 9));
    s.complete("refer", "zhou.jian", json!({"refer": true}));
    s.complete("investigate", "zhao.lei", json!({"identity_needed": false}));
    assert!(s.tasks.iter().all(|t| t.step != "identity_request"));
    s.complete(
        "conclude",
        "zhao.lei",
        json!({"result": "not_confirmed", "findings": "证据不足"}),
    );
    s.complete("confirm", "zhou.jian", json!({}));
    assert_eq!(s.outcome(), Some("not_confirmed"));

    let mut s = Sim::start("false-accusation", input, sh(2025, 3, 3, 9));
    s.complete("refer", "zhou.jian", json!({"refer": false}));
    assert_eq!(s.outcome(), Some("not_referred"));
}

fn accountability_input() -> Value {
    json!({
        "case_number": "JB-2024-0100",
        "official": accused(),
        "matter": "村集体资金用于接送村民代表",
        "findings": "违反三资管理办法"
    })
}

/// The assessment starts with the case; no decision task exists before it ends.
#[test]
fn accountability_waits_for_the_assessment() {
    let mut s = Sim::start("accountability", accountability_input(), sh(2024, 1, 8, 9));
    assert_eq!(s.inst.links.len(), 1);
    // Exactly one assessment, created with the case (the shell commits both at once).
    assert_eq!(s.starts.len(), 1);
    assert_eq!(s.starts[0].workflow, "fault-tolerance-assessment");
    assert_eq!(s.starts[0].link, "assessment");
    assert_eq!(s.starts[0].input["official"]["id"], "E-1024");
    assert_eq!(
        s.inst.links["assessment"].workflow,
        "fault-tolerance-assessment"
    );
    s.complete(
        "investigate",
        "zhao.lei",
        json!({"findings": "…", "responsibility": "direct"}),
    );
    assert!(
        s.tasks.is_empty(),
        "no decision before the assessment: {:?}",
        s.tasks
    );
    let seq = s.inst.links["assessment"].seq;
    s.apply(Event::LinkEnded {
        link: "assessment".into(),
        seq,
        outcome: "mitigated".into(),
        output: json!({}),
    });
    assert!(s.task("decide").title.unwrap().contains("mitigated"));
    s.complete(
        "decide",
        "zhou.jian",
        json!({"decision": "sanction", "sanction": "party_warning", "effective_on": "2024-03-01", "reasons": "…"}),
    );
    let f = s.starts.last().unwrap();
    assert_eq!(f.workflow, "follow-up-visits");
    assert_eq!(
        (
            f.input["sanction"].as_str(),
            f.input["effective_on"].as_str()
        ),
        (Some("party_warning"), Some("2024-03-01"))
    );
    assert_eq!(s.outcome(), Some("sanction"));
}

#[test]
fn accountability_without_sanction() {
    let mut s = Sim::start("accountability", accountability_input(), sh(2024, 1, 8, 9));
    let seq = s.inst.links["assessment"].seq;
    // The assessment may end first; the decision still waits for the investigation.
    s.apply(Event::LinkEnded {
        link: "assessment".into(),
        seq,
        outcome: "exempted".into(),
        output: json!({}),
    });
    assert!(s.tasks.iter().all(|t| t.step != "decide"));
    s.complete(
        "investigate",
        "zhao.lei",
        json!({"findings": "…", "responsibility": "none"}),
    );
    s.complete(
        "decide",
        "zhou.jian",
        json!({"decision": "no_accountability", "reasons": "容错免责"}),
    );
    let started: Vec<&str> = s.starts.iter().map(|x| x.workflow.as_str()).collect();
    assert_eq!(
        started,
        ["fault-tolerance-assessment"],
        "no follow-up without a sanction"
    );
    assert_eq!(s.outcome(), Some("no_accountability"));
}

fn factors(rating: &str) -> Value {
    let f = json!({"rating": rating, "evidence": "会议纪要"});
    json!({"motive": f, "objective_conditions": f, "procedure": f, "nature": f, "consequences": f, "remedial_action": f})
}

/// All three outcomes; an exclusion forces 不予容错 whatever the meeting chose.
#[test]
fn fault_tolerance_outcomes() {
    for (recommendation, hit, chosen, expect) in [
        ("exempted", json!([]), "exempted", "exempted"),
        ("mitigated", json!([]), "mitigated", "mitigated"),
        (
            "not_tolerated",
            json!(["personal_gain"]),
            "exempted",
            "not_tolerated",
        ),
    ] {
        let input = json!({"case_number": "JB-2024-0100", "official": {"id": "E-1024", "name": "张三", "position": "某局局长", "email": "zhang.san@example.org"}, "matter": "村集体资金用于接送村民代表"});
        let mut s = Sim::start("fault-tolerance-assessment", input, sh(2024, 1, 8, 9));
        let exclusions = json!({"personal_gain": !hit.as_array().unwrap().is_empty()});
        s.complete(
            "record",
            "huang.min",
            json!({"factors": factors("favourable"), "exclusions": exclusions}),
        );
        let scored = s.plugin(
            "score",
            "assess-fault-tolerance",
            json!({"recommendation": recommendation, "score": 12, "max_score": 12, "reasons": ["…"], "exclusions_hit": hit}),
        );
        assert_eq!(scored["factors"], factors("favourable"));
        s.complete(
            "panel",
            "gao.yan",
            json!({"outcome": chosen, "reasons": ["出于公心"], "basis": "《实施办法》", "number": "市纪容〔2024〕1号", "date": "2024-02-20"}),
        );
        s.complete("sign", "zhou.jian", json!({}));
        let doc = s.plugin("render", "render-document", rendered());
        assert_eq!(doc["document"]["outcome"], expect);
        assert_eq!(doc["document"]["kind"], "fault_tolerance_decision");
        s.plugin("filing", "file-to-records", json!({"entries": []}));
        let steps: Vec<&str> = s.mails.iter().map(|m| m.step.as_str()).collect();
        assert_eq!(steps, ["decision_notice", "records_notice"]);
        assert_eq!(s.mails[0].data["outcome"], expect);
        assert_eq!(s.outcome(), Some(expect));
    }
}

/// A Party warning effective 2024-03-01: three visits, then personnel are told on
/// 2025-01-29, 30 days before the impact period ends with 2025-02-28.
#[test]
fn follow_up_visits_and_impact_period_end() {
    let input = json!({
        "case_number": "JB-2024-0100",
        "official": {"id": "E-1024", "name": "张三", "position": "某局局长"},
        "sanction": "party_warning",
        "effective_on": "2024-03-01"
    });
    let mut s = Sim::start("follow-up-visits", input, sh(2024, 3, 1, 10));
    // The output of the impact-period plugin for this input (see its tests).
    s.plugin(
        "period",
        "impact-period",
        json!({
            "sanction": "party_warning", "label": "党内警告 Party warning", "months": 12,
            "effective_on": "2024-03-01", "impact_end": "2025-02-28", "remind_on": "2025-01-29",
            "visits": [
                {"number": 1, "on": "2024-06-01", "remind_on": "2024-05-27"},
                {"number": 2, "on": "2024-09-01", "remind_on": "2024-08-27"},
                {"number": 3, "on": "2024-12-01", "remind_on": "2024-11-26"}
            ]
        }),
    );
    for (remind, on) in [
        ("2024-05-27", "2024-06-01"),
        ("2024-08-27", "2024-09-01"),
        ("2024-11-26", "2024-12-01"),
    ] {
        assert_eq!(sh_date(s.fire()), remind);
        let m = s.mails.last().unwrap();
        assert_eq!(
            (m.template.as_str(), m.data["visit"]["on"].as_str()),
            ("follow-up-visit", Some(on))
        );
        assert_eq!(sh_date(s.fire()), on);
        s.complete(
            "visit_task",
            "zhao.lei",
            json!({"visited_on": on, "summary": "表现良好", "assessment": "positive"}),
        );
    }
    assert!(s.mails.iter().all(|m| m.template != "impact-period-ending"));
    let at = s.fire();
    assert_eq!(at, sh(2025, 1, 29, 0));
    let m = s.mails.last().unwrap();
    assert_eq!(m.template, "impact-period-ending");
    assert_eq!(m.to, ["role:personnel"]);
    assert_eq!(m.data["sanction"]["impact_end"], "2025-02-28");
    assert_eq!(s.outcome(), Some("completed"));
    assert_eq!(s.vars()["visit_records"].as_array().unwrap().len(), 3);
}

#[test]
fn schedules_and_digests() {
    // The monthly joint review: 09:00 on the first working day of the month.
    let wf = workflow("monthly-joint-review");
    let fire = wf.schedules[0]
        .schedule
        .next_after(sh(2025, 9, 30, 12), CALENDARS.get("cn-mainland"))
        .unwrap();
    assert_eq!(
        fire,
        sh(2025, 10, 9, 9),
        "October 2025 starts with the National Day holiday"
    );
    let mut s = Sim::start("monthly-joint-review", json!({}), fire);
    // The agenda's rows are read from the store by the daemon when the mail is
    // queued (tests/digest.rs); the engine asks for the mail at once.
    let m = &s.mails[0];
    assert_eq!(m.template, "joint-review-agenda");
    assert_eq!(m.to, ["role:guidance", "role:handler", "role:leader"]);
    assert_eq!(m.cc, ["role:intake"]);
    assert_eq!(m.data["meeting"]["date"], "2025-10-09");
    let step = wf.node_by_id("agenda_mail").unwrap();
    let clearflow_core::workflow::NodeKind::Notify(n) = &step.kind else {
        panic!("agenda_mail is a notify step")
    };
    assert_eq!(n.lists.len(), 1);
    assert_eq!(n.lists[0].workflow, "complaint-handling");
    assert_eq!(n.lists[0].statuses, ["running"]);
    s.complete(
        "minutes",
        "huang.min",
        json!({"held_on": "2025-10-09", "conclusions": "一案一策"}),
    );
    assert_eq!(s.outcome(), Some("reviewed"));

    let rows = json!([
        {"case": "JB-2025-0042", "title": "初步核实", "state": "unfounded", "due": null},
        {"case": "JB-2025-0043", "title": "谈话函询", "state": "partly_substantiated", "due": "2025-10-20"}
    ]);
    let wf = workflow("quarterly-results-digest");
    assert_eq!(wf.schedules.len(), 2);
    let fire = wf.schedules[0]
        .schedule
        .next_after(sh(2025, 12, 15, 0), CALENDARS.get("cn-mainland"))
        .unwrap();
    assert_eq!(
        fire,
        sh(2026, 1, 4, 9),
        "1–3 January 2026 are off; Sunday 4 January is a make-up working day"
    );
    let mut s = Sim::start(
        "quarterly-results-digest",
        wf.schedules[0].input.clone(),
        fire,
    );
    assert_eq!(s.task("report").assignee.as_deref(), Some("zhao.lei"));
    s.complete(
        "report",
        "zhao.lei",
        json!({"quarter": "2025年第四季度", "rows": rows}),
    );
    assert_eq!(s.mails[0].template, "quarterly-digest");
    assert_eq!(s.mails[0].to, ["role:intake"]);

    let wf = workflow("campaigns");
    for sched in &wf.schedules {
        let mut s = Sim::start("campaigns", sched.input.clone(), sh(2025, 4, 15, 9));
        s.complete("compile", "huang.min", json!({"rows": rows}));
        assert_eq!(s.mails.len(), 1);
        assert_eq!(s.mails[0].template, "digest");
    }
    let follow_up_week = wf
        .schedules
        .iter()
        .find(|x| x.id == "follow-up-week")
        .unwrap();
    assert_eq!(
        follow_up_week
            .schedule
            .next_after(sh(2025, 1, 1, 0), None)
            .unwrap(),
        sh(2025, 6, 2, 9)
    );
}

/// The sample inputs in `examples/flagship/` start their workflows.
#[test]
fn sample_inputs_fit_their_workflows() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/flagship");
    for (file, id) in [
        ("complaint-key.json", "complaint-handling"),
        ("complaint-pending.json", "complaint-handling"),
        ("complaint-anonymous.json", "complaint-handling"),
        ("accountability.json", "accountability"),
        ("follow-up.json", "follow-up-visits"),
    ] {
        let mut input: Value =
            serde_json::from_str(&std::fs::read_to_string(examples.join(file)).unwrap()).unwrap();
        // Complaints are intake bodies: the workflow gets the case and only the kind of
        // reporter (as `api/intake.rs` builds it), never who they are.
        if let Some(case) = input.get("case").cloned() {
            let reporter = &input["reporter"];
            let mut case = case;
            case["reporter"] = json!({
                "type": if reporter.is_object() { "real_name" } else { "anonymous" },
                "contact_by_email": reporter["contact_by_email"].as_bool().unwrap_or(false),
            });
            input = case;
        }
        let s = Sim::start(id, input, sh(2025, 10, 9, 9));
        assert!(s.inst.status == Status::Running, "{file}");
    }
}
