//! A small HTTP client for the daemon's API, turning problem details into errors.

use serde_json::Value;

/// A client of one daemon.
pub struct Client {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Client {
    /// A client of the daemon at `base` (e.g. `http://127.0.0.1:7878`).
    pub fn new(base: &str) -> Client {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            token: None,
        }
    }

    /// The same client sending `Authorization: Bearer TOKEN` on every request.
    pub fn with_token(mut self, token: Option<String>) -> Client {
        self.token = token.filter(|t| !t.trim().is_empty());
        self
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => req.bearer_auth(t.trim()),
            None => req,
        }
    }

    /// GETs `path` and returns the JSON body.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .auth(self.http.get(format!("{}{path}", self.base)))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        decode(resp).await
    }

    /// POSTs JSON to `path` and returns the JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let resp = self
            .auth(self.http.post(format!("{}{path}", self.base)))
            .json(body)
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
        anyhow::bail!(
            "{} ({}): {detail}",
            body["title"].as_str().unwrap_or("request failed"),
            status.as_u16()
        )
    }
}
