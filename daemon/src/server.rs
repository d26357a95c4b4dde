//! `clearflow serve`: wires the store, workflows, engine and API, and handles signals.

use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::api::{self, AppState};
use crate::clock::{Clock, ms};
use crate::config::{ClockMode, Config, LogFormat};
use crate::registry::{Registry, Sources};
use crate::store::Store;
use crate::worker::Worker;

/// Sets up `tracing` as configured.
pub fn init_logging(cfg: &crate::config::LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match cfg.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The clock the configuration asks for.
pub fn make_clock(cfg: &crate::config::ClockConfig) -> anyhow::Result<Clock> {
    Ok(match cfg.mode {
        ClockMode::System => Clock::System,
        ClockMode::Manual => {
            let start = match &cfg.start {
                Some(s) => chrono::DateTime::parse_from_rfc3339(s)
                    .with_context(|| format!("clock.start `{s}`"))?
                    .with_timezone(&chrono::Utc),
                None => chrono::Utc::now(),
            };
            tracing::warn!(%start, "running on a MANUAL clock: time moves only through POST /v1/admin/clock");
            Clock::manual(start)
        }
    })
}

/// Runs the daemon until SIGTERM or SIGINT. `config_file` is read again on SIGHUP for
/// the plugin declarations.
pub async fn serve(cfg: Config, config_file: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let clock = make_clock(&cfg.clock)?;
    let auth = Arc::new(
        api::caller::Auth::new(cfg.roles.clone())
            .map_err(|errors| anyhow::anyhow!("roles: {}", errors.join("; ")))?,
    );
    let identity_key = api::intake::load_key(&cfg)?;
    let host = Arc::new(
        clearflow_plugin_host::Host::new(&cfg.plugin_host.cache_dir)
            .context("starting the plugin host")?,
    );
    let base = std::env::current_dir()?;
    let plugins = crate::plugins::load(&host, &cfg.plugins, &base).map_err(|errors| {
        for e in &errors {
            tracing::error!("{e}");
        }
        anyhow::anyhow!(
            "{} plugin(s) could not be loaded: {}",
            errors.len(),
            errors.join("; ")
        )
    })?;
    tracing::info!(plugins = cfg.plugins.len(), "plugins loaded");
    let store = Store::open(&cfg.store)
        .await
        .with_context(|| format!("opening the store {}", redact(&cfg.store.url)))?;
    tracing::info!(backend = ?store.backend(), url = %redact(&cfg.store.url), "store ready");
    let registry = Arc::new(Registry::new());
    let worker = Arc::new(Worker::new(
        store.clone(),
        registry.clone(),
        clock.clone(),
        cfg.engine.clone(),
        cfg.mail.clone(),
    ));
    *worker.plugins.write().expect("lock") = plugins;
    reload(&registry, &cfg, &worker).await;
    // Claims left by an earlier run of this daemon (killed before it could release
    // them) are released now instead of waiting for their lease to expire.
    let released = worker
        .store
        .release_stale(&worker.node_id)
        .await
        .context("releasing stale claims")?;
    let released = released + release_dead_local_owners(&worker, &cfg).await?;
    if released > 0 {
        tracing::info!(released, "released claims left by a previous run");
    }
    let mailer = Arc::new(
        crate::mailer::Mailer::new(
            store,
            cfg.mail.clone(),
            clock.clone(),
            worker.node_id.clone(),
            worker.mail_wake.clone(),
        )
        .context("mail transport")?
        .with_identity_key(identity_key.clone()),
    );

    let listener = tokio::net::TcpListener::bind(&cfg.server.listen)
        .await
        .with_context(|| format!("listening on {}", cfg.server.listen))?;
    tracing::info!(address = %listener.local_addr()?, "listening");

    let (stop_tx, stop_rx) = watch::channel(false);
    let engine = tokio::spawn(worker.clone().run(stop_rx.clone()));
    let sender = tokio::spawn(mailer.clone().run(stop_rx.clone()));
    let scheduler = Arc::new(crate::scheduler::Scheduler::new(worker.clone()));
    let cron = tokio::spawn(scheduler.clone().run(stop_rx.clone()));
    let retention = Arc::new(crate::retention::Retention::new(
        worker.clone(),
        cfg.retention.clone(),
    ));
    let sweeper = tokio::spawn(retention.clone().run(stop_rx.clone()));

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let signals = {
        let (registry, cfg, worker) = (registry.clone(), cfg.clone(), worker.clone());
        let scheduler = scheduler.clone();
        let auth = auth.clone();
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => { tracing::info!("SIGTERM: draining"); break; }
                    _ = int.recv() => { tracing::info!("SIGINT: draining"); break; }
                    _ = hup.recv() => {
                        tracing::info!("SIGHUP: reloading workflows, calendars, templates, users and plugins");
                        reload_plugins(&host, config_file.as_deref(), &base, &worker);
                        reload_roles(config_file.as_deref(), &auth);
                        reload(&registry, &cfg, &worker).await;
                        worker.wake.notify_one();
                        scheduler.wake.notify_one();
                    }
                }
            }
            let _ = stop_tx.send(true);
        })
    };

    let app = api::router(AppState {
        worker: worker.clone(),
        mailer: mailer.clone(),
        body_limit: cfg.server.body_limit,
        scheduler,
        retention,
        auth,
        intake: Arc::new(api::intake::Intake::new(&cfg.intake, identity_key)),
    });
    let mut stop_http = stop_rx.clone();
    // The peer address feeds the per-address rate limits of the public endpoints.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop_http.wait_for(|s| *s).await;
    })
    .await?;
    engine.await?;
    sender.await?;
    cron.await?;
    sweeper.await?;
    signals.abort();
    tracing::info!("stopped");
    Ok(())
}

/// Where the configuration says the deployed files are.
pub fn sources(cfg: &Config) -> Sources {
    Sources {
        workflows: cfg.workflows.dir.clone(),
        calendars: cfg.workflows.calendars_dir(),
        templates: cfg.templates_dir(),
        users: cfg.directory.users.clone(),
    }
}

/// Loads the plugins the configuration file now declares; on any problem the running
/// set stays (calls in flight always finish on the code they started with).
fn reload_plugins(
    host: &clearflow_plugin_host::Host,
    file: Option<&std::path::Path>,
    base: &std::path::Path,
    worker: &Worker,
) {
    let decls = match Config::load(file) {
        Ok(c) => c.plugins,
        Err(e) => {
            tracing::error!("{e}; keeping the loaded plugins");
            return;
        }
    };
    match crate::plugins::load(host, &decls, base) {
        Ok(p) => {
            *worker.plugins.write().expect("lock") = p;
            tracing::info!(plugins = decls.len(), "plugins reloaded");
        }
        Err(errors) => {
            for e in errors {
                tracing::error!("{e}");
            }
            tracing::error!("keeping the previously loaded plugins");
        }
    }
}

/// With the default node id (`HOST-PID`), a restarted daemon has a new id; the claims of
/// an earlier process on this host that no longer runs (`/proc/PID` is gone) are its
/// own leftovers and are released at once rather than when their lease expires. A
/// configured `engine.node_id` is stable across restarts and needs none of this.
async fn release_dead_local_owners(worker: &Worker, cfg: &Config) -> anyhow::Result<u64> {
    if cfg.engine.node_id.is_some() || !std::path::Path::new("/proc/self").exists() {
        return Ok(0);
    }
    let prefix = format!("{}-", crate::worker::host_name());
    let mut released = 0;
    for owner in worker.store.lease_owners(&prefix).await? {
        let Some(pid) = owner
            .strip_prefix(&prefix)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        released += worker.store.release_stale(&owner).await?;
    }
    Ok(released)
}

/// Takes the `[roles]` the configuration file now has; on any problem the current ones stay.
fn reload_roles(file: Option<&std::path::Path>, auth: &api::caller::Auth) {
    let roles = match Config::load(file) {
        Ok(c) => c.roles,
        Err(e) => {
            tracing::error!("{e}; keeping the current roles");
            return;
        }
    };
    match auth.set_roles(roles) {
        Ok(()) => tracing::info!("roles reloaded"),
        Err(errors) => tracing::error!("roles: {}; keeping the current roles", errors.join("; ")),
    }
}

async fn reload(registry: &Registry, cfg: &Config, worker: &Worker) {
    let plugins = worker.plugins.read().expect("lock").names();
    let calendars_before = registry.calendars();
    let problems = registry
        .reload(
            &sources(cfg),
            &plugins,
            &worker.store,
            ms(worker.clock.now()),
        )
        .await;
    for p in &problems {
        tracing::error!("{p}");
    }
    if let Err(e) = crate::retention::check_template(&cfg.retention, registry.templates().as_ref())
    {
        for p in e {
            tracing::error!(
                "[retention] template `{}`: {p}; expiry warnings become dead letters, and their cases are not deleted",
                cfg.retention.template
            );
        }
    }
    if *registry.calendars() != *calendars_before {
        crate::provisional::calendars_changed(worker).await;
    }
    let catalog = registry.catalog();
    tracing::info!(
        workflows = catalog.workflows.len(),
        problems = problems.len(),
        "workflows loaded: {}",
        catalog
            .workflows
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// The URL without a password.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}
