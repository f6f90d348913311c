//! The authorizer context on the one hop that is not API Gateway: the local
//! forward-auth proxy (`portcullis serve --upstream`) writes it as
//! `X-Portcullis-*` headers, and a team's function, run as a local HTTP server
//! behind that proxy, reads them back into the request context that
//! [`crate::http::Caller::from_request`] reads under Lambda. Writer and reader
//! are this one module, so the two cannot drift.
//!
//! The headers are only as trustworthy as the hop: the proxy removes every copy
//! a client sent and adds [`PROXY_HEADER`], a secret of this machine (a 0600
//! file, [`proxy_secret`]) that another local process or a web page
//! (DNS rebinding) cannot know. A server that reads the context accepts it only
//! with that secret, and listens on loopback only ([`require_loopback`]).

use aws_lambda_events::apigw::{ApiGatewayRequestAuthorizer, ApiGatewayV2httpRequestContext};
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use lambda_http::request::RequestContext;
use lambda_http::RequestExt;
use std::collections::HashMap;

/// The prefix of the context headers.
pub const CONTEXT_PREFIX: &str = "x-portcullis-";

/// The header proving that a request came through the proxy.
pub const PROXY_HEADER: &str = "x-portcullis-proxy";

/// The default file of the proxy's secret, beside the local server's data.
pub const DEFAULT_SECRET_FILE: &str = ".portcullis/upstream-secret";

/// The proxy's secret: read from `file`, or created there (256 random bits,
/// hex, the file 0600 in a 0700 folder) when `create` and it is absent. A file
/// another user could have written, swapped or read (a link, not a regular
/// file, not ours, not 0600, in a folder not ours alone) is refused: whoever
/// planted it would know the secret.
pub fn proxy_secret(file: &std::path::Path, create: bool) -> std::io::Result<String> {
    match read_private(file) {
        Ok(secret) => Ok(secret),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && create => {
            let secret = hex::encode(crate::crypto::random_bytes::<32>());
            if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
                crate::files::create_private_dir(parent)?;
            }
            crate::files::write_new_private(file, secret.as_bytes())?;
            // Read back through the same checks (another process may have won the race).
            read_private(file)
        }
        Err(err) => Err(err),
    }
}

/// A fresh secret in `file` (the proxy's, at each start): the last run's, which
/// a backend that was listening in its place could have seen, ends.
pub fn renew_proxy_secret(file: &std::path::Path) -> std::io::Result<String> {
    match std::fs::remove_file(file) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    proxy_secret(file, true)
}

/// The secret in `file`, if only this user could have put it there: opened
/// without following a link and without blocking (a FIFO), then checked on the
/// open file itself (regular, this user's, 0600, small), in a folder that is
/// this user's alone (0700), read at most 129 bytes.
#[cfg(unix)]
fn read_private(file: &std::path::Path) -> std::io::Result<String> {
    use rustix::fs::{Mode, OFlags};
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let refuse = |why: &str| std::io::Error::other(format!("{}: {why}", file.display()));
    let me = rustix::process::geteuid().as_raw();
    let parent = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let folder = std::fs::metadata(parent)?;
    if folder.uid() != me || folder.mode() & 0o077 != 0 {
        return Err(refuse("in a folder that is not this user's alone (it must be 0700)"));
    }
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let mut opened =
        std::fs::File::from(rustix::fs::open(file, flags, Mode::empty()).map_err(std::io::Error::from)?);
    let meta = opened.metadata()?;
    if !meta.file_type().is_file() || meta.len() > 128 {
        return Err(refuse("not a regular file of a proxy secret"));
    }
    if meta.uid() != me || meta.mode() & 0o077 != 0 {
        return Err(refuse("not this user's alone (it must be 0600)"));
    }
    let mut text = String::new();
    (&mut opened).take(129).read_to_string(&mut text)?;
    hex_secret(&text).ok_or_else(|| refuse("holds no proxy secret"))
}

#[cfg(not(unix))]
fn read_private(file: &std::path::Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(file)?;
    hex_secret(&text)
        .ok_or_else(|| std::io::Error::other(format!("{}: holds no proxy secret", file.display())))
}

fn hex_secret(text: &str) -> Option<String> {
    let secret = text.trim();
    (secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit())).then(|| secret.to_owned())
}

/// The keys of the authorizer context (docs/security/policy.md, "What the backend learns").
pub const CONTEXT_KEYS: [&str; 7] = ["sub", "sid", "roles", "permission", "api_key_id", "auth_time", "amr"];

/// True for a header that could be read as context: `X-Portcullis-*`, with `_`
/// read as `-` (some servers and CGI-style gateways treat them alike).
pub fn is_context_header(name: &HeaderName) -> bool {
    name.as_str().replace('_', "-").starts_with(CONTEXT_PREFIX)
}

/// Removes every context header (a client's copies, before the proxy adds its own).
pub fn strip_context(headers: &mut HeaderMap) {
    let forged: Vec<HeaderName> = headers.keys().filter(|name| is_context_header(name)).cloned().collect();
    for name in forged {
        headers.remove(name);
    }
}

/// Writes `context` as headers (`api_key_id` as `x-portcullis-api-key-id`)
/// and the proxy's `secret`, after removing any the request already carried.
/// A value that cannot be written (not a string, not a header value) fails the
/// whole context: a key's id left out would make the key read as a person.
pub fn write_context(
    headers: &mut HeaderMap,
    context: &HashMap<String, serde_json::Value>,
    secret: &str,
) -> Result<(), String> {
    strip_context(headers);
    for (key, value) in context {
        let name = HeaderName::try_from(format!("{CONTEXT_PREFIX}{}", key.replace('_', "-")));
        let value = value.as_str().map(HeaderValue::try_from);
        match (name, value) {
            (Ok(name), Some(Ok(value))) => {
                headers.insert(name, value);
            }
            _ => return Err(format!("the context value of `{key}` is no header value")),
        }
    }
    // Only a request that names a caller needs the proof (a public route's has none).
    if context.get("sub").and_then(|s| s.as_str()).is_some_and(|s| !s.is_empty()) {
        let mut secret =
            HeaderValue::try_from(secret).map_err(|_| "the proxy secret is no header value".to_owned())?;
        secret.set_sensitive(true);
        headers.insert(PROXY_HEADER, secret);
    }
    Ok(())
}

/// True when the request carries exactly one proxy header equal to `secret`
/// (compared in constant time).
fn from_proxy(headers: &HeaderMap, secret: &str) -> bool {
    let mut values = headers.get_all(PROXY_HEADER).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => {
            aws_lc_rs::constant_time::verify_slices_are_equal(value.as_bytes(), secret.as_bytes()).is_ok()
        }
        _ => false,
    }
}

/// The context the headers carry: the known keys only, each from exactly one
/// header. `None` without a `sub`, or when any of them is repeated or not
/// text: a dropped `api_key_id` would make a key read as a person.
pub fn read_context(headers: &HeaderMap) -> Option<HashMap<String, serde_json::Value>> {
    let mut context = HashMap::new();
    for key in CONTEXT_KEYS {
        let name = format!("{CONTEXT_PREFIX}{}", key.replace('_', "-"));
        let mut values = headers.get_all(name.as_str()).iter();
        match (values.next(), values.next()) {
            (None, _) => {}
            (Some(value), None) => {
                context.insert(key.to_owned(), serde_json::Value::from(value.to_str().ok()?));
            }
            (Some(_), Some(_)) => return None,
        }
    }
    context.get("sub").and_then(|s| s.as_str()).filter(|s| !s.is_empty())?;
    Some(context)
}

/// A request received from the forward-auth proxy as the Lambda function would
/// receive it from API Gateway: the context headers become the authorizer
/// context and are removed from the headers, so the handler reads the caller
/// only through `Caller::from_request`. Without the proxy's `secret` (or with
/// no secret to compare, `None`), or naming no caller, there is no context.
pub fn into_lambda_request(
    mut parts: http::request::Parts,
    body: lambda_http::Body,
    peer: std::net::SocketAddr,
    secret: Option<&str>,
) -> lambda_http::Request {
    let proven = secret.is_some_and(|secret| from_proxy(&parts.headers, secret));
    let fields = read_context(&parts.headers).filter(|_| proven);
    strip_context(&mut parts.headers);
    let mut context = ApiGatewayV2httpRequestContext::default();
    context.request_id = Some(uuid::Uuid::new_v4().to_string());
    context.stage = Some("$default".into());
    context.http.method = parts.method.clone();
    context.http.path = Some(parts.uri.path().to_owned());
    context.http.source_ip = Some(peer.ip().to_string());
    if let Some(fields) = fields {
        let mut authorizer = ApiGatewayRequestAuthorizer::default();
        authorizer.fields = fields;
        context.authorizer = Some(authorizer);
    }
    crate::http::as_delivered(http::Request::from_parts(parts, body))
        .with_request_context(RequestContext::ApiGatewayV2(context))
}

/// Refuses an address other hosts could reach: a server that trusts the
/// context headers must be reachable only through the proxy on this machine.
pub fn require_loopback(addr: &std::net::SocketAddr) -> Result<(), String> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!(
            "{addr} is not a loopback address: a server that reads the forward-auth context must be reachable \
             only through `portcullis serve --upstream` on this machine"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Caller;

    fn context() -> HashMap<String, serde_json::Value> {
        [
            ("sub", "0193-ada"),
            ("sid", "s1"),
            ("roles", "user,support"),
            ("permission", "notes:read"),
            ("auth_time", "1764662400"),
            ("amr", "pwd,otp"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), serde_json::Value::from(v)))
        .collect()
    }

    const SECRET: &str = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7";

    fn received(headers: HeaderMap) -> lambda_http::Request {
        let mut req = http::Request::builder().uri("/notes/ada").body(()).expect("request");
        *req.headers_mut() = headers;
        let (parts, ()) = req.into_parts();
        into_lambda_request(
            parts,
            lambda_http::Body::Empty,
            "127.0.0.1:9".parse().expect("addr"),
            Some(SECRET),
        )
    }

    #[test]
    fn what_the_proxy_writes_the_function_reads_as_the_caller_lambda_would_see() {
        let mut headers = HeaderMap::new();
        headers.insert("x-portcullis-roles", HeaderValue::from_static("admin"));
        headers.insert("x_portcullis_permission", HeaderValue::from_static("notes:read:any"));
        write_context(&mut headers, &context(), SECRET).expect("written");
        let req = received(headers);
        let caller = Caller::from_request(&req).expect("caller");
        assert_eq!(caller.sub, "0193-ada");
        assert_eq!(caller.roles, ["user", "support"]);
        assert_eq!(caller.permission.as_deref(), Some("notes:read"));
        assert_eq!((caller.auth_time, caller.amr.len(), caller.api_key_id), (Some(1764662400), 2, None));
        assert!(req.headers().keys().all(|k| !is_context_header(k)), "{:?}", req.headers());
    }

    #[test]
    fn no_sub_or_a_repeated_header_is_no_context() {
        assert!(Caller::from_request(&received(HeaderMap::new())).is_err());
        let mut headers = HeaderMap::new();
        headers.append("x-portcullis-sub", HeaderValue::from_static("ada"));
        headers.append("x-portcullis-sub", HeaderValue::from_static("bob"));
        assert!(Caller::from_request(&received(headers)).is_err());
        let mut headers = HeaderMap::new();
        write_context(&mut headers, &context(), SECRET).expect("written");
        headers.append("x-portcullis-roles", HeaderValue::from_static("admin"));
        assert!(Caller::from_request(&received(headers)).is_err(), "a repeated context header");
    }

    #[test]
    fn a_context_without_the_proxys_secret_is_no_context() {
        let mut headers = HeaderMap::new();
        write_context(&mut headers, &context(), SECRET).expect("written");
        headers.insert(PROXY_HEADER, HeaderValue::from_static("guess"));
        assert!(Caller::from_request(&received(headers)).is_err(), "a wrong secret");
        let mut headers = HeaderMap::new();
        write_context(&mut headers, &context(), SECRET).expect("written");
        headers.remove(PROXY_HEADER);
        assert!(Caller::from_request(&received(headers)).is_err(), "no secret");
        let mut headers = HeaderMap::new();
        write_context(&mut headers, &context(), SECRET).expect("written");
        headers.append(PROXY_HEADER, HeaderValue::from_static(SECRET));
        assert!(Caller::from_request(&received(headers)).is_err(), "two secrets");
        let mut headers = HeaderMap::new();
        write_context(&mut headers, &context(), SECRET).expect("written");
        let (parts, ()) = {
            let mut req = http::Request::builder().uri("/").body(()).expect("request");
            *req.headers_mut() = headers;
            req.into_parts()
        };
        let req =
            into_lambda_request(parts, lambda_http::Body::Empty, "127.0.0.1:9".parse().expect("addr"), None);
        assert!(Caller::from_request(&req).is_err(), "nothing to compare with");
        let mut bad = context();
        bad.insert("api_key_id".into(), serde_json::Value::from("k1\n"));
        bad.insert("sid".into(), serde_json::Value::from(7));
        assert!(write_context(&mut HeaderMap::new(), &bad, SECRET).is_err());
    }

    #[test]
    fn the_secret_file_is_created_once_private_and_read_back() {
        let dir = std::env::temp_dir().join(format!("pc-proxy-{}", uuid::Uuid::new_v4()));
        let file = dir.join("nested/upstream-secret");
        assert!(proxy_secret(&file, false).is_err(), "absent and not to be created");
        let made = proxy_secret(&file, true).expect("created");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // Planted or loosened: refused, never trusted.
            let planted = dir.join("planted");
            std::fs::write(&planted, "a".repeat(64)).expect("write");
            std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            assert!(proxy_secret(&planted, false).is_err(), "a 0644 file");
            let link = dir.join("nested/link");
            std::os::unix::fs::symlink(&file, &link).expect("symlink");
            assert!(proxy_secret(&link, false).is_err(), "a symlink");
            let open = dir.join("open");
            std::fs::create_dir_all(&open).expect("dir");
            std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
            assert!(proxy_secret(&open.join("secret"), true).is_err(), "in a world-writable folder");
            let shared_folder = dir.join("shared");
            std::fs::create_dir_all(&shared_folder).expect("dir");
            std::fs::set_permissions(&shared_folder, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            assert!(
                proxy_secret(&shared_folder.join("secret"), true).is_err(),
                "in a folder others may list"
            );
            // A FIFO would block a plain read for ever: refused at once.
            let fifo = dir.join("nested/fifo");
            let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
            assert!(made.success());
            assert!(proxy_secret(&fifo, false).is_err(), "a FIFO");
        }
        assert_eq!((made.len(), proxy_secret(&file, false).expect("read")), (64, made.clone()));
        assert_eq!(proxy_secret(&file, true).expect("kept"), made);
        let renewed = renew_proxy_secret(&file).expect("renewed");
        assert_ne!(renewed, made, "each start of the proxy has its own secret");
        assert_eq!(proxy_secret(&file, false).expect("read"), renewed);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn only_a_loopback_address_may_serve_the_context() {
        assert!(require_loopback(&"127.0.0.1:3000".parse().expect("addr")).is_ok());
        assert!(require_loopback(&"[::1]:3000".parse().expect("addr")).is_ok());
        assert!(require_loopback(&"0.0.0.0:3000".parse().expect("addr")).is_err());
        assert!(require_loopback(&"192.168.1.2:3000".parse().expect("addr")).is_err());
    }
}
