//! Reading workflow files: YAML with positions, then the typed model, every problem at once.

pub mod model;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::diag::{Diagnostic, Sink};
use crate::yaml::{self, Node, Seg};
pub use model::*;

/// Parses `src` (the text of `file`) into the typed model. On failure, returns every
/// shape problem found: one per top-level field and one per step at most.
pub fn parse(file: &str, src: &str) -> Result<(WorkflowDef, Node), Vec<Diagnostic>> {
    let root = yaml::parse(file, src, yaml::Limits::default())?;
    let mut sink = Sink::new(file);
    let json = root.to_json();
    let Value::Object(obj) = &json else {
        sink.error(root.pos, "a workflow file must be a mapping")
            .hint("start the file with `id: my-workflow` and `steps:`");
        return Err(sink.finish());
    };
    // Each step is checked on its own so one bad step does not hide the others.
    let mut top = obj.clone();
    let steps = top.insert("steps".into(), Value::Array(Vec::new()));
    let mut ok = typed::<WorkflowDef>(&Value::Object(top), &root, &[], &mut sink).is_some();
    match steps {
        Some(Value::Array(steps)) => {
            for (i, step) in steps.iter().enumerate() {
                let prefix = [Seg::Key("steps".into()), Seg::Index(i)];
                ok &= typed::<StepDef>(step, &root, &prefix, &mut sink).is_some();
            }
        }
        Some(_) => {} // reported by the whole-file pass below
        None => {
            sink.error(root.pos, "missing field `steps`")
                .hint("a workflow needs a list of `steps`");
            ok = false;
        }
    }
    if ok && let Some(def) = typed::<WorkflowDef>(&json, &root, &[], &mut sink) {
        return Ok((def, root));
    }
    Err(sink.finish())
}

/// Deserialises `value` (found at `prefix` in `root`), reporting a failure at its place.
fn typed<T: DeserializeOwned>(
    value: &Value,
    root: &Node,
    prefix: &[Seg],
    sink: &mut Sink,
) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(v) => Some(v),
        Err(err) => {
            let mut path = prefix.to_vec();
            for seg in err.path().iter() {
                match seg {
                    serde_path_to_error::Segment::Seq { index } => path.push(Seg::Index(*index)),
                    serde_path_to_error::Segment::Map { key } => path.push(Seg::Key(key.clone())),
                    serde_path_to_error::Segment::Enum { .. }
                    | serde_path_to_error::Segment::Unknown => {}
                }
            }
            let inner = err.into_inner();
            let message = clean_serde_message(&inner.to_string());
            let mut pos = root.locate_value(&path);
            let mut hint = None;
            if let Some(field) = between(&message, "unknown field `", "`") {
                // Point at the offending key itself.
                let mut key_path = path.clone();
                if !matches!(key_path.last(), Some(Seg::Key(k)) if k == field) {
                    key_path.push(Seg::Key(field.to_owned()));
                }
                pos = root.locate(&key_path);
                if let Some(expected) = message.split("expected one of ").nth(1) {
                    let candidates: Vec<&str> =
                        expected.split(", ").map(|c| c.trim_matches('`')).collect();
                    hint = did_you_mean(field, &candidates).map(|c| format!("did you mean `{c}`?"));
                }
            }
            let d = sink.error(pos, message);
            if let Some(h) = hint {
                d.hint(h);
            }
            None
        }
    }
}

fn clean_serde_message(msg: &str) -> String {
    let untagged = [
        (
            "Recipients",
            "expected an address expression, `role:NAME`, or a list of them",
        ),
        ("JoinDef", "expected `all`, `any` or `{ n: N }`"),
        (
            "EndDef",
            "expected `end: OUTCOME` or `end: { outcome: OUTCOME, output: … }`",
        ),
        (
            "AwaitDef",
            "expected `await: LINK` or `await: { link: LINK, timeout: …, on_timeout: … }`",
        ),
    ];
    for (name, text) in untagged {
        if msg.contains(&format!("untagged enum {name}")) {
            return text.to_owned();
        }
    }
    msg.to_owned()
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let len = s[from..].find(end)?;
    Some(&s[from..from + len])
}

/// The closest candidate to `word` when it is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
