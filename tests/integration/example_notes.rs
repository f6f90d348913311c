//! The example notes API (`examples/notes`) behind Portcullis, both ways a team
//! runs it: the built binary as a local HTTP server behind
//! `portcullis serve --upstream`, and the same binary as a Lambda function on
//! the Runtime API, fed the events API Gateway sends once the real authorizer
//! allowed them. The policy is the example's own `policy.json`; the notes table
//! is on moto. A customer reads and writes its own notes and is refused
//! another's; support, with its second factor, reads any; an API key with the
//! read permissions reads and writes nothing; deleting needs a recent sign-in;
//! a route the backend serves but the policy does not name is refused.

use crate::helpers::{binary, hex_token};
use crate::local_server::{admin_login, call, login, login_with_second_factor, serve_in, Server};
use portcullis_authorizer::handle_v2;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

pub(crate) const POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/notes/policy.json");
const PASSWORD: &str = "velvet-otter-quantum-harbor-71";

/// A note that crosses the text limit's edge: 4-byte UTF-8, line breaks, quotes.
pub(crate) fn text() -> String {
    let mut text = String::from("groceries \"oat milk\"\n\tand 🦀 ");
    while text.len() + 4 <= portcullis_example_notes::MAX_TEXT_BYTES {
        text.push('😀');
    }
    text
}

/// A fresh notes table on moto.
pub(crate) async fn notes_table() -> String {
    let table = format!("pct-notes-{}", hex_token());
    let client = aws_sdk_dynamodb::Client::new(portcullis_shared::aws::aws_config().await);
    portcullis_example_notes::store::create_table(&client, &table).await.expect("create the notes table");
    table
}

/// The example binary as a local server on a free loopback port, trusting the
/// proxy secret in `secret_file`: (process, URL).
async fn notes_server(table: &str, secret_file: &std::path::Path) -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(binary("portcullis-example-notes"))
        .env("NOTES_TABLE", table)
        .env("NOTES_PROXY_SECRET_FILE", secret_file)
        .env("NOTES_LISTEN", "127.0.0.1:0")
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the notes example");
    let url = crate::helpers::announced(&mut child, "notes: listening on ").await;
    (child, url)
}

async fn register(server: &Server, email: &str) -> String {
    let creds = json!({"email": email, "password": PASSWORD});
    let (status, _, body) =
        call(Method::POST, format!("{}/auth/register", server.base), None, Some(creds)).await;
    assert_eq!(status, 201, "{body}");
    serde_json::from_str::<Value>(&body).expect("json")["user_id"].as_str().expect("id").to_owned()
}

/// `method path` through the local server with a bearer token or an API key:
/// (status, body).
async fn send(
    server: &Server,
    method: Method,
    path: &str,
    auth: Auth<'_>,
    body: Option<Value>,
) -> (u16, String) {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", server.base));
    req = match auth {
        Auth::Bearer(token) => req.bearer_auth(token),
        Auth::Key(key) => req.header("x-api-key", key),
        Auth::Forged(token, sub) => req.bearer_auth(token).header("X-Portcullis-Sub", sub),
    };
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("request");
    (resp.status().as_u16(), resp.text().await.expect("body"))
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    Bearer(&'a str),
    Key(&'a str),
    /// A bearer token plus a context header claiming another user.
    Forged(&'a str, &'a str),
}

fn problem_type(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["type"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// An API key created by the (second-factor) admin with these grants.
async fn api_key(server: &Server, root: &str, permissions: &[&str]) -> String {
    let request =
        json!({"name": format!("reports-{}", hex_token()), "permissions": permissions, "expires_in_days": 7});
    let (status, _, body) =
        call(Method::POST, format!("{}/admin/api-keys", server.base), Some(root), Some(request)).await;
    assert_eq!(status, 201, "{body}");
    serde_json::from_str::<Value>(&body).expect("json")["api_key"].as_str().expect("key").to_owned()
}

#[tokio::test]
async fn the_notes_example_behind_the_local_forward_auth() {
    portcullis_shared::crypto::install_tls_provider();
    // The proxy writes its secret beside its data; the example reads it there.
    let dir = std::env::temp_dir().join(format!("pc-serve-{}", hex_token()));
    let (_notes, upstream) =
        notes_server(&notes_table().await, &dir.join(".portcullis/upstream-secret")).await;
    let env = [("PORTCULLIS_POLICY_FILE", POLICY.to_owned()), ("PORTCULLIS_UPSTREAM", upstream.clone())];
    let server = serve_in(&dir, &env).await;
    let ada = register(&server, "ada@example.com").await;
    let bob = register(&server, "bob@example.com").await;
    let sam = register(&server, "sam@example.com").await;
    let ada_token = login(&server, "ada@example.com", PASSWORD).await;
    let bob_token = login(&server, "bob@example.com", PASSWORD).await;
    let (ada_note, ada_notes) = (format!("/notes/{ada}/groceries"), format!("/notes/{ada}"));

    // A customer writes and reads its own notes; the owner is the caller, byte for byte.
    let (status, body) =
        send(&server, Method::PUT, &ada_note, Auth::Bearer(&ada_token), Some(json!({"text": text()}))).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = send(&server, Method::GET, &ada_note, Auth::Bearer(&ada_token), None).await;
    assert_eq!(status, 200, "{body}");
    let note: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        (note["user_id"].as_str(), note["text"].as_str()),
        (Some(ada.as_str()), Some(text().as_str()))
    );
    let (status, body) = send(&server, Method::GET, &ada_notes, Auth::Bearer(&ada_token), None).await;
    assert_eq!(
        (status, serde_json::from_str::<Value>(&body).expect("json")["notes"].as_array().map(Vec::len)),
        (200, Some(1))
    );

    // Another customer reaches none of it, whatever header it adds.
    for (method, path) in [
        (Method::GET, &ada_note),
        (Method::GET, &ada_notes),
        (Method::PUT, &ada_note),
        (Method::DELETE, &ada_note),
    ] {
        let body = (method == Method::PUT).then(|| json!({"text": "mine now"}));
        let (status, answer) =
            send(&server, method.clone(), path, Auth::Bearer(&bob_token), body.clone()).await;
        assert_eq!(
            (status, problem_type(&answer).as_str()),
            (403, "urn:portcullis:problem:forbidden"),
            "{method} {path}"
        );
        let (status, _) = send(&server, method.clone(), path, Auth::Forged(&bob_token, &ada), body).await;
        assert_eq!(status, 403, "{method} {path} with a forged context header");
    }
    // Straight to the example, past the proxy: a forged context without the
    // proxy's secret names no caller, whatever it claims.
    let forged = reqwest::Client::new()
        .get(format!("{upstream}{ada_note}"))
        .header("x-portcullis-sub", ada.as_str())
        .header("x-portcullis-roles", "user")
        .header("x-portcullis-proxy", "0".repeat(64))
        .send()
        .await
        .expect("request");
    assert_eq!(forged.status().as_u16(), 401, "a caller forged past the proxy");
    // A route the backend serves but the policy does not name: refused before it.
    let (status, body) =
        send(&server, Method::GET, &format!("{ada_note}/raw"), Auth::Bearer(&ada_token), None).await;
    assert_eq!((status, problem_type(&body).as_str()), (403, "urn:portcullis:problem:forbidden"), "{body}");

    // Support reads any customer's notes, with its second factor only, and writes none.
    let root = admin_login(&server).await;
    let grant = json!({"role": "support"});
    let (status, _, body) =
        call(Method::POST, format!("{}/admin/users/{sam}/roles", server.base), Some(&root), Some(grant))
            .await;
    assert_eq!(status, 204, "{body}");
    let sam_password_only = login(&server, "sam@example.com", PASSWORD).await;
    assert_eq!(send(&server, Method::GET, &ada_note, Auth::Bearer(&sam_password_only), None).await.0, 403);
    let sam_token = login_with_second_factor(&server, "sam@example.com", PASSWORD).await;
    let (status, body) = send(&server, Method::GET, &ada_note, Auth::Bearer(&sam_token), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) =
        send(&server, Method::PUT, &ada_note, Auth::Bearer(&sam_token), Some(json!({"text": "x"}))).await;
    assert_eq!(status, 403);

    // An API key with the read permissions reads any notes and writes none;
    // one without the exception owns nothing, so reads nobody's.
    let reader = api_key(&server, &root, &["notes:read", "notes:read:any"]).await;
    let (status, body) = send(&server, Method::GET, &ada_note, Auth::Key(&reader), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(send(&server, Method::GET, &format!("/notes/{bob}"), Auth::Key(&reader), None).await.0, 200);
    assert_eq!(
        send(&server, Method::PUT, &ada_note, Auth::Key(&reader), Some(json!({"text": "x"}))).await.0,
        403
    );
    assert_eq!(send(&server, Method::DELETE, &ada_note, Auth::Key(&reader), None).await.0, 403);
    let plain = api_key(&server, &root, &["notes:read"]).await;
    assert_eq!(send(&server, Method::GET, &ada_note, Auth::Key(&plain), None).await.0, 403);

    // The owner, just signed in, deletes (the step-up window is covered under Lambda below).
    let (status, body) = send(&server, Method::DELETE, &ada_note, Auth::Bearer(&ada_token), None).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(send(&server, Method::GET, &ada_note, Auth::Bearer(&ada_token), None).await.0, 404);
}

/// One request as the team's HTTP API sends it: `route_key` as the template
/// defines it, the path and parameters, and a bearer token or an API key.
struct Ask<'a> {
    route_key: &'a str,
    method: &'a str,
    path: String,
    params: Value,
    header: (&'a str, String),
    body: Option<Value>,
}

impl Ask<'_> {
    /// The HTTP API authorizer event (payload 2.0) for this request.
    fn authorizer_event(&self) -> Value {
        json!({
            "version": "2.0", "type": "REQUEST", "routeKey": self.route_key, "rawPath": self.path,
            "headers": {self.header.0: self.header.1},
            "requestContext": {"http": {"method": self.method, "path": self.path, "sourceIp": "203.0.113.10"},
                               "routeKey": self.route_key, "requestId": "notes", "stage": "$default",
                               "domainName": "abc123.execute-api.us-east-1.amazonaws.com"},
            "pathParameters": self.params
        })
    }

    /// The event API Gateway hands the function, with the authorizer's context.
    fn function_event(&self, context: Option<&Value>) -> Value {
        let mut event = json!({
            "version": "2.0", "routeKey": self.route_key, "rawPath": self.path, "rawQueryString": "",
            "headers": {"content-type": "application/json", "host": "abc123.execute-api.us-east-1.amazonaws.com"},
            "requestContext": {
                "accountId": "123456789012", "apiId": "abc123", "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
                "domainPrefix": "abc123", "requestId": "notes", "routeKey": self.route_key, "stage": "$default",
                "time": "02/Dec/2026:12:00:00 +0000", "timeEpoch": 1795842000000_i64,
                "http": {"method": self.method, "path": self.path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10", "userAgent": "test"}
            },
            "pathParameters": self.params, "isBase64Encoded": false
        });
        if let Some(context) = context {
            event["requestContext"]["authorizer"] = json!({"lambda": context});
        }
        if let Some(body) = &self.body {
            event["body"] = body.to_string().into();
        }
        event
    }
}

const NOTE: &str = "GET /notes/{user_id}/{note_id}";

/// Checks the authorizer's answer; an allowed request becomes the function's next event.
fn decide(events: &mut Vec<(String, Value)>, name: &str, ask: &Ask<'_>, answer: Value, allowed: bool) {
    assert_eq!(answer["isAuthorized"], allowed, "{name}: {answer}");
    if allowed {
        events.push((name.to_owned(), ask.function_event(Some(&answer["context"]))));
    }
}

fn ask<'a>(route_key: &'a str, user: &str, note: Option<&str>, header: (&'a str, String)) -> Ask<'a> {
    // `$default` (the API's catch-all route) here stands for a GET.
    let method = route_key.split_once(' ').map_or("GET", |(method, _)| method);
    let (path, params) = match note {
        Some(note) if route_key.ends_with("/raw") => (format!("/notes/{user}/{note}/raw"), Value::Null),
        Some(note) => (format!("/notes/{user}/{note}"), json!({"user_id": user, "note_id": note})),
        None => (format!("/notes/{user}"), json!({"user_id": user})),
    };
    Ask { route_key, method, path, params, header, body: None }
}

fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

#[tokio::test]
async fn the_notes_example_as_a_lambda_function_behind_the_authorizer() {
    use crate::team_policy::person;
    let app = crate::app::spawn_app_with(
        crate::app::Backend::Dynamo,
        &[("PORTCULLIS_POLICY_FILE", POLICY.to_owned())],
    )
    .await;
    let (ada, ada_token) = person(&app, "ada@example.com", &[]).await;
    let (bob, bob_token) = person(&app, "bob@example.com", &[]).await;
    let (_, sam_password_only) = person(&app, "sam@example.com", &["support"]).await;
    let sam_token = app.with_second_factor(&sam_password_only).await;
    let now = portcullis_shared::clock::Clock::now_secs(&app.clock);
    let (key_id, key, hash) = portcullis_shared::apikeys::new_api_key();
    let record = portcullis_shared::apikeys::ApiKeyRecord {
        key_id,
        name: "reports".into(),
        hash,
        permissions: vec!["notes:read".into(), "notes:read:any".into()],
        created_by: ada.clone(),
        created_at: now,
        valid_until: now + 86_400,
        revoked_at: None,
    };
    app.backends_of("admin").api_keys.create(&record).await.expect("key");
    let key = ("x-api-key", portcullis_shared::apikeys::reveal(&key).to_owned());

    let mut write = ask("PUT /notes/{user_id}/{note_id}", &ada, Some("groceries"), bearer(&ada_token));
    write.body = Some(json!({"text": text()}));
    let mut key_write = ask("PUT /notes/{user_id}/{note_id}", &ada, Some("groceries"), key.clone());
    key_write.body = Some(json!({"text": "x"}));
    let delete = || ask("DELETE /notes/{user_id}/{note_id}", &ada, Some("groceries"), bearer(&ada_token));
    // Each request (named as the Runtime API's request id), and whether the real authorizer lets it through.
    let mut cases = vec![
        ("write-own", write, true),
        ("read-own", ask(NOTE, &ada, Some("groceries"), bearer(&ada_token)), true),
        ("list-own", ask("GET /notes/{user_id}", &ada, None, bearer(&ada_token)), true),
        ("read-another-s", ask(NOTE, &ada, Some("groceries"), bearer(&bob_token)), false),
        (
            "support-without-its-second-factor",
            ask(NOTE, &ada, Some("groceries"), bearer(&sam_password_only)),
            false,
        ),
        ("support-reads-any", ask(NOTE, &ada, Some("groceries"), bearer(&sam_token)), true),
        ("an-api-key-reads", ask(NOTE, &ada, Some("groceries"), key.clone()), true),
        ("an-api-key-writes", key_write, false),
        (
            "a-route-the-policy-does-not-name",
            ask("$default", &ada, Some("groceries"), bearer(&ada_token)),
            false,
        ),
    ];
    cases[8].1.path.push_str("/raw");
    let mut events = Vec::new();
    for (name, ask, allowed) in &cases {
        decide(&mut events, name, ask, handle_v2(&app.authorizer, ask.authorizer_event()).await, *allowed);
    }
    // What the authorizer refused, the function would have served: the refusal is the authorizer's.
    events.push((
        "unnamed-route-straight-to-the-function".into(),
        cases[8].1.function_event(Some(&json!({"sub": ada, "roles": "user"}))),
    ));
    // Deleting needs a sign-in of the last five minutes: refused once it is older, allowed after step-up.
    app.clock.advance(301);
    let stale = delete();
    decide(
        &mut events,
        "delete-signed-in-301-s-ago",
        &stale,
        handle_v2(&app.authorizer, stale.authorizer_event()).await,
        false,
    );
    let body = json!({"password": crate::helpers::GOOD_PASSWORD});
    let (status, stepped) = app.call("POST", "/auth/reauth", body, &ada_token).await;
    assert_eq!(status, 200, "{stepped}");
    let fresh = ask(
        "DELETE /notes/{user_id}/{note_id}",
        &ada,
        Some("groceries"),
        bearer(stepped["access_token"].as_str().expect("token")),
    );
    decide(
        &mut events,
        "delete-after-step-up",
        &fresh,
        handle_v2(&app.authorizer, fresh.authorizer_event()).await,
        true,
    );
    events.push(("no-authorizer-context".into(), cases[1].1.function_event(None)));

    let expected = [
        ("write-own", 200),
        ("read-own", 200),
        ("list-own", 200),
        ("support-reads-any", 200),
        ("an-api-key-reads", 200),
        ("unnamed-route-straight-to-the-function", 200),
        ("delete-after-step-up", 204),
        ("no-authorizer-context", 401),
    ];
    assert_eq!(events.len(), expected.len(), "{events:?}");
    // A client header lambda_http builds the URI from cannot move the path the
    // function serves away from the one the authorizer judged (Ada's list, not Bob's).
    let list = events.iter_mut().find(|(name, _)| name == "list-own").expect("list-own");
    list.1["headers"]["x-forwarded-proto"] = format!("https://x/notes/{bob}?").into();
    let (api, addr) = crate::lambda_runtime::RuntimeApi::start(events).await;
    let table = notes_table().await;
    let mut child =
        crate::lambda_runtime::spawn_function("portcullis-example-notes", &addr, &[("NOTES_TABLE", table)]);
    let answers = api.answers(expected.len(), Duration::from_secs(60)).await;
    child.kill().await.ok();
    assert!(!answers.contains_key("init"), "the function failed to start: {answers:?}");
    for (name, status) in expected {
        assert_eq!(answers[name]["statusCode"], status, "{name}: {}", answers[name]);
        assert_eq!(answers[name]["headers"]["cache-control"], "no-store", "{name}");
    }
    let read: Value =
        serde_json::from_str(answers["support-reads-any"]["body"].as_str().expect("body")).expect("json");
    assert_eq!(
        (read["user_id"].as_str(), read["text"].as_str()),
        (Some(ada.as_str()), Some(text().as_str()))
    );
    assert_eq!(answers["unnamed-route-straight-to-the-function"]["body"], text());
    let list: Value =
        serde_json::from_str(answers["list-own"]["body"].as_str().expect("body")).expect("json");
    assert_eq!(list["notes"][0]["user_id"].as_str(), Some(ada.as_str()), "{list}");
}
