//! Delivery into a local maildir: write `tmp/NAME`, fsync, rename to `new/NAME`, fsync `new/`.
//!
//! lettre's file transport writes `.eml` files, not a maildir, hence these few lines. Each
//! stored message starts with an `X-Envelope-To` header listing the envelope recipients
//! (Bcc included, which no other header shows), as a local delivery agent records them.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::ConfigError;
use crate::error::{Delivered, SendError};
use crate::message::Built;

/// A maildir that messages are delivered into.
#[derive(Debug, Clone)]
pub(crate) struct Maildir {
    root: Arc<PathBuf>,
    host: Arc<str>,
}

/// Makes file names unique between deliveries in the same process and second.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl Maildir {
    /// Creates `cur/`, `new/` and `tmp/` under `root` when missing.
    pub(crate) fn open(root: &Path) -> Result<Self, ConfigError> {
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(root.join(sub)).map_err(|source| ConfigError::Maildir {
                path: root.to_path_buf(),
                source,
            })?;
        }
        Ok(Maildir {
            root: Arc::new(root.to_path_buf()),
            host: host_name().into(),
        })
    }

    pub(crate) async fn deliver(&self, built: &Built) -> Result<Delivered, SendError> {
        let mut content = String::from("X-Envelope-To: ");
        let rcpts: Vec<String> = built.envelope.to().iter().map(|a| a.to_string()).collect();
        content.push_str(&rcpts.join(", "));
        content.push('\n');
        // Maildir files use bare LF line ends; lettre formats with CRLF for SMTP.
        let mut bytes = content.into_bytes();
        bytes.reserve(built.bytes.len());
        let mut rest = built.bytes.as_slice();
        while let Some(pos) = rest.windows(2).position(|w| w == b"\r\n") {
            bytes.extend_from_slice(&rest[..pos]);
            bytes.push(b'\n');
            rest = &rest[pos + 2..];
        }
        bytes.extend_from_slice(rest);

        let this = self.clone();
        tokio::task::spawn_blocking(move || this.write(&bytes))
            .await
            .map_err(|e| SendError::temporary(format!("maildir write task failed: {e}")))?
    }

    fn write(&self, bytes: &[u8]) -> Result<Delivered, SendError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let name = format!(
            "{}.M{}P{}Q{}.{}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed),
            self.host
        );
        let tmp = self.root.join("tmp").join(&name);
        let new_dir = self.root.join("new");
        let io = |what: &str, e: std::io::Error| {
            SendError::temporary(format!("maildir {}: {what}: {e}", self.root.display()))
        };

        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| io("create tmp file", e))?;
        let written = file
            .write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| io("write tmp file", e));
        drop(file);
        if let Err(e) = written.and_then(|()| {
            fs::rename(&tmp, new_dir.join(&name)).map_err(|e| io("rename into new", e))
        }) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        // The rename is durable only once the directory itself is synced.
        File::open(&new_dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| io("sync new", e))?;
        Ok(Delivered {
            reply: format!("stored in {}", new_dir.join(&name).display()),
        })
    }
}

/// The host part of maildir file names, with the characters maildir reserves replaced.
fn host_name() -> String {
    let raw = fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let host: String = raw
        .trim()
        .chars()
        .map(|c| match c {
            '/' => "\\057".to_string(),
            ':' => "\\072".to_string(),
            c => c.to_string(),
        })
        .collect();
    if host.is_empty() {
        "localhost".to_string()
    } else {
        host
    }
}
