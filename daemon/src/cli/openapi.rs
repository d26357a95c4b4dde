//! `clearflow openapi`: prints the OpenAPI document of the HTTP API, as committed in
//! `docs/openapi.json` (`cargo run -p clearflow -- openapi > docs/openapi.json`).

use std::process::ExitCode;

/// Prints the document: pretty JSON with a final newline.
pub fn print() -> ExitCode {
    print!("{}", clearflow_api::openapi::to_json());
    ExitCode::SUCCESS
}
