//! The template folder's file-name rule: `NAME.LOCALE.PART`, e.g. `task-assigned.zh-CN.txt`.
//!
//! A name starting with `_` (`_base.zh-CN.html`) is a partial: it may be included,
//! extended or imported by other templates but is not a template of its own.

use std::fmt;

/// The locales templates may be written in, in fallback order: the first is the default.
pub const LOCALES: &[&str] = &["zh-CN", "en"];

/// The default locale, used when a recipient's locale has no variant.
pub const DEFAULT_LOCALE: &str = LOCALES[0];

/// One part of an email, told by the file's extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    /// `.subject`: the one-line subject; not escaped.
    Subject,
    /// `.txt`: the plain-text body, required; not escaped.
    Text,
    /// `.html`: the optional HTML body; auto-escaped.
    Html,
}

impl Part {
    /// Every part, in the order they are rendered.
    pub const ALL: [Part; 3] = [Part::Subject, Part::Text, Part::Html];

    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Part::Subject => "subject",
            Part::Text => "txt",
            Part::Html => "html",
        }
    }

    fn from_extension(ext: &str) -> Option<Part> {
        Part::ALL.into_iter().find(|p| p.extension() == ext)
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

/// A template file's name, split into its three components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileName {
    /// `task-assigned`, or `_base` for a partial.
    pub name: String,
    /// One of [`LOCALES`].
    pub locale: &'static str,
    /// Which part of the mail.
    pub part: Part,
}

impl FileName {
    /// Whether this is a partial (`_base`), not a template of its own.
    pub fn is_partial(&self) -> bool {
        self.name.starts_with('_')
    }
}

/// The file name a template part is stored under, e.g. `digest.en.html`.
pub(crate) fn file_name(name: &str, locale: &str, part: Part) -> String {
    format!("{name}.{locale}.{}", part.extension())
}

/// Why a file name does not follow the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NameProblem {
    /// Not of the form `NAME.LOCALE.PART` with a known part.
    Shape,
    /// The name has characters other than `a-z`, `0-9`, `-` and a leading `_`.
    Name(String),
    /// The locale is not one of [`LOCALES`].
    Locale(String),
}

/// Splits a file name; `Ok(None)` for files that do not belong to the template set
/// and are skipped: hidden files and Markdown (`README.md`).
pub(crate) fn parse_file_name(file: &str) -> Result<Option<FileName>, NameProblem> {
    if file.starts_with('.') || file.ends_with(".md") {
        return Ok(None);
    }
    let mut pieces = file.rsplitn(3, '.');
    let (Some(ext), Some(locale), Some(name)) = (pieces.next(), pieces.next(), pieces.next())
    else {
        return Err(NameProblem::Shape);
    };
    let part = Part::from_extension(ext).ok_or(NameProblem::Shape)?;
    let body = name.strip_prefix('_').unwrap_or(name);
    let valid = !body.is_empty()
        && body
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(NameProblem::Name(name.to_owned()));
    }
    let locale = LOCALES
        .iter()
        .copied()
        .find(|l| *l == locale)
        .ok_or_else(|| NameProblem::Locale(locale.to_owned()))?;
    Ok(Some(FileName {
        name: name.to_owned(),
        locale,
        part,
    }))
}

/// Picks the locale to render among `available` (each one of [`LOCALES`]): the
/// requested one (ignoring case, then by language, so `en-US` finds `en` and `zh`
/// finds `zh-CN`), else the default locale, else the next in [`LOCALES`].
pub(crate) fn choose_locale(
    available: &[&'static str],
    requested: Option<&str>,
) -> Option<&'static str> {
    let language = |tag: &str| {
        tag.split(['-', '_'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    let requested = requested.map(str::trim).filter(|r| !r.is_empty());
    let exact = requested.and_then(|r| available.iter().find(|l| l.eq_ignore_ascii_case(r)));
    let by_language =
        || requested.and_then(|r| available.iter().find(|l| language(l) == language(r)));
    let fallback = || {
        LOCALES
            .iter()
            .find_map(|l| available.iter().find(|a| *a == l))
    };
    exact.or_else(by_language).or_else(fallback).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(file: &str) -> String {
        match parse_file_name(file) {
            Ok(None) => "skipped".to_owned(),
            Ok(Some(f)) => format!("{} {} {}", f.name, f.locale, f.part),
            Err(e) => format!("{e:?}"),
        }
    }

    #[test]
    fn file_names() {
        for (file, expect) in [
            ("task-assigned.zh-CN.txt", "task-assigned zh-CN txt"),
            ("digest.en.subject", "digest en subject"),
            ("_base.en.html", "_base en html"),
            ("README.md", "skipped"),
            (".digest.en.txt.swp", "skipped"),
            ("digest.txt", "Shape"),
            ("digest.en.htm", "Shape"),
            ("digest.fr.txt", "Locale(\"fr\")"),
            ("digest.zh-cn.txt", "Locale(\"zh-cn\")"),
            ("Digest.en.txt", "Name(\"Digest\")"),
            ("_.en.txt", "Name(\"_\")"),
            ("a.b.en.txt", "Name(\"a.b\")"),
        ] {
            assert_eq!(parse(file), expect, "{file}");
        }
    }

    #[test]
    fn locale_choice() {
        let both: &[&'static str] = &["zh-CN", "en"];
        let en_only: &[&'static str] = &["en"];
        for (available, requested, expect) in [
            (both, Some("en"), Some("en")),
            (both, Some("EN-us"), Some("en")),
            (both, Some("zh"), Some("zh-CN")),
            (both, Some("zh-TW"), Some("zh-CN")),
            (both, Some("fr"), Some("zh-CN")),
            (both, Some(""), Some("zh-CN")),
            (both, None, Some("zh-CN")),
            (en_only, Some("zh-CN"), Some("en")),
            (en_only, None, Some("en")),
            (&[], None, None),
        ] {
            assert_eq!(choose_locale(available, requested), expect, "{requested:?}");
        }
    }
}
