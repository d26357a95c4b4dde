//! Validation fixtures: every invalid file names its expected diagnostics in its first
//! lines (`# expect: LINE:COL: fragment`), and every valid file loads without any.
//!
//! Files directly in `fixtures/invalid/` are loaded alone; each folder there is a set of
//! files checked together with [`Catalog::build`] (references across files). A fixture
//! must produce exactly its expected diagnostics, each at exactly its line and column;
//! the fragment must occur in the diagnostic's message or hint.

use std::path::{Path, PathBuf};

use clearflow_core::{Catalog, Diagnostic, load};

fn fixtures(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(sub)
}

fn sorted(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    paths.sort();
    paths
}

fn name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// The `# expect:` lines of a fixture: `(line, col, fragment)`.
fn expectations(src: &str) -> Vec<(u32, u32, String)> {
    src.lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(|e| {
            let mut parts = e.splitn(3, ':');
            let mut num = || -> u32 { parts.next().unwrap().trim().parse().expect("LINE:COL") };
            let (line, col) = (num(), num());
            (line, col, parts.next().unwrap_or("").trim().to_owned())
        })
        .collect()
}

/// Checks that `diags` (all about the file `file`) are exactly what `src` expects.
fn compare(file: &str, src: &str, diags: &[&Diagnostic], failures: &mut Vec<String>) {
    let expected = expectations(src);
    let shown = || {
        diags
            .iter()
            .map(|d| format!("    {d}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (line, col, fragment) in &expected {
        let found = diags.iter().any(|d| {
            d.pos.line == *line && d.pos.col == *col && d.to_string().contains(fragment.as_str())
        });
        if !found {
            failures.push(format!(
                "{file}: expected {line}:{col}: {fragment}\n  got:\n{}",
                shown()
            ));
        }
    }
    // Several expect lines may describe one diagnostic (its message and its hint).
    let distinct: std::collections::BTreeSet<(u32, u32)> =
        expected.iter().map(|(l, c, _)| (*l, *c)).collect();
    let mut got: Vec<(u32, u32)> = diags.iter().map(|d| (d.pos.line, d.pos.col)).collect();
    got.dedup();
    if got.len() != distinct.len() {
        failures.push(format!(
            "{file}: expected diagnostics at {} places, got {}:\n{}",
            distinct.len(),
            got.len(),
            shown()
        ));
    }
}

#[test]
fn every_invalid_fixture_reports_exactly_its_expected_diagnostics() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in sorted(&fixtures("invalid")) {
        if path.is_dir() {
            continue;
        }
        let src = std::fs::read_to_string(&path).unwrap();
        let file = name(&path);
        assert!(
            !expectations(&src).is_empty(),
            "{file} has no `# expect:` line"
        );
        let started = std::time::Instant::now();
        match load(&file, &src) {
            Ok(_) => failures.push(format!("{file}: loaded without errors")),
            Err(diags) => compare(
                &file,
                &src,
                &diags.iter().collect::<Vec<_>>(),
                &mut failures,
            ),
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{file} took {:?}",
            started.elapsed()
        );
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} fixtures found");
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_catalog_fixture_reports_exactly_its_expected_diagnostics() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for dir in sorted(&fixtures("invalid")) {
        if !dir.is_dir() {
            continue;
        }
        let files: Vec<(String, String)> = sorted(&dir)
            .iter()
            .map(|p| (name(p), std::fs::read_to_string(p).unwrap()))
            .collect();
        let workflows = files
            .iter()
            .map(|(file, src)| {
                let wf =
                    load(file, src).unwrap_or_else(|d| panic!("{file} must load alone: {d:?}"));
                std::sync::Arc::new(wf)
            })
            .collect();
        let (catalog, diags) = Catalog::build(workflows);
        for (file, src) in &files {
            let mine: Vec<&Diagnostic> = diags.iter().filter(|d| d.file == *file).collect();
            compare(file, src, &mine, &mut failures);
            if !mine.is_empty() {
                let id = load(file, src).unwrap().id;
                if catalog.get(&id).is_some_and(|w| w.file == *file) {
                    failures.push(format!("{file}: kept in the catalog despite its errors"));
                }
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 4, "catalog fixture folders");
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_valid_fixture_loads_without_diagnostics() {
    let mut workflows = Vec::new();
    for path in sorted(&fixtures("valid")) {
        let src = std::fs::read_to_string(&path).unwrap();
        let file = name(&path);
        match load(&file, &src) {
            Ok(wf) => workflows.push(std::sync::Arc::new(wf)),
            Err(diags) => panic!(
                "{file}:\n{}",
                diags
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }
    }
    assert!(workflows.len() >= 3, "valid fixtures");
    let count = workflows.len();
    let (catalog, diags) = Catalog::build(workflows);
    assert!(diags.is_empty(), "{diags:#?}");
    assert_eq!(catalog.workflows.len(), count);
}

#[test]
fn a_workflow_that_starts_a_broken_one_is_kept_out_too() {
    let broken = load(
        "broken.yaml",
        "id: broken\nsteps:\n  - start: { workflow: missing }\n",
    )
    .unwrap();
    let starter = load(
        "starter.yaml",
        "id: starter\non_start:\n  - { start: broken, as: b }\nsteps:\n  - await: b\n",
    )
    .unwrap();
    let fine = load("fine.yaml", "id: fine\nsteps:\n  - end: done\n").unwrap();
    let (catalog, diags) = Catalog::build(vec![broken.into(), starter.into(), fine.into()]);
    assert_eq!(diags.len(), 1, "{diags:#?}");
    assert_eq!(
        catalog.workflows.keys().collect::<Vec<_>>(),
        vec!["fine"],
        "only workflows whose every start resolves are kept"
    );
}
