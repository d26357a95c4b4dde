//! `clearflow schedules list|pause|resume|fires`: cron schedules on a running daemon.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{Value, json};

use super::client::Client;
use super::{Remote, print_value};

/// What to do with schedules.
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// List every schedule with its state, last and next fire.
    List,
    /// Pause a schedule: it does not fire until resumed.
    Pause {
        /// The workflow id.
        workflow: String,
        /// The schedule id.
        schedule: String,
    },
    /// Resume a paused schedule; fire times that passed while paused are not back-filled.
    Resume {
        /// The workflow id.
        workflow: String,
        /// The schedule id.
        schedule: String,
    },
    /// The recent fires of a schedule: started, skipped or failed.
    Fires {
        /// The workflow id.
        workflow: String,
        /// The schedule id.
        schedule: String,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

/// Runs a schedules command against the daemon at `remote`.
pub async fn run(command: ScheduleCommand, remote: &Remote) -> anyhow::Result<ExitCode> {
    let client = Client::new(&remote.server);
    match command {
        ScheduleCommand::List => {
            let v = client.get("/v1/schedules").await?;
            print_value(&v, remote.json, |v| {
                let lines: Vec<String> = v["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(line)
                    .collect();
                if lines.is_empty() {
                    "no schedules".into()
                } else {
                    lines.join("\n")
                }
            });
        }
        ScheduleCommand::Pause { workflow, schedule } => {
            let v = client
                .post(
                    &format!("/v1/schedules/{workflow}/{schedule}/pause"),
                    &json!({}),
                )
                .await?;
            print_value(&v, remote.json, line);
        }
        ScheduleCommand::Resume { workflow, schedule } => {
            let v = client
                .post(
                    &format!("/v1/schedules/{workflow}/{schedule}/resume"),
                    &json!({}),
                )
                .await?;
            print_value(&v, remote.json, line);
        }
        ScheduleCommand::Fires {
            workflow,
            schedule,
            limit,
        } => {
            let v = client
                .get(&format!(
                    "/v1/schedules/{workflow}/{schedule}/fires?limit={limit}"
                ))
                .await?;
            print_value(&v, remote.json, |v| {
                v["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|f| {
                        format!(
                            "{}  {:<8} {}",
                            f["fire_time"].as_str().unwrap_or_default(),
                            f["outcome"].as_str().unwrap_or_default(),
                            f["instance_id"]
                                .as_str()
                                .or(f["reason"].as_str())
                                .unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One schedule as a line: workflow/schedule, state, cron and zone, last and next fire.
fn line(s: &Value) -> String {
    let t = |k: &str| s[k].as_str().unwrap_or("-").to_owned();
    format!(
        "{}/{}  {:<7} {} ({})  last {}  next {}",
        t("workflow"),
        t("schedule"),
        if s["paused"].as_bool() == Some(true) {
            "paused"
        } else {
            "active"
        },
        t("cron"),
        t("timezone"),
        t("last_fire"),
        t("next_fire"),
    )
}
