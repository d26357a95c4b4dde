//! What the web console needs of the runtime: staff credentials and sessions, the
//! whistleblower's sealed messages (every staff read audited), and task actions checked
//! exactly as the API checks them.
//!
//! The primitives (password hashing, TOTP, cookies) are the web crate's; this module
//! only stores and audits.

use clearflow_core::engine::{
    Event, Instance, Refusal, RefusalKind, TaskAction, check_claim, check_task_action,
};
use serde_json::json;

use crate::Runtime;
use crate::clock::ms;
use crate::data::{AuditEvent, Closing, StoreError, TaskRefused, TaskRow};
use crate::identity::{IdentityError, IdentityKey, is_sealed_secret};
use crate::registry::VersionError;

pub use clearflow_store::web::{Credential, SessionRow, SessionStage};

/// Why a task action was not done.
#[derive(Debug)]
pub enum ActRefused {
    /// The task row refused it (not found, closed, not the user's, claimed by another).
    Task(TaskRefused),
    /// The instance of the task is gone.
    Gone,
    /// The engine's own check refused it: every reason (form, separation of duties, …).
    Check(Vec<Refusal>),
}

/// A failure of the runtime itself while acting on a task.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The instance's workflow version cannot be loaded.
    #[error(transparent)]
    Version(#[from] VersionError),
    /// The instance's stored state does not read back.
    #[error("instance state: {0}")]
    State(#[from] serde_json::Error),
}

/// A message on a case, opened.
#[derive(Debug, Clone)]
pub struct CaseMessage {
    /// The staff user who wrote it; `None` for the whistleblower.
    pub author: Option<String>,
    /// Written (ms).
    pub at: i64,
    /// The text.
    pub text: String,
}

/// Why something sealed (a message, a TOTP secret, an enrolment) cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// No identity key is configured, so nothing can be sealed.
    #[error("no identity key is configured ([identity] key_file)")]
    NoKey,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A sealed value does not open with the key.
    #[error(transparent)]
    Sealed(#[from] IdentityError),
}

/// What a sealed TOTP secret is bound to (with the user).
const TOTP: &str = "totp";
/// What a sealed enrolment in progress is bound to (with the user).
const ENROLMENT: &str = "totp-enrolment";

impl Runtime {
    fn secret_key(&self) -> Result<&IdentityKey, SealError> {
        self.identity_key().ok_or(SealError::NoKey)
    }

    /// Claims (`claim`) or releases task `id` for `user` with `roles`. A claim is refused,
    /// like the completion it leads to, when separation of duties rules the user out
    /// (so nobody holds a task they could never complete); the row checks the rest (open,
    /// the user's role or assignment, someone else's claim).
    pub async fn claim_task(
        &self,
        id: &str,
        user: &str,
        roles: &[String],
        claim: bool,
    ) -> Result<Result<TaskRow, ActRefused>, ActError> {
        if claim
            && let Some(t) = self.task(id).await?
            && t.status == "open"
            && let Some((row, state)) = self.instance(&t.instance_id).await?
        {
            let wf = self.version(&row.def_hash).await?;
            let inst: Instance = serde_json::from_str(&state)?;
            if let Err(refusals) = check_claim(&wf, &inst, t.task_no as u32, user) {
                // A task of a step that is no longer waiting is the row's to refuse.
                if refusals.iter().all(|r| r.kind != RefusalKind::NotOpen) {
                    return Ok(Err(ActRefused::Check(refusals)));
                }
            }
        }
        Ok(self
            .store()
            .claim_task(id, user, roles, claim)
            .await?
            .map_err(ActRefused::Task))
    }

    /// Completes or rejects task `id` as `user` with `roles`: the row's own checks (open,
    /// the user's role or assignment, the claim), then the engine's pure check of the
    /// form and separation of duties, then the close and its event in one transaction
    /// (the engine is woken). The API and the console both call this.
    pub async fn act_on_task(
        &self,
        id: &str,
        user: &str,
        roles: &[String],
        action: TaskAction,
    ) -> Result<Result<TaskRow, ActRefused>, ActError> {
        let Some(t) = self.task(id).await? else {
            return Ok(Err(ActRefused::Task(TaskRefused::NotFound)));
        };
        if t.status != "open" {
            return Ok(Err(ActRefused::Task(TaskRefused::NotOpen(t.status))));
        }
        let assigned = t.assignee.as_deref() == Some(user);
        if !assigned && !t.role.as_ref().is_some_and(|r| roles.contains(r)) {
            return Ok(Err(ActRefused::Task(TaskRefused::Forbidden(format!(
                "{user} may not act on task {id}"
            )))));
        }
        if let Some(c) = t.claimed_by.as_ref().filter(|c| c.as_str() != user) {
            return Ok(Err(ActRefused::Task(TaskRefused::Conflict(format!(
                "task {id} is claimed by {c}"
            )))));
        }
        let Some((row, state)) = self.instance(&t.instance_id).await? else {
            return Ok(Err(ActRefused::Gone));
        };
        let wf = self.version(&row.def_hash).await?;
        let inst: Instance = serde_json::from_str(&state)?;
        let task_no = t.task_no as u32;
        if let Err(refusals) = check_task_action(&wf, &inst, task_no, user, &action) {
            return Ok(Err(ActRefused::Check(refusals)));
        }
        let token = t.token as u32;
        let (closing, event) = match action {
            TaskAction::Complete { form } => (
                Closing::Completed(form.clone()),
                Event::TaskCompleted {
                    token,
                    actor: user.to_owned(),
                    form,
                    task: Some(task_no),
                },
            ),
            TaskAction::Reject { reason } => (
                Closing::Rejected(reason.clone()),
                Event::TaskRejected {
                    token,
                    actor: user.to_owned(),
                    reason,
                    task: Some(task_no),
                },
            ),
        };
        let payload = serde_json::to_string(&event)?;
        Ok(self
            .close_task(id, user, roles, &closing, &payload)
            .await?
            .map_err(ActRefused::Task))
    }

    // ---- credentials and sessions ----------------------------------------------------

    /// A user's stored credential, its TOTP secret opened. A secret that does not open
    /// is an error, never "not enrolled" (which would let a password alone enrol anew).
    pub async fn credential(&self, user: &str) -> Result<Option<Credential>, SealError> {
        let Some(mut c) = self.store().credential(user).await? else {
            return Ok(None);
        };
        if let Some(stored) = c.totp_secret.take() {
            c.totp_secret = Some(if is_sealed_secret(&stored) {
                self.secret_key()?.open_secret(TOTP, user, &stored)?
            } else {
                stored // in clear from an earlier version; sealed at the next start
            });
        }
        Ok(Some(c))
    }

    /// Counts a failed sign-in; returns the consecutive failures.
    pub async fn sign_in_failed(&self, user: &str) -> Result<i64, StoreError> {
        self.store().sign_in_failed(user, ms(self.now())).await
    }

    /// Clears the failure count.
    pub async fn sign_in_succeeded(&self, user: &str) -> Result<(), StoreError> {
        self.store().sign_in_succeeded(user).await
    }

    /// Whether staff secrets can be sealed here (an identity key is configured): without
    /// one, no second factor can be enrolled.
    pub fn can_seal_secrets(&self) -> bool {
        self.identity_key().is_some()
    }

    /// Stores an enrolled TOTP secret (sealed under the identity key, bound to the user)
    /// with the step just used and the recovery code hashes.
    pub async fn enrol_totp(
        &self,
        user: &str,
        secret: &str,
        step: i64,
        recovery: &[String],
    ) -> Result<(), SealError> {
        let sealed = self.secret_key()?.seal_secret(TOTP, user, secret);
        Ok(self
            .store()
            .enrol_totp(user, &sealed, step, recovery, ms(self.now()))
            .await?)
    }

    /// Seals every TOTP secret an earlier version stored in clear; returns how many.
    /// Run at start; without an identity key nothing is sealed (and nothing changes).
    pub async fn seal_clear_secrets(&self) -> Result<usize, SealError> {
        let Some(key) = self.identity_key() else {
            return Ok(0);
        };
        let mut sealed = 0;
        for (user, secret) in self.store().clear_totp_secrets().await? {
            if is_sealed_secret(&secret) {
                continue;
            }
            let text = key.seal_secret(TOTP, &user, &secret);
            if self
                .store()
                .reseal_totp_secret(&user, &secret, &text)
                .await?
            {
                sealed += 1;
            }
        }
        Ok(sealed)
    }

    /// Records a TOTP step as used; false for a replay.
    pub async fn use_totp_step(&self, user: &str, step: i64) -> Result<bool, StoreError> {
        self.store().use_totp_step(user, step).await
    }

    /// Spends a recovery code (by its hash); false when it is not (or no longer) valid.
    pub async fn use_recovery_code(&self, user: &str, hash: &str) -> Result<bool, StoreError> {
        self.store().use_recovery_code(user, hash).await
    }

    /// Stores a new session; an enrolment in progress on it is sealed.
    pub async fn create_session(&self, s: &SessionRow) -> Result<(), SealError> {
        let mut row = s.clone();
        if let Some(plain) = row.enrol_secret.take() {
            row.enrol_secret = Some(self.secret_key()?.seal_secret(ENROLMENT, &row.user, &plain));
        }
        Ok(self.store().create_session(&row).await?)
    }

    /// A session by its hash, its enrolment in progress opened (dropped when it does not
    /// open: the user signs in again to start a new one).
    pub async fn session(&self, id_hash: &str) -> Result<Option<SessionRow>, StoreError> {
        let Some(mut row) = self.store().session(id_hash).await? else {
            return Ok(None);
        };
        if let Some(stored) = row.enrol_secret.take() {
            row.enrol_secret = self
                .identity_key()
                .and_then(|k| k.open_secret(ENROLMENT, &row.user, &stored).ok());
        }
        Ok(Some(row))
    }

    /// Records a request on a session (written at most once a minute).
    pub async fn touch_session(&self, id_hash: &str) -> Result<(), StoreError> {
        self.store()
            .touch_session(id_hash, ms(self.now()), 60_000)
            .await
    }

    /// Moves a session on in sign-in (ending any enrolment in progress on it).
    pub async fn set_session_stage(
        &self,
        id_hash: &str,
        stage: SessionStage,
    ) -> Result<(), StoreError> {
        self.store().set_session_stage(id_hash, stage).await
    }

    /// Ends a session; true when it was live.
    pub async fn revoke_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        self.store().revoke_session(id_hash, ms(self.now())).await
    }

    /// Sessions used within the last `idle_ms`.
    pub async fn live_sessions(&self, idle_ms: i64) -> Result<Vec<SessionRow>, StoreError> {
        self.store().live_sessions(ms(self.now()) - idle_ms).await
    }

    // ---- messages --------------------------------------------------------------------

    /// Adds a message to case `instance`, sealed; `author` is the staff user, `None` for
    /// the whistleblower. Records `case.message_added` (who and which case, never the text).
    pub async fn add_message(
        &self,
        instance: &str,
        author: Option<&str>,
        text: &str,
    ) -> Result<(), SealError> {
        let key = self.identity_key().ok_or(SealError::NoKey)?;
        let mut raw = [0u8; 12];
        getrandom::fill(&mut raw).expect("the operating system's random source");
        let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let now = ms(self.now());
        let row = clearflow_store::web::MessageRow {
            sealed: key.seal_message(instance, &id, text),
            id,
            instance_id: instance.to_owned(),
            author: author.map(str::to_owned),
            created_at: now,
        };
        self.store().add_message(&row).await?;
        self.audit(&AuditEvent {
            at: now,
            kind: "case.message_added".into(),
            actor: author.unwrap_or("reporter").to_owned(),
            instance_id: Some(instance.to_owned()),
            detail: json!({ "from_reporter": author.is_none() }),
        })
        .await?;
        Ok(())
    }

    /// The messages of case `instance`, opened, oldest first. A staff reader is recorded
    /// (`case.messages_read`, with who) before anything is opened; the whistleblower's
    /// own reads (`reader` `None`) are not, as they prove only that the code is known.
    pub async fn messages(
        &self,
        instance: &str,
        reader: Option<&str>,
    ) -> Result<Vec<CaseMessage>, SealError> {
        let key = self.identity_key().ok_or(SealError::NoKey)?;
        let rows = self.store().messages(instance).await?;
        if let Some(user) = reader
            && !rows.is_empty()
        {
            self.audit(&AuditEvent {
                at: ms(self.now()),
                kind: "case.messages_read".into(),
                actor: user.to_owned(),
                instance_id: Some(instance.to_owned()),
                detail: json!({ "messages": rows.len() }),
            })
            .await?;
        }
        rows.into_iter()
            .map(|r| {
                Ok(CaseMessage {
                    text: key.open_message(instance, &r.id, &r.sealed)?,
                    author: r.author,
                    at: r.created_at,
                })
            })
            .collect()
    }
}

impl Runtime {
    /// Tells `[web] message_notify` that case `instance` has a new message from the
    /// whistleblower: template `case-message`, which gets only the case number, never
    /// the text. A failure is logged; the message itself is stored already.
    pub async fn notify_new_message(&self, instance: &str) {
        let to = &self.config().web.message_notify;
        if to.is_empty() {
            return;
        }
        let row = match self.instance(instance).await {
            Ok(Some((row, state))) => {
                let state: serde_json::Value = serde_json::from_str(&state).unwrap_or_default();
                let number = state["data"]["input"]["case_number"].clone();
                Some((row, number))
            }
            _ => None,
        };
        let Some((row, number)) = row else {
            return;
        };
        let data = json!({ "case": { "number": number, "id": instance } });
        if let Err(e) = self
            .queue_notice(&row, "message", "case-message", to, &data)
            .await
        {
            tracing::error!(error = %e, %instance, "queueing the new-message notice");
        }
    }

    /// The mail queued and sent for one instance, oldest first.
    pub async fn mail_for_instance(
        &self,
        instance: &str,
    ) -> Result<Vec<crate::data::MailRecord>, StoreError> {
        self.store().mail_for_instance(instance).await
    }
}

impl Runtime {
    /// The case numbers (`input.case_number`) of `instances` that have one.
    pub async fn case_numbers(
        &self,
        instances: &[String],
    ) -> Result<std::collections::HashMap<String, String>, StoreError> {
        self.store().case_numbers(instances).await
    }

    /// The case number of an instance ("" when it has none).
    pub async fn case_number(&self, instance: &str) -> Result<String, StoreError> {
        Ok(self
            .store()
            .case_number(instance)
            .await?
            .unwrap_or_default())
    }

    /// Whether the instance came in through intake (a receipt code opens it), so it has
    /// a whistleblower to exchange messages with.
    pub async fn has_receipt(&self, instance: &str) -> bool {
        self.store().has_receipt(instance).await.unwrap_or(false)
    }
}

impl Runtime {
    /// Walks the audit log's and every instance's hash chain (`clearflow audit verify`).
    pub async fn verify_audit(&self) -> Result<clearflow_store::Verification, StoreError> {
        self.store().verify(None).await
    }
}
