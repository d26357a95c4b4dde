//! The lists of a notification (agendas, digests): instances read from the store and
//! turned into template values by the pure engine, or open tasks as the task API shows
//! them.

use chrono::{DateTime, Utc};
use clearflow_core::engine::{self, Instance};
use clearflow_core::workflow::ListQuery;
use serde_json::{Map, Value};

use crate::registry::Registry;
use clearflow_store::Store;

/// Instances read per page while filling a list.
const PAGE: u32 = 500;

/// Fills every list of a notification, in the engine round's async phase (after the
/// pure advance, before the commit).
pub async fn fill(
    store: &Store,
    registry: &Registry,
    lists: &[ListQuery],
    now: DateTime<Utc>,
) -> Result<Map<String, Value>, String> {
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
                .map_err(|e| format!("list `{}`: reading the store: {e}", q.name))?;
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
                .map_err(|e| format!("list `{}`: reading the store: {e}", q.name))?;
            let Some(last) = page.last() else { break };
            after = Some((last.created_at, last.id.clone()));
            let last_page = page.len() < PAGE as usize;
            for row in page {
                let wf = registry
                    .version(&row.def_hash, store)
                    .await
                    .map_err(|e| e.to_string())?;
                let inst: Instance = serde_json::from_str(&row.state)
                    .map_err(|e| format!("list `{}`: instance {}: {e}", q.name, row.id))?;
                let entry = engine::list_entry(&wf, &inst, q, now)
                    .map_err(|e| format!("list `{}`: instance {}: {e}", q.name, row.id))?;
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
