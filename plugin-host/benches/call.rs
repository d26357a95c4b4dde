//! Benchmark: call overhead of a small plugin and the time to load cached plugins; prints figures, asserts nothing.
//!
//! Run with `cargo bench -p clearflow-plugin-host --bench call`. Needs
//! `plugins/dist` (run `plugins/build.sh`). Targets from the design: p50 of
//! instantiate + call + drop of `echo` ≤ 40 µs; loading 10 cached plugins ≤ 200 ms.

use std::path::Path;
use std::time::{Duration, Instant};

use clearflow_plugin_host::{Host, Invocation, Limits, PluginDecl};

const PLUGINS: [&str; 10] = [
    "echo",
    "flaky",
    "spin",
    "hog",
    "recurse",
    "panic",
    "trap",
    "huge-output",
    "not-json",
    "grade-report",
];

fn main() {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist");
    let sums = std::fs::read_to_string(dist.join("SHA256SUMS")).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run plugins/build.sh first",
            dist.join("SHA256SUMS").display()
        )
    });
    let decl = |name: &str| {
        let sha = sums
            .lines()
            .find_map(|l| l.strip_suffix(&format!("  {name}.wasm")))
            .unwrap_or_else(|| panic!("{name} not in SHA256SUMS"));
        PluginDecl {
            name: name.to_owned(),
            path: dist.join(format!("{name}.wasm")),
            sha256: sha.to_owned(),
            limits: Limits::default(),
            config: serde_json::Value::Null,
        }
    };
    let decls: Vec<PluginDecl> = PLUGINS.iter().map(|n| decl(n)).collect();
    let cache = std::env::temp_dir().join(format!("clearflow-plugin-bench-{}", std::process::id()));

    let host = Host::new(&cache).expect("host");
    let start = Instant::now();
    let plugins = host.load(&decls).expect("load");
    println!(
        "load 10 plugins, cold cache (compile): {:>10.1?}",
        start.elapsed()
    );

    let mut loads = Vec::new();
    for _ in 0..10 {
        let fresh = Host::new(&cache).expect("host");
        let start = Instant::now();
        let loaded = fresh.load(&decls).expect("load");
        loads.push(start.elapsed());
        drop(loaded);
    }
    loads.sort();
    println!(
        "load 10 plugins, warm cache:           {:>10.1?} median, {:.1?} max",
        loads[loads.len() / 2],
        loads[loads.len() - 1]
    );

    let inv = Invocation {
        workflow: "bench".into(),
        instance: "i".into(),
        step: "s".into(),
        attempt: 1,
    };
    let input = serde_json::json!({"case": "2024-001", "grade": "key", "n": 42});
    for _ in 0..2_000 {
        plugins.call("echo", &inv, &input).expect("echo");
    }
    let n = 20_000;
    let mut samples: Vec<Duration> = Vec::with_capacity(n);
    let total = Instant::now();
    for _ in 0..n {
        let start = Instant::now();
        plugins.call("echo", &inv, &input).expect("echo");
        samples.push(start.elapsed());
    }
    let total = total.elapsed();
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "echo call (store + instantiate + call + drop), {n} calls: p50 {:.1?}, p90 {:.1?}, p99 {:.1?}, max {:.1?}, {:.0} calls/s on one thread",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        samples[n - 1],
        n as f64 / total.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&cache);
}
