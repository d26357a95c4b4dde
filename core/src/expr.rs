//! Expressions and value templates, on MiniJinja's expression language.
//!
//! Conditions (`if`, `when`) are expressions such as
//! `verify.outcome == "unfounded" and input.reporter.real_name`. Values (`with`, `input`,
//! `set`, `data`) are JSON in which a string that is exactly `${ expr }` becomes the
//! expression's value (any JSON type) and a string with `${ expr }` inside becomes text.
//! Everything is compiled when the file loads, so a syntax error or a reference to a
//! name that does not exist is a load-time diagnostic, never a run-time surprise.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    // Bounds the work one evaluation may do, so a hostile `range(10**9)` cannot hang a worker.
    env.set_fuel(Some(100_000));
    env
});

/// A compiled expression.
pub struct Expr {
    src: String,
    compiled: minijinja::Expression<'static, 'static>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expr({:?})", self.src)
    }
}

/// A compile error: the message and the byte offset in the expression where known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// What is wrong.
    pub message: String,
    /// Byte offset into the expression text.
    pub offset: usize,
}

/// The byte offset of the first `}}` outside a string literal.
fn tag_end_outside_strings(src: &str) -> Option<usize> {
    let mut brace: Option<usize> = None;
    for (i, b) in unquoted(src, 0) {
        if b == b'}' && brace == Some(i.wrapping_sub(1)) {
            return brace;
        }
        brace = (b == b'}').then_some(i);
    }
    None
}

/// The bytes of `s` from `from` on that are outside quoted text (`'…'` or `"…"`, with
/// backslash escapes, as MiniJinja reads them), with their offsets; quotes excluded.
fn unquoted(s: &str, from: usize) -> impl Iterator<Item = (usize, u8)> + '_ {
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    s.bytes()
        .enumerate()
        .skip(from)
        .filter_map(move |(i, b)| match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == q {
                    quote = None;
                }
                None
            }
            None if b == b'\'' || b == b'"' => {
                quote = Some(b);
                None
            }
            None => Some((i, b)),
        })
}

impl Expr {
    /// Compiles `src`; a `${ … }` wrapper around the whole text is accepted and removed.
    pub fn compile(src: &str) -> Result<Expr, ExprError> {
        let (inner, shift) = unwrap_dollar(src);
        if inner.trim().is_empty() {
            return Err(ExprError {
                message: "empty expression".into(),
                offset: 0,
            });
        }
        // MiniJinja's expression lexer panics on a `}}` outside a string (it ends a
        // template tag it never opened): refused here first, with its place.
        if let Some(at) = tag_end_outside_strings(inner) {
            return Err(ExprError {
                message: format!(
                    "bad expression `{}`: `}}}}` cannot appear in an expression outside a string",
                    inner.trim()
                ),
                offset: shift + at,
            });
        }
        match ENV.compile_expression_owned(inner.to_owned()) {
            Ok(compiled) => Ok(Expr {
                src: inner.trim().to_owned(),
                compiled,
            }),
            Err(e) => Err(ExprError {
                message: format!(
                    "bad expression `{}`: {}",
                    inner.trim(),
                    e.detail().unwrap_or("syntax error")
                ),
                offset: shift + e.range().map_or(0, |r| r.start),
            }),
        }
    }

    /// The expression's text.
    pub fn source(&self) -> &str {
        &self.src
    }

    /// The top-level names and dotted paths the expression reads (`verify.outcome`).
    pub fn references(&self) -> BTreeSet<String> {
        self.compiled
            .undeclared_variables(true)
            .into_iter()
            .collect()
    }

    /// Evaluates against `ctx` and returns JSON.
    pub fn eval(&self, ctx: &minijinja::Value) -> Result<Value, String> {
        let v = self
            .compiled
            .eval(ctx)
            .map_err(|e| format!("evaluating `{}`: {}", self.src, describe(&e)))?;
        to_json(&v).map_err(|e| format!("evaluating `{}`: {e}", self.src))
    }

    /// Evaluates against `ctx` and tells whether the result is true.
    pub fn truthy(&self, ctx: &minijinja::Value) -> Result<bool, String> {
        self.compiled
            .eval(ctx)
            .map(|v| v.is_true())
            .map_err(|e| format!("evaluating `{}`: {}", self.src, describe(&e)))
    }
}

fn describe(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    }
}

/// The most an expression's result may hold: elements and string bytes together.
const MAX_RESULT_SIZE: usize = 16 << 20;
/// The deepest an expression's result may nest.
const MAX_RESULT_DEPTH: usize = 128;

fn to_json(v: &minijinja::Value) -> Result<Value, String> {
    if v.is_undefined() {
        return Ok(Value::Null);
    }
    // A repetition (`[0] * 999999999`) is lazy in MiniJinja but says its length up front,
    // and serialising it would reserve that much memory at once: measured first.
    let mut budget = MAX_RESULT_SIZE;
    measure(v, &mut budget, 0)?;
    serde_json::to_value(v).map_err(|e| e.to_string())
}

/// Takes `v`'s size out of `budget` (lengths before items, so nothing huge is iterated),
/// refusing a result over [`MAX_RESULT_SIZE`] or deeper than [`MAX_RESULT_DEPTH`].
fn measure(v: &minijinja::Value, budget: &mut usize, depth: usize) -> Result<(), String> {
    use minijinja::value::ValueKind;
    let too_large = || format!("the result is larger than {MAX_RESULT_SIZE} elements and bytes");
    if depth > MAX_RESULT_DEPTH {
        return Err(format!(
            "the result nests deeper than {MAX_RESULT_DEPTH} levels"
        ));
    }
    let take = |budget: &mut usize, n: usize| -> Result<(), String> {
        *budget = budget.checked_sub(n).ok_or_else(too_large)?;
        Ok(())
    };
    match v.kind() {
        ValueKind::String | ValueKind::Bytes => take(budget, v.len().unwrap_or(0)),
        ValueKind::Seq | ValueKind::Iterable => {
            take(budget, v.len().unwrap_or(0))?;
            for item in v.try_iter().map_err(|e| e.to_string())? {
                measure(&item, budget, depth + 1)?;
            }
            Ok(())
        }
        ValueKind::Map => {
            take(budget, v.len().unwrap_or(0))?;
            for key in v.try_iter().map_err(|e| e.to_string())? {
                measure(&key, budget, depth + 1)?;
                let item = v.get_item(&key).map_err(|e| e.to_string())?;
                measure(&item, budget, depth + 1)?;
            }
            Ok(())
        }
        _ => take(budget, 1),
    }
}

/// Turns JSON into an evaluation context.
pub fn context(json: &Value) -> minijinja::Value {
    minijinja::Value::from_serialize(json)
}

fn unwrap_dollar(src: &str) -> (&str, usize) {
    let trimmed = src.trim();
    if let Some(inner) = trimmed.strip_prefix("${").and_then(|s| s.strip_suffix('}'))
        && find_close(inner, 0).is_none()
    {
        let shift = src.find("${").unwrap_or(0) + 2;
        return (inner, shift);
    }
    (src, 0)
}

/// Finds the `}` closing a `${` whose body starts at `from`, skipping quoted text and
/// nested braces. Returns `None` when the body runs to the end.
fn find_close(s: &str, from: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, b) in unquoted(s, from) {
        match b {
            b'{' => depth += 1,
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// A JSON value with expressions inside.
#[derive(Debug)]
pub enum Template {
    /// A plain value.
    Literal(Value),
    /// A string that is exactly `${ expr }`: the expression's value.
    Expr(Expr),
    /// A string with `${ expr }`s inside: text.
    Text(Vec<Piece>),
    /// An array of templates.
    Array(Vec<Template>),
    /// An object of templates, keys in order.
    Object(Vec<(String, Template)>),
}

/// A piece of an interpolated string.
#[derive(Debug)]
pub enum Piece {
    /// Literal text.
    Lit(String),
    /// An expression whose value is inserted as text.
    Expr(Expr),
}

/// A problem found while compiling a template: where in the value and what.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateError {
    /// Path of keys and indices to the bad string.
    pub path: Vec<crate::yaml::Seg>,
    /// The expression error.
    pub error: ExprError,
}

impl Template {
    /// Compiles every expression in `value`, reporting every bad one.
    pub fn compile(value: &Value) -> Result<Template, Vec<TemplateError>> {
        let mut errors = Vec::new();
        let mut path = Vec::new();
        let t = compile_value(value, &mut path, &mut errors);
        if errors.is_empty() {
            Ok(t)
        } else {
            Err(errors)
        }
    }

    /// Every expression inside, for reference checks.
    pub fn exprs(&self) -> Vec<&Expr> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    /// Every expression inside with the path of the string holding it.
    pub fn exprs_at(&self) -> Vec<(Vec<crate::yaml::Seg>, &Expr)> {
        let mut out = Vec::new();
        self.collect_at(&mut Vec::new(), &mut out);
        out
    }

    fn collect_at<'a>(
        &'a self,
        path: &mut Vec<crate::yaml::Seg>,
        out: &mut Vec<(Vec<crate::yaml::Seg>, &'a Expr)>,
    ) {
        use crate::yaml::Seg;
        match self {
            Template::Array(items) => {
                for (i, t) in items.iter().enumerate() {
                    path.push(Seg::Index(i));
                    t.collect_at(path, out);
                    path.pop();
                }
            }
            Template::Object(entries) => {
                for (k, t) in entries {
                    path.push(Seg::Key(k.clone()));
                    t.collect_at(path, out);
                    path.pop();
                }
            }
            other => {
                let mut found = Vec::new();
                other.collect(&mut found);
                out.extend(found.into_iter().map(|e| (path.clone(), e)));
            }
        }
    }

    fn collect<'a>(&'a self, out: &mut Vec<&'a Expr>) {
        match self {
            Template::Literal(_) => {}
            Template::Expr(e) => out.push(e),
            Template::Text(pieces) => out.extend(pieces.iter().filter_map(|p| match p {
                Piece::Expr(e) => Some(e),
                Piece::Lit(_) => None,
            })),
            Template::Array(items) => items.iter().for_each(|t| t.collect(out)),
            Template::Object(entries) => entries.iter().for_each(|(_, t)| t.collect(out)),
        }
    }

    /// Produces the JSON value for `ctx`.
    pub fn render(&self, ctx: &minijinja::Value) -> Result<Value, String> {
        Ok(match self {
            Template::Literal(v) => v.clone(),
            Template::Expr(e) => e.eval(ctx)?,
            Template::Text(pieces) => {
                let mut s = String::new();
                for p in pieces {
                    match p {
                        Piece::Lit(t) => s.push_str(t),
                        Piece::Expr(e) => match e.eval(ctx)? {
                            Value::String(t) => s.push_str(&t),
                            Value::Null => {}
                            other => s.push_str(&other.to_string()),
                        },
                    }
                }
                Value::String(s)
            }
            Template::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|t| t.render(ctx))
                    .collect::<Result<_, _>>()?,
            ),
            Template::Object(entries) => {
                let mut m = serde_json::Map::with_capacity(entries.len());
                for (k, t) in entries {
                    m.insert(k.clone(), t.render(ctx)?);
                }
                Value::Object(m)
            }
        })
    }
}

fn compile_value(
    v: &Value,
    path: &mut Vec<crate::yaml::Seg>,
    errors: &mut Vec<TemplateError>,
) -> Template {
    use crate::yaml::Seg;
    match v {
        Value::String(s) => match compile_string(s) {
            Ok(t) => t,
            Err(error) => {
                errors.push(TemplateError {
                    path: path.clone(),
                    error,
                });
                Template::Literal(Value::Null)
            }
        },
        Value::Array(items) => Template::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    path.push(Seg::Index(i));
                    let t = compile_value(item, path, errors);
                    path.pop();
                    t
                })
                .collect(),
        ),
        Value::Object(m) => Template::Object(
            m.iter()
                .map(|(k, item)| {
                    path.push(Seg::Key(k.clone()));
                    let t = compile_value(item, path, errors);
                    path.pop();
                    (k.clone(), t)
                })
                .collect(),
        ),
        other => Template::Literal(other.clone()),
    }
}

fn compile_string(s: &str) -> Result<Template, ExprError> {
    if !s.contains("${") {
        return Ok(Template::Literal(Value::String(s.to_owned())));
    }
    let mut pieces = Vec::new();
    let mut rest = 0usize;
    while let Some(found) = s[rest..].find("${") {
        let start = rest + found;
        if start > rest {
            pieces.push(Piece::Lit(s[rest..start].to_owned()));
        }
        let body = start + 2;
        let close = find_close(s, body).ok_or(ExprError {
            message: "`${` without a closing `}`".into(),
            offset: start,
        })?;
        let expr = Expr::compile(&s[body..close]).map_err(|e| ExprError {
            message: e.message,
            offset: body + e.offset,
        })?;
        pieces.push(Piece::Expr(expr));
        rest = close + 1;
    }
    if rest < s.len() {
        pieces.push(Piece::Lit(s[rest..].to_owned()));
    }
    if let [Piece::Expr(_)] = pieces.as_slice()
        && let Some(Piece::Expr(e)) = pieces.pop()
    {
        return Ok(Template::Expr(e));
    }
    Ok(Template::Text(pieces))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(src: &str, ctx: Value) -> Value {
        Expr::compile(src).unwrap().eval(&context(&ctx)).unwrap()
    }

    #[test]
    fn a_huge_repetition_is_refused_not_allocated() {
        // Found by `fuzz/` (target `expression`): serialising this reserved ~288 GB.
        for src in [
            "[040*00400554249058164650]*00400554249",
            "[0] * 999999999",
            "[[1, 2] * 99999999]",
            "{'a': [0] * 99999999}",
        ] {
            let err = Expr::compile(src)
                .unwrap()
                .eval(&context(&json!({})))
                .expect_err(src);
            assert!(err.contains("larger than"), "{src}: {err}");
        }
        assert_eq!(eval("([1, 2] * 3) | length", json!({})), json!(6));
        assert_eq!(
            eval("[0] * 1000", json!({})).as_array().map(Vec::len),
            Some(1000)
        );
    }

    #[test]
    fn a_tag_end_outside_a_string_is_refused_not_a_panic() {
        // Found by `fuzz/` (target `expression`): MiniJinja panicked on these.
        for src in ["input.case_nu}}er", "a }} b", "${ x }}", "'a' ~ b}}"] {
            let e = Expr::compile(src).expect_err(src);
            assert!(e.message.contains("cannot appear"), "{src}: {}", e.message);
        }
        let e = Expr::compile("${ ab}}c }").unwrap_err();
        assert_eq!(e.offset, 5, "the offset points at the `}}}}`");
        // Inside strings it is text.
        assert_eq!(eval("x == '}}'", json!({"x": "}}"})), json!(true));
        assert_eq!(eval(r#"x ~ "\"}}""#, json!({"x": "a"})), json!("a\"}}"));
    }

    #[test]
    fn expressions_evaluate_to_json() {
        assert_eq!(eval("a.b + 1", json!({"a": {"b": 2}})), json!(3));
        assert_eq!(eval("${ x == 'y' }", json!({"x": "y"})), json!(true));
        assert_eq!(eval("missing.deeper", json!({})), Value::Null);
        assert_eq!(eval("[1, 2] | length", json!({})), json!(2));
    }

    #[test]
    fn references_are_dotted_paths() {
        let e =
            Expr::compile("verify.outcome == 'unfounded' and input.reporter.real_name").unwrap();
        let refs: Vec<_> = e.references().into_iter().collect();
        assert_eq!(refs, vec!["input.reporter.real_name", "verify.outcome"]);
    }

    #[test]
    fn syntax_errors_have_offsets() {
        let err = Expr::compile("a ==").unwrap_err();
        assert!(
            err.message.starts_with("bad expression `a ==`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn templates_keep_types_and_interpolate_text() {
        let t = Template::compile(&json!({"n": "${ a }", "s": "case ${ a }/${ b }", "l": [1, "${ b }"], "dict": "${ {'k': 1} }"})).unwrap();
        let out = t.render(&context(&json!({"a": 7, "b": "x"}))).unwrap();
        assert_eq!(
            out,
            json!({"n": 7, "s": "case 7/x", "l": [1, "x"], "dict": {"k": 1}})
        );
    }

    #[test]
    fn template_errors_point_into_the_value() {
        let errs =
            Template::compile(&json!({"ok": "${ a }", "bad": ["x", "${ a + }"]})).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].path,
            vec![
                crate::yaml::Seg::Key("bad".into()),
                crate::yaml::Seg::Index(1)
            ]
        );
    }

    #[test]
    fn runaway_evaluation_is_stopped() {
        let e = Expr::compile("range(100000000) | sum").unwrap();
        assert!(e.eval(&context(&json!({}))).is_err());
    }
}
