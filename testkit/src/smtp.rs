//! A real SMTP server for tests: runs `scripts/smtp_server.py` (aiosmtpd) on loopback and
//! reads back what it stored in its maildir.
//!
//! Used by the mail crate's tests and the integration suite through `clearflow-testkit`.
//! It needs only the standard library and `tempfile`.
//!
//! The Python comes from `CLEARFLOW_TEST_PYTHON`, else `target/test-venv/bin/python` (made by
//! `scripts/test.sh`), else `python3`; the script from `CLEARFLOW_TEST_SMTP_SERVER`, else the
//! workspace's `scripts/smtp_server.py`. A missing aiosmtpd fails the test with the fix.
#![allow(dead_code)] // each test binary uses a different part of this shared harness

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How to start the server; `Default` is plain SMTP on a free port, no AUTH.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Offer STARTTLS and require it before AUTH and MAIL.
    pub starttls: bool,
    /// Implicit TLS from the first byte.
    pub tls: bool,
    /// Require AUTH PLAIN/LOGIN with this user and password.
    pub auth: Option<(String, String)>,
    /// Recipients matching this regex get `550 5.1.1 mailbox unavailable`.
    pub reject: Option<String>,
    /// Recipients matching this regex get `451`.
    pub tempfail: Option<String>,
    /// A fixed port (e.g. to restart a stopped server where clients expect it); 0 = free port.
    pub port: u16,
    /// Server processes sharing the port (SO_REUSEPORT), for benchmarks; 0 or 1 = one.
    pub processes: usize,
}

impl ServerOptions {
    /// STARTTLS required (with a CA-signed test certificate) and AUTH with `user`/`pass`.
    pub fn starttls_auth(user: &str, pass: &str) -> ServerOptions {
        ServerOptions {
            starttls: true,
            auth: Some((user.to_owned(), pass.to_owned())),
            ..ServerOptions::default()
        }
    }
}

/// Files of the throwaway CA and server certificate made by `scripts/gen-test-certs.sh`.
#[derive(Debug, Clone)]
pub struct Certs {
    /// The CA certificate a client must trust.
    pub ca: PathBuf,
    /// The server's certificate chain.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
}

/// A running `smtp_server.py`; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct SmtpServer {
    child: Option<Child>,
    port: u16,
    maildir: PathBuf,
    certs: Option<Certs>,
    opts: ServerOptions,
    /// Maildirs of earlier runs (see [`SmtpServer::restart_with`]).
    earlier: Vec<PathBuf>,
    // Last: removed after the process is gone.
    dir: tempfile::TempDir,
}

impl SmtpServer {
    /// Starts a server and waits until it listens.
    pub fn start(opts: ServerOptions) -> SmtpServer {
        let dir = tempfile::Builder::new()
            .prefix("clearflow-smtp-")
            .tempdir()
            .expect("create temp dir for smtp server");
        let maildir = dir.path().join("maildir");
        let certs = (opts.starttls || opts.tls).then(|| generate_certs(&dir.path().join("certs")));
        let (child, port) = spawn(&opts, &maildir, certs.as_ref());
        SmtpServer {
            child: Some(child),
            port,
            maildir,
            certs,
            opts,
            earlier: Vec::new(),
            dir,
        }
    }

    /// Stops the server if it runs and starts it again on the same port with the same
    /// certificates, after `change` adjusted the options (e.g. no `reject` any more).
    /// The new run stores into a fresh maildir; [`SmtpServer::messages`] reads them all.
    pub fn restart_with(&mut self, change: impl FnOnce(&mut ServerOptions)) {
        self.stop();
        change(&mut self.opts);
        self.opts.port = self.port;
        let run = self.earlier.len() + 2;
        let maildir = self.dir.path().join(format!("maildir-{run}"));
        self.earlier
            .push(std::mem::replace(&mut self.maildir, maildir));
        // The port was just released; a client's retry may briefly hold it in TIME_WAIT,
        // which SO_REUSEADDR (set by asyncio) allows.
        let (child, port) = spawn(&self.opts, &self.maildir, self.certs.as_ref());
        assert_eq!(port, self.port, "restarted on another port");
        self.child = Some(child);
    }

    /// The user and password AUTH requires, if it does.
    pub fn auth(&self) -> Option<(&str, &str)> {
        self.opts
            .auth
            .as_ref()
            .map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// Whether the server process is running.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// The port it listens on, at 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA to trust for STARTTLS and implicit TLS servers.
    pub fn ca_file(&self) -> Option<&Path> {
        self.certs.as_ref().map(|c| c.ca.as_path())
    }

    /// The maildir the server stores messages in.
    pub fn maildir(&self) -> &Path {
        &self.maildir
    }

    /// A scratch directory removed with the server (for password files and the like).
    pub fn scratch_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every stored message (with its `X-Envelope-*` headers), oldest file name first
    /// within each run, earlier runs first.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        let mut all = Vec::new();
        for dir in self.earlier.iter().chain([&self.maildir]) {
            all.extend(read_maildir(dir));
        }
        all
    }

    /// Waits until at least `n` messages are stored, then returns them all.
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= n || Instant::now() >= deadline {
                return messages;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server with SIGTERM and returns how it exited (SIGKILL after 10 s).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `smtp_server.py` and waits for its `READY <port>` line.
fn spawn(opts: &ServerOptions, maildir: &Path, certs: Option<&Certs>) -> (Child, u16) {
    let mut cmd = Command::new(python());
    cmd.arg(server_script())
        .args(["--host", "127.0.0.1", "--port", &opts.port.to_string()])
        .arg("--maildir")
        .arg(maildir);
    if let Some(certs) = certs {
        cmd.arg(if opts.tls { "--tls" } else { "--starttls" })
            .arg("--cert")
            .arg(&certs.cert)
            .arg("--key")
            .arg(&certs.key);
    }
    if let Some((user, pass)) = &opts.auth {
        cmd.args(["--auth", &format!("{user}:{pass}")]);
    }
    if let Some(re) = &opts.reject {
        cmd.args(["--reject", re]);
    }
    if let Some(re) = &opts.tempfail {
        cmd.args(["--tempfail", re]);
    }
    if opts.processes > 1 {
        cmd.args(["--processes", &opts.processes.to_string()]);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));

    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok);
        let _ = tx.send(first);
        // Keep draining so the server never blocks on a full pipe.
        for _ in lines {}
    });
    let port = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Some(line)) if line.starts_with("READY ") => line[6..]
            .trim()
            .parse::<u16>()
            .unwrap_or_else(|e| panic!("bad READY line {line:?}: {e}")),
        other => {
            let _ = child.kill();
            let _ = child.wait();
            let mut err = String::new();
            if let Some(mut stderr) = child.stderr.take() {
                let _ = stderr.read_to_string(&mut err);
            }
            panic!("smtp_server.py did not become ready ({other:?}); stderr:\n{err}");
        }
    };
    (child, port)
}

/// Every message file in a maildir's `new/` and `cur/`, sorted by file name.
pub fn read_maildir(maildir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = ["new", "cur"]
        .iter()
        .filter_map(|sub| std::fs::read_dir(maildir.join(sub)).ok())
        .flatten()
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| std::fs::read(f).unwrap_or_else(|e| panic!("read {}: {e}", f.display())))
        .collect()
}

fn workspace_root() -> PathBuf {
    // Every workspace member sits one level below the root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate has a parent directory")
        .to_path_buf()
}

fn server_script() -> PathBuf {
    std::env::var_os("CLEARFLOW_TEST_SMTP_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("scripts/smtp_server.py"))
}

/// The Python with aiosmtpd; checked once per test binary.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = workspace_root().join("target/test-venv/bin/python");
        let python = match std::env::var_os("CLEARFLOW_TEST_PYTHON") {
            Some(p) => PathBuf::from(p),
            None if venv.exists() => venv,
            None => PathBuf::from("python3"),
        };
        let ok = Command::new(&python)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "{} cannot import aiosmtpd: run ./scripts/test.sh, which installs it into \
             target/test-venv, or `pip install -r scripts/requirements-test.txt` and set \
             CLEARFLOW_TEST_PYTHON to that python",
            python.display()
        );
        python
    })
}

fn generate_certs(dir: &Path) -> Certs {
    let script = server_script()
        .parent()
        .expect("script directory")
        .join("gen-test-certs.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    }
}
