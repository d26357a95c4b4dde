//! Reading instances page by page for the lists of notifications (agendas, digests).

use sqlx::Row;

use super::{Store, StoreError, params};

/// One listed instance as stored.
#[derive(Debug, Clone)]
pub struct ListedInstance {
    /// Id.
    pub id: String,
    /// Pinned version.
    pub def_hash: String,
    /// State (JSON).
    pub state: String,
    /// Creation time (ms), for paging.
    pub created_at: i64,
}

impl Store {
    /// Up to `limit` instances of `workflow` with one of `statuses`, oldest first,
    /// after `after` (created_at, id) when given.
    pub async fn list_page(
        &self,
        workflow: &str,
        statuses: &[String],
        after: Option<(i64, &str)>,
        limit: u32,
    ) -> Result<Vec<ListedInstance>, StoreError> {
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = format!(
            "SELECT id, def_hash, state, created_at FROM instances WHERE workflow = $1 AND status IN ({})",
            params(2, statuses.len())
        );
        let mut n = 1 + statuses.len();
        if after.is_some() {
            sql += &format!(
                " AND (created_at > ${} OR (created_at = ${} AND id > ${}))",
                n + 1,
                n + 2,
                n + 3
            );
            n += 3;
        }
        sql += &format!(" ORDER BY created_at, id LIMIT ${}", n + 1);
        let mut q = sqlx::query(&sql).bind(workflow);
        for s in statuses {
            q = q.bind(s);
        }
        if let Some((at, id)) = after {
            q = q.bind(at).bind(at).bind(id);
        }
        q = q.bind(i64::from(limit.clamp(1, 1000)));
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(ListedInstance {
                    id: r.try_get("id")?,
                    def_hash: r.try_get("def_hash")?,
                    state: r.try_get("state")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}
