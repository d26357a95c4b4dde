//! Rendering one template for one recipient: locale choice, strict variables, a one-line subject.

use std::fmt;
use std::path::PathBuf;

use crate::layout::{self, Part};
use crate::templates::Templates;

/// A rendered email: the locale chosen and the parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The locale rendered, one of [`crate::LOCALES`].
    pub locale: String,
    /// The subject, on one line: whitespace runs, newlines included, become one space.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body, when the template has one.
    pub html: Option<String>,
}

/// Why a template could not be rendered; neither case gets better by retrying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// There is no template of that name: the workflow refers to one that was not
    /// loaded, which workflow validation reports earlier.
    #[error("no template named `{0}`")]
    NotFound(String),
    /// The data does not fit the template: a variable it reads is missing, a filter
    /// failed, or the template ran out of fuel.
    #[error("{}: {message}", Location { path, line: *line })]
    Failed {
        /// The file where rendering failed (a partial, when it failed there).
        path: PathBuf,
        /// The 1-based line, when known.
        line: Option<usize>,
        /// What went wrong, with the chain of includes.
        message: String,
    },
}

struct Location<'a> {
    path: &'a PathBuf,
    line: Option<usize>,
}

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        Ok(())
    }
}

impl Templates {
    /// Renders the subject, text and optional HTML part of `name` with `ctx` (an
    /// object whose keys are the provided names).
    ///
    /// The locale is `locale` when the template has it (ignoring case, then by
    /// language: `en-US` finds `en`), else `zh-CN`, else `en`. Reading a variable that
    /// `ctx` lacks is an error; a null prints as nothing. HTML parts escape every
    /// value; subject and text parts do not.
    pub fn render(
        &self,
        name: &str,
        locale: Option<&str>,
        ctx: &serde_json::Value,
    ) -> Result<Rendered, RenderError> {
        let not_found = || RenderError::NotFound(name.to_owned());
        let variants = self.inner.templates.get(name).ok_or_else(not_found)?;
        let available: Vec<&'static str> = variants.iter().map(|v| v.locale).collect();
        let chosen = layout::choose_locale(&available, locale).ok_or_else(not_found)?;
        let variant = variants
            .iter()
            .find(|v| v.locale == chosen)
            .ok_or_else(not_found)?;
        let ctx = minijinja::Value::from_serialize(ctx);
        let part = |part: Part| {
            let file = layout::file_name(name, chosen, part);
            let template = self
                .inner
                .env
                .get_template(&file)
                .map_err(|e| self.failed(&e))?;
            template.render(&ctx).map_err(|e| self.failed(&e))
        };
        let subject = part(Part::Subject)?
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if subject.is_empty() {
            return Err(RenderError::Failed {
                path: self
                    .inner
                    .dir
                    .join(layout::file_name(name, chosen, Part::Subject)),
                line: None,
                message: "the subject renders empty".to_owned(),
            });
        }
        let text = part(Part::Text)?;
        let html = if variant.html {
            Some(part(Part::Html)?)
        } else {
            None
        };
        Ok(Rendered {
            locale: chosen.to_owned(),
            subject,
            text,
            html,
        })
    }

    /// Turns a MiniJinja error into [`RenderError::Failed`] at the innermost template,
    /// naming the includes it came through.
    fn failed(&self, error: &minijinja::Error) -> RenderError {
        let mut chain = vec![error];
        let mut source = std::error::Error::source(error);
        while let Some(inner) = source {
            if let Some(inner) = inner.downcast_ref::<minijinja::Error>() {
                chain.push(inner);
            }
            source = inner.source();
        }
        let innermost = chain[chain.len() - 1];
        let mut message = match innermost.detail() {
            Some(detail) => format!("{}: {detail}", innermost.kind()),
            None => innermost.kind().to_string(),
        };
        for outer in chain[..chain.len() - 1].iter().rev() {
            if let Some(name) = outer.name() {
                message.push_str(&format!(", from {name}"));
                if let Some(line) = outer.line() {
                    message.push_str(&format!(":{line}"));
                }
            }
        }
        RenderError::Failed {
            path: self.inner.dir.join(innermost.name().unwrap_or_default()),
            line: innermost.line(),
            message,
        }
    }
}
