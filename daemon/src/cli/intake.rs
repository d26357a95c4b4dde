//! Whistleblower commands: `clearflow status --receipt CODE` and `clearflow identity keygen`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;

use super::client::Client;
use super::{Remote, print_value};

/// `clearflow identity …`
#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Write a new random identity key (base64, mode 0600) to FILE; never overwrites.
    Keygen {
        /// Where to write the key (then set `[identity] key_file` to it).
        file: PathBuf,
    },
}

/// Runs `clearflow identity …`.
pub fn identity(command: IdentityCommand) -> anyhow::Result<ExitCode> {
    match command {
        IdentityCommand::Keygen { file } => {
            clearflow_runtime::identity::keygen(&file)
                .map_err(|e| anyhow::anyhow!("writing the key to {}: {e}", file.display()))?;
            eprintln!(
                "wrote a new identity key to {} (mode 0600). Back it up apart from the database: \
                 without it no sealed identity can be read again.",
                file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs `clearflow status --receipt CODE` (`-` reads the code from standard input, so
/// it stays out of the shell history and the process list).
pub async fn status(receipt: &str, remote: &Remote) -> anyhow::Result<ExitCode> {
    let code = if receipt == "-" {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        line.trim().to_owned()
    } else {
        receipt.to_owned()
    };
    let client = Client::new(&remote.server);
    let v = client
        .post("/v1/public/status", &json!({ "receipt": code }))
        .await?;
    print_value(&v, remote.json, |v| {
        let mut out = format!("status: {}", v["status"].as_str().unwrap_or_default());
        if let Some(f) = v["feedback"].as_str() {
            out += &format!("\nfeedback: {f}");
        }
        out
    });
    Ok(ExitCode::SUCCESS)
}
