//! The duration (`15wd`, `-2wd`, `18mo`) and calendar year-file parsers on arbitrary
//! text: a typed error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = text.parse::<clearflow_time::Span>();
    let _ = clearflow_time::calendar::parse_year_file(
        "cn-mainland",
        std::path::Path::new("2026.toml"),
        text,
    );
});
