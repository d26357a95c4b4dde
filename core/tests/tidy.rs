//! Repository conventions checked inside `cargo test`: every Rust file opens with a
//! `//!` line and no test is switched off with the ignore attribute.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_has_a_module_doc_and_no_ignored_test() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files.sort();
    assert!(files.len() > 10, "found only {} Rust files", files.len());
    // Built at run time so this file does not trip its own check.
    let ignore = format!("#[{}]", "ignore");
    let mut problems = Vec::new();
    for path in &files {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        let shown = path
            .strip_prefix(&root)
            .unwrap_or(path)
            .display()
            .to_string();
        if !text.starts_with("//!") {
            problems.push(format!("{shown}: does not start with a `//!` line"));
        }
        if text.contains(&ignore) {
            problems.push(format!("{shown}: contains {ignore}"));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// The `[dependencies]` (not dev-dependencies) a member's `Cargo.toml` names.
fn dependencies(member: &str) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = root.join(member).join("Cargo.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == "[dependencies]";
            continue;
        }
        if inside && let Some((name, _)) = line.split_once('=') {
            let name = name.trim();
            if !name.is_empty() && !name.starts_with('#') {
                out.push(name.to_owned());
            }
        }
    }
    out
}

/// The layers point one way: the pure crates do no IO, the store is the only crate with
/// SQL, the runtime never knows HTTP, and the API reaches data only through the runtime.
#[test]
fn crate_dependencies_point_one_way() {
    const IO: &[&str] = &[
        "tokio", "sqlx", "axum", "reqwest", "lettre", "wasmtime", "hyper",
    ];
    const UPPER: &[&str] = &[
        "clearflow-store",
        "clearflow-runtime",
        "clearflow-api",
        "clearflow-web",
        "clearflow",
        "clearflow-mail",
        "clearflow-plugin-host",
    ];
    let rules: &[(&str, &[&[&str]])] = &[
        ("core", &[IO, UPPER]),
        ("time", &[IO, UPPER]),
        ("templates", &[IO, UPPER]),
        ("mail", &[&["sqlx", "axum", "wasmtime"], UPPER]),
        ("plugin-host", &[&["sqlx", "axum", "lettre"], UPPER]),
        (
            "store",
            &[
                &["axum", "lettre", "wasmtime", "clearflow-core"],
                &[
                    "clearflow-runtime",
                    "clearflow-api",
                    "clearflow-web",
                    "clearflow",
                ],
            ],
        ),
        (
            "runtime",
            &[&[
                "axum",
                "hyper",
                "clearflow-api",
                "clearflow-web",
                "clearflow",
            ]],
        ),
        // The console's routes live in the API crate beside the JSON routes, so both
        // share one permission check; the pages they render come from the pure web crate.
        ("api", &[&["sqlx", "clearflow-store", "clearflow"]]),
        ("web", &[IO, UPPER]),
    ];
    let mut problems = Vec::new();
    for (member, forbidden) in rules {
        let deps = dependencies(member);
        assert!(
            !deps.is_empty(),
            "{member}/Cargo.toml lists no dependencies"
        );
        for dep in &deps {
            if forbidden.iter().any(|list| list.contains(&dep.as_str())) {
                problems.push(format!("{member} must not depend on {dep}"));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}
