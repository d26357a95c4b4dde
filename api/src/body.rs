//! Request bodies: one parser for every JSON endpoint. A refusal says which field and
//! what was expected, in words; it never quotes the input (a value may be personal data)
//! nor the JSON parser's own wording, positions or types.

use serde::de::DeserializeOwned;

use super::Problem;

/// Reads a JSON request body as `T`, or the `400` that says what is wrong with it.
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(de).map_err(|e| problem(&e))?;
    Ok(value)
}

fn problem(e: &serde_path_to_error::Error<serde_json::Error>) -> Problem {
    Problem::bad_request(describe(e.path().to_string(), e.inner()))
}

/// The refusal in words: where (`case.title`) and what was expected.
fn describe(path: String, inner: &serde_json::Error) -> String {
    use serde_json::error::Category;
    if !matches!(inner.classify(), Category::Data) {
        return "the request body is not valid JSON".into();
    }
    // serde's data errors read "missing field `x`", "unknown field `x`, expected …",
    // "invalid type: <the input>, expected <a type>"; only field names and the
    // expectation are kept.
    let message = inner.to_string();
    let message = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(m, _)| m);
    let at = |field: Option<&str>| {
        let mut p = if path == "." {
            String::new()
        } else {
            path.clone()
        };
        if let Some(f) = field {
            if !p.is_empty() {
                p.push('.');
            }
            p.push_str(f);
        }
        if p.is_empty() {
            "the request body".to_owned()
        } else {
            format!("field `{p}`")
        }
    };
    let quoted = |m: &str| -> Option<String> {
        let rest = m.split_once('`')?.1;
        let name = rest.split_once('`')?.0;
        (name.len() <= 64).then(|| name.to_owned())
    };
    if let Some(m) = message.strip_prefix("missing field ") {
        return format!("{} is required", at(quoted(m).as_deref()));
    }
    if let Some(m) = message.strip_prefix("unknown field ") {
        let allowed = m
            .split_once(", expected ")
            .map(|(_, e)| format!(" (expected {e})"))
            .unwrap_or_default();
        // The path already ends with the unknown field's name.
        let field = if path == "." {
            at(quoted(m).as_deref())
        } else {
            at(None)
        };
        return format!("{field} is not a field of this request{allowed}");
    }
    if let Some(m) = message.strip_prefix("duplicate field ") {
        return format!("{} is given twice", at(quoted(m).as_deref()));
    }
    match message.split_once(", expected ") {
        Some((_, expected)) => format!("{}: expected {expected}", at(None)),
        None => format!("{} does not have the expected shape", at(None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        workflow: String,
        #[serde(default)]
        input: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    fn refusal(text: &str) -> String {
        parse::<Body>(text.as_bytes()).expect_err("refused").detail
    }

    #[test]
    fn refusals_name_the_field_and_the_expectation_never_the_input() {
        assert_eq!(refusal("{"), "the request body is not valid JSON");
        assert_eq!(refusal("{}"), "field `workflow` is required");
        assert_eq!(
            refusal(r#"{"workflow": 12345}"#),
            "field `workflow`: expected a string"
        );
        assert_eq!(
            refusal(r#"{"workflow": "w", "input": {"count": "secret-王"}}"#),
            "field `input.count`: expected u32"
        );
        assert_eq!(
            refusal(r#"{"workflow": "w", "extra": 1}"#),
            "field `extra` is not a field of this request (expected `workflow` or `input`)"
        );
        assert_eq!(
            refusal(r#"{"workflow": "w", "input": {}}"#),
            "field `input.count` is required"
        );
        assert_eq!(refusal("7"), "the request body: expected struct Body");
    }
}
