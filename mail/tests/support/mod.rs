//! Test support shared by the integration tests (and by other crates' tests).

pub mod smtp;
