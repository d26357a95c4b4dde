//! The integration suite, one binary: the real daemon binary, real plugins, a real SQLite
//! file, a throwaway PostgreSQL (`CLEARFLOW_TEST_POSTGRES_URL`, set by `./scripts/test.sh`)
//! and a real SMTP server on loopback. Shared harness in `clearflow-testkit`; one module per area.

mod auth;
mod browser;
mod concurrent_start;
mod console;
mod crash;
mod daemon;
mod demo;
mod digest;
mod edge;
mod flagship;
mod flagship_complaints;
mod flagship_review;
mod intake;
mod limits;
mod mail;
mod openapi;
mod plugins;
mod provisional;
mod schedules;
mod schema;
mod store;
mod store_schedules;
mod supervisor;
mod tasks;
mod wait;
