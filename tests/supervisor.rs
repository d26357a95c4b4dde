//! The supervisor, in-process through `serve_runtime` and the runtime's fault-injection
//! hook: a panic while advancing one instance restarts the engine service, `/readyz` is
//! 503 while it is down and 200 after, other instances keep completing, and the instance
//! that panicked twice ends failed with the reason.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clearflow_runtime::config::Config;
use clearflow_runtime::data::Started;
use clearflow_runtime::{Hooks, Runtime};
use serde_json::{Value, json};

const BOOM: &str = "id: boom\ntitle: panics in the engine (test hook)\nsteps:\n  - id: mark\n    set: { x: 1 }\n  - id: done\n    end: ok\n";
const CALM: &str = "id: calm\ntitle: completes\nsteps:\n  - id: mark\n    set: { x: 1 }\n  - id: done\n    end: ok\n";

fn started_id(s: Started) -> String {
    match s {
        Started::New(id) | Started::Existing(id) => id,
    }
}

async fn status(rt: &Runtime, id: &str) -> (String, Value) {
    let (row, state) = rt.instance(id).await.expect("store").expect("instance");
    (row.status, serde_json::from_str(&state).expect("state"))
}

#[test]
fn a_panicking_instance_restarts_the_engine_and_fails_alone() {
    let dir = tempfile::tempdir().expect("temp dir");
    let wf = dir.path().join("workflows");
    std::fs::create_dir(&wf).unwrap();
    std::fs::write(wf.join("boom.yaml"), BOOM).unwrap();
    std::fs::write(wf.join("calm.yaml"), CALM).unwrap();
    std::fs::write(dir.path().join("users.toml"), clearflow_testkit::ADMIN_USER).unwrap();
    let port = clearflow_testkit::free_port();
    let file = dir.path().join("clearflow.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[store]\nurl = \"sqlite://{db}\"\n\n\
             [workflows]\ndir = \"{wf}\"\n\n[engine]\npoll_ms = 50\n\n[mail.transport]\nkind = \"maildir\"\npath = \"{maildir}\"\n\n\
             [directory]\nusers = \"{users}\"\n\n[roles.admin]\nadmin = true\n",
            db = dir.path().join("store.db").display(),
            wf = wf.display(),
            maildir = dir.path().join("maildir").display(),
            users = dir.path().join("users.toml").display(),
        ),
    )
    .unwrap();
    let cfg = Config::load(Some(&file)).expect("config");
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    tokio.block_on(async move {
        let hooks = Hooks {
            before_advance: Some(Arc::new(|workflow: &str, _instance: &str| {
                if workflow == "boom" {
                    panic!("injected fault");
                }
            })),
        };
        let rt = Arc::new(
            Runtime::open_with(cfg.clone(), Some(file.clone()), hooks)
                .await
                .expect("runtime"),
        );
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let (_reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
        let server = tokio::spawn(clearflow::server::serve_runtime(
            rt.clone(),
            cfg,
            Some(file),
            async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            },
            reload_rx,
        ));
        let http = reqwest::Client::new();
        let ready = |http: reqwest::Client| async move {
            match http
                .get(format!("http://127.0.0.1:{port}/readyz"))
                .send()
                .await
            {
                Ok(r) => Some((r.status().as_u16(), r.text().await.unwrap_or_default())),
                Err(_) => None,
            }
        };
        let wait = |want: u16, within: Duration| {
            let http = http.clone();
            async move {
                let deadline = Instant::now() + within;
                loop {
                    if let Some((code, body)) = ready(http.clone()).await
                        && code == want
                    {
                        return body;
                    }
                    assert!(Instant::now() < deadline, "/readyz never answered {want}");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        wait(200, Duration::from_secs(20)).await;

        let calm_before = started_id(
            rt.start("calm", json!({}), "test", None)
                .await
                .expect("start calm"),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while status(&rt, &calm_before).await.0 != "completed" {
            assert!(Instant::now() < deadline, "calm never completed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let boom = started_id(
            rt.start("boom", json!({}), "test", None)
                .await
                .expect("start boom"),
        );
        let down = wait(503, Duration::from_secs(20)).await;
        assert!(down.contains("engine"), "the 503 names the engine: {down}");
        let calm_after = started_id(
            rt.start("calm", json!({}), "test", None)
                .await
                .expect("start calm"),
        );
        wait(200, Duration::from_secs(30)).await;

        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (b, _) = status(&rt, &boom).await;
            let (c, _) = status(&rt, &calm_after).await;
            if b == "failed" && c == "completed" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "boom is {b} and calm is {c}, expected failed and completed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let history = rt.history(&boom).await.expect("history");
        let failed = history
            .iter()
            .find(|h| h.kind == "instance_failed")
            .expect("an instance_failed row");
        let reason = failed.detail.to_string();
        assert!(
            reason.contains("panicked twice") && reason.contains("injected fault"),
            "the reason names the panic: {reason}"
        );
        let metrics = rt.metrics().await.expect("metrics");
        assert!(
            metrics.contains("clearflow_service_restarts_total{service=\"engine\"} 1"),
            "{metrics}"
        );
        let _ = stop_tx.send(true);
        tokio::time::timeout(Duration::from_secs(30), server)
            .await
            .expect("the daemon drains")
            .expect("join")
            .expect("serve");
    });
}
