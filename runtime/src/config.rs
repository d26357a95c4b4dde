//! Daemon configuration: a TOML file, then `CLEARFLOW__SECTION__KEY` environment overrides.
//!
//! The raw structs reject unknown keys, so a typo in the file or an override is an
//! error naming the key rather than a silently ignored setting.

pub use clearflow_store::{Durability, StoreConfig};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The HTTP listener.
    #[serde(default)]
    pub server: ServerConfig,
    /// The durable store.
    #[serde(default)]
    pub store: StoreConfig,
    /// Where workflow files, calendars and templates are.
    #[serde(default)]
    pub workflows: WorkflowsConfig,
    /// The engine's workers.
    #[serde(default)]
    pub engine: EngineConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// The clock (a manual clock is for tests and demos only).
    #[serde(default)]
    pub clock: ClockConfig,
    /// Outgoing mail.
    #[serde(default)]
    pub mail: MailConfig,
    /// Users and roles.
    #[serde(default)]
    pub directory: DirectoryConfig,
    /// The plugin host.
    #[serde(default)]
    pub plugin_host: PluginHostConfig,
    /// Declared plugins.
    #[serde(default)]
    pub plugins: Vec<PluginConfig>,
    /// What each role may do through the API (`[roles.NAME]`).
    #[serde(default)]
    pub roles: std::collections::BTreeMap<String, RoleConfig>,
    /// Public complaint intake and status checks.
    #[serde(default)]
    pub intake: IntakeConfig,
    /// The key that seals reporters' identities.
    #[serde(default)]
    pub identity: IdentityConfig,
    /// How long closed cases are kept.
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Limits at the door (`[limits]`; see docs/administrators.md, "Limits").
    #[serde(default)]
    pub limits: clearflow_core::Limits,
    /// The web console and the whistleblower's site.
    #[serde(default)]
    pub web: WebConfig,
}

/// The web console (`[web]`): staff pages on the main listener, the whistleblower's
/// pages there too and, when `public_listen` is set, on a listener of their own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// Whether the console is served at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// A second listener serving only the whistleblower's pages and the stylesheet.
    /// With it set, the main listener serves no whistleblower page (the JSON intake
    /// endpoints, `/v1/public/…`, stay on the main listener with the rest of the API).
    #[serde(default)]
    pub public_listen: Option<String>,
    /// Minutes a session may go unused (default 30).
    #[serde(default = "default_idle_minutes")]
    pub session_idle_minutes: u64,
    /// Hours a session lives at most (default 8).
    #[serde(default = "default_session_hours")]
    pub session_hours: u64,
    /// Failed sign-ins allowed before a wait (default 5); the wait then doubles from one
    /// minute up to an hour.
    #[serde(default = "default_free_attempts")]
    pub lockout_after: u32,
    /// Whether the session cookie is `Secure` with the `__Host-` prefix (default true).
    /// Set false only for plain-HTTP access other than `localhost`, which browsers treat
    /// as secure anyway.
    #[serde(default = "default_true")]
    pub secure_cookie: bool,
    /// Who is told (template `case-message`, the case number only) when a whistleblower
    /// writes a message: `role:NAME`, `user:ID` or addresses (default the letters office).
    #[serde(default = "default_message_notify")]
    pub message_notify: Vec<String>,
    /// Single sign-on through a trusted reverse proxy (`[web.proxy_auth]`): off unless set.
    #[serde(default)]
    pub proxy_auth: Option<ProxyAuth>,
}

/// Single sign-on by a reverse proxy that has already authenticated the user (Keycloak,
/// Authelia, an organisation's gateway): the proxy sends the user's ID in `header`, and
/// a request from one of the `trusted` addresses carrying it is signed in as that user
/// of the users file, without password or TOTP (the proxy's sign-in stands for both).
/// The header from any other address is ignored and logged.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyAuth {
    /// The request header with the user's ID, e.g. `X-Remote-User`.
    #[serde(deserialize_with = "header_name")]
    pub header: String,
    /// The proxies' addresses: IP addresses or networks (`10.0.0.5`, `10.1.0.0/16`).
    #[serde(deserialize_with = "networks")]
    pub trusted: Vec<ipnet::IpNet>,
}

impl ProxyAuth {
    /// Whether `peer` is one of the trusted proxies.
    pub fn trusts(&self, peer: std::net::IpAddr) -> bool {
        let peer = match peer {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(std::net::IpAddr::V4)
                .unwrap_or(peer),
            v4 => v4,
        };
        self.trusted.iter().any(|n| n.contains(&peer))
    }
}

fn header_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let name = String::deserialize(d)?.to_ascii_lowercase();
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !token {
        return Err(serde::de::Error::custom(format!(
            "`{name}` is not a header name (letters, digits and `-`)"
        )));
    }
    if matches!(
        name.as_str(),
        "authorization" | "cookie" | "host" | "x-forwarded-for" | "forwarded"
    ) {
        return Err(serde::de::Error::custom(format!(
            "`{name}` cannot carry the signed-in user; use a header of its own such as `X-Remote-User`"
        )));
    }
    Ok(name)
}

fn networks<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    let items = Vec::<String>::deserialize(d)?;
    if items.is_empty() {
        return Err(serde::de::Error::custom(
            "`trusted` lists no proxy address, so no request could sign in",
        ));
    }
    items
        .iter()
        .map(|t| {
            t.parse::<ipnet::IpNet>()
                .or_else(|_| t.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "`{t}` is neither an IP address nor a network such as 10.1.0.0/16"
                    ))
                })
        })
        .collect()
}

fn default_message_notify() -> Vec<String> {
    vec!["role:intake".into()]
}

fn default_true() -> bool {
    true
}
fn default_idle_minutes() -> u64 {
    30
}
fn default_session_hours() -> u64 {
    8
}
fn default_free_attempts() -> u32 {
    5
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            enabled: true,
            public_listen: None,
            session_idle_minutes: default_idle_minutes(),
            session_hours: default_session_hours(),
            lockout_after: default_free_attempts(),
            secure_cookie: true,
            message_notify: default_message_notify(),
            proxy_auth: None,
        }
    }
}

/// What one role permits (`[roles.NAME]`); a user's permissions are the union of their
/// roles'. A role the users file names but this table does not grants nothing (it can
/// still be a task's candidate group).
#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// Workflows the role may start (`"*"`: every workflow).
    #[serde(default)]
    pub start: Vec<String>,
    /// See and act on the tasks of one's roles.
    #[serde(default)]
    pub tasks: bool,
    /// List and show instances with their history.
    #[serde(default)]
    pub read_instances: bool,
    /// Decrypt reporters' identities (every read is audited).
    #[serde(default)]
    pub read_identity: bool,
    /// Operate the daemon (signals, cancel, mail, schedules, clock, metrics, audit log).
    /// It implies none of the others, and one role cannot grant both `admin` and
    /// `read_identity`.
    #[serde(default)]
    pub admin: bool,
}

/// Public complaint intake (`POST /v1/public/intake`) and status checks by receipt code
/// (`POST /v1/public/status`). Rate limits are kept in this daemon's memory, per client
/// address (the TCP peer: behind a proxy, all clients share the proxy's).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeConfig {
    /// The workflow each complaint starts; intake is off when unset.
    #[serde(default)]
    pub workflow: Option<String>,
    /// Largest complaint body, in bytes.
    #[serde(default = "default_intake_body")]
    pub body_limit: usize,
    /// Complaints accepted per client address per hour.
    #[serde(default = "default_intake_per_hour")]
    pub intake_per_hour: u32,
    /// Complaints a client address may file in a burst.
    #[serde(default = "default_intake_burst")]
    pub intake_burst: u32,
    /// Status checks per client address per minute.
    #[serde(default = "default_status_per_minute")]
    pub status_per_minute: u32,
    /// Status checks a client address may make in a burst.
    #[serde(default = "default_status_burst")]
    pub status_burst: u32,
    /// Status checks per receipt lookup id per hour (stops online guessing of one code).
    #[serde(default = "default_receipt_per_hour")]
    pub receipt_per_hour: u32,
    /// Status checks of one lookup id in a burst.
    #[serde(default = "default_receipt_burst")]
    pub receipt_burst: u32,
    /// Origins (`https://host[:port]`) besides the daemon's own from which browsers may
    /// post to the public endpoints, e.g. the public site behind a reverse proxy. A post
    /// whose `Origin` is another site, or whose `Sec-Fetch-Site` is `cross-site`, is refused.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// The case number a complaint gets when its case data has none: `{year}` (of the
    /// day of receipt) and `{seq}` (a counter per year, unique across daemons; `{seq:05}`
    /// pads it to five digits).
    #[serde(default = "default_case_number")]
    pub case_number: String,
}

fn default_case_number() -> String {
    "{year}-信-{seq:05}".into()
}

/// Expands a case number pattern: `{year}` and `{seq}` / `{seq:0N}`.
pub fn case_number(pattern: &str, year: i32, seq: i64) -> String {
    let mut out = pattern.replace("{year}", &year.to_string());
    while let Some(start) = out.find("{seq") {
        let Some(len) = out[start..].find('}') else {
            break;
        };
        let spec = &out[start + 4..start + len];
        let width = spec
            .strip_prefix(":0")
            .and_then(|w| w.parse::<usize>().ok())
            .unwrap_or(0);
        out.replace_range(start..=start + len, &format!("{seq:0width$}"));
    }
    out
}

fn default_intake_body() -> usize {
    64 * 1024
}
fn default_intake_per_hour() -> u32 {
    20
}
fn default_intake_burst() -> u32 {
    5
}
fn default_status_per_minute() -> u32 {
    10
}
fn default_status_burst() -> u32 {
    10
}
fn default_receipt_per_hour() -> u32 {
    12
}
fn default_receipt_burst() -> u32 {
    6
}

impl Default for IntakeConfig {
    fn default() -> Self {
        IntakeConfig {
            workflow: None,
            body_limit: default_intake_body(),
            intake_per_hour: default_intake_per_hour(),
            intake_burst: default_intake_burst(),
            status_per_minute: default_status_per_minute(),
            status_burst: default_status_burst(),
            receipt_per_hour: default_receipt_per_hour(),
            receipt_burst: default_receipt_burst(),
            allowed_origins: Vec::new(),
            case_number: default_case_number(),
        }
    }
}

/// The identity key: a file with the base64 of 32 random bytes (`clearflow identity
/// keygen FILE`), or the variable `CLEARFLOW_IDENTITY_KEY`, which wins. Never stored in
/// the database.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// The key file (mode 0600).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// The plugin host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginHostConfig {
    /// Where compiled plugins are cached (owned by the daemon).
    #[serde(default = "default_plugin_cache")]
    pub cache_dir: PathBuf,
}

fn default_plugin_cache() -> PathBuf {
    "var/plugin-cache".into()
}

impl Default for PluginHostConfig {
    fn default() -> Self {
        PluginHostConfig {
            cache_dir: default_plugin_cache(),
        }
    }
}

/// One plugin declaration (`[[plugins]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// The name steps use (`plugin: NAME`).
    pub name: String,
    /// The `.wasm` component.
    pub path: PathBuf,
    /// Its sha256 (hex); a different file is refused.
    pub sha256: String,
    /// Wall-clock limit of one call, in milliseconds (default 5000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Memory limit of one call, in MiB (default 64).
    #[serde(default)]
    pub memory_mib: Option<usize>,
    /// Optional fuel (instruction budget) per call.
    #[serde(default)]
    pub fuel: Option<u64>,
    /// Largest input, in bytes.
    #[serde(default)]
    pub max_input_bytes: Option<usize>,
    /// Largest output, in bytes.
    #[serde(default)]
    pub max_output_bytes: Option<usize>,
    /// Plugin-specific configuration, passed to every call as JSON.
    #[serde(default)]
    pub config: Option<toml::Value>,
}

impl PluginConfig {
    /// The host's declaration for this plugin; relative paths are read from `base`.
    /// Its log is bounded by `limits.plugin_log_bytes`.
    pub fn decl(
        &self,
        base: &Path,
        bounds: &clearflow_core::Limits,
    ) -> clearflow_plugin_host::PluginDecl {
        let mut limits = clearflow_plugin_host::Limits {
            max_log_bytes: usize::try_from(bounds.plugin_log_bytes).unwrap_or(usize::MAX),
            ..Default::default()
        };
        if let Some(t) = self.timeout_ms {
            limits.timeout = std::time::Duration::from_millis(t);
        }
        if let Some(m) = self.memory_mib {
            limits.memory_bytes = m * 1024 * 1024;
        }
        limits.fuel = self.fuel;
        if let Some(n) = self.max_input_bytes {
            limits.max_input_bytes = n;
        }
        if let Some(n) = self.max_output_bytes {
            limits.max_output_bytes = n;
        }
        let config = self
            .config
            .as_ref()
            .and_then(|c| serde_json::to_value(c).ok())
            .unwrap_or(serde_json::Value::Object(Default::default()));
        clearflow_plugin_host::PluginDecl {
            name: self.name.clone(),
            path: if self.path.is_absolute() {
                self.path.clone()
            } else {
                base.join(&self.path)
            },
            sha256: self.sha256.clone(),
            limits,
            config,
        }
    }
}

/// Outgoing mail.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    /// The `From` of every message.
    #[serde(default = "default_from")]
    pub from: String,
    /// The domain of generated `Message-ID`s.
    #[serde(default = "default_domain")]
    pub domain: String,
    /// Where mail goes (default: the maildir `var/maildir`).
    #[serde(default = "default_transport")]
    pub transport: clearflow_mail::TransportConfig,
    /// Folder of templates (default: `templates/` in the workflows folder).
    #[serde(default)]
    pub templates: Option<PathBuf>,
    /// Attempts before a message becomes a dead letter.
    #[serde(default = "default_mail_attempts")]
    pub max_attempts: u32,
    /// First retry delay, in seconds; it doubles each time.
    #[serde(default = "default_retry_initial")]
    pub retry_initial_seconds: u64,
    /// Longest retry delay, in seconds.
    #[serde(default = "default_retry_max")]
    pub retry_max_seconds: u64,
    /// Messages sent at the same time.
    #[serde(default = "default_mail_concurrency")]
    pub concurrency: usize,
    /// Link to a case's page in the web console, in staff mail; `{id}` is replaced by
    /// the instance id. A mail about a task links to the task's page below it
    /// (`…/tasks/N`).
    #[serde(default = "default_case_url")]
    pub case_url: String,
    /// Link to the whistleblower's status page (`/follow` of the public site), in mail
    /// to the whistleblower, beside the reminder to use the receipt code.
    #[serde(default = "default_status_url")]
    pub status_url: String,
}

fn default_from() -> String {
    "clearflow <noreply@clearflow.localhost>".into()
}
fn default_domain() -> String {
    "clearflow.localhost".into()
}
fn default_transport() -> clearflow_mail::TransportConfig {
    clearflow_mail::TransportConfig::Maildir {
        path: "var/maildir".into(),
    }
}
fn default_mail_attempts() -> u32 {
    10
}
fn default_retry_initial() -> u64 {
    30
}
fn default_retry_max() -> u64 {
    3600
}
fn default_mail_concurrency() -> usize {
    4
}
fn default_status_url() -> String {
    "http://127.0.0.1:7878/follow".into()
}
fn default_case_url() -> String {
    "http://127.0.0.1:7878/cases/{id}".into()
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            from: default_from(),
            domain: default_domain(),
            transport: default_transport(),
            templates: None,
            max_attempts: default_mail_attempts(),
            retry_initial_seconds: default_retry_initial(),
            retry_max_seconds: default_retry_max(),
            concurrency: default_mail_concurrency(),
            case_url: default_case_url(),
            status_url: default_status_url(),
        }
    }
}

/// Retention of closed cases (保存期限): a case expires a set period after its last
/// instance ended, its administrators are warned before, and the deletion is recorded in
/// the audit log (see `crate::retention`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// How long a closed case is kept (`5y`, `18mo`, `26w`, `90d`), or `never` (the
    /// default: nothing is deleted).
    #[serde(default)]
    pub keep: Keep,
    /// Periods for the cases of some workflows (the workflow of the case's first
    /// instance), overriding `keep`.
    #[serde(default)]
    pub workflows: std::collections::BTreeMap<String, Keep>,
    /// How long before its expiry a case's warning goes out (default `30d`); a case is
    /// never deleted sooner than this after its warning.
    #[serde(default = "default_warn_before", deserialize_with = "calendar_span")]
    pub warn_before: clearflow_time::Span,
    /// Who is warned: `role:NAME`, `user:ID` or addresses (default `role:admin`).
    #[serde(default = "default_retention_notify")]
    pub notify: Vec<String>,
    /// The warning's template (default `retention-warning`).
    #[serde(default = "default_retention_template")]
    pub template: String,
    /// The time zone in which periods are counted (default `Asia/Shanghai`).
    #[serde(default = "default_retention_zone", deserialize_with = "time_zone")]
    pub timezone: chrono_tz::Tz,
    /// How often expiring cases are looked for, in seconds (default 3600).
    #[serde(default = "default_retention_every")]
    pub every_seconds: u64,
}

/// How long a closed case is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Keep {
    /// Forever.
    #[default]
    Never,
    /// This long after the case ended.
    For(clearflow_time::Span),
}

impl<'de> Deserialize<'de> for Keep {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Keep, D::Error> {
        let text = String::deserialize(d)?;
        if text == "never" {
            return Ok(Keep::Never);
        }
        parse_calendar_span(&text)
            .map(Keep::For)
            .map_err(|e| serde::de::Error::custom(format!("{e}; or `never` to keep cases forever")))
    }
}

fn parse_calendar_span(text: &str) -> Result<clearflow_time::Span, String> {
    use clearflow_time::Unit;
    let span: clearflow_time::Span = text.parse().map_err(|e| format!("`{text}`: {e}"))?;
    if span.amount() <= 0 {
        return Err(format!("`{text}`: give a positive period"));
    }
    if !matches!(
        span.unit(),
        Unit::Days | Unit::Weeks | Unit::Months | Unit::Years
    ) {
        return Err(format!(
            "`{text}`: retention periods are counted in calendar days, weeks, months or years (`d`, `w`, `mo`, `y`)"
        ));
    }
    Ok(span)
}

fn calendar_span<'de, D: serde::Deserializer<'de>>(d: D) -> Result<clearflow_time::Span, D::Error> {
    parse_calendar_span(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn time_zone<'de, D: serde::Deserializer<'de>>(d: D) -> Result<chrono_tz::Tz, D::Error> {
    let name = String::deserialize(d)?;
    name.parse()
        .map_err(|_| serde::de::Error::custom(format!("`{name}` is not an IANA time zone")))
}

fn default_warn_before() -> clearflow_time::Span {
    clearflow_time::Span::new(30, clearflow_time::Unit::Days)
}
fn default_retention_notify() -> Vec<String> {
    vec!["role:admin".into()]
}
fn default_retention_template() -> String {
    "retention-warning".into()
}
fn default_retention_zone() -> chrono_tz::Tz {
    chrono_tz::Asia::Shanghai
}
fn default_retention_every() -> u64 {
    3600
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            keep: Keep::Never,
            workflows: Default::default(),
            warn_before: default_warn_before(),
            notify: default_retention_notify(),
            template: default_retention_template(),
            timezone: default_retention_zone(),
            every_seconds: default_retention_every(),
        }
    }
}

impl RetentionConfig {
    /// The period for a case whose first instance runs `workflow`.
    pub fn keep_for(&self, workflow: &str) -> Keep {
        self.workflows.get(workflow).copied().unwrap_or(self.keep)
    }

    /// Whether any case can expire.
    pub fn enabled(&self) -> bool {
        self.keep != Keep::Never || self.workflows.values().any(|k| *k != Keep::Never)
    }
}

/// Users and roles.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// The users file (TOML, `[[users]]` with id, name, email, roles, locale).
    #[serde(default)]
    pub users: Option<PathBuf>,
}

/// The HTTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on; loopback by default.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Largest accepted request body, in bytes.
    #[serde(default = "default_body_limit")]
    pub body_limit: usize,
    /// Seconds a client has to send a request's headers; the connection is closed
    /// after that.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_seconds: u64,
    /// Seconds a client has to send a request's body; `408` after that.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_seconds: u64,
    /// Connections one client address may hold open at once; more are answered `503`
    /// and closed. 0: no limit. Behind a reverse proxy every client has the proxy's
    /// address: raise it there (or limit at the proxy).
    #[serde(default = "default_per_address")]
    pub max_connections_per_address: usize,
}

fn default_per_address() -> usize {
    64
}

fn default_header_timeout() -> u64 {
    10
}
fn default_body_timeout() -> u64 {
    30
}

fn default_listen() -> String {
    "127.0.0.1:7878".into()
}
fn default_body_limit() -> usize {
    1024 * 1024
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            body_limit: default_body_limit(),
            header_timeout_seconds: default_header_timeout(),
            body_timeout_seconds: default_body_timeout(),
            max_connections_per_address: default_per_address(),
        }
    }
}

/// Where definitions live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowsConfig {
    /// Folder of workflow files (`*.yaml`).
    #[serde(default = "default_workflows_dir")]
    pub dir: PathBuf,
    /// Folder of working-day calendars (`REGION/YEAR.toml`).
    #[serde(default)]
    pub calendars: Option<PathBuf>,
}

fn default_workflows_dir() -> PathBuf {
    "workflows".into()
}

impl Default for WorkflowsConfig {
    fn default() -> Self {
        WorkflowsConfig {
            dir: default_workflows_dir(),
            calendars: None,
        }
    }
}

impl WorkflowsConfig {
    /// The calendars folder (default: `calendars/` inside the workflows folder).
    pub fn calendars_dir(&self) -> PathBuf {
        self.calendars
            .clone()
            .unwrap_or_else(|| self.dir.join("calendars"))
    }
}

impl Config {
    /// The templates folder (default: `templates/` inside the workflows folder).
    pub fn templates_dir(&self) -> PathBuf {
        self.mail
            .templates
            .clone()
            .unwrap_or_else(|| self.workflows.dir.join("templates"))
    }
}

/// The engine's workers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Most instances advanced in one commit.
    #[serde(default = "default_batch")]
    pub batch_size: u32,
    /// How long a claim on an instance lasts before another worker may take it.
    #[serde(default = "default_lease")]
    pub lease_seconds: u64,
    /// How often to look for work that other daemons made due (PostgreSQL).
    #[serde(default = "default_poll")]
    pub poll_ms: u64,
    /// Identifies this daemon in leases (default: host name and process id).
    #[serde(default)]
    pub node_id: Option<String>,
}

fn default_batch() -> u32 {
    256
}
fn default_lease() -> u64 {
    60
}
fn default_poll() -> u64 {
    250
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            batch_size: default_batch(),
            lease_seconds: default_lease(),
            poll_ms: default_poll(),
            node_id: None,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Format.
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `clearflow=debug,sqlx=warn`.
    #[serde(default = "default_level")]
    pub level: String,
}

fn default_level() -> String {
    "info".into()
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::default(),
            level: default_level(),
        }
    }
}

/// The clock.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ClockConfig {
    /// `system` (default) or `manual`: time stands still until moved through
    /// `POST /v1/admin/clock` — for tests and demos, never for production.
    #[serde(default)]
    pub mode: ClockMode,
    /// Start time of a manual clock (RFC 3339; default: the system time at start).
    #[serde(default)]
    pub start: Option<String>,
}

/// Clock modes.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClockMode {
    /// The system clock.
    #[default]
    System,
    /// A clock moved by hand.
    Manual,
}

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
#[error("configuration {source_name}: {message}")]
pub struct ConfigError {
    source_name: String,
    message: String,
}

impl Config {
    /// Reads `file` (when given), then the `CLEARFLOW__…` environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut builder = config::Config::builder();
        let source_name = match file {
            Some(f) => {
                if !f.exists() {
                    return Err(ConfigError {
                        source_name: f.display().to_string(),
                        message: "file not found".into(),
                    });
                }
                builder =
                    builder.add_source(config::File::from(f).format(config::FileFormat::Toml));
                f.display().to_string()
            }
            None => "(defaults)".into(),
        };
        builder = builder.add_source(
            config::Environment::with_prefix("CLEARFLOW")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        );
        let raw = builder.build().map_err(|e| ConfigError {
            source_name: source_name.clone(),
            message: e.to_string(),
        })?;
        raw.try_deserialize::<Config>().map_err(|e| ConfigError {
            source_name,
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_auth_trusts_only_its_addresses() {
        let c = load(
            "[web.proxy_auth]\nheader = \"X-Remote-User\"\ntrusted = [\"127.0.0.1\", \"10.1.0.0/16\", \"::1\"]\n",
        )
        .expect("loads");
        let p = c.web.proxy_auth.expect("proxy auth");
        assert_eq!(p.header, "x-remote-user");
        for ok in ["127.0.0.1", "10.1.200.3", "::1", "::ffff:127.0.0.1"] {
            assert!(p.trusts(ok.parse().unwrap()), "{ok}");
        }
        for no in ["127.0.0.2", "10.2.0.1", "192.168.1.1", "::2"] {
            assert!(!p.trusts(no.parse().unwrap()), "{no}");
        }
        for (bad, says) in [
            (
                "header = \"Cookie\"\ntrusted = [\"127.0.0.1\"]",
                "cannot carry",
            ),
            (
                "header = \"X User\"\ntrusted = [\"127.0.0.1\"]",
                "not a header name",
            ),
            ("header = \"X-User\"\ntrusted = []", "lists no proxy"),
            (
                "header = \"X-User\"\ntrusted = [\"10.0.0.0/33\"]",
                "10.0.0.0/33",
            ),
        ] {
            let e = load(&format!("[web.proxy_auth]\n{bad}\n")).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    fn load(text: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("clearflow.toml");
        std::fs::write(&file, text).expect("write");
        Config::load(Some(&file)).map_err(|e| e.to_string())
    }

    #[test]
    fn retention_is_off_unless_configured() {
        let cfg = load("").expect("defaults");
        assert!(!cfg.retention.enabled());
        assert_eq!(cfg.retention.keep_for("anything"), Keep::Never);
    }

    #[test]
    fn retention_periods_per_workflow() {
        let cfg = load(
            "[retention]\nkeep = \"5y\"\nwarn_before = \"2w\"\ntimezone = \"Europe/Berlin\"\n\
             [retention.workflows]\nmonthly-joint-review = \"18mo\"\ncampaigns = \"never\"\n",
        )
        .expect("valid");
        let r = &cfg.retention;
        assert!(r.enabled());
        assert_eq!(
            r.keep_for("complaint-handling"),
            Keep::For("5y".parse().unwrap())
        );
        assert_eq!(
            r.keep_for("monthly-joint-review"),
            Keep::For("18mo".parse().unwrap())
        );
        assert_eq!(r.keep_for("campaigns"), Keep::Never);
        assert_eq!(r.warn_before, "2w".parse().unwrap());
        assert_eq!(r.timezone, chrono_tz::Europe::Berlin);
        assert_eq!(r.notify, ["role:admin"]);
    }

    #[test]
    fn the_shipped_configuration_expires_cases_with_the_shipped_warning() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let cfg = Config::load(Some(&root.join("config/clearflow.toml"))).expect("shipped config");
        assert_eq!(cfg.retention.keep, Keep::For("5y".parse().unwrap()));
        let templates =
            clearflow_templates::load_dir(&root.join("workflows/templates")).expect("templates");
        crate::retention::check_template(&cfg.retention, Some(&templates))
            .expect("the shipped warning template reads only what a warning provides");
        let mut wrong = cfg.retention.clone();
        wrong.template = "task-reminder".into();
        assert!(crate::retention::check_template(&wrong, Some(&templates)).is_err());
    }

    #[test]
    fn bad_retention_settings_are_refused_naming_the_value() {
        for (text, expect) in [
            (
                "[retention]\nkeep = \"15wd\"\n",
                "calendar days, weeks, months or years",
            ),
            ("[retention]\nkeep = \"-1y\"\n", "positive"),
            ("[retention]\nkeep = \"forever\"\n", "`never`"),
            ("[retention]\nwarn_before = \"12h\"\n", "`12h`"),
            (
                "[retention]\ntimezone = \"Mars/Olympus\"\n",
                "`Mars/Olympus` is not an IANA time zone",
            ),
            ("[retention]\nkeep_for = \"1y\"\n", "keep_for"),
        ] {
            let err = load(text).expect_err(text);
            assert!(err.contains(expect), "{text}: {err}");
            assert!(err.contains("clearflow.toml"), "{text}: {err}");
        }
    }
}
