//! `clearflow serve`: wires the store, workflows, engine and API, and handles signals.

use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::api::{self, AppState};
use crate::clock::{ms, Clock};
use crate::config::{ClockMode, Config, LogFormat};
use crate::registry::Registry;
use crate::store::Store;
use crate::worker::Worker;

/// Sets up `tracing` as configured.
pub fn init_logging(cfg: &crate::config::LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
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

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn serve(cfg: Config) -> anyhow::Result<()> {
    let clock = make_clock(&cfg.clock)?;
    let store = Store::open(&cfg.store).await.with_context(|| format!("opening the store {}", redact(&cfg.store.url)))?;
    tracing::info!(backend = ?store.backend(), url = %redact(&cfg.store.url), "store ready");
    let registry = Arc::new(Registry::new());
    reload(&registry, &cfg, &store, &clock).await;
    let worker = Arc::new(Worker::new(store, registry.clone(), clock.clone(), cfg.engine.clone()));

    let listener = tokio::net::TcpListener::bind(&cfg.server.listen)
        .await
        .with_context(|| format!("listening on {}", cfg.server.listen))?;
    tracing::info!(address = %listener.local_addr()?, "listening");

    let (stop_tx, stop_rx) = watch::channel(false);
    let engine = tokio::spawn(worker.clone().run(stop_rx.clone()));

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let signals = {
        let (registry, cfg, worker) = (registry.clone(), cfg.clone(), worker.clone());
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => { tracing::info!("SIGTERM: draining"); break; }
                    _ = int.recv() => { tracing::info!("SIGINT: draining"); break; }
                    _ = hup.recv() => {
                        tracing::info!("SIGHUP: reloading workflows and calendars");
                        reload(&registry, &cfg, &worker.store, &worker.clock).await;
                        worker.wake.notify_one();
                    }
                }
            }
            let _ = stop_tx.send(true);
        })
    };

    let app = api::router(AppState {
        worker: worker.clone(),
        body_limit: cfg.server.body_limit,
    });
    let mut stop_http = stop_rx.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop_http.wait_for(|s| *s).await;
        })
        .await?;
    engine.await?;
    signals.abort();
    tracing::info!("stopped");
    Ok(())
}

async fn reload(registry: &Registry, cfg: &Config, store: &Store, clock: &Clock) {
    let problems = registry
        .reload(&cfg.workflows.dir, &cfg.workflows.calendars_dir(), store, ms(clock.now()))
        .await;
    for p in &problems {
        tracing::error!("{p}");
    }
    let catalog = registry.catalog();
    tracing::info!(
        workflows = catalog.workflows.len(),
        problems = problems.len(),
        "workflows loaded: {}",
        catalog.workflows.keys().cloned().collect::<Vec<_>>().join(", ")
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
