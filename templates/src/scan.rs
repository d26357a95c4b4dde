//! A lexical scan of template sources for what MiniJinja's static analysis does not report: literal names of included templates, and lines.
//!
//! MiniJinja's `undeclared_variables` names the variables a template reads but
//! neither their line nor the templates it includes, extends or imports. This scan
//! finds both well enough for error messages: it walks the `{{ }}` and `{% %}` tags,
//! skipping comments, `raw` blocks and string literals. It runs only on sources that
//! already compiled, so it need not report syntax errors.

/// A template referred to by a literal name in `include`, `extends`, `import` or `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference {
    /// The referred template's name, e.g. `_base.zh-CN.html`.
    pub target: String,
    /// The 1-based line of the tag.
    pub line: usize,
    /// `{% include ... ignore missing %}`: the target may be absent.
    pub optional: bool,
}

/// One `{{ }}` or `{% %}` tag: its body and the byte offset where the body starts.
struct Tag<'a> {
    block: bool,
    body: &'a str,
    offset: usize,
}

/// The byte offset just past the closing `close`, skipping string literals; the end of
/// `source` if the tag is not closed.
fn tag_end(source: &str, from: usize, close: &str) -> usize {
    let bytes = source.as_bytes();
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            q @ (b'"' | b'\'') => i = string_end(bytes, i, q),
            _ if source[i..].starts_with(close) => return i,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The offset just past the string literal opened by `quote` at `start`.
fn string_end(bytes: &[u8], start: usize, quote: u8) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b if b == quote => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// A block tag's body without whitespace-control markers and surrounding blanks.
fn trimmed(body: &str) -> &str {
    body.trim_matches(|c: char| c == '-' || c == '+' || c == '~' || c.is_whitespace())
}

fn tags(source: &str) -> Vec<Tag<'_>> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut in_raw = false;
    while let Some(found) = source[i..].find('{') {
        let start = i + found;
        let rest = &source[start..];
        let (close, block) = if rest.starts_with("{{") {
            ("}}", false)
        } else if rest.starts_with("{%") {
            ("%}", true)
        } else if rest.starts_with("{#") {
            i = source[start..]
                .find("#}")
                .map_or(source.len(), |e| start + e + 2);
            continue;
        } else {
            i = start + 1;
            continue;
        };
        let end = tag_end(source, start + 2, close);
        let body = &source[start + 2..end];
        i = (end + 2).min(source.len());
        if in_raw {
            in_raw = !(block && trimmed(body) == "endraw");
            continue;
        }
        if block && trimmed(body) == "raw" {
            in_raw = true;
            continue;
        }
        out.push(Tag {
            block,
            body,
            offset: start + 2,
        });
    }
    out
}

/// An identifier in a tag and whether it follows a `.` (an attribute, not a variable).
struct Ident<'a> {
    text: &'a str,
    offset: usize,
    attribute: bool,
}

fn idents(body: &str) -> Vec<Ident<'_>> {
    let bytes = body.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut previous = b' ';
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'"' || b == b'\'' {
            i = string_end(bytes, i, b);
            previous = b;
        } else if b.is_ascii_alphabetic() || b == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            out.push(Ident {
                text: &body[start..i],
                offset: start,
                attribute: previous == b'.',
            });
            previous = b'a';
        } else if b.is_ascii_digit() {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                i += 1;
            }
            previous = b'0';
        } else {
            if !b.is_ascii_whitespace() {
                previous = b;
            }
            i += 1;
        }
    }
    out
}

fn line_at(source: &str, offset: usize) -> usize {
    source[..offset].matches('\n').count() + 1
}

/// The templates `source` refers to by a literal name.
pub(crate) fn references(source: &str) -> Vec<Reference> {
    let mut out = Vec::new();
    for tag in tags(source).into_iter().filter(|t| t.block) {
        let body = trimmed(tag.body);
        let Some(keyword) = ["include", "extends", "import", "from"]
            .into_iter()
            .find(|k| body.starts_with(k) && body[k.len()..].starts_with(char::is_whitespace))
        else {
            continue;
        };
        let argument = body[keyword.len()..].trim_start();
        let Some(quote) = argument
            .bytes()
            .next()
            .filter(|q| *q == b'"' || *q == b'\'')
        else {
            continue;
        };
        let end = string_end(argument.as_bytes(), 0, quote);
        if end < 2 || argument.as_bytes()[end - 1] != quote {
            continue;
        }
        out.push(Reference {
            target: argument[1..end - 1].to_owned(),
            line: line_at(source, tag.offset),
            optional: keyword == "include" && body.contains("ignore missing"),
        });
    }
    out
}

/// The first line where `source` reads the variable `name` (not an attribute of that
/// name), if the scan finds one.
pub(crate) fn line_of(source: &str, name: &str) -> Option<usize> {
    tags(source).into_iter().find_map(|tag| {
        idents(tag.body)
            .into_iter()
            .find(|i| i.text == name && !i.attribute)
            .map(|i| line_at(source, tag.offset + i.offset))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_references() {
        let source = "{% extends \"_base.en.html\" %}\n{# {% include 'no.txt' %} #}\n\
                      {%- include '_f.en.txt' ignore missing -%}\n{% include name %}\n\
                      {% raw %}{% include \"raw.txt\" %}{% endraw %}\n\
                      {% from \"_m.en.html\" import button %}{% import '_m.en.txt' as m %}\n\
                      {{ \"{% include 'str.txt' %}\" }}{% includes 'x' %}";
        let got: Vec<_> = references(source)
            .into_iter()
            .map(|r| format!("{}:{}:{}", r.target, r.line, r.optional))
            .collect();
        assert_eq!(
            got,
            [
                "_base.en.html:1:false",
                "_f.en.txt:3:true",
                "_m.en.html:6:false",
                "_m.en.txt:6:false"
            ]
        );
    }

    #[test]
    fn finds_lines() {
        let source = "a {{ x.case }}\n{# case #}\n{{ 'case' }} {{ y\n .case }}\n\
                      {% for r in rows %}\n{{ r.x }}{% endfor %}\n{{ case.number }}";
        for (name, expect) in [
            ("x", Some(1)),
            ("case", Some(7)),
            ("rows", Some(5)),
            ("y", Some(3)),
            ("missing", None),
        ] {
            assert_eq!(line_of(source, name), expect, "{name}");
        }
    }
}
