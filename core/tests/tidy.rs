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
