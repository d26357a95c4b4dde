//! Engine benchmark: durable transitions per second on SQLite and PostgreSQL, and the
//! memory of 100,000 instances parked on timers. Prints figures; asserts nothing.
//!
//! ```text
//! cargo bench -p clearflow --bench engine -- [sqlite|postgres|all] [--runs N] [--instances N]
//!                                            [--parked N] [--batch N]
//! ```
//!
//! Scenarios, each run in a fresh child process (so peak RSS is per scenario) against a
//! fresh database (a file in a temporary folder, or a new PostgreSQL database):
//!
//! - **flow**: a 10-step workflow of control-flow steps (set, an `if` that skips, a
//!   switch, a parallel with two branches, a one-minute timer, end). N instances (10,000)
//!   are started through `Store::start` in batches, then `Worker::round` is driven until
//!   every one has completed, moving the manual clock past the timer when nothing else is
//!   due. A *transition* is one step executed and committed: one `step_completed` or
//!   `step_skipped` history row.
//! - **park**: N instances (100,000) of a workflow whose first step waits 30 days; the
//!   figure is the time to start and park them and this process's RSS afterwards.
//!
//! PostgreSQL needs `CLEARFLOW_BENCH_POSTGRES_URL` or `CLEARFLOW_TEST_POSTGRES_URL`
//! (a database the user may `CREATE DATABASE` from); without one it is skipped.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use clearflow_runtime::clock::{Clock, ms};
use clearflow_runtime::config::{EngineConfig, MailConfig};
use clearflow_runtime::registry::{Registry, Sources};
use clearflow_runtime::worker::Worker;
use clearflow_store::{Durability, StoreConfig};
use clearflow_store::{NewInstance, Store};
use serde_json::json;
use sqlx::Row;

/// The 10-step control-flow workflow of the flow scenario.
const FLOW: &str = r#"
id: bench-flow
steps:
  - id: init
    set: { n: 1 }
  - id: maybe
    if: input.flag
    set: { hit: true }
  - id: route
    switch:
      - when: input.n > 100
        goto: finish
  - id: fork
    parallel:
      join: all
      branches:
        - name: left
          steps:
            - id: left_set
              set: { l: 1 }
        - name: right
          steps:
            - id: right_set
              set: { r: 2 }
  - id: pause
    wait: { for: 1m }
  - id: after
    set: { m: 3 }
  - id: maybe_again
    if: input.flag
    set: { hit2: true }
  - id: tally
    set: { t: 4 }
  - id: check
    set: { c: 5 }
  - id: finish
    end: done
"#;

/// The workflow of the plugins scenario: ten calls of the `echo` plugin, each reading
/// the previous one's result, then the end.
fn plugins_workflow() -> String {
    let mut s = String::from(
        "id: bench-plugins\nsteps:\n  - id: p0\n    plugin: echo\n    with: { n: \"${ input.n }\" }\n",
    );
    for i in 1..10 {
        s += &format!(
            "  - id: p{i}\n    plugin: echo\n    with: {{ n: \"${{ p{}.input.n }}\" }}\n",
            i - 1
        );
    }
    s += "  - end: done\n";
    s
}

/// The workflow of the park scenario: one long wait.
const PARK: &str = r#"
id: bench-park
steps:
  - id: sleep
    wait: { for: 30d }
  - id: finish
    end: done
"#;

/// Instances per `Store::start` call.
const START_BATCH: usize = 250;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        child(&args[1..]);
        return;
    }
    let mut target = "all".to_owned();
    let mut runs = 3usize;
    let mut instances = 10_000usize;
    let mut parked = 100_000usize;
    let mut batch = EngineConfig::default().batch_size as usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match a.as_str() {
            "--runs" => runs = num("--runs").max(1),
            "--instances" => instances = num("--instances"),
            "--parked" => parked = num("--parked"),
            "--batch" => batch = num("--batch"),
            "sqlite" | "postgres" | "all" | "plugins" => target = a.clone(),
            // cargo bench passes `--bench`; libtest filters are not ours.
            _ => {}
        }
    }
    let pg = std::env::var("CLEARFLOW_BENCH_POSTGRES_URL")
        .or_else(|_| std::env::var("CLEARFLOW_TEST_POSTGRES_URL"))
        .ok()
        .filter(|u| !u.is_empty());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "clearflow engine benchmark: {cores} cores, {runs} run(s) per figure (median shown), \
         engine batch {batch}"
    );

    let mut plan: Vec<(&str, &str, &str, usize)> = Vec::new();
    if matches!(target.as_str(), "sqlite" | "all") {
        plan.push(("flow", "sqlite", "normal", instances));
        plan.push(("flow", "sqlite", "full", instances));
        plan.push(("park", "sqlite", "normal", parked));
        plan.push(("plugins", "sqlite", "normal", instances / 5));
    }
    if target == "plugins" {
        plan.push(("plugins", "sqlite", "normal", instances / 5));
    }
    if matches!(target.as_str(), "postgres" | "all") {
        if pg.is_some() {
            plan.push(("flow", "postgres", "-", instances));
            plan.push(("park", "postgres", "-", parked));
        } else {
            println!(
                "postgres: skipped (set CLEARFLOW_BENCH_POSTGRES_URL or CLEARFLOW_TEST_POSTGRES_URL)"
            );
        }
    }
    for (scenario, backend, durability, n) in plan {
        let label = match (backend, durability) {
            ("sqlite", d) => format!("{scenario} sqlite durability={d}"),
            (b, _) => format!("{scenario} {b}"),
        };
        println!("\n== {label}, {n} instances");
        let mut results: Vec<Vec<(String, f64)>> = Vec::new();
        for run in 1..=runs {
            let url = match backend {
                "postgres" => pg_create(pg.as_deref().expect("postgres url"), run),
                _ => String::new(),
            };
            let out = Command::new(std::env::current_exe().expect("own path"))
                .args([
                    "--child",
                    scenario,
                    backend,
                    durability,
                    &n.to_string(),
                    &batch.to_string(),
                    &url,
                ])
                .output()
                .expect("running the child benchmark");
            if backend == "postgres" {
                pg_drop(pg.as_deref().expect("postgres url"), &url);
            }
            let stdout = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() {
                println!(
                    "run {run}: FAILED ({})\n{stdout}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                );
                continue;
            }
            let figures = parse_figures(&stdout);
            println!("run {run}: {}", one_line(&figures));
            results.push(figures);
        }
        if results.is_empty() {
            continue;
        }
        println!("median of {}:", results.len());
        for (i, (key, _)) in results[0].iter().enumerate() {
            let mut values: Vec<f64> = results
                .iter()
                .filter_map(|r| r.get(i).map(|x| x.1))
                .collect();
            values.sort_by(f64::total_cmp);
            let median = values[values.len() / 2];
            println!("  {:<34} {}", describe(key), fmt_num(median));
        }
    }
}

/// What a figure's key means, for the summary.
fn describe(key: &str) -> String {
    match key {
        "starts_per_s" => "starts (instances/s)".into(),
        "transitions_per_s" => "transitions/s (drive phase)".into(),
        "commits_per_s" => "commits/s (drive phase)".into(),
        "transitions_per_commit" => "transitions per commit".into(),
        "round_p50_ms" => "per commit (round) p50 ms".into(),
        "round_p99_ms" => "per commit (round) p99 ms".into(),
        "transition_p50_us" => "per transition p50 µs".into(),
        "transition_p99_us" => "per transition p99 µs".into(),
        "instances_per_s" => "instances/s end to end".into(),
        "transitions" => "transitions (history rows)".into(),
        "engine_steps" => "engine step count".into(),
        "rounds" => "rounds (= commits)".into(),
        "park_s" => "time to start and park, s".into(),
        "start_s" => "  of which starting, s".into(),
        "rss_mb" => "RSS now (VmRSS) MB".into(),
        "peak_rss_mb" => "peak RSS (VmHWM) MB".into(),
        "db_mb" => "database size MB".into(),
        other => other.into(),
    }
}

fn fmt_num(x: f64) -> String {
    if x >= 100.0 || x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.2}")
    }
}

fn one_line(figures: &[(String, f64)]) -> String {
    figures
        .iter()
        .map(|(k, v)| format!("{k}={}", fmt_num(*v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `FIGURE key value` lines a child printed, in order.
fn parse_figures(stdout: &str) -> Vec<(String, f64)> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix("FIGURE "))
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect()
}

/// The URL of database `name` on the server of `admin`.
fn with_database(admin: &str, name: &str) -> String {
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut url = format!("{}/{name}", &base[..host_end]);
    if let Some(q) = query {
        url = format!("{url}?{q}");
    }
    url
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Creates a fresh database for one run and returns its URL.
fn pg_create(admin: &str, run: usize) -> String {
    let name = format!("clearflow_bench_{}_{run}", std::process::id());
    runtime().block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(admin)
            .await
            .expect("connecting to postgres");
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
            .execute(&pool)
            .await
            .expect("dropping an old bench database");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&pool)
            .await
            .expect("creating the bench database");
        pool.close().await;
    });
    with_database(admin, &name)
}

/// Drops a run's database.
fn pg_drop(admin: &str, url: &str) {
    let name = url.rsplit('/').next().unwrap_or_default();
    let name = name.split('?').next().unwrap_or_default().to_owned();
    runtime().block_on(async {
        if let Ok(pool) = sqlx::AnyPool::connect(admin).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&pool)
                .await;
            pool.close().await;
        }
    });
}

/// A `/proc/self/status` field in MB.
fn proc_status_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn figure(key: &str, value: f64) {
    println!("FIGURE {key} {value}");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// One measured run, in a fresh process: `--child SCENARIO BACKEND DURABILITY N BATCH URL`.
fn child(args: &[String]) {
    let [scenario, backend, durability, n, batch, url] = args else {
        panic!("child arguments: {args:?}");
    };
    let n: usize = n.parse().expect("instances");
    let batch: u32 = batch.parse().expect("batch");
    let dir = tempfile::tempdir().expect("temporary folder");
    let url = if backend == "sqlite" {
        format!("sqlite://{}", dir.path().join("bench.db").display())
    } else {
        url.clone()
    };
    let durability = if durability == "full" {
        Durability::Full
    } else {
        Durability::Normal
    };
    let rt = runtime();
    rt.block_on(async {
        let bench = Bench::new(dir.path(), &url, durability, batch, scenario).await;
        match scenario.as_str() {
            "flow" | "plugins" => bench.flow(n).await,
            "park" => bench.park(n).await,
            other => panic!("unknown scenario {other}"),
        }
        if backend == "sqlite" {
            let size: u64 = std::fs::read_dir(dir.path())
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("bench.db"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum();
            figure("db_mb", size as f64 / 1_048_576.0);
        }
    });
}

struct Bench {
    worker: Arc<Worker>,
    store: Store,
    clock: Clock,
    /// A second pool for counting history rows outside the timed sections.
    probe: sqlx::AnyPool,
    workflow: &'static str,
}

impl Bench {
    async fn new(
        dir: &Path,
        url: &str,
        durability: Durability,
        batch: u32,
        scenario: &str,
    ) -> Bench {
        let plugins_source = plugins_workflow();
        let (workflow, source) = match scenario {
            "park" => ("bench-park", PARK),
            "plugins" => ("bench-plugins", plugins_source.as_str()),
            _ => ("bench-flow", FLOW),
        };
        let wf_dir = dir.join("workflows");
        std::fs::create_dir_all(&wf_dir).expect("workflows folder");
        std::fs::write(wf_dir.join(format!("{workflow}.yaml")), source).expect("workflow file");
        let store = Store::open(&StoreConfig {
            url: url.to_owned(),
            durability,
            ..StoreConfig::default()
        })
        .await
        .expect("opening the store");
        let start: DateTime<Utc> = DateTime::from_timestamp(1_767_225_600, 0).expect("start time");
        let clock = Clock::manual(start);
        // The plugins scenario calls the real compiled `echo` component.
        let plugins: Arc<dyn clearflow_runtime::worker::PluginRunner> = if scenario == "plugins" {
            let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist");
            let sums = std::fs::read_to_string(dist.join("SHA256SUMS"))
                .expect("plugins/dist: run plugins/build.sh");
            let sha256 = sums
                .lines()
                .find_map(|l| l.strip_suffix("  echo.wasm"))
                .expect("echo.wasm in SHA256SUMS")
                .to_owned();
            let host =
                clearflow_plugin_host::Host::new(&dir.join("plugin-cache")).expect("plugin host");
            let decl = clearflow_runtime::config::PluginConfig {
                name: "echo".into(),
                path: dist.join("echo.wasm"),
                sha256,
                timeout_ms: None,
                memory_mib: None,
                fuel: None,
                max_input_bytes: None,
                max_output_bytes: None,
                config: None,
            };
            clearflow_runtime::plugins::load(&host, &[decl], dir, &Default::default())
                .expect("loading echo")
        } else {
            Arc::new(clearflow_runtime::worker::NoPlugins)
        };
        let plugin_names = plugins.names();
        let registry = Arc::new(Registry::new());
        let problems = registry
            .reload(
                &Sources {
                    workflows: wf_dir.clone(),
                    calendars: wf_dir.join("calendars"),
                    templates: wf_dir.join("templates"),
                    users: None,
                    limits: Default::default(),
                },
                &plugin_names,
                &store,
                ms(start),
            )
            .await;
        assert!(problems.is_empty(), "workflow problems: {problems:?}");
        let cfg = EngineConfig {
            batch_size: batch,
            node_id: Some("bench".into()),
            ..EngineConfig::default()
        };
        let worker = Worker::new(
            store.clone(),
            registry,
            clock.clone(),
            cfg,
            MailConfig::default(),
        );
        worker.set_plugins(plugins);
        let probe = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .expect("probe connection");
        Bench {
            worker: Arc::new(worker),
            store,
            clock,
            probe,
            workflow,
        }
    }

    /// Starts `n` instances in batches of [`START_BATCH`]; returns the seconds taken.
    async fn start(&self, n: usize) -> f64 {
        let now = self.clock.now();
        let mut trees: Vec<Vec<NewInstance>> = Vec::with_capacity(START_BATCH);
        let t = Instant::now();
        let mut left = n;
        while left > 0 {
            trees.clear();
            for i in 0..left.min(START_BATCH) {
                let input = json!({ "flag": false, "n": i % 50 });
                trees.push(
                    self.worker
                        .tree(self.workflow, input, None, "bench", None, now)
                        .expect("building an instance"),
                );
            }
            left -= trees.len();
            self.store
                .start(&trees, ms(now))
                .await
                .expect("starting instances");
        }
        t.elapsed().as_secs_f64()
    }

    /// Transition history rows after `after` and the highest history id.
    async fn transitions_since(&self, after: i64) -> (i64, i64) {
        let r = sqlx::query(
            "SELECT COUNT(CASE WHEN kind IN ('step_completed', 'step_skipped') THEN 1 END) AS n, \
             MAX(id) AS m FROM history WHERE id > $1",
        )
        .bind(after)
        .fetch_one(&self.probe)
        .await
        .expect("counting history");
        let n: i64 = r.try_get("n").expect("count");
        let m: Option<i64> = r.try_get("m").expect("max id");
        (n, m.unwrap_or(after))
    }

    async fn status_count(&self, status: &str) -> i64 {
        self.store
            .counts()
            .await
            .expect("counts")
            .iter()
            .filter(|(w, s, _)| w == self.workflow && s == status)
            .map(|(_, _, n)| *n)
            .sum()
    }

    async fn flow(&self, n: usize) {
        let start_s = self.start(n).await;
        let (_, mut last_id) = self.transitions_since(0).await;
        let mut rounds: Vec<(Duration, i64)> = Vec::new();
        let mut drive = Duration::ZERO;
        let mut idle = 0;
        loop {
            let t = Instant::now();
            let advanced = self.worker.round().await.expect("engine round");
            let took = t.elapsed();
            if advanced == 0 {
                if self.store.next_wake().await.expect("next wake").is_none() {
                    break;
                }
                idle += 1;
                assert!(idle < 10, "work is due but nothing advances");
                // Everything left waits on its timer: move the clock past it.
                self.clock.set(self.clock.now() + TimeDelta::minutes(2));
                continue;
            }
            idle = 0;
            drive += took;
            let (k, m) = self.transitions_since(last_id).await;
            last_id = m;
            rounds.push((took, k));
        }
        let completed = self.status_count("completed").await;
        assert_eq!(completed as usize, n, "every instance completes");
        let transitions: i64 = rounds.iter().map(|r| r.1).sum();
        let steps = self
            .worker
            .counters()
            .steps
            .load(std::sync::atomic::Ordering::Relaxed);
        let drive_s = drive.as_secs_f64();
        let mut per_round: Vec<f64> = rounds.iter().map(|r| r.0.as_secs_f64() * 1e3).collect();
        per_round.sort_by(f64::total_cmp);
        let mut per_transition: Vec<f64> = rounds
            .iter()
            .filter(|r| r.1 > 0)
            .map(|r| r.0.as_secs_f64() * 1e6 / r.1 as f64)
            .collect();
        per_transition.sort_by(f64::total_cmp);
        figure("starts_per_s", n as f64 / start_s);
        figure("transitions_per_s", transitions as f64 / drive_s);
        figure("commits_per_s", rounds.len() as f64 / drive_s);
        figure(
            "transitions_per_commit",
            transitions as f64 / rounds.len() as f64,
        );
        figure("round_p50_ms", percentile(&per_round, 0.5));
        figure("round_p99_ms", percentile(&per_round, 0.99));
        figure("transition_p50_us", percentile(&per_transition, 0.5));
        figure("transition_p99_us", percentile(&per_transition, 0.99));
        figure("instances_per_s", n as f64 / (start_s + drive_s));
        figure("transitions", transitions as f64);
        figure("engine_steps", steps as f64);
        figure("rounds", rounds.len() as f64);
        figure("peak_rss_mb", proc_status_mb("VmHWM:"));
    }

    async fn park(&self, n: usize) {
        let start_s = self.start(n).await;
        let t = Instant::now();
        while self.worker.round().await.expect("engine round") > 0 {}
        let park_s = start_s + t.elapsed().as_secs_f64();
        let running = self.status_count("running").await;
        assert_eq!(running as usize, n, "every instance is parked, running");
        let r = sqlx::query("SELECT COUNT(*) AS n FROM events WHERE kind = 'timer'")
            .fetch_one(&self.probe)
            .await
            .expect("counting timers");
        let timers: i64 = r.try_get("n").expect("count");
        assert_eq!(timers as usize, n, "one timer row per parked instance");
        figure("park_s", park_s);
        figure("start_s", start_s);
        figure("rss_mb", proc_status_mb("VmRSS:"));
        figure("peak_rss_mb", proc_status_mb("VmHWM:"));
    }
}
