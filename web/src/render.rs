//! Pages: typed view models rendered by templates embedded in the binary.

use std::sync::OnceLock;

use minijinja::value::Value;
use minijinja::{Environment, State, context};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::i18n::Locale;

/// Why a page could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// A template failed; a bug in this crate or in the view model given.
    #[error("template {name} failed: {source}")]
    Template {
        /// The template's name.
        name: &'static str,
        /// What MiniJinja said.
        #[source]
        source: minijinja::Error,
    },
}

/// The one stylesheet, served by a route with a long cache lifetime.
pub const STYLESHEET: &[u8] = include_bytes!("../static/style.css");

/// The stylesheet's content hash (16 hex digits), appended to its URL for cache-busting.
pub fn stylesheet_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        Sha256::digest(STYLESHEET)
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect()
    })
}

/// Every template, by name, for the environment and the catalogue test.
pub(crate) const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("wb_file.html", include_str!("../templates/wb_file.html")),
    (
        "wb_receipt.html",
        include_str!("../templates/wb_receipt.html"),
    ),
    (
        "wb_follow.html",
        include_str!("../templates/wb_follow.html"),
    ),
    (
        "wb_status.html",
        include_str!("../templates/wb_status.html"),
    ),
    ("signin.html", include_str!("../templates/signin.html")),
    ("enrol.html", include_str!("../templates/enrol.html")),
    ("inbox.html", include_str!("../templates/inbox.html")),
    ("fields.html", include_str!("../templates/fields.html")),
    ("task.html", include_str!("../templates/task.html")),
    ("case.html", include_str!("../templates/case.html")),
    ("admin.html", include_str!("../templates/admin.html")),
    ("message.html", include_str!("../templates/message.html")),
    ("identity.html", include_str!("../templates/identity.html")),
];

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
        for (name, src) in TEMPLATES {
            env.add_template(name, src)
                .expect("embedded templates compile");
        }
        env.add_function("t", |state: &State, key: &str| -> String {
            locale_of(state).t(key).to_owned()
        });
        env.add_function("csrf_field", |state: &State| -> Value {
            let token = state
                .lookup("csrf")
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let escaped = minijinja::HtmlEscape(&token).to_string();
            Value::from_safe_string(format!(
                "<input type=\"hidden\" name=\"csrf\" value=\"{escaped}\">"
            ))
        });
        env
    })
}

fn locale_of(state: &State) -> Locale {
    state
        .lookup("locale")
        .and_then(|v| v.as_str().and_then(Locale::from_tag))
        .unwrap_or(Locale::ZhCn)
}

/// What every page needs besides its own view model.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// The negotiated locale.
    pub locale: Locale,
    /// The session's (or the public form's) CSRF token, put in every form.
    pub csrf: &'a str,
}

fn render<T: Serialize>(
    name: &'static str,
    frame: Frame<'_>,
    staff: bool,
    page: &T,
) -> Result<String, WebError> {
    let other = match frame.locale {
        Locale::ZhCn => Locale::En,
        Locale::En => Locale::ZhCn,
    };
    let ctx = context! {
        locale => frame.locale.tag(),
        other_locale => other.tag(),
        csrf => frame.csrf,
        staff => staff,
        style_hash => stylesheet_hash(),
        ..Value::from_serialize(page)
    };
    env()
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|source| WebError::Template { name, source })
}

/// The whistleblower's complaint form (from [`crate::form::complaint_schema`]), with what
/// was typed and the errors next to each field.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FileComplaintView {
    /// The fields, filled with what was typed.
    pub fields: Vec<crate::form::Field>,
    /// Whether the last submission was refused.
    pub has_errors: bool,
    /// A refusal not tied to one field, in words.
    pub error: Option<String>,
}

/// The receipt code, shown once.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiptView {
    /// The receipt code.
    pub receipt: String,
}

/// The receipt-code form.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FollowView {
    /// An error in plain words (already translated), if the code was not found.
    pub error: Option<String>,
}

/// One message between the whistleblower and the office.
#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    /// Whether the whistleblower wrote it.
    pub from_reporter: bool,
    /// When, formatted in the deployment's time zone.
    pub at: String,
    /// The text.
    pub text: String,
}

/// The whistleblower's status page.
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    /// The receipt code, carried in the message form's body (never in a URL).
    pub receipt: String,
    /// The public stage: a key of the `stage.` catalogue section (`received`, `accepted`, …).
    pub stage: String,
    /// Deadlines in plain words, already formatted.
    pub deadlines: Vec<String>,
    /// The feedback text, once given.
    pub feedback: Option<String>,
    /// The messages, oldest first.
    pub messages: Vec<MessageView>,
}

/// The sign-in page: password step or TOTP step.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SignInView {
    /// `password` or `totp`.
    pub step: String,
    /// The user name as typed.
    pub user: String,
    /// `failed` or `locked`, when the last attempt failed.
    pub error: Option<String>,
}

/// TOTP enrolment: QR code, key and recovery codes.
#[derive(Debug, Clone, Serialize)]
pub struct EnrolView {
    /// The QR code as an SVG document .
    pub qr_svg: String,
    /// The secret in base32, for typing.
    pub secret: String,
    /// Recovery codes, shown once.
    pub recovery_codes: Vec<String>,
}

/// One inbox row.
#[derive(Debug, Clone, Serialize)]
pub struct InboxRow {
    /// The task number.
    pub task: i64,
    /// The task id (its page is `/tasks/ID`).
    pub id: String,
    /// The task title.
    pub title: String,
    /// The case number.
    pub case: String,
    /// The workflow id.
    pub workflow: String,
    /// The candidate role.
    pub role: String,
    /// Working days until due (negative: overdue), on the workflow's calendar.
    pub due_in: Option<i64>,
}

/// The inbox filters as submitted.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InboxFilter {
    /// Case number.
    pub case: String,
    /// Workflow id.
    pub workflow: String,
    /// Role.
    pub role: String,
    /// Overdue only.
    pub overdue: bool,
}

/// The inbox: one page of at most [`INBOX_PAGE`] rows, sorted by due date by the caller.
#[derive(Debug, Clone, Serialize)]
pub struct InboxView {
    /// The rows of this page.
    pub rows: Vec<InboxRow>,
    /// The filters.
    pub filter: InboxFilter,
    /// This page, from 1.
    pub page: u32,
    /// Whether there is a next page.
    pub has_next: bool,
}

/// A labelled value of the case summary.
#[derive(Debug, Clone, Serialize)]
pub struct SummaryItem {
    /// The label.
    pub label: String,
    /// The value.
    pub value: String,
}

/// Why the last action on a task was refused, in the runtime's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// Separation of duties (不得兼审).
    Separation,
    /// The linked fault-tolerance assessment has not ended.
    AssessmentOpen,
    /// Someone else holds the task.
    Taken,
}

/// The task page.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    /// The task number.
    pub task: i64,
    /// The task id.
    pub id: String,
    /// The instance (the case page link).
    pub instance: String,
    /// The task title.
    pub title: String,
    /// The case summary the role may see.
    pub summary: Vec<SummaryItem>,
    /// The form (from [`crate::form::fields`]).
    pub fields: Vec<crate::form::Field>,
    /// Whether the viewer may claim it.
    pub claimable: bool,
    /// Whether the viewer may complete it now (holds it, or it is unclaimed and theirs).
    pub mine: bool,
    /// Whether the viewer holds the claim (release shown).
    pub releasable: bool,
    /// Whether the step can be rejected.
    pub rejectable: bool,
    /// A refusal of the last action.
    pub refusal: Option<Refusal>,
    /// Further reasons the last action was refused, in words (schema violations).
    pub messages: Vec<String>,
    /// The task's status when it is no longer open.
    pub closed: Option<String>,
}

/// Renders the task page.
pub fn task(frame: Frame<'_>, view: &TaskView) -> Result<String, WebError> {
    #[derive(Serialize)]
    struct WithErrors<'a> {
        #[serde(flatten)]
        view: &'a TaskView,
        fields_have_errors: bool,
    }
    fn any_error(f: &[crate::form::Field]) -> bool {
        f.iter().any(|f| f.error.is_some() || any_error(&f.fields))
    }
    let fields_have_errors = any_error(&view.fields);
    render(
        "task.html",
        frame,
        true,
        &WithErrors {
            view,
            fields_have_errors,
        },
    )
}

/// One timeline row: who did what, when (formatted in the deployment's time zone).
#[derive(Debug, Clone, Serialize)]
pub struct TimelineRow {
    /// When.
    pub at: String,
    /// Who (a user id or `system`).
    pub who: String,
    /// What, in words.
    pub what: String,
}

/// An open task of the case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseTask {
    /// The task number.
    pub task: i64,
    /// The task id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// The assignee or role it waits for.
    pub waiting_for: String,
}

/// A pending timer.
#[derive(Debug, Clone, Serialize)]
pub struct CaseTimer {
    /// What fires.
    pub what: String,
    /// When, formatted.
    pub at: String,
}

/// A linked instance (the accountability case and its assessment link both ways).
#[derive(Debug, Clone, Serialize)]
pub struct CaseLink {
    /// The instance id.
    pub instance: String,
    /// The link name.
    pub alias: String,
    /// Its case number.
    pub number: String,
}

/// A mail queued or sent for the case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseMail {
    /// When queued or sent, formatted.
    pub at: String,
    /// The template name.
    pub template: String,
    /// `sent`, `queued` or `failed`.
    pub state: String,
}

/// The case page. Never carries the whistleblower's identity.
#[derive(Debug, Clone, Serialize)]
pub struct CaseView {
    /// The instance id.
    pub instance: String,
    /// The case number.
    pub number: String,
    /// The workflow's title.
    pub workflow_title: String,
    /// The status, in words.
    pub status: String,
    /// The diagram (from [`crate::diagram::svg`]), inserted unescaped.
    pub diagram_svg: String,
    /// The timeline, oldest first.
    pub timeline: Vec<TimelineRow>,
    /// Open tasks.
    pub tasks: Vec<CaseTask>,
    /// Pending timers.
    pub timers: Vec<CaseTimer>,
    /// Linked instances.
    pub links: Vec<CaseLink>,
    /// Mails.
    pub mails: Vec<CaseMail>,
    /// Messages with the whistleblower, for a case filed through intake (`None` otherwise).
    pub messages: Option<Vec<MessageView>>,
    /// The reporter-identity panel, for a caller who may read identities on a real-name
    /// case (`None` otherwise).
    pub identity: Option<IdentityPanel>,
}

/// What the case page says about reading the reporter's identity, before any read.
#[derive(Debug, Clone, Serialize)]
pub struct IdentityPanel {
    /// `open` (the permission alone decides), `approved` (the workflow's approval step
    /// granted it), `pending` (that step has not granted it) or `never` (the workflow
    /// allows no read through this case).
    pub rule: &'static str,
    /// The approval step the rule names, for `approved` and `pending`.
    pub step: Option<String>,
    /// Who granted it, for `approved`.
    pub by: Option<String>,
}

/// The page that shows an opened identity (served `no-store`, like every page).
#[derive(Debug, Clone, Serialize)]
pub struct IdentityView {
    /// The case it was read through.
    pub instance: String,
    /// The case number.
    pub number: String,
    /// The fields given at intake: (a key of the `identity.` catalogue section, value).
    pub fields: Vec<(&'static str, String)>,
    /// The reason the reader gave.
    pub reason: String,
    /// The approval the read rests on: (step, by).
    pub approval: Option<(String, String)>,
}

/// Renders an opened identity.
pub fn identity(frame: Frame<'_>, view: &IdentityView) -> Result<String, WebError> {
    render("identity.html", frame, true, view)
}

/// Renders the case page.
pub fn case(frame: Frame<'_>, view: &CaseView) -> Result<String, WebError> {
    render("case.html", frame, true, view)
}

/// Which administration page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminSection {
    /// Workflows with version and load errors.
    Workflows,
    /// Instance search, cancel and signal.
    Instances,
    /// The outbox with retry.
    Outbox,
    /// Schedules with their next runs.
    Schedules,
    /// The audit log with verify.
    Audit,
    /// Users, roles and sessions (revoke).
    Users,
}

/// A post button on an admin row (retry, cancel, revoke, …).
#[derive(Debug, Clone, Serialize)]
pub struct AdminAction {
    /// The form's action path.
    pub action: String,
    /// The button's label, already translated.
    pub label: String,
}

/// One row of an admin table.
#[derive(Debug, Clone, Serialize)]
pub struct AdminRow {
    /// The cells, formatted.
    pub cells: Vec<String>,
    /// A link for the first cell.
    pub link: Option<String>,
    /// Buttons.
    pub actions: Vec<AdminAction>,
}

/// The result of an audit chain verification.
#[derive(Debug, Clone, Serialize)]
pub struct AuditVerify {
    /// Whether the chain is intact.
    pub ok: bool,
    /// Where it breaks, when it does.
    pub at: Option<String>,
}

/// An administration page: a table of rows with actions.
#[derive(Debug, Clone, Serialize)]
pub struct AdminView {
    /// Which page.
    pub section: AdminSection,
    /// The search as typed.
    pub query: String,
    /// Column headings, already translated.
    pub columns: Vec<String>,
    /// The rows.
    pub rows: Vec<AdminRow>,
    /// The audit verification, on the audit page after a verify.
    pub verify: Option<AuditVerify>,
}

/// Renders an administration page.
pub fn admin(frame: Frame<'_>, view: &AdminView) -> Result<String, WebError> {
    render("admin.html", frame, true, view)
}

/// A page that says one thing (an error, mostly).
pub fn message(frame: Frame<'_>, staff: bool, text: &str) -> Result<String, WebError> {
    #[derive(Serialize)]
    struct Text<'a> {
        text: &'a str,
    }
    render("message.html", frame, staff, &Text { text })
}

/// A deadline in plain words: "due in N working days", "due today", "overdue N working
/// days", "no deadline".
pub fn due_words(locale: Locale, due_in: Option<i64>) -> String {
    match due_in {
        None => locale.t("inbox.no_due").to_owned(),
        Some(n) if n < 0 => locale.t("inbox.overdue").replace("{n}", &(-n).to_string()),
        Some(0) => locale.t("inbox.due_today").to_owned(),
        Some(n) => locale.t("inbox.due_in").replace("{n}", &n.to_string()),
    }
}

/// A history entry's kind in words.
pub fn history_words(locale: Locale, kind: &str) -> String {
    let key = format!("history.{kind}");
    if locale.has(&key) {
        locale.t(&key).to_owned()
    } else {
        kind.replace('_', " ")
    }
}

/// An instance status in words.
pub fn status_words(locale: Locale, status: &str) -> String {
    let key = format!("status.{status}");
    if locale.has(&key) {
        locale.t(&key).to_owned()
    } else {
        status.to_owned()
    }
}

/// Rows per inbox page.
pub const INBOX_PAGE: usize = 50;

/// Renders the complaint form (public: no script).
pub fn file_complaint(frame: Frame<'_>, view: &FileComplaintView) -> Result<String, WebError> {
    render("wb_file.html", frame, false, view)
}

/// Renders the receipt page (public).
pub fn receipt(frame: Frame<'_>, view: &ReceiptView) -> Result<String, WebError> {
    render("wb_receipt.html", frame, false, view)
}

/// Renders the receipt-code form (public).
pub fn follow(frame: Frame<'_>, view: &FollowView) -> Result<String, WebError> {
    render("wb_follow.html", frame, false, view)
}

/// Renders the whistleblower's status page (public).
pub fn status(frame: Frame<'_>, view: &StatusView) -> Result<String, WebError> {
    render("wb_status.html", frame, false, view)
}

/// Renders staff sign-in.
pub fn sign_in(frame: Frame<'_>, view: &SignInView) -> Result<String, WebError> {
    render("signin.html", frame, false, view)
}

/// Renders TOTP enrolment.
pub fn enrol(frame: Frame<'_>, view: &EnrolView) -> Result<String, WebError> {
    render("enrol.html", frame, true, view)
}

/// Renders the inbox. The filter query string for page links is built here from the
/// filter, escaped.
pub fn inbox(frame: Frame<'_>, view: &InboxView) -> Result<String, WebError> {
    #[derive(Serialize)]
    struct WithQuery<'a> {
        #[serde(flatten)]
        view: &'a InboxView,
        query: String,
    }
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in [
        ("case", &view.filter.case),
        ("workflow", &view.filter.workflow),
        ("role", &view.filter.role),
    ] {
        if !v.is_empty() {
            q.append_pair(k, v);
        }
    }
    if view.filter.overdue {
        q.append_pair("overdue", "true");
    }
    let mut query = q.finish();
    if !query.is_empty() {
        query.push('&');
    }
    render("inbox.html", frame, true, &WithQuery { view, query })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(locale: Locale) -> Frame<'static> {
        Frame {
            locale,
            csrf: "tok<en>",
        }
    }

    fn status_view() -> StatusView {
        StatusView {
            receipt: "ABCD-EFGH".into(),
            stage: "in_verification".into(),
            deadlines: vec!["2025-10-20".into()],
            feedback: Some("<b>核实</b>".into()),
            messages: vec![MessageView {
                from_reporter: true,
                at: "2025-10-01 10:00".into(),
                text: "补充".into(),
            }],
        }
    }

    /// Every page, rendered in `locale`, with whether it is public.
    fn all_pages(locale: Locale) -> Vec<(&'static str, bool, String)> {
        let f = frame(locale);
        let mut errors = std::collections::BTreeMap::new();
        errors.insert("content".into(), "必填".into());
        let schema = crate::form::complaint_schema(
            &serde_json::json!({"type": "object", "required": ["content"], "properties": {"content": {"type": "string", "format": "textarea", "title": "反映内容 Content"}}}),
            locale,
        );
        let rows = (0..3)
            .map(|i| InboxRow {
                task: i,
                id: format!("t{i}"),
                title: format!("受理审查 {i}"),
                case: format!("JB-{i}"),
                workflow: "complaint-handling".into(),
                role: "intake".into(),
                due_in: [Some(3), Some(-2), None][i as usize],
            })
            .collect();
        vec![
            (
                "file",
                true,
                file_complaint(
                    f,
                    &FileComplaintView {
                        fields: crate::form::fields(
                            &schema,
                            &serde_json::json!({"kind": "real_name", "content": "kept <text>"}),
                            &errors,
                        ),
                        has_errors: true,
                        error: None,
                    },
                )
                .unwrap(),
            ),
            (
                "receipt",
                true,
                receipt(
                    f,
                    &ReceiptView {
                        receipt: "ABCD-EFGH".into(),
                    },
                )
                .unwrap(),
            ),
            ("follow", true, follow(f, &FollowView::default()).unwrap()),
            ("status", true, status(f, &status_view()).unwrap()),
            (
                "sign_in",
                false,
                sign_in(
                    f,
                    &SignInView {
                        step: "password".into(),
                        user: "li".into(),
                        error: Some("failed".into()),
                    },
                )
                .unwrap(),
            ),
            (
                "totp",
                false,
                sign_in(
                    f,
                    &SignInView {
                        step: "totp".into(),
                        ..Default::default()
                    },
                )
                .unwrap(),
            ),
            (
                "enrol",
                false,
                enrol(
                    f,
                    &EnrolView {
                        qr_svg: "<svg></svg>".into(),
                        secret: "JBSWY3DP".into(),
                        recovery_codes: vec!["aaaa-bbbb".into()],
                    },
                )
                .unwrap(),
            ),
            (
                "inbox",
                false,
                inbox(
                    f,
                    &InboxView {
                        rows,
                        filter: InboxFilter {
                            case: "JB&1".into(),
                            ..Default::default()
                        },
                        page: 2,
                        has_next: true,
                    },
                )
                .unwrap(),
            ),
        ]
    }

    #[test]
    fn pages_render_without_scripts_or_remote_resources() {
        for locale in Locale::ALL {
            for (name, public, html) in all_pages(locale) {
                assert!(
                    html.contains(&format!("<html lang=\"{}\">", locale.tag())),
                    "{name}"
                );
                assert!(
                    !html.contains("http://") && !html.contains("https://"),
                    "{name}"
                );
                if public {
                    assert!(!html.to_lowercase().contains("<script"), "{name}");
                }
                // Every form carries the CSRF field, escaped.
                assert_eq!(
                    html.matches("<form method=\"post\"").count(),
                    html.matches("name=\"csrf\" value=\"tok&lt;en&gt;\"")
                        .count(),
                    "{name}"
                );
                // No catalogue key leaked unresolved.
                for key in crate::i18n::catalogue(locale).keys() {
                    assert!(!html.contains(&format!(">{key}<")), "{name}: {key}");
                }
                assert!(html.contains(stylesheet_hash()), "{name}");
            }
        }
    }

    #[test]
    fn pages_differ_by_locale() {
        let zh = all_pages(Locale::ZhCn);
        let en = all_pages(Locale::En);
        for ((name, _, z), (_, _, e)) in zh.iter().zip(&en) {
            assert_ne!(z, e, "{name}");
        }
        assert!(zh[3].2.contains("核实中") && en[3].2.contains("Being verified"));
    }

    #[test]
    fn values_are_escaped_and_kept() {
        let pages = all_pages(Locale::ZhCn);
        assert!(pages[0].2.contains("kept &lt;text&gt;"));
        assert!(pages[0].2.contains("value=\"real_name\" checked"));
        assert!(pages[3].2.contains("&lt;b&gt;核实"));
        assert!(pages[2].2.contains("name=\"receipt\""));
        assert!(
            !pages[1].2.contains("/follow?"),
            "the receipt is never in a URL"
        );
    }

    #[test]
    fn inbox_deadlines_in_plain_words() {
        let en = &all_pages(Locale::En)[7].2;
        assert!(en.contains("due in 3 working days"), "{en}");
        assert!(en.contains("overdue 2 working days"));
        assert!(en.contains("no deadline"));
        assert!(en.contains("?case=JB%261&amp;page=3"), "{en}");
        let zh = &all_pages(Locale::ZhCn)[7].2;
        assert!(zh.contains("3 个工作日后到期") && zh.contains("已逾期 2 个工作日"));
    }

    #[test]
    fn task_page_with_form_errors_and_refusals() {
        let schema = serde_json::json!({"type": "object", "required": ["decision"], "properties": {
            "decision": {"title": "受理意见 Decision", "oneOf": [{"const": "accept", "title": "受理 Accept"}, {"const": "duplicate", "title": "重复件 Duplicate"}]},
            "note": {"type": "string", "format": "textarea"},
            "n": {"type": "integer"}, "on": {"type": "string", "format": "date"},
            "ok": {"type": "boolean"}, "tags": {"type": "array"},
            "g": {"enum": ["a","b","c","d","e","f"]},
            "who": {"type": "object", "properties": {"name": {"type": "string", "title": "姓名"}}}
        }});
        let rejected =
            crate::form::parse(&schema, b"note=kept+%3Ctext%3E&n=x", Locale::ZhCn).unwrap_err();
        for refusal in [Refusal::Separation, Refusal::AssessmentOpen, Refusal::Taken] {
            for locale in Locale::ALL {
                let html = task(
                    frame(locale),
                    &TaskView {
                        task: 7,
                        id: "t7".into(),
                        instance: "i1".into(),
                        releasable: true,
                        messages: vec![],
                        closed: None,
                        title: "受理审查 JB-1".into(),
                        summary: vec![SummaryItem {
                            label: "案件编号".into(),
                            value: "JB-1".into(),
                        }],
                        fields: crate::form::fields(&schema, &rejected.values, &rejected.errors),
                        claimable: false,
                        mine: true,
                        rejectable: true,
                        refusal: Some(refusal),
                    },
                )
                .unwrap();
                assert!(html.contains("kept &lt;text&gt;</textarea>"), "{html}");
                assert!(html.contains(&rejected.errors["decision"]) || locale == Locale::En);
                assert!(html.contains("aria-invalid=\"true\""));
                assert!(html.contains("name=\"who.name\""));
                assert!(
                    html.contains("<select")
                        && html.contains("type=\"date\"")
                        && html.contains("type=\"checkbox\"")
                );
                assert!(html.contains("受理 Accept"));
                assert!(!html.contains("task.refused"));
                if refusal == Refusal::Separation && locale == Locale::ZhCn {
                    assert!(html.contains("不得兼审"));
                }
                assert_eq!(
                    html.matches("<form method=\"post\"").count(),
                    4,
                    "complete, release, reject, sign out"
                );
                assert_eq!(
                    html.matches("name=\"csrf\"").count(),
                    4,
                    "complete, release, reject, sign out"
                );
            }
        }
    }

    #[test]
    fn case_page() {
        let src = "id: x\ntitle: 示例\nroles: [r]\nsteps:\n  - id: a\n    task: { role: r }\n  - id: b\n    set: { v: 1 }\n";
        let wf = clearflow_core::load("x.yaml", src).unwrap_or_else(|d| panic!("{d:?}"));
        let svg = crate::diagram::svg(&wf, &["a".to_owned()].into());
        for locale in Locale::ALL {
            let html = case(
                frame(locale),
                &CaseView {
                    instance: "i1".into(),
                    messages: Some(vec![]),
                    number: "JB-2025-0001".into(),
                    workflow_title: "检举控告".into(),
                    status: "running".into(),
                    diagram_svg: svg.clone(),
                    timeline: vec![TimelineRow {
                        at: "2025-10-01 09:00".into(),
                        who: "li".into(),
                        what: "<screen> done".into(),
                    }],
                    tasks: vec![CaseTask {
                        task: 3,
                        id: "3".into(),
                        title: "分办".into(),
                        waiting_for: "intake".into(),
                    }],
                    timers: vec![],
                    links: vec![CaseLink {
                        instance: "i2".into(),
                        alias: "assessment".into(),
                        number: "RC-1".into(),
                    }],
                    mails: vec![CaseMail {
                        at: "2025-10-01".into(),
                        template: "acknowledge-receipt".into(),
                        state: "sent".into(),
                    }],
                    identity: Some(IdentityPanel {
                        rule: "approved",
                        step: Some("identity_request".into()),
                        by: Some("zhou.jian".into()),
                    }),
                },
            )
            .unwrap();
            assert!(html.contains("action=\"/cases/i1/identity\""));
            assert!(html.contains("zhou.jian"));
            assert!(html.contains("class=\"step waiting\""));
            assert!(html.contains("&lt;screen&gt; done"));
            assert!(html.contains("/cases/i2") && html.contains("/tasks/3"));
            assert!(!html.contains("http://") && !html.contains("https://"));
            assert!(!html.contains("case.sent") && !html.contains("case.none"));
        }
    }

    #[test]
    fn identity_page_and_panel_rules() {
        for locale in Locale::ALL {
            let html = identity(
                frame(locale),
                &IdentityView {
                    instance: "i1".into(),
                    number: "JB-1".into(),
                    fields: vec![("name", "<b>王某</b>".into()), ("phone", "139".into())],
                    reason: "核查".into(),
                    approval: Some(("identity_request".into(), "zhou.jian".into())),
                },
            )
            .unwrap();
            assert!(
                html.contains("&lt;b&gt;王某") && !html.contains("<b>"),
                "escaped"
            );
            assert!(!html.contains("identity.name") && !html.contains("identity.recorded"));
            assert!(html.contains("zhou.jian") && html.contains("/cases/i1"));
        }
        // Only `open` and `approved` offer the form.
        let src = "id: x\nroles: [r]\nsteps:\n  - id: a\n    task: { role: r }\n";
        let wf = clearflow_core::load("x.yaml", src).unwrap_or_else(|d| panic!("{d:?}"));
        for (rule, form) in [
            ("open", true),
            ("approved", true),
            ("pending", false),
            ("never", false),
        ] {
            let html = case(
                frame(Locale::ZhCn),
                &CaseView {
                    instance: "i1".into(),
                    number: "N".into(),
                    workflow_title: "t".into(),
                    status: "s".into(),
                    diagram_svg: crate::diagram::svg(&wf, &Default::default()),
                    timeline: vec![],
                    tasks: vec![],
                    timers: vec![],
                    links: vec![],
                    mails: vec![],
                    messages: None,
                    identity: Some(IdentityPanel {
                        rule,
                        step: Some("approve".into()),
                        by: None,
                    }),
                },
            )
            .unwrap();
            assert_eq!(html.contains("/cases/i1/identity"), form, "{rule}");
            assert!(!html.contains("identity.rule"), "{rule}");
        }
    }

    #[test]
    fn admin_pages() {
        use AdminSection::*;
        for section in [Workflows, Instances, Outbox, Schedules, Audit, Users] {
            for locale in Locale::ALL {
                let html = admin(
                    frame(locale),
                    &AdminView {
                        section,
                        query: "a&b".into(),
                        columns: vec!["#".into()],
                        rows: vec![AdminRow {
                            cells: vec!["m1".into()],
                            link: Some("/admin/outbox/1".into()),
                            actions: vec![AdminAction {
                                action: "/admin/outbox/1/retry".into(),
                                label: "重试".into(),
                            }],
                        }],
                        verify: (section == Audit).then_some(AuditVerify {
                            ok: false,
                            at: Some("#42".into()),
                        }),
                    },
                )
                .unwrap();
                assert!(!html.contains("admin."), "{section:?}");
                assert!(html.contains("value=\"a&amp;b\""));
                assert_eq!(
                    html.matches("<form method=\"post\"").count(),
                    html.matches("name=\"csrf\"").count()
                );
                assert_eq!(html.contains("#42"), section == Audit);
            }
        }
    }

    #[test]
    fn every_template_key_exists() {
        let mut seen = 0;
        for (name, src) in TEMPLATES {
            for piece in src.split("t(\"").skip(1) {
                let key = piece.split('"').next().unwrap();
                // Concatenated keys (`t("stage." ~ stage)`) are checked by rendering.
                if key.ends_with('.') {
                    continue;
                }
                seen += 1;
                for locale in Locale::ALL {
                    assert!(locale.has(key), "{name}: {key} missing in {}", locale.tag());
                }
            }
        }
        assert!(seen > 30);
    }
}
