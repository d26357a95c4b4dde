//! The capability policy: which imports a plugin may have, and the WASI implementation linked for them.
//!
//! A plugin built by Rust's `wasm32-wasip2` target imports, even when it does
//! nothing but compute, the WASI interfaces its standard library links for
//! stdio, environment and exit. Inspecting the trivial SDK plugin `echo`
//! (rustc 1.95, wit-bindgen 0.63) gives exactly this baseline, all `@0.2.6`:
//! `wasi:io/{poll,error,streams}` and `wasi:cli/{environment,exit,stdin,
//! stdout,stderr,terminal-input,terminal-output,terminal-stdin,
//! terminal-stdout,terminal-stderr}`; plus `clearflow:plugin/types` (type
//! definitions) and `clearflow:plugin/log`.
//!
//! [`GRANTED`] is that baseline plus `wasi:random/*`, which `std`'s
//! `HashMap` seeding pulls in and which reaches nothing outside the
//! instance. Deliberately **not** granted:
//! - `wasi:filesystem/*`: there is nothing to read; `std::fs` pulls these in
//!   (with `wasi:clocks/wall-clock` for file times), so such a plugin is
//!   refused at load;
//! - `wasi:clocks/*`: dates come from the input, keeping steps
//!   deterministic, and a blocking sleep inside a host call would escape the
//!   epoch deadline;
//! - `wasi:sockets/*`, `wasi:http/*` and anything else.
//!
//! Granting an interface is not granting a capability: every call runs with
//! an empty WASI context (no args, no environment variables, stdin closed,
//! stdout/stderr captured into the call's logs). Only the granted interfaces
//! are linked at all, so nothing else could be instantiated even if the
//! check were bypassed.

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, HasData, Linker, ResourceTable};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::p2::bindings as wasi;
use wasmtime_wasi::random::{WasiRandom, WasiRandomView};

use crate::LoadErrorKind;

/// Interfaces a plugin may import, by `namespace:package/interface` (any version).
pub const GRANTED: &[&str] = &[
    "clearflow:plugin/log",
    "clearflow:plugin/types",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

/// Whether an import name such as `wasi:cli/stdout@0.2.6` is granted.
pub fn is_granted(import: &str) -> bool {
    let unversioned = import.split('@').next().unwrap_or(import);
    GRANTED.contains(&unversioned)
}

/// Refuses a component that imports anything not granted, naming every such import.
pub(crate) fn check(engine: &wasmtime::Engine, component: &Component) -> Result<(), LoadErrorKind> {
    let forbidden: Vec<String> = component
        .component_type()
        .imports(engine)
        .filter(|(name, item)| {
            !matches!(item.ty, ComponentItem::ComponentInstance(_)) || !is_granted(name)
        })
        .map(|(name, _)| name.to_owned())
        .collect();
    if forbidden.is_empty() {
        Ok(())
    } else {
        Err(LoadErrorKind::ForbiddenImports { imports: forbidden })
    }
}

/// The names a component imports, for diagnostics and `clearflow plugin test`.
pub fn imports(engine: &wasmtime::Engine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .collect()
}

struct HasIo;

impl HasData for HasIo {
    type Data<'a> = &'a mut ResourceTable;
}

/// Links the WASI implementation of every granted `wasi:` interface, and nothing else.
pub(crate) fn link_wasi<T: WasiView>(l: &mut Linker<T>) -> wasmtime::Result<()> {
    wasi::cli::environment::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasi::sync::io::error::add_to_linker::<T, HasIo>(l, |t| t.ctx().table)?;
    wasi::sync::io::poll::add_to_linker::<T, HasIo>(l, |t| t.ctx().table)?;
    wasi::sync::io::streams::add_to_linker::<T, HasIo>(l, |t| t.ctx().table)?;
    wasi::random::random::add_to_linker::<T, WasiRandom>(l, T::random)?;
    wasi::random::insecure::add_to_linker::<T, WasiRandom>(l, T::random)?;
    wasi::random::insecure_seed::add_to_linker::<T, WasiRandom>(l, T::random)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_do_not_matter_but_interfaces_do() {
        assert!(is_granted("wasi:cli/stdout@0.2.6"));
        assert!(is_granted("clearflow:plugin/log@0.1.0"));
        assert!(!is_granted("wasi:sockets/tcp@0.2.6"));
        assert!(!is_granted("wasi:http/outgoing-handler@0.2.6"));
        assert!(!is_granted("wasi:cli/stdout-extra@0.2.6"));
        assert!(!is_granted("wasi:filesystem/preopens@0.2.6"));
        assert!(!is_granted("wasi:clocks/wall-clock@0.2.6"));
    }
}
