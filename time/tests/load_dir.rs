//! Loading calendar folders: the shipped cn-mainland files, and every error reported at once.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use clearflow_time::load_dir;

/// A fresh folder under the system temp dir holding `files` (relative path, text).
fn folder(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let root = std::env::temp_dir().join(format!("clearflow-time-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for (path, text) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    root
}

/// Loads `files` and compares the errors, paths relative to the folder, with `expect`.
fn check(name: &str, files: &[(&str, &str)], expect: &[&str]) {
    let root = folder(name, files);
    let got: Vec<String> = match load_dir(&root) {
        Ok(calendars) => calendars
            .iter()
            .map(|c| {
                format!(
                    "ok: {} {:?}",
                    c.region(),
                    c.covered_years().collect::<Vec<_>>()
                )
            })
            .collect(),
        Err(errors) => errors
            .iter()
            .map(|e| e.to_string().replace(&format!("{}/", root.display()), ""))
            .collect(),
    };
    std::fs::remove_dir_all(&root).unwrap();
    assert_eq!(got, expect);
}

const GOOD_2025: &str =
    "region = \"xx\"\nyear = 2025\n[source]\ntitle = \"t\"\nissued = 2024-11-12\n";

#[test]
fn shipped_cn_mainland_calendars_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/calendars");
    let calendars = load_dir(&dir).unwrap_or_else(|errors| panic!("{errors:#?}"));
    let cn = calendars.get("cn-mainland").unwrap();
    assert_eq!(cn.covered_years().collect::<Vec<_>>(), [2024, 2025, 2026]);
    let working = |s: &str| cn.is_working_day(s.parse::<NaiveDate>().unwrap());
    // Spot checks against /work/shared/cn-mainland-holidays.md.
    for (date, expect) in [
        ("2024-02-04", Some(true)),
        ("2024-02-17", Some(false)),
        ("2024-02-18", Some(true)),
        ("2024-10-07", Some(false)),
        ("2024-10-12", Some(true)),
        ("2025-01-26", Some(true)),
        ("2025-10-08", Some(false)),
        ("2025-10-11", Some(true)),
        ("2026-01-04", Some(true)),
        ("2026-02-23", Some(false)),
        ("2026-02-28", Some(true)),
        ("2026-09-20", Some(true)),
        ("2027-01-04", None),
    ] {
        assert_eq!(working(date), expect, "{date}");
    }
    assert_eq!(
        cn.holiday_on("2025-10-05".parse().unwrap()),
        Some("国庆节、中秋节 National Day and Mid-Autumn Festival")
    );
    let source = &cn.year(2025).unwrap().source;
    assert_eq!(source.document.as_deref(), Some("国办发明电〔2024〕12号"));
    assert_eq!(
        source.issued,
        NaiveDate::from_ymd_opt(2024, 11, 12).unwrap()
    );
}

#[test]
fn every_problem_is_reported() {
    check(
        "many",
        &[
            ("README.md", "ignored"),
            ("xx/notes.txt", "ignored"),
            ("xx/2024.toml", "region = \"xx\"\nyear = 2024\n[source\n"),
            ("xx/2025.toml", GOOD_2025),
            ("xx/2025-copy.toml", GOOD_2025),
            (
                "xx/2026.toml",
                "region = \"xx\"\nyear = 2026\nmake_up_workdays = [2026-01-05]\n[source]\ntitle = \"t\"\nissued = 2025-11-04\n",
            ),
            ("yy/2025.toml", &GOOD_2025.replace("\"xx\"", "\"yy\"")),
        ],
        &[
            "xx/2024.toml:3:8: unclosed table, expected `]`",
            "xx/2025-copy.toml: file name must be `<year>.toml`, e.g. `2025.toml`",
            "xx/2026.toml:3:21: make-up workday 2026-01-05 is a Mon, not a saturday or sunday",
        ],
    );
}

#[test]
fn duplicate_years_are_reported() {
    check(
        "dup",
        &[("xx/2025.toml", GOOD_2025), ("xx/02025.toml", GOOD_2025)],
        &["xx/2025.toml: year 2025 is already described by `xx/02025.toml`"],
    );
}

#[test]
fn clean_folders_load() {
    check(
        "clean",
        &[
            ("xx/2025.toml", GOOD_2025),
            ("yy/2025.toml", &GOOD_2025.replace("\"xx\"", "\"yy\"")),
        ],
        &["ok: xx [2025]", "ok: yy [2025]"],
    );
}
