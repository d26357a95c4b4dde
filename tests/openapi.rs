//! The OpenAPI document: the committed `docs/openapi.json` is what the code generates,
//! routes are registered only together with their operation, and every documented
//! operation is served by the real daemon with the security the document states.

use clearflow_testkit as support;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use support::model::{self, ProblemBody, StartReply};
use support::{Backend, Daemon, fixtures};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

fn committed() -> String {
    std::fs::read_to_string(repo().join("docs/openapi.json")).expect("docs/openapi.json")
}

const REGENERATE: &str = "run `cargo run -p clearflow -- openapi > docs/openapi.json`";

#[test]
fn committed_document_is_current() {
    let generated = clearflow_api::openapi::to_json();
    if generated != committed() {
        let first = generated
            .lines()
            .zip(committed().lines())
            .position(|(a, b)| a != b)
            .map_or("the length".to_owned(), |n| format!("line {}", n + 1));
        panic!("docs/openapi.json is stale (first difference at {first}): {REGENERATE}");
    }
}

/// Every (method, path) of a document, and the operation.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            out.push((method.to_uppercase(), path.clone(), op.clone()));
        }
    }
    out
}

#[test]
fn operations_are_unique_tagged_and_answer_errors_as_problems() {
    let doc: Value = serde_json::from_str(&committed()).expect("JSON");
    let ops = operations(&doc);
    assert!(ops.len() >= 30, "{} operations", ops.len());
    let mut ids: Vec<&str> = ops
        .iter()
        .map(|(_, _, op)| op["operationId"].as_str().expect("operationId"))
        .collect();
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    assert_eq!(before, ids.len(), "duplicate operation ids: {ids:?}");
    let tags: Vec<&str> = doc["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    for (method, path, op) in &ops {
        let what = format!("{method} {path}");
        let tag = op["tags"][0].as_str().unwrap_or_default();
        assert!(tags.contains(&tag), "{what}: tag `{tag}` is not declared");
        for (status, response) in op["responses"].as_object().expect("responses") {
            assert!(
                response["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{what} {status}: no description"
            );
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    response["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{what} {status}: errors are problem details"
                );
            }
        }
        // Every path parameter of the template is declared, and nothing else in the path.
        let declared: Vec<&str> = op["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().expect("name"))
                    .collect()
            })
            .unwrap_or_default();
        let in_template: Vec<&str> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        assert_eq!(declared, in_template, "{what}: path parameters");
    }
}

/// Routes reach the router only through utoipa-axum's `routes!`, which registers the
/// handler's `#[utoipa::path]` operation at the same time; a plain axum registration
/// would serve a route the document does not know.
#[test]
fn routes_are_registered_only_with_their_operation() {
    let mut offences = Vec::new();
    let mut stack = vec![repo().join("daemon/src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read");
            for (n, line) in text.lines().enumerate() {
                let plain_router = line
                    .match_indices("Router::new(")
                    .any(|(i, _)| !line[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_'));
                let registration = [".route(", ".route_service(", ".nest(", ".nest_service("]
                    .iter()
                    .any(|p| line.contains(p));
                if plain_router || registration {
                    offences.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "register routes with utoipa-axum's `routes!` and a `#[utoipa::path]` operation \
         (see `api::routes`), not plain axum:\n{}",
        offences.join("\n")
    );
}

/// Whether the daemon serves `method path`: anything but the router's fallback (404
/// `no such endpoint`) or 405 means a route matched.
fn served(status: u16, body: &Value) -> bool {
    status != 405 && !(status == 404 && body["detail"] == "no such endpoint")
}

fn call(d: &Daemon, token: Option<&str>, method: &str, path: &str) -> (u16, Value) {
    call_with(d, token, method, path, &json!({}))
}

fn call_with(
    d: &Daemon,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    match method {
        "GET" => d.try_get_as(token, path),
        "POST" => d.try_post_as(token, path, body),
        other => panic!("the test does not know method {other}"),
    }
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// A body read as the [`model`] type a schema name stands for; the error names the type.
fn reads_as(name: &str, body: &Value) -> Result<(), String> {
    fn read<T: serde::de::DeserializeOwned>(body: &Value) -> Result<(), String> {
        serde_json::from_value::<T>(body.clone())
            .map(drop)
            .map_err(|e| format!("not a {}: {e}", std::any::type_name::<T>()))
    }
    match name {
        "Problem" => read::<ProblemBody>(body),
        "WorkflowList" => read::<model::WorkflowList>(body),
        "WorkflowDetail" => read::<model::WorkflowDetail>(body),
        "ValidateReply" => read::<model::ValidateReply>(body),
        "InstancePage" => read::<model::InstancePage>(body),
        "InstanceDetail" => read::<model::InstanceDetail>(body),
        "StartReply" => read::<StartReply>(body),
        "Delivered" => read::<model::Delivered>(body),
        "Accepted" => read::<model::Accepted>(body),
        "DeliveredTo" => read::<model::DeliveredTo>(body),
        "ClockReply" => read::<model::ClockReply>(body),
        "ClockSet" => read::<model::ClockSet>(body),
        "AuditPage" => read::<model::AuditPage>(body),
        "MailList" => read::<model::MailList>(body),
        "Queued" => read::<model::Queued>(body),
        "Schedule" => read::<model::Schedule>(body),
        "ScheduleList" => read::<model::ScheduleList>(body),
        "FireList" => read::<model::FireList>(body),
        "Task" => read::<model::Task>(body),
        "TaskPage" => read::<model::TaskPage>(body),
        "TaskDetail" => read::<model::TaskDetail>(body),
        "IntakeReply" => read::<model::IntakeReply>(body),
        "StatusReply" => read::<model::StatusReply>(body),
        "IdentityRead" => read::<model::IdentityRead>(body),
        other => Err(format!("the test knows no model type for schema `{other}`")),
    }
}

/// Checks an answer against the document: its status is documented for the operation,
/// a JSON body with a named schema has every required property and no other, and it
/// reads as the API's model type of that name (the type the handler returned).
fn conforms(doc: &Value, method: &str, path: &str, status: u16, body: &Value) {
    let what = format!("{method} {path} answered {status}");
    let response = &doc["paths"][path][method.to_lowercase()]["responses"][status.to_string()];
    assert!(
        response.is_object(),
        "{what}, which is not documented: {body}"
    );
    let Some((media, content)) = response["content"]
        .as_object()
        .and_then(|c| c.iter().next())
    else {
        return;
    };
    let Some(name) = content["schema"]["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
    else {
        return;
    };
    let (properties, required) = object_schema(doc, &doc["components"]["schemas"][name]);
    assert!(
        !properties.is_empty(),
        "{what}: schema `{name}` has no properties"
    );
    let fields = body
        .as_object()
        .unwrap_or_else(|| panic!("{what}: a {media} `{name}` is an object: {body}"));
    for key in fields.keys() {
        assert!(
            properties.contains(key),
            "{what}: `{key}` is not in schema `{name}`: {body}"
        );
    }
    for key in &required {
        assert!(
            fields.contains_key(key),
            "{what}: required `{key}` of `{name}` is missing: {body}"
        );
    }
    if let Err(e) = reads_as(name, body) {
        panic!("{what}: {e}: {body}");
    }
}

/// The property names and the required ones of an object schema, following `$ref`s
/// and the parts of an `allOf` (a struct with a `#[serde(flatten)]` field).
fn object_schema(doc: &Value, schema: &Value) -> (Vec<String>, Vec<String>) {
    if let Some(name) = schema["$ref"]
        .as_str()
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
    {
        return object_schema(doc, &doc["components"]["schemas"][name]);
    }
    let mut properties: Vec<String> = schema["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    let mut required: Vec<String> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| k.as_str().expect("name").to_owned())
        .collect();
    for part in schema["allOf"].as_array().into_iter().flatten() {
        let (p, r) = object_schema(doc, part);
        properties.extend(p);
        required.extend(r);
    }
    (properties, required)
}

/// The document is a contract a client can be generated from: every JSON success body
/// has a schema with named properties (a `$ref` to a component that has them), never a
/// bare `{"type": "object"}`; every operation has a summary. The one exception is the
/// document itself, whose schema is the OpenAPI specification's.
#[test]
fn every_success_body_is_typed_and_every_operation_summarised() {
    let doc: Value = serde_json::from_str(&committed()).expect("JSON");
    let mut problems = Vec::new();
    for (method, path, op) in operations(&doc) {
        let what = format!("{method} {path}");
        if op["summary"].as_str().is_none_or(|s| s.trim().is_empty()) {
            problems.push(format!("{what}: no summary"));
        }
        if path == "/v1/openapi.json" {
            continue;
        }
        for (status, response) in op["responses"].as_object().expect("responses") {
            if !status.starts_with('2') {
                continue;
            }
            for (media, content) in response["content"].as_object().into_iter().flatten() {
                if !media.contains("json") {
                    continue;
                }
                let schema = &content["schema"];
                let (properties, _) = object_schema(&doc, schema);
                if schema["$ref"].is_null() || properties.is_empty() {
                    problems.push(format!(
                        "{what} {status} {media}: untyped body {schema} (give the handler a \
                         `model` type and `body = ThatType`)"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn every_documented_operation_is_served_with_the_documented_security() {
    let mut d = Daemon::start(Backend::Sqlite, &fixtures());
    let token = d.token.clone().expect("admin token");
    let doc: Value = serde_json::from_str(&committed()).expect("JSON");
    // The fallback is recognised, so the check below can fail.
    let (status, body) = call(&d, Some(&token), "GET", "/v1/no/such/route");
    assert!(!served(status, &body), "{status} {body}");
    let (status, body) = call(&d, Some(&token), "POST", "/v1/workflows");
    assert!(!served(status, &body), "{status} {body}");
    let mut public = 0;
    for (method, path, op) in operations(&doc) {
        let concrete: String = path
            .split('/')
            .map(|seg| if seg.starts_with('{') { "none" } else { seg })
            .collect::<Vec<_>>()
            .join("/");
        let what = format!("{method} {path}");
        let (status, body) = call(&d, Some(&token), &method, &concrete);
        assert!(
            served(status, &body),
            "{what} is documented but not served: {status} {body}"
        );
        assert!(status < 500, "{what}: {status} {body}");
        conforms(&doc, &method, &path, status, &body);
        // Without a token: 401 exactly where the document asks for the bearer token.
        let needs_token = op["security"] != json!([]);
        assert_eq!(
            needs_token,
            op["security"] == json!([{ "bearer": [] }]),
            "{what}: security {}",
            op["security"]
        );
        let (status, body) = call(&d, None, &method, &concrete);
        conforms(&doc, &method, &path, status, &body);
        if needs_token {
            assert_eq!(status, 401, "{what} without a token: {body}");
        } else {
            public += 1;
            assert!(
                status != 401 && served(status, &body),
                "{what} is documented as public: {status} {body}"
            );
        }
    }
    assert_eq!(public, 4, "healthz, readyz, intake and status are public");
    // Successful answers have the documented shape.
    let admin = Some(token.as_str());
    let (status, body) = call_with(
        &d,
        admin,
        "POST",
        "/v1/instances",
        &json!({"workflow": "timers"}),
    );
    conforms(&doc, "POST", "/v1/instances", status, &body);
    assert_eq!(status, 201, "{body}");
    let StartReply { id, .. } = serde_json::from_value(body).expect("a start reply");
    for (method, path, concrete, request) in [
        (
            "GET",
            "/v1/workflows",
            "/v1/workflows".to_owned(),
            json!({}),
        ),
        (
            "GET",
            "/v1/workflows/{id}",
            "/v1/workflows/timers".to_owned(),
            json!({}),
        ),
        (
            "POST",
            "/v1/workflows/validate",
            "/v1/workflows/validate".to_owned(),
            json!("id: x\nsteps: []\n"),
        ),
        (
            "GET",
            "/v1/instances",
            "/v1/instances".to_owned(),
            json!({}),
        ),
        (
            "GET",
            "/v1/instances/{id}",
            format!("/v1/instances/{id}"),
            json!({}),
        ),
        (
            "POST",
            "/v1/instances/{id}/signal",
            format!("/v1/instances/{id}/signal"),
            json!({"name": "poke"}),
        ),
        (
            "POST",
            "/v1/events",
            "/v1/events".to_owned(),
            json!({"name": "poke", "key": "k"}),
        ),
        (
            "GET",
            "/v1/admin/clock",
            "/v1/admin/clock".to_owned(),
            json!({}),
        ),
        ("GET", "/v1/mail", "/v1/mail".to_owned(), json!({})),
        ("GET", "/v1/audit", "/v1/audit".to_owned(), json!({})),
        (
            "GET",
            "/v1/schedules",
            "/v1/schedules".to_owned(),
            json!({}),
        ),
        ("GET", "/v1/tasks", "/v1/tasks".to_owned(), json!({})),
        (
            "POST",
            "/v1/instances/{id}/cancel",
            format!("/v1/instances/{id}/cancel"),
            json!({"reason": "done"}),
        ),
    ] {
        let (status, body) = call_with(&d, admin, method, &concrete, &request);
        assert!(
            (200..300).contains(&status),
            "{method} {concrete}: {status} {body}"
        );
        conforms(&doc, method, path, status, &body);
    }
    // Errors that axum makes itself are problem details too, and documented.
    let problem = |body: &Value| -> ProblemBody {
        serde_json::from_value(body.clone()).unwrap_or_else(|e| panic!("{e}: {body}"))
    };
    let (status, body) = call(&d, admin, "GET", "/v1/audit?limit=many");
    assert_eq!((status, problem(&body).status), (400, 400), "{body}");
    conforms(&doc, "GET", "/v1/audit", status, &body);
    let big = json!({ "workflow": "x".repeat(2 * 1024 * 1024) });
    let (status, body) = call_with(&d, admin, "POST", "/v1/instances", &big);
    assert_eq!((status, problem(&body).status), (413, 413), "{body}");
    conforms(&doc, "POST", "/v1/instances", status, &body);
    let r = reqwest::blocking::Client::new()
        .delete(format!("{}/v1/workflows", d.url()))
        .bearer_auth(&token)
        .send()
        .expect("DELETE");
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(
        r.headers()["content-type"].to_str().expect("ascii"),
        "application/problem+json"
    );
    let body: ProblemBody = r.json().expect("a problem");
    assert_eq!(body.title, "method not allowed", "{body:?}");
    // `null` is the documented way to cancel without a reason, as is no body.
    let (status, body) = call_with(&d, admin, "POST", "/v1/instances/none/cancel", &Value::Null);
    assert_eq!(status, 404, "{body}");
    // The daemon serves the committed document, byte for byte, to any token.
    let r = reqwest::blocking::Client::new()
        .get(format!("{}/v1/openapi.json", d.url()))
        .bearer_auth(&token)
        .send()
        .expect("GET");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().expect("ascii"),
        "application/json"
    );
    assert!(
        r.text().expect("text") == committed(),
        "GET /v1/openapi.json differs from docs/openapi.json: {REGENERATE}"
    );
    // So does `clearflow openapi`.
    let out = d.cli(&["openapi"]);
    assert!(out.status.success());
    assert!(
        String::from_utf8(out.stdout).expect("utf-8") == committed(),
        "`clearflow openapi` differs from docs/openapi.json: {REGENERATE}"
    );
    d.terminate();
}
