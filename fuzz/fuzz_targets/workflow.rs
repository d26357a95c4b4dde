//! The workflow parser and compiler on arbitrary text: diagnostics, never a panic, and
//! a compiled workflow's diagram and schema checks run too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match clearflow_core::load("fuzz.yaml", text) {
        Ok(wf) => {
            let _ = clearflow_core::graph::mermaid(&wf);
        }
        Err(diagnostics) => {
            assert!(
                !diagnostics.is_empty(),
                "a refusal names at least one problem"
            );
            for d in &diagnostics {
                let _ = d.to_string();
            }
        }
    }
});
