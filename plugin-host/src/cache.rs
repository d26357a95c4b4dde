//! The on-disk cache of compiled components, keyed by the plugin's sha256 and the engine's compatibility hash.
//!
//! This is the only module allowed `unsafe`: wasmtime's
//! `Component::deserialize` trusts its input to be a compiled artifact it
//! produced, since loading one maps native code.
//!
//! The file is read into memory rather than mapped with
//! `Component::deserialize_file`: a mapped file that is truncated or
//! rewritten in place while loaded (an operator clearing the cache, a second
//! daemon) kills the process with SIGBUS; a copy cannot.
#![allow(unsafe_code)]

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::Engine;
use wasmtime::component::Component;

/// Major version of wasmtime this crate is built against; part of cache file names.
const WASMTIME_MAJOR: &str = "48";

/// Path of the compiled form of the component with `sha256` for `engine`.
///
/// The engine part covers the exact wasmtime version and every setting that
/// changes generated code (fuel, for one), so a stale file is never picked up.
pub(crate) fn path(dir: &Path, engine: &Engine, sha256: &str) -> PathBuf {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    dir.join(format!(
        "{sha256}-wasmtime{WASMTIME_MAJOR}-{:016x}.cwasm",
        hasher.finish()
    ))
}

/// Loads the compiled component from the cache, or compiles `wasm` and stores it.
///
/// Returns the component and whether it came from the cache. A cache file
/// that does not load is replaced rather than reported: the cache is an
/// optimisation, not a source of truth.
pub(crate) fn load_or_compile(
    dir: &Path,
    engine: &Engine,
    sha256: &str,
    wasm: &[u8],
) -> Result<(Component, bool), String> {
    let file = path(dir, engine, sha256);
    if let Ok(bytes) = std::fs::read(&file) {
        // SAFETY: the file lives in the host's own cache directory, was
        // written by `store` below from `Engine::precompile_component`, and
        // its name binds it to the sha256 of the component we just verified
        // and to this engine's compatibility hash. wasmtime still checks the
        // header and engine compatibility and returns an error if they differ.
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(component) => return Ok((component, true)),
            Err(e) => {
                tracing::warn!(path = %file.display(), error = %e, "ignoring unusable compiled-code cache file")
            }
        }
    }
    let compiled = engine
        .precompile_component(wasm)
        .map_err(|e| format!("{e:#}"))?;
    store(&file, &compiled).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    // SAFETY: as above; `compiled` was produced by this engine a moment ago.
    let component =
        unsafe { Component::deserialize(engine, &compiled) }.map_err(|e| format!("{e:#}"))?;
    Ok((component, false))
}

// Written to a temporary name and renamed, so a concurrent reader or a crash
// never sees a partial file; the name is unique per process and call, so
// concurrent loads of the same plugin do not write into one file.
fn store(file: &Path, compiled: &[u8]) -> std::io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = file.with_extension(format!("cwasm.tmp-{}-{seq}", std::process::id()));
    std::fs::write(&tmp, compiled)?;
    std::fs::rename(&tmp, file)
}
