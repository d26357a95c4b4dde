//! Plugins in the daemon: loading the declared components and running calls for the engine.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clearflow_core::engine::PluginFailure;
use clearflow_plugin_host::{Host, Plugins};
use serde_json::Value;

use crate::config::PluginConfig;
use crate::worker::{Invocation, PluginRunner};

/// The loaded plugins, as the engine calls them.
pub struct Loaded(pub Plugins);

impl PluginRunner for Loaded {
    fn call(
        &self,
        plugin: &str,
        inv: &Invocation,
        input: &Value,
        timeout: Option<Duration>,
    ) -> Result<Value, PluginFailure> {
        let host_inv = clearflow_plugin_host::Invocation {
            workflow: inv.workflow.clone(),
            instance: inv.instance.clone(),
            step: inv.step.clone(),
            attempt: inv.attempt,
        };
        match self.0.call_within(plugin, &host_inv, input, timeout) {
            Ok(out) => {
                tracing::debug!(plugin, instance = %inv.instance, step = %inv.step, wall_us = out.wall.as_micros() as u64, memory = out.memory_peak, "plugin call");
                Ok(out.output)
            }
            Err(e) => {
                tracing::warn!(plugin, instance = %inv.instance, step = %inv.step, class = e.class.as_str(), "plugin call failed: {}", e.message);
                Err(PluginFailure {
                    class: e.class.as_str().to_owned(),
                    message: e.message,
                    retryable: e.class.retryable(),
                })
            }
        }
    }

    fn names(&self) -> Vec<String> {
        self.0.names().map(str::to_owned).collect()
    }
}

/// Loads every declared plugin; every problem at once.
pub fn load(
    host: &Host,
    decls: &[PluginConfig],
    base: &Path,
    limits: &clearflow_core::Limits,
) -> Result<Arc<dyn PluginRunner>, Vec<clearflow_plugin_host::LoadError>> {
    let decls: Vec<_> = decls.iter().map(|d| d.decl(base, limits)).collect();
    host.load(&decls)
        .map(|p| Arc::new(Loaded(p)) as Arc<dyn PluginRunner>)
}
