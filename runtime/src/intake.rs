//! Complaint intake and the reporter's status check, for every front door (the JSON API
//! and the public web pages): the identity is split from the case at the door and sealed,
//! the receipt code is made and hashed, and a status check costs one Argon2
//! verification whether or not the code exists.

use serde_json::{Map, Value, json};

use crate::clock::ms;
use crate::facade::Runtime;
use crate::identity::{Identity, Receipt};
use crate::worker::StartError;
use clearflow_core::engine::{IdentityApproval, IdentityReadRefused, identity_read_allowed};
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

/// The longest reason for an identity read, in characters.
pub const MAX_REASON: usize = 500;

/// A reporter's identity, opened for a reader.
#[derive(Debug)]
pub struct IdentityOpened {
    /// The instance the identity is sealed with (the complaint).
    pub sealed_with: String,
    /// The identity.
    pub identity: Identity,
    /// The approval the read rests on, when the workflow asks for one.
    pub approval: Option<IdentityApproval>,
}

/// Why an identity is not shown.
#[derive(Debug, thiserror::Error)]
pub enum IdentityReadError {
    /// No reason was given.
    #[error("give the reason for reading the reporter's identity (it is recorded)")]
    NoReason,
    /// The reason is too long.
    #[error("the reason is longer than {MAX_REASON} characters")]
    ReasonTooLong,
    /// This daemon has no identity key.
    #[error("this daemon has no identity key configured, so identities cannot be read")]
    NoKey,
    /// No such instance.
    #[error("no instance `{0}`")]
    NoInstance(String),
    /// The case has no identity: an anonymous report.
    #[error("instance `{0}` has no reporter identity (an anonymous report)")]
    Anonymous(String),
    /// The workflow's `identity_read:` rule refuses it.
    #[error(transparent)]
    Refused(#[from] IdentityReadRefused),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The instance's workflow version or state cannot be read.
    #[error("{0}")]
    Internal(String),
}

/// `schema` without the intake's own fields and `readOnly` properties (see
/// [`Runtime::intake_form`]); `top` for the outermost object.
fn public_schema(mut schema: Value, top: bool) -> Value {
    let mut dropped = Vec::new();
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        props.retain(|k, v| {
            let keep = !(top && matches!(k.as_str(), "case_number" | "received_on" | "reporter"))
                && v.get("readOnly") != Some(&Value::Bool(true));
            if !keep {
                dropped.push(k.clone());
            }
            keep
        });
        for v in props.values_mut() {
            if v.get("properties").is_some() {
                *v = public_schema(std::mem::take(v), false);
            }
        }
    }
    if let Some(req) = schema.get_mut("required").and_then(Value::as_array_mut) {
        req.retain(|r| !r.as_str().is_some_and(|r| dropped.iter().any(|d| d == r)));
    }
    schema
}

/// What the reporter sees of the case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseStatus {
    /// The case (for its messages; never shown to the reporter).
    pub instance: String,
    /// The case number, when the case data has one.
    pub case_number: Option<String>,
    /// The case's public status (`vars.public_status`; `received` until the workflow sets one).
    pub status: String,
    /// The earliest due date of the case's open tasks (ms): when the office must act next.
    pub deadline: Option<i64>,
    /// The workflow's time zone, for dates shown to the reporter.
    pub timezone: chrono_tz::Tz,
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
    /// Opens the reporter's identity of the case of `instance` for `reader`, who holds
    /// `read_identity` (the caller checks that): with a reason, only as the instance's
    /// workflow allows (`identity_read:`, e.g. after the leader's approval), and recorded
    /// in the audit chain — who, why, the approval — before anything is decrypted. The
    /// API and the console both call this.
    pub async fn read_identity(
        &self,
        instance: &str,
        reader: &str,
        reason: &str,
    ) -> Result<IdentityOpened, IdentityReadError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(IdentityReadError::NoReason);
        }
        if reason.chars().count() > MAX_REASON {
            return Err(IdentityReadError::ReasonTooLong);
        }
        let key = self.identity_key().ok_or(IdentityReadError::NoKey)?;
        let (stored, rule) = self.identity_rule_for(instance).await?;
        let approval = match rule {
            Ok(a) => a,
            Err(refused) => {
                // A refused attempt is on the record too (who, why, which rule).
                self.store()
                    .record_identity_use(
                        &stored.instance_id,
                        reader,
                        "identity.read_refused",
                        &json!({ "reason": reason, "requested_for": instance, "refused": refused.to_string() }),
                        ms(self.now()),
                    )
                    .await?;
                return Err(refused.into());
            }
        };
        let mut detail = json!({ "reason": reason, "requested_for": instance });
        if let Some(a) = &approval {
            detail["approval"] = json!({ "step": a.step, "by": a.by });
        }
        // Recorded before anything is decrypted: no read without its record.
        self.store()
            .record_identity_use(
                &stored.instance_id,
                reader,
                "identity.read",
                &detail,
                ms(self.now()),
            )
            .await?;
        let identity = key
            .open(&stored.instance_id, &stored.sealed)
            .map_err(|e| IdentityReadError::Internal(e.to_string()))?;
        tracing::info!(instance = %stored.instance_id, user = %reader, "reporter identity read");
        Ok(IdentityOpened {
            sealed_with: stored.instance_id,
            identity,
            approval,
        })
    }

    /// What [`Runtime::read_identity`] would decide for `instance` now, without reading
    /// or recording anything (the console shows it beside the read form): the approval
    /// the read would rest on, or why it would be refused. Errors as `read_identity`'s,
    /// except that a missing reason is not one.
    pub async fn identity_rule(
        &self,
        instance: &str,
    ) -> Result<Result<Option<IdentityApproval>, IdentityReadRefused>, IdentityReadError> {
        if self.identity_key().is_none() {
            return Err(IdentityReadError::NoKey);
        }
        Ok(self.identity_rule_for(instance).await?.1)
    }

    /// The sealed identity `instance` leads to and its workflow's rule, applied now.
    async fn identity_rule_for(
        &self,
        instance: &str,
    ) -> Result<
        (
            StoredIdentity,
            Result<Option<IdentityApproval>, IdentityReadRefused>,
        ),
        IdentityReadError,
    > {
        let Some((row, state)) = self.instance(instance).await? else {
            return Err(IdentityReadError::NoInstance(instance.to_owned()));
        };
        let wf = self
            .version(&row.def_hash)
            .await
            .map_err(|e| IdentityReadError::Internal(e.to_string()))?;
        let inst: clearflow_core::Instance = serde_json::from_str(&state)
            .map_err(|e| IdentityReadError::Internal(format!("instance state: {e}")))?;
        let Some(stored) = self.store().identity_for(instance).await? else {
            return Err(IdentityReadError::Anonymous(instance.to_owned()));
        };
        Ok((stored, identity_read_allowed(&wf, &inst, self.now())))
    }

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
        self.assign_intake_fields(&workflow, &mut input).await?;
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

    /// The form a whistleblower fills in: the intake workflow's input schema without what
    /// the intake assigns (`case_number`, `received_on`), without `reporter` (the identity
    /// is asked apart and sealed) and without properties marked `readOnly: true` (what
    /// the office completes, such as the accused's personnel record). `None` when intake
    /// is off.
    pub fn intake_form(&self) -> Option<Value> {
        let workflow = self.config().intake.workflow.as_ref()?;
        let catalog = self.catalog();
        let schema = catalog.get(workflow)?.input_schema.as_ref()?.json.clone();
        Some(public_schema(schema, true))
    }

    /// Assigns `received_on` (today in the workflow's time zone) and `case_number` (the
    /// `[intake] case_number` pattern with a counter per year, unique across daemons) when
    /// the intake workflow's input schema has them and the case data does not.
    async fn assign_intake_fields(
        &self,
        workflow: &str,
        input: &mut Map<String, Value>,
    ) -> Result<(), IntakeError> {
        let Some(wf) = self.catalog().get(workflow).cloned() else {
            return Ok(());
        };
        let props = wf
            .input_schema
            .as_ref()
            .and_then(|s| s.json.get("properties"))
            .and_then(Value::as_object);
        let has = |k: &str| props.is_some_and(|p| p.contains_key(k));
        let today = self.now().with_timezone(&wf.timezone).date_naive();
        if has("received_on") && !input.contains_key("received_on") {
            input.insert(
                "received_on".into(),
                Value::String(today.format("%Y-%m-%d").to_string()),
            );
        }
        if has("case_number") && !input.contains_key("case_number") {
            use chrono::Datelike as _;
            let year = today.year();
            let seq = self
                .store()
                .next_counter(&format!("case_number:{workflow}:{year}"))
                .await?;
            let pattern = &self.config().intake.case_number;
            input.insert(
                "case_number".into(),
                Value::String(crate::config::case_number(pattern, year, seq)),
            );
        }
        Ok(())
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
        let timezone = state["workflow"]
            .as_str()
            .and_then(|w| self.catalog().get(w).map(|wf| wf.timezone))
            .unwrap_or(chrono_tz::Tz::Asia__Shanghai);
        let deadline = self
            .list_tasks(&crate::data::TaskFilter {
                instance: Some(instance.clone()),
                status: Some("open".into()),
                limit: 100,
                ..Default::default()
            })
            .await?
            .iter()
            .filter_map(|t| t.due_at)
            .min();
        Ok(Some(CaseStatus {
            deadline,
            timezone,
            case_number: state["data"]["input"]["case_number"]
                .as_str()
                .map(str::to_owned),
            instance,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_form_leaves_out_what_the_office_fills_in() {
        let schema = json!({
            "type": "object",
            "required": ["case_number", "received_on", "reporter", "accused", "content"],
            "properties": {
                "case_number": {"type": "string"},
                "received_on": {"type": "string"},
                "reporter": {"type": "object"},
                "content": {"type": "string"},
                "history": {"type": "object", "readOnly": true},
                "accused": {"type": "object", "required": ["name", "email"], "properties": {
                    "name": {"type": "string"},
                    "email": {"type": "string", "readOnly": true}
                }}
            }
        });
        let form = public_schema(schema, true);
        assert_eq!(form["required"], json!(["accused", "content"]));
        let props = form["properties"].as_object().unwrap();
        assert_eq!(props.keys().collect::<Vec<_>>(), ["content", "accused"]);
        assert_eq!(form["properties"]["accused"]["required"], json!(["name"]));
        assert!(
            form["properties"]["accused"]["properties"]
                .get("email")
                .is_none()
        );
    }

    #[test]
    fn case_numbers_from_the_pattern() {
        use crate::config::case_number;
        assert_eq!(case_number("{year}-信-{seq:05}", 2026, 42), "2026-信-00042");
        assert_eq!(case_number("JB{seq}", 2026, 7), "JB7");
        assert_eq!(case_number("{year}/{seq:03}", 2025, 12345), "2025/12345");
    }
}
