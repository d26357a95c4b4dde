//! The lists of a notification (agendas, digests): instances read from the store and
//! turned into template values by the pure engine, or open tasks as the task API shows
//! them.

use chrono::{DateTime, Utc};
use clearflow_core::engine::{self, Instance};
use clearflow_core::workflow::ListQuery;
use serde_json::{Map, Value};

use crate::registry::Registry;
use clearflow_store::Store;

/// Why a notification's list could not be filled; the notification becomes a dead
/// letter with this reason.
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    /// The store could not be read.
    #[error("list `{list}`: reading the store: {source}")]
    Store {
        /// The list's name.
        list: String,
        /// What failed.
        source: clearflow_store::StoreError,
    },
    /// A listed instance's workflow version is not available.
    #[error("list `{list}`: {source}")]
    Version {
        /// The list's name.
        list: String,
        /// What failed.
        source: crate::registry::VersionError,
    },
    /// A listed instance's stored state does not parse.
    #[error("list `{list}`: instance {instance}: {source}")]
    State {
        /// The list's name.
        list: String,
        /// The instance.
        instance: String,
        /// What failed.
        source: serde_json::Error,
    },
    /// The list's filter or fields failed on an instance.
    #[error("list `{list}`: instance {instance}: {reason}")]
    Entry {
        /// The list's name.
        list: String,
        /// The instance.
        instance: String,
        /// The expression's error.
        reason: String,
    },
}

/// Instances read per page while filling a list.
const PAGE: u32 = 500;

/// Fills every list of a notification, in the engine round's async phase (after the
/// pure advance, before the commit).
pub async fn fill(
    store: &Store,
    registry: &Registry,
    lists: &[ListQuery],
    now: DateTime<Utc>,
) -> Result<Map<String, Value>, DigestError> {
    let mut out = Map::new();
    for q in lists {
        if let Some(t) = &q.tasks {
            let rows = store
                .list_tasks(&clearflow_store::TaskFilter {
                    role: t.role.clone(),
                    workflow: t.workflow.clone(),
                    status: Some("open".into()),
                    due_before: t.overdue.then(|| crate::clock::ms(now)),
                    limit: q.limit,
                    ..Default::default()
                })
                .await
                .map_err(|source| DigestError::Store {
                    list: q.name.clone(),
                    source,
                })?;
            let now = crate::clock::ms(now);
            let entries = rows.iter().map(|r| r.view(now)).collect();
            out.insert(q.name.clone(), Value::Array(entries));
            continue;
        }
        let mut entries = Vec::new();
        let mut after: Option<(i64, String)> = None;
        'pages: loop {
            let page = store
                .list_page(
                    &q.workflow,
                    &q.statuses,
                    after.as_ref().map(|(at, id)| (*at, id.as_str())),
                    PAGE,
                )
                .await
                .map_err(|source| DigestError::Store {
                    list: q.name.clone(),
                    source,
                })?;
            let Some(last) = page.last() else { break };
            after = Some((last.created_at, last.id.clone()));
            let last_page = page.len() < PAGE as usize;
            for row in page {
                let wf = registry
                    .version(&row.def_hash, store)
                    .await
                    .map_err(|source| DigestError::Version {
                        list: q.name.clone(),
                        source,
                    })?;
                let inst: Instance =
                    serde_json::from_str(&row.state).map_err(|source| DigestError::State {
                        list: q.name.clone(),
                        instance: row.id.clone(),
                        source,
                    })?;
                let entry = engine::list_entry(&wf, &inst, q, now).map_err(|reason| {
                    DigestError::Entry {
                        list: q.name.clone(),
                        instance: row.id.clone(),
                        reason,
                    }
                })?;
                if let Some(entry) = entry {
                    entries.push(entry);
                    if entries.len() >= q.limit as usize {
                        break 'pages;
                    }
                }
            }
            if last_page {
                break;
            }
        }
        out.insert(q.name.clone(), Value::Array(entries));
    }
    Ok(out)
}
