//! Data-driven tests of the instance state machine, with an injected clock.
//!
//! Each case is a workflow, a start input, a script of events with times, and the
//! expected rendering: per event the history entries (`kind step`) and the effects
//! (`! effect {fields}`), then the final status. Every script is also replayed a
//! second time and once more with the state round-tripped through JSON before each
//! event, and all three runs must agree (the daemon stores the state as JSON).

use std::sync::LazyLock;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use clearflow_core::engine::{
    self, Effect, Env, Event, HistoryEntry, Instance, PluginFailure, Status, Transition,
};
use clearflow_core::workflow::RetryPolicy;
use clearflow_core::{Workflow, load};
use pretty_assertions::assert_eq;
use serde_json::{Value, json};

static CALENDARS: LazyLock<clearflow_time::Calendars> = LazyLock::new(|| {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows/calendars");
    clearflow_time::load_dir(&dir).unwrap_or_else(|e| panic!("calendars: {e:?}"))
});

/// Monday 2025-01-06 09:00 in Shanghai.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 6, 1, 0, 0).unwrap()
}

/// Reads one script line's time prefix: `@+1h` (after the previous event) or
/// `@2025-09-26T01:00:00Z` (absolute).
fn parse_at(word: &str, prev: DateTime<Utc>) -> DateTime<Utc> {
    if let Some(rel) = word.strip_prefix("@+") {
        let (num, unit) = rel.split_at(rel.len() - 1);
        let n: i64 = num.parse().unwrap_or_else(|_| panic!("bad offset {word}"));
        let d = match unit {
            "s" => TimeDelta::seconds(n),
            "m" => TimeDelta::minutes(n),
            "h" => TimeDelta::hours(n),
            "d" => TimeDelta::days(n),
            _ => panic!("bad offset unit in {word}"),
        };
        prev + d
    } else {
        DateTime::parse_from_rfc3339(&word[1..])
            .unwrap_or_else(|e| panic!("bad time {word}: {e}"))
            .with_timezone(&Utc)
    }
}

/// Splits `rest` into its first word and the remainder.
fn word(rest: &str) -> (&str, &str) {
    let rest = rest.trim_start();
    match rest.find(' ') {
        Some(i) => (&rest[..i], rest[i + 1..].trim_start()),
        None => (rest, ""),
    }
}

fn json_or_null(s: &str) -> Value {
    if s.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(s).unwrap_or_else(|e| panic!("bad JSON {s:?}: {e}"))
    }
}

/// Parses one script line into its time and event.
///
/// ```text
/// [@TIME] start | timer N | signal NAME [key=K] [JSON] | link NAME SEQ OUTCOME [JSON]
///       | plugin TOKEN ATTEMPT ok JSON | plugin TOKEN ATTEMPT retry|fail CLASS MESSAGE
///       | done TOKEN ACTOR JSON | reject TOKEN ACTOR REASON | cancel REASON
/// ```
fn parse_line(line: &str, prev: DateTime<Utc>) -> (DateTime<Utc>, Event) {
    let mut line = line.trim();
    let mut now = prev;
    if line.starts_with('@') {
        let (at, rest) = word(line);
        now = parse_at(at, prev);
        line = rest;
    }
    let (verb, rest) = word(line);
    let num = |s: &str| -> u32 { s.parse().unwrap_or_else(|_| panic!("bad number in {line}")) };
    let event = match verb {
        "start" => Event::Start,
        "timer" => Event::Timer { timer: num(rest) },
        "signal" => {
            let (name, rest) = word(rest);
            let (key, rest) = match rest.strip_prefix("key=") {
                Some(r) => {
                    let (k, r) = word(r);
                    (Some(k.to_owned()), r)
                }
                None => (None, rest),
            };
            Event::Signal {
                name: name.into(),
                key,
                data: json_or_null(rest),
            }
        }
        "link" => {
            let (link, rest) = word(rest);
            let (seq, rest) = word(rest);
            let (outcome, rest) = word(rest);
            Event::LinkEnded {
                link: link.into(),
                seq: num(seq),
                outcome: outcome.into(),
                output: json_or_null(rest),
            }
        }
        "plugin" => {
            let (token, rest) = word(rest);
            let (attempt, rest) = word(rest);
            let (how, rest) = word(rest);
            let result = match how {
                "ok" => Ok(json_or_null(rest)),
                "retry" | "fail" => {
                    let (class, message) = word(rest);
                    Err(PluginFailure {
                        class: class.into(),
                        message: message.into(),
                        retryable: how == "retry",
                    })
                }
                _ => panic!("bad plugin result in {line}"),
            };
            Event::PluginDone {
                token: num(token),
                attempt: num(attempt),
                result,
            }
        }
        "done" => {
            let (token, rest) = word(rest);
            let (actor, rest) = word(rest);
            Event::TaskCompleted {
                token: num(token),
                actor: actor.into(),
                form: json_or_null(rest),
                task: None,
            }
        }
        "reject" => {
            let (token, rest) = word(rest);
            let (actor, reason) = word(rest);
            Event::TaskRejected {
                token: num(token),
                actor: actor.into(),
                reason: reason.into(),
                task: None,
            }
        }
        "cancel" => Event::Cancel {
            reason: rest.into(),
        },
        _ => panic!("unknown script verb in {line}"),
    };
    (now, event)
}

fn render_effect(e: &Effect) -> String {
    let Value::Object(mut m) = serde_json::to_value(e).expect("effects serialise") else {
        unreachable!("effects are objects")
    };
    let name = m
        .remove("effect")
        .and_then(|v| v.as_str().map(str::to_owned));
    format!("! {} {}", name.unwrap_or_default(), Value::Object(m))
}

fn render_entry(h: &HistoryEntry) -> String {
    match &h.step {
        Some(step) => format!("{} {step}", h.kind),
        None => h.kind.clone(),
    }
}

fn render_transition(out: &mut String, t: &Transition) {
    for h in &t.history {
        out.push_str(&format!("  {}\n", render_entry(h)));
    }
    for e in &t.effects {
        out.push_str(&format!("  {}\n", render_effect(e)));
    }
}

fn render_status(s: &Status) -> String {
    match s {
        Status::Running => "= running".into(),
        Status::Completed { outcome, output } => format!("= completed {outcome} {output}"),
        Status::Failed { step, error } => format!("= failed {step}: {error}"),
        Status::Cancelled { reason } => format!("= cancelled: {reason}"),
    }
}

fn compile(yaml: &str) -> Workflow {
    load("case.yaml", yaml).unwrap_or_else(|d| {
        panic!(
            "{}",
            d.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

/// Runs `script` against a fresh instance; `roundtrip` stores the state as JSON and
/// reads it back before every event, as the daemon does.
fn run(wf: &Workflow, input: &Value, script: &str, roundtrip: bool) -> (String, Instance) {
    let mut out = String::new();
    let (mut inst, effects) =
        engine::create(wf, "i1".into(), input.clone(), Some("ann".into()), t0())
            .unwrap_or_else(|e| panic!("create: {e}"));
    out.push_str("> create\n");
    render_transition(
        &mut out,
        &Transition {
            effects,
            ..Transition::default()
        },
    );
    let mut now = t0();
    for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (at, event) = parse_line(line, now);
        now = at;
        if roundtrip {
            let text = serde_json::to_string(&inst).expect("state serialises");
            inst = serde_json::from_str(&text).expect("state deserialises");
        }
        let env = Env::new(now, &CALENDARS);
        let t = engine::apply(wf, &mut inst, event, &env);
        out.push_str(&format!("> {line}\n"));
        render_transition(&mut out, &t);
    }
    out.push_str(&render_status(&inst.status));
    out.push('\n');
    (out, inst)
}

fn check(yaml: &str, input: Value, script: &str, expect: &str) {
    let wf = compile(yaml);
    let (got, inst) = run(&wf, &input, script, false);
    let (again, inst2) = run(&wf, &input, script, false);
    let (via_json, inst3) = run(&wf, &input, script, true);
    assert_eq!(got, again, "the same script gave different results");
    assert_eq!(inst, inst2, "the same script gave different states");
    assert_eq!(
        got, via_json,
        "a JSON round trip of the state changed the run"
    );
    assert_eq!(
        inst, inst3,
        "a JSON round trip of the state changed the state"
    );
    assert_eq!(got.trim(), dedent(expect).trim());
}

/// Removes the indentation common to every non-blank line.
fn dedent(text: &str) -> String {
    let indent = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    text.lines()
        .map(|l| l.get(indent..).unwrap_or("").trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn sequence_runs_in_order_and_ends_with_output() {
    check(
        r#"
id: seq
steps:
  - id: a
    set: { x: "${ input.n + 1 }" }
  - id: b
    set: { y: "${ vars.x * 2 }" }
  - id: finish
    end: { outcome: done, output: { y: "${ vars.y }", a: "${ a.x }" } }
"#,
        json!({"n": 1}),
        "start",
        r#"
            > create
            > start
              instance_started
              step_completed a
              step_completed b
              step_completed finish
              instance_completed
              ! ended {"output":{"y":4,"a":2},"outcome":"done"}
            = completed done {"y":4,"a":2}
        "#,
    );
}

#[test]
fn if_false_skips_the_step() {
    check(
        r#"
id: skip
steps:
  - id: maybe
    if: input.flag
    set: { hit: true }
  - id: after
    set: { hit2: true }
"#,
        json!({"flag": false}),
        "start",
        r#"
            > create
            > start
              instance_started
              step_skipped maybe
              step_completed after
              instance_completed
              ! ended {"output":null,"outcome":"completed"}
            = completed completed null
        "#,
    );
}

const SWITCH: &str = r#"
id: sw
steps:
  - id: pick
    switch:
      - when: input.n > 10
        goto: big
      - when: input.n > 5
        goto: medium
      - goto: small
  - id: big
    end: big
  - id: medium
    end: medium
  - id: small
    end: small
"#;

#[test]
fn switch_takes_the_first_true_case() {
    check(
        SWITCH,
        json!({"n": 7}),
        "start",
        r#"
            > create
            > start
              instance_started
              step_completed pick
              step_completed medium
              instance_completed
              ! ended {"output":null,"outcome":"medium"}
            = completed medium null
        "#,
    );
}

#[test]
fn switch_takes_the_default_case() {
    check(
        SWITCH,
        json!({"n": 1}),
        "start",
        r#"
            > create
            > start
              instance_started
              step_completed pick
              step_completed small
              instance_completed
              ! ended {"output":null,"outcome":"small"}
            = completed small null
        "#,
    );
}

#[test]
fn switch_without_a_match_falls_through() {
    check(
        r#"
id: sw
steps:
  - id: pick
    switch:
      - when: input.n > 10
        goto: big
  - id: small
    end: small
  - id: big
    end: big
"#,
        json!({"n": 1}),
        "start",
        r#"
            > create
            > start
              instance_started
              step_completed pick
              step_completed small
              instance_completed
              ! ended {"output":null,"outcome":"small"}
            = completed small null
        "#,
    );
}

#[test]
fn parallel_join_all_waits_for_every_branch() {
    check(
        r#"
id: par
steps:
  - id: fork
    parallel:
      branches:
        - steps:
            - id: slow
              wait: { for: 1h }
        - steps:
            - id: quick
              set: { q: 1 }
        - steps: []
  - id: after
    end: joined
"#,
        json!({}),
        "start
         @+30m timer 99
         @+30m timer 6",
        r#"
            > create
            > start
              instance_started
              step_started fork
              step_waiting slow
              step_completed quick
              ! arm_timer {"at":"2025-01-06T02:00:00Z","timer":6}
            > @+30m timer 99
              event_ignored
            > @+30m timer 6
              step_completed slow
              step_completed fork
              step_completed after
              instance_completed
              ! ended {"output":null,"outcome":"joined"}
            = completed joined null
        "#,
    );
}

#[test]
fn parallel_join_any_cancels_the_losers_and_their_timers() {
    check(
        r#"
id: par
steps:
  - id: fork
    parallel:
      join: any
      branches:
        - steps:
            - id: slow
              wait: { for: 1h }
        - steps:
            - id: chat
              wait: { event: reply, key: "${ input.case }", timeout: 2h }
        - steps:
            - id: fast
              wait: { for: 30m }
  - id: after
    end: joined
"#,
        json!({"case": "c-1"}),
        "start
         @+30m timer 8
         @+30m timer 4",
        r#"
            > create
            > start
              instance_started
              step_started fork
              step_waiting slow
              step_waiting chat
              step_waiting fast
              ! arm_timer {"at":"2025-01-06T02:00:00Z","timer":6}
              ! arm_timer {"at":"2025-01-06T03:00:00Z","timer":7}
              ! subscribe {"key":"c-1","name":"reply"}
              ! arm_timer {"at":"2025-01-06T01:30:00Z","timer":8}
            > @+30m timer 8
              step_completed fast
              branch_cancelled slow
              branch_cancelled chat
              step_completed fork
              step_completed after
              instance_completed
              ! cancel_timer {"timer":6}
              ! cancel_timer {"timer":7}
              ! unsubscribe {"key":"c-1","name":"reply"}
              ! ended {"output":null,"outcome":"joined"}
            > @+30m timer 4
              event_ignored
            = completed joined null
        "#,
    );
}

#[test]
fn parallel_n_of_m_joins_after_n_branches() {
    check(
        r#"
id: par
steps:
  - id: votes
    parallel:
      join: { n: 2 }
      branches:
        - steps:
            - wait: { event: vote_a }
        - steps:
            - wait: { event: vote_b }
        - steps:
            - wait: { event: vote_c, key: "${ input.case }" }
  - end: decided
"#,
        json!({"case": "c-9"}),
        "start
         signal vote_b
         signal vote_a",
        r#"
            > create
            > start
              instance_started
              step_started votes
              step_waiting _1
              step_waiting _2
              step_waiting _3
              ! subscribe {"key":"c-9","name":"vote_c"}
            > signal vote_b
              signal_received _2
              step_completed _2
            > signal vote_a
              signal_received _1
              step_completed _1
              branch_cancelled _3
              step_completed votes
              step_completed _4
              instance_completed
              ! unsubscribe {"key":"c-9","name":"vote_c"}
              ! ended {"output":null,"outcome":"decided"}
            = completed decided null
        "#,
    );
}

#[test]
fn nested_parallel_losers_are_cancelled_with_their_timers() {
    check(
        r#"
id: nest
steps:
  - id: outer
    parallel:
      join: any
      branches:
        - name: inner
          steps:
            - id: inner
              parallel:
                branches:
                  - steps:
                      - id: deep_wait
                        wait: { for: 3d }
                  - steps:
                      - id: deep_set
                        set: { d: 1 }
        - name: winner
          steps:
            - id: win
              wait: { event: go }
  - end: done
"#,
        json!({}),
        "start
         @+1h signal go
         @+3d timer 8",
        r#"
            > create
            > start
              instance_started
              step_started outer
              step_started inner
              step_waiting win
              step_waiting deep_wait
              step_completed deep_set
              ! arm_timer {"at":"2025-01-09T01:00:00Z","timer":8}
            > @+1h signal go
              signal_received win
              step_completed win
              branch_cancelled deep_wait
              branch_cancelled inner
              step_completed outer
              step_completed _5
              instance_completed
              ! cancel_timer {"timer":8}
              ! ended {"output":null,"outcome":"done"}
            > @+3d timer 8
              event_ignored
            = completed done null
        "#,
    );
}

#[test]
fn goto_loops_back_until_a_counter_ends_it() {
    check(
        r#"
id: loop
steps:
  - id: init
    set: { count: 0 }
  - id: again
    set: { count: "${ vars.count + 1 }" }
  - id: check
    if: vars.count < 3
    goto: again
  - end: { outcome: looped, output: "${ vars.count }" }
"#,
        json!({}),
        "start",
        r#"
            > create
            > start
              instance_started
              step_completed init
              step_completed again
              step_completed check
              step_completed again
              step_completed check
              step_completed again
              step_skipped check
              step_completed _3
              instance_completed
              ! ended {"output":3,"outcome":"looped"}
            = completed looped 3
        "#,
    );
}

#[test]
fn parallel_inside_a_loop_forks_afresh_each_time() {
    check(
        r#"
id: loop
steps:
  - id: init
    set: { round: 0 }
  - id: fork
    parallel:
      branches:
        - steps:
            - wait: { for: 1h }
        - steps:
            - set: { round: "${ vars.round + 1 }" }
  - id: check
    switch:
      - when: vars.round < 2
        goto: fork
  - end: { outcome: done, output: "${ vars.round }" }
"#,
        json!({}),
        "start
         @+1h timer 5
         @+1h timer 9",
        r#"
            > create
            > start
              instance_started
              step_completed init
              step_started fork
              step_waiting _2
              step_completed _3
              ! arm_timer {"at":"2025-01-06T02:00:00Z","timer":5}
            > @+1h timer 5
              step_completed _2
              step_completed fork
              step_completed check
              step_started fork
              step_waiting _2
              step_completed _3
              ! arm_timer {"at":"2025-01-06T03:00:00Z","timer":9}
            > @+1h timer 9
              step_completed _2
              step_completed fork
              step_completed check
              step_completed _5
              instance_completed
              ! ended {"output":2,"outcome":"done"}
            = completed done 2
        "#,
    );
}

#[test]
fn waits_for_exact_calendar_and_working_day_durations() {
    // Friday 2025-09-26 09:00 in Shanghai: National Day falls inside the 15 working
    // days, and Sunday 2025-09-28 and Saturday 2025-10-11 are make-up working days.
    check(
        r#"
id: waits
calendar: cn-mainland
steps:
  - id: hour
    wait: { for: 1h }
  - id: days
    wait: { for: 3d }
  - id: working
    wait: { for: 15wd }
  - end: waited
"#,
        json!({}),
        "@2025-09-26T01:00:00Z start
         @2025-09-26T02:00:00Z timer 2
         @2025-09-29T02:00:00Z timer 3
         @2025-10-27T16:00:00Z timer 4",
        r#"
            > create
            > @2025-09-26T01:00:00Z start
              instance_started
              step_waiting hour
              ! arm_timer {"at":"2025-09-26T02:00:00Z","timer":2}
            > @2025-09-26T02:00:00Z timer 2
              step_completed hour
              step_waiting days
              ! arm_timer {"at":"2025-09-29T02:00:00Z","timer":3}
            > @2025-09-29T02:00:00Z timer 3
              step_completed days
              step_waiting working
              ! arm_timer {"at":"2025-10-27T15:59:59.999999999Z","timer":4}
            > @2025-10-27T16:00:00Z timer 4
              step_completed working
              step_completed _3
              instance_completed
              ! ended {"output":null,"outcome":"waited"}
            = completed waited null
        "#,
    );
}

#[test]
fn wait_until_a_date_from_data() {
    check(
        r#"
id: until
steps:
  - id: past
    wait: { until: "${ input.past }" }
  - id: future
    wait: { until: "${ input.future }" }
  - end: waited
"#,
        json!({"past": "2024-12-31", "future": "2025-01-10"}),
        "start
         @2025-01-09T16:00:00Z timer 2",
        r#"
            > create
            > start
              instance_started
              step_completed past
              step_waiting future
              ! arm_timer {"at":"2025-01-09T16:00:00Z","timer":2}
            > @2025-01-09T16:00:00Z timer 2
              step_completed future
              step_completed _2
              instance_completed
              ! ended {"output":null,"outcome":"waited"}
            = completed waited null
        "#,
    );
}

#[test]
fn wait_for_an_event_with_and_without_key() {
    check(
        r#"
id: ev
steps:
  - id: any
    wait: { event: ping }
  - id: keyed
    wait: { event: reply, key: "${ input.case }" }
  - end: { outcome: got, output: { any: "${ any }", keyed: "${ keyed }" } }
"#,
        json!({"case": "c-1"}),
        "start
         signal ping {\"n\": 1}
         signal reply key=other {\"wrong\": true}
         signal reply key=c-1 {\"right\": true}",
        r#"
            > create
            > start
              instance_started
              step_waiting any
            > signal ping {"n": 1}
              signal_received any
              step_completed any
              step_waiting keyed
              ! subscribe {"key":"c-1","name":"reply"}
            > signal reply key=other {"wrong": true}
              signal_buffered
            > signal reply key=c-1 {"right": true}
              signal_received keyed
              step_completed keyed
              step_completed _2
              instance_completed
              ! unsubscribe {"key":"c-1","name":"reply"}
              ! ended {"output":{"any":{"n":1},"keyed":{"right":true}},"outcome":"got"}
            = completed got {"any":{"n":1},"keyed":{"right":true}}
        "#,
    );
}

#[test]
fn wait_for_an_event_times_out_to_on_timeout() {
    check(
        r#"
id: ev
steps:
  - id: answer
    wait: { event: reply, key: "${ input.case }", timeout: 2h, on_timeout: chase }
  - end: answered
  - id: chase
    end: { outcome: chased, output: "${ answer }" }
"#,
        json!({"case": "c-1"}),
        "start
         @+2h timer 2",
        r#"
            > create
            > start
              instance_started
              step_waiting answer
              ! arm_timer {"at":"2025-01-06T03:00:00Z","timer":2}
              ! subscribe {"key":"c-1","name":"reply"}
            > @+2h timer 2
              wait_timed_out answer
              step_completed answer
              step_completed chase
              instance_completed
              ! unsubscribe {"key":"c-1","name":"reply"}
              ! ended {"output":{"timed_out":true},"outcome":"chased"}
            = completed chased {"timed_out":true}
        "#,
    );
}

#[test]
fn wait_timeout_without_on_timeout_continues_with_timed_out() {
    check(
        r#"
id: ev
steps:
  - id: answer
    wait: { event: reply, timeout: 2h }
  - end: { outcome: next, output: "${ answer.timed_out }" }
"#,
        json!({}),
        "start
         @+2h timer 2",
        r#"
            > create
            > start
              instance_started
              step_waiting answer
              ! arm_timer {"at":"2025-01-06T03:00:00Z","timer":2}
            > @+2h timer 2
              wait_timed_out answer
              step_completed answer
              step_completed _1
              instance_completed
              ! ended {"output":true,"outcome":"next"}
            = completed next true
        "#,
    );
}

#[test]
fn a_signal_before_the_wait_is_buffered() {
    check(
        r#"
id: ev
steps:
  - id: first
    wait: { for: 1h }
  - id: answer
    wait: { event: reply, key: "${ input.case }" }
  - end: { outcome: answered, output: "${ answer }" }
"#,
        json!({"case": "c-1"}),
        "start
         @+10m signal reply key=c-1 {\"early\": true}
         @+50m timer 2",
        r#"
            > create
            > start
              instance_started
              step_waiting first
              ! arm_timer {"at":"2025-01-06T02:00:00Z","timer":2}
            > @+10m signal reply key=c-1 {"early": true}
              signal_buffered
            > @+50m timer 2
              step_completed first
              signal_received answer
              step_completed answer
              step_completed _2
              instance_completed
              ! ended {"output":{"early":true},"outcome":"answered"}
            = completed answered {"early":true}
        "#,
    );
}

#[test]
fn start_fire_and_forget_and_awaited() {
    check(
        r#"
id: parent
steps:
  - id: notice
    start: { workflow: child, input: { case: "${ input.case }" } }
  - id: review
    start: { workflow: child, await: true, as: rev }
  - end: { outcome: reviewed, output: "${ review }" }
"#,
        json!({"case": "c-1"}),
        "start
         link notice 2 done
         link rev 2 stale
         link rev 3 cleared {\"score\": 5}",
        r#"
            > create
            > start
              instance_started
              link_started notice
              step_completed notice
              link_started review
              ! start_instance {"seq":2,"workflow":"child","input":{"case":"c-1"},"link":"notice"}
              ! start_instance {"seq":3,"workflow":"child","input":{},"link":"rev"}
            > link notice 2 done
              link_ended
            > link rev 2 stale
              event_ignored
            > link rev 3 cleared {"score": 5}
              link_ended
              step_completed review
              step_completed _2
              instance_completed
              ! ended {"output":{"outcome":"cleared","output":{"score":5}},"outcome":"reviewed"}
            = completed reviewed {"outcome":"cleared","output":{"score":5}}
        "#,
    );
}

const ACCOUNTABILITY: &str = r#"
id: accountability
on_start:
  - start: assessment
    as: assessment
    input: { case: "${ input.case }" }
steps:
  - id: investigate
    wait: { for: 1h }
  - id: wait_assessment
    await: assessment
  - end: { outcome: decided, output: "${ wait_assessment.outcome }" }
"#;

#[test]
fn on_start_links_and_await_passes_only_after_the_link_ends() {
    check(
        ACCOUNTABILITY,
        json!({"case": "c-1"}),
        "start
         @+1h timer 3
         @+1h link assessment 1 tolerated {\"ok\": true}",
        r#"
            > create
              ! start_instance {"seq":1,"workflow":"assessment","input":{"case":"c-1"},"link":"assessment"}
            > start
              instance_started
              step_waiting investigate
              ! arm_timer {"at":"2025-01-06T02:00:00Z","timer":3}
            > @+1h timer 3
              step_completed investigate
              step_waiting wait_assessment
            > @+1h link assessment 1 tolerated {"ok": true}
              link_ended
              step_completed wait_assessment
              step_completed _2
              instance_completed
              ! ended {"output":"tolerated","outcome":"decided"}
            = completed decided "tolerated"
        "#,
    );
}

#[test]
fn await_passes_at_once_when_the_link_already_ended() {
    check(
        ACCOUNTABILITY,
        json!({"case": "c-1"}),
        "start
         @+10m link assessment 1 tolerated
         @+50m timer 3",
        r#"
            > create
              ! start_instance {"seq":1,"workflow":"assessment","input":{"case":"c-1"},"link":"assessment"}
            > start
              instance_started
              step_waiting investigate
              ! arm_timer {"at":"2025-01-06T02:00:00Z","timer":3}
            > @+10m link assessment 1 tolerated
              link_ended
            > @+50m timer 3
              step_completed investigate
              step_completed wait_assessment
              step_completed _2
              instance_completed
              ! ended {"output":"tolerated","outcome":"decided"}
            = completed decided "tolerated"
        "#,
    );
}

#[test]
fn await_times_out() {
    check(
        r#"
id: accountability
on_start:
  - { start: assessment, as: assessment }
steps:
  - id: wait_assessment
    await: { link: assessment, timeout: 1d, on_timeout: late }
  - end: on_time
  - id: late
    end: late
"#,
        json!({}),
        "start
         @+1d timer 3
         @+1h link assessment 1 tolerated",
        r#"
            > create
              ! start_instance {"seq":1,"workflow":"assessment","input":{},"link":"assessment"}
            > start
              instance_started
              step_waiting wait_assessment
              ! arm_timer {"at":"2025-01-07T01:00:00Z","timer":3}
            > @+1d timer 3
              wait_timed_out wait_assessment
              step_completed wait_assessment
              step_completed late
              instance_completed
              ! ended {"output":null,"outcome":"late"}
            > @+1h link assessment 1 tolerated
              event_ignored
            = completed late null
        "#,
    );
}

const PLUGIN: &str = r#"
id: plug
steps:
  - id: grade
    plugin: grade-report
    with: { text: "${ input.text }" }
    output: { type: object, required: [level], properties: { level: { type: integer } } }
    retry: { attempts: 3, backoff: exponential, initial: 10s, max: 15s, jitter: 0 }
    timeout: 5s
  - end: { outcome: graded, output: "${ grade.level + 1 }" }
"#;

#[test]
fn plugin_result_is_bound_under_the_step_id() {
    check(
        PLUGIN,
        json!({"text": "hello"}),
        "start
         plugin 1 1 ok {\"level\": 2}",
        r#"
            > create
            > start
              instance_started
              plugin_called grade
              ! call_plugin {"timeout_ms":5000,"token":1,"step":"grade","plugin":"grade-report","input":{"text":"hello"},"attempt":1}
            > plugin 1 1 ok {"level": 2}
              step_completed grade
              step_completed _1
              instance_completed
              ! ended {"output":3,"outcome":"graded"}
            = completed graded 3
        "#,
    );
}

#[test]
fn plugin_transient_failures_retry_with_backoff() {
    check(
        PLUGIN,
        json!({"text": "hello"}),
        "start
         plugin 1 1 retry transient busy
         plugin 1 1 ok {\"level\": 9}
         @+10s timer 2
         plugin 1 2 retry timeout slow
         @+15s timer 3
         plugin 1 3 ok {\"level\": 1}",
        r#"
            > create
            > start
              instance_started
              plugin_called grade
              ! call_plugin {"timeout_ms":5000,"token":1,"step":"grade","plugin":"grade-report","input":{"text":"hello"},"attempt":1}
            > plugin 1 1 retry transient busy
              plugin_attempt_failed grade
              retry_scheduled grade
              ! arm_timer {"at":"2025-01-06T01:00:10Z","timer":2}
            > plugin 1 1 ok {"level": 9}
              event_ignored
            > @+10s timer 2
              plugin_called grade
              ! call_plugin {"timeout_ms":5000,"token":1,"step":"grade","plugin":"grade-report","input":{"text":"hello"},"attempt":2}
            > plugin 1 2 retry timeout slow
              plugin_attempt_failed grade
              retry_scheduled grade
              ! arm_timer {"at":"2025-01-06T01:00:25Z","timer":3}
            > @+15s timer 3
              plugin_called grade
              ! call_plugin {"timeout_ms":5000,"token":1,"step":"grade","plugin":"grade-report","input":{"text":"hello"},"attempt":3}
            > plugin 1 3 ok {"level": 1}
              step_completed grade
              step_completed _1
              instance_completed
              ! ended {"output":2,"outcome":"graded"}
            = completed graded 2
        "#,
    );
}

#[test]
fn plugin_attempts_exhausted_fail_the_instance() {
    check(
        r#"
id: plug
steps:
  - id: grade
    plugin: grade-report
    retry: { attempts: 2, backoff: fixed, initial: 1m, jitter: 0 }
  - end: graded
"#,
        json!({}),
        "start
         plugin 1 1 retry transient busy
         @+1m timer 2
         plugin 1 2 retry transient still busy",
        r#"
            > create
            > start
              instance_started
              plugin_called grade
              ! call_plugin {"timeout_ms":null,"token":1,"step":"grade","plugin":"grade-report","input":{},"attempt":1}
            > plugin 1 1 retry transient busy
              plugin_attempt_failed grade
              retry_scheduled grade
              ! arm_timer {"at":"2025-01-06T01:01:00Z","timer":2}
            > @+1m timer 2
              plugin_called grade
              ! call_plugin {"timeout_ms":null,"token":1,"step":"grade","plugin":"grade-report","input":{},"attempt":2}
            > plugin 1 2 retry transient still busy
              plugin_attempt_failed grade
              instance_failed grade
              ! ended {"output":null,"outcome":"failed"}
            = failed grade: plugin `grade-report` failed (transient, attempts exhausted): still busy
        "#,
    );
}

#[test]
fn plugin_permanent_failure_fails_the_instance() {
    check(
        PLUGIN,
        json!({"text": "hello"}),
        "start
         plugin 1 1 fail permanent no such report",
        r#"
            > create
            > start
              instance_started
              plugin_called grade
              ! call_plugin {"timeout_ms":5000,"token":1,"step":"grade","plugin":"grade-report","input":{"text":"hello"},"attempt":1}
            > plugin 1 1 fail permanent no such report
              plugin_attempt_failed grade
              instance_failed grade
              ! ended {"output":null,"outcome":"failed"}
            = failed grade: plugin `grade-report` failed (permanent, not retryable): no such report
        "#,
    );
}

#[test]
fn plugin_output_against_its_schema_fails_the_instance() {
    check(
        PLUGIN,
        json!({"text": "hello"}),
        "start
         plugin 1 1 ok {\"level\": \"high\"}",
        r#"
            > create
            > start
              instance_started
              plugin_called grade
              ! call_plugin {"timeout_ms":5000,"token":1,"step":"grade","plugin":"grade-report","input":{"text":"hello"},"attempt":1}
            > plugin 1 1 ok {"level": "high"}
              plugin_attempt_failed grade
              instance_failed grade
              ! ended {"output":null,"outcome":"failed"}
            = failed grade: plugin `grade-report` returned output that does not match the step's `output` schema: /level: "high" is not of type "integer"
        "#,
    );
}

#[test]
fn retry_delays_stay_between_the_base_and_the_cap() {
    let policy = RetryPolicy {
        attempts: 10,
        backoff: clearflow_core::definition::Backoff::Exponential,
        initial: std::time::Duration::from_secs(1),
        max: std::time::Duration::from_secs(60),
        jitter: 0.5,
    };
    let secs = |attempt, unit| policy.delay(attempt, unit).as_secs_f64();
    assert_eq!(secs(2, 0.0), 1.0);
    assert_eq!(secs(3, 0.0), 2.0);
    assert_eq!(secs(4, 0.0), 4.0);
    assert_eq!(secs(4, 0.999), 4.0 * 1.4995);
    assert_eq!(secs(9, 0.0), 60.0, "capped");
    assert_eq!(secs(9, 0.999), 60.0, "jitter never passes the cap");
    assert_eq!(secs(40, 0.5), 60.0, "huge attempts do not overflow");
}

const TASK: &str = r#"
id: review
calendar: cn-mainland
roles: [handler]
steps:
  - id: draft
    set: { drafts: "${ (vars.drafts or 0) + 1 }" }
  - id: verify
    task:
      role: handler
      title: "verify ${ input.case }"
      due: 15wd
      form: { type: object, properties: { outcome: { enum: [substantiated, unfounded] } } }
      on_reject: draft
      notify_assigned: false
  - end: { outcome: "verified", output: { outcome: "${ verify.outcome }", drafts: "${ vars.drafts }" } }
"#;

#[test]
fn task_due_in_working_days_binds_the_form() {
    check(
        TASK,
        json!({"case": "c-1"}),
        "@2025-09-26T01:00:00Z start
         @+1d done 1 bob {\"outcome\": \"unfounded\"}",
        r#"
            > create
            > @2025-09-26T01:00:00Z start
              instance_started
              step_completed draft
              step_waiting verify
              ! create_task {"follow_up":null,"task":2,"token":1,"step":"verify","title":"verify c-1","role":"handler","assignee":null,"due":"2025-10-23T15:59:59.999999999Z","provisional":false,"priority":0}
            > @+1d done 1 bob {"outcome": "unfounded"}
              task_completed verify
              step_completed verify
              step_completed _2
              instance_completed
              ! ended {"output":{"outcome":"unfounded","drafts":1},"outcome":"verified"}
            = completed verified {"outcome":"unfounded","drafts":1}
        "#,
    );
}

#[test]
fn task_rejection_routes_to_on_reject() {
    check(
        TASK,
        json!({"case": "c-1"}),
        "start
         reject 1 bob too vague
         done 1 bob {\"outcome\": \"substantiated\"}",
        r#"
            > create
            > start
              instance_started
              step_completed draft
              step_waiting verify
              ! create_task {"follow_up":null,"task":2,"token":1,"step":"verify","title":"verify c-1","role":"handler","assignee":null,"due":"2025-01-26T15:59:59.999999999Z","provisional":false,"priority":0}
            > reject 1 bob too vague
              task_rejected verify
              step_completed draft
              step_waiting verify
              ! create_task {"follow_up":null,"task":3,"token":1,"step":"verify","title":"verify c-1","role":"handler","assignee":null,"due":"2025-01-26T15:59:59.999999999Z","provisional":false,"priority":0}
            > done 1 bob {"outcome": "substantiated"}
              task_completed verify
              step_completed verify
              step_completed _2
              instance_completed
              ! ended {"output":{"outcome":"substantiated","drafts":2},"outcome":"verified"}
            = completed verified {"outcome":"substantiated","drafts":2}
        "#,
    );
}

#[test]
fn notify_queues_mail_to_expressions_and_roles() {
    check(
        r#"
id: tell
roles: [leader]
steps:
  - id: tell
    notify:
      template: receipt
      to: "${ input.reporter }"
      cc: ["role:leader", "${ input.others }"]
      locale: en
      data: { case: "${ input.case }" }
  - end: { outcome: told, output: "${ tell.recipients }" }
"#,
        json!({"reporter": "r@example.org", "others": ["a@example.org", "b@example.org"], "case": "c-1"}),
        "start",
        r#"
            > create
            > start
              instance_started
              step_completed tell
              step_completed _1
              instance_completed
              ! queue_mail {"data":{"case":"c-1"},"step":"tell","template":"receipt","to":["r@example.org"],"cc":["role:leader","a@example.org","b@example.org"],"bcc":[],"locale":"en"}
              ! ended {"output":4,"outcome":"told"}
            = completed told 4
        "#,
    );
}

#[test]
fn cancel_drops_every_timer_and_wait() {
    check(
        r#"
id: par
steps:
  - parallel:
      branches:
        - steps:
            - wait: { for: 1h }
        - steps:
            - wait: { event: reply, key: "${ 'k' }", timeout: 1d }
  - end: never
"#,
        json!({}),
        "start
         cancel withdrawn by the reporter
         @+1h timer 5
         signal reply key=k",
        r#"
            > create
            > start
              instance_started
              step_started _0
              step_waiting _1
              step_waiting _2
              ! arm_timer {"at":"2025-01-06T02:00:00Z","timer":5}
              ! arm_timer {"at":"2025-01-07T01:00:00Z","timer":6}
              ! subscribe {"key":"k","name":"reply"}
            > cancel withdrawn by the reporter
              instance_cancelled
              ! cancel_timer {"timer":5}
              ! cancel_timer {"timer":6}
              ! unsubscribe {"key":"k","name":"reply"}
              ! ended {"output":null,"outcome":"cancelled"}
            > @+1h timer 5
              event_ignored
            > signal reply key=k
              event_ignored
            = cancelled: withdrawn by the reporter
        "#,
    );
}

#[test]
fn an_expression_error_fails_naming_the_step() {
    check(
        r#"
id: bad
steps:
  - id: fine
    set: { x: 1 }
  - id: broken
    set: { y: "${ input.text + 1 }" }
"#,
        json!({"text": "abc"}),
        "start",
        r#"
            > create
            > start
              instance_started
              step_completed fine
              instance_failed broken
              ! ended {"output":null,"outcome":"failed"}
            = failed broken: setting `y`: evaluating `input.text + 1`: invalid operation: tried to use + operator on unsupported types string and number
        "#,
    );
}

#[test]
fn a_loop_that_never_waits_fails_instead_of_hanging() {
    let wf = compile(
        r#"
id: spin
steps:
  - id: again
    set: { n: 1 }
  - id: back
    goto: again
"#,
    );
    let (mut inst, _) = engine::create(&wf, "i1".into(), json!({}), None, t0()).unwrap();
    let limits = clearflow_core::Limits::default();
    let started = std::time::Instant::now();
    // Sliced every `steps_per_advance` steps; the guard counts across the slices.
    let t = engine::apply_to_wait(&wf, &mut inst, Event::Start, t0(), &CALENDARS, &limits);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(
        render_status(&inst.status),
        format!(
            "= failed again: more than {} steps without waiting: the workflow loops without end (limits.steps_without_wait)",
            limits.steps_without_wait
        )
    );
    assert_eq!(t.steps, limits.steps_without_wait);
    assert!(t.history.len() <= limits.steps_without_wait as usize + 3);
}

#[test]
fn a_second_start_is_ignored() {
    check(
        r#"
id: twice
steps:
  - id: hold
    wait: { for: 1h }
"#,
        json!({}),
        "start
         start
         @+1h timer 2",
        r#"
            > create
            > start
              instance_started
              step_waiting hold
              ! arm_timer {"at":"2025-01-06T02:00:00Z","timer":2}
            > start
              event_ignored
            > @+1h timer 2
              step_completed hold
              instance_completed
              ! ended {"output":null,"outcome":"completed"}
            = completed completed null
        "#,
    );
}

#[test]
fn create_refuses_input_against_the_schema() {
    let wf = compile(
        r#"
id: typed
input: { type: object, required: [case], properties: { case: { type: string } } }
steps:
  - end: done
"#,
    );
    let err = engine::create(&wf, "i1".into(), json!({"case": 1}), None, t0()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "input does not match the schema of `typed`: /case: 1 is not of type \"string\""
    );
}

/// The shipped calendars plus the 2027 test file, as after an administrator added it.
static CALENDARS_2027: LazyLock<clearflow_time::Calendars> = LazyLock::new(|| {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::temp_dir().join(format!("clearflow-core-calendars-{}", std::process::id()));
    let region = dir.join("cn-mainland");
    std::fs::create_dir_all(&region).expect("temp calendar dir");
    for from in [
        root.join("workflows/calendars/cn-mainland"),
        root.join("tests/fixtures/calendars/cn-mainland"),
    ] {
        for entry in std::fs::read_dir(&from).expect("calendar folder") {
            let p = entry.expect("entry").path();
            std::fs::copy(&p, region.join(p.file_name().expect("name"))).expect("copy");
        }
    }
    let calendars = clearflow_time::load_dir(&dir).unwrap_or_else(|e| panic!("calendars: {e:?}"));
    let _ = std::fs::remove_dir_all(&dir);
    calendars
});

const PROVISIONAL_WF: &str = r#"
id: late
calendar: cn-mainland
steps:
  - id: wait_long
    wait: { for: 30wd }
  - id: answer
    wait: { event: answer, timeout: 30wd }
  - end: done
"#;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("rfc3339")
        .with_timezone(&Utc)
}

/// Applies `event` at `now` with `calendars`, after a JSON round trip of the state.
fn step(
    wf: &Workflow,
    inst: &mut Instance,
    event: Event,
    now: &str,
    calendars: &clearflow_time::Calendars,
) -> Transition {
    let text = serde_json::to_string(&*inst).expect("state serialises");
    *inst = serde_json::from_str(&text).expect("state deserialises");
    engine::apply(wf, inst, event, &Env::new(at(now), calendars))
}

fn kinds(t: &Transition) -> Vec<String> {
    t.history
        .iter()
        .map(|h| format!("{} {}", h.kind, h.step.as_deref().unwrap_or("-")))
        .collect()
}

#[test]
fn a_deadline_past_the_calendar_is_provisional_and_recomputed_when_it_is_extended() {
    let wf = compile(PROVISIONAL_WF);
    // Monday 2026-12-07 09:00 in Shanghai. Thirty working days end in January 2027, a
    // year the shipped calendars do not cover: weekends only, New Year's Day (Friday
    // 2027-01-01) counts as a working day, so the provisional end is Monday 18 January.
    let start = "2026-12-07T01:00:00Z";
    let (mut inst, _) = engine::create(&wf, "i1".into(), json!({}), None, at(start)).unwrap();
    let t = step(&wf, &mut inst, Event::Start, start, &CALENDARS);
    assert_eq!(
        kinds(&t),
        [
            "instance_started -",
            "deadline_provisional wait_long",
            "step_waiting wait_long"
        ]
    );
    let provisional_at = at("2027-01-18T15:59:59.999999999Z");
    assert_eq!(
        t.effects,
        [Effect::ArmTimer {
            timer: 2,
            at: provisional_at
        }]
    );
    assert_eq!(t.history[2].detail["provisional"], json!(true));
    assert_eq!(inst.provisional.timers.len(), 1);
    let p = &inst.provisional.timers[&2];
    assert_eq!(
        (p.token, p.step.as_str(), p.span.as_str(), p.from, p.at),
        (1, "wait_long", "30wd", at(start), provisional_at)
    );

    // Reloading with the same calendars changes nothing and keeps the timer provisional.
    let t = step(
        &wf,
        &mut inst,
        Event::Recalendar,
        "2026-12-20T01:00:00Z",
        &CALENDARS,
    );
    assert!(t.effects.is_empty(), "{:?}", t.effects);
    assert_eq!(kinds(&t), ["deadline_recomputed wait_long"]);
    assert_eq!(t.history[0].detail["provisional"], json!(true));
    assert_eq!(inst.provisional.timers.keys().collect::<Vec<_>>(), [&2]);

    // The 2027 file arrives: New Year's Day is a holiday, so the wait ends one working
    // day later, counted from the original start, not from the reload.
    let t = step(
        &wf,
        &mut inst,
        Event::Recalendar,
        "2026-12-21T01:00:00Z",
        &CALENDARS_2027,
    );
    let recomputed = at("2027-01-19T15:59:59.999999999Z");
    assert_eq!(
        t.effects,
        [
            Effect::CancelTimer { timer: 2 },
            Effect::ArmTimer {
                timer: 3,
                at: recomputed
            }
        ]
    );
    assert_eq!(kinds(&t), ["deadline_recomputed wait_long"]);
    assert_eq!(
        t.history[0].detail,
        json!({"span": "30wd", "was": provisional_at, "until": recomputed, "provisional": false})
    );
    assert!(inst.provisional.timers.is_empty(), "no longer provisional");
    assert_eq!(
        inst.tokens[&1].wait,
        engine::Wait::Timer {
            timer: 3,
            at: recomputed
        }
    );

    // The old timer is stale; the new one moves the instance on. The next step's
    // timeout (30wd from 2027-01-19) runs into 2027-03, which is covered now.
    let t = step(
        &wf,
        &mut inst,
        Event::Timer { timer: 2 },
        "2027-01-18T16:00:00Z",
        &CALENDARS_2027,
    );
    assert_eq!(kinds(&t), ["event_ignored -"]);
    let t = step(
        &wf,
        &mut inst,
        Event::Timer { timer: 3 },
        "2027-01-19T16:00:00Z",
        &CALENDARS_2027,
    );
    assert_eq!(
        kinds(&t),
        ["step_completed wait_long", "step_waiting answer"]
    );
    assert!(inst.provisional.timers.is_empty());
    // A further reload finds nothing to do.
    let t = step(
        &wf,
        &mut inst,
        Event::Recalendar,
        "2027-01-20T01:00:00Z",
        &CALENDARS_2027,
    );
    assert_eq!((t.effects.len(), t.history.len()), (0, 0));
}

#[test]
fn provisional_timeouts_are_recomputed_and_reported_once_per_step() {
    let wf = compile(
        r#"
id: late-loop
calendar: cn-mainland
steps:
  - id: init
    set: { count: 0 }
  - id: answer
    wait: { event: answer, timeout: 30wd }
  - id: count
    set: { count: "${ vars.count + 1 }" }
  - id: again
    if: vars.count < 2
    goto: answer
  - end: done
"#,
    );
    let start = "2026-12-07T01:00:00Z";
    let (mut inst, _) = engine::create(&wf, "i1".into(), json!({}), None, at(start)).unwrap();
    let t = step(&wf, &mut inst, Event::Start, start, &CALENDARS);
    let k = kinds(&t);
    assert_eq!(
        k.iter()
            .filter(|k| *k == "deadline_provisional answer")
            .count(),
        1,
        "{k:?}"
    );
    assert_eq!(k.last().map(String::as_str), Some("step_waiting answer"));
    // The answer comes, the step loops and waits again: still provisional, not reported again.
    let t = step(
        &wf,
        &mut inst,
        Event::Signal {
            name: "answer".into(),
            key: None,
            data: json!({"ok": true}),
        },
        "2026-12-08T01:00:00Z",
        &CALENDARS,
    );
    assert!(
        !kinds(&t)
            .iter()
            .any(|k| k.starts_with("deadline_provisional"))
    );
    assert!(kinds(&t).contains(&"step_waiting answer".to_owned()));
    // Only the current wait's timeout is provisional: the first one was cancelled.
    let timers: Vec<u32> = inst.provisional.timers.keys().copied().collect();
    let engine::Wait::Event {
        timer: Some(current),
        ..
    } = inst.tokens.values().next().expect("a token").wait
    else {
        panic!("waits for the event")
    };
    assert_eq!(timers, [current]);
    let t = step(
        &wf,
        &mut inst,
        Event::Recalendar,
        "2026-12-09T01:00:00Z",
        &CALENDARS_2027,
    );
    // 30 working days from 2026-12-08 09:00 cross New Year's Day: one day later.
    assert_eq!(
        t.effects,
        [
            Effect::CancelTimer { timer: current },
            Effect::ArmTimer {
                timer: current + 1,
                at: at("2027-01-20T15:59:59.999999999Z")
            }
        ]
    );
    assert!(inst.provisional.timers.is_empty());
    assert!(matches!(
        inst.tokens.values().next().expect("token").wait,
        engine::Wait::Event { timer: Some(t), .. } if t == current + 1
    ));
}

/// A three-tier review (承办 → 部门负责人 → 分管领导): each tier a different person.
const TIERS: &str = r#"
id: tiers
calendar: cn-mainland
roles: [handler, head, leader]
steps:
  - id: draft
    task:
      role: handler
      notify_assigned: false
      form:
        type: object
        required: [text, pages]
        properties: { text: { type: string, minLength: 5 }, pages: { type: integer } }
  - id: review_1
    task: { role: head, distinct_from: [draft], distinct_from_initiator: true, on_reject: draft, notify_assigned: false }
  - id: review_2
    task: { role: leader, distinct_from: [draft, review_1], on_reject: draft, notify_assigned: false }
  - end: approved
"#;

#[test]
fn separation_of_duties_refuses_a_second_tier_and_the_initiator() {
    check(
        TIERS,
        json!({}),
        "start
         done 1 bob {\"text\": \"draft text\", \"pages\": 2}
         done 1 ann {}
         done 1 bob {}
         done 1 li.na {}
         done 1 li.na {}
         done 1 chen {}",
        r#"
            > create
            > start
              instance_started
              step_waiting draft
              ! create_task {"follow_up":null,"task":2,"token":1,"step":"draft","title":null,"role":"handler","assignee":null,"due":null,"provisional":false,"priority":0}
            > done 1 bob {"text": "draft text", "pages": 2}
              task_completed draft
              step_completed draft
              step_waiting review_1
              ! create_task {"follow_up":null,"task":3,"token":1,"step":"review_1","title":null,"role":"head","assignee":null,"due":null,"provisional":false,"priority":0}
            > done 1 ann {}
              task_refused review_1
              ! reopen_task {"reasons":["ann started this instance; `review_1` needs someone other than the initiator"],"task":3}
            > done 1 bob {}
              task_refused review_1
              ! reopen_task {"reasons":["bob completed `draft`; `review_1` needs a different person"],"task":3}
            > done 1 li.na {}
              task_completed review_1
              step_completed review_1
              step_waiting review_2
              ! create_task {"follow_up":null,"task":4,"token":1,"step":"review_2","title":null,"role":"leader","assignee":null,"due":null,"provisional":false,"priority":0}
            > done 1 li.na {}
              task_refused review_2
              ! reopen_task {"reasons":["li.na completed `review_1`; `review_2` needs a different person"],"task":4}
            > done 1 chen {}
              task_completed review_2
              step_completed review_2
              step_completed _3
              instance_completed
              ! ended {"output":null,"outcome":"approved"}
            = completed approved null
        "#,
    );
}

#[test]
fn an_invalid_form_is_refused_with_every_violation_and_changes_nothing() {
    check(
        TIERS,
        json!({}),
        "start
         done 1 bob {\"text\": \"abc\", \"pages\": \"two\"}
         done 1 bob {\"pages\": 1}
         reject 1 bob no reason to draft
         done 1 bob {\"text\": \"a long enough text\", \"pages\": 1}
         reject 1 li.na needs sources
         done 1 carl {\"text\": \"with sources now\", \"pages\": 3}",
        r#"
            > create
            > start
              instance_started
              step_waiting draft
              ! create_task {"follow_up":null,"task":2,"token":1,"step":"draft","title":null,"role":"handler","assignee":null,"due":null,"provisional":false,"priority":0}
            > done 1 bob {"text": "abc", "pages": "two"}
              task_refused draft
              ! reopen_task {"reasons":["form: /text: \"abc\" is shorter than 5 characters","form: /pages: \"two\" is not of type \"integer\""],"task":2}
            > done 1 bob {"pages": 1}
              task_refused draft
              ! reopen_task {"reasons":["form: \"text\" is a required property"],"task":2}
            > reject 1 bob no reason to draft
              task_refused draft
              ! reopen_task {"reasons":["`draft` cannot be rejected: the step has no `on_reject`"],"task":2}
            > done 1 bob {"text": "a long enough text", "pages": 1}
              task_completed draft
              step_completed draft
              step_waiting review_1
              ! create_task {"follow_up":null,"task":3,"token":1,"step":"review_1","title":null,"role":"head","assignee":null,"due":null,"provisional":false,"priority":0}
            > reject 1 li.na needs sources
              task_rejected review_1
              step_waiting draft
              ! create_task {"follow_up":null,"task":4,"token":1,"step":"draft","title":null,"role":"handler","assignee":null,"due":null,"provisional":false,"priority":0}
            > done 1 carl {"text": "with sources now", "pages": 3}
              task_completed draft
              step_completed draft
              step_waiting review_1
              ! create_task {"follow_up":null,"task":5,"token":1,"step":"review_1","title":null,"role":"head","assignee":null,"due":null,"provisional":false,"priority":0}
            = running
        "#,
    );
}

#[test]
fn check_task_action_lists_every_refusal() {
    use clearflow_core::engine::{RefusalKind, TaskAction, check_task_action};
    let wf = compile(TIERS);
    let (mut inst, _) =
        engine::create(&wf, "i1".into(), json!({}), Some("li.na".into()), t0()).unwrap();
    let env = Env::new(t0(), &CALENDARS);
    engine::apply(&wf, &mut inst, Event::Start, &env);
    let form = TaskAction::Complete {
        form: json!({"text": 1}),
    };
    let err = check_task_action(&wf, &inst, 2, "bob", &form).unwrap_err();
    let got: Vec<(RefusalKind, String)> = err.into_iter().map(|r| (r.kind, r.message)).collect();
    assert_eq!(
        got,
        vec![
            (
                RefusalKind::Form,
                "form: \"pages\" is a required property".to_owned()
            ),
            (
                RefusalKind::Form,
                "form: /text: 1 is not of type \"string\"".to_owned()
            ),
        ]
    );
    let reject = TaskAction::Reject { reason: " ".into() };
    let got: Vec<String> = check_task_action(&wf, &inst, 2, "bob", &reject)
        .unwrap_err()
        .into_iter()
        .map(|r| r.message)
        .collect();
    assert_eq!(
        got,
        vec![
            "`draft` cannot be rejected: the step has no `on_reject`".to_owned(),
            "a rejection needs a reason".to_owned(),
        ]
    );
    engine::apply(
        &wf,
        &mut inst,
        Event::TaskCompleted {
            token: 1,
            actor: "li.na".into(),
            form: json!({"text": "hello world", "pages": 1}),
            task: Some(2),
        },
        &env,
    );
    let ok = TaskAction::Complete { form: json!({}) };
    let got: Vec<(RefusalKind, String)> = check_task_action(&wf, &inst, 3, "li.na", &ok)
        .unwrap_err()
        .into_iter()
        .map(|r| (r.kind, r.message))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                RefusalKind::SeparationOfDuties,
                "li.na completed `draft`; `review_1` needs a different person".to_owned()
            ),
            (
                RefusalKind::SeparationOfDuties,
                "li.na started this instance; `review_1` needs someone other than the initiator"
                    .to_owned()
            ),
        ]
    );
    assert_eq!(check_task_action(&wf, &inst, 3, "wang", &ok), Ok(()));
    let closed = check_task_action(&wf, &inst, 2, "wang", &ok).unwrap_err();
    assert_eq!(closed[0].kind, RefusalKind::NotOpen);
    assert_eq!(closed[0].message, "task 2 of instance i1 is not open");
    // A claim is refused for the same separation reasons (and for nothing about a form).
    use clearflow_core::engine::check_claim;
    let claim: Vec<RefusalKind> = check_claim(&wf, &inst, 3, "li.na")
        .unwrap_err()
        .into_iter()
        .map(|r| r.kind)
        .collect();
    assert_eq!(claim, vec![RefusalKind::SeparationOfDuties; 2]);
    assert_eq!(check_claim(&wf, &inst, 3, "wang"), Ok(()));
    assert_eq!(
        check_claim(&wf, &inst, 2, "wang").unwrap_err()[0].kind,
        RefusalKind::NotOpen
    );
}

/// Due in 5 working days, reminded 2 working days before and on the due date, then every
/// working day after it; escalated 3 working days late to the leader and reassigned.
const REMIND: &str = r#"
id: remind
calendar: cn-mainland
roles: [handler, leader, head]
steps:
  - id: verify
    task:
      role: handler
      assignee: "input.who"
      title: "verify ${ input.case_number }"
      due: 5wd
      follow_up: 1d
      remind: [-2wd, 0d]
      remind_every: 1wd
      escalate: { after: 3wd, notify: leader, reassign: head }
      priority: 5
  - end: done
"#;

#[test]
fn reminders_follow_up_repeats_and_escalation_are_timers() {
    check(
        REMIND,
        json!({"who": "li.na", "case_number": "JW-7"}),
        "start
         @2025-01-07T01:00:00Z timer 7
         @2025-01-08T16:00:00Z timer 3
         @2025-01-13T15:59:59.999999999Z timer 4
         @2025-01-14T15:59:59.999999999Z timer 5
         @2025-01-15T15:59:59.999999999Z timer 8
         @2025-01-16T15:59:59.999999999Z timer 6
         timer 9
         @+1h done 1 wang {\"ok\": true}
         timer 10",
        r#"
            > create
            > start
              instance_started
              step_waiting verify
              ! create_task {"follow_up":"2025-01-07T01:00:00Z","task":2,"token":1,"step":"verify","title":"verify JW-7","role":"handler","assignee":"li.na","due":"2025-01-13T15:59:59.999999999Z","provisional":false,"priority":5}
              ! arm_timer {"at":"2025-01-08T16:00:00Z","timer":3}
              ! arm_timer {"at":"2025-01-13T15:59:59.999999999Z","timer":4}
              ! arm_timer {"at":"2025-01-14T15:59:59.999999999Z","timer":5}
              ! arm_timer {"at":"2025-01-16T15:59:59.999999999Z","timer":6}
              ! arm_timer {"at":"2025-01-07T01:00:00Z","timer":7}
              ! queue_mail {"data":{"task":{"number":2,"title":"verify JW-7","role":"handler","due":"2025-01-13 23:59","overdue_days":null},"case":{"number":"JW-7"}},"step":"verify","template":"task-assigned","to":["user:li.na"],"cc":[],"bcc":[],"locale":null}
            > @2025-01-07T01:00:00Z timer 7
              task_reminded verify
              ! queue_mail {"data":{"task":{"number":2,"title":"verify JW-7","role":"handler","due":"2025-01-13 23:59","overdue_days":null},"case":{"number":"JW-7"}},"step":"verify","template":"task-reminder","to":["user:li.na"],"cc":[],"bcc":[],"locale":null}
            > @2025-01-08T16:00:00Z timer 3
              task_reminded verify
              ! queue_mail {"data":{"task":{"number":2,"title":"verify JW-7","role":"handler","due":"2025-01-13 23:59","overdue_days":null},"case":{"number":"JW-7"}},"step":"verify","template":"task-reminder","to":["user:li.na"],"cc":[],"bcc":[],"locale":null}
            > @2025-01-13T15:59:59.999999999Z timer 4
              task_reminded verify
              ! queue_mail {"data":{"task":{"number":2,"title":"verify JW-7","role":"handler","due":"2025-01-13 23:59","overdue_days":null},"case":{"number":"JW-7"}},"step":"verify","template":"task-reminder","to":["user:li.na"],"cc":[],"bcc":[],"locale":null}
            > @2025-01-14T15:59:59.999999999Z timer 5
              task_reminded verify
              ! queue_mail {"data":{"task":{"number":2,"title":"verify JW-7","role":"handler","due":"2025-01-13 23:59","overdue_days":null},"case":{"number":"JW-7"}},"step":"verify","template":"task-reminder","to":["user:li.na"],"cc":[],"bcc":[],"locale":null}
              ! arm_timer {"at":"2025-01-15T15:59:59.999999999Z","timer":8}
            > @2025-01-15T15:59:59.999999999Z timer 8
              task_reminded verify
              ! queue_mail {"data":{"task":{"number":2,"title":"verify JW-7","role":"handler","due":"2025-01-13 23:59","overdue_days":null},"case":{"number":"JW-7"}},"step":"verify","template":"task-reminder","to":["user:li.na"],"cc":[],"bcc":[],"locale":null}
              ! arm_timer {"at":"2025-01-16T15:59:59.999999999Z","timer":9}
            > @2025-01-16T15:59:59.999999999Z timer 6
              task_escalated verify
              task_reassigned verify
              ! queue_mail {"data":{"task":{"number":2,"title":"verify JW-7","role":"handler","due":"2025-01-13 23:59","overdue_days":3},"case":{"number":"JW-7"}},"step":"verify","template":"task-overdue-escalation","to":["leader:li.na","role:leader"],"cc":[],"bcc":[],"locale":null}
              ! reassign_task {"role":"head","task":2}
              ! queue_mail {"data":{"task":{"number":2,"title":"verify JW-7","role":"head","due":"2025-01-13 23:59","overdue_days":null},"case":{"number":"JW-7"}},"step":"verify","template":"task-assigned","to":["role:head"],"cc":[],"bcc":[],"locale":null}
            > timer 9
              task_reminded verify
              ! queue_mail {"data":{"task":{"number":2,"title":"verify JW-7","role":"head","due":"2025-01-13 23:59","overdue_days":null},"case":{"number":"JW-7"}},"step":"verify","template":"task-reminder","to":["role:head"],"cc":[],"bcc":[],"locale":null}
              ! arm_timer {"at":"2025-01-17T15:59:59.999999999Z","timer":10}
            > @+1h done 1 wang {"ok": true}
              task_completed verify
              step_completed verify
              step_completed _1
              instance_completed
              ! cancel_timer {"timer":10}
              ! ended {"output":null,"outcome":"done"}
            > timer 10
              event_ignored
            = completed done null
        "#,
    );
}

const ESCALATE_GOTO: &str = r#"
id: goto
calendar: cn-mainland
roles: [handler, leader]
steps:
  - id: verify
    task: { role: handler, due: 2d, escalate: { after: 1d, goto: take_over, notify: leader } }
  - end: verified
  - id: take_over
    task: { role: leader, notify_assigned: false }
  - end: taken_over
"#;

#[test]
fn escalation_goto_closes_the_task_and_jumps() {
    check(
        ESCALATE_GOTO,
        json!({}),
        "start
         @2025-01-09T01:00:00Z timer 3
         done 1 boss {}",
        r#"
            > create
            > start
              instance_started
              step_waiting verify
              ! create_task {"follow_up":null,"task":2,"token":1,"step":"verify","title":null,"role":"handler","assignee":null,"due":"2025-01-08T01:00:00Z","provisional":false,"priority":0}
              ! arm_timer {"at":"2025-01-09T01:00:00Z","timer":3}
              ! queue_mail {"data":{"task":{"number":2,"title":"verify","role":"handler","due":"2025-01-08 09:00","overdue_days":null},"case":{"number":"i1"}},"step":"verify","template":"task-assigned","to":["role:handler"],"cc":[],"bcc":[],"locale":null}
            > @2025-01-09T01:00:00Z timer 3
              task_escalated verify
              step_waiting take_over
              ! queue_mail {"data":{"task":{"number":2,"title":"verify","role":"handler","due":"2025-01-08 09:00","overdue_days":1},"case":{"number":"i1"}},"step":"verify","template":"task-overdue-escalation","to":["role:leader"],"cc":[],"bcc":[],"locale":null}
              ! close_task {"task":2}
              ! create_task {"follow_up":null,"task":4,"token":1,"step":"take_over","title":null,"role":"leader","assignee":null,"due":null,"provisional":false,"priority":0}
            > done 1 boss {}
              task_completed take_over
              step_completed take_over
              step_completed _3
              instance_completed
              ! ended {"output":null,"outcome":"taken_over"}
            = completed taken_over null
        "#,
    );
}

const BRANCHES: &str = r#"
id: branches
roles: [handler]
steps:
  - id: both
    parallel:
      join: any
      branches:
        - steps:
            - id: quick
              wait: { for: 1h }
        - steps:
            - id: slow
              task: { role: handler, due: 3d, remind: [-1d], escalate: { after: 1d, notify: handler }, notify_assigned: false }
  - end: done
"#;

#[test]
fn a_cancelled_branch_closes_its_task_and_its_timers() {
    check(
        BRANCHES,
        json!({}),
        "start\n @+1h timer 5",
        r#"
            > create
            > start
              instance_started
              step_started both
              step_waiting quick
              step_waiting slow
              ! arm_timer {"at":"2025-01-06T02:00:00Z","timer":5}
              ! create_task {"follow_up":null,"task":6,"token":4,"step":"slow","title":null,"role":"handler","assignee":null,"due":"2025-01-09T01:00:00Z","provisional":false,"priority":0}
              ! arm_timer {"at":"2025-01-08T01:00:00Z","timer":7}
              ! arm_timer {"at":"2025-01-10T01:00:00Z","timer":8}
            > @+1h timer 5
              step_completed quick
              branch_cancelled slow
              step_completed both
              step_completed _3
              instance_completed
              ! cancel_timer {"timer":7}
              ! cancel_timer {"timer":8}
              ! close_task {"task":6}
              ! ended {"output":null,"outcome":"done"}
            = completed done null
        "#,
    );
}

#[test]
fn a_provisional_task_due_date_moves_with_its_reminders_when_the_calendar_is_extended() {
    let wf = compile(
        r#"
id: late-task
calendar: cn-mainland
roles: [handler, leader]
steps:
  - id: answer
    task:
      role: handler
      due: 30wd
      remind: [-2wd]
      follow_up: 1d
      escalate: { after: 1wd, notify: leader }
  - end: done
"#,
    );
    // Monday 2026-12-07 09:00 in Shanghai: the due date is counted on weekends only
    // into January 2027, as for the wait above: Monday 18 January.
    let start = "2026-12-07T01:00:00Z";
    let (mut inst, _) = engine::create(&wf, "i1".into(), json!({}), None, at(start)).unwrap();
    let t = step(&wf, &mut inst, Event::Start, start, &CALENDARS);
    let provisional_due = at("2027-01-18T15:59:59.999999999Z");
    let created = t
        .effects
        .iter()
        .find_map(|e| match e {
            Effect::CreateTask {
                task,
                due,
                provisional,
                ..
            } => Some((*task, *due, *provisional)),
            _ => None,
        })
        .expect("a task");
    assert_eq!((created.1, created.2), (Some(provisional_due), true));
    let task = created.0;
    assert!(kinds(&t).contains(&"deadline_provisional answer".to_owned()));
    assert_eq!(inst.provisional.tasks[&task].at, provisional_due);
    let before = inst.tasks[&task].timers.clone();
    assert_eq!(
        before.len(),
        3,
        "reminder, follow-up, escalation: {before:?}"
    );

    // The administrator adds 2027 (New Year's Day a holiday): one working day later.
    let t = step(
        &wf,
        &mut inst,
        Event::Recalendar,
        "2026-12-20T01:00:00Z",
        &CALENDARS_2027,
    );
    let due = at("2027-01-19T15:59:59.999999999Z");
    assert!(t.effects.contains(&Effect::RescheduleTask {
        task,
        due,
        provisional: false
    }));
    let cancelled: Vec<u32> = t
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::CancelTimer { timer } => Some(*timer),
            _ => None,
        })
        .collect();
    let armed: Vec<DateTime<Utc>> = t
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::ArmTimer { at, .. } => Some(*at),
            _ => None,
        })
        .collect();
    assert_eq!(cancelled.len(), 2, "the reminder and the escalation move");
    assert_eq!(armed.len(), 2);
    // Two working days before Tuesday 19 January: the start of Friday 15 January (Shanghai);
    // one working day after it: the end of the 20th.
    assert!(armed.contains(&at("2027-01-14T16:00:00Z")), "{armed:?}");
    assert!(
        armed.contains(&at("2027-01-20T15:59:59.999999999Z")),
        "{armed:?}"
    );
    let follow_up = before
        .iter()
        .find(|(_, k)| format!("{k:?}") == "FollowUp")
        .map(|(id, _)| *id)
        .expect("follow-up timer");
    assert!(
        !cancelled.contains(&follow_up),
        "the follow-up keeps its own date"
    );
    assert_eq!(inst.tasks[&task].due, Some(due));
    assert!(inst.provisional.tasks.is_empty(), "no longer provisional");
    assert!(kinds(&t).contains(&"deadline_recomputed answer".to_owned()));

    // A second reload changes nothing.
    let t = step(
        &wf,
        &mut inst,
        Event::Recalendar,
        "2026-12-21T01:00:00Z",
        &CALENDARS_2027,
    );
    assert_eq!((t.effects.len(), t.history.len()), (0, 0));
}

/// `identity_read:` names the approval step: before it is done, and when it refuses, a read
/// through the instance is refused; once it grants, the read rests on who approved. A
/// workflow that says `allowed: false` refuses always; one that says nothing leaves the
/// decision to the permission.
#[test]
fn identity_read_follows_the_workflows_approval_rule() {
    use clearflow_core::engine::{IdentityApproval, IdentityReadRefused, identity_read_allowed};
    let approved = compile(
        r#"
id: investigation
roles: [leader]
identity_read: { approval: decide, granted: decide.granted }
steps:
  - id: decide
    task:
      role: leader
      form: { type: object, required: [granted], properties: { granted: { type: boolean } } }
  - id: after
    task: { role: leader }
"#,
    );
    let refused = Err(IdentityReadRefused::NotApproved {
        instance: "i1".into(),
        step: "decide".into(),
    });
    let (_, inst) = run(&approved, &json!({}), "start", false);
    assert_eq!(identity_read_allowed(&approved, &inst, t0()), refused);
    let (_, inst) = run(
        &approved,
        &json!({}),
        "start\ndone 1 zhou {\"granted\": false}",
        false,
    );
    assert_eq!(identity_read_allowed(&approved, &inst, t0()), refused);
    let (_, inst) = run(
        &approved,
        &json!({}),
        "start\ndone 1 zhou {\"granted\": true}",
        false,
    );
    assert_eq!(
        identity_read_allowed(&approved, &inst, t0()),
        Ok(Some(IdentityApproval {
            step: "decide".into(),
            by: "zhou".into()
        }))
    );

    let never = compile(
        "id: complaint\nidentity_read: { allowed: false }\nsteps:\n  - id: s\n    set: { a: 1 }\n",
    );
    let (_, inst) = run(&never, &json!({}), "", false);
    assert_eq!(
        identity_read_allowed(&never, &inst, t0()),
        Err(IdentityReadRefused::Never {
            workflow: "complaint".into()
        })
    );
    let silent = compile("id: plain\nsteps:\n  - id: s\n    set: { a: 1 }\n");
    let (_, inst) = run(&silent, &json!({}), "", false);
    assert_eq!(identity_read_allowed(&silent, &inst, t0()), Ok(None));
}
