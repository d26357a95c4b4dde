//! Complaint intake and the reporter's status check, for every front door (the JSON API
//! and the public web pages): the identity is split from the case at the door and sealed,
//! the receipt code is made and hashed, and a status check costs one Argon2
//! verification whether or not the code exists.

use serde_json::{Map, Value, json};

use crate::facade::Runtime;
use crate::identity::{Identity, Receipt};
use crate::worker::StartError;
use clearflow_store::StoreError;
use clearflow_store::identity::StoredIdentity;

/// Who files complaints in the history.
pub const INTAKE_ACTOR: &str = "public:intake";

/// The longest field of a reporter's identity, in characters.
pub const MAX_FIELD: usize = 1000;

/// A complaint as filed.
#[derive(Debug, Default)]
pub struct Complaint {
    /// The case data, as the intake workflow's input schema asks (`reporter` is reserved).
    pub case: Map<String, Value>,
    /// The reporter's identity, absent for an anonymous report.
    pub reporter: Option<Reporter>,
}

/// The reporter's identity as typed (each field at most [`MAX_FIELD`] characters).
#[derive(Debug, Default)]
pub struct Reporter {
    /// Name.
    pub name: Option<String>,
    /// An email address for news of the case.
    pub email: Option<String>,
    /// A phone number.
    pub phone: Option<String>,
    /// An identity document number.
    pub id_number: Option<String>,
    /// A postal address.
    pub address: Option<String>,
    /// Whether the reporter wants mail (default: yes when an email address is given).
    pub contact_by_email: Option<bool>,
}

/// Why a complaint was not taken. Messages name fields, never values.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// No `[intake] workflow` is configured.
    #[error("complaint intake is not enabled here")]
    Disabled,
    /// The case data used the reserved `reporter` key.
    #[error("`case.reporter` is reserved: give the reporter's identity in `reporter`")]
    Reserved,
    /// An identity field is too long.
    #[error("`reporter.{0}` is longer than {MAX_FIELD} characters")]
    TooLong(&'static str),
    /// The email address is not one.
    #[error("`reporter.email` is not an email address")]
    BadEmail,
    /// The case data does not match the intake workflow's input schema.
    #[error("{0}")]
    Invalid(String),
    /// Intake is on without an identity key (the daemon refuses to start so; a bug).
    #[error("intake is enabled without an identity key")]
    NoKey,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else (the message is logged, not shown).
    #[error("{0}")]
    Internal(String),
}

/// What the reporter sees of the case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseStatus {
    /// The case's public status (`vars.public_status`; `received` until the workflow sets one).
    pub status: String,
    /// Feedback for the reporter (`vars.feedback`), if given.
    pub feedback: Option<String>,
}

fn clean(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

impl Reporter {
    /// The identity and whether mail is wanted.
    fn into_identity(self) -> Result<(Identity, bool), IntakeError> {
        let identity = Identity {
            name: clean(self.name),
            email: clean(self.email),
            phone: clean(self.phone),
            id_number: clean(self.id_number),
            address: clean(self.address),
        };
        for (field, v) in [
            ("name", &identity.name),
            ("email", &identity.email),
            ("phone", &identity.phone),
            ("id_number", &identity.id_number),
            ("address", &identity.address),
        ] {
            if v.as_ref().is_some_and(|s| s.chars().count() > MAX_FIELD) {
                return Err(IntakeError::TooLong(field));
            }
        }
        if let Some(e) = &identity.email {
            let ok = e.len() <= 254
                && !e.chars().any(|c| {
                    c.is_whitespace() || c.is_control() || c == ',' || c == '<' || c == '>'
                })
                && e.split_once('@')
                    .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.contains('@'));
            if !ok {
                return Err(IntakeError::BadEmail);
            }
        }
        let mail = identity.email.is_some() && self.contact_by_email.unwrap_or(true);
        Ok((identity, mail))
    }
}

impl Runtime {
    /// Whether complaint intake is on (`[intake] workflow`).
    pub fn intake_enabled(&self) -> bool {
        self.config().intake.workflow.is_some()
    }

    /// Files a complaint: starts the intake workflow with the case data, seals the
    /// identity apart from it, and returns the receipt code (shown once, stored only as
    /// an Argon2 hash). One transaction; the engine is woken.
    pub async fn file_complaint(&self, c: Complaint) -> Result<String, IntakeError> {
        let Some(workflow) = self.config().intake.workflow.clone() else {
            return Err(IntakeError::Disabled);
        };
        if c.case.contains_key("reporter") {
            return Err(IntakeError::Reserved);
        }
        let (identity, contact_by_email) = match c.reporter {
            Some(r) => r.into_identity()?,
            None => (Identity::default(), false),
        };
        let real_name = !identity.is_empty();
        let key = self.identity_key().cloned().ok_or(IntakeError::NoKey)?;
        let mut input = c.case;
        input.insert(
            "reporter".into(),
            json!({
                "type": if real_name { "real_name" } else { "anonymous" },
                "contact_by_email": contact_by_email,
            }),
        );
        let now = self.now();
        let tree = self
            .prepare(&workflow, Value::Object(input), INTAKE_ACTOR, now)
            .map_err(|e| match e {
                StartError::Invalid(m) => IntakeError::Invalid(m),
                other => IntakeError::Internal(other.to_string()),
            })?;
        let id = tree
            .first()
            .map(|t| t.id.clone())
            .expect("a tree has a root");
        // A new lookup id in the unlikely case of a collision (40 bits).
        let mut receipt = Receipt::generate();
        while self.receipt_exists(&receipt.lookup).await? {
            receipt = Receipt::generate();
        }
        let (receipt, hash) = tokio::task::spawn_blocking(move || {
            let h = receipt.hash();
            (receipt, h)
        })
        .await
        .map_err(|e| IntakeError::Internal(e.to_string()))?;
        let sealed = real_name.then(|| StoredIdentity {
            instance_id: id.clone(),
            sealed: key.seal(&id, &identity),
            has_email: contact_by_email,
        });
        drop(identity);
        self.start_intake(&tree, (&receipt.lookup, &hash), sealed.as_ref(), now)
            .await?;
        tracing::info!(instance = %id, %workflow, real_name, "complaint received");
        Ok(receipt.display())
    }

    /// The lookup id a receipt code is counted under for rate limits (a code that does
    /// not parse gets a random one, so it costs the same as any other miss).
    pub fn receipt_lookup(code: &str) -> String {
        Receipt::parse(code)
            .unwrap_or_else(Receipt::generate)
            .lookup
    }

    /// The case a receipt code opens, as the reporter may see it; `None` for a wrong code
    /// and for no such case alike, after the same Argon2 work.
    pub async fn case_status(&self, code: &str) -> Result<Option<CaseStatus>, IntakeError> {
        let receipt = Receipt::parse(code).unwrap_or_else(Receipt::generate);
        let row = self.receipt(&receipt.lookup).await?;
        let (found, matched) = tokio::task::spawn_blocking(move || match row {
            Some((instance, hash)) => {
                let ok = receipt.verify(&hash);
                (Some(instance), ok)
            }
            None => (None, receipt.verify_dummy()),
        })
        .await
        .map_err(|e| IntakeError::Internal(e.to_string()))?;
        let Some(instance) = found.filter(|_| matched) else {
            return Ok(None);
        };
        let Some((_, state)) = self.instance(&instance).await? else {
            return Ok(None);
        };
        let state: Value =
            serde_json::from_str(&state).map_err(|e| IntakeError::Internal(e.to_string()))?;
        let vars = &state["data"]["vars"];
        Ok(Some(CaseStatus {
            status: vars["public_status"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| "received".into()),
            feedback: match &vars["feedback"] {
                Value::String(t) if !t.is_empty() => Some(t.clone()),
                _ => None,
            },
        }))
    }
}
