//! Test fixtures: a fresh database per test with the schema and the
//! least-privilege users applied, requests shaped as API Gateway sends them,
//! and paths to the built binaries.

use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};
use portcullis_shared::adapters::mysql::{apply_migrations, split_sql_statements};
use portcullis_shared::runtime::Boot;
use std::collections::HashMap;

/// The configuration, key file and password every test uses; the in-crate
/// handler tests share them.
pub use portcullis_test_support::{config, key_file, GOOD_PASSWORD};

/// The login function on the stores `config` names, with the system clock.
pub async fn deps_with(config: &portcullis_shared::config::Config) -> portcullis_login::Deps {
    let backends = portcullis_shared::runtime::Backends::open(config).await.expect("backends");
    let provider = portcullis_shared::runtime::key_provider(config).expect("key provider");
    let clock = std::sync::Arc::new(portcullis_shared::clock::SystemClock);
    portcullis_login::Deps::build(&Boot::new(config, &backends, provider, clock)).await.expect("login deps")
}

/// The administrator URL `scripts/test.sh` exports.
pub fn admin_url() -> String {
    std::env::var("PORTCULLIS_TEST_MYSQL_URL").expect(
        "PORTCULLIS_TEST_MYSQL_URL is not set: run the tests with scripts/test.sh, which starts MariaDB",
    )
}

/// The function users created from `infra/mysql/roles.sql`.
pub const FUNCTION_USERS: [&str; 7] = ["login", "mfa", "refresh", "authorizer", "admin", "backup", "auditor"];

/// A throw-away database with the schema, roles and one user per function.
pub struct TestDb {
    pub name: String,
    passwords: HashMap<&'static str, String>,
}

/// Only `[a-z0-9_]`: the one kind of identifier the harness ever splices into DDL.
fn ident(name: &str) -> &str {
    assert!(
        !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
        "not a safe identifier: {name}"
    );
    name
}

impl TestDb {
    pub async fn create() -> Self {
        let name = format!("pct_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let mut admin =
            Conn::new(Opts::from_url(&admin_url()).expect("admin url")).await.expect("connect as test admin");
        // sql-splice-reviewed: a database name cannot be a parameter; ident() allows [a-z0-9_] only.
        let create = format!("CREATE DATABASE {}", ident(&name));
        admin.query_drop(create).await.expect("create database");
        let mut conn = Conn::new(Opts::from_url(&format!("{}/{}", admin_url(), name)).expect("url"))
            .await
            .expect("connect");
        apply_migrations(&mut conn).await.expect("migrations apply");
        // roles.sql names every role and user after the schema `portcullis`;
        // renaming that identifier gives this database its own roles and users.
        let roles = include_str!("../../infra/mysql/roles.sql").replace("portcullis", ident(&name));
        for statement in split_sql_statements(&roles) {
            conn.query_drop(statement).await.expect("roles.sql applies");
        }
        let mut passwords = HashMap::new();
        for function in FUNCTION_USERS {
            let password = hex_token();
            let user = format!("{name}_{function}");
            // Passwords travel as bound parameters; the server quotes them.
            conn.exec_drop("SET @portcullis_user = ?, @portcullis_password = ?", (user, password.clone()))
                .await
                .expect("set variables");
            conn.query_drop(
                "EXECUTE IMMEDIATE CONCAT('ALTER USER ', QUOTE(@portcullis_user), '@''%'' IDENTIFIED BY ', \
                 QUOTE(@portcullis_password), ' ACCOUNT UNLOCK')",
            )
            .await
            .expect("set password");
            passwords.insert(function, password);
        }
        conn.disconnect().await.ok();
        admin.disconnect().await.ok();
        Self { name, passwords }
    }

    /// `mysql://` URL of this database as the schema owner (the test admin).
    pub fn owner_url(&self) -> String {
        format!("{}/{}", admin_url(), self.name)
    }

    /// URL of this database as one function's least-privilege user.
    pub fn user_url(&self, function: &str) -> String {
        let password = &self.passwords[function];
        let hostport = admin_url().rsplit_once('@').map(|(_, h)| h.to_owned()).expect("url has a host");
        format!("mysql://{}_{}:{}@{}/{}", self.name, function, password, hostport, self.name)
    }

    /// The same URL without the password, as the template writes it: the function
    /// reads the password from its Secrets Manager secret.
    pub fn user_url_without_password(&self, function: &str) -> String {
        let hostport = admin_url().rsplit_once('@').map(|(_, h)| h.to_owned()).expect("url has a host");
        format!("mysql://{}_{}@{}/{}", self.name, function, hostport, self.name)
    }

    /// One function user's name and password, as its secret holds them.
    pub fn user_secret(&self, function: &str) -> serde_json::Value {
        serde_json::json!({ "username": format!("{}_{}", self.name, function), "password": self.passwords[function] })
    }

    pub async fn owner_conn(&self) -> Conn {
        Conn::new(Opts::from_url(&self.owner_url()).expect("url")).await.expect("connect as owner")
    }

    pub async fn user_conn(&self, function: &str) -> Conn {
        Conn::new(Opts::from_url(&self.user_url(function)).expect("url"))
            .await
            .expect("connect as function user")
    }
}

pub fn hex_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A fresh DynamoDB session table on moto, named for this test.
pub async fn new_table() -> String {
    let table = format!("pct-sessions-{}", hex_token());
    let client = aws_sdk_dynamodb::Client::new(portcullis_shared::aws::aws_config().await);
    portcullis_shared::adapters::dynamo::create_table(&client, &table).await.expect("create table on moto");
    table
}

/// A request as API Gateway (HTTP API, payload 2.0) hands it to a function,
/// optionally with the authorizer context of `sub`.
pub fn request(method: &str, path: &str, body: Option<&str>, sub: Option<&str>) -> Request {
    request_as(method, path, body, sub.map(|s| (s, "test-session")))
}

/// Like [`request`], with the authorizer context of `(sub, sid)`.
pub fn request_as(method: &str, path: &str, body: Option<&str>, caller: Option<(&str, &str)>) -> Request {
    // A person who has just logged in with both factors: step-up passes. The
    // step-up tests build their contexts with `request_with_context`.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .to_string();
    let fields = caller.map(|(sub, sid)| {
        vec![
            ("sub", sub.to_owned()),
            ("sid", sid.to_owned()),
            ("roles", "user".to_owned()),
            ("auth_time", now),
            ("amr", "pwd,otp".to_owned()),
        ]
    });
    request_with_context(method, path, body, fields.as_deref())
}

/// A request with exactly these authorizer context fields (`None`: no authorizer ran).
pub fn request_with_context(
    method: &str,
    path: &str,
    body: Option<&str>,
    fields: Option<&[(&str, String)]>,
) -> Request {
    let mut builder =
        http::Request::builder().method(method).uri(path).header("user-agent", "integration-test");
    if body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    let body = body.map(|b| Body::Text(b.to_owned())).unwrap_or(Body::Empty);
    let mut context = aws_lambda_events::apigw::ApiGatewayV2httpRequestContext::default();
    context.request_id = Some(hex_token());
    context.http.source_ip = Some("198.51.100.7".into());
    if let Some(fields) = fields {
        let mut authorizer = aws_lambda_events::apigw::ApiGatewayRequestAuthorizer::default();
        for (name, value) in fields {
            authorizer.fields.insert((*name).into(), value.clone().into());
        }
        context.authorizer = Some(authorizer);
    }
    builder.body(body).expect("valid request").with_request_context(RequestContext::ApiGatewayV2(context))
}

/// Status and body text of a function's response.
pub fn parts(resp: http::Response<Body>) -> (u16, String, http::HeaderMap) {
    let (head, body) = resp.into_parts();
    let text = match body {
        Body::Text(t) => t,
        Body::Binary(b) => String::from_utf8_lossy(&b).into_owned(),
        _ => String::new(),
    };
    (head.status.as_u16(), text, head.headers)
}

/// A binary of this workspace, built by `cargo build --workspace --bins`.
pub fn binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/integration-<hash> → target/<profile>/<name>
    let dir = exe.parent().and_then(|p| p.parent()).expect("target profile dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// The authorizer's decision for `GET /me` with this `Authorization` header.
pub async fn authorize_me(
    deps: &portcullis_authorizer::Deps,
    authorization: &str,
) -> portcullis_authorizer::Decision {
    let ask = portcullis_authorizer::Ask {
        method: "GET",
        path: "/me",
        authorization: Some(authorization),
        api_key: None,
    };
    portcullis_authorizer::authorize(deps, ask).await
}

/// The rest of the first line of `child`'s standard error that starts with
/// `prefix` (a server's "listening on <URL>"), within 60 s; the rest of its
/// standard error is drained so the child never blocks on it.
pub async fn announced(child: &mut tokio::process::Child, prefix: &str) -> String {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr piped")).lines();
    let found = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_owned();
            }
        }
        panic!("the process exited before printing {prefix:?}");
    })
    .await
    .unwrap_or_else(|_| panic!("no {prefix:?} within 60 s"));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    found
}
