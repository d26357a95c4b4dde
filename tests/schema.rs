//! The two migration sets agree: both are applied (SQLite to a fresh file, PostgreSQL to
//! a fresh database) and the resulting tables, columns (with mapped types, nullability
//! and primary keys) and indexes (columns, uniqueness, partial or not) are compared; any
//! difference fails with both sides shown.

use std::collections::BTreeSet;

use clearflow_store::{Durability, Store, StoreConfig};
use clearflow_testkit::PgDatabase;
use sqlx::{Connection, Row};

/// One fact about a schema, comparable across the two backends.
type Facts = BTreeSet<String>;

/// The type class both backends agree on.
fn class(t: &str) -> String {
    let t = t.to_ascii_lowercase();
    let c = if t.contains("int") || t == "bigserial" || t == "serial" {
        "integer"
    } else if t.contains("char") || t.contains("text") || t == "uuid" {
        "text"
    } else if t.contains("bool") {
        "boolean"
    } else if t.contains("blob") || t == "bytea" {
        "bytes"
    } else if t.contains("real") || t.contains("double") || t.contains("float") || t == "numeric" {
        "real"
    } else {
        return format!("other({t})");
    };
    c.to_owned()
}

async fn open(url: &str) {
    Store::open(&StoreConfig {
        url: url.to_owned(),
        durability: Durability::Normal,
        max_connections: 1,
    })
    .await
    .expect("migrating the store");
}

async fn sqlite_facts(path: &std::path::Path) -> Facts {
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("sqlite");
    let tables: Vec<String> = sqlx::query(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(&mut c)
    .await
    .expect("tables")
    .iter()
    .map(|r| r.get::<String, _>(0))
    .collect();
    let mut facts = Facts::new();
    for t in &tables {
        facts.insert(format!("table {t}"));
        let cols = sqlx::query(&format!("PRAGMA table_info(\"{t}\")"))
            .fetch_all(&mut c)
            .await
            .expect("columns");
        let mut pk: Vec<(i64, String)> = Vec::new();
        for col in &cols {
            let name: String = col.get("name");
            let ty: String = col.get("type");
            let notnull: i64 = col.get("notnull");
            let in_pk: i64 = col.get("pk");
            // A primary-key column is NOT NULL on PostgreSQL whether or not it says so.
            let nullable = notnull == 0 && in_pk == 0;
            facts.insert(format!(
                "column {t}.{name} {} {}",
                class(&ty),
                if nullable { "null" } else { "not null" }
            ));
            if in_pk > 0 {
                pk.push((in_pk, name));
            }
        }
        pk.sort();
        if !pk.is_empty() {
            let cols: Vec<_> = pk.into_iter().map(|(_, n)| n).collect();
            facts.insert(format!("primary key {t}({})", cols.join(", ")));
        }
        let indexes = sqlx::query(&format!("PRAGMA index_list(\"{t}\")"))
            .fetch_all(&mut c)
            .await
            .expect("indexes");
        for ix in &indexes {
            let name: String = ix.get("name");
            let unique: i64 = ix.get("unique");
            let origin: String = ix.get("origin");
            let partial: i64 = ix.get("partial");
            if origin == "pk" {
                continue;
            }
            let cols: Vec<String> = sqlx::query(&format!("PRAGMA index_info(\"{name}\")"))
                .fetch_all(&mut c)
                .await
                .expect("index columns")
                .iter()
                .map(|r| {
                    r.get::<Option<String>, _>("name")
                        .unwrap_or_else(|| "<expr>".into())
                })
                .collect();
            facts.insert(format!(
                "index on {t}({}){}{}",
                cols.join(", "),
                if unique == 1 { " unique" } else { "" },
                if partial == 1 { " partial" } else { "" }
            ));
        }
    }
    facts
}

async fn postgres_facts(url: &str) -> Facts {
    let mut c = sqlx::PgConnection::connect(url).await.expect("postgres");
    let mut facts = Facts::new();
    let tables: Vec<String> = sqlx::query(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name <> '_sqlx_migrations' ORDER BY 1",
    )
    .fetch_all(&mut c)
    .await
    .expect("tables")
    .iter()
    .map(|r| r.get::<String, _>(0))
    .collect();
    for t in &tables {
        facts.insert(format!("table {t}"));
    }
    let cols = sqlx::query(
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut c)
    .await
    .expect("columns");
    for col in &cols {
        let (t, name, ty, nullable): (String, String, String, String) =
            (col.get(0), col.get(1), col.get(2), col.get(3));
        facts.insert(format!(
            "column {t}.{name} {} {}",
            class(&ty),
            if nullable == "YES" {
                "null"
            } else {
                "not null"
            }
        ));
    }
    let indexes = sqlx::query(
        "SELECT t.relname::text, i.indisunique, i.indisprimary, i.indpred IS NOT NULL, \
                ARRAY(SELECT COALESCE(a.attname::text, '<expr>') FROM unnest(i.indkey) WITH ORDINALITY k(n, ord) \
                      LEFT JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.n ORDER BY k.ord) \
         FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace s ON s.oid = t.relnamespace \
         WHERE s.nspname = 'public' AND t.relname <> '_sqlx_migrations'",
    )
    .fetch_all(&mut c)
    .await
    .expect("indexes");
    for ix in &indexes {
        let (t, unique, primary, partial, cols): (String, bool, bool, bool, Vec<String>) =
            (ix.get(0), ix.get(1), ix.get(2), ix.get(3), ix.get(4));
        if primary {
            facts.insert(format!("primary key {t}({})", cols.join(", ")));
            continue;
        }
        facts.insert(format!(
            "index on {t}({}){}{}",
            cols.join(", "),
            if unique { " unique" } else { "" },
            if partial { " partial" } else { "" }
        ));
    }
    facts
}

#[test]
fn the_sqlite_and_postgres_migrations_make_the_same_schema() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let file = tmp.path().join("schema.db");
    let pg = PgDatabase::create();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (lite, post) = rt.block_on(async {
        open(&format!("sqlite://{}", file.display())).await;
        open(&pg.url).await;
        (sqlite_facts(&file).await, postgres_facts(&pg.url).await)
    });
    assert!(
        lite.len() > 50,
        "read only {} facts from SQLite",
        lite.len()
    );
    for fact in [
        "primary key instances(id)",
        "table history",
        "column instances.state text not null",
    ] {
        assert!(
            lite.contains(fact) && post.contains(fact),
            "`{fact}` was not read from both"
        );
    }
    let only_lite: Vec<_> = lite.difference(&post).collect();
    let only_post: Vec<_> = post.difference(&lite).collect();
    assert!(
        only_lite.is_empty() && only_post.is_empty(),
        "the migration sets disagree.\nonly on SQLite:\n  {}\nonly on PostgreSQL:\n  {}",
        only_lite
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  "),
        only_post
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}
