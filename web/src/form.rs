//! Forms from JSON Schema: the field model a template draws, and the parse of a
//! urlencoded body back into a typed JSON value with errors by field.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::i18n::Locale;

/// How a field is drawn.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Widget {
    /// One line of text.
    Text,
    /// Several lines (`format: textarea` or `maxLength` over 200).
    Textarea,
    /// Radio buttons (an enum of at most five values).
    Radio,
    /// A drop-down list.
    Select,
    /// A checkbox.
    Checkbox,
    /// A whole number.
    Integer,
    /// A date (`format: date`).
    Date,
    /// An array of strings: one per line.
    Lines,
    /// A nested object, drawn as a fieldset of its own fields.
    Group,
}

/// One choice of a radio or select field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Choice {
    /// The submitted value.
    pub value: String,
    /// The label (`oneOf[].title`, else the value).
    pub label: String,
}

/// One field of a form, with what was submitted and its error.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Field {
    /// The form name: the property path joined with `.` (`accused.name`).
    pub name: String,
    /// The label: the schema's `title`, else the property name.
    pub label: String,
    /// The schema's `description`.
    pub description: Option<String>,
    /// Whether the property is required.
    pub required: bool,
    /// How to draw it.
    pub widget: Widget,
    /// The value to show, as text (`true` for a checked checkbox; lines joined by `\n`).
    pub value: String,
    /// The choices of a radio or select field.
    pub choices: Vec<Choice>,
    /// The error message, in the user's language.
    pub error: Option<String>,
    /// The fields of a group.
    pub fields: Vec<Field>,
}

/// The whistleblower's form: the case fields of `case` (the intake workflow's public
/// input schema), then how they report (`kind`: anonymous or with their name) and who
/// they are (`reporter.*`, all optional, sealed apart by the intake), labelled from the
/// catalogue of `locale`.
pub fn complaint_schema(case: &Value, locale: Locale) -> Value {
    let mut schema = case.clone();
    let text =
        |key: &str| serde_json::json!({"type": "string", "title": locale.t(key), "maxLength": 200});
    let identity = serde_json::json!({
        "type": "object",
        "title": locale.t("wb2.identity"),
        "properties": {
            "name": text("wb2.name"),
            "phone": text("wb2.phone"),
            "email": text("wb2.email"),
            "id_number": text("wb2.id_number"),
            "address": text("wb2.address"),
            "contact_by_email": {"type": "boolean", "title": locale.t("wb2.contact_by_email")},
        }
    });
    let kind = serde_json::json!({
        "title": locale.t("wb2.kind"),
        "oneOf": [
            {"const": "anonymous", "title": locale.t("wb2.anonymous")},
            {"const": "real_name", "title": locale.t("wb2.real_name")},
        ]
    });
    if let Some(props) = schema
        .as_object_mut()
        .map(|o| {
            o.entry("properties")
                .or_insert_with(|| Value::Object(Map::new()))
        })
        .and_then(Value::as_object_mut)
    {
        props.insert("kind".into(), kind);
        props.insert("reporter".into(), identity);
    }
    if let Some(o) = schema.as_object_mut() {
        let req = o
            .entry("required")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Some(r) = req.as_array_mut() {
            r.push(Value::String("kind".into()));
        }
    }
    schema
}

/// The fields of an object `schema`, filled with `values` (the submitted or current
/// value) and `errors` (by field name).
pub fn fields(schema: &Value, values: &Value, errors: &BTreeMap<String, String>) -> Vec<Field> {
    object_fields(schema, values, errors, "", true)
}

fn object_fields(
    schema: &Value,
    values: &Value,
    errors: &BTreeMap<String, String>,
    prefix: &str,
    nest: bool,
) -> Vec<Field> {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    let required = required_of(schema);
    props
        .iter()
        .filter_map(|(key, prop)| {
            let name = format!("{prefix}{key}");
            let widget = widget(prop);
            if widget == Widget::Group && !nest {
                return None; // one nested level only
            }
            let value = values.get(key).unwrap_or(&Value::Null);
            let sub = if widget == Widget::Group {
                object_fields(prop, value, errors, &format!("{name}."), false)
            } else {
                Vec::new()
            };
            Some(Field {
                label: prop
                    .get("title")
                    .and_then(Value::as_str)
                    .unwrap_or(key)
                    .to_owned(),
                description: prop
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                required: required.contains(&key.as_str()),
                value: display(value),
                choices: choices(prop),
                error: errors.get(&name).cloned(),
                fields: sub,
                widget,
                name,
            })
        })
        .collect()
}

fn required_of(schema: &Value) -> Vec<&str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn display(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(display).collect::<Vec<_>>().join("\n"),
        other => other.to_string(),
    }
}

/// The choices of an enum (`enum: [...]`) or labelled enum (`oneOf: [{const, title}]`).
pub fn choices(prop: &Value) -> Vec<Choice> {
    if let Some(one_of) = prop.get("oneOf").and_then(Value::as_array) {
        return one_of
            .iter()
            .filter_map(|o| {
                let value = display(o.get("const")?);
                let label = o
                    .get("title")
                    .and_then(Value::as_str)
                    .map_or_else(|| value.clone(), str::to_owned);
                Some(Choice { value, label })
            })
            .collect();
    }
    prop.get("enum")
        .and_then(Value::as_array)
        .map(|e| {
            e.iter()
                .map(|v| Choice {
                    value: display(v),
                    label: display(v),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn type_of(prop: &Value) -> &str {
    prop.get("type").and_then(Value::as_str).unwrap_or("")
}

fn widget(prop: &Value) -> Widget {
    let n = choices(prop).len();
    if n > 0 {
        return if n <= 5 {
            Widget::Radio
        } else {
            Widget::Select
        };
    }
    match type_of(prop) {
        "boolean" => Widget::Checkbox,
        "integer" => Widget::Integer,
        "array" => Widget::Lines,
        "object" => Widget::Group,
        _ => match prop.get("format").and_then(Value::as_str) {
            Some("date") => Widget::Date,
            Some("textarea") => Widget::Textarea,
            _ if prop
                .get("maxLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| m > 200) =>
            {
                Widget::Textarea
            }
            _ => Widget::Text,
        },
    }
}

/// A submission that did not fit the schema: the values as submitted (to show again)
/// and an error message per field name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rejected {
    /// What was submitted, shaped like the schema (strings where parsing failed).
    pub values: Value,
    /// Error messages by field name, in the user's language.
    pub errors: BTreeMap<String, String>,
}

/// Parses an `application/x-www-form-urlencoded` body by an object `schema`: integers
/// parsed, checkboxes to booleans, arrays from repeated fields or textarea lines,
/// empty optional fields left out. Checks required, enum, integer bounds, string
/// lengths and dates; the caller still runs the full schema validator.
pub fn parse(schema: &Value, body: &[u8], locale: Locale) -> Result<Value, Rejected> {
    let mut raw: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(body) {
        raw.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    let mut errors = BTreeMap::new();
    let values = parse_object(schema, &raw, "", locale, &mut errors);
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(Rejected { values, errors })
    }
}

fn msg(locale: Locale, key: &str, n: impl std::fmt::Display) -> String {
    locale.t(key).replace("{n}", &n.to_string())
}

fn parse_object(
    schema: &Value,
    raw: &BTreeMap<String, Vec<String>>,
    prefix: &str,
    locale: Locale,
    errors: &mut BTreeMap<String, String>,
) -> Value {
    let mut out = Map::new();
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return Value::Object(out);
    };
    let required = required_of(schema);
    for (key, prop) in props {
        let name = format!("{prefix}{key}");
        let is_required = required.contains(&key.as_str());
        let given: Vec<&str> = raw
            .get(&name)
            .map(|v| v.iter().map(String::as_str).collect())
            .unwrap_or_default();
        let first = given.first().map(|s| s.trim()).unwrap_or("");
        let missing = || msg(locale, "form.missing", "");
        let value = match widget(prop) {
            Widget::Group => {
                if prefix.is_empty() {
                    let v = parse_object(prop, raw, &format!("{name}."), locale, errors);
                    Some(v)
                } else {
                    None
                }
            }
            Widget::Checkbox => Some(Value::Bool(
                given.iter().any(|v| matches!(*v, "true" | "on" | "1")),
            )),
            Widget::Lines => {
                let items: Vec<Value> = given
                    .iter()
                    .flat_map(|v| v.lines())
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(|l| Value::String(l.to_owned()))
                    .collect();
                if items.is_empty() && is_required {
                    errors.insert(name.clone(), missing());
                }
                (!items.is_empty() || is_required).then_some(Value::Array(items))
            }
            _ if first.is_empty() => {
                if is_required {
                    errors.insert(name.clone(), missing());
                }
                None
            }
            Widget::Integer => match first.parse::<i64>() {
                Ok(n) => {
                    let min = prop.get("minimum").and_then(Value::as_i64);
                    let max = prop.get("maximum").and_then(Value::as_i64);
                    if let Some(m) = min.filter(|&m| n < m) {
                        errors.insert(name.clone(), msg(locale, "form.min", m));
                    } else if let Some(m) = max.filter(|&m| n > m) {
                        errors.insert(name.clone(), msg(locale, "form.max", m));
                    }
                    Some(Value::from(n))
                }
                Err(_) => {
                    errors.insert(name.clone(), msg(locale, "form.integer", ""));
                    Some(Value::String(first.to_owned()))
                }
            },
            Widget::Radio | Widget::Select => {
                if !choices(prop).iter().any(|c| c.value == first) {
                    errors.insert(name.clone(), msg(locale, "form.choice", ""));
                }
                Some(Value::String(first.to_owned()))
            }
            Widget::Date => {
                if !is_date(first) {
                    errors.insert(name.clone(), msg(locale, "form.date", ""));
                }
                Some(Value::String(first.to_owned()))
            }
            Widget::Text | Widget::Textarea => {
                // Keep the text as typed (line breaks included), trimmed at the ends.
                let text = given[0].trim();
                let len = text.chars().count() as u64;
                if let Some(m) = prop
                    .get("minLength")
                    .and_then(Value::as_u64)
                    .filter(|&m| len < m)
                {
                    errors.insert(name.clone(), msg(locale, "form.min_length", m));
                } else if let Some(m) = prop
                    .get("maxLength")
                    .and_then(Value::as_u64)
                    .filter(|&m| len > m)
                {
                    errors.insert(name.clone(), msg(locale, "form.max_length", m));
                }
                Some(Value::String(text.to_owned()))
            }
        };
        if let Some(v) = value {
            out.insert(key.clone(), v);
        }
    }
    Value::Object(out)
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().ok();
    match (num(0..4), num(5..7), num(8..10)) {
        (Some(y), Some(m), Some(d)) => {
            let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
            let days = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            (1..=12).contains(&m) && d >= 1 && d <= days[m as usize - 1]
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["decision", "count", "on", "tags"],
            "properties": {
                "decision": {"title": "受理意见 Decision", "oneOf": [
                    {"const": "accept", "title": "受理 Accept"},
                    {"const": "reject", "title": "不予受理 Reject"}]},
                "grade": {"enum": ["a", "b", "c", "d", "e", "f"]},
                "note": {"type": "string", "description": "可选"},
                "long": {"type": "string", "maxLength": 2000},
                "memo": {"type": "string", "format": "textarea"},
                "urgent": {"type": "boolean"},
                "count": {"type": "integer", "minimum": 0, "maximum": 10},
                "on": {"type": "string", "format": "date"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "name": {"type": "string", "minLength": 2},
                "accused": {"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string", "title": "姓名 Name"},
                    "deep": {"type": "object", "properties": {}}
                }}
            }
        })
    }

    #[test]
    fn field_model() {
        let f = fields(
            &schema(),
            &json!({"tags": ["x", "y"], "urgent": true}),
            &BTreeMap::new(),
        );
        let by = |n: &str| f.iter().find(|x| x.name == n).unwrap().clone();
        assert_eq!(by("decision").widget, Widget::Radio);
        assert_eq!(by("decision").label, "受理意见 Decision");
        assert_eq!(by("decision").choices[1].label, "不予受理 Reject");
        assert!(by("decision").required);
        assert_eq!(by("grade").widget, Widget::Select);
        assert_eq!(by("grade").label, "grade");
        assert_eq!(by("note").description.as_deref(), Some("可选"));
        assert_eq!(by("long").widget, Widget::Textarea);
        assert_eq!(by("memo").widget, Widget::Textarea);
        assert_eq!(by("urgent").value, "true");
        assert_eq!(by("count").widget, Widget::Integer);
        assert_eq!(by("on").widget, Widget::Date);
        assert_eq!(by("tags").value, "x\ny");
        let accused = by("accused");
        assert_eq!(accused.widget, Widget::Group);
        assert_eq!(accused.fields.len(), 1, "one nested level only");
        assert_eq!(accused.fields[0].name, "accused.name");
        assert!(accused.fields[0].required);
    }

    #[test]
    fn parses_typed_values() {
        let body = b"decision=accept&count=3&on=2024-02-29&tags=a%0D%0Ab%0A&tags=c&urgent=on&note=&accused.name=%E5%BC%A0&name=ab";
        let v = parse(&schema(), body, Locale::En).unwrap();
        assert_eq!(
            v,
            json!({"decision": "accept", "urgent": true, "count": 3, "on": "2024-02-29",
                   "tags": ["a", "b", "c"], "name": "ab", "accused": {"name": "张"}})
        );
    }

    #[test]
    fn errors_by_field_in_the_users_language_values_kept() {
        let body = b"decision=maybe&count=x&on=2023-02-29&name=a&accused.name=";
        let r = parse(&schema(), body, Locale::ZhCn).unwrap_err();
        let keys: Vec<_> = r.errors.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["accused.name", "count", "decision", "name", "on", "tags"]
        );
        assert_eq!(r.errors["tags"], Locale::ZhCn.t("form.missing"));
        assert!(r.errors["name"].contains('2'));
        assert_eq!(r.values["count"], "x");
        assert_eq!(r.values["decision"], "maybe");
        let en = parse(&schema(), body, Locale::En).unwrap_err();
        assert_ne!(en.errors["count"], r.errors["count"]);
        // Re-rendered with the values and errors.
        let f = fields(&schema(), &r.values, &r.errors);
        let count = f.iter().find(|x| x.name == "count").unwrap();
        assert_eq!((count.value.as_str(), count.error.is_some()), ("x", true));
    }

    #[test]
    fn bounds_and_unchecked_boxes() {
        let r = parse(
            &schema(),
            b"decision=reject&count=11&on=2024-13-01&tags=t&accused.name=z",
            Locale::En,
        )
        .unwrap_err();
        assert_eq!(r.errors.len(), 2, "{:?}", r.errors);
        assert!(r.errors["count"].contains("10"));
        assert_eq!(r.values["urgent"], false);
        let ok = parse(
            &schema(),
            b"decision=reject&count=0&on=2024-12-31&tags=t&accused.name=z",
            Locale::En,
        )
        .unwrap();
        assert_eq!(ok["count"], 0);
    }

    #[test]
    fn dates() {
        for (s, ok) in [
            ("2024-02-29", true),
            ("2023-02-29", false),
            ("2024-1-01", false),
            ("2024-04-31", false),
            ("abcd-ef-gh", false),
        ] {
            assert_eq!(is_date(s), ok, "{s}");
        }
    }
}
