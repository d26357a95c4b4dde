//! `clearflow demo` against the shipped process: it files the sample complaints, walks
//! one branch per complaint as the staff would, and shows the cases, the open tasks and
//! the mail — and leaves no usable token behind.

use clearflow_testkit as support;
use clearflow_testkit::flagship;

use chrono::{TimeZone, Utc};
use flagship::Flagship;
use support::Backend;

#[test]
fn demo_walks_every_sample_and_reports_where_things_are() {
    let at = Utc.with_ymd_and_hms(2025, 10, 9, 1, 0, 0).unwrap();
    let mut f = Flagship::start(Backend::Sqlite, at);
    let samples = flagship::root().join("examples/flagship");
    let out =
        f.d.admin_cli(&["demo", "--samples", samples.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "completed screen",
        "completed verify",
        "completed dispose",
        "status: verified",
        "status: held_pending",
        "status: filed",
        "clarification",
        "accountability",
        "fault-tolerance-assessment",
        "follow-up-visits",
        "acknowledge        to reporter",
    ] {
        assert!(
            text.contains(expected),
            "`{expected}` missing from:\n{text}"
        );
    }
    // The clarification waits for its draft, the held case for a clue.
    let clarification = f.d.list_all("workflow=clarification");
    assert_eq!(clarification.len(), 1, "{text}");
    let mails = f.delivered();
    assert!(
        mails
            .iter()
            .any(|m| m.contains("X-Envelope-To: li.ming@example.net")),
        "the key complaint's whistleblower was acknowledged"
    );
    // Its tokens were revoked: the audit log says so, five times.
    let audit = f.d.get("/v1/audit?limit=1000");
    let revoked = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "token.revoked" && a["actor"] == "host:demo")
        .count();
    assert_eq!(revoked, 5, "{audit}");
}
