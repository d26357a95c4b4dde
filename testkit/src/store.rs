//! Shared by the store suites: runs an `async fn(Store)` body against a fresh SQLite file
//! or a fresh PostgreSQL database, and [`both_backends!`] makes a `sqlite::NAME` and a
//! `postgres::NAME` test of each body. The including file defines
//! `fn run(backend: Backend, body)` (usually calling [`run_on`] with its pool size).

use std::future::Future;

use clearflow_store::{Durability, Store, StoreConfig};

use crate::{Backend, PgDatabase};

/// Opens a fresh store on `backend` with `max_connections`, saves the definition `h1`
/// of workflow `wf`, and runs `body` on a two-thread runtime.
pub fn run_on<F, Fut>(backend: Backend, max_connections: u32, body: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let tmp = tempfile::tempdir().expect("temp dir");
    let pg = (backend == Backend::Postgres).then(PgDatabase::create);
    let url = match &pg {
        Some(db) => db.url.clone(),
        None => format!("sqlite://{}", tmp.path().join("store.db").display()),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let cfg = StoreConfig {
            url,
            durability: Durability::Normal,
            max_connections,
        };
        let store = Store::open(&cfg).await.expect("opening the store");
        store
            .save_definition("h1", "wf", "wf.yaml", "id: wf", 0)
            .await
            .expect("definition");
        body(store).await;
    });
    drop(rt);
    drop(pg);
}

/// A `sqlite::NAME` and a `postgres::NAME` test of each `async fn NAME(Store)`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::run(super::Backend::Sqlite, super::$name) })*
        }
        mod postgres {
            $(#[test] fn $name() { super::run(super::Backend::Postgres, super::$name) })*
        }
    };
}
