//! `chatty`: a misbehaving test plugin that writes as much log as its input asks for
//! (through the log import and stderr), so the host's per-call log bound can be observed.

use clearflow_plugin_sdk::{Context, StepError, export_step};
use serde::Deserialize;
use serde_json::{Value, json};

/// How much to write.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct Input {
    /// Log lines through the log import.
    pub lines: usize,
    /// Bytes per line.
    pub line_bytes: usize,
    /// Bytes written to stderr in one go.
    pub stderr_bytes: usize,
}

impl Default for Input {
    fn default() -> Self {
        Input {
            lines: 1,
            line_bytes: 16,
            stderr_bytes: 0,
        }
    }
}

/// Writes the log and returns how much it wrote.
pub fn run(ctx: &Context, input: Input) -> Result<Value, StepError> {
    let line = "x".repeat(input.line_bytes);
    for _ in 0..input.lines {
        ctx.info(&line);
    }
    if input.stderr_bytes > 0 {
        eprintln!("{}", "e".repeat(input.stderr_bytes));
    }
    Ok(json!({ "wrote": input.lines * input.line_bytes + input.stderr_bytes }))
}

export_step!(run);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_what_it_wrote() {
        let ctx = Context::new("w", "i", "s", 1, "{}");
        let out = run(
            &ctx,
            Input {
                lines: 3,
                line_bytes: 4,
                stderr_bytes: 2,
            },
        )
        .unwrap();
        assert_eq!(out, json!({ "wrote": 14 }));
    }
}
