//! The [`Host`] (engines, epoch ticker, compiled-code cache) and loading plugins into an immutable [`Plugins`] set.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::call::{self, Loaded, State};
use crate::{
    CallError, CallOutput, ErrorClass, HostError, Invocation, Limits, LoadError, LoadErrorKind,
    PluginDecl,
};

/// How often the epoch advances; the granularity of call deadlines.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Concurrent instances the pooling allocator reserves room for; calls
/// beyond it fail as [`ErrorClass::Transient`] until a slot frees up.
const POOL_INSTANCES: u32 = 128;

/// One wasmtime engine with its linker; plain and fuel-metered code differ, so each has its own.
#[derive(Clone)]
pub(crate) struct EngineSet {
    pub(crate) engine: Engine,
    pub(crate) linker: Arc<Linker<State>>,
}

/// The plugin host: compiles and loads plugins. Create one per process.
///
/// It owns a wasmtime engine configured with the pooling allocator (falling
/// back to on-demand allocation, with a warning, when the pool's address
/// space cannot be reserved), epoch interruption driven by a ticker thread,
/// and — created only when a plugin sets `fuel` — a second, fuel-metering
/// engine.
pub struct Host {
    cache_dir: PathBuf,
    plain: EngineSet,
    fueled: OnceLock<Result<EngineSet, String>>,
}

/// An immutable, cheaply cloned set of loaded plugins.
///
/// A reload builds a new `Plugins`; calls in flight keep the old one alive
/// and finish on the old code.
#[derive(Clone)]
pub struct Plugins {
    plugins: Arc<HashMap<String, Arc<Loaded>>>,
}

impl Host {
    /// Creates the host, with `cache_dir` for compiled components (created if missing).
    pub fn new(cache_dir: &Path) -> Result<Host, HostError> {
        std::fs::create_dir_all(cache_dir).map_err(|source| HostError::CacheDir {
            path: cache_dir.to_owned(),
            source,
        })?;
        let plain = engine_set(false).map_err(HostError::Engine)?;
        Ok(Host {
            cache_dir: cache_dir.to_owned(),
            plain,
            fueled: OnceLock::new(),
        })
    }

    /// The directory holding compiled components.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// The cache file a component with `sha256` compiles to under `limits`.
    pub fn cache_path(&self, sha256: &str, limits: &Limits) -> Result<PathBuf, HostError> {
        let set = self.engines_for(limits).map_err(HostError::Engine)?;
        Ok(crate::cache::path(&self.cache_dir, &set.engine, sha256))
    }

    fn engines_for(&self, limits: &Limits) -> Result<&EngineSet, String> {
        if limits.fuel.is_none() {
            return Ok(&self.plain);
        }
        self.fueled
            .get_or_init(|| engine_set(true))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Loads every declared plugin, or reports every problem found.
    ///
    /// Each plugin's file must match its declared sha256; its compiled form
    /// is taken from the cache or compiled and cached; its imports must be
    /// within [`crate::policy::GRANTED`]; and it must implement the
    /// `clearflow:plugin/step` world.
    pub fn load(&self, decls: &[PluginDecl]) -> Result<Plugins, Vec<LoadError>> {
        let mut errors = Vec::new();
        let mut plugins = HashMap::new();
        for decl in decls {
            let fail = |kind| LoadError {
                plugin: decl.name.clone(),
                path: decl.path.clone(),
                kind,
            };
            if plugins.contains_key(&decl.name)
                || errors.iter().any(|e: &LoadError| e.plugin == decl.name)
            {
                errors.push(fail(LoadErrorKind::Duplicate));
                continue;
            }
            match self.load_one(decl) {
                Ok(loaded) => {
                    plugins.insert(decl.name.clone(), Arc::new(loaded));
                }
                Err(kind) => errors.push(fail(kind)),
            }
        }
        if errors.is_empty() {
            Ok(Plugins {
                plugins: Arc::new(plugins),
            })
        } else {
            Err(errors)
        }
    }

    fn load_one(&self, decl: &PluginDecl) -> Result<Loaded, LoadErrorKind> {
        check_limits(&decl.limits).map_err(LoadErrorKind::InvalidLimits)?;
        let config = serde_json::to_string(&decl.config)
            .map_err(|e| LoadErrorKind::InvalidConfig(e.to_string()))?;
        let wasm = std::fs::read(&decl.path).map_err(LoadErrorKind::Read)?;
        let actual = hex(&Sha256::digest(&wasm));
        let expected = decl.sha256.trim().to_ascii_lowercase();
        if actual != expected {
            return Err(LoadErrorKind::Sha256Mismatch {
                expected: decl.sha256.clone(),
                actual,
            });
        }
        let set = self
            .engines_for(&decl.limits)
            .map_err(LoadErrorKind::Compile)?;
        let (component, cached) =
            crate::cache::load_or_compile(&self.cache_dir, &set.engine, &actual, &wasm)
                .map_err(LoadErrorKind::Cache)?;
        crate::policy::check(&set.engine, &component)?;
        let pre = set
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadErrorKind::NotAStep(format!("{e:#}")))?;
        let pre = call::StepPre::new(pre).map_err(|e| LoadErrorKind::NotAStep(format!("{e:#}")))?;
        tracing::debug!(plugin = %decl.name, sha256 = %actual, cached, "plugin loaded");
        Ok(Loaded {
            name: decl.name.as_str().into(),
            pre,
            engine: set.engine.clone(),
            limits: decl.limits.clone(),
            config,
            sha256: actual,
        })
    }
}

impl Plugins {
    /// Calls plugin `name` once with `input`, synchronously; run it on a blocking thread.
    pub fn call(
        &self,
        name: &str,
        inv: &Invocation,
        input: &serde_json::Value,
    ) -> Result<CallOutput, CallError> {
        self.call_within(name, inv, input, None)
    }

    /// Like [`Plugins::call`], with a step's own deadline when it is shorter than the
    /// plugin's configured one (a step can tighten the limit, never loosen it).
    pub fn call_within(
        &self,
        name: &str,
        inv: &Invocation,
        input: &serde_json::Value,
        timeout: Option<Duration>,
    ) -> Result<CallOutput, CallError> {
        match self.plugins.get(name) {
            Some(plugin) => {
                let limit = timeout.map_or(plugin.limits.timeout, |t| t.min(plugin.limits.timeout));
                call::call(plugin, inv, input, limit)
            }
            None => Err(CallError {
                class: ErrorClass::UnknownPlugin,
                message: format!("no plugin named {name} is loaded"),
                wall: Duration::ZERO,
                logs: Vec::new(),
            }),
        }
    }

    /// Names of the loaded plugins, in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.plugins.keys().map(String::as_str)
    }

    /// Whether a plugin of that name is loaded.
    pub fn contains(&self, name: &str) -> bool {
        self.plugins.contains_key(name)
    }

    /// The verified sha256 of a loaded plugin.
    pub fn sha256(&self, name: &str) -> Option<&str> {
        self.plugins.get(name).map(|p| p.sha256.as_str())
    }
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

fn check_limits(limits: &Limits) -> Result<(), String> {
    if limits.memory_bytes > Limits::MAX_MEMORY_BYTES {
        return Err(format!(
            "memory_bytes {} is above the host maximum {}",
            limits.memory_bytes,
            Limits::MAX_MEMORY_BYTES
        ));
    }
    if limits.timeout.is_zero() {
        return Err("timeout is zero".to_owned());
    }
    if limits.fuel == Some(0) {
        return Err("fuel is zero".to_owned());
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn base_config(fuel: bool) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.consume_fuel(fuel);
    config
}

fn engine_set(fuel: bool) -> Result<EngineSet, String> {
    let mut config = base_config(fuel);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(POOL_INSTANCES);
    // A Rust wasip2 component holds a few core instances (the program and the
    // component adapter's shims) with one memory and a few tables.
    pool.total_core_instances(POOL_INSTANCES * 8);
    pool.total_memories(POOL_INSTANCES * 2);
    pool.total_tables(POOL_INSTANCES * 8);
    pool.max_memory_size(Limits::MAX_MEMORY_BYTES);
    // Pages are not kept resident between instances (wasmtime's default):
    // measured on the echo benchmark, resetting 256 KiB or 1 MiB by memset
    // cost 15-40 µs more per call than madvise, and 64 KiB gained nothing.
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let engine = match Engine::new(&config) {
        Ok(engine) => {
            tracing::info!(fuel, "plugin engine uses the pooling allocator");
            engine
        }
        Err(pooled) => {
            let mut config = base_config(fuel);
            config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
            let engine = Engine::new(&config).map_err(|e| format!("{e:#}"))?;
            tracing::warn!(fuel, error = %format!("{pooled:#}"), "pooling allocator unavailable, plugin engine allocates on demand");
            engine
        }
    };
    spawn_ticker(&engine).map_err(|e| format!("cannot start the epoch ticker thread: {e}"))?;
    let mut linker = Linker::new(&engine);
    call::link(&mut linker).map_err(|e| format!("{e:#}"))?;
    Ok(EngineSet {
        engine,
        linker: Arc::new(linker),
    })
}

// The ticker holds only a weak reference, so it ends once the host and every
// `Plugins` using the engine are gone.
fn spawn_ticker(engine: &Engine) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("clearflow-plugin-epoch".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => return,
                }
            }
        })?;
    Ok(())
}
