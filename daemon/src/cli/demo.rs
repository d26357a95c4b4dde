//! `clearflow demo`: walks the shipped complaint process on a running daemon with the
//! sample complaints, then shows where every case stands, which tasks wait for whom and
//! where the mails went.
//!
//! A host command like `tokens`: it reads the daemon's configuration, makes short-lived
//! tokens for one member of each role it acts as (revoked at the end), files the
//! complaints of `examples/flagship` through the public intake, starts the accountability
//! and follow-up samples, and completes tasks as the staff would, one branch per
//! complaint: a key case verified unfounded (the clarification starts), a pending case
//! held for new clues (暂存待查), an anonymous report filed as out of scope.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

use clearflow_runtime::config::Config;
use clearflow_runtime::directory::Directory;
use clearflow_store::Store;

/// The staff the demo acts as, one per role.
struct Staff {
    intake: String,
    handler: String,
    guidance: String,
    leader: String,
    admin: String,
}

/// A token made for the demo, revoked at the end.
struct Token {
    id: String,
    secret: String,
}

struct Demo {
    base: String,
    http: reqwest::Client,
    store: Store,
    tokens: std::collections::BTreeMap<String, Token>,
    /// The user with the `admin` grant (the clock, the outbox).
    admin: String,
}

/// Runs the demo against the daemon configured in `config`, with the samples in `samples`.
pub async fn run(config: Option<&Path>, samples: &Path) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config)?;
    let users: PathBuf = cfg
        .directory
        .users
        .clone()
        .ok_or_else(|| anyhow!("no users file is configured ([directory] users)"))?;
    let directory = Directory::load(&users)
        .map_err(|e| anyhow!("{}", clearflow_runtime::directory::join(&e)))?;
    let staff = staff(&cfg, &directory)?;
    if cfg.intake.workflow.as_deref() != Some("complaint-handling") {
        bail!(
            "the demo files complaints through the public intake: set [intake] workflow = \"complaint-handling\""
        );
    }
    let store = Store::open(&cfg.store)
        .await
        .map_err(|e| anyhow!("opening the store: {e}"))?;
    let mut demo = Demo {
        base: format!("http://{}", cfg.server.listen),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        store,
        tokens: Default::default(),
        admin: staff.admin.clone(),
    };
    let now = clearflow_runtime::clock::ms(clearflow_runtime::make_clock(&cfg.clock)?.now());
    for user in [
        &staff.intake,
        &staff.handler,
        &staff.guidance,
        &staff.leader,
        &staff.admin,
    ] {
        let issued = demo
            .store
            .create_token(
                user,
                Some("clearflow demo"),
                Some(now + 3_600_000),
                "host:demo",
                now,
            )
            .await?;
        demo.tokens.insert(
            user.clone(),
            Token {
                id: issued.record.id,
                secret: issued.token,
            },
        );
    }
    let result = demo.walk(&staff, samples).await;
    for token in demo.tokens.values() {
        let _ = demo.store.revoke_token(&token.id, "host:demo", now).await;
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

/// One member of each role the demo needs, the first by id.
fn staff(cfg: &Config, directory: &Directory) -> anyhow::Result<Staff> {
    let member = |role: &str| -> anyhow::Result<String> {
        directory
            .members(role)
            .first()
            .map(|u| u.id.clone())
            .ok_or_else(|| anyhow!("the users file has no member of role `{role}`"))
    };
    let admin = directory
        .users()
        .find(|u| {
            u.roles
                .iter()
                .any(|r| cfg.roles.get(r).is_some_and(|g| g.admin))
        })
        .map(|u| u.id.clone())
        .ok_or_else(|| anyhow!("the users file has no user with a role granting `admin`"))?;
    Ok(Staff {
        intake: member("intake")?,
        handler: member("handler")?,
        guidance: member("guidance")?,
        leader: member("leader")?,
        admin,
    })
}

impl Demo {
    async fn walk(&self, staff: &Staff, samples: &Path) -> anyhow::Result<()> {
        let read = |name: &str| -> anyhow::Result<Value> {
            let path = samples.join(name);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{}", path.display()))
        };
        let (h, i, g) = (&staff.handler, &staff.intake, &staff.guidance);

        println!("== complaints filed through the public intake (no token)");
        let mut receipts = Vec::new();
        for (file, what) in [
            ("complaint-key.json", "real name, graded key"),
            ("complaint-pending.json", "real name, graded pending"),
            ("complaint-anonymous.json", "anonymous"),
        ] {
            let (id, receipt) = self.intake(&read(file)?, &staff.leader).await?;
            println!("  {file:<26} {what:<28} instance {id}");
            receipts.push((file, id, receipt));
        }
        let (key, pending, anonymous) = (&receipts[0].1, &receipts[1].1, &receipts[2].1);

        println!("\n== staff act on their tasks");
        self.act(i, key, "screen", json!({"decision": "accept"}))
            .await?;
        self.act(i, key, "assign", json!({"handler": h})).await?;
        self.act(
            g,
            key,
            "joint_review",
            json!({"advice": "preliminary_verification"}),
        )
        .await?;
        self.act(
            h,
            key,
            "dispose",
            json!({"disposal": "preliminary_verification"}),
        )
        .await?;
        self.act(
            h,
            key,
            "verify",
            json!({"verdict": "unfounded", "findings": "经核查，反映问题失实。"}),
        )
        .await?;
        self.act(i, pending, "screen", json!({"decision": "accept"}))
            .await?;
        self.act(i, pending, "assign", json!({"handler": h}))
            .await?;
        self.act(h, pending, "dispose", json!({"disposal": "held_pending"}))
            .await?;
        self.act(i, anonymous, "screen", json!({"decision": "out_of_scope"}))
            .await?;
        for (workflow, file) in [
            ("accountability", "accountability.json"),
            ("follow-up-visits", "follow-up.json"),
        ] {
            let v = self
                .call(
                    &staff.leader,
                    "POST",
                    "/v1/instances",
                    Some(json!({"workflow": workflow, "input": read(file)?})),
                )
                .await?;
            println!(
                "  {:<10} started {workflow} ({file}): instance {}",
                staff.leader,
                v["id"].as_str().unwrap_or_default()
            );
        }
        self.settle(&staff.leader).await?;

        println!("\n== what each whistleblower sees with their receipt code");
        for (file, _, receipt) in &receipts {
            let v = self
                .public("/v1/public/status", json!({"receipt": receipt}))
                .await?;
            println!(
                "  {file:<26} {receipt}  status: {}",
                v["status"].as_str().unwrap_or("?")
            );
        }

        let tasks = self
            .call(&staff.leader, "GET", "/v1/tasks?limit=1000", None)
            .await?;
        let tasks: Vec<Value> = tasks["items"].as_array().cloned().unwrap_or_default();

        println!("\n== cases");
        let list = self
            .call(&staff.leader, "GET", "/v1/instances?limit=100", None)
            .await?;
        for inst in list["items"].as_array().into_iter().flatten() {
            let id = inst["id"].as_str().unwrap_or_default();
            let open: Vec<&str> = tasks
                .iter()
                .filter(|t| t["instance_id"] == inst["id"])
                .filter_map(|t| t["step"].as_str())
                .collect();
            println!(
                "  {id}  {:<28} {:<10} {}",
                inst["workflow"].as_str().unwrap_or_default(),
                inst["status"].as_str().unwrap_or_default(),
                if open.is_empty() {
                    String::new()
                } else {
                    format!("task: {}", open.join(", "))
                }
            );
        }

        println!("\n== open tasks and who they wait for");
        for t in &tasks {
            let who = t["assignee"]
                .as_str()
                .map(|a| format!("user {a}"))
                .or_else(|| t["role"].as_str().map(|r| format!("role {r}")))
                .unwrap_or_default();
            println!(
                "  {:<16} {:<20} due {:<10} {}",
                t["step"].as_str().unwrap_or_default(),
                who,
                t["due"]
                    .as_str()
                    .map(|d| &d[..10.min(d.len())])
                    .unwrap_or("-"),
                t["title"].as_str().unwrap_or_default()
            );
        }

        println!("\n== mail (the outbox; `clearflow mail list` shows it too)");
        let mail = self
            .call(&staff.admin, "GET", "/v1/mail?limit=1000", None)
            .await?;
        for m in mail["items"].as_array().into_iter().flatten() {
            let to: Vec<&str> = m["recipients"]["to"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            println!(
                "  {:<6} {:<18} to {:<40} {}",
                m["status"].as_str().unwrap_or_default(),
                m["step"].as_str().unwrap_or_default(),
                to.join(", "),
                m["subject"].as_str().unwrap_or_default(),
            );
        }
        println!(
            "\nMessages to `reporter` are addressed only when handed to the mail server; the \
             maildir transport stores every message as a file (see [mail.transport] path)."
        );
        Ok(())
    }

    fn bearer(&self, user: &str) -> anyhow::Result<&str> {
        self.tokens
            .get(user)
            .map(|t| t.secret.as_str())
            .ok_or_else(|| anyhow!("no demo token for {user}"))
    }

    async fn call(
        &self,
        user: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            "GET" => self.http.get(&url),
            _ => self.http.post(&url),
        }
        .bearer_auth(self.bearer(user)?);
        if let Some(b) = body {
            req = req.json(&b);
        }
        decode(req.send().await.with_context(|| self.unreachable())?, path).await
    }

    async fn public(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .with_context(|| self.unreachable())?;
        decode(resp, path).await
    }

    fn unreachable(&self) -> String {
        format!(
            "the daemon does not answer at {} (start it with ./scripts/run.sh)",
            self.base
        )
    }

    /// Files `body` through the public intake; returns the new instance and the receipt.
    async fn intake(&self, body: &Value, reader: &str) -> anyhow::Result<(String, String)> {
        let path = "/v1/instances?workflow=complaint-handling&limit=1";
        let before = self.call(reader, "GET", path, None).await?["items"][0]["id"].clone();
        let v = self.public("/v1/public/intake", body.clone()).await?;
        let receipt = v["receipt"]
            .as_str()
            .ok_or_else(|| anyhow!("the intake answered without a receipt: {v}"))?
            .to_owned();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let newest = self.call(reader, "GET", path, None).await?["items"][0]["id"].clone();
            if newest != before && newest.is_string() {
                return Ok((newest.as_str().unwrap_or_default().to_owned(), receipt));
            }
            if Instant::now() > deadline {
                bail!("the complaint's instance did not appear");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Completes the open `step` task of `instance` as `user`, waiting for it to open.
    async fn act(&self, user: &str, instance: &str, step: &str, form: Value) -> anyhow::Result<()> {
        let path = format!("/v1/tasks?instance={instance}&status=open&limit=100");
        let deadline = Instant::now() + Duration::from_secs(60);
        let task = loop {
            let v = self.call(user, "GET", &path, None).await?;
            if let Some(t) = v["items"]
                .as_array()
                .and_then(|items| items.iter().find(|t| t["step"] == step))
            {
                break t.clone();
            }
            if Instant::now() > deadline {
                bail!("{user} never saw an open `{step}` task of {instance}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let id = task["id"].as_str().unwrap_or_default();
        self.call(
            user,
            "POST",
            &format!("/v1/tasks/{id}/complete"),
            Some(json!({ "form": form })),
        )
        .await?;
        println!(
            "  {user:<10} completed {step:<14} {}",
            task["title"].as_str().unwrap_or_default()
        );
        Ok(())
    }

    /// Waits until no running instance has work due now.
    async fn settle(&self, user: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let clock = self
                .call(&self.admin, "GET", "/v1/admin/clock", None)
                .await?;
            let now = clock["now"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map_or(i64::MAX, |t| t.timestamp_millis());
            let v = self
                .call(user, "GET", "/v1/instances?status=running&limit=1000", None)
                .await?;
            let busy = v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|i| i["wake_at"].as_i64().is_some_and(|w| w <= now));
            if !busy || Instant::now() > deadline {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn decode(resp: reqwest::Response, path: &str) -> anyhow::Result<Value> {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        Ok(body)
    } else {
        bail!(
            "{path}: {} ({}): {}",
            body["title"].as_str().unwrap_or("request failed"),
            status.as_u16(),
            body["detail"].as_str().unwrap_or_default()
        )
    }
}
