//! Rendering: both locales of the shipped templates, escaping, locale fallback, strict variables and render errors.

use clearflow_templates::{RenderError, Rendered, Templates};
use serde_json::{Value, json};

use crate::util::{context, load, relative, shipped};

fn task_data(title: &str) -> Value {
    json!({
        "task": {"title": title, "role": "承办部门", "due": "2025-03-20", "overdue_days": 3},
        "case": {"number": "JB-2025-0042"},
    })
}

fn digest_data(rows: Value) -> Value {
    json!({"digest": {"title": "2025年3月三室会审议程"}, "rows": rows})
}

fn render(templates: &Templates, name: &str, locale: Option<&str>, data: Value) -> Rendered {
    templates
        .render(name, locale, &context(data))
        .unwrap_or_else(|e| panic!("{name} {locale:?}: {e}"))
}

#[test]
fn shipped_templates_in_both_locales() {
    let templates = shipped();
    let task = || task_data("自审");
    let rows = || {
        digest_data(json!([
            {"case": "JB-2025-0007", "title": "初步核实", "state": "疑似", "due": "2025-03-10"},
            {"case": "JB-2025-0011", "title": "谈话函询", "state": "重点", "due": null},
        ]))
    };
    let cases: &[(&str, &str, Value, &str, &[&str])] = &[
        (
            "task-assigned",
            "zh-CN",
            task(),
            "【新任务】自审（案件编号 JB-2025-0042）",
            &["李明同志：", "办理时限：2025-03-20"],
        ),
        (
            "task-assigned",
            "en",
            task(),
            "New task (新任务): 自审, case JB-2025-0042",
            &["Dear 李明,", "Due (办理时限): 2025-03-20"],
        ),
        (
            "task-reminder",
            "zh-CN",
            task(),
            "【催办】自审（案件编号 JB-2025-0042），请于2025-03-20前办结",
            &["请抓紧办理"],
        ),
        (
            "task-reminder",
            "en",
            task(),
            "Reminder (催办): 自审, case JB-2025-0042, due 2025-03-20",
            &["is due on 2025-03-20"],
        ),
        (
            "task-overdue-escalation",
            "zh-CN",
            task(),
            "【逾期督办】自审已逾期3个工作日（案件编号 JB-2025-0042）",
            &["承办角色：承办部门", "已逾期：3个工作日"],
        ),
        (
            "task-overdue-escalation",
            "en",
            task(),
            "Overdue (逾期督办): 自审, case JB-2025-0042, 3 working days late",
            &["Overdue: 3 working days"],
        ),
        (
            "digest",
            "zh-CN",
            rows(),
            "2025年3月三室会审议程（共2件）",
            &[
                "1. 案件编号 JB-2025-0007｜初步核实｜疑似｜时限 2025-03-10\n2. 案件编号 JB-2025-0011｜谈话函询｜重点\n",
            ],
        ),
        (
            "digest",
            "en",
            rows(),
            "2025年3月三室会审议程 (2 items)",
            &["2. Case (案件编号) JB-2025-0011 | 谈话函询 | 重点\n"],
        ),
        (
            "digest",
            "zh-CN",
            digest_data(json!([])),
            "2025年3月三室会审议程（共0件）",
            &["本期无事项。"],
        ),
        (
            "digest",
            "en",
            digest_data(json!([])),
            "2025年3月三室会审议程 (0 items)",
            &["No items in this period."],
        ),
    ];
    for (name, locale, data, subject, in_text) in cases {
        let r = render(&templates, name, Some(locale), data.clone());
        assert_eq!(r.locale, *locale);
        assert_eq!(r.subject, *subject, "{name} {locale}");
        for expected in *in_text {
            assert!(
                r.text.contains(expected),
                "{name} {locale}: no {expected:?} in\n{}",
                r.text
            );
        }
        // Every staff mail carries the link, and the footer from the shared partial.
        let footer = if *locale == "en" {
            "do not forward it"
        } else {
            "勿转发"
        };
        let html = r
            .html
            .as_deref()
            .unwrap_or_else(|| panic!("{name} {locale}: no html"));
        for part in [&r.text, html] {
            assert!(
                part.contains("https://clearflow.example/cases/JB-2025-0042")
                    || part.contains(
                        "https:&#x2f;&#x2f;clearflow.example&#x2f;cases&#x2f;JB-2025-0042"
                    ),
                "{name} {locale}: no link"
            );
            assert!(part.contains(footer), "{name} {locale}: no footer");
        }
        assert!(
            html.contains(&format!("<html lang=\"{locale}\">")),
            "{name} {locale}"
        );
        assert!(
            !r.text.contains("{{") && !html.contains("{#"),
            "{name} {locale}"
        );
    }
}

#[test]
fn a_recipient_without_a_name_gets_a_plain_greeting() {
    let templates = shipped();
    let mut ctx = context(task_data("自审"));
    ctx["recipient"]["name"] = Value::Null;
    for (locale, greeting) in [("zh-CN", "您好："), ("en", "Hello,")] {
        let r = templates
            .render("task-assigned", Some(locale), &ctx)
            .unwrap();
        assert!(r.text.starts_with(&format!("{greeting}\n\n")), "{}", r.text);
    }
}

#[test]
fn html_escapes_data_and_text_does_not() {
    let templates = shipped();
    let title = "<script>alert(\"x\")</script>";
    for locale in ["zh-CN", "en"] {
        for name in ["task-assigned", "task-reminder", "task-overdue-escalation"] {
            let r = render(&templates, name, Some(locale), task_data(title));
            let html = r.html.unwrap();
            assert!(!html.contains("<script"), "{name} {locale}: {html}");
            assert!(
                html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;&#x2f;script&gt;"),
                "{html}"
            );
            assert!(r.text.contains(title), "{name} {locale}");
            assert!(r.subject.contains(title), "{name} {locale}");
        }
        let rows = json!([{"case": "<b>1</b>", "title": "t", "state": "s", "due": "d"}]);
        let html = render(&templates, "digest", Some(locale), digest_data(rows))
            .html
            .unwrap();
        assert!(
            html.contains("<td>&lt;b&gt;1&lt;&#x2f;b&gt;</td>"),
            "{html}"
        );
    }
}

#[test]
fn locale_fallback() {
    let (_dir, templates) = load(&[
        ("both.zh-CN.subject", "中文"),
        ("both.zh-CN.txt", "t"),
        ("both.en.subject", "english"),
        ("both.en.txt", "t"),
        ("en-only.en.subject", "english"),
        ("en-only.en.txt", "t"),
    ]);
    for (name, requested, locale, subject) in [
        ("both", Some("en"), "en", "english"),
        ("both", Some("en-US"), "en", "english"),
        ("both", Some("zh-CN"), "zh-CN", "中文"),
        ("both", Some("zh"), "zh-CN", "中文"),
        ("both", Some("fr"), "zh-CN", "中文"),
        ("both", None, "zh-CN", "中文"),
        ("en-only", Some("zh-CN"), "en", "english"),
        ("en-only", None, "en", "english"),
    ] {
        let r = render(&templates, name, requested, json!({}));
        assert_eq!(
            (r.locale.as_str(), r.subject.as_str()),
            (locale, subject),
            "{name} {requested:?}"
        );
        assert_eq!(r.html, None);
    }
}

#[test]
fn missing_template() {
    let templates = shipped();
    let err = templates
        .render("task-assgned", Some("zh-CN"), &context(task_data("t")))
        .unwrap_err();
    assert_eq!(err, RenderError::NotFound("task-assgned".to_owned()));
    assert_eq!(err.to_string(), "no template named `task-assgned`");
}

/// Renders `name` from `files` with `data` and compares the error, relative to the folder.
fn render_error(files: &[(&str, &str)], data: Value, expect: &str) {
    let (dir, templates) = load(files);
    let err = templates.render("a", None, &data).unwrap_err();
    assert!(matches!(err, RenderError::Failed { .. }), "{err:?}");
    assert_eq!(relative(&err.to_string(), dir.path()), expect);
}

#[test]
fn render_errors_name_file_and_line() {
    let parts = |txt: &'static str| {
        [
            ("a.zh-CN.subject", "s {{ x }}"),
            ("a.zh-CN.txt", txt),
            ("_p.zh-CN.txt", "one\n{{ y.z }}"),
        ]
    };
    render_error(&parts("t"), json!({}), "a.zh-CN.subject:1: undefined value");
    render_error(
        &parts("\n\n{{ x.missing }}"),
        json!({"x": {}}),
        "a.zh-CN.txt:3: undefined value",
    );
    render_error(
        &parts("t\n{% include '_p.zh-CN.txt' %}"),
        json!({"x": 1}),
        "_p.zh-CN.txt:2: undefined value, from a.zh-CN.txt:2",
    );
    render_error(
        &parts("{{ x|int }}"),
        json!({"x": "abc"}),
        "a.zh-CN.txt:1: invalid operation: invalid float literal",
    );
    render_error(
        &[("a.zh-CN.subject", "{{ x }}\n"), ("a.zh-CN.txt", "t")],
        json!({"x": " \n "}),
        "a.zh-CN.subject: the subject renders empty",
    );
    render_error(
        &parts("{% for i in range(10000) %}{% for j in range(10000) %}.{% endfor %}{% endfor %}"),
        json!({"x": 1}),
        "a.zh-CN.txt:1: engine ran out of fuel",
    );
}

#[test]
fn subject_is_one_line_and_null_prints_nothing() {
    let (_dir, templates) = load(&[
        ("a.zh-CN.subject", "【新任务】{{ title }}{{ nothing }}\n"),
        ("a.zh-CN.txt", "[{{ nothing }}]\n"),
    ]);
    let r = templates
        .render(
            "a",
            None,
            &json!({"title": "a\r\nBcc: x@example.org\n  b", "nothing": null}),
        )
        .unwrap();
    assert_eq!(r.subject, "【新任务】a Bcc: x@example.org b");
    assert_eq!(r.text, "[]\n");
}

#[test]
fn templates_are_shared_between_threads() {
    fn shared<T: Send + Sync + Clone + 'static>(_: &T) {}
    let templates = shipped();
    shared(&templates);
    let clone = templates.clone();
    let handle =
        std::thread::spawn(move || render(&clone, "task-assigned", None, task_data("t")).locale);
    assert_eq!(handle.join().unwrap(), "zh-CN");
}
