//! The `clearflow` command line: local commands (validate, graph, schema) and runtime
//! commands that talk to a running daemon's HTTP API.

mod admin;
mod client;
mod demo;
mod intake;
mod openapi;
mod schedules;
mod tasks;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use clearflow_runtime::config::Config;
use client::Client;

/// clearflow — durable workflow automation.
#[derive(Debug, Parser)]
#[command(name = "clearflow", version, about)]
pub struct Cli {
    /// A file holding the API token (default: `CLEARFLOW_TOKEN`, then
    /// `~/.config/clearflow/token`).
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct Remote {
    /// The daemon's URL.
    #[arg(
        long,
        env = "CLEARFLOW_SERVER",
        default_value = "http://127.0.0.1:7878",
        global = true
    )]
    server: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon.
    Serve {
        /// The configuration file.
        #[arg(long, short, env = "CLEARFLOW_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Check workflow files (or folders of them); exit 1 on any error.
    Validate {
        /// Files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print the diagnostics as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a workflow as a Mermaid flowchart.
    Graph {
        /// The workflow file.
        file: PathBuf,
    },
    /// Print the JSON Schema of workflow files.
    Schema,
    /// Print the OpenAPI document of the HTTP API (committed as `docs/openapi.json`).
    Openapi,
    /// Write and try plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Work with instances on a running daemon.
    Instances {
        #[command(subcommand)]
        command: InstanceCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Send a keyed external event to every instance waiting for it.
    Events {
        #[command(subcommand)]
        command: EventCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Human tasks: list, show, claim, unclaim, complete, reject (token from `CLEARFLOW_TOKEN`).
    Tasks {
        #[command(subcommand)]
        command: tasks::TaskCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// The mail outbox.
    Mail {
        #[command(subcommand)]
        command: MailCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Cron schedules: list, pause, resume, recent fires.
    Schedules {
        #[command(subcommand)]
        command: schedules::ScheduleCommand,
        #[command(flatten)]
        remote: Remote,
    },
    /// Set web console passwords (on the host, directly in the store).
    Users {
        #[command(subcommand)]
        command: admin::UserCommand,
        /// The configuration file (as for `serve`).
        #[arg(long, short, env = "CLEARFLOW_CONFIG", global = true)]
        config: Option<PathBuf>,
    },
    /// Create, list and revoke API tokens (on the host, directly in the store).
    Tokens {
        #[command(subcommand)]
        command: admin::TokenCommand,
        /// The configuration file (as for `serve`).
        #[arg(long, short, env = "CLEARFLOW_CONFIG", global = true)]
        config: Option<PathBuf>,
    },
    /// Walk the shipped complaint process with the sample complaints on a running daemon
    /// (the host's configuration), then show the cases, the open tasks and the mail.
    Demo {
        /// The configuration file (as for `serve`).
        #[arg(long, short, env = "CLEARFLOW_CONFIG")]
        config: Option<PathBuf>,
        /// The folder with the sample complaints and starts.
        #[arg(long, default_value = "examples/flagship")]
        samples: PathBuf,
    },
    /// Check the audit log and instance histories (on the host, directly in the store).
    Audit {
        #[command(subcommand)]
        command: admin::AuditCommand,
        /// The configuration file (as for `serve`).
        #[arg(long, short, env = "CLEARFLOW_CONFIG", global = true)]
        config: Option<PathBuf>,
    },
    /// Closed cases and their retention: list expiries, hold a case, release a hold (on
    /// the host, directly in the store).
    Retention {
        #[command(subcommand)]
        command: admin::RetentionCommand,
        /// The configuration file (as for `serve`).
        #[arg(long, short, env = "CLEARFLOW_CONFIG", global = true)]
        config: Option<PathBuf>,
    },
    /// A whistleblower's view: the public status of a report, by its receipt code.
    Status {
        /// The receipt code given at intake (`-`: read it from standard input).
        #[arg(long)]
        receipt: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Reporters' identities: the key that seals them.
    Identity {
        #[command(subcommand)]
        command: intake::IdentityCommand,
    },
    /// Show or move the daemon's manual clock (tests and demos).
    Clock {
        /// Move the clock forward by this duration (e.g. `90s`, `3d`).
        #[arg(long)]
        advance: Option<String>,
        /// Move the clock to this RFC 3339 time.
        #[arg(long)]
        set: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Debug, Subcommand)]
enum InstanceCommand {
    /// Start an instance; prints its id.
    Start {
        /// The workflow id.
        workflow: String,
        /// A JSON file with the input (`-` for standard input).
        #[arg(long)]
        input: Option<PathBuf>,
        /// The same key never starts a second instance.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Wait until the instance ends or parks (a task, timer or event), at most this
        /// long (`30s`, `1m`; at most 60 s); prints its status, and exits 1 when it failed.
        #[arg(long)]
        wait: Option<String>,
    },
    /// Show an instance with its history.
    Show {
        /// The instance id.
        id: String,
    },
    /// List instances, newest first.
    List {
        /// Only this workflow.
        #[arg(long)]
        workflow: Option<String>,
        /// Only this status (running, completed, failed, cancelled).
        #[arg(long)]
        status: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Send an event to an instance.
    Signal {
        /// The instance id.
        id: String,
        /// The event name.
        event: String,
        /// A JSON file with the event's data.
        #[arg(long)]
        data: Option<PathBuf>,
        /// The correlation key.
        #[arg(long)]
        key: Option<String>,
    },
    /// Cancel an instance.
    Cancel {
        /// The instance id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Create a ready-to-build plugin crate in ./NAME (or --dir).
    New {
        /// The plugin's name (lowercase letters, digits and `-`).
        name: String,
        /// Where to create it.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Path to the SDK crate (default: the published SDK path inside this repository, if found).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Run one call exactly as the daemon would and print the output and what it cost.
    Test {
        /// The component (`.wasm`).
        wasm: PathBuf,
        /// The input JSON file.
        #[arg(long)]
        input: PathBuf,
        /// The plugin config JSON file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Wall-clock limit in milliseconds.
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
        /// Memory limit in MiB.
        #[arg(long, default_value_t = 64)]
        memory_mib: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum MailCommand {
    /// List messages, newest first.
    List {
        /// queued, sent or dead.
        #[arg(long)]
        status: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Queue a dead letter again.
    Retry {
        /// The message id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum EventCommand {
    /// Send an event with a key.
    Send {
        /// The event name.
        name: String,
        /// The correlation key.
        #[arg(long)]
        key: String,
        /// A JSON file with the event's data.
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

/// Runs the command line; the binary's `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Some(f) = cli.token_file {
        client::set_token_file(f);
    }
    match cli.command {
        Command::Tokens { command, config } => admin::tokens(command, config.as_deref()).await,
        Command::Users { command, config } => admin::users(command, config.as_deref()).await,
        Command::Audit { command, config } => admin::audit(command, config.as_deref()).await,
        Command::Retention { command, config } => {
            admin::retention(command, config.as_deref()).await
        }
        Command::Demo { config, samples } => demo::run(config.as_deref(), &samples).await,
        Command::Serve { config } => {
            let cfg = Config::load(config.as_deref())?;
            crate::server::init_logging(&cfg.log);
            crate::server::serve_with_signals(cfg, config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { paths, json } => Ok(validate(&paths, json)),
        Command::Graph { file } => {
            let src = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            match clearflow_core::load(&file.display().to_string(), &src) {
                Ok(wf) => {
                    print!("{}", clearflow_core::graph::mermaid(&wf));
                    Ok(ExitCode::SUCCESS)
                }
                Err(diags) => {
                    for d in diags {
                        eprintln!("{d}");
                    }
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Schema => {
            print!("{}", clearflow_core::schema::workflow_schema());
            Ok(ExitCode::SUCCESS)
        }
        Command::Openapi => Ok(openapi::print()),
        Command::Instances { command, remote } => instances(command, &remote).await,
        Command::Schedules { command, remote } => schedules::run(command, &remote).await,
        Command::Tasks { command, remote } => tasks::run(command, &remote).await,
        Command::Plugin { command } => plugin(command),
        Command::Status { receipt, remote } => intake::status(&receipt, &remote).await,
        Command::Identity { command } => intake::identity(command),
        Command::Events {
            command: EventCommand::Send { name, key, data },
            remote,
        } => {
            let client = Client::new(&remote.server);
            let data = read_json(data.as_ref())?;
            let v = client
                .post(
                    "/v1/events",
                    &json!({ "name": name, "key": key, "data": data }),
                )
                .await?;
            print_value(&v, remote.json, |v| {
                let ids = v["delivered_to"].as_array().map_or(0, Vec::len);
                format!("delivered to {ids} instance(s)")
            });
            Ok(ExitCode::SUCCESS)
        }
        Command::Mail { command, remote } => {
            let client = Client::new(&remote.server);
            match command {
                MailCommand::List { status, limit } => {
                    let mut path = format!("/v1/mail?limit={limit}");
                    if let Some(s) = status {
                        path += &format!("&status={s}");
                    }
                    let v = client.get(&path).await?;
                    print_value(&v, remote.json, |v| {
                        v["items"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|m| {
                                format!(
                                    "{}  {:<7} {:>2} tries  {}  {}{}",
                                    m["id"].as_str().unwrap_or_default(),
                                    m["status"].as_str().unwrap_or_default(),
                                    m["attempts"],
                                    time(&m["created_at"]),
                                    m["subject"].as_str().unwrap_or_default(),
                                    m["last_error"]
                                        .as_str()
                                        .map(|e| format!("\n    last error: {e}"))
                                        .unwrap_or_default()
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                    });
                }
                MailCommand::Retry { id } => {
                    let v = client
                        .post(&format!("/v1/mail/{id}/retry"), &json!({}))
                        .await?;
                    print_value(&v, remote.json, |_| "queued again".into());
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Clock {
            advance,
            set,
            remote,
        } => {
            let client = Client::new(&remote.server);
            let v = match (advance, set) {
                (Some(a), None) => {
                    let span: clearflow_time::Span =
                        a.parse().map_err(|e| anyhow::anyhow!("--advance: {e}"))?;
                    let now: Value = client.get("/v1/admin/clock").await?;
                    let now = chrono::DateTime::parse_from_rfc3339(
                        now["now"].as_str().unwrap_or_default(),
                    )?
                    .with_timezone(&chrono::Utc);
                    let to = clearflow_time::add(now, &span, chrono_tz::UTC, None)?;
                    client
                        .post("/v1/admin/clock", &json!({ "set": to.at.to_rfc3339() }))
                        .await?
                }
                (None, Some(s)) => client.post("/v1/admin/clock", &json!({ "set": s })).await?,
                (None, None) => client.get("/v1/admin/clock").await?,
                _ => anyhow::bail!("give --advance or --set, not both"),
            };
            print_value(&v, remote.json, |v| {
                v["now"].as_str().unwrap_or_default().to_owned()
            });
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn validate(paths: &[PathBuf], as_json: bool) -> ExitCode {
    // Templates sit in `templates/` beside the workflow files.
    let dirs: Vec<PathBuf> = paths
        .iter()
        .map(|p| {
            if p.is_dir() {
                p.clone()
            } else {
                p.parent().map(PathBuf::from).unwrap_or_default()
            }
        })
        .collect();
    let mut template_errors = Vec::new();
    let templates = dirs
        .iter()
        .map(|d| d.join("templates"))
        .find(|t| t.is_dir())
        .and_then(|t| {
            clearflow_templates::load_dir(&t)
                .map_err(|e| template_errors = e)
                .ok()
        });
    let mut loaded = clearflow_runtime::registry::load_paths(
        paths,
        templates.as_ref(),
        &clearflow_core::Limits::default(),
    );
    for e in template_errors {
        loaded.diagnostics.push(clearflow_core::Diagnostic::error(
            &e.path.display().to_string(),
            clearflow_core::Pos {
                line: e.line.unwrap_or(1) as u32,
                col: 1,
            },
            e.to_string(),
        ));
    }
    let errors = loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == clearflow_core::Severity::Error)
        .count();
    if as_json {
        let v = json!({
            "valid": errors == 0,
            "workflows": loaded.workflows.iter().map(|w| json!({"id": w.id, "file": w.file, "version": w.hash})).collect::<Vec<_>>(),
            "diagnostics": loaded.diagnostics,
        });
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
    } else {
        for d in &loaded.diagnostics {
            eprintln!("{d}");
        }
        for w in &loaded.workflows {
            println!("ok  {} ({})", w.id, w.file);
        }
        if errors > 0 {
            eprintln!("{errors} error(s)");
        }
    }
    if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn read_json(path: Option<&PathBuf>) -> anyhow::Result<Value> {
    let Some(path) = path else {
        return Ok(Value::Null);
    };
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
    };
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: not JSON: {e}", path.display()))
}

fn print_value(v: &Value, as_json: bool, text: impl FnOnce(&Value) -> String) {
    if as_json {
        println!("{}", serde_json::to_string_pretty(v).expect("json"));
    } else {
        println!("{}", text(v));
    }
}

fn time(ms: &Value) -> String {
    ms.as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "-".into())
}

async fn instances(command: InstanceCommand, remote: &Remote) -> anyhow::Result<ExitCode> {
    let client = Client::new(&remote.server);
    match command {
        InstanceCommand::Start {
            workflow,
            input,
            idempotency_key,
            wait,
        } => {
            let input = read_json(input.as_ref())?;
            let path = match &wait {
                Some(w) => format!("/v1/instances?wait={w}"),
                None => "/v1/instances".to_owned(),
            };
            let v = client
                .post(&path, &json!({ "workflow": workflow, "input": input, "idempotency_key": idempotency_key }))
                .await?;
            print_value(&v, remote.json, |v| {
                let id = v["id"].as_str().unwrap_or_default();
                match v.get("settled") {
                    Some(s) if s["settled"] == true => format!(
                        "{id}  {}",
                        s["outcome"]
                            .as_str()
                            .or(s["status"].as_str())
                            .unwrap_or_default()
                    ),
                    Some(s) => format!(
                        "{id}  {} (still working)",
                        s["status"].as_str().unwrap_or_default()
                    ),
                    None => id.to_owned(),
                }
            });
            if v.pointer("/settled/status").and_then(Value::as_str) == Some("failed") {
                return Ok(ExitCode::FAILURE);
            }
        }
        InstanceCommand::Show { id } => {
            let v = client.get(&format!("/v1/instances/{id}")).await?;
            print_value(&v, remote.json, |v| {
                let i = &v["instance"];
                let mut s = format!(
                    "{}  {}  {}{}\nstarted {}  updated {}\n",
                    i["id"].as_str().unwrap_or_default(),
                    i["workflow"].as_str().unwrap_or_default(),
                    i["status"].as_str().unwrap_or_default(),
                    i["outcome"]
                        .as_str()
                        .map(|o| format!(" ({o})"))
                        .unwrap_or_default(),
                    time(&i["created_at"]),
                    time(&i["updated_at"]),
                );
                if let Some(pending) = v["pending"].as_array().filter(|p| !p.is_empty()) {
                    s += "pending:\n";
                    for p in pending {
                        s += &format!(
                            "  {} at {}\n",
                            p["kind"].as_str().unwrap_or_default(),
                            time(&p["due_at"])
                        );
                    }
                }
                if let Some(p) = v["provisional"].as_object().filter(|p| !p.is_empty()) {
                    s += "provisional deadlines (past the calendar's last year; weekends only):\n";
                    for t in p.values() {
                        s += &format!(
                            "  {}  {} from {} until {}\n",
                            t["step"].as_str().unwrap_or_default(),
                            t["span"].as_str().unwrap_or_default(),
                            t["from"].as_str().unwrap_or_default(),
                            t["at"].as_str().unwrap_or_default()
                        );
                    }
                }
                s += "history:\n";
                for h in v["history"].as_array().into_iter().flatten() {
                    s += &format!(
                        "  {}  {:<20} {:<16} {}\n",
                        time(&h["at"]),
                        h["kind"].as_str().unwrap_or_default(),
                        h["step"].as_str().unwrap_or("-"),
                        h["actor"].as_str().unwrap_or_default()
                    );
                }
                s.trim_end().to_owned()
            });
        }
        InstanceCommand::List {
            workflow,
            status,
            limit,
        } => {
            let mut query = vec![format!("limit={limit}")];
            if let Some(w) = workflow {
                query.push(format!("workflow={w}"));
            }
            if let Some(s) = status {
                query.push(format!("status={s}"));
            }
            let v = client
                .get(&format!("/v1/instances?{}", query.join("&")))
                .await?;
            print_value(&v, remote.json, |v| {
                v["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|i| {
                        format!(
                            "{}  {:<32} {:<10} {}",
                            i["id"].as_str().unwrap_or_default(),
                            i["workflow"].as_str().unwrap_or_default(),
                            i["status"].as_str().unwrap_or_default(),
                            i["outcome"].as_str().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        InstanceCommand::Signal {
            id,
            event,
            data,
            key,
        } => {
            let data = read_json(data.as_ref())?;
            let v = client
                .post(
                    &format!("/v1/instances/{id}/signal"),
                    &json!({ "name": event, "key": key, "data": data }),
                )
                .await?;
            print_value(&v, remote.json, |_| "delivered".into());
        }
        InstanceCommand::Cancel { id, reason } => {
            let v = client
                .post(
                    &format!("/v1/instances/{id}/cancel"),
                    &json!({ "reason": reason }),
                )
                .await?;
            print_value(&v, remote.json, |_| "cancel requested".into());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn plugin(command: PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::New { name, dir, sdk } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            let sdk = sdk.or_else(|| {
                let guess = std::env::current_dir().ok()?.join("plugins/sdk");
                guess.is_dir().then_some(guess)
            });
            clearflow_plugin_host::scaffold(&name, &dir, sdk.as_deref())
                .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
            println!(
                "created {} — build it with `cargo build --release --target wasm32-wasip2` inside it",
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Test {
            wasm,
            input,
            config,
            timeout_ms,
            memory_mib,
            json: as_json,
        } => {
            use sha2_hex::sha256_file;
            let input = read_json(Some(&input))?;
            let config = read_json(config.as_ref())?;
            let cache = std::env::temp_dir().join("clearflow-plugin-test-cache");
            let host = clearflow_plugin_host::Host::new(&cache)?;
            let limits = clearflow_plugin_host::Limits {
                timeout: std::time::Duration::from_millis(timeout_ms),
                memory_bytes: memory_mib * 1024 * 1024,
                ..Default::default()
            };
            let decl = clearflow_plugin_host::PluginDecl {
                name: "test".into(),
                sha256: sha256_file(&wasm)?,
                path: wasm.clone(),
                limits,
                config: if config.is_null() { json!({}) } else { config },
            };
            let plugins = host.load(&[decl]).map_err(|e| {
                anyhow::anyhow!(
                    "{}",
                    e.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            })?;
            let inv = clearflow_plugin_host::Invocation {
                workflow: "test".into(),
                instance: "test".into(),
                step: "test".into(),
                attempt: 1,
            };
            let (v, ok) = match plugins.call("test", &inv, &input) {
                Ok(out) => (
                    json!({"ok": true, "output": out.output, "wall_us": out.wall.as_micros() as u64, "memory_peak_bytes": out.memory_peak,
                           "logs": out.logs.iter().map(|l| l.message.clone()).collect::<Vec<_>>()}),
                    true,
                ),
                Err(e) => (
                    json!({"ok": false, "class": e.class.as_str(), "retryable": e.class.retryable(), "message": e.message, "wall_us": e.wall.as_micros() as u64,
                           "logs": e.logs.iter().map(|l| l.message.clone()).collect::<Vec<_>>()}),
                    false,
                ),
            };
            print_value(&v, as_json, |v| {
                let mut s = if ok {
                    format!(
                        "output: {}\n",
                        serde_json::to_string_pretty(&v["output"]).unwrap_or_default()
                    )
                } else {
                    format!(
                        "error class: {} (retryable: {})\nmessage: {}\n",
                        v["class"],
                        v["retryable"],
                        v["message"].as_str().unwrap_or_default()
                    )
                };
                s += &format!("wall time: {} µs\n", v["wall_us"]);
                if ok {
                    s += &format!("memory used: {} bytes\n", v["memory_peak_bytes"]);
                }
                for l in v["logs"].as_array().into_iter().flatten() {
                    s += &format!("log: {}\n", l.as_str().unwrap_or_default());
                }
                s.trim_end().to_owned()
            });
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

mod sha2_hex {
    //! The sha256 of a file, as the plugin declarations write it.
    use sha2::{Digest, Sha256};

    pub fn sha256_file(path: &std::path::Path) -> anyhow::Result<String> {
        let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }
}
