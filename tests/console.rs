//! The web console over plain HTTP, without a browser: single sign-on through a trusted
//! reverse proxy (`[web.proxy_auth]`: the header counts only from the configured
//! addresses, a session never outlives a change of the proxy's user, an unknown user is
//! refused, all audited), and the whistleblower's site alone on `[web] public_listen`
//! (staff paths absent there, whistleblower pages absent on the main listener).

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use clearflow_testkit::flagship::Flagship;
use clearflow_testkit::{Backend, free_port};
use reqwest::blocking::{Client, Response};
use reqwest::redirect::Policy;
use serde_json::Value;

/// Monday 2 November 2026, 09:30 in Beijing.
fn monday() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 1, 30, 0).unwrap()
}

/// A client that does not follow redirects, connecting from `from` (a loopback address
/// other than 127.0.0.1 stands for a machine that is not the proxy).
fn client(from: Option<IpAddr>) -> Client {
    let mut b = Client::builder()
        .redirect(Policy::none())
        .timeout(Duration::from_secs(60));
    if let Some(ip) = from {
        b = b.local_address(ip);
    }
    b.build().expect("http client")
}

/// The session cookie a response sets (`name=value`), if any.
fn cookie_of(r: &Response) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|c| !c.ends_with('='))
        .map(str::to_owned)
}

fn location(r: &Response) -> String {
    r.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn single_sign_on_through_a_trusted_proxy_only() {
    let f = Flagship::start_with(
        Backend::Sqlite,
        monday(),
        "[web.proxy_auth]\nheader = \"X-Remote-User\"\ntrusted = [\"127.0.0.1\"]\n",
    );
    let base = f.d.url();
    let proxy = client(None);
    let elsewhere = client(Some("127.0.0.2".parse().unwrap()));

    // From an address that is not the proxy the header counts for nothing.
    let r = elsewhere
        .get(format!("{base}/sign-in"))
        .header("X-Remote-User", "li.na")
        .send()
        .expect("sign-in page");
    assert_eq!(r.status(), 200);
    assert!(
        cookie_of(&r).is_none(),
        "a session from an untrusted address"
    );
    assert!(
        r.text().unwrap().contains("name=\"password\""),
        "the password form"
    );
    let r = elsewhere
        .get(format!("{base}/inbox"))
        .header("X-Remote-User", "li.na")
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/sign-in");
    assert!(
        f.d.logs().contains("not a trusted proxy"),
        "the ignored header is logged"
    );

    // From the proxy: signed in at once, straight to the inbox.
    let r = proxy
        .get(format!("{base}/sign-in"))
        .header("X-Remote-User", "li.na")
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/inbox");
    let cookie = cookie_of(&r).expect("a session cookie");
    let r = proxy
        .get(format!("{base}/inbox"))
        .header("Cookie", &cookie)
        .header("X-Remote-User", "li.na")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().unwrap().contains("/sign-out"), "signed in");
    // The session is a session: without the header (a request the proxy lets through
    // unauthenticated) it still works until it expires or is signed out.
    let r = proxy
        .get(format!("{base}/inbox"))
        .header("Cookie", &cookie)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // The proxy now vouches for someone else (a shared browser): the old session is not
    // theirs.
    let r = proxy
        .get(format!("{base}/inbox"))
        .header("Cookie", &cookie)
        .header("X-Remote-User", "wang.fang")
        .send()
        .unwrap();
    assert_eq!(r.status(), 303, "another user's session is not used");
    assert_eq!(location(&r), "/sign-in");
    // Someone the users file does not know.
    let r = proxy
        .get(format!("{base}/sign-in"))
        .header("X-Remote-User", "nobody.here")
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(cookie_of(&r).is_none());

    let audit = f.d.get("/v1/audit?limit=200");
    let items = audit["items"].as_array().expect("items");
    let by = |kind: &str, actor: &str| -> Vec<&Value> {
        items
            .iter()
            .filter(|a| a["kind"] == kind && a["actor"] == actor)
            .collect()
    };
    let signed_in = by("auth.sign_in", "li.na");
    assert_eq!(signed_in.len(), 1, "{audit}");
    assert_eq!(signed_in[0]["detail"]["method"], "proxy");
    assert_eq!(signed_in[0]["detail"]["proxy"], "127.0.0.1");
    let refused = by("auth.sign_in_refused", "nobody.here");
    assert_eq!(refused.len(), 1, "{audit}");
    assert_eq!(refused[0]["detail"]["reason"], "unknown user");
}

#[test]
fn the_whistleblowers_site_on_its_own_listener() {
    let port = free_port();
    let f = Flagship::start_with(
        Backend::Sqlite,
        monday(),
        &format!("[web]\npublic_listen = \"127.0.0.1:{port}\"\n"),
    );
    let public = format!("http://127.0.0.1:{port}");
    let main = f.d.url();
    let c = client(None);

    let r = c
        .get(format!("{public}/report"))
        .send()
        .expect("public site");
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'none'"), "{csp}");
    assert!(r.headers().get("set-cookie").is_none(), "no cookie");
    assert!(r.text().unwrap().contains("name=\"accused.name\""));
    let r = c.get(format!("{public}/static/style.css")).send().unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(format!("{public}/follow")).send().unwrap();
    assert_eq!(r.status(), 200);

    // Nothing of the console or the API there.
    for path in [
        "/sign-in",
        "/inbox",
        "/admin",
        "/cases/x",
        "/v1/instances",
        "/healthz",
    ] {
        let r = c.get(format!("{public}{path}")).send().unwrap();
        assert_eq!(r.status(), 404, "{path} on the public listener");
    }
    // And no whistleblower page on the main listener: an unknown path there, which
    // without a token is answered 401 like any other (it tells nothing).
    for path in ["/report", "/follow"] {
        let r = c.get(format!("{main}{path}")).send().unwrap();
        assert!(
            [401, 404].contains(&r.status().as_u16()),
            "{path} on the main listener: {}",
            r.status()
        );
        assert!(!r.text().unwrap().contains("<form"), "{path}: a page");
    }
    let r = c.get(format!("{main}/sign-in")).send().unwrap();
    assert_eq!(r.status(), 200, "the console stays on the main listener");

    // A complaint filed on the public listener is a case.
    let r = c
        .post(format!("{public}/report"))
        .form(&[
            ("kind", "anonymous"),
            ("accused.name", "李某"),
            ("allegation", "违规经商"),
            ("content", "匿名反映：利用职务便利为亲属经营活动谋利。"),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "filed");
    assert!(r.text().unwrap().contains("class=\"receipt\""), "a receipt");
    let cases = f.d.instances("workflow=complaint-handling");
    assert_eq!(cases.len(), 1, "{cases:?}");
}
