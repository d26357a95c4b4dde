//! The expression compiler on arbitrary text, and a compiled expression evaluated over
//! a small instance context: errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(e) = clearflow_core::expr::Expr::compile(text) {
        let _ = e.references();
        let ctx = clearflow_core::expr::context(&serde_json::json!({
            "input": {"n": 3, "s": "text", "list": [1, 2, 3]},
            "vars": {"grade": "key", "flag": true, "nested": {"a": {"b": null}}},
        }));
        let _ = e.eval(&ctx);
        let _ = e.truthy(&ctx);
    }
});
