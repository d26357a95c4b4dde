//! The pooled lettre SMTP transport and the classification of its errors.

use std::error::Error as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lettre::transport::smtp;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, Certificate, CertificateStore, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::config::{ConfigError, Security, SmtpConfig, is_loopback_host};
use crate::error::{Delivered, SendError};
use crate::message::Built;

/// An SMTP relay with at most `pool_max` connections, kept open and reused between sends.
///
/// The pool is ours, not lettre's: lettre 0.11.23 leaves Nagle's algorithm on, and because it
/// writes the final `.` of DATA separately, every message then waits for the server's
/// delayed ACK (40 ms on Linux, ~20 messages/s a connection). Owning the socket lets us set
/// `TCP_NODELAY`; owning the connection means a send cut off by the timeout drops its
/// connection instead of returning it, mid-command, to a pool.
#[derive(Clone)]
pub(crate) struct Smtp {
    inner: Arc<Inner>,
}

struct Inner {
    host: String,
    port: u16,
    security: Security,
    tls: Option<TlsParameters>,
    credentials: Option<Credentials>,
    hello: ClientId,
    timeout: Duration,
    pool_max: usize,
    /// Caps open connections at `pool_max`.
    slots: Semaphore,
    idle: Mutex<Vec<Idle>>,
}

struct Idle {
    conn: AsyncSmtpConnection,
    since: Instant,
}

/// A connection idle longer than this is checked with NOOP before use.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(2);
/// A connection idle longer than this is closed rather than reused (servers drop idle ones).
const MAX_IDLE: Duration = Duration::from_secs(60);

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp")
            .field("host", &self.inner.host)
            .field("port", &self.inner.port)
            .field("security", &self.inner.security)
            .finish_non_exhaustive()
    }
}

impl Smtp {
    pub(crate) fn new(cfg: &SmtpConfig) -> Result<Self, ConfigError> {
        let invalid = |field, reason: &str| ConfigError::Invalid {
            field,
            reason: reason.to_string(),
        };
        if cfg.host.trim().is_empty() {
            return Err(invalid("host", "must not be empty"));
        }
        if cfg.security == Security::Plain && !is_loopback_host(&cfg.host) {
            return Err(ConfigError::PlainToRemoteHost {
                host: cfg.host.clone(),
            });
        }
        if cfg.pool_max == 0 {
            return Err(invalid("pool_max", "must be at least 1"));
        }
        if cfg.timeout.is_zero() {
            return Err(invalid("timeout", "must be at least 1 second"));
        }
        if cfg.rate_per_sec == Some(0) {
            return Err(invalid("rate_per_sec", "must be at least 1 when set"));
        }
        let tls = match cfg.security {
            Security::Plain => None,
            Security::StartTls | Security::Tls => Some(tls_parameters(cfg)?),
        };
        Ok(Smtp {
            inner: Arc::new(Inner {
                host: cfg.host.clone(),
                port: cfg.port(),
                security: cfg.security,
                tls,
                credentials: credentials(cfg)?,
                hello: ClientId::default(),
                timeout: cfg.timeout,
                pool_max: cfg.pool_max as usize,
                slots: Semaphore::new(cfg.pool_max as usize),
                idle: Mutex::new(Vec::new()),
            }),
        })
    }

    /// Sends over a pooled connection. The whole exchange (connect, TLS, AUTH, MAIL, RCPT,
    /// DATA) must finish within the timeout; when it does not, the connection is dropped.
    pub(crate) async fn send(&self, built: &Built) -> Result<Delivered, SendError> {
        let _slot = self
            .inner
            .slots
            .acquire()
            .await
            .map_err(|_| SendError::temporary("smtp transport is shut down"))?;
        let timeout = self.inner.timeout;
        match tokio::time::timeout(timeout, self.send_on_a_connection(built)).await {
            Ok(result) => result,
            Err(_elapsed) => Err(SendError::temporary(format!(
                "smtp send timed out after {} s",
                timeout.as_secs()
            ))),
        }
    }

    async fn send_on_a_connection(&self, built: &Built) -> Result<Delivered, SendError> {
        let (mut conn, pooled) = match self.take_idle().await {
            Some(conn) => (conn, true),
            None => (self.connect().await?, false),
        };
        // On an error lettre has already aborted the connection; it is dropped here.
        let response = match conn.send(&built.envelope, &built.bytes).await {
            Ok(response) => response,
            // A pooled connection the server closed since its last use (a restart, an idle
            // cut-off shorter than ours) fails without a reply: that says nothing about this
            // message, so it goes once more over a fresh connection before counting as a try.
            Err(e) if pooled && e.status().is_none() && !e.is_client() => {
                conn = self.connect().await?;
                conn.send(&built.envelope, &built.bytes)
                    .await
                    .map_err(|e| classify(&e))?
            }
            Err(e) => return Err(classify(&e)),
        };
        self.put_back(conn);
        let text: Vec<&str> = response.message().collect();
        Ok(Delivered {
            reply: format!("{} {}", response.code(), text.join(" ")),
        })
    }

    async fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        loop {
            let idle = self.lock_idle().pop()?;
            let age = idle.since.elapsed();
            let mut conn = idle.conn;
            if conn.has_broken() || age > MAX_IDLE {
                conn.abort().await;
                continue;
            }
            if age > CHECK_AFTER_IDLE && !conn.test_connected().await {
                conn.abort().await;
                continue;
            }
            return Some(conn);
        }
    }

    fn put_back(&self, conn: AsyncSmtpConnection) {
        let mut idle = self.lock_idle();
        if !conn.has_broken() && idle.len() < self.inner.pool_max {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.inner.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let inner = &*self.inner;
        let mut conn = match (&inner.security, &inner.tls) {
            (Security::Tls, Some(tls)) => {
                // lettre owns the socket for implicit TLS, so Nagle stays on here.
                AsyncSmtpConnection::connect_tokio1(
                    (inner.host.as_str(), inner.port),
                    Some(inner.timeout),
                    &inner.hello,
                    Some(tls.clone()),
                    None,
                )
                .await
                .map_err(|e| classify(&e))?
            }
            _ => {
                let io = |e: std::io::Error| SendError::temporary(format!("connection error: {e}"));
                let tcp = TcpStream::connect((inner.host.as_str(), inner.port))
                    .await
                    .map_err(io)?;
                tcp.set_nodelay(true).map_err(io)?;
                let mut conn =
                    AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &inner.hello)
                        .await
                        .map_err(|e| classify(&e))?;
                if let (Security::StartTls, Some(tls)) = (&inner.security, &inner.tls) {
                    conn.starttls(tls.clone(), &inner.hello)
                        .await
                        .map_err(|e| classify(&e))?;
                }
                conn
            }
        };
        if let Some(credentials) = &inner.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(|e| classify(&e))?;
        }
        Ok(conn)
    }
}

fn tls_parameters(cfg: &SmtpConfig) -> Result<TlsParameters, ConfigError> {
    let mut builder = TlsParameters::builder(cfg.host.clone());
    if let Some(path) = &cfg.ca_file {
        let ca_error = |reason: String| ConfigError::CaFile {
            path: path.clone(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
        if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
            return Err(ca_error("no pem certificate in the file".into()));
        }
        let cert = Certificate::from_pem(&pem).map_err(|e| ca_error(e.to_string()))?;
        builder = builder
            .certificate_store(CertificateStore::None)
            .add_root_certificate(cert);
    }
    builder.build_rustls().map_err(|e| ConfigError::Tls {
        host: cfg.host.clone(),
        reason: e.to_string(),
    })
}

fn credentials(cfg: &SmtpConfig) -> Result<Option<Credentials>, ConfigError> {
    let password = match (&cfg.password_file, &cfg.password_env) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Invalid {
                field: "password_file",
                reason: "give password_file or password_env, not both".into(),
            });
        }
        (Some(path), None) => {
            let text =
                std::fs::read_to_string(path).map_err(|source| ConfigError::PasswordFile {
                    path: path.clone(),
                    source,
                })?;
            Some(text.trim_end_matches(['\r', '\n']).to_string())
        }
        (None, Some(var)) => {
            Some(std::env::var(var).map_err(|_| ConfigError::PasswordEnv { var: var.clone() })?)
        }
        (None, None) => None,
    };
    match (&cfg.username, password) {
        (Some(user), Some(password)) => Ok(Some(Credentials::new(user.clone(), password))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::Invalid {
            field: "username",
            reason: "needs password_file or password_env".into(),
        }),
        (None, Some(_)) => Err(ConfigError::Invalid {
            field: "username",
            reason: "a password is configured without a username".into(),
        }),
    }
}

/// 5xx replies, and content this server can never carry, are permanent; everything else
/// (4xx, connection refused, timeouts, TLS and network errors, a server that stopped offering
/// STARTTLS or AUTH) may pass later.
fn classify(e: &smtp::Error) -> SendError {
    if let Some(code) = e.status() {
        let text = e.source().map(|s| s.to_string()).unwrap_or_default();
        let reply = format!("{code} {text}").trim_end().to_string();
        return if e.is_permanent() {
            SendError::permanent(reply)
        } else {
            SendError::temporary(reply)
        };
    }
    // lettre's own chain, e.g. "Connection error: Connection refused (os error 111)".
    let mut reply = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !reply.contains(&text) {
            reply = format!("{reply}: {text}");
        }
        source = s.source();
    }
    // lettre refuses non-ASCII addresses without SMTPUTF8 and 8-bit content without
    // 8BITMIME; resending the same message to the same server cannot help.
    if e.is_client() && reply.contains("non-ascii") {
        SendError::permanent(reply)
    } else {
        SendError::temporary(reply)
    }
}
