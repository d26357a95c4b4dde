//! Limits at the door: one table of the bounds every input, instance and plugin call must keep.
//!
//! The defaults are safe for a single daemon; an administrator raises or lowers them in the
//! `[limits]` section of the configuration. Every refusal is a [`LimitError`] that names
//! the limit, its value, what was seen and the configuration key to change.
//!
//! JSON is checked twice over: [`check_json_bytes`] scans the raw text before anything is
//! deserialized (so a hostile document never reaches serde_json's recursion), and
//! [`check_json_value`] checks a value that was built in memory (a plugin output, a
//! rendered template) without recursing. The depth default is well below serde_json's
//! recursion limit of 128, so whatever was accepted and stored can always be read back.

use serde::Deserialize;
use serde_json::Value;

/// The bounds of one daemon. Deserialized from the `[limits]` table; a missing key keeps
/// its default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// `limits.json_depth`: most nested arrays and objects in any JSON that enters
    /// (API bodies, events, plugin outputs, task forms). Default 64, half of serde_json's
    /// recursion limit, so everything stored can be read back.
    pub json_depth: u32,
    /// `limits.json_bytes`: largest JSON text that enters, in bytes. Default 1 MiB.
    pub json_bytes: u64,
    /// `limits.parallel_branches`: most branches of one `parallel` step, checked when a
    /// workflow loads. Default 10,000.
    pub parallel_branches: u32,
    /// `limits.steps_per_advance`: most steps one advance runs before it returns so the
    /// engine can commit and serve other instances; the instance stays runnable and
    /// continues in the next slice. Default 1,000.
    pub steps_per_advance: u32,
    /// `limits.steps_without_wait`: most steps one path of execution (a token and the
    /// branches it forks) may run without waiting for anything outside before the
    /// instance is failed as looping without end. Default 10,000.
    pub steps_without_wait: u32,
    /// `limits.children_per_instance`: most instances one instance may start over its
    /// life. Default 1,000.
    pub children_per_instance: u32,
    /// `limits.start_depth`: most instances in a chain of starts (an instance started by
    /// a start of a start…), the root counted as 1. Default 16.
    pub start_depth: u32,
    /// `limits.history_rows`: most history rows kept for one instance. Default 100,000.
    pub history_rows: u64,
    /// `limits.plugin_log_bytes`: most bytes of log one plugin call may write to the
    /// daemon's log; the rest is cut off with a marker. Default 64 KiB.
    pub plugin_log_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            json_depth: 64,
            json_bytes: 1024 * 1024,
            parallel_branches: 10_000,
            steps_per_advance: 1_000,
            steps_without_wait: 10_000,
            children_per_instance: 1_000,
            start_depth: 16,
            history_rows: 100_000,
            plugin_log_bytes: 64 * 1024,
        }
    }
}

/// Which limit was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// [`Limits::json_depth`].
    JsonDepth,
    /// [`Limits::json_bytes`].
    JsonBytes,
    /// [`Limits::parallel_branches`].
    ParallelBranches,
    /// [`Limits::steps_per_advance`].
    StepsPerAdvance,
    /// [`Limits::steps_without_wait`].
    StepsWithoutWait,
    /// [`Limits::children_per_instance`].
    ChildrenPerInstance,
    /// [`Limits::start_depth`].
    StartDepth,
    /// [`Limits::history_rows`].
    HistoryRows,
    /// [`Limits::plugin_log_bytes`].
    PluginLogBytes,
}

impl Limit {
    /// The configuration key that sets it (`limits.json_depth`).
    pub fn key(self) -> &'static str {
        match self {
            Limit::JsonDepth => "limits.json_depth",
            Limit::JsonBytes => "limits.json_bytes",
            Limit::ParallelBranches => "limits.parallel_branches",
            Limit::StepsPerAdvance => "limits.steps_per_advance",
            Limit::StepsWithoutWait => "limits.steps_without_wait",
            Limit::ChildrenPerInstance => "limits.children_per_instance",
            Limit::StartDepth => "limits.start_depth",
            Limit::HistoryRows => "limits.history_rows",
            Limit::PluginLogBytes => "limits.plugin_log_bytes",
        }
    }

    /// What it bounds, in words (`JSON nesting depth`).
    pub fn what(self) -> &'static str {
        match self {
            Limit::JsonDepth => "JSON nesting depth",
            Limit::JsonBytes => "JSON size in bytes",
            Limit::ParallelBranches => "branches per parallel",
            Limit::StepsPerAdvance => "steps per advance",
            Limit::StepsWithoutWait => "steps without a wait",
            Limit::ChildrenPerInstance => "child instances per instance",
            Limit::StartDepth => "nesting depth of starts",
            Limit::HistoryRows => "history rows per instance",
            Limit::PluginLogBytes => "plugin log bytes per call",
        }
    }

    /// Its value in `limits`.
    pub fn value_in(self, limits: &Limits) -> u64 {
        match self {
            Limit::JsonDepth => limits.json_depth.into(),
            Limit::JsonBytes => limits.json_bytes,
            Limit::ParallelBranches => limits.parallel_branches.into(),
            Limit::StepsPerAdvance => limits.steps_per_advance.into(),
            Limit::StepsWithoutWait => limits.steps_without_wait.into(),
            Limit::ChildrenPerInstance => limits.children_per_instance.into(),
            Limit::StartDepth => limits.start_depth.into(),
            Limit::HistoryRows => limits.history_rows,
            Limit::PluginLogBytes => limits.plugin_log_bytes,
        }
    }
}

/// A refusal: `observed` went past the limit `max`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} limit exceeded: {observed} is more than {max} (set `{}` to change it)",
    limit.what(),
    limit.key()
)]
pub struct LimitError {
    /// The limit.
    pub limit: Limit,
    /// Its value.
    pub max: u64,
    /// What was seen: the depth, size or count reached. For JSON, the scan stops at
    /// the first byte past the limit, so this is the limit plus one, not the full value.
    pub observed: u64,
}

impl LimitError {
    /// A refusal of `observed` against `limit` as set in `limits`.
    pub fn new(limit: Limit, limits: &Limits, observed: u64) -> Self {
        LimitError {
            limit,
            max: limit.value_in(limits),
            observed,
        }
    }

    /// The configuration key to change (`limits.json_depth`).
    pub fn key(&self) -> &'static str {
        self.limit.key()
    }
}

impl Limits {
    /// `Ok` when `observed` is within `limit`, else the refusal.
    pub fn check(&self, limit: Limit, observed: u64) -> Result<(), LimitError> {
        if observed > limit.value_in(self) {
            Err(LimitError::new(limit, self, observed))
        } else {
            Ok(())
        }
    }
}

/// Checks the size and nesting depth of a JSON text before it is parsed.
///
/// The scan counts `[` and `{` outside strings (honouring `\"` and `\\` escapes) and
/// stops at the first one past the depth limit, so its cost is linear and its memory
/// constant whatever the input. It does not validate the JSON: a malformed text within
/// the limits passes and is refused by the parser.
pub fn check_json_bytes(bytes: &[u8], limits: &Limits) -> Result<(), LimitError> {
    limits.check(Limit::JsonBytes, bytes.len() as u64)?;
    let max = u64::from(limits.json_depth);
    let mut depth = 0u64;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(LimitError::new(Limit::JsonDepth, limits, depth));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Checks the nesting depth of a JSON value built in memory (a plugin output, a rendered
/// template), without recursing, and its size as compact JSON text.
///
/// The size is counted, not written: numbers and strings are measured, so the check
/// allocates only its work list. Counting stops once the size is over the limit.
pub fn check_json_value(value: &Value, limits: &Limits) -> Result<(), LimitError> {
    let max_depth = u64::from(limits.json_depth);
    let max_bytes = limits.json_bytes;
    let mut size = 0u64;
    // Each entry is a value and the number of arrays and objects around it.
    let mut stack: Vec<(&Value, u64)> = vec![(value, 0)];
    while let Some((v, around)) = stack.pop() {
        size += match v {
            Value::Null => 4,
            Value::Bool(true) => 4,
            Value::Bool(false) => 5,
            Value::Number(n) => n.to_string().len() as u64,
            Value::String(s) => string_size(s),
            Value::Array(items) => {
                check_depth(around + 1, max_depth, limits)?;
                stack.extend(items.iter().map(|i| (i, around + 1)));
                // Brackets and the commas between items.
                2 + items.len().saturating_sub(1) as u64
            }
            Value::Object(m) => {
                check_depth(around + 1, max_depth, limits)?;
                let keys: u64 = m.keys().map(|k| string_size(k) + 1).sum();
                stack.extend(m.values().map(|i| (i, around + 1)));
                2 + keys + m.len().saturating_sub(1) as u64
            }
        };
        if size > max_bytes {
            return Err(LimitError::new(Limit::JsonBytes, limits, size));
        }
    }
    Ok(())
}

fn check_depth(depth: u64, max: u64, limits: &Limits) -> Result<(), LimitError> {
    if depth > max {
        return Err(LimitError::new(Limit::JsonDepth, limits, depth));
    }
    Ok(())
}

/// The length of `s` as a JSON string literal, quotes and escapes included.
fn string_size(s: &str) -> u64 {
    let escapes: u64 = s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1,
            0..=0x1f => 5,
            _ => 0,
        })
        .sum();
    s.len() as u64 + 2 + escapes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn small() -> Limits {
        Limits {
            json_depth: 3,
            json_bytes: 64,
            ..Limits::default()
        }
    }

    fn bytes(text: &str) -> Result<(), LimitError> {
        check_json_bytes(text.as_bytes(), &small())
    }

    #[test]
    fn depth_within_the_limit_passes() {
        assert_eq!(bytes(r#"{"a": [1, {"b": 2}]}"#), Ok(()));
        assert_eq!(bytes("[[[]]]"), Ok(()));
        assert_eq!(bytes("[[],[],[[]]]"), Ok(()));
    }

    #[test]
    fn depth_past_the_limit_is_refused() {
        let err = bytes("[[[[]]]]").unwrap_err();
        assert_eq!(err.limit, Limit::JsonDepth);
        assert_eq!((err.max, err.observed), (3, 4));
        assert_eq!(err.key(), "limits.json_depth");
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        assert_eq!(bytes(r#"["[[[[{{{{"]"#), Ok(()));
        assert_eq!(bytes(r#"{"[[[[": "}}}}"}"#), Ok(()));
    }

    #[test]
    fn escaped_quotes_do_not_end_a_string() {
        // The string is `a"[[[[`: the escaped quote keeps the brackets inside it.
        assert_eq!(bytes(r#"["a\"[[[["]"#), Ok(()));
        // An escaped backslash ends before the quote, which then closes the string.
        assert!(bytes(r#"["a\\", [[[ ]]] ]"#).is_err());
        assert_eq!(bytes(r#"["a\\", [[ ]] ]"#), Ok(()));
    }

    #[test]
    fn size_past_the_limit_is_refused() {
        let text = format!("\"{}\"", "x".repeat(100));
        let err = bytes(&text).unwrap_err();
        assert_eq!(err.limit, Limit::JsonBytes);
        assert_eq!((err.max, err.observed), (64, 102));
    }

    #[test]
    fn the_message_names_the_limit_and_the_key() {
        let err = bytes("[[[[]]]]").unwrap_err();
        assert_eq!(
            err.to_string(),
            "JSON nesting depth limit exceeded: 4 is more than 3 (set `limits.json_depth` to change it)"
        );
    }

    #[test]
    fn values_are_checked_like_text() {
        for text in [
            r#"{"a": [1, {"b": 2}]}"#,
            "[[[]]]",
            r#"["[[[[{{{{"]"#,
            "[[[[]]]]",
            r#"{"k": "line\nbreak \u0001 \"q\""}"#,
            "[true, false, null, -1.5, 12]",
        ] {
            let value: Value = serde_json::from_str(text).unwrap();
            let compact = serde_json::to_string(&value).unwrap();
            let limits = Limits {
                json_bytes: compact.len() as u64,
                ..small()
            };
            assert_eq!(
                check_json_value(&value, &limits).map_err(|e| e.limit),
                check_json_bytes(compact.as_bytes(), &limits).map_err(|e| e.limit),
                "{text}"
            );
            let tighter = Limits {
                json_bytes: compact.len() as u64 - 1,
                json_depth: 10,
                ..small()
            };
            assert_eq!(
                check_json_value(&value, &tighter).map_err(|e| e.limit),
                Err(Limit::JsonBytes),
                "{text}: the counted size is the compact text's"
            );
        }
    }

    #[test]
    fn a_deep_value_is_checked_without_recursion() {
        let mut v = json!(1);
        for _ in 0..100_000 {
            v = Value::Array(vec![v]);
        }
        let err = check_json_value(&v, &Limits::default()).unwrap_err();
        assert_eq!(err.limit, Limit::JsonDepth);
        // Dropping a value this deep recurses in serde_json; unwrap it level by level.
        while let Value::Array(mut items) = v {
            v = items.pop().unwrap_or(Value::Null);
        }
    }

    #[test]
    fn the_default_depth_can_be_read_back() {
        let limits = Limits::default();
        let depth = limits.json_depth as usize;
        let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(check_json_bytes(text.as_bytes(), &limits), Ok(()));
        let value: Value = serde_json::from_str(&text).expect("serde_json reads it back");
        assert_eq!(check_json_value(&value, &limits), Ok(()));
    }

    #[test]
    fn limits_deserialize_with_defaults() {
        let l: Limits = serde_json::from_value(json!({"json_depth": 32})).unwrap();
        assert_eq!(
            l,
            Limits {
                json_depth: 32,
                ..Limits::default()
            }
        );
        assert!(serde_json::from_value::<Limits>(json!({"json_dept": 32})).is_err());
    }
}
