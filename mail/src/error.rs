//! Outcomes of a send: [`Delivered`] or a [`SendError`] that says whether to retry.

use std::fmt;

/// A message the transport accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The SMTP server's final reply (code and text, e.g. `250 2.0.0 OK queued as …`),
    /// or, for a maildir, where the message was stored.
    pub reply: String,
}

/// Whether a failed send may succeed if tried again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// Retry with backoff: connection refused, timeouts, TLS or network trouble, 4xx replies.
    Temporary,
    /// Do not retry: 5xx replies, invalid addresses or a message that cannot be built.
    Permanent,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureKind::Temporary => "temporary",
            FailureKind::Permanent => "permanent",
        })
    }
}

/// A send that did not deliver the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    /// Whether to retry.
    pub kind: FailureKind,
    /// The server's reply code and text (e.g. `550 5.1.1 mailbox unavailable`), or a
    /// description of the IO, TLS or message error, for the dead-letter record.
    pub reply: String,
}

impl SendError {
    pub(crate) fn temporary(reply: impl Into<String>) -> Self {
        SendError {
            kind: FailureKind::Temporary,
            reply: reply.into(),
        }
    }

    pub(crate) fn permanent(reply: impl Into<String>) -> Self {
        SendError {
            kind: FailureKind::Permanent,
            reply: reply.into(),
        }
    }

    /// True when the caller should try again later.
    pub fn is_temporary(&self) -> bool {
        self.kind == FailureKind::Temporary
    }

    /// The SMTP reply code (`550`, `451`, …) when the server answered with one; `None` for
    /// IO, TLS, timeout and message errors. Unlike [`SendError::reply`], which may quote
    /// an address, the code is safe to log.
    pub fn code(&self) -> Option<u16> {
        let digits = self.reply.get(..3)?;
        let code: u16 = digits.parse().ok()?;
        let boundary = self.reply[3..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_ascii_digit());
        ((200..600).contains(&code) && boundary).then_some(code)
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} mail failure: {}", self.kind, self.reply)
    }
}

impl std::error::Error for SendError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_codes() {
        let code = |r: &str| SendError::permanent(r).code();
        assert_eq!(code("550 5.1.1 mailbox unavailable"), Some(550));
        assert_eq!(code("451 4.3.0 try again"), Some(451));
        assert_eq!(code("421"), Some(421));
        assert_eq!(
            code("connection error: Connection refused (os error 111)"),
            None
        );
        assert_eq!(code("smtp send timed out after 30 s"), None);
        assert_eq!(code("5501 not a code"), None);
        assert_eq!(code("999 out of range"), None);
        assert_eq!(code("55"), None);
    }
}
