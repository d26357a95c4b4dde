//! Shared fixtures: temporary template folders, the shipped folder, and the names and values a notify step provides.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clearflow_templates::{ALWAYS_PROVIDED, Templates, load_dir};
use serde_json::{Value, json};

/// A temporary folder holding `files` (name, text); removed when dropped.
pub fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

/// Loads `files`, panicking with every error if they do not load.
pub fn load(files: &[(&str, &str)]) -> (tempfile::TempDir, Templates) {
    let dir = folder(files);
    let templates = load_dir(dir.path()).unwrap_or_else(|errors| panic!("{errors:#?}"));
    (dir, templates)
}

/// The shipped folder, `workflows/templates/`.
pub fn shipped_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/templates")
}

/// The shipped templates, which must load.
pub fn shipped() -> Templates {
    load_dir(&shipped_dir()).unwrap_or_else(|errors| panic!("{errors:#?}"))
}

/// [`ALWAYS_PROVIDED`] plus a step's `data:` keys.
pub fn provided(data_keys: &[&str]) -> BTreeSet<String> {
    ALWAYS_PROVIDED
        .iter()
        .chain(data_keys)
        .map(|s| s.to_string())
        .collect()
}

/// A render context: the always-provided values, then `data`'s keys.
pub fn context(data: Value) -> Value {
    let mut ctx = json!({
        "instance": {"id": "01J9ZK", "workflow": "complaint", "started_at": "2025-03-03T09:00:00+08:00"},
        "step": "notify-handler",
        "recipient": {"address": "li.ming@example.org", "name": "李明", "locale": "zh-CN"},
        "case_url": "https://clearflow.example/cases/JB-2025-0042",
        "status_url": "https://jubao.example/follow",
        "now": "2025-03-04 09:00",
    });
    let map = ctx.as_object_mut().unwrap();
    for (key, value) in data.as_object().unwrap() {
        map.insert(key.clone(), value.clone());
    }
    ctx
}

/// `text` with the folder's path and a following `/` removed, so expectations stay short.
pub fn relative(text: &str, dir: &Path) -> String {
    text.replace(&format!("{}/", dir.display()), "")
}
