//! `not-json`: a misbehaving test plugin that returns text which is not JSON; it also shows a plugin written without the SDK.

/// The text returned as "output".
pub fn output() -> String {
    "this is {not json".to_owned()
}

// Generated export glue is unsafe by nature; nothing else here is.
#[cfg(target_arch = "wasm32")]
#[allow(unsafe_code, missing_docs, clippy::too_many_arguments)]
mod component {
    wit_bindgen::generate!({ world: "step", path: "../../wit" });

    struct NotJson;

    impl Guest for NotJson {
        fn run(_call: Invocation, _input: String) -> Result<String, StepError> {
            Ok(super::output())
        }
    }

    export!(NotJson);
}

#[cfg(test)]
mod tests {
    #[test]
    fn output_does_not_parse() {
        assert!(serde_json_free_check(&super::output()));
    }

    // No serde here on purpose; an unbalanced brace is enough to break JSON.
    fn serde_json_free_check(s: &str) -> bool {
        s.matches('{').count() != s.matches('}').count()
    }
}
