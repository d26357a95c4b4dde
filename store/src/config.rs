//! Store settings: where the database is and how durable a commit is (`[store]`).

use serde::Deserialize;

/// How durable a SQLite commit is.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// `synchronous=FULL`: a commit survives power loss (about 3 ms each here).
    Full,
    /// `synchronous=NORMAL` in WAL mode: a commit survives a crash of the daemon, not a
    /// power loss of the machine. Much faster; the default.
    #[default]
    Normal,
}

/// The durable store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH` (the default, `sqlite://var/clearflow.db`) or `postgres://…`.
    #[serde(default = "default_store_url")]
    pub url: String,
    /// SQLite durability.
    #[serde(default)]
    pub durability: Durability,
    /// Most connections in the pool.
    #[serde(default = "default_pool")]
    pub max_connections: u32,
}

fn default_store_url() -> String {
    "sqlite://var/clearflow.db".into()
}
fn default_pool() -> u32 {
    8
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: default_store_url(),
            durability: Durability::default(),
            max_connections: default_pool(),
        }
    }
}
