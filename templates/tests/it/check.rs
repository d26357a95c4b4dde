//! The load-time check of a notify step: the template exists and reads only names the step provides.

use std::collections::BTreeSet;

use crate::util::{load, provided, relative, shipped};

/// Checks `name` in a folder of `files` with the always-provided names plus
/// `data_keys`, and compares the problems (paths relative to the folder) with `expect`.
fn check(files: &[(&str, &str)], name: &str, data_keys: &[&str], expect: &[&str]) {
    let (dir, templates) = load(files);
    let got: Vec<String> = match templates.check(name, &provided(data_keys)) {
        Ok(()) => Vec::new(),
        Err(problems) => problems.iter().map(|p| relative(p, dir.path())).collect(),
    };
    assert_eq!(got, expect);
}

/// The `data:` keys each shipped template needs, as workflow authors must provide them.
const SHIPPED: &[(&str, &[&str])] = &[
    ("task-assigned", &["task", "case"]),
    ("case-message", &["case"]),
    ("task-reminder", &["task", "case"]),
    ("task-overdue-escalation", &["task", "case"]),
    ("digest", &["digest", "rows"]),
    ("acknowledge-receipt", &["case", "forwarded"]),
    ("reporter-feedback", &["case", "feedback"]),
    ("clarification-notice", &["mode", "case", "document"]),
    (
        "records-filed",
        &["case", "document", "official", "entries"],
    ),
    ("fault-tolerance-decision", &["case", "outcome", "document"]),
    ("follow-up-visit", &["case", "visit"]),
    ("impact-period-ending", &["case", "official", "sanction"]),
    ("joint-review-agenda", &["meeting", "rows"]),
    ("overdue-tasks", &["digest", "rows"]),
    ("quarterly-digest", &["quarter", "rows"]),
    ("retention-warning", &["retention"]),
];

#[test]
fn shipped_templates_pass_with_their_documented_data() {
    let templates = shipped();
    for (name, keys) in SHIPPED {
        assert_eq!(templates.check(name, &provided(keys)), Ok(()), "{name}");
    }
    assert_eq!(
        templates.names().collect::<BTreeSet<_>>(),
        SHIPPED.iter().map(|(name, _)| *name).collect()
    );
}

#[test]
fn shipped_template_without_a_data_key_names_every_file_and_line() {
    let templates = shipped();
    let problems = templates
        .check("task-assigned", &provided(&["task"]))
        .unwrap_err();
    let dir = crate::util::shipped_dir();
    let got: Vec<String> = problems.iter().map(|p| relative(p, &dir)).collect();
    let reads = "reads `case.number`, but the step does not provide `case`";
    assert_eq!(
        got,
        [
            format!("task-assigned.zh-CN.html:14: {reads}"),
            format!("task-assigned.zh-CN.subject:1: {reads}"),
            format!("task-assigned.zh-CN.txt:12: {reads}"),
            format!("task-assigned.en.html:15: {reads}"),
            format!("task-assigned.en.subject:1: {reads}"),
            format!("task-assigned.en.txt:13: {reads}"),
        ]
    );
}

/// No shipped staff template reads anything that could identify the whistleblower.
#[test]
fn shipped_templates_read_nothing_about_the_whistleblower() {
    let templates = shipped();
    for name in templates.names() {
        for variable in templates.variables(name).unwrap() {
            let lower = variable.to_lowercase();
            for word in [
                "whistleblower",
                "reporter",
                "informant",
                "complainant",
                "identity",
            ] {
                assert!(!lower.contains(word), "{name} reads `{variable}`");
            }
        }
    }
}

#[test]
fn variables_not_provided() {
    let files = [
        ("a.zh-CN.subject", "{{ case.number }}"),
        (
            "a.zh-CN.txt",
            "hello\n{{ secret.name }} {{ case.number }}\n{{ other }}",
        ),
    ];
    check(&files, "a", &["case", "secret", "other"], &[]);
    check(
        &files,
        "a",
        &["case"],
        &[
            "a.zh-CN.txt:3: reads `other`, but the step does not provide `other`",
            "a.zh-CN.txt:2: reads `secret.name`, but the step does not provide `secret`",
        ],
    );
    // A provided dotted path covers what is below it, not its siblings.
    check(&files, "a", &["case", "secret.name", "other"], &[]);
    check(
        &files,
        "a",
        &["case.title", "secret", "other"],
        &[
            "a.zh-CN.subject:1: reads `case.number`, but the step does not provide `case`",
            "a.zh-CN.txt:2: reads `case.number`, but the step does not provide `case`",
        ],
    );
}

#[test]
fn names_the_template_declares_itself_are_not_required() {
    check(
        &[
            ("a.zh-CN.subject", "{% set n = rows|length %}{{ n }}"),
            (
                "a.zh-CN.txt",
                "{% for row in rows %}{{ loop.index }} {{ row.case }}{% endfor %}\n\
                 {% macro line(x) %}{{ x }}{{ caller() }}{% endmacro %}\n\
                 {% call line(1) %}y{% endcall %}\n\
                 {% set ns = namespace(count=0) %}{{ ns.count }}{{ range(3)|list }}{{ dict(a=1) }}",
            ),
        ],
        "a",
        &["rows"],
        &[],
    );
}

#[test]
fn partials_are_checked_through_include_extends_and_import() {
    let files = [
        (
            "_base.en.html",
            "<p>{% block body %}{% endblock %}</p>{{ footer }}",
        ),
        ("_foot.en.txt", "{{ signature }}"),
        (
            "_macros.en.html",
            "{% macro link(url) %}<a href=\"{{ url }}\">{{ label }}</a>{% endmacro %}",
        ),
        ("a.zh-CN.subject", "s"),
        ("a.zh-CN.txt", "t"),
        ("a.en.subject", "s"),
        ("a.en.txt", "t\n{% include \"_foot.en.txt\" %}"),
        (
            "a.en.html",
            "{% extends \"_base.en.html\" %}\n{% import \"_macros.en.html\" as m %}\n\
             {% block body %}{{ m.link(case_url) }}{% endblock %}",
        ),
    ];
    check(&files, "a", &["footer", "signature", "label"], &[]);
    check(
        &files,
        "a",
        &["label"],
        &[
            "_base.en.html:1: reads `footer`, but the step does not provide `footer` (used by `a.en.html`)",
            "_foot.en.txt:1: reads `signature`, but the step does not provide `signature` (used by `a.en.txt`)",
        ],
    );
    check(
        &files,
        "a",
        &["footer", "signature"],
        &[
            "_macros.en.html:1: reads `label`, but the step does not provide `label` (used by `a.en.html`)",
        ],
    );
}

#[test]
fn missing_template_and_missing_default_locale() {
    let files = [("a.en.subject", "s"), ("a.en.txt", "{{ x }}")];
    check(
        &files,
        "nope",
        &[],
        &["no template `nope`: expected `nope.zh-CN.subject` and `nope.zh-CN.txt`"],
    );
    check(
        &files,
        "a",
        &[],
        &[
            "template `a` has no zh-CN variant, the default locale (expected `a.zh-CN.txt`)",
            "a.en.txt:1: reads `x`, but the step does not provide `x`",
        ],
    );
}
