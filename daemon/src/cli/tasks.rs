//! `clearflow tasks …`: the caller's human tasks through the HTTP API, as the user whose
//! token the client sends (see `client`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{Value, json};

use super::client::Client;
use super::{Remote, print_value, read_json, time};

/// The task commands.
#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// List tasks of my roles or assigned to or claimed by me (open ones by default),
    /// highest priority first.
    List {
        /// open, completed, rejected, cancelled or any.
        #[arg(long)]
        status: Option<String>,
        /// Only this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// Only this instance.
        #[arg(long)]
        instance: Option<String>,
        /// Only this role.
        #[arg(long)]
        role: Option<String>,
        /// Only tasks assigned to or claimed by me.
        #[arg(long)]
        mine: bool,
        /// Only tasks past their due date.
        #[arg(long)]
        overdue: bool,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Show a task with its form schema.
    Show {
        /// The task id.
        id: String,
    },
    /// Claim a task of one of my roles.
    Claim {
        /// The task id.
        id: String,
    },
    /// Give back a task I claimed.
    Unclaim {
        /// The task id.
        id: String,
    },
    /// Complete a task with a form (a JSON file, `-` for standard input).
    Complete {
        /// The task id.
        id: String,
        /// The form.
        #[arg(long)]
        form: PathBuf,
    },
    /// Reject a task; it goes back to the step named by its `on_reject`.
    Reject {
        /// The task id.
        id: String,
        /// Why (recorded in the instance's history).
        #[arg(long)]
        reason: String,
    },
}

fn line(t: &Value) -> String {
    format!(
        "{}  {:<9} p{:<3} {:<20} {:<14} {:<12} due {}{}{}",
        t["id"].as_str().unwrap_or_default(),
        t["status"].as_str().unwrap_or_default(),
        t["priority"].as_i64().unwrap_or_default(),
        t["title"]
            .as_str()
            .or(t["step"].as_str())
            .unwrap_or_default(),
        t["role"].as_str().unwrap_or("-"),
        t["assignee"].as_str().unwrap_or("-"),
        time(&t["due_at"]),
        if t["overdue"].as_bool() == Some(true) {
            "  OVERDUE"
        } else {
            ""
        },
        t["claimed_by"]
            .as_str()
            .map(|c| format!("  claimed by {c}"))
            .unwrap_or_default(),
    )
}

/// Runs one task command.
pub async fn run(command: TaskCommand, remote: &Remote) -> anyhow::Result<ExitCode> {
    let client = || Client::new(&remote.server);
    match command {
        TaskCommand::List {
            status,
            workflow,
            instance,
            role,
            mine,
            overdue,
            limit,
        } => {
            let mut query = vec![format!("limit={limit}")];
            for (k, v) in [
                ("status", status),
                ("workflow", workflow),
                ("instance", instance),
                ("role", role),
            ] {
                if let Some(v) = v {
                    query.push(format!("{k}={}", urlencode(&v)));
                }
            }
            if mine {
                query.push("mine=true".into());
            }
            if overdue {
                query.push("overdue=true".into());
            }
            let v = client()
                .get(&format!("/v1/tasks?{}", query.join("&")))
                .await?;
            print_value(&v, remote.json, |v| {
                let items = v["items"].as_array().cloned().unwrap_or_default();
                if items.is_empty() {
                    "no tasks".into()
                } else {
                    items.iter().map(line).collect::<Vec<_>>().join("\n")
                }
            });
        }
        TaskCommand::Show { id } => {
            let v = client().get(&format!("/v1/tasks/{id}")).await?;
            print_value(&v, remote.json, |v| {
                let mut s = line(v);
                s += &format!(
                    "\ninstance {}  workflow {}  step {}",
                    v["instance_id"].as_str().unwrap_or_default(),
                    v["workflow"].as_str().unwrap_or_default(),
                    v["step"].as_str().unwrap_or_default()
                );
                if !v["form"].is_null() {
                    s += &format!(
                        "\nform schema:\n{}",
                        serde_json::to_string_pretty(&v["form"]).unwrap_or_default()
                    );
                }
                if !v["result"].is_null() {
                    s += &format!("\nresult: {}", v["result"]);
                }
                s
            });
        }
        TaskCommand::Claim { id } => {
            let v = client()
                .post(&format!("/v1/tasks/{id}/claim"), &json!({}))
                .await?;
            print_value(&v, remote.json, line);
        }
        TaskCommand::Unclaim { id } => {
            let v = client()
                .post(&format!("/v1/tasks/{id}/unclaim"), &json!({}))
                .await?;
            print_value(&v, remote.json, line);
        }
        TaskCommand::Complete { id, form } => {
            let form = read_json(Some(&form))?;
            let v = client()
                .post(
                    &format!("/v1/tasks/{id}/complete"),
                    &json!({ "form": form }),
                )
                .await?;
            print_value(&v, remote.json, line);
        }
        TaskCommand::Reject { id, reason } => {
            let v = client()
                .post(
                    &format!("/v1/tasks/{id}/reject"),
                    &json!({ "reason": reason }),
                )
                .await?;
            print_value(&v, remote.json, line);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Percent-encodes a query value.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
