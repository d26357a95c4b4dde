//! Conventions checked inside `cargo test`: every Rust file opens with a `//!` line and no test is ignored.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_file_has_a_module_doc_and_no_ignored_test() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("tests"), &mut files);
    assert!(files.len() >= 12, "found only {files:?}");
    let ignore = concat!("#[", "ignore");
    let mut problems = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        if !text.starts_with("//!") {
            problems.push(format!(
                "{}: does not start with a `//!` line",
                path.display()
            ));
        }
        if text.contains(ignore) {
            problems.push(format!("{}: contains an ignored test", path.display()));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Every shipped staff template says, in a comment in each file, that the
/// whistleblower's identity is never one of its variables.
#[test]
fn every_shipped_template_file_carries_the_identity_comment() {
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(crate::util::shipped_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('_') || name.ends_with(".md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let comment = text
            .split("{#")
            .skip(1)
            .filter_map(|c| c.split("#}").next())
            .any(|c| c.contains("whistleblower's identity"));
        if !comment {
            problems.push(name);
        }
    }
    assert!(problems.is_empty(), "no identity comment in {problems:?}");
}
