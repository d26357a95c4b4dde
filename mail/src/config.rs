//! Transport configuration as it appears in `clearflow.toml`, and the errors of checking it.
//!
//! These are the raw, serde-facing types: unknown keys are rejected. [`crate::Transport::new`]
//! validates them (loopback-only plain SMTP, readable password and CA files) once at start.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Where mail goes. Deserialised with a `kind` tag:
///
/// ```toml
/// [mail.transport]
/// kind = "smtp"
/// host = "smtp.example.org"
/// security = "starttls"
/// username = "clearflow"
/// password_file = "/etc/clearflow/smtp-password"
/// ```
///
/// or `kind = "maildir"` with `path = "var/mail"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TransportConfig {
    /// Deliver to an SMTP server.
    Smtp(SmtpConfig),
    /// Store each message in a local maildir (`cur/`, `new/`, `tmp/` are created if missing):
    /// the embedded default, so the daemon works on a machine without a mail server.
    Maildir {
        /// The maildir's root directory.
        path: PathBuf,
    },
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Security {
    /// Connect in plain text, then require `STARTTLS` before anything else (port 587).
    #[default]
    #[serde(rename = "starttls")]
    StartTls,
    /// TLS from the first byte (implicit TLS, port 465).
    #[serde(rename = "tls")]
    Tls,
    /// No encryption: only allowed to a loopback host (port 25).
    #[serde(rename = "plain")]
    Plain,
}

impl Security {
    /// The port used when the configuration names none.
    pub fn default_port(self) -> u16 {
        match self {
            Security::StartTls => 587,
            Security::Tls => 465,
            Security::Plain => 25,
        }
    }
}

/// An SMTP relay.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Host name or IP address; also the name checked in the server's certificate.
    pub host: String,
    /// Port; defaults to [`Security::default_port`].
    #[serde(default)]
    pub port: Option<u16>,
    /// Connection security; defaults to STARTTLS.
    #[serde(default)]
    pub security: Security,
    /// User for AUTH PLAIN/LOGIN; needs a password from `password_file` or `password_env`.
    #[serde(default)]
    pub username: Option<String>,
    /// File whose content (trailing newline removed) is the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Name of an environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// The longest one send may take, connecting, TLS and AUTH included; whole seconds in
    /// the file; default 30.
    #[serde(default = "default_timeout", deserialize_with = "seconds")]
    pub timeout: Duration,
    /// Most connections open at once (and kept idle for reuse); default 4.
    #[serde(default = "default_pool_max")]
    pub pool_max: u32,
    /// PEM file of the CA certificates to trust instead of the system's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// At most this many messages per second through this transport; unlimited if absent.
    #[serde(default)]
    pub rate_per_sec: Option<u32>,
}

impl SmtpConfig {
    /// A configuration with the defaults for everything but the host and security.
    pub fn new(host: impl Into<String>, security: Security) -> Self {
        SmtpConfig {
            host: host.into(),
            port: None,
            security,
            username: None,
            password_file: None,
            password_env: None,
            timeout: default_timeout(),
            pool_max: default_pool_max(),
            ca_file: None,
            rate_per_sec: None,
        }
    }

    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or_else(|| self.security.default_port())
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_pool_max() -> u32 {
    4
}

fn seconds<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_secs)
}

/// True for `localhost` and loopback IP addresses: the only hosts plain SMTP may reach.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Why a transport configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Plain SMTP was configured for a host that is not loopback.
    #[error(
        "plain smtp is only allowed to a loopback host, not {host:?}: use security = \"starttls\" or \"tls\""
    )]
    PlainToRemoteHost {
        /// The configured host.
        host: String,
    },
    /// A field has a value that cannot work.
    #[error("invalid smtp setting {field}: {reason}")]
    Invalid {
        /// The configuration key.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The password file could not be read.
    #[error("cannot read smtp password file {path}: {source}")]
    PasswordFile {
        /// The configured path.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The password environment variable is unset or not UTF-8.
    #[error("smtp password variable {var} is not set")]
    PasswordEnv {
        /// The variable's name.
        var: String,
    },
    /// The CA file could not be read or holds no usable certificate.
    #[error("cannot use ca_file {path}: {reason}")]
    CaFile {
        /// The configured path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The TLS parameters could not be built.
    #[error("cannot set up tls for {host}: {reason}")]
    Tls {
        /// The configured host.
        host: String,
        /// The TLS library's message.
        reason: String,
    },
    /// The maildir's directories could not be created.
    #[error("cannot create maildir {path}: {source}")]
    Maildir {
        /// The configured path.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<TransportConfig, toml::de::Error> {
        toml::from_str(toml_text)
    }

    #[test]
    fn smtp_with_defaults() {
        let cfg = parse("kind = \"smtp\"\nhost = \"mail.example.org\"").unwrap();
        let TransportConfig::Smtp(smtp) = cfg else {
            panic!("expected smtp, got {cfg:?}")
        };
        assert_eq!(
            smtp,
            SmtpConfig::new("mail.example.org", Security::StartTls)
        );
        assert_eq!(smtp.port(), 587);
    }

    #[test]
    fn smtp_with_every_field() {
        let cfg = parse(
            r#"
            kind = "smtp"
            host = "127.0.0.1"
            port = 2525
            security = "plain"
            username = "u"
            password_env = "SMTP_PASSWORD"
            timeout = 5
            pool_max = 2
            ca_file = "/etc/ca.pem"
            rate_per_sec = 10
            "#,
        )
        .unwrap();
        let TransportConfig::Smtp(smtp) = cfg else {
            panic!("expected smtp, got {cfg:?}")
        };
        assert_eq!(smtp.port(), 2525);
        assert_eq!(smtp.security, Security::Plain);
        assert_eq!(smtp.timeout, Duration::from_secs(5));
        assert_eq!(smtp.pool_max, 2);
        assert_eq!(smtp.rate_per_sec, Some(10));
        assert_eq!(smtp.password_env.as_deref(), Some("SMTP_PASSWORD"));
    }

    #[test]
    fn maildir() {
        let cfg = parse("kind = \"maildir\"\npath = \"var/mail\"").unwrap();
        assert_eq!(
            cfg,
            TransportConfig::Maildir {
                path: "var/mail".into()
            }
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = parse("kind = \"smtp\"\nhost = \"h\"\nhots = \"x\"").unwrap_err();
        assert!(err.to_string().contains("hots"), "{err}");
        let err = parse("kind = \"maildir\"\npath = \"p\"\nfsync = true").unwrap_err();
        assert!(err.to_string().contains("fsync"), "{err}");
        assert!(parse("kind = \"sendmail\"").is_err());
        assert!(parse("kind = \"smtp\"\nhost = \"h\"\nsecurity = \"ssl\"").is_err());
    }

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "example.org",
            "10.0.0.1",
            "0.0.0.0",
            "localhost.example.org",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
