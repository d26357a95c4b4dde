//! Integration tests for clearflow-templates: one binary, one module per concern, fixtures in temporary folders.

mod check;
mod flagship;
mod load;
mod render;
mod util;
