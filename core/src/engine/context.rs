//! The expression context of a step, built lazily over instance data shared by reference.
//!
//! A step's context used to be a copy of the whole instance data, so each branch of a
//! wide `parallel` paid for every result the branches before it had stored, and a
//! fan-out cost the square of its width. This context holds the data behind an [`Arc`]
//! and converts only the top-level entries an expression reads, when it reads them.

use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr, Value as MjValue};
use serde_json::{Map, Value};

/// The names an expression can read: the instance data, then `instance`, `now` and
/// `links` over it (as when they were inserted into a copy of the data).
#[derive(Debug)]
pub(crate) struct StepContext {
    data: Arc<Map<String, Value>>,
    extra: [(&'static str, MjValue); 3],
}

impl StepContext {
    /// The context over `data`, with `instance`, `now` and `links` as given.
    pub(crate) fn value(
        data: Arc<Map<String, Value>>,
        instance: &Value,
        now: &str,
        links: &Value,
    ) -> MjValue {
        MjValue::from_object(StepContext {
            data,
            extra: [
                ("instance", MjValue::from_serialize(instance)),
                ("now", MjValue::from(now)),
                ("links", MjValue::from_serialize(links)),
            ],
        })
    }
}

impl Object for StepContext {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &MjValue) -> Option<MjValue> {
        let key = key.as_str()?;
        if let Some((_, v)) = self.extra.iter().find(|(k, _)| *k == key) {
            return Some(v.clone());
        }
        self.data.get(key).map(MjValue::from_serialize)
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        // Sorted, as the keys of a map converted by `from_serialize` are.
        let mut keys: Vec<&str> = self.data.keys().map(String::as_str).collect();
        keys.extend(self.extra.iter().map(|(k, _)| *k));
        keys.sort_unstable();
        keys.dedup();
        Enumerator::Values(keys.into_iter().map(MjValue::from).collect())
    }
}
