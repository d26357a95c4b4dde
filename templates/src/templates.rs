//! The loaded template set and the load-time check that a notify step provides what its template reads.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use minijinja::Environment;

use crate::layout::{self, DEFAULT_LOCALE, Part};
use crate::scan;

/// Names that templates read without anyone providing them: loop and macro state.
const IMPLICIT: &[&str] = &["loop", "super", "self", "caller", "varargs", "kwargs"];

/// A loaded, compiled template folder; cheap to clone and shared between threads.
#[derive(Clone)]
pub struct Templates {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub env: Environment<'static>,
    pub dir: PathBuf,
    /// Templates (not partials) by name, with their locales in [`crate::LOCALES`] order.
    pub templates: BTreeMap<String, Vec<Variant>>,
}

/// One locale of a template; its subject and text parts always exist.
pub(crate) struct Variant {
    pub locale: &'static str,
    pub html: bool,
}

impl Variant {
    pub fn parts(&self) -> impl Iterator<Item = Part> + '_ {
        Part::ALL
            .into_iter()
            .filter(|p| *p != Part::Html || self.html)
    }
}

/// A variable a template reads and where.
struct Read {
    /// The dotted path, e.g. `case.number`.
    path: String,
    /// The file that reads it.
    file: String,
    /// The template that includes `file`, when it is a partial.
    via: Option<String>,
}

impl Templates {
    pub(crate) fn new(inner: Inner) -> Templates {
        Templates {
            inner: Arc::new(inner),
        }
    }

    /// The names of the templates, sorted; partials (`_base`) are not templates.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.inner.templates.keys().map(String::as_str)
    }

    /// The locales `name` is written in, the default first; empty for an unknown name.
    pub fn locales(&self, name: &str) -> Vec<&str> {
        self.inner
            .templates
            .get(name)
            .map(|variants| variants.iter().map(|v| v.locale).collect())
            .unwrap_or_default()
    }

    /// The variables `name` reads in any locale and part, including through the
    /// partials it refers to, as dotted paths (`case.number`); `None` for an unknown
    /// name. Loop variables, macro arguments and built-in functions are left out.
    pub fn variables(&self, name: &str) -> Option<BTreeSet<String>> {
        let variants = self.inner.templates.get(name)?;
        Some(
            variants
                .iter()
                .flat_map(|v| self.reads(name, v))
                .map(|read| read.path)
                .collect(),
        )
    }

    /// The load-time check of a notify step: `name` exists, at least in the default
    /// locale, and every variable it reads, in every locale and part and through the
    /// partials it includes, is under one of the `provided` top-level names (the
    /// step's `data:` keys and [`crate::ALWAYS_PROVIDED`]); reading `case.number` needs
    /// `case`. Returns every problem as text naming the file and, when found, the line.
    ///
    /// A partial is checked as if it read the step's names directly, so a partial
    /// should take per-row values as macro arguments, not from the includer's loop.
    pub fn check(&self, name: &str, provided: &BTreeSet<String>) -> Result<(), Vec<String>> {
        let Some(variants) = self.inner.templates.get(name) else {
            let expected = |part| {
                let file = layout::file_name(name, DEFAULT_LOCALE, part);
                self.inner.dir.join(file).display().to_string()
            };
            return Err(vec![format!(
                "no template `{name}`: expected `{}` and `{}`",
                expected(Part::Subject),
                expected(Part::Text),
            )]);
        };
        let mut problems = Vec::new();
        if !variants.iter().any(|v| v.locale == DEFAULT_LOCALE) {
            problems.push(format!(
                "template `{name}` has no {DEFAULT_LOCALE} variant, the default locale (expected `{}`)",
                self.inner
                    .dir
                    .join(layout::file_name(name, DEFAULT_LOCALE, Part::Text))
                    .display()
            ));
        }
        let mut reported = BTreeSet::new();
        for read in variants.iter().flat_map(|v| self.reads(name, v)) {
            if is_provided(&read.path, provided)
                || !reported.insert((read.file.clone(), read.path.clone()))
            {
                continue;
            }
            let top = read.path.split('.').next().unwrap_or_default();
            let line = self
                .source(&read.file)
                .and_then(|source| scan::line_of(&source, top));
            let mut problem = self.inner.dir.join(&read.file).display().to_string();
            if let Some(line) = line {
                problem.push_str(&format!(":{line}"));
            }
            problem.push_str(&format!(
                ": reads `{}`, but the step does not provide `{top}`",
                read.path
            ));
            if let Some(via) = read.via {
                problem.push_str(&format!(" (used by `{via}`)"));
            }
            problems.push(problem);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    fn source(&self, file: &str) -> Option<String> {
        self.inner
            .env
            .get_template(file)
            .ok()
            .map(|t| t.source().to_owned())
    }

    /// Every variable one locale of `name` reads, file by file, following literal
    /// references into partials (each file once).
    fn reads(&self, name: &str, variant: &Variant) -> Vec<Read> {
        let globals: BTreeSet<String> = self
            .inner
            .env
            .globals()
            .map(|(k, _)| k.to_owned())
            .collect();
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        let mut queue: Vec<(String, Option<String>)> = variant
            .parts()
            .map(|part| (layout::file_name(name, variant.locale, part), None))
            .collect();
        while let Some((file, via)) = queue.pop() {
            if !seen.insert(file.clone()) {
                continue;
            }
            let Ok(template) = self.inner.env.get_template(&file) else {
                continue;
            };
            let mut paths: Vec<String> = template
                .undeclared_variables(true)
                .into_iter()
                .filter(|path| {
                    let top = path.split('.').next().unwrap_or_default();
                    !IMPLICIT.contains(&top) && !globals.contains(top)
                })
                .collect();
            paths.sort();
            out.extend(paths.into_iter().map(|path| Read {
                path,
                file: file.clone(),
                via: via.clone(),
            }));
            let includer = via.clone().unwrap_or_else(|| file.clone());
            for reference in scan::references(template.source()) {
                queue.push((reference.target, Some(includer.clone())));
            }
        }
        out.sort_by(|a, b| (&a.file, &a.path).cmp(&(&b.file, &b.path)));
        out
    }
}

/// Whether `path` (`case.number`) is under a provided name: `case` or `case.number`.
fn is_provided(path: &str, provided: &BTreeSet<String>) -> bool {
    path.match_indices('.')
        .map(|(i, _)| &path[..i])
        .chain([path])
        .any(|prefix| provided.contains(prefix))
}

impl fmt::Debug for Templates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Templates")
            .field("dir", &self.inner.dir)
            .field("names", &self.names().collect::<Vec<_>>())
            .finish()
    }
}
