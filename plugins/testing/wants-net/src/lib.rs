//! `wants-net`: a misbehaving test plugin that opens a TCP connection, which the sandbox must not allow.

use clearflow_plugin_sdk::{Context, StepError, export_step};
use serde::Deserialize;
use serde_json::Value;

/// Where to connect.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct Input {
    /// `host:port` to connect to.
    pub addr: String,
}

impl Default for Input {
    fn default() -> Self {
        Input {
            addr: "127.0.0.1:9".to_owned(),
        }
    }
}

/// Connects to `addr` and reports the local address.
pub fn run(_ctx: &Context, input: Input) -> Result<Value, StepError> {
    let stream = std::net::TcpStream::connect(&input.addr)
        .map_err(|e| StepError::transient(format!("cannot connect to {}: {e}", input.addr)))?;
    let local = stream
        .local_addr()
        .map_err(|e| StepError::permanent(e.to_string()))?;
    Ok(serde_json::json!({ "local": local.to_string() }))
}

export_step!(run);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_address_is_an_error() {
        let err = clearflow_plugin_sdk::testing::call(run, "", r#"{"addr": "not an address"}"#)
            .unwrap_err();
        assert!(
            matches!(err, StepError::Transient(m) if m.starts_with("cannot connect to not an address"))
        );
    }
}
