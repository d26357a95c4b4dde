//! The `clearflow` binary: command-line entry point.
fn main() {}
