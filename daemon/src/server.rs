//! `clearflow serve`: opens the runtime, serves the API, and turns signals into a
//! reload (SIGHUP) or a drain (SIGTERM, SIGINT).

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use clearflow_api::{self as api, AppState};
use clearflow_runtime::Runtime;
use clearflow_runtime::config::{Config, LogFormat};

/// Sets up `tracing` as configured.
pub fn init_logging(cfg: &clearflow_runtime::config::LogConfig) {
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

/// Runs the daemon until SIGTERM or SIGINT; SIGHUP reloads the deployment, the
/// plugins (`config_file` is read again for their declarations) and the roles.
pub async fn serve_with_signals(
    cfg: Config,
    config_file: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(4);
    let mut hup = signal(SignalKind::hangup())?;
    let forward = tokio::spawn(async move {
        while hup.recv().await.is_some() {
            if reload_tx.send(()).await.is_err() {
                break;
            }
        }
    });
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining"),
            _ = int.recv() => tracing::info!("SIGINT: draining"),
        }
    };
    let r = serve(cfg, config_file, shutdown, reload_rx).await;
    forward.abort();
    r
}

/// Runs the daemon until `shutdown` completes, then drains: the HTTP server stops
/// taking requests and every service finishes its round. A message on `reload`
/// reloads as SIGHUP does. Tests start and stop a daemon in-process with this.
pub async fn serve(
    cfg: Config,
    config_file: Option<std::path::PathBuf>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    reload: tokio::sync::mpsc::Receiver<()>,
) -> anyhow::Result<()> {
    let rt = Arc::new(Runtime::open(cfg.clone(), config_file.clone()).await?);
    serve_runtime(rt, cfg, config_file, shutdown, reload).await
}

/// [`serve`] on a runtime that is already open (with test hooks, say).
pub async fn serve_runtime(
    rt: Arc<Runtime>,
    cfg: Config,
    config_file: Option<std::path::PathBuf>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    mut reload: tokio::sync::mpsc::Receiver<()>,
) -> anyhow::Result<()> {
    let auth = Arc::new(
        api::caller::Auth::new(cfg.roles.clone())
            .map_err(|errors| anyhow::anyhow!("roles: {}", errors.join("; ")))?,
    );
    let listener = tokio::net::TcpListener::bind(&cfg.server.listen)
        .await
        .with_context(|| format!("listening on {}", cfg.server.listen))?;
    tracing::info!(address = %listener.local_addr()?, "listening");

    let (stop_tx, stop_rx) = watch::channel(false);
    let services = {
        let rt = rt.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move { rt.run(stop).await })
    };
    let control = {
        let (rt, auth) = (rt.clone(), auth.clone());
        tokio::spawn(async move {
            tokio::pin!(shutdown);
            loop {
                tokio::select! {
                    _ = &mut shutdown => break,
                    Some(()) = reload.recv() => {
                        tracing::info!("reloading workflows, calendars, templates, users, plugins and roles");
                        rt.reload().await;
                        reload_roles(config_file.as_deref(), &auth);
                    }
                }
            }
            let _ = stop_tx.send(true);
        })
    };

    let public_listener = match &cfg.web.public_listen {
        Some(addr) if cfg.web.enabled => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on {addr} ([web] public_listen)"))?;
            tracing::info!(address = %l.local_addr()?, "whistleblower site listening");
            Some(l)
        }
        _ => None,
    };
    let state = AppState {
        intake: Arc::new(api::intake::Intake::new(
            &cfg.intake,
            rt.identity_key().cloned(),
        )),
        rt,
        body_limit: cfg.server.body_limit,
        body_timeout: std::time::Duration::from_secs(cfg.server.body_timeout_seconds.max(1)),
        auth,
    };
    let app = api::router(state.clone());
    let timeouts = Timeouts {
        header: std::time::Duration::from_secs(cfg.server.header_timeout_seconds.max(1)),
        drain: std::time::Duration::from_secs(30),
        per_address: cfg.server.max_connections_per_address,
    };
    let public = public_listener.map(|l| {
        let app = api::console::public_router(state);
        let stop = stop_rx.clone();
        tokio::spawn(async move { http(l, app, timeouts, stop).await })
    });
    http(listener, app, timeouts, stop_rx.clone()).await;
    if let Some(p) = public {
        let _ = p.await;
    }
    services.await?;
    control.abort();
    tracing::info!("stopped");
    Ok(())
}

/// How long the HTTP server waits for clients, and how many connections one address
/// may hold.
#[derive(Clone, Copy)]
struct Timeouts {
    /// For a request's headers.
    header: std::time::Duration,
    /// For requests in flight when draining.
    drain: std::time::Duration,
    /// Open connections per client address (0: no limit).
    per_address: usize,
}

/// Open connections by client address; a connection counts until its task ends.
#[derive(Clone, Default)]
struct Connections(Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>);

impl Connections {
    /// Counts a new connection from `ip`, unless it already holds `max` (0: no limit).
    fn open(&self, ip: std::net::IpAddr, max: usize) -> Option<OpenConnection> {
        let mut open = self.0.lock().expect("lock");
        let n = open.entry(ip).or_default();
        if max > 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(OpenConnection {
            all: self.clone(),
            ip,
        })
    }
}

/// One counted connection; dropping it frees its place.
struct OpenConnection {
    all: Connections,
    ip: std::net::IpAddr,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let mut open = self.all.0.lock().expect("lock");
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// The answer to a connection over its address's limit, written before it is closed.
const TOO_MANY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Type: text/plain\r\nContent-Length: 45\r\n\r\ntoo many connections from this address; retry";

/// Serves `app` on `listener` until `stop` turns true, then lets the requests in flight
/// finish (at most `timeouts.drain`). A client that does not send its headers within
/// `timeouts.header` is disconnected (hyper's header read timeout), so slow or stalled
/// connections cannot pile up; body reads are bounded by the API's own timeout.
async fn http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    timeouts: Timeouts,
    mut stop: watch::Receiver<bool>,
) {
    use hyper::Request;
    use hyper::body::Incoming;
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower_service::Service;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let connections = Connections::default();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = async { let _ = stop.wait_for(|s| *s).await; } => break,
        };
        let Some(counted) = connections.open(peer.ip(), timeouts.per_address) else {
            tracing::warn!(
                limit = timeouts.per_address,
                "a client address holds too many connections; one refused"
            );
            let _ = stream.try_write(TOO_MANY);
            continue;
        };
        // The peer address feeds the per-address rate limits of the public endpoints; it
        // goes into each request's extensions (a router clone is one `Arc`).
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            let mut app = app.clone();
            async move {
                std::future::poll_fn(|cx| Service::<Request<Incoming>>::poll_ready(&mut app, cx))
                    .await?;
                app.call(req).await
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(timeouts.header)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(counted);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(timeouts.drain) => {
            tracing::warn!("requests still in flight after {} s; stopping anyway", timeouts.drain.as_secs());
        }
    }
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
