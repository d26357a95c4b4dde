//! Loading template folders: the shipped set, and every layout or syntax problem reported at once with file and line.

use clearflow_templates::load_dir;

use crate::util::{folder, relative, shipped};

/// Loads `files` and compares the outcome with `expect`: the errors, paths relative
/// to the folder, or `ok:` followed by each name and its locales.
fn check(files: &[(&str, &str)], expect: &[&str]) {
    let dir = folder(files);
    let got: Vec<String> = match load_dir(dir.path()) {
        Ok(templates) => templates
            .names()
            .map(|name| format!("ok: {name} {}", templates.locales(name).join(",")))
            .collect(),
        Err(errors) => errors
            .iter()
            .map(|e| relative(&e.to_string(), dir.path()))
            .collect(),
    };
    assert_eq!(got, expect);
}

#[test]
fn shipped_templates_load_in_both_locales() {
    let templates = shipped();
    let names: Vec<_> = templates.names().collect();
    assert_eq!(
        names,
        [
            "acknowledge-receipt",
            "case-message",
            "clarification-notice",
            "digest",
            "fault-tolerance-decision",
            "follow-up-visit",
            "impact-period-ending",
            "joint-review-agenda",
            "overdue-tasks",
            "quarterly-digest",
            "records-filed",
            "reporter-feedback",
            "retention-warning",
            "task-assigned",
            "task-overdue-escalation",
            "task-reminder"
        ]
    );
    for name in names {
        assert_eq!(templates.locales(name), ["zh-CN", "en"], "{name}");
    }
}

#[test]
fn good_folders() {
    check(
        &[
            ("a.en.subject", "s"),
            ("a.en.txt", "t"),
            ("a.zh-CN.subject", "s"),
            ("a.zh-CN.txt", "t"),
            ("a.zh-CN.html", "{% extends \"_base.zh-CN.html\" %}"),
            ("_base.zh-CN.html", "<p>{% block body %}{% endblock %}</p>"),
            ("b.en.subject", "s"),
            ("b.en.txt", "{% include \"_gone.en.txt\" ignore missing %}"),
            ("README.md", "not a template"),
            (".a.en.txt.swp", "editor litter"),
            ("sub/c.fr.txt", "subfolders are not read"),
        ],
        &["ok: a zh-CN,en", "ok: b en"],
    );
    check(&[], &[]);
}

#[test]
fn syntax_errors_name_file_and_line() {
    check(
        &[
            ("a.en.subject", "s"),
            ("a.en.txt", "line one\n\nline three {{ case.number( }}\n"),
        ],
        &["a.en.txt:3: syntax error: unexpected `}`"],
    );
    check(
        &[
            ("a.en.subject", "s"),
            ("a.en.txt", "ok"),
            ("a.en.html", "<p>\n{% if x %}\n"),
        ],
        &["a.en.html:2: syntax error: unexpected end of input, expected end of block"],
    );
}

#[test]
fn layout_problems() {
    check(
        &[("a.zh-CN.subject", "s")],
        &["a.zh-CN.subject: no text part: `a.zh-CN.txt` is required beside it"],
    );
    check(
        &[("a.en.txt", "t"), ("a.en.html", "h")],
        &["a.en.txt: no subject: `a.en.subject` is required beside it"],
    );
    check(
        &[("a.en.html", "h"), ("a.en.subject", "s")],
        &["a.en.subject: no text part: `a.en.txt` is required beside it"],
    );
    check(
        &[("a.fr.txt", "t")],
        &["a.fr.txt: unknown locale `fr` (known: zh-CN, en)"],
    );
    check(
        &[("a.zh-cn.txt", "t")],
        &["a.zh-cn.txt: unknown locale `zh-cn` (known: zh-CN, en)"],
    );
    check(
        &[("Task.en.txt", "t")],
        &[
            "Task.en.txt: template name `Task` must use only a-z, 0-9 and `-` (a leading `_` marks a partial)",
        ],
    );
    let shape = "file name must be NAME.LOCALE.PART with PART one of subject, txt, html \
                 (e.g. `task-assigned.zh-CN.txt`)";
    check(&[("a.txt", "t")], &[&format!("a.txt: {shape}")]);
    check(&[("a.en.htm", "t")], &[&format!("a.en.htm: {shape}")]);
    check(
        &[("a.en.subject", "one\ntwo\n"), ("a.en.txt", "t")],
        &["a.en.subject:2: the subject must be a single line"],
    );
    check(
        &[
            ("a.en.subject", "s"),
            ("a.en.txt", "t\n{% include \"_footer.en.txt\" %}"),
            ("a.en.html", "{% extends '_base.en.html' %}"),
        ],
        &[
            "a.en.html:1: refers to `_base.en.html`, which is not in the folder",
            "a.en.txt:2: refers to `_footer.en.txt`, which is not in the folder",
        ],
    );
}

#[test]
fn every_problem_at_once_sorted_by_file() {
    check(
        &[
            ("b.en.subject", "{{ x"),
            ("b.en.txt", "{% include '_partial.en.txt' %}"),
            ("_partial.en.txt", "{% endfor %}"),
            ("a.zh-CN.subject", "s"),
            ("c.de.txt", "t"),
        ],
        &[
            "_partial.en.txt:1: syntax error: unknown statement endfor",
            "a.zh-CN.subject: no text part: `a.zh-CN.txt` is required beside it",
            "b.en.subject:1: syntax error: unexpected end of input, expected end of variable block",
            "c.de.txt: unknown locale `de` (known: zh-CN, en)",
        ],
    );
}

#[test]
fn unreadable_folder() {
    let dir = folder(&[]);
    let missing = dir.path().join("nope");
    let errors = load_dir(&missing).unwrap_err();
    assert_eq!(errors.len(), 1);
    let text = relative(&errors[0].to_string(), dir.path());
    assert!(text.starts_with("nope: cannot read: "), "{text}");
}
