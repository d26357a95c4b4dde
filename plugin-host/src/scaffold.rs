//! The files `clearflow plugin new NAME` writes: a plugin crate using the SDK, ready to build.

use std::io;
use std::path::Path;

/// Writes a new plugin crate named `name` into `dir` (created; must be empty or absent).
///
/// `sdk_path` points the crate at a local `clearflow-plugin-sdk` checkout;
/// without it the crate depends on the SDK by version. The crate builds with
/// `cargo build --release --target wasm32-wasip2` and its logic tests with a
/// native `cargo test`.
pub fn scaffold(name: &str, dir: &Path, sdk_path: Option<&Path>) -> io::Result<()> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-');
    if !valid {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "plugin name {name:?} must be lowercase letters, digits and hyphens, starting with a letter"
            ),
        ));
    }
    if dir.exists() && dir.read_dir()?.next().is_some() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} is not empty", dir.display()),
        ));
    }
    std::fs::create_dir_all(dir.join("src"))?;
    let sdk = match sdk_path {
        Some(p) => format!("{{ path = {:?} }}", p.display().to_string()),
        None => format!("\"{}\"", env!("CARGO_PKG_VERSION")),
    };
    let module = name.replace('-', "_");
    std::fs::write(
        dir.join("Cargo.toml"),
        CARGO_TOML.replace("{name}", name).replace("{sdk}", &sdk),
    )?;
    std::fs::write(dir.join("src/lib.rs"), LIB_RS.replace("{name}", name))?;
    std::fs::write(
        dir.join("README.md"),
        README.replace("{name}", name).replace("{module}", &module),
    )?;
    std::fs::write(dir.join(".gitignore"), "/target\n")?;
    Ok(())
}

const CARGO_TOML: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

# A standalone workspace, so the plugin never joins a surrounding one.
[workspace]

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
clearflow-plugin-sdk = {sdk}
serde = { version = "1", features = ["derive"] }
serde_json = "1"

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
"#;

const LIB_RS: &str = r##"//! The `{name}` clearflow plugin.

use clearflow_plugin_sdk::{Context, StepError, export_step};
use serde::{Deserialize, Serialize};

/// What the step receives (the workflow's `with:` mapping).
#[derive(Debug, Deserialize)]
pub struct Input {
    /// A name to greet.
    pub name: String,
}

/// What the step returns.
#[derive(Debug, Serialize)]
pub struct Output {
    /// The greeting.
    pub greeting: String,
}

/// Plugin configuration, from the daemon's config file.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Greeting word; "hello" when empty.
    pub word: String,
}

/// The step.
pub fn run(ctx: &Context, input: Input) -> Result<Output, StepError> {
    let config: Config = ctx.config()?;
    if input.name.trim().is_empty() {
        return Err(StepError::invalid_input("name is empty"));
    }
    let word = if config.word.is_empty() { "hello" } else { &config.word };
    ctx.info(&format!("greeting in step {}", ctx.step()));
    Ok(Output { greeting: format!("{word}, {}", input.name) })
}

export_step!(run);

#[cfg(test)]
mod tests {
    use super::*;
    use clearflow_plugin_sdk::testing::call;

    #[test]
    fn greets() {
        let out = call(run, r#"{"word": "你好"}"#, r#"{"name": "clearflow"}"#).unwrap();
        assert_eq!(out["greeting"], "你好, clearflow");
    }

    #[test]
    fn empty_name_is_invalid_input() {
        assert!(matches!(call(run, "", r#"{"name": ""}"#), Err(StepError::InvalidInput(_))));
    }
}
"##;

const README: &str = r#"# {name}

A clearflow plugin.

    cargo test                                             # logic, natively
    cargo build --release --target wasm32-wasip2           # the component
    clearflow plugin test target/wasm32-wasip2/release/{module}.wasm --input in.json
    sha256sum target/wasm32-wasip2/release/{module}.wasm   # for the plugin declaration

See the plugin author guide (`plugins/README.md` in the clearflow repository)
for declaring the plugin and using it in a workflow.
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_crate() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("greet");
        scaffold("greet-people", &target, Some(Path::new("/src/sdk"))).unwrap();
        let cargo = std::fs::read_to_string(target.join("Cargo.toml")).unwrap();
        assert!(cargo.contains("name = \"greet-people\""));
        assert!(cargo.contains("clearflow-plugin-sdk = { path = \"/src/sdk\" }"));
        assert!(
            std::fs::read_to_string(target.join("src/lib.rs"))
                .unwrap()
                .contains("export_step!(run);")
        );
        assert!(
            std::fs::read_to_string(target.join("README.md"))
                .unwrap()
                .contains("greet_people.wasm")
        );
    }

    #[test]
    fn refuses_bad_names_and_non_empty_dirs() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "Greet", "1greet", "greet-", "greet_x", "../x"] {
            assert_eq!(
                scaffold(bad, &dir.path().join("x"), None)
                    .unwrap_err()
                    .kind(),
                io::ErrorKind::InvalidInput,
                "{bad}"
            );
        }
        std::fs::write(dir.path().join("file"), "x").unwrap();
        assert_eq!(
            scaffold("ok", dir.path(), None).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
    }
}
