//! The whistleblower's confidentiality: the identity sealed at rest and the receipt code.
//!
//! - An [`Identity`] is sealed with XChaCha20-Poly1305 under a 32-byte key that lives in
//!   a file (`[intake] key_file`) or in `CLEARFLOW_IDENTITY_KEY`, never in the database.
//!   Every record has its own random 192-bit nonce, and the instance id is the associated
//!   data, so a record copied onto another case does not open.
//! - A receipt code is a 40-bit lookup id plus a 120-bit secret in Crockford base32,
//!   grouped by four for people (`ABCD-EFGH-…`). Only an Argon2id hash of the secret is
//!   stored, under the lookup id, so checking a code reads one row and never scans.
//!
//! Nothing here logs, and the `Debug` of secrets is redacted.

use std::fmt;
use std::path::Path;
use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// The environment variable that may hold the key (base64 of 32 bytes).
pub const KEY_ENV: &str = "CLEARFLOW_IDENTITY_KEY";

/// Associated-data prefix: binds a sealed record to this use and format version.
const AAD_PREFIX: &[u8] = b"clearflow identity v1\0";

/// A reporter's identity as given at intake. Every field is optional; an empty identity
/// is treated as anonymous.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Full name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Email address, the only channel the daemon itself uses (`to: reporter`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Telephone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Identity-card number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_number: Option<String>,
    /// Postal address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Identity(<redacted>)")
    }
}

impl Identity {
    /// Whether nothing was given (the report is then anonymous).
    pub fn is_empty(&self) -> bool {
        [
            &self.name,
            &self.email,
            &self.phone,
            &self.id_number,
            &self.address,
        ]
        .iter()
        .all(|f| f.as_deref().is_none_or(|s| s.trim().is_empty()))
    }

    /// The email address, when one was given.
    pub fn email(&self) -> Option<&str> {
        self.email
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
    }
}

/// Why an identity could not be sealed or opened. The messages name no identity data.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    /// The key file or variable is missing or malformed.
    #[error("identity key: {0}")]
    Key(String),
    /// The record does not open under this key and instance: altered, another key, or
    /// moved from another instance.
    #[error(
        "the identity record of instance {0} does not open: it was altered, sealed under another key, or belongs to another instance"
    )]
    Refused(String),
    /// The record's stored form is unreadable.
    #[error("the identity record of instance {0} is malformed")]
    Malformed(String),
}

/// The 32-byte identity key. Its `Debug` shows only the fingerprint.
#[derive(Clone)]
pub struct IdentityKey {
    cipher: XChaCha20Poly1305,
    fingerprint: String,
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityKey({})", self.fingerprint)
    }
}

impl IdentityKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> IdentityKey {
        let digest = sha2::Sha256::digest([b"clearflow key id\0".as_slice(), bytes].concat());
        IdentityKey {
            cipher: XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(bytes)),
            fingerprint: digest[..6].iter().map(|b| format!("{b:02x}")).collect(),
        }
    }

    /// A key from base64 text (surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> Result<IdentityKey, IdentityError> {
        let raw = B64
            .decode(text.trim())
            .map_err(|_| IdentityError::Key("not valid base64".into()))?;
        let bytes: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| IdentityError::Key(format!("expected 32 bytes, found {}", raw.len())))?;
        Ok(IdentityKey::from_bytes(&bytes))
    }

    /// The key from `CLEARFLOW_IDENTITY_KEY` when set, otherwise from `file`; an error
    /// when neither is usable. A key file readable by others is refused.
    pub fn load(file: Option<&Path>) -> Result<IdentityKey, IdentityError> {
        if let Ok(v) = std::env::var(KEY_ENV)
            && !v.trim().is_empty()
        {
            return IdentityKey::from_base64(&v)
                .map_err(|e| IdentityError::Key(format!("{KEY_ENV}: {e}")));
        }
        let Some(file) = file else {
            return Err(IdentityError::Key(format!(
                "no key: set `[identity] key_file` or {KEY_ENV} (make one with `clearflow identity keygen FILE`)"
            )));
        };
        let text = std::fs::read_to_string(file)
            .map_err(|e| IdentityError::Key(format!("{}: {e}", file.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(file)
                .map_err(|e| IdentityError::Key(format!("{}: {e}", file.display())))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(IdentityError::Key(format!(
                    "{} is readable by others (mode {:o}); run `chmod 600` on it",
                    file.display(),
                    mode & 0o777
                )));
            }
        }
        IdentityKey::from_base64(&text)
            .map_err(|e| IdentityError::Key(format!("{}: {e}", file.display())))
    }

    /// A short public fingerprint of the key, stored with each record so a record
    /// sealed under another key is recognised as such.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Seals `identity` for `instance`.
    pub fn seal(&self, instance: &str, identity: &Identity) -> Sealed {
        let plain = serde_json::to_vec(identity).expect("identity serialises");
        self.seal_bytes(&aad(instance), &plain)
    }

    /// Opens a record sealed for `instance`.
    pub fn open(&self, instance: &str, sealed: &Sealed) -> Result<Identity, IdentityError> {
        let plain = self.open_bytes(instance, &aad(instance), sealed)?;
        serde_json::from_slice(&plain).map_err(|_| IdentityError::Malformed(instance.to_owned()))
    }

    /// Seals the text of message `message` on case `instance` (bound to both, so a
    /// sealed message moved to another case or row does not open).
    pub fn seal_message(&self, instance: &str, message: &str, text: &str) -> Sealed {
        self.seal_bytes(&message_aad(instance, message), text.as_bytes())
    }

    /// Opens a message sealed by [`IdentityKey::seal_message`].
    pub fn open_message(
        &self,
        instance: &str,
        message: &str,
        sealed: &Sealed,
    ) -> Result<String, IdentityError> {
        let plain = self.open_bytes(instance, &message_aad(instance, message), sealed)?;
        String::from_utf8(plain).map_err(|_| IdentityError::Malformed(instance.to_owned()))
    }

    /// Seals a staff secret (`purpose`: a TOTP secret, an enrolment in progress) bound to
    /// `owner`, as one line of text for a text column: `sealed:v1:KEY:NONCE:CIPHERTEXT`.
    pub fn seal_secret(&self, purpose: &str, owner: &str, plain: &str) -> String {
        let s = self.seal_bytes(&secret_aad(purpose, owner), plain.as_bytes());
        format!("{SECRET_PREFIX}{}:{}:{}", s.key_id, s.nonce, s.ciphertext)
    }

    /// Opens a secret sealed by [`IdentityKey::seal_secret`] for the same purpose and owner.
    pub fn open_secret(
        &self,
        purpose: &str,
        owner: &str,
        text: &str,
    ) -> Result<String, IdentityError> {
        let what = format!("{purpose} of {owner}");
        let malformed = || IdentityError::Malformed(what.clone());
        let rest = text.strip_prefix(SECRET_PREFIX).ok_or_else(malformed)?;
        let mut parts = rest.splitn(3, ':');
        let (Some(key_id), Some(nonce), Some(ciphertext)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        let sealed = Sealed {
            nonce: nonce.to_owned(),
            ciphertext: ciphertext.to_owned(),
            key_id: key_id.to_owned(),
        };
        let plain = self.open_bytes(&what, &secret_aad(purpose, owner), &sealed)?;
        String::from_utf8(plain).map_err(|_| malformed())
    }

    fn seal_bytes(&self, aad: &[u8], plain: &[u8]) -> Sealed {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).expect("the operating system's random source");
        let ciphertext = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad })
            .expect("XChaCha20-Poly1305 encryption cannot fail for this size");
        Sealed {
            nonce: B64.encode(nonce),
            ciphertext: B64.encode(ciphertext),
            key_id: self.fingerprint.clone(),
        }
    }

    fn open_bytes(
        &self,
        instance: &str,
        aad: &[u8],
        sealed: &Sealed,
    ) -> Result<Vec<u8>, IdentityError> {
        let malformed = || IdentityError::Malformed(instance.to_owned());
        let nonce = B64.decode(&sealed.nonce).map_err(|_| malformed())?;
        if nonce.len() != 24 {
            return Err(malformed());
        }
        let ciphertext = B64.decode(&sealed.ciphertext).map_err(|_| malformed())?;
        self.cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad,
                },
            )
            .map_err(|_| IdentityError::Refused(instance.to_owned()))
    }
}

/// How a sealed staff secret starts (base32 and JSON never do).
const SECRET_PREFIX: &str = "sealed:v1:";

/// Whether `text` is a secret sealed by [`IdentityKey::seal_secret`] (and not one stored
/// in clear by an earlier version).
pub fn is_sealed_secret(text: &str) -> bool {
    text.starts_with(SECRET_PREFIX)
}

fn secret_aad(purpose: &str, owner: &str) -> Vec<u8> {
    [
        &b"clearflow-secret\0"[..],
        purpose.as_bytes(),
        b"\0",
        owner.as_bytes(),
    ]
    .concat()
}

fn message_aad(instance: &str, message: &str) -> Vec<u8> {
    [
        &b"clearflow-message\0"[..],
        instance.as_bytes(),
        b"\0",
        message.as_bytes(),
    ]
    .concat()
}

fn aad(instance: &str) -> Vec<u8> {
    [AAD_PREFIX, instance.as_bytes()].concat()
}

pub use clearflow_store::identity::Sealed;

/// Writes a new random key (base64) to `path`, readable by its owner only. An existing
/// file is never overwritten.
pub fn keygen(path: &Path) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    writeln!(f, "{}", B64.encode(key))?;
    f.sync_all()
}

// ---------------------------------------------------------------------------------------
// Receipt codes

/// Crockford's base32 alphabet: no I, L, O or U, so codes read aloud survive.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters of the lookup id (40 bits).
pub const LOOKUP_CHARS: usize = 8;
/// Characters of the secret (120 bits).
pub const SECRET_CHARS: usize = 24;

/// A receipt code, split into its parts. Its `Debug` hides the secret.
pub struct Receipt {
    /// The public half: the row to check against.
    pub lookup: String,
    secret: String,
}

impl fmt::Debug for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Receipt({}-<secret>)", self.lookup)
    }
}

fn random_chars(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    // 256 is a multiple of 32, so `b % 32` is uniform.
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b % 32)] as char)
        .collect()
}

impl Receipt {
    /// A new random code.
    pub fn generate() -> Receipt {
        Receipt {
            lookup: random_chars(LOOKUP_CHARS),
            secret: random_chars(SECRET_CHARS),
        }
    }

    /// Reads a code as a person typed it: case, spaces and dashes do not matter, and
    /// `I`/`L` read as `1`, `O` as `0`. `None` when it cannot be a code.
    pub fn parse(text: &str) -> Option<Receipt> {
        let mut clean = String::with_capacity(LOOKUP_CHARS + SECRET_CHARS);
        for c in text.chars() {
            let c = match c.to_ascii_uppercase() {
                '-' | ' ' | '\t' => continue,
                'I' | 'L' => '1',
                'O' => '0',
                c if c.is_ascii() && ALPHABET.contains(&(c as u8)) => c,
                _ => return None,
            };
            clean.push(c);
        }
        if clean.len() != LOOKUP_CHARS + SECRET_CHARS {
            return None;
        }
        let (lookup, secret) = clean.split_at(LOOKUP_CHARS);
        Some(Receipt {
            lookup: lookup.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// The code for people: groups of four joined by dashes.
    pub fn display(&self) -> String {
        let all = format!("{}{}", self.lookup, self.secret);
        all.as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).expect("ascii"))
            .collect::<Vec<_>>()
            .join("-")
    }

    /// The Argon2id hash (PHC string) of the secret, to store. Slow on purpose: call it
    /// off the async threads.
    pub fn hash(&self) -> String {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).expect("the operating system's random source");
        let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt");
        argon2::Argon2::default()
            .hash_password(self.secret.as_bytes(), &salt)
            .expect("Argon2id with default parameters")
            .to_string()
    }

    /// Whether the secret matches a stored hash (constant-time compare inside Argon2).
    pub fn verify(&self, stored: &str) -> bool {
        match PasswordHash::new(stored) {
            Ok(h) => argon2::Argon2::default()
                .verify_password(self.secret.as_bytes(), &h)
                .is_ok(),
            Err(_) => false,
        }
    }

    /// Spends the same time as [`Receipt::verify`] against a hash no code matches, for
    /// lookups that found no row: "no such case" then costs what "wrong code" costs.
    pub fn verify_dummy(&self) -> bool {
        let _ = self.verify(dummy_hash());
        false
    }

    /// Computes the hash [`Receipt::verify_dummy`] checks against, so that the first
    /// unknown lookup does not pay for it (which would tell it apart). Call at start.
    pub fn prepare_dummy() {
        let _ = dummy_hash();
    }
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| Receipt::generate().hash())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> IdentityKey {
        IdentityKey::from_bytes(&[b; 32])
    }

    fn alice() -> Identity {
        Identity {
            name: Some("Alice Zhang".into()),
            email: Some("alice@example.org".into()),
            id_number: Some("330106199001011234".into()),
            ..Identity::default()
        }
    }

    #[test]
    fn sealed_secret_opens_only_for_its_purpose_owner_and_key() {
        let k = key(7);
        let text = k.seal_secret("totp", "li.na", "JBSWY3DPEHPK3PXP");
        assert!(
            is_sealed_secret(&text) && !text.contains("JBSWY3DP"),
            "{text}"
        );
        assert_eq!(
            k.open_secret("totp", "li.na", &text).as_deref(),
            Ok("JBSWY3DPEHPK3PXP")
        );
        assert!(
            k.open_secret("totp", "zhao.lei", &text).is_err(),
            "another user's row"
        );
        assert!(
            k.open_secret("enrolment", "li.na", &text).is_err(),
            "another purpose"
        );
        assert!(
            key(8).open_secret("totp", "li.na", &text).is_err(),
            "another key"
        );
        assert!(matches!(
            k.open_secret("totp", "li.na", "JBSWY3DPEHPK3PXP"),
            Err(IdentityError::Malformed(_))
        ));
        assert!(!is_sealed_secret("JBSWY3DPEHPK3PXP") && !is_sealed_secret("{}"));
    }

    #[test]
    fn sealed_identity_opens_only_with_its_key_and_instance() {
        let k = key(7);
        let sealed = k.seal("case-1", &alice());
        assert_eq!(k.open("case-1", &sealed), Ok(alice()));
        // Nothing of the identity shows in the stored form.
        for field in [&sealed.nonce, &sealed.ciphertext, &sealed.key_id] {
            assert!(
                !field.contains("Alice") && !field.contains("alice@"),
                "{field}"
            );
        }
        // Wrong key.
        assert_eq!(
            key(8).open("case-1", &sealed),
            Err(IdentityError::Refused("case-1".into()))
        );
        // Moved to another instance (the instance id is the associated data).
        assert_eq!(
            k.open("case-2", &sealed),
            Err(IdentityError::Refused("case-2".into()))
        );
    }

    #[test]
    fn tampered_records_are_refused() {
        let k = key(1);
        let sealed = k.seal("case-1", &alice());
        let mut ct = B64.decode(&sealed.ciphertext).expect("base64");
        for i in [0, ct.len() / 2, ct.len() - 1] {
            ct[i] ^= 1;
            let t = Sealed {
                ciphertext: B64.encode(&ct),
                ..sealed.clone()
            };
            assert_eq!(
                k.open("case-1", &t),
                Err(IdentityError::Refused("case-1".into()))
            );
            ct[i] ^= 1;
        }
        let mut nonce = B64.decode(&sealed.nonce).expect("base64");
        nonce[3] ^= 0x80;
        let t = Sealed {
            nonce: B64.encode(&nonce),
            ..sealed.clone()
        };
        assert_eq!(
            k.open("case-1", &t),
            Err(IdentityError::Refused("case-1".into()))
        );
        let t = Sealed {
            nonce: "short".into(),
            ..sealed
        };
        assert_eq!(
            k.open("case-1", &t),
            Err(IdentityError::Malformed("case-1".into()))
        );
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let k = key(2);
        let a = k.seal("case-1", &alice());
        let b = k.seal("case-1", &alice());
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
        assert_eq!(a.key_id, b.key_id);
        assert_ne!(a.key_id, key(3).fingerprint());
    }

    #[test]
    fn keys_from_text() {
        assert!(IdentityKey::from_base64(&B64.encode([9u8; 32])).is_ok());
        assert!(matches!(
            IdentityKey::from_base64(&B64.encode([9u8; 16])),
            Err(IdentityError::Key(m)) if m.contains("16")
        ));
        assert!(IdentityKey::from_base64("not base64!").is_err());
        assert_eq!(format!("{:?}", alice()), "Identity(<redacted>)");
    }

    #[test]
    fn keygen_writes_an_owner_only_key_and_never_overwrites() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("identity.key");
        keygen(&p).expect("keygen");
        let k = IdentityKey::load(Some(&p)).expect("loads");
        assert_eq!(k.fingerprint().len(), 12);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            assert!(
                matches!(IdentityKey::load(Some(&p)), Err(IdentityError::Key(m)) if m.contains("readable by others"))
            );
        }
        assert!(
            keygen(&p).is_err(),
            "an existing key file is never replaced"
        );
    }

    #[test]
    fn receipt_codes_round_trip_and_verify() {
        let r = Receipt::generate();
        let shown = r.display();
        assert_eq!(shown.len(), 32 + 7);
        let typed = shown.to_lowercase().replace('-', " ");
        let back = Receipt::parse(&typed).expect("parses");
        assert_eq!(back.lookup, r.lookup);
        let stored = r.hash();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(!stored.contains(&r.secret));
        assert!(back.verify(&stored));
        let other = Receipt::generate();
        assert!(!other.verify(&stored));
        assert!(!back.verify_dummy());
        assert!(!back.verify("not a phc string"));
        assert!(Receipt::parse("too-short").is_none());
        assert!(Receipt::parse(&format!("{shown}!")).is_none());
        assert!(!format!("{r:?}").contains(&r.secret));
    }

    #[test]
    fn confusable_characters_read_as_digits() {
        let r = Receipt::parse("ILO0-0000-0000-0000-0000-0000-0000-0000").expect("parses");
        assert_eq!(r.lookup, "11000000");
    }
}
