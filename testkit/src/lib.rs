//! Test harness for the end-to-end tests: runs the real `clearflow` binary against a store.
//!
//! [`Daemon::start`] writes a configuration into a temporary folder (a free loopback
//! port, a manual clock, a SQLite file or a fresh PostgreSQL database), copies the
//! workflows, spawns `clearflow serve` and waits for `/readyz`. The daemon's stderr goes
//! to a file in that folder so a failing test can show it. Dropping a [`Daemon`] kills
//! the process and drops its PostgreSQL database.
//!
//! Every daemon gets a users file with the user `admin` (roles `admin` and `operator`,
//! which may do everything but read identities) plus [`Options::users`], and a
//! `[roles]` table plus [`Options::roles`]. After the first start the harness creates a
//! token for `admin` with `clearflow tokens create`; [`Daemon::get`], [`Daemon::post`]
//! and [`Daemon::cli`] send it unless told otherwise ([`Daemon::try_get_as`], …).
//!
//! The typed client reads answers into the API's own wire types ([`model`], the types
//! the handlers return and the OpenAPI document describes): [`Daemon::get_typed`],
//! [`Daemon::post_typed`], [`Daemon::show_instance`], [`Daemon::instances`]. A field the
//! type lacks, or of the wrong shape, fails the test where it is read.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The API's wire types, for typed reads of its answers.
pub use clearflow_api::model;

/// A real SMTP server (`scripts/smtp_server.py`, aiosmtpd) on loopback: the mail crate's
/// test harness, shared.
pub mod flagship;
pub mod smtp;
pub mod store;

/// The `[mail]` configuration for a daemon sending through `server`: STARTTLS with the
/// server's test CA trusted and AUTH as `clearflow` when the server requires them (its
/// password in a file), the repository's templates. (Users go in [`Options::users`].)
pub fn smtp_config(server: &smtp::SmtpServer, mail_extra: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut t = format!(
        "[mail]\nfrom = \"纪检监察信访室 <noreply@clearflow.test>\"\ndomain = \"clearflow.test\"\n\
         templates = \"{templates}\"\n{mail_extra}\n\
         [mail.transport]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\ntimeout = 10\n",
        templates = root.join("workflows/templates").display(),
        port = server.port(),
    );
    match server.ca_file() {
        Some(ca) => t += &format!("security = \"starttls\"\nca_file = \"{}\"\n", ca.display()),
        None => t += "security = \"plain\"\n",
    }
    if let Some((user, pass)) = server.auth() {
        let file = server.scratch_dir().join("smtp-password");
        fs::write(&file, format!("{pass}\n")).expect("writing the smtp password file");
        t += &format!(
            "username = \"{user}\"\npassword_file = \"{}\"\n",
            file.display()
        );
    }
    t
}

/// The binary under test.
pub static BIN: std::sync::LazyLock<PathBuf> = std::sync::LazyLock::new(|| {
    // Cargo builds the binary beside the test executables' `deps` directory.
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable is in target/<profile>/deps");
    let bin = dir.join("clearflow");
    assert!(
        bin.exists(),
        "no daemon binary at {} (cargo test builds it)",
        bin.display()
    );
    bin
});

/// The fixture workflows of the end-to-end tests.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/workflows")
}

/// Where every manual clock starts: a Monday, 09:00 UTC.
pub fn epoch() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-03-03T09:00:00Z")
        .expect("epoch")
        .with_timezone(&Utc)
}

/// Which database the daemon uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in the daemon's temporary folder.
    Sqlite,
    /// A fresh database on the server named by `CLEARFLOW_TEST_POSTGRES_URL`.
    Postgres,
}

/// A PostgreSQL database created for one test and dropped after it.
pub struct PgDatabase {
    /// Its URL.
    pub url: String,
    admin: String,
    name: String,
}

/// The server URL for the PostgreSQL half of the suite; panics (never skips) without it.
pub fn postgres_url() -> String {
    match std::env::var("CLEARFLOW_TEST_POSTGRES_URL") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "CLEARFLOW_TEST_POSTGRES_URL is not set: the PostgreSQL tests need a server. \
             Run ./scripts/test.sh, which starts a throwaway PostgreSQL and sets it"
        ),
    }
}

fn pg_exec(url: &str, sql: &str) -> Result<(), String> {
    use sqlx::{Connection, Executor};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .map_err(|e| format!("connecting to {url}: {e}"))?;
        conn.execute(sql).await.map_err(|e| format!("{sql}: {e}"))?;
        conn.close().await.map_err(|e| e.to_string())
    })
}

impl PgDatabase {
    /// Creates `t_<random>` on the test server.
    pub fn create() -> PgDatabase {
        let admin = postgres_url();
        let name = format!("t_{}", uuid::Uuid::now_v7().simple());
        pg_exec(&admin, &format!("CREATE DATABASE {name}")).expect("creating a test database");
        let (base, _) = admin.rsplit_once('/').expect("postgres url has a database");
        PgDatabase {
            url: format!("{base}/{name}"),
            admin,
            name,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = pg_exec(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// A free loopback port (bound and released; the daemon binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("binding 127.0.0.1:0")
        .local_addr()
        .expect("address")
        .port()
}

/// Copies the workflow files of `from` (and the shipped calendars) into `to`.
pub fn copy_workflows(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("workflows dir");
    for entry in fs::read_dir(from).expect("reading workflows") {
        let p = entry.expect("entry").path();
        if p.is_file() {
            fs::copy(&p, to.join(p.file_name().expect("name"))).expect("copying a workflow");
        }
    }
    let calendars = Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/calendars");
    copy_dir(&calendars, &to.join("calendars"));
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("creating a folder");
    for entry in fs::read_dir(from).expect("reading a folder") {
        let p = entry.expect("entry").path();
        let target = to.join(p.file_name().expect("name"));
        if p.is_dir() {
            copy_dir(&p, &target);
        } else {
            fs::copy(&p, &target).expect("copying a file");
        }
    }
}

/// Settings of one daemon beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra lines for the `[engine]` section, e.g. `batch_size = 16`.
    pub engine: String,
    /// Extra lines for the `[server]` section, e.g. `header_timeout_seconds = 1`.
    pub server: String,
    /// Environment variables for the daemon.
    pub env: Vec<(String, String)>,
    /// Extra configuration appended to the file (e.g. `[[plugins]]` tables).
    pub extra: String,
    /// Extra `[[users]]` entries for the users file (beside the harness's `admin`).
    pub users: String,
    /// Extra `[roles.NAME]` tables (beside the harness's `admin` and `operator`).
    pub roles: String,
}

/// The users file every daemon starts with (before [`Options::users`]).
pub const ADMIN_USER: &str = "[[users]]\nid = \"admin\"\nname = \"Harness Administrator\"\nemail = \"admin@example.org\"\nroles = [\"admin\", \"operator\"]\n";

/// The roles every daemon starts with (before [`Options::roles`]).
pub const HARNESS_ROLES: &str = "[roles.admin]\nadmin = true\n\n[roles.operator]\nstart = [\"*\"]\ntasks = true\nread_instances = true\n";

/// A running `clearflow serve` (or one that was killed and can be restarted).
pub struct Daemon {
    /// The backend.
    pub backend: Backend,
    /// The temporary folder with config, workflows, store and logs.
    pub dir: tempfile::TempDir,
    /// The listener port.
    pub port: u16,
    /// The store URL.
    pub store_url: String,
    /// Where the manual clock starts on the next (re)start.
    pub clock_start: DateTime<Utc>,
    /// Settings used on the next (re)start.
    pub options: Options,
    child: Option<Child>,
    starts: u32,
    /// The `admin` user's token, sent by default.
    pub token: Option<String>,
    http: reqwest::blocking::Client,
    _pg: Option<PgDatabase>,
}

impl Daemon {
    /// Starts a daemon on `backend` with the workflows of `workflows`.
    pub fn start(backend: Backend, workflows: &Path) -> Daemon {
        Daemon::start_with(backend, workflows, Options::default())
    }

    /// Starts a daemon with extra settings.
    pub fn start_with(backend: Backend, workflows: &Path, options: Options) -> Daemon {
        Daemon::start_with_clock(backend, workflows, options, epoch())
    }

    /// Starts a daemon with extra settings and its manual clock at `clock_start`.
    pub fn start_with_clock(
        backend: Backend,
        workflows: &Path,
        options: Options,
        clock_start: DateTime<Utc>,
    ) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("clearflow-e2e")
            .tempdir()
            .expect("temp dir");
        copy_workflows(workflows, &dir.path().join("workflows"));
        let (store_url, pg) = match backend {
            Backend::Sqlite => (
                format!(
                    "sqlite://{}",
                    dir.path().join("store/clearflow.db").display()
                ),
                None,
            ),
            Backend::Postgres => {
                let db = PgDatabase::create();
                (db.url.clone(), Some(db))
            }
        };
        let mut d = Daemon {
            backend,
            dir,
            port: free_port(),
            store_url,
            clock_start,
            options,
            child: None,
            starts: 0,
            token: None,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
            _pg: pg,
        };
        d.spawn();
        d
    }

    /// Starts another daemon on the same store as `other`: its own folder, port and
    /// manual clock (starting at `other.clock_start`), a copy of its workflows and the
    /// same options. The store (and a PostgreSQL database) stays owned by `other`.
    pub fn start_beside(other: &Daemon) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("clearflow-e2e")
            .tempdir()
            .expect("temp dir");
        copy_workflows(&other.workflows_dir(), &dir.path().join("workflows"));
        let mut d = Daemon {
            backend: other.backend,
            dir,
            port: free_port(),
            store_url: other.store_url.clone(),
            clock_start: other.clock_start,
            options: other.options.clone(),
            child: None,
            starts: 0,
            // The same store holds the same tokens.
            token: other.token.clone(),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("http client"),
            _pg: None,
        };
        d.spawn();
        d
    }

    /// The configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("clearflow.toml")
    }

    /// The workflows folder the daemon reads.
    pub fn workflows_dir(&self) -> PathBuf {
        self.dir.path().join("workflows")
    }

    /// The base URL of the API.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The users file.
    pub fn users_path(&self) -> PathBuf {
        self.dir.path().join("users.toml")
    }

    fn write_config(&self) {
        fs::write(
            self.users_path(),
            format!("{ADMIN_USER}\n{}\n", self.options.users),
        )
        .expect("writing the users file");
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n{server}\n\n[store]\nurl = \"{url}\"\n\n[workflows]\ndir = \"{wf}\"\n\n\
             [engine]\npoll_ms = 50\n{engine}\n\n[log]\nlevel = \"info,sqlx=warn\"\n\n[clock]\nmode = \"manual\"\nstart = \"{start}\"\n\n\
             [directory]\nusers = \"{users}\"\n\n{roles}\n{extra_roles}\n{extra}\n",
            users = self.users_path().display(),
            roles = HARNESS_ROLES,
            extra_roles = self.options.roles,
            port = self.port,
            url = self.store_url,
            wf = self.workflows_dir().display(),
            engine = self.options.engine,
            server = self.options.server,
            start = self.clock_start.to_rfc3339(),
            extra = self.options.extra,
        );
        fs::write(self.config_path(), text).expect("writing the config");
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "the daemon is already running");
        self.write_config();
        self.starts += 1;
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        writeln!(log, "===== start {} =====", self.starts).expect("log");
        let mut cmd = Command::new(&*BIN);
        cmd.arg("serve")
            .arg("--config")
            .arg(self.config_path())
            .current_dir(self.dir.path())
            .env_remove("CLEARFLOW__STORE__URL")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        for (k, v) in &self.options.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawning clearflow serve"));
        let ready = self.wait_until("the daemon answers /readyz", Duration::from_secs(60), |d| {
            if let Some(status) = d
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("try_wait"))
            {
                panic!(
                    "the daemon exited with {status} before it was ready:\n{}",
                    d.logs()
                );
            }
            d.http
                .get(format!("{}/readyz", d.url()))
                .send()
                .map(|r| r.status().is_success())
                .unwrap_or(false)
        });
        assert!(ready);
        if self.token.is_none() {
            self.token = Some(self.create_token("admin", "never"));
        }
    }

    /// Runs `clearflow tokens create` on this daemon's configuration; returns the token.
    pub fn create_token(&self, user: &str, expires: &str) -> String {
        let out = self.admin_cli(&["tokens", "create", "--user", user, "--expires", expires]);
        assert!(
            out.status.success(),
            "clearflow tokens create --user {user} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned()
    }

    /// Sets `user`'s web console password (`clearflow users set-password`, the password
    /// on standard input).
    pub fn set_password(&self, user: &str, password: &str) {
        use std::io::Write as _;
        let mut child = Command::new(&*BIN)
            .args(["users", "set-password", user, "--config"])
            .arg(self.config_path())
            .current_dir(self.dir.path())
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("running clearflow users set-password");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(format!("{password}\n").as_bytes())
            .expect("writing the password");
        let out = child
            .wait_with_output()
            .expect("clearflow users set-password");
        assert!(
            out.status.success(),
            "clearflow users set-password {user} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs a host command (`tokens`, `audit`) with `--config` of this daemon.
    pub fn admin_cli(&self, args: &[&str]) -> Output {
        Command::new(&*BIN)
            .args(args)
            .arg("--config")
            .arg(self.config_path())
            .current_dir(self.dir.path())
            .env_remove("CLEARFLOW_TOKEN")
            // The daemon's overrides apply to host commands too, as in a deployment.
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("running clearflow")
    }

    fn bearer(&self) -> &str {
        self.token.as_deref().expect("the harness token")
    }

    /// Everything the daemon logged, over all its starts.
    pub fn logs(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The process id of the running daemon.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the daemon is not running").id()
    }

    /// Kills the daemon with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        self.signal("KILL");
        self.reap();
    }

    /// Waits for a daemon that was signalled (e.g. with `signal("KILL")` from a test
    /// holding only `&Daemon`) to exit; returns whether it exited successfully.
    pub fn reap(&mut self) -> bool {
        let mut child = self.child.take().expect("the daemon is not running");
        child.wait().expect("reaping the daemon").success()
    }

    /// The value of a counter or gauge line of `/metrics` (0 when absent).
    pub fn metric(&self, name: &str) -> u64 {
        let r = self
            .http
            .get(format!("{}/metrics", self.url()))
            .bearer_auth(self.bearer())
            .send()
            .expect("GET /metrics");
        let text = r.text().expect("metrics body");
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .map_or(0, |v| v.trim().parse().expect("a number"))
    }

    /// Starts the daemon again on the same store (and port), the manual clock at `clock_start`.
    pub fn restart(&mut self) {
        self.spawn();
    }

    /// Sends a signal (`TERM`, `HUP`, …) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg("-s")
            .arg(name)
            .arg(self.pid().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -s {name} failed");
    }

    /// SIGTERM; asserts that the daemon exits 0 within 30 s.
    pub fn terminate(&mut self) {
        self.signal("TERM");
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                assert!(
                    status.success(),
                    "the daemon exited with {status} after SIGTERM:\n{}",
                    self.logs()
                );
                return;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "the daemon did not exit within 30 s of SIGTERM:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `clearflow ARGS…` against this daemon (`CLEARFLOW_SERVER` and the admin
    /// token in `CLEARFLOW_TOKEN` set).
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_as(self.token.as_deref(), args)
    }

    /// Runs `clearflow ARGS…` with `token` (none: no `CLEARFLOW_TOKEN`).
    pub fn cli_as(&self, token: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = Command::new(&*BIN);
        cmd.args(args)
            .env("CLEARFLOW_SERVER", self.url())
            .env("HOME", self.dir.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("CLEARFLOW_TOKEN");
        if let Some(t) = token {
            cmd.env("CLEARFLOW_TOKEN", t);
        }
        cmd.current_dir(self.dir.path())
            .output()
            .expect("running clearflow")
    }

    /// Like [`Daemon::cli`], asserting success and returning stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "clearflow {args:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// GET `path` with the admin token: the status and the JSON (or string) body.
    pub fn try_get(&self, path: &str) -> Result<(u16, Value), reqwest::Error> {
        self.try_get_as(self.token.as_deref(), path)
    }

    /// POST JSON to `path` with the admin token: the status and the body.
    pub fn try_post(&self, path: &str, body: &Value) -> Result<(u16, Value), reqwest::Error> {
        self.try_post_as(self.token.as_deref(), path, body)
    }

    /// GET `path` with `token` (none: no `Authorization` header).
    pub fn try_get_as(
        &self,
        token: Option<&str>,
        path: &str,
    ) -> Result<(u16, Value), reqwest::Error> {
        let mut req = self.http.get(format!("{}{path}", self.url()));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Ok(decode(req.send()?))
    }

    /// POST JSON to `path` with `token` (none: no `Authorization` header).
    pub fn try_post_as(
        &self,
        token: Option<&str>,
        path: &str,
        body: &Value,
    ) -> Result<(u16, Value), reqwest::Error> {
        let mut req = self.http.post(format!("{}{path}", self.url())).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Ok(decode(req.send()?))
    }

    /// GET `path`, asserting a 2xx answer.
    pub fn get(&self, path: &str) -> Value {
        let (status, v) = self
            .try_get(path)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert!((200..300).contains(&status), "GET {path}: {status} {v}");
        v
    }

    /// POST `path`, asserting a 2xx answer.
    pub fn post(&self, path: &str, body: &Value) -> Value {
        let (status, v) = self
            .try_post(path, body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        assert!((200..300).contains(&status), "POST {path}: {status} {v}");
        v
    }

    /// GET `path`, asserting a 2xx answer, read as `T` (one of the [`model`] types).
    pub fn get_typed<T: DeserializeOwned>(&self, path: &str) -> T {
        typed("GET", path, self.get(path))
    }

    /// POST `path`, asserting a 2xx answer, read as `T` (one of the [`model`] types).
    pub fn post_typed<T: DeserializeOwned>(&self, path: &str, body: &Value) -> T {
        typed("POST", path, self.post(path, body))
    }

    /// The manual clock's time.
    pub fn now(&self) -> DateTime<Utc> {
        let v: model::ClockReply = self.get_typed("/v1/admin/clock");
        DateTime::parse_from_rfc3339(&v.now)
            .expect("rfc3339")
            .with_timezone(&Utc)
    }

    /// Moves the manual clock to `to`.
    pub fn set_clock(&self, to: DateTime<Utc>) {
        self.post("/v1/admin/clock", &json!({ "set": to.to_rfc3339() }));
    }

    /// Moves the manual clock forward by `by`.
    pub fn advance(&self, by: TimeDelta) {
        self.post(
            "/v1/admin/clock",
            &json!({ "advance_ms": by.num_milliseconds() }),
        );
    }

    /// Polls `check` every 20 ms until it holds; panics with the logs after `timeout`.
    pub fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&mut Daemon) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if check(self) {
                return true;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting until {what}; daemon log:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts `workflow` through the API; returns `(id, created)`.
    pub fn start_instance(
        &self,
        workflow: &str,
        input: &Value,
        key: Option<&str>,
    ) -> (String, bool) {
        let v: model::StartReply = self.post_typed(
            "/v1/instances",
            &json!({ "workflow": workflow, "input": input, "idempotency_key": key }),
        );
        (v.id, v.created)
    }

    /// One instance with history, pending work and children.
    pub fn instance(&self, id: &str) -> Value {
        self.get(&format!("/v1/instances/{id}"))
    }

    /// [`Daemon::instance`], typed.
    pub fn show_instance(&self, id: &str) -> model::InstanceDetail {
        self.get_typed(&format!("/v1/instances/{id}"))
    }

    /// [`Daemon::list_all`], typed.
    pub fn instances(&self, query: &str) -> Vec<model::Instance> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut path = format!("/v1/instances?limit=1000&{query}");
            if let Some(a) = &after {
                path += &format!("&after={a}");
            }
            let page: model::InstancePage = self.get_typed(&path);
            out.extend(page.items);
            match page.next {
                Some(n) => after = Some(n),
                None => return out,
            }
        }
    }

    /// Every instance matching `query` (e.g. `status=running`), following the pages.
    pub fn list_all(&self, query: &str) -> Vec<Value> {
        self.instances(query)
            .into_iter()
            .map(|i| serde_json::to_value(i).expect("an instance serialises"))
            .collect()
    }

    /// Whether nothing is due: every running instance waits for a later time or for nothing.
    pub fn idle(&self) -> bool {
        let now = self.now().timestamp_millis();
        self.instances("status=running")
            .iter()
            .all(|i| i.wake_at.is_none_or(|w| w > now))
    }

    /// Waits until nothing is due at the clock's current time.
    pub fn settle(&mut self) {
        self.wait_until(
            "the engine has nothing due",
            Duration::from_secs(120),
            |d| d.idle(),
        );
    }

    /// The `(kind, step)` sequence of an instance's history.
    pub fn history(&self, id: &str) -> Vec<(String, Option<String>)> {
        history_steps(&self.show_instance(id))
    }
}

/// [`history_of`], of a typed [`model::InstanceDetail`].
pub fn history_steps(shown: &model::InstanceDetail) -> Vec<(String, Option<String>)> {
    shown
        .history
        .iter()
        .map(|h| (h.kind.clone(), h.step.clone()))
        .collect()
}

/// The `(kind, step)` sequence of a shown instance.
pub fn history_of(shown: &Value) -> Vec<(String, Option<String>)> {
    shown["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| {
            (
                h["kind"].as_str().expect("kind").to_owned(),
                h["step"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// `v`, the answer of `method path`, read as `T`; a mismatch fails with the body.
fn typed<T: DeserializeOwned>(method: &str, path: &str, v: Value) -> T {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| {
        panic!(
            "{method} {path}: the answer is not a {}: {e}: {v}",
            std::any::type_name::<T>()
        )
    })
}

fn decode(r: reqwest::blocking::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            // Keep the evidence of a failing test.
            let logs = self.logs();
            let tail = &logs[logs.len().saturating_sub(20_000)..];
            eprintln!(
                "daemon log ({}), last part:\n{tail}",
                self.dir.path().display()
            );
        }
    }
}

/// A `[[plugins]]` table for `plugins/dist/NAME.wasm`, pinned to its line in
/// `plugins/dist/SHA256SUMS` (written by `plugins/build.sh`).
pub fn dist_plugin(name: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist");
    let sums = fs::read_to_string(root.join("SHA256SUMS")).expect(
        "plugins/dist/SHA256SUMS is missing: run plugins/build.sh (./scripts/test.sh does)",
    );
    let sum = sums
        .lines()
        .find_map(|l| {
            l.strip_suffix(&format!("  {name}.wasm"))
                .or_else(|| l.strip_suffix(&format!(" *{name}.wasm")))
        })
        .unwrap_or_else(|| panic!("{name}.wasm is not in SHA256SUMS"));
    format!(
        "\n[[plugins]]\nname = \"{name}\"\npath = \"{}\"\nsha256 = \"{sum}\"\n",
        root.join(format!("{name}.wasm"))
            .canonicalize()
            .expect("plugin file")
            .display()
    )
}
