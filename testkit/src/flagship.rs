//! The shipped process end to end: a daemon with the repository's workflows, templates,
//! calendars and built-in plugins, the demo organisation (`config/users.toml` and the
//! `[roles]` of `config/clearflow.toml`), public intake with a sealed identity key, and a
//! real SMTP server on loopback.
//!
//! Used as `clearflow_testkit::flagship`.
//! Staff act through the API with their own tokens ([`Flagship::token`]); time moves with
//! the manual clock ([`Daemon::set_clock`], [`Daemon::advance`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::smtp::{ServerOptions, SmtpServer};
use crate::{Backend, Daemon, Options};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `[[plugins]]` for the built-in plugins in `plugins/dist`, pinned to `SHA256SUMS`.
pub fn builtin_plugins() -> String {
    let mut out = String::from("\n[plugin_host]\ncache_dir = \"plugin-cache\"\n");
    for name in [
        "grade-report",
        "assess-fault-tolerance",
        "render-document",
        "file-to-records",
        "impact-period",
    ] {
        out += &crate::dist_plugin(name);
    }
    out
}

/// The `[roles.*]` tables of the shipped configuration, except `admin` (the harness has
/// its own).
pub fn shipped_roles() -> String {
    let text = std::fs::read_to_string(root().join("config/clearflow.toml")).expect("config");
    let table: toml::Table = toml::from_str(&text).expect("config/clearflow.toml parses");
    let mut out = String::new();
    for (name, grants) in table["roles"].as_table().expect("[roles]") {
        if name == "admin" {
            continue;
        }
        out += &format!("\n[roles.{name}]\n");
        for (key, value) in grants.as_table().expect("a role is a table") {
            let value = match value {
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(a) => serde_json::to_string(
                    &a.iter()
                        .map(|v| v.as_str().expect("workflow names"))
                        .collect::<Vec<_>>(),
                )
                .expect("json"),
                other => panic!("unexpected `{key}` in [roles.{name}]: {other:?}"),
            };
            out += &format!("{key} = {value}\n");
        }
    }
    out
}

/// A running flagship daemon with its SMTP server.
pub struct Flagship {
    /// The daemon.
    pub d: Daemon,
    /// The SMTP server every mail goes to.
    pub smtp: SmtpServer,
    tokens: HashMap<String, String>,
}

impl Flagship {
    /// Starts the shipped process on `backend` with the manual clock at `at`.
    pub fn start(backend: Backend, at: DateTime<Utc>) -> Flagship {
        Flagship::start_with(backend, at, "")
    }

    /// [`Flagship::start`] with `config` appended to the configuration file (e.g. a
    /// `[web]` table).
    pub fn start_with(backend: Backend, at: DateTime<Utc>, config: &str) -> Flagship {
        let smtp = SmtpServer::start(ServerOptions::default());
        let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="; // 32 bytes 0..31, base64
        let extra = format!(
            "[intake]\nworkflow = \"complaint-handling\"\nintake_per_hour = 3600\nintake_burst = 100\n\
             status_per_minute = 600\nstatus_burst = 100\n\n\
             [mail]\nfrom = \"纪检监察信访室 <noreply@clearflow.test>\"\ndomain = \"clearflow.test\"\n\
             templates = \"{templates}\"\nretry_initial_seconds = 1\n\
             [mail.transport]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"plain\"\n{plugins}",
            templates = root().join("workflows/templates").display(),
            port = smtp.port(),
            plugins = builtin_plugins(),
        ) + "\n"
            + config;
        let users = std::fs::read_to_string(root().join("config/users.toml")).expect("users");
        let mut d = Daemon::start_with_clock(
            backend,
            &root().join("workflows"),
            Options {
                env: vec![("CLEARFLOW_IDENTITY_KEY".into(), key.into())],
                extra,
                users,
                roles: shipped_roles(),
                ..Options::default()
            },
            at,
        );
        d.settle();
        Flagship {
            d,
            smtp,
            tokens: HashMap::new(),
        }
    }

    /// The token of `user` (created once).
    pub fn token(&mut self, user: &str) -> String {
        if let Some(t) = self.tokens.get(user) {
            return t.clone();
        }
        let t = self.d.create_token(user, "never");
        self.tokens.insert(user.into(), t.clone());
        t
    }

    /// Files a complaint through the public intake (no token); returns the new
    /// complaint-handling instance and the receipt code.
    pub fn intake(&mut self, body: &Value) -> (String, String) {
        let before: Vec<String> = self
            .d
            .list_all("workflow=complaint-handling")
            .iter()
            .map(|i| i["id"].as_str().expect("id").to_owned())
            .collect();
        let (status, v) = self
            .d
            .try_post_as(None, "/v1/public/intake", body)
            .expect("intake");
        assert_eq!(status, 201, "intake refused: {v}");
        let receipt = v["receipt"].as_str().expect("receipt").to_owned();
        let new: Vec<String> = self
            .d
            .list_all("workflow=complaint-handling")
            .iter()
            .map(|i| i["id"].as_str().expect("id").to_owned())
            .filter(|id| !before.contains(id))
            .collect();
        assert_eq!(new.len(), 1, "one new complaint-handling instance");
        self.d.settle();
        (new[0].clone(), receipt)
    }

    /// The public status of a receipt code: `(http status, body)`.
    pub fn status(&self, receipt: &str) -> (u16, Value) {
        self.d
            .try_post_as(None, "/v1/public/status", &json!({ "receipt": receipt }))
            .expect("status")
    }

    /// The open task of `step` in `instance` as `user` sees it (waits until it exists).
    pub fn task(&mut self, user: &str, instance: &str, step: &str) -> Value {
        let token = self.token(user);
        let path = format!("/v1/tasks?instance={instance}&status=open&limit=1000");
        let mut found = Value::Null;
        self.d.wait_until(
            &format!("{user} sees an open `{step}` task of {instance}"),
            Duration::from_secs(30),
            |d| {
                let (status, v) = d.try_get_as(Some(&token), &path).expect("GET /v1/tasks");
                assert_eq!(status, 200, "{v}");
                if let Some(t) = v["items"]
                    .as_array()
                    .and_then(|items| items.iter().find(|t| t["step"] == step))
                {
                    found = t.clone();
                    true
                } else {
                    false
                }
            },
        );
        found
    }

    /// Whether `instance` has an open task of `step` (as the admin sees it).
    pub fn has_open_task(&self, instance: &str, step: &str) -> bool {
        self.d.get(&format!(
            "/v1/tasks?instance={instance}&status=open&limit=1000"
        ))["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|t| t["step"] == step))
    }

    /// `user` completes the open `step` task of `instance` with `form`; the engine settles.
    pub fn complete(&mut self, user: &str, instance: &str, step: &str, form: Value) {
        let (status, v) = self.try_complete(user, instance, step, form);
        assert_eq!(status, 202, "{user} completing {step}: {v}");
        self.d.settle();
    }

    /// `user` tries to complete the open `step` task: the answer as it is.
    pub fn try_complete(
        &mut self,
        user: &str,
        instance: &str,
        step: &str,
        form: Value,
    ) -> (u16, Value) {
        let task = self.task(user, instance, step);
        let token = self.token(user);
        let id = task["id"].as_str().expect("task id");
        self.d
            .try_post_as(
                Some(&token),
                &format!("/v1/tasks/{id}/complete"),
                &json!({ "form": form }),
            )
            .expect("complete")
    }

    /// `user` rejects the open `step` task of `instance` with `reason`.
    pub fn reject(&mut self, user: &str, instance: &str, step: &str, reason: &str) {
        let task = self.task(user, instance, step);
        let token = self.token(user);
        let id = task["id"].as_str().expect("task id");
        let (status, v) = self
            .d
            .try_post_as(
                Some(&token),
                &format!("/v1/tasks/{id}/reject"),
                &json!({ "reason": reason }),
            )
            .expect("reject");
        assert_eq!(status, 202, "{user} rejecting {step}: {v}");
        self.d.settle();
    }

    /// Sends the external event `name` with `key` (as the admin).
    pub fn event(&mut self, name: &str, key: &str, data: Value) {
        self.d.post(
            "/v1/events",
            &json!({ "name": name, "key": key, "data": data }),
        );
        self.d.settle();
    }

    /// The instances `parent` started (`?parent=`), as listed.
    pub fn children(&self, parent: &str) -> Vec<Value> {
        self.d.list_all(&format!("parent={parent}"))
    }

    /// The shown instance's status (`running`, `completed`, …).
    pub fn status_of(&self, instance: &str) -> String {
        self.d.instance(instance)["instance"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until the outbox has no queued message, then returns every delivered
    /// message (all server runs), raw.
    pub fn delivered(&mut self) -> Vec<String> {
        self.d
            .wait_until("the outbox is empty", Duration::from_secs(60), |d| {
                d.get("/v1/mail?status=queued&limit=1")["items"]
                    .as_array()
                    .is_some_and(|i| i.is_empty())
            });
        self.smtp
            .messages()
            .into_iter()
            .map(|m| String::from_utf8_lossy(&m).into_owned())
            .collect()
    }
}
