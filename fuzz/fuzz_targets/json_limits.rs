//! JSON at the door (API bodies, events, plugin outputs, task forms): whatever passes the
//! byte check and parses must pass the value check and read back unchanged, so that
//! nothing stored is unreadable (the limit sits below the parser's recursion limit).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = clearflow_core::Limits::default();
    if clearflow_core::check_json_bytes(data, &limits).is_err() {
        return;
    }
    let value: serde_json::Value = match serde_json::from_slice(data) {
        Ok(v) => v,
        Err(e) => {
            assert!(
                !e.to_string().contains("recursion limit"),
                "accepted by the depth check, refused by the parser's recursion limit"
            );
            return;
        }
    };
    clearflow_core::check_json_value(&value, &limits)
        .expect("a text within the limits is a value within them");
    let text = serde_json::to_string(&value).expect("serialises");
    let back: serde_json::Value = serde_json::from_str(&text).expect("what was stored reads back");
    assert_eq!(back, value);
});
