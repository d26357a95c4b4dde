//! The message to send ([`Mail`]), its stable Message-ID, and building it with lettre.

use std::fmt::Write as _;

use lettre::Address;
use lettre::address::Envelope;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};

use crate::error::SendError;

/// One outgoing message, as the outbox holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// The outbox row id, for logs.
    pub id: String,
    /// The `Message-ID` header, angle brackets included; see [`message_id`].
    pub message_id: String,
    /// The `From` mailbox (`addr@example.org` or `Name <addr@example.org>`); also the envelope sender.
    pub from: String,
    /// `To` mailboxes.
    pub to: Vec<String>,
    /// `Cc` mailboxes.
    pub cc: Vec<String>,
    /// Blind copies: envelope recipients only, never written into a header.
    pub bcc: Vec<String>,
    /// The subject, any Unicode text.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// An HTML alternative; when present the message is `multipart/alternative`.
    pub html: Option<String>,
    /// Extra headers (e.g. `Reply-To`, `Auto-Submitted`); names must be unique and must
    /// not be one of the headers this crate writes (From, To, Subject, Date, …).
    pub headers: Vec<(String, String)>,
}

/// The `Message-ID` of an outbox row: `<outbox-id@domain>`.
///
/// The same row always gets the same id, so a message re-sent after a crash is recognisable
/// as a duplicate. Characters of `outbox_id` that may not appear in a Message-ID are
/// percent-encoded (so distinct ids stay distinct); UUIDs and numbers pass unchanged.
pub fn message_id(outbox_id: &str, domain: &str) -> String {
    let mut out = String::with_capacity(outbox_id.len() + domain.len() + 3);
    out.push('<');
    for byte in outbox_id.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&'*+-/=?^_`{|}~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out.push('@');
    out.push_str(domain);
    out.push('>');
    out
}

/// Headers this crate sets itself; an extra header may not replace them.
const MANAGED_HEADERS: &[&str] = &[
    "from",
    "sender",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

/// A message ready for any transport: the envelope and the RFC 5322 bytes (CRLF line ends).
#[derive(Clone)]
pub(crate) struct Built {
    pub(crate) envelope: Envelope,
    pub(crate) bytes: Vec<u8>,
}

/// Builds the message. Every failure here is permanent: retrying cannot fix the input.
pub(crate) fn build(mail: &Mail) -> Result<Built, SendError> {
    let from = mailbox("from", &mail.from)?;
    check_message_id(&mail.message_id)?;

    let mut builder = lettre::Message::builder()
        .from(from.clone())
        .subject(mail.subject.as_str())
        .message_id(Some(mail.message_id.clone()))
        .date_now();

    let mut recipients: Vec<Address> = Vec::new();
    for to in &mail.to {
        let mbox = mailbox("to", to)?;
        recipients.push(mbox.email.clone());
        builder = builder.to(mbox);
    }
    for cc in &mail.cc {
        let mbox = mailbox("cc", cc)?;
        recipients.push(mbox.email.clone());
        builder = builder.cc(mbox);
    }
    for bcc in &mail.bcc {
        recipients.push(mailbox("bcc", bcc)?.email);
    }
    // One RCPT per address, even if it is both in To and Bcc.
    let mut seen = std::collections::HashSet::new();
    recipients.retain(|a| seen.insert(a.to_string().to_ascii_lowercase()));
    if recipients.is_empty() {
        return Err(SendError::permanent(format!(
            "mail {} has no recipients",
            mail.id
        )));
    }
    let envelope = Envelope::new(Some(from.email), recipients)
        .map_err(|e| SendError::permanent(format!("invalid envelope: {e}")))?;

    let mut names_seen = std::collections::HashSet::new();
    for (name, value) in &mail.headers {
        let lower = name.to_ascii_lowercase();
        if MANAGED_HEADERS.contains(&lower.as_str()) {
            return Err(SendError::permanent(format!(
                "header {name} is set by the mailer and cannot be given as an extra header"
            )));
        }
        if !names_seen.insert(lower) {
            return Err(SendError::permanent(format!(
                "header {name} is given twice"
            )));
        }
        if value.contains(['\r', '\n']) {
            return Err(SendError::permanent(format!(
                "header {name} contains a line break"
            )));
        }
        let header_name = HeaderName::new_from_ascii(name.clone())
            .map_err(|_| SendError::permanent(format!("invalid header name {name:?}")))?;
        builder = builder.raw_header(HeaderValue::new(header_name, value.clone()));
    }

    let builder = builder.envelope(envelope.clone());
    let message = match &mail.html {
        Some(html) => builder.multipart(MultiPart::alternative_plain_html(
            mail.text.clone(),
            html.clone(),
        )),
        None => builder.singlepart(SinglePart::plain(mail.text.clone())),
    }
    .map_err(|e| SendError::permanent(format!("cannot build message: {e}")))?;

    Ok(Built {
        envelope,
        bytes: message.formatted(),
    })
}

impl Built {
    /// The same message for each envelope recipient alone, with the recipient's address.
    pub(crate) fn each_recipient(&self) -> Vec<(String, Built)> {
        self.envelope
            .to()
            .iter()
            .filter_map(|a| {
                let envelope =
                    Envelope::new(self.envelope.from().cloned(), vec![a.clone()]).ok()?;
                Some((
                    a.to_string(),
                    Built {
                        envelope,
                        bytes: self.bytes.clone(),
                    },
                ))
            })
            .collect()
    }
}

fn mailbox(field: &str, text: &str) -> Result<Mailbox, SendError> {
    text.parse::<Mailbox>()
        .map_err(|e| SendError::permanent(format!("invalid {field} address {text:?}: {e}")))
}

/// A Message-ID must look like `<left@right>` with no spaces, or duplicates cannot be matched.
fn check_message_id(id: &str) -> Result<(), SendError> {
    let inner = id.strip_prefix('<').and_then(|s| s.strip_suffix('>'));
    let valid = inner.is_some_and(|s| {
        s.split_once('@')
            .is_some_and(|(l, r)| !l.is_empty() && !r.is_empty())
            && !s.contains(|c: char| c.is_whitespace() || c.is_control() || "<>".contains(c))
    });
    if valid {
        Ok(())
    } else {
        Err(SendError::permanent(format!(
            "invalid message id {id:?}: expected <id@domain>"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FailureKind;

    fn mail() -> Mail {
        Mail {
            id: "7".into(),
            message_id: message_id("7", "clearflow.test"),
            from: "Clearflow <noreply@clearflow.test>".into(),
            to: vec!["a@example.org".into()],
            cc: vec!["b@example.org".into()],
            bcc: vec!["secret@example.org".into(), "A@example.org".into()],
            subject: "Hello".into(),
            text: "body".into(),
            html: None,
            headers: vec![("Auto-Submitted".into(), "auto-generated".into())],
        }
    }

    fn text_of(built: &Built) -> String {
        String::from_utf8(built.bytes.clone()).unwrap()
    }

    #[test]
    fn message_id_is_stable_and_valid() {
        assert_eq!(message_id("42", "example.org"), "<42@example.org>");
        assert_eq!(
            message_id("0190b7c2-8f4e-7a3b-9c1d-2e3f4a5b6c7d", "example.org"),
            "<0190b7c2-8f4e-7a3b-9c1d-2e3f4a5b6c7d@example.org>"
        );
        assert_eq!(message_id("a b", "x"), "<a%20b@x>");
        assert_eq!(message_id("a%20b", "x"), "<a%2520b@x>");
        assert_eq!(message_id("a.b@c", "x"), "<a%2Eb%40c@x>");
        assert!(check_message_id(&message_id("a b<>@", "x")).is_ok());
    }

    #[test]
    fn bcc_is_in_the_envelope_only() {
        let built = build(&mail()).unwrap();
        let rcpts: Vec<String> = built.envelope.to().iter().map(|a| a.to_string()).collect();
        assert_eq!(
            rcpts,
            ["a@example.org", "b@example.org", "secret@example.org"]
        );
        let text = text_of(&built);
        assert!(!text.contains("secret"), "{text}");
        assert!(!text.to_ascii_lowercase().contains("\nbcc:"), "{text}");
        assert!(
            text.contains("Message-ID: <7@clearflow.test>\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Auto-Submitted: auto-generated\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nDate: "), "{text}");
        assert_eq!(
            built.envelope.from().map(|a| a.to_string()).as_deref(),
            Some("noreply@clearflow.test")
        );
    }

    #[test]
    fn html_makes_multipart_alternative() {
        let mut m = mail();
        m.html = Some("<p>body</p>".into());
        let text = text_of(&build(&m).unwrap());
        assert!(text.contains("multipart/alternative"), "{text}");
        assert!(text.contains("text/html"), "{text}");
        let plain = text_of(&build(&mail()).unwrap());
        assert!(!plain.contains("multipart"), "{plain}");
        assert!(plain.contains("text/plain; charset=utf-8"), "{plain}");
    }

    fn permanent_error(m: &Mail) -> String {
        match build(m) {
            Ok(_) => panic!("expected an error for {m:?}"),
            Err(e) => {
                assert_eq!(e.kind, FailureKind::Permanent);
                e.reply
            }
        }
    }

    #[test]
    fn bad_input_is_a_permanent_error() {
        let mut m = mail();
        m.to = vec!["not an address".into()];
        assert!(permanent_error(&m).contains("invalid to address"));

        let mut m = mail();
        (m.to, m.cc, m.bcc) = (vec![], vec![], vec![]);
        assert!(permanent_error(&m).contains("no recipients"));

        let mut m = mail();
        m.headers = vec![("Bcc".into(), "x@example.org".into())];
        assert!(permanent_error(&m).contains("set by the mailer"));

        let mut m = mail();
        m.headers = vec![("X-A".into(), "1".into()), ("x-a".into(), "2".into())];
        assert!(permanent_error(&m).contains("given twice"));

        let mut m = mail();
        m.headers = vec![("X-A".into(), "1\r\nBcc: evil@example.org".into())];
        assert!(permanent_error(&m).contains("line break"));

        let mut m = mail();
        m.headers = vec![("X A".into(), "1".into())];
        assert!(permanent_error(&m).contains("invalid header name"));

        for id in ["", "7@x", "<7>", "<@x>", "<7@>", "<7 8@x>"] {
            let mut m = mail();
            m.message_id = id.into();
            assert!(permanent_error(&m).contains("invalid message id"), "{id}");
        }
    }
}
