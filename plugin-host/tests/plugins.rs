//! Integration tests of the plugin host against the real plugins built by `plugins/build.sh`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use clearflow_plugin_host::{
    CallError, ErrorClass, Host, Invocation, Limits, LoadErrorKind, LogSource, PluginDecl, Plugins,
};
use serde_json::{Value, json};

/// Builds the plugins once per test binary and returns `plugins/dist` with its sha256 sums.
fn dist() -> &'static (PathBuf, HashMap<String, String>) {
    static DIST: OnceLock<(PathBuf, HashMap<String, String>)> = OnceLock::new();
    DIST.get_or_init(|| {
        let plugins = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
        let status = std::process::Command::new("bash")
            .arg(plugins.join("build.sh"))
            .env("CARGO_BUILD_QUIET", "1")
            // The host's cargo environment must not leak into the plugin build.
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .status()
            .expect("cannot run plugins/build.sh: is bash installed?");
        assert!(
            status.success(),
            "plugins/build.sh failed; run it by hand to see why"
        );
        let dist = plugins.join("dist");
        let sums = std::fs::read_to_string(dist.join("SHA256SUMS"))
            .expect("plugins/dist/SHA256SUMS missing after build.sh");
        let sums = sums
            .lines()
            .filter_map(|l| l.split_once("  "))
            .map(|(sha, file)| (file.trim_end_matches(".wasm").to_owned(), sha.to_owned()))
            .collect();
        (dist, sums)
    })
}

fn decl(name: &str) -> PluginDecl {
    decl_with(name, Limits::default(), Value::Null)
}

fn decl_with(name: &str, limits: Limits, config: Value) -> PluginDecl {
    let (dir, sums) = dist();
    PluginDecl {
        name: name.to_owned(),
        path: dir.join(format!("{name}.wasm")),
        sha256: sums
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not in SHA256SUMS"))
            .clone(),
        limits,
        config,
    }
}

/// A compiled-code cache shared by the tests that do not test the cache, so
/// each component compiles once per run rather than once per test.
fn cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("clearflow-plugin-cache")
}

fn load(host: &Host, decls: &[PluginDecl]) -> Plugins {
    host.load(decls).unwrap_or_else(|errors| {
        panic!(
            "load failed: {}",
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        )
    })
}

fn inv(attempt: u32) -> Invocation {
    Invocation {
        workflow: "wf2-clarification".into(),
        instance: "inst-1".into(),
        step: "file".into(),
        attempt,
    }
}

fn call_err(plugins: &Plugins, name: &str, input: Value) -> CallError {
    match plugins.call(name, &inv(1), &input) {
        Ok(out) => panic!("{name} succeeded with {}", out.output),
        Err(e) => e,
    }
}

fn assert_echo_works(plugins: &Plugins) {
    let out = plugins
        .call("echo", &inv(2), &json!({"still": "fine"}))
        .unwrap();
    assert_eq!(
        out.output,
        json!({"input": {"still": "fine"}, "config": null, "attempt": 2})
    );
}

#[test]
fn echo_returns_input_config_and_logs() {
    let host = Host::new(&cache()).unwrap();
    let config = json!({"log": "via log import", "stdout": "via stdout", "stderr": "via stderr"});
    let plugins = load(
        &host,
        &[decl_with("echo", Limits::default(), config.clone())],
    );
    let out = plugins
        .call("echo", &inv(1), &json!({"案件": [1, 2]}))
        .unwrap();
    assert_eq!(
        out.output,
        json!({"input": {"案件": [1, 2]}, "config": config, "attempt": 1})
    );
    let logs: Vec<(LogSource, &str)> = out
        .logs
        .iter()
        .map(|l| (l.source, l.message.as_str()))
        .collect();
    assert_eq!(
        logs,
        [
            (LogSource::Log, "via log import"),
            (LogSource::Stdout, "via stdout"),
            (LogSource::Stderr, "via stderr")
        ]
    );
    assert!(out.memory_peak > 0 && out.memory_peak <= Limits::default().memory_bytes);
    assert_eq!(out.fuel_used, None);
}

#[test]
fn misbehaving_plugins_get_their_class_and_echo_still_runs() {
    let host = Host::new(&cache()).unwrap();
    let quick = Limits {
        timeout: Duration::from_millis(300),
        memory_bytes: 32 << 20,
        ..Limits::default()
    };
    let names = [
        "spin",
        "hog",
        "recurse",
        "panic",
        "trap",
        "huge-output",
        "not-json",
        "flaky",
    ];
    let mut decls: Vec<PluginDecl> = names
        .iter()
        .map(|n| decl_with(n, quick.clone(), Value::Null))
        .collect();
    decls.push(decl("echo"));
    let plugins = load(&host, &decls);

    let cases: [(&str, ErrorClass, &str); 7] = [
        ("spin", ErrorClass::Timeout, "deadline of 300ms exceeded"),
        (
            "hog",
            ErrorClass::MemoryLimit,
            "memory limit of 33554432 bytes exceeded",
        ),
        ("recurse", ErrorClass::StackOverflow, "stack exhausted"),
        ("panic", ErrorClass::Trap, "plugin gave up in step file"),
        ("trap", ErrorClass::Trap, "unreachable"),
        (
            "huge-output",
            ErrorClass::OutputTooLarge,
            "exceeds the limit of 1048576 bytes",
        ),
        ("not-json", ErrorClass::InvalidOutput, "output is not json"),
    ];
    for (name, class, message) in cases {
        let err = call_err(&plugins, name, json!({}));
        assert_eq!(err.class, class, "{name}: {}", err.message);
        assert!(err.message.contains(message), "{name}: {}", err.message);
        assert_echo_works(&plugins);
    }
    let err = call_err(&plugins, "flaky", json!({}));
    assert_eq!(
        (err.class, err.message.as_str()),
        (ErrorClass::Transient, "attempt 1 of 3 needed")
    );
    assert!(err.class.retryable());
    assert_eq!(
        plugins.call("flaky", &inv(3), &json!(7)).unwrap().output,
        json!({"attempt": 3, "input": 7})
    );
}

#[test]
fn timeout_is_prompt() {
    let host = Host::new(&cache()).unwrap();
    let limits = Limits {
        timeout: Duration::from_millis(100),
        ..Limits::default()
    };
    let plugins = load(&host, &[decl_with("spin", limits, Value::Null)]);
    let err = call_err(&plugins, "spin", json!(null));
    assert_eq!(err.class, ErrorClass::Timeout);
    assert!(
        err.wall >= Duration::from_millis(100) && err.wall < Duration::from_secs(2),
        "{:?}",
        err.wall
    );
}

#[test]
fn fuel_stops_a_loop_and_is_reported() {
    let host = Host::new(&cache()).unwrap();
    let limits = Limits {
        fuel: Some(5_000_000),
        ..Limits::default()
    };
    let plugins = load(
        &host,
        &[
            decl_with("spin", limits.clone(), Value::Null),
            decl_with("echo", limits, Value::Null),
        ],
    );
    assert_eq!(
        call_err(&plugins, "spin", json!(null)).class,
        ErrorClass::FuelExhausted
    );
    let used = plugins
        .call("echo", &inv(1), &json!(1))
        .unwrap()
        .fuel_used
        .unwrap();
    assert!(used > 0 && used < 5_000_000, "{used}");
}

fn forbidden_imports(host: &Host, name: &str) -> Vec<String> {
    let errors = host.load(&[decl(name), decl("echo")]).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]
            .to_string()
            .starts_with(&format!("plugin {name} (")),
        "{}",
        errors[0]
    );
    match &errors[0].kind {
        LoadErrorKind::ForbiddenImports { imports } => imports.clone(),
        other => panic!("{name}: {other}"),
    }
}

#[test]
fn filesystem_is_refused_at_load() {
    let host = Host::new(&cache()).unwrap();
    let imports = forbidden_imports(&host, "wants-fs");
    assert!(
        imports.contains(&"wasi:filesystem/preopens@0.2.6".to_owned()),
        "{imports:?}"
    );
    assert!(
        imports
            .iter()
            .all(|i| i.starts_with("wasi:filesystem/") || i.starts_with("wasi:clocks/")),
        "{imports:?}"
    );
}

#[test]
fn network_is_refused_at_load() {
    let host = Host::new(&cache()).unwrap();
    let imports = forbidden_imports(&host, "wants-net");
    assert!(
        imports.contains(&"wasi:sockets/tcp@0.2.6".to_owned()),
        "{imports:?}"
    );
    assert!(
        imports.contains(&"wasi:sockets/ip-name-lookup@0.2.6".to_owned()),
        "{imports:?}"
    );
}

#[test]
fn trivial_plugins_import_only_the_granted_baseline() {
    let engine = wasmtime::Engine::default();
    for name in [
        "echo",
        "not-json",
        "grade-report",
        "assess-fault-tolerance",
        "render-document",
        "file-to-records",
        "impact-period",
    ] {
        let path = dist().0.join(format!("{name}.wasm"));
        let component = wasmtime::component::Component::from_file(&engine, &path).unwrap();
        let imports = clearflow_plugin_host::policy::imports(&engine, &component);
        assert!(
            imports
                .iter()
                .all(|i| clearflow_plugin_host::policy::is_granted(i)),
            "{name}: {imports:?}"
        );
        assert!(
            imports.contains(&"wasi:cli/stdout@0.2.6".to_owned()),
            "{name}: {imports:?}"
        );
    }
}

#[test]
fn sha_mismatch_is_refused_naming_both_hashes() {
    let host = Host::new(&cache()).unwrap();
    let mut bad = decl("echo");
    let expected = "0".repeat(64);
    bad.sha256 = expected.clone();
    let errors = host.load(&[bad]).unwrap_err();
    let actual = dist().1["echo"].clone();
    assert!(
        matches!(&errors[0].kind, LoadErrorKind::Sha256Mismatch { expected: e, actual: a } if *e == expected && *a == actual)
    );
    let text = errors[0].to_string();
    assert!(
        text.contains("echo.wasm") && text.contains(&expected) && text.contains(&actual),
        "{text}"
    );
}

#[test]
fn every_load_problem_is_reported_at_once() {
    let host = Host::new(&cache()).unwrap();
    let mut bad_sha = decl("flaky");
    bad_sha.sha256 = "ab".repeat(32);
    let mut missing = decl("echo");
    missing.name = "ghost".into();
    missing.path = PathBuf::from("/nonexistent/clearflow/ghost.wasm");
    let huge = Limits {
        memory_bytes: Limits::MAX_MEMORY_BYTES + 1,
        ..Limits::default()
    };
    let decls = [
        decl("echo"),
        bad_sha,
        missing,
        decl("wants-net"),
        decl("echo"),
        decl_with("trap", huge, Value::Null),
    ];
    let errors = host.load(&decls).unwrap_err();
    let kinds: Vec<(&str, &LoadErrorKind)> = errors
        .iter()
        .map(|e| (e.plugin.as_str(), &e.kind))
        .collect();
    assert_eq!(kinds.len(), 5, "{errors:?}");
    assert!(matches!(
        kinds[0],
        ("flaky", LoadErrorKind::Sha256Mismatch { .. })
    ));
    assert!(matches!(kinds[1], ("ghost", LoadErrorKind::Read(_))));
    assert!(matches!(
        kinds[2],
        ("wants-net", LoadErrorKind::ForbiddenImports { .. })
    ));
    assert!(matches!(kinds[3], ("echo", LoadErrorKind::Duplicate)));
    assert!(matches!(
        kinds[4],
        ("trap", LoadErrorKind::InvalidLimits(_))
    ));
}

#[test]
fn compiled_code_cache_is_written_and_used() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::new(dir.path()).unwrap();
    let echo = decl("echo");
    let flaky = decl("flaky");
    load(&host, std::slice::from_ref(&echo));
    let echo_cached = host.cache_path(&echo.sha256, &echo.limits).unwrap();
    assert!(echo_cached.is_file(), "{} missing", echo_cached.display());
    assert!(
        echo_cached
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(&format!("{}-wasmtime48-", echo.sha256))
    );

    // Proof that a second load takes code from the cache and does not
    // recompile: planting echo's compiled code under flaky's key makes
    // "flaky" behave as echo.
    let flaky_cached = host.cache_path(&flaky.sha256, &flaky.limits).unwrap();
    std::fs::copy(&echo_cached, &flaky_cached).unwrap();
    let fresh = Host::new(dir.path()).unwrap();
    let plugins = load(&fresh, std::slice::from_ref(&flaky));
    let out = plugins.call("flaky", &inv(1), &json!("x")).unwrap();
    assert_eq!(
        out.output,
        json!({"input": "x", "config": null, "attempt": 1})
    );

    // A corrupt cache file is replaced, not trusted; overwriting it in
    // place while `plugins` still runs code loaded from it must not crash.
    std::fs::write(&flaky_cached, b"not compiled code").unwrap();
    assert!(plugins.call("flaky", &inv(1), &json!(1)).is_ok());
    let plugins = load(&fresh, &[flaky]);
    assert_eq!(
        call_err(&plugins, "flaky", json!(null)).class,
        ErrorClass::Transient
    );
    assert!(std::fs::metadata(&flaky_cached).unwrap().len() > 1000);
}

#[test]
fn input_and_output_limits() {
    let host = Host::new(&cache()).unwrap();
    let small = Limits {
        max_input_bytes: 100,
        max_output_bytes: 100,
        ..Limits::default()
    };
    let plugins = load(&host, &[decl_with("echo", small, Value::Null)]);
    let err = call_err(&plugins, "echo", json!({"text": "x".repeat(200)}));
    assert_eq!(
        (err.class, err.message.as_str()),
        (
            ErrorClass::InputTooLarge,
            "input of 211 bytes exceeds the limit of 100 bytes"
        )
    );
    // 91 bytes of input fit, but echo's output wraps them and passes 100.
    let err = call_err(&plugins, "echo", json!({"text": "y".repeat(80)}));
    assert_eq!(err.class, ErrorClass::OutputTooLarge, "{}", err.message);
    assert_eq!(
        err.message,
        "output of 127 bytes exceeds the limit of 100 bytes"
    );
    assert!(
        plugins
            .call("echo", &inv(1), &json!({"text": "short"}))
            .is_ok()
    );
}

#[test]
fn log_output_is_capped() {
    let host = Host::new(&cache()).unwrap();
    let limits = Limits {
        max_log_bytes: 10,
        ..Limits::default()
    };
    let plugins = load(
        &host,
        &[decl_with(
            "echo",
            limits,
            json!({"stdout": "0123456789abcdef"}),
        )],
    );
    let out = plugins.call("echo", &inv(1), &json!(null)).unwrap();
    assert_eq!(out.logs[0].message, "0123456789");
    assert_eq!(out.logs[1].source, LogSource::Host);
    assert_eq!(out.logs[1].message, "log output truncated: 7 bytes dropped");
}

#[test]
fn unknown_plugin_and_reload_semantics() {
    let host = Host::new(&cache()).unwrap();
    let old = load(&host, &[decl("echo")]);
    assert_eq!(
        call_err(&old, "nope", json!(null)).class,
        ErrorClass::UnknownPlugin
    );
    let in_flight = old.clone();
    let new = load(&host, &[decl("flaky")]);
    drop(old);
    assert_echo_works(&in_flight);
    assert!(new.contains("flaky") && !new.contains("echo"));
    assert_eq!(new.names().collect::<Vec<_>>(), ["flaky"]);
}

#[test]
fn memory_is_clean_after_a_runaway() {
    let host = Host::new(&cache()).unwrap();
    let limits = Limits {
        memory_bytes: 16 << 20,
        ..Limits::default()
    };
    let plugins = load(
        &host,
        &[
            decl_with("hog", limits.clone(), Value::Null),
            decl_with("echo", limits, Value::Null),
        ],
    );
    assert_eq!(
        call_err(&plugins, "hog", json!({})).class,
        ErrorClass::MemoryLimit
    );
    let ok = plugins
        .call("hog", &inv(1), &json!({"max_mib": 4}))
        .unwrap();
    assert_eq!(ok.output["mib"], 4);
    assert!(
        ok.memory_peak >= 4 << 20 && ok.memory_peak <= 16 << 20,
        "{}",
        ok.memory_peak
    );
    let echo = plugins.call("echo", &inv(1), &json!(1)).unwrap();
    assert!(echo.memory_peak < 4 << 20, "{}", echo.memory_peak);
}

mod builtins {
    use super::*;

    fn plugins() -> Plugins {
        let host = Host::new(&cache()).unwrap();
        let names = [
            "grade-report",
            "assess-fault-tolerance",
            "render-document",
            "file-to-records",
            "impact-period",
        ];
        load(&host, &names.map(decl))
    }

    #[test]
    fn grade_report() {
        let p = plugins();
        let input = json!({
            "content": "实名举报某局副局长利用职务便利收受贿赂，并挪用扶贫资金。",
            "reporter": {"real_name": true},
            "history": {"prior_reports": 0, "prior_substantiated": 0},
            "evidence_count": 2
        });
        let out = p.call("grade-report", &inv(1), &input).unwrap().output;
        assert_eq!(
            (
                out["grade"].as_str(),
                out["score"].as_u64(),
                out["repeat"].as_bool()
            ),
            (Some("key"), Some(8), Some(false))
        );
        let input = json!({"content": "办事拖拉", "reporter": {"real_name": true}, "history": {"prior_reports": 2}});
        let out = p.call("grade-report", &inv(1), &input).unwrap().output;
        assert_eq!(
            (out["grade"].as_str(), out["repeat"].as_bool()),
            (Some("pending"), Some(true))
        );
        let err = call_err(&p, "grade-report", json!({"content": 3}));
        assert_eq!(err.class, ErrorClass::InvalidInput);
        assert!(err.message.contains("invalid type"), "{}", err.message);
    }

    #[test]
    fn assess_fault_tolerance() {
        let p = plugins();
        let factor = |rating: &str| json!({"rating": rating, "evidence": "会议纪要及情况说明"});
        let mut input = json!({"factors": {
            "motive": factor("favourable"), "objective_conditions": factor("favourable"),
            "procedure": factor("favourable"), "nature": factor("neutral"),
            "consequences": factor("neutral"), "remedial_action": factor("favourable")
        }});
        let out = p
            .call("assess-fault-tolerance", &inv(1), &input)
            .unwrap()
            .output;
        assert_eq!(
            (out["recommendation"].as_str(), out["score"].as_u64()),
            (Some("exempted"), Some(10))
        );
        input["exclusions"] = json!({"known_prohibition": true});
        let out = p
            .call("assess-fault-tolerance", &inv(1), &input)
            .unwrap()
            .output;
        assert_eq!(out["recommendation"], "not_tolerated");
        assert_eq!(out["exclusions_hit"], json!(["known_prohibition"]));
        input["factors"]["nature"]["evidence"] = json!("");
        let err = call_err(&p, "assess-fault-tolerance", input);
        assert_eq!(
            (err.class, err.message.as_str()),
            (
                ErrorClass::InvalidInput,
                "factor nature (性质) has no evidence"
            )
        );
    }

    #[test]
    fn render_document() {
        let p = plugins();
        let input = json!({
            "number": "某纪澄〔2024〕3号", "issuer": "某市纪委监委", "date": "2024-10-08",
            "official": {"name": "张三", "position": "某局局长"},
            "document": {"kind": "clarification", "allegation": "违规收受礼金", "findings": "反映问题不属实"}
        });
        let out = p.call("render-document", &inv(1), &input).unwrap().output;
        assert_eq!(out["title"], "澄清正名通知书");
        assert!(out["text"].as_str().unwrap().contains("2024年10月8日"));
        let mut with_identity = input.clone();
        with_identity["whistleblower"] = json!("李四");
        assert_eq!(
            call_err(&p, "render-document", with_identity).class,
            ErrorClass::InvalidInput
        );
        let mut xss = input;
        xss["official"]["name"] = json!("<script>");
        let html = p.call("render-document", &inv(1), &xss).unwrap().output["html"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"));
    }

    #[test]
    fn file_to_records() {
        let p = plugins();
        let input = json!({
            "official_id": "E-1024", "document_ref": "某纪澄〔2024〕3号", "filed_on": "2024-10-08",
            "source": {"kind": "clarification", "allegation": "违规收受礼金"}
        });
        let out = p.call("file-to-records", &inv(1), &input).unwrap().output;
        let records: Vec<&str> = out["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["record"].as_str().unwrap())
            .collect();
        assert_eq!(records, ["integrity", "personnel"]);
        assert_eq!(out["entries"][1]["official_id"], "E-1024");
    }

    #[test]
    fn impact_period() {
        let p = plugins();
        let input = json!({"sanction": "party_warning", "effective_on": "2024-03-01"});
        let out = p.call("impact-period", &inv(1), &input).unwrap().output;
        assert_eq!(
            (out["impact_end"].as_str(), out["remind_on"].as_str()),
            (Some("2025-02-28"), Some("2025-01-29"))
        );
        assert_eq!(
            out["visits"][0],
            json!({"number": 1, "on": "2024-06-01", "remind_on": "2024-05-27"})
        );
        let err = call_err(
            &p,
            "impact-period",
            json!({"sanction": "reprimand", "effective_on": "2024-03-01"}),
        );
        assert_eq!(err.class, ErrorClass::InvalidInput);
        assert!(
            err.message.contains("unknown sanction reprimand"),
            "{}",
            err.message
        );
    }
}
