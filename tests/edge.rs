//! The HTTP edge: a body that is not JSON is refused with 415 before any parser sees it
//! (a cross-site `text/plain` form post cannot file a complaint), and a browser post to
//! the public endpoints from another origin is refused with 403; nothing is stored.

use clearflow_testkit::{Backend, Daemon, Options};
use serde_json::{Value, json};

fn intake_options() -> Options {
    Options {
        extra: "[intake]\nworkflow = \"crash-child\"\nallowed_origins = [\"https://report.example.org\"]\n".into(),
        env: vec![(
            "CLEARFLOW_IDENTITY_KEY".into(),
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into(),
        )],
        ..Options::default()
    }
}

#[test]
fn non_json_bodies_and_cross_site_posts_are_refused_at_the_door() {
    let mut d = Daemon::start_with(
        Backend::Sqlite,
        &clearflow_testkit::fixtures(),
        intake_options(),
    );
    let http = reqwest::blocking::Client::new();
    let url = format!("{}/v1/public/intake", d.url());
    let complaint = json!({ "case": { "n": 1 }, "reporter": { "anonymous": true } });
    // What a form on another site can send without a preflight.
    let r = http
        .post(&url)
        .header("content-type", "text/plain")
        .header("origin", "https://evil.example")
        .body(complaint.to_string())
        .send()
        .expect("POST");
    assert_eq!(r.status().as_u16(), 415);
    let body: Value = r.json().expect("problem");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("application/json"),
        "{body}"
    );
    for ct in [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let r = http
            .post(&url)
            .header("content-type", ct)
            .body("a=b")
            .send()
            .expect("POST");
        assert_eq!(r.status().as_u16(), 415, "{ct}");
    }
    // JSON from a page on another site (the browser adds Origin and Sec-Fetch-Site).
    for headers in [
        vec![("origin", "https://evil.example")],
        vec![("sec-fetch-site", "cross-site")],
        vec![("origin", "null")],
    ] {
        let mut req = http.post(&url).json(&complaint);
        for (k, v) in &headers {
            req = req.header(*k, *v);
        }
        let r = req.send().expect("POST");
        assert_eq!(r.status().as_u16(), 403, "{headers:?}");
    }
    // Authenticated JSON endpoints refuse other media types too, before authentication.
    let r = http
        .post(format!("{}/v1/instances", d.url()))
        .header("content-type", "text/plain")
        .body(r#"{"workflow":"timers","input":{}}"#)
        .send()
        .expect("POST");
    assert_eq!(r.status().as_u16(), 415);
    let (status, list) = d.try_get("/v1/instances").expect("list");
    assert_eq!(status, 200);
    assert_eq!(
        list["items"].as_array().map(Vec::len),
        Some(0),
        "nothing was stored: {list}"
    );
    // The allowed origin and plain clients still get through to the handler.
    let r = http
        .post(&url)
        .header("origin", "https://report.example.org")
        .json(&json!({}))
        .send()
        .expect("POST");
    assert_ne!(r.status().as_u16(), 403);
    assert_ne!(r.status().as_u16(), 415);
    d.terminate();
}

fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn json_too_deep_to_read_back_is_refused_at_the_door_and_what_is_accepted_reads_back() {
    let mut d = Daemon::start(Backend::Sqlite, &clearflow_testkit::fixtures());
    let http = reqwest::blocking::Client::new();
    let post = |input: &str| {
        http.post(format!("{}/v1/instances", d.url()))
            .bearer_auth(d.token.clone().expect("token"))
            .header("content-type", "application/json")
            .body(format!(
                r#"{{"workflow":"timers","input":{{"deep":{input}}}}}"#
            ))
            .send()
            .expect("POST")
    };
    // Deeper than serde_json's recursion limit once stored: refused, naming the limit.
    for depth in [70, 200, 5000] {
        let r = post(&nested(depth));
        assert_eq!(r.status().as_u16(), 422, "depth {depth}");
        let body: Value = r.json().expect("problem");
        let detail = body["detail"].as_str().expect("detail");
        assert!(
            detail.contains("limits.json_depth") && detail.contains("64"),
            "names the limit, its value and its key: {detail}"
        );
    }
    let (_, list) = d.try_get("/v1/instances").expect("list");
    assert_eq!(
        list["items"].as_array().map(Vec::len),
        Some(0),
        "nothing stored"
    );
    // Within the limit: stored, and read back whole.
    let r = post(&nested(60));
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().unwrap_or_default());
    let id = r.json::<Value>().expect("started")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // After the engine advanced it too.
    d.settle();
    let (status, shown) = d.try_get(&format!("/v1/instances/{id}")).expect("GET");
    assert_eq!(status, 200, "{shown}");
    let mut v = &shown["data"]["input"]["deep"];
    let mut depth = 0;
    while let Some(inner) = v.as_array().and_then(|a| a.first()) {
        v = inner;
        depth += 1;
    }
    assert_eq!(depth, 60, "{shown}");
    d.terminate();
}

/// Reads from `stream` until the peer closes (or resets) it or `within` passes; returns
/// what came and whether it was closed.
fn read_until_closed(
    stream: &mut std::net::TcpStream,
    within: std::time::Duration,
) -> (String, bool) {
    use std::io::Read;
    stream.set_read_timeout(Some(within)).expect("read timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // Closed with our request unread: the peer resets the connection.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (String::from_utf8_lossy(&got).into_owned(), true);
            }
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
        }
    }
}

#[test]
fn stalled_headers_are_disconnected_and_stalled_bodies_time_out() {
    use std::io::Write;
    use std::time::{Duration, Instant};
    let mut d = Daemon::start_with(
        Backend::Sqlite,
        &clearflow_testkit::fixtures(),
        Options {
            server: "header_timeout_seconds = 1\nbody_timeout_seconds = 1\n".into(),
            ..Options::default()
        },
    );
    let addr = d.url().trim_start_matches("http://").to_owned();
    // Half a request line, then nothing: closed after the header timeout.
    let mut slow = std::net::TcpStream::connect(&addr).expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    let t = Instant::now();
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(10));
    assert!(closed, "a connection that stalls in its headers is closed");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        t.elapsed()
    );
    // A body that declares a megabyte and sends two bytes: 408 after the body timeout.
    let mut stalled = std::net::TcpStream::connect(&addr).expect("connect");
    stalled
        .write_all(
            b"POST /v1/public/status HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{\"",
        )
        .expect("write");
    let t = Instant::now();
    let (answer, _) = read_until_closed(&mut stalled, Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "answered after {:?}",
        t.elapsed()
    );
    // The daemon still serves everyone else.
    let (status, _) = d.try_get("/v1/instances").expect("list");
    assert_eq!(status, 200);
    d.terminate();
}

#[test]
fn one_address_holds_at_most_its_share_of_connections() {
    use std::io::Write;
    use std::time::Duration;
    let mut d = Daemon::start_with(
        Backend::Sqlite,
        &clearflow_testkit::fixtures(),
        Options {
            server: "max_connections_per_address = 4\n".into(),
            ..Options::default()
        },
    );
    let addr = d.url().trim_start_matches("http://").to_owned();
    // Four idle connections (a slow client, or one holding its keep-alives) are counted…
    let held: Vec<std::net::TcpStream> = (0..4)
        .map(|_| std::net::TcpStream::connect(&addr).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // …so a fifth from the same address is answered 503 and closed at once.
    let mut fifth = std::net::TcpStream::connect(&addr).expect("connect");
    let _ = fifth.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let (answer, closed) = read_until_closed(&mut fifth, Duration::from_secs(5));
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(closed, "the refused connection is closed");
    assert!(
        d.logs().contains("holds too many connections"),
        "the refusal is logged"
    );
    // Once they are closed, the address is served again.
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    let (status, _) = d.try_get("/healthz").expect("healthz");
    assert_eq!(status, 200);
    d.terminate();
}
