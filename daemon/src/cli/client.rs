//! A small HTTP client for the daemon's API, turning problem details into errors.
//!
//! Every request carries `Authorization: Bearer TOKEN`, the token read from the file
//! given with `--token-file`, else `CLEARFLOW_TOKEN`, else `~/.config/clearflow/token`.

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;

/// The `--token-file` of this run (set once by the command line before any client).
static TOKEN_FILE: OnceLock<PathBuf> = OnceLock::new();

/// Uses `path` for the token of every client of this process.
pub fn set_token_file(path: PathBuf) {
    let _ = TOKEN_FILE.set(path);
}

/// The default credentials file: `$XDG_CONFIG_HOME/clearflow/token` or
/// `~/.config/clearflow/token`.
pub fn default_token_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("clearflow").join("token"))
}

/// The token to send: `Ok(None)` when none is configured anywhere.
fn token() -> Result<Option<String>, String> {
    let read = |path: &PathBuf| -> Result<Option<String>, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading the token file {}: {e}", path.display()))?;
        let t = text.trim();
        if t.is_empty() {
            return Err(format!("the token file {} is empty", path.display()));
        }
        Ok(Some(t.to_owned()))
    };
    if let Some(path) = TOKEN_FILE.get() {
        return read(path);
    }
    if let Ok(t) = std::env::var("CLEARFLOW_TOKEN")
        && !t.trim().is_empty()
    {
        return Ok(Some(t.trim().to_owned()));
    }
    match default_token_file() {
        Some(path) if path.exists() => read(&path),
        _ => Ok(None),
    }
}

/// A client of one daemon.
pub struct Client {
    base: String,
    http: reqwest::Client,
    token: Result<Option<String>, String>,
}

impl Client {
    /// A client of the daemon at `base` (e.g. `http://127.0.0.1:7878`).
    pub fn new(base: &str) -> Client {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            token: token(),
        }
    }

    fn authorized(&self, req: reqwest::RequestBuilder) -> anyhow::Result<reqwest::RequestBuilder> {
        match &self.token {
            Ok(Some(t)) => Ok(req.bearer_auth(t)),
            Ok(None) => Ok(req),
            Err(e) => anyhow::bail!("{e}"),
        }
    }

    /// GETs `path` and returns the JSON body.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .authorized(self.http.get(format!("{}{path}", self.base)))?
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        decode(resp).await
    }

    /// POSTs JSON to `path` and returns the JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let resp = self
            .authorized(self.http.post(format!("{}{path}", self.base)).json(body))?
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        decode(resp).await
    }

    fn unreachable(&self, e: reqwest::Error) -> anyhow::Error {
        anyhow::anyhow!(
            "cannot reach the daemon at {}: {e} (is `clearflow serve` running? set --server or CLEARFLOW_SERVER)",
            self.base
        )
    }
}

async fn decode(resp: reqwest::Response) -> anyhow::Result<Value> {
    let status = resp.status();
    let text = resp.text().await?;
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status.is_success() {
        Ok(body)
    } else {
        let detail = match body["errors"].as_array() {
            // Every reason of a refusal, one per line.
            Some(errors) if errors.len() > 1 => errors
                .iter()
                .map(|e| format!("\n  - {}", e.as_str().unwrap_or_default()))
                .collect::<String>(),
            _ => body["detail"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| body.to_string()),
        };
        let hint = if status == reqwest::StatusCode::UNAUTHORIZED {
            "\n  give a token in CLEARFLOW_TOKEN, --token-file or ~/.config/clearflow/token \
             (an administrator creates one with `clearflow tokens create --user ID`)"
        } else {
            ""
        };
        anyhow::bail!(
            "{} ({}): {detail}{hint}",
            body["title"].as_str().unwrap_or("request failed"),
            status.as_u16()
        )
    }
}
