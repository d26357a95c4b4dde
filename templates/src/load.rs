//! Reading a template folder: every file compiled, every problem reported at once.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use minijinja::{AutoEscape, Environment, UndefinedBehavior};

use crate::layout::{self, LOCALES, NameProblem, Part};
use crate::scan;
use crate::templates::{Inner, Templates, Variant};

/// The most instructions one part may execute, so that a template cannot loop
/// forever; a digest of a few thousand rows stays far below it.
const FUEL: u64 = 2_000_000;

/// A problem in the template folder, with the file and, when known, the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct TemplateError {
    /// The file (or the folder, when it cannot be read).
    pub path: PathBuf,
    /// The 1-based line, when the problem has one.
    pub line: Option<usize>,
    /// What is wrong.
    pub kind: ErrorKind,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {}", self.kind)
    }
}

/// What is wrong in the template folder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The folder or a file could not be read.
    #[error("cannot read: {0}")]
    Io(String),
    /// The file name is not `NAME.LOCALE.PART` with a part of `subject`, `txt` or `html`.
    #[error(
        "file name must be NAME.LOCALE.PART with PART one of subject, txt, html \
         (e.g. `task-assigned.zh-CN.txt`)"
    )]
    FileName,
    /// The NAME in the file name has characters other than `a-z`, `0-9` and `-`.
    #[error("template name `{0}` must use only a-z, 0-9 and `-` (a leading `_` marks a partial)")]
    TemplateName(String),
    /// The LOCALE in the file name is not a known locale.
    #[error("unknown locale `{0}` (known: {known})", known = LOCALES.join(", "))]
    UnknownLocale(String),
    /// MiniJinja could not compile the file.
    #[error("{0}")]
    Syntax(String),
    /// A `.subject` file has more than one line.
    #[error("the subject must be a single line")]
    MultiLineSubject,
    /// A subject or HTML part exists for a name and locale without the required text part.
    #[error("no text part: `{0}` is required beside it")]
    MissingText(String),
    /// A text or HTML part exists for a name and locale without a subject.
    #[error("no subject: `{0}` is required beside it")]
    MissingSubject(String),
    /// `include`, `extends`, `import` or `from` names a template that is not in the folder.
    #[error("refers to `{0}`, which is not in the folder")]
    MissingReference(String),
}

/// Reads every template in `dir` (not its subfolders).
///
/// Files are named `NAME.LOCALE.PART`; hidden files and `*.md` are skipped. Returns
/// every problem found, sorted by file and line: unreadable files, bad names, unknown
/// locales, syntax errors, multi-line subjects, a name and locale lacking its subject
/// or text part, and literal references to templates that do not exist.
pub fn load_dir(dir: &Path) -> Result<Templates, Vec<TemplateError>> {
    let error = |path: PathBuf, line, kind| TemplateError { path, line, kind };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            return Err(vec![error(
                dir.to_owned(),
                None,
                ErrorKind::Io(e.to_string()),
            )]);
        }
    };
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for entry in entries {
        match entry.and_then(|e| Ok((e.file_type()?, e.path()))) {
            Ok((kind, path)) if !kind.is_dir() => files.push(path),
            Ok(_) => {}
            Err(e) => errors.push(error(dir.to_owned(), None, ErrorKind::Io(e.to_string()))),
        }
    }
    files.sort();

    let mut env = environment();
    // Every well-named file, compiled or not, so a file with a syntax error does not
    // also show up as a missing reference or a missing part.
    let mut named = BTreeSet::new();
    let mut parts: BTreeMap<(String, &'static str), BTreeSet<Part>> = BTreeMap::new();
    let mut sources = Vec::new();
    for path in files {
        let file = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let parsed = match layout::parse_file_name(&file) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => continue,
            Err(problem) => {
                let kind = match problem {
                    NameProblem::Shape => ErrorKind::FileName,
                    NameProblem::Name(name) => ErrorKind::TemplateName(name),
                    NameProblem::Locale(locale) => ErrorKind::UnknownLocale(locale),
                };
                errors.push(error(path, None, kind));
                continue;
            }
        };
        named.insert(file.clone());
        if !parsed.is_partial() {
            parts
                .entry((parsed.name.clone(), parsed.locale))
                .or_default()
                .insert(parsed.part);
        }
        let source = match std::fs::read_to_string(&path) {
            Ok(source) => source,
            Err(e) => {
                errors.push(error(path, None, ErrorKind::Io(e.to_string())));
                continue;
            }
        };
        if parsed.part == Part::Subject && source.trim_end().contains('\n') {
            errors.push(error(path.clone(), Some(2), ErrorKind::MultiLineSubject));
        }
        match env.add_template_owned(file.clone(), source.clone()) {
            Ok(()) => sources.push((path, source)),
            Err(e) => {
                let message = match e.detail() {
                    Some(detail) => format!("{}: {detail}", e.kind()),
                    None => e.kind().to_string(),
                };
                errors.push(error(path, e.line(), ErrorKind::Syntax(message)));
            }
        }
    }

    for (path, source) in &sources {
        for reference in scan::references(source) {
            if !reference.optional && !named.contains(&reference.target) {
                errors.push(error(
                    path.clone(),
                    Some(reference.line),
                    ErrorKind::MissingReference(reference.target),
                ));
            }
        }
    }

    let mut templates: BTreeMap<String, Vec<Variant>> = BTreeMap::new();
    for ((name, locale), present) in parts {
        let path_of = |part| dir.join(layout::file_name(&name, locale, part));
        let first = *present.first().expect("an entry exists only with a part");
        if !present.contains(&Part::Text) {
            let expected = layout::file_name(&name, locale, Part::Text);
            errors.push(error(
                path_of(first),
                None,
                ErrorKind::MissingText(expected),
            ));
        }
        if !present.contains(&Part::Subject) {
            let expected = layout::file_name(&name, locale, Part::Subject);
            errors.push(error(
                path_of(first),
                None,
                ErrorKind::MissingSubject(expected),
            ));
        }
        templates.entry(name).or_default().push(Variant {
            locale,
            html: present.contains(&Part::Html),
        });
    }
    for variants in templates.values_mut() {
        variants.sort_by_key(|v| LOCALES.iter().position(|l| *l == v.locale));
    }

    if !errors.is_empty() {
        errors.sort_by(|a, b| (&a.path, a.line).cmp(&(&b.path, b.line)));
        return Err(errors);
    }
    Ok(Templates::new(Inner {
        env,
        dir: dir.to_owned(),
        templates,
    }))
}

/// The MiniJinja environment every template set uses.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Escaping follows the file, not the includer: `.html` files escape, the subject
    // and text parts do not.
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    // A null (e.g. a recipient without a name) prints as nothing, not `none`.
    env.set_formatter(|out, state, value| {
        if value.is_none() {
            Ok(())
        } else {
            minijinja::escape_formatter(out, state, value)
        }
    });
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(true);
    env.set_fuel(Some(FUEL));
    env
}
