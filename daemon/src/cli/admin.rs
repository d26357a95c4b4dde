//! Commands an administrator runs on the host, directly on the store named by the
//! configuration file: API tokens (`clearflow tokens`), audit verification
//! (`clearflow audit verify`) and the retention of closed cases (`clearflow retention`). They need no token: access to the host and its
//! configuration is the authority, which is how the first token is made.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;

use clearflow_runtime::config::Config;
use clearflow_store::Store;

/// `clearflow tokens …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token for a user of the users file; prints it once.
    Create {
        /// The user it acts as.
        #[arg(long)]
        user: String,
        /// How long it is valid (e.g. `90d`, `12h`, `1y`), or `never`.
        #[arg(long, default_value = "90d")]
        expires: String,
        /// A name or comment (what it is for).
        #[arg(long)]
        name: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List tokens (never their secrets).
    List {
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its id; it is refused from the next request on.
    Revoke {
        /// The token id (the part after `cf_`, as `tokens list` shows it).
        id: String,
    },
}

/// `clearflow users …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Set a user's web console password (read from standard input, one line, never
    /// from an argument); the hash is Argon2id. Ends the user's sessions.
    SetPassword {
        /// The user id (from the users file).
        id: String,
        /// Also remove the user's second factor: they enrol again at the next sign-in.
        #[arg(long)]
        reset_totp: bool,
    },
}

/// `clearflow audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chains of the audit log and of every instance's history; exit 1
    /// naming every altered or deleted row.
    Verify {
        /// Only this instance's history.
        #[arg(long)]
        instance: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `clearflow retention …`.
#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Closed cases with their expiry and what is due for each (oldest first).
    List {
        /// At most this many cases.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Keep a case past its expiry until released (recorded in the audit log).
    Hold {
        /// The case's root instance (as the warning names it).
        case: String,
        /// Why (an appeal, a review, proceedings).
        #[arg(long)]
        reason: String,
    },
    /// Release a hold: the case expires as configured again (recorded in the audit log).
    Release {
        /// The case's root instance.
        case: String,
    },
}

async fn open(config: Option<&Path>) -> anyhow::Result<(Config, Store, i64)> {
    let cfg = Config::load(config)?;
    let store = Store::open(&cfg.store).await.map_err(|e| {
        anyhow::anyhow!(
            "opening the store {}: {e}",
            clearflow_runtime::redact(&cfg.store.url)
        )
    })?;
    let now = clearflow_runtime::clock::ms(clearflow_runtime::make_clock(&cfg.clock)?.now());
    Ok((cfg, store, now))
}

/// Who runs a host command, for the audit log.
fn host_actor() -> String {
    format!(
        "host:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

fn time(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "-".into())
}

/// Runs a `tokens` command.
/// Runs `clearflow users …`.
pub async fn users(command: UserCommand, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (cfg, store, now) = open(config).await?;
    match command {
        UserCommand::SetPassword { id, reset_totp } => {
            let users: PathBuf = cfg.directory.users.clone().ok_or_else(|| {
                anyhow::anyhow!("no users file is configured ([directory] users)")
            })?;
            let directory = clearflow_runtime::directory::Directory::load(&users)
                .map_err(|e| anyhow::anyhow!("{}", clearflow_runtime::directory::join(&e)))?;
            if directory.user(&id).is_none() {
                anyhow::bail!("no user `{id}` in the users file {}", users.display());
            }
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                eprintln!(
                    "new password for {id} (the line is shown as you type; pipe it in to avoid that):"
                );
            }
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            let password = line.trim_end_matches(['\n', '\r']);
            if password.chars().count() < 12 {
                anyhow::bail!("the password must have at least 12 characters");
            }
            if password.len() > 1000 {
                anyhow::bail!("the password must have at most 1000 bytes");
            }
            let hash = clearflow_web::auth::hash_password(password, clearflow_web::auth::random())?;
            store.set_password(&id, &hash, reset_totp, now).await?;
            store
                .audit(&clearflow_store::AuditEvent {
                    at: now,
                    kind: "user.password_set".into(),
                    actor: host_actor(),
                    instance_id: None,
                    detail: json!({ "user": id, "second_factor_reset": reset_totp }),
                })
                .await?;
            println!("password set for {id}; their sessions are ended");
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn tokens(command: TokenCommand, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (cfg, store, now) = open(config).await?;
    match command {
        TokenCommand::Create {
            user,
            expires,
            name,
            json,
        } => {
            let users: PathBuf = cfg.directory.users.clone().ok_or_else(|| {
                anyhow::anyhow!(
                    "no users file is configured ([directory] users): tokens act as its users"
                )
            })?;
            let directory = clearflow_runtime::directory::Directory::load(&users)
                .map_err(|e| anyhow::anyhow!("{}", clearflow_runtime::directory::join(&e)))?;
            if directory.user(&user).is_none() {
                anyhow::bail!("no user `{user}` in the users file {}", users.display());
            }
            let expires_at = if expires == "never" {
                None
            } else {
                let span: clearflow_time::Span = expires
                    .parse()
                    .map_err(|e| anyhow::anyhow!("--expires: {e}"))?;
                if span.amount() <= 0 {
                    anyhow::bail!("--expires: give a positive duration or `never`");
                }
                let at = clearflow_time::add(
                    clearflow_runtime::clock::from_ms(now),
                    &span,
                    chrono_tz::UTC,
                    None,
                )
                .map_err(|e| anyhow::anyhow!("--expires: {e}"))?;
                Some(clearflow_runtime::clock::ms(at.at))
            };
            let issued = store
                .create_token(&user, name.as_deref(), expires_at, &host_actor(), now)
                .await?;
            if json {
                let v = json!({
                    "id": issued.record.id, "user": user, "name": name,
                    "expires_at": expires_at, "token": issued.token,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("{}", issued.token);
            }
            eprintln!(
                "token {} for `{user}`, expires {}. It is shown only this once: store it now \
                 (e.g. in ~/.config/clearflow/token, mode 600, or CLEARFLOW_TOKEN).",
                issued.record.id,
                expires_at.map_or_else(|| "never".into(), |e| time(Some(e)))
            );
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::List { user, json } => {
            let list = store.tokens(user.as_deref()).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({ "items": list }))?
                );
            } else {
                println!(
                    "{:<16}  {:<16}  {:<8}  {:<20}  {:<20}  {:<20}  name",
                    "id", "user", "state", "created", "expires", "last used"
                );
                for t in list {
                    let state = if t.revoked_at.is_some() {
                        "revoked"
                    } else if t.expires_at.is_some_and(|e| e <= now) {
                        "expired"
                    } else {
                        "active"
                    };
                    println!(
                        "{:<16}  {:<16}  {:<8}  {:<20}  {:<20}  {:<20}  {}",
                        t.id,
                        t.user,
                        state,
                        time(Some(t.created_at)),
                        t.expires_at
                            .map_or_else(|| "never".into(), |e| time(Some(e))),
                        time(t.last_used_at),
                        t.name.unwrap_or_default()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke { id } => {
            let id = id
                .strip_prefix(clearflow_store::TOKEN_PREFIX)
                .unwrap_or(&id);
            // Accept a whole token too, without ever printing its secret.
            let id = id.split('_').next().unwrap_or(id);
            if store.revoke_token(id, &host_actor(), now).await? {
                println!("revoked {id}");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("no active token `{id}`");
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

/// Runs an `audit` command.
pub async fn audit(command: AuditCommand, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (_, store, _) = open(config).await?;
    let AuditCommand::Verify { instance, json } = command;
    let v = store.verify(instance.as_deref()).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for b in &v.breaches {
            println!("{b}");
        }
        let scope = match &instance {
            Some(i) => format!("instance {i}: {} history rows", v.history_rows),
            None => format!(
                "{} audit rows, {} history rows of {} instances",
                v.audit_rows, v.history_rows, v.instances
            ),
        };
        if v.breaches.is_empty() {
            println!("ok: {scope}, every chain intact");
            if let Some(h) = &v.audit_head {
                println!("audit head: {h}");
            }
        } else {
            println!("FAILED: {} problem(s) in {scope}", v.breaches.len());
        }
    }
    Ok(if v.breaches.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs a `retention` command.
pub async fn retention(
    command: RetentionCommand,
    config: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let (cfg, store, now) = open(config).await?;
    match command {
        RetentionCommand::List { limit, json } => {
            let now_t = clearflow_runtime::clock::from_ms(now);
            let mut out = Vec::new();
            let mut cases = clearflow_store::retention::Cases::ended_before(i64::MAX);
            'pages: loop {
                let page = cases.next_page(&store).await?;
                if page.is_empty() {
                    break;
                }
                for case in page {
                    if out.len() as u32 >= limit {
                        break 'pages;
                    }
                    let decision =
                        clearflow_runtime::retention::decide(&cfg.retention, &case, now_t);
                    out.push((case, decision));
                }
            }
            if json {
                let items: Vec<_> = out
                    .iter()
                    .map(|(c, d)| {
                        json!({
                            "case": c.root, "workflow": c.workflow, "instances": c.members.len(),
                            "ended_at": c.ended_at().map(clearflow_runtime::clock::from_ms),
                            "warned_at": c.warned_at.map(clearflow_runtime::clock::from_ms),
                            "hold": c.hold, "due": d,
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({ "items": items }))?
                );
            } else {
                use clearflow_runtime::retention::Decision as D;
                if !cfg.retention.enabled() {
                    println!("retention is off ([retention] keep = \"never\"): no case expires");
                }
                for (c, d) in &out {
                    let at = |t: &chrono::DateTime<chrono::Utc>| {
                        time(Some(clearflow_runtime::clock::ms(*t)))
                    };
                    let due = match d {
                        D::Open => "open (an instance still runs)".to_owned(),
                        D::Forever => "kept forever".to_owned(),
                        D::Held { expires_at } => format!(
                            "HELD ({}) — would expire {}",
                            c.hold.as_ref().map(|h| h.reason.as_str()).unwrap_or(""),
                            at(expires_at)
                        ),
                        D::Wait {
                            warn_at,
                            expires_at,
                        } => {
                            format!("warning {}, expires {}", at(warn_at), at(expires_at))
                        }
                        D::Warn { expires_at } => {
                            format!("warning due now, expires {}", at(expires_at))
                        }
                        D::Warned { delete_at, .. } => {
                            format!("warned, deleted from {}", at(delete_at))
                        }
                        D::Delete { .. } => "deletion due now".to_owned(),
                        D::Blocked { reason } => format!("BLOCKED: {reason}"),
                    };
                    println!(
                        "{}  {:<28} ended {}  {due}",
                        c.root,
                        c.workflow,
                        time(c.ended_at())
                    );
                }
                println!("{} closed case(s)", out.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        RetentionCommand::Hold { case, reason } => {
            if reason.trim().is_empty() {
                anyhow::bail!("--reason: say why the case is kept");
            }
            if !store.hold_case(&case, &reason, &host_actor(), now).await? {
                anyhow::bail!("no case `{case}`: give the root instance the warning names");
            }
            println!("case {case} is held; it is kept until `clearflow retention release {case}`");
            Ok(ExitCode::SUCCESS)
        }
        RetentionCommand::Release { case } => {
            if !store.release_case(&case, &host_actor(), now).await? {
                anyhow::bail!("case `{case}` has no hold");
            }
            println!("case {case} is released; it expires as configured");
            Ok(ExitCode::SUCCESS)
        }
    }
}
