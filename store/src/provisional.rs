//! Finding the instances that hold provisional deadlines, to recompute them when the
//! calendars change.

use sqlx::Row;

use super::{Store, StoreError};

impl Store {
    /// Running instances whose state holds a provisional timer or task due date (a
    /// deadline computed past the last year its calendar covers), oldest first.
    ///
    /// Found by their state's JSON (`"provisional":{"timers":…` or `{"tasks":…`, which
    /// the engine writes only while such a deadline exists) rather than by a column the hot commit path would
    /// have to maintain: this runs once per calendar change, about once a year. A false
    /// match (instance data that happens to hold the same text) only costs a
    /// `Recalendar` event that finds nothing to do.
    pub async fn provisional_instances(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM instances WHERE status = 'running' AND state LIKE $1 ORDER BY created_at, id",
        )
        // `timers` or `tasks` (due dates) comes first when either is not empty.
        .bind("%\"provisional\":{\"t%")
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("id").map_err(StoreError::from))
            .collect()
    }
}
