//! The HTTP contract's routes in one table: which function serves each and what
//! authentication it needs. The local server routes by it; the authorizer's RBAC
//! policy and the IaC checks are held to it.

use http::Method;

/// The function that serves a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Login,
    Mfa,
    Refresh,
    Admin,
}

/// What a caller must present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// Any valid bearer token of a live session.
    Bearer,
    /// A bearer token (or API key) whose roles grant this permission.
    Permission(&'static str),
}

/// One route of the contract.
#[derive(Debug, Clone)]
pub struct Route {
    pub method: Method,
    pub template: &'static str,
    pub function: Function,
    pub access: Access,
}

macro_rules! route {
    ($m:ident $t:literal => $f:ident, $a:expr) => {
        Route { method: Method::$m, template: $t, function: Function::$f, access: $a }
    };
}

/// Every route of the HTTP contract (DESIGN.md).
pub static ROUTES: [Route; 22] = [
    route!(GET "/health" => Login, Access::Public),
    route!(POST "/auth/register" => Login, Access::Public),
    route!(POST "/auth/login" => Login, Access::Public),
    route!(POST "/auth/mfa/verify" => Mfa, Access::Public),
    route!(POST "/auth/mfa/recovery" => Mfa, Access::Public),
    route!(POST "/auth/mfa/totp/enroll" => Mfa, Access::Bearer),
    route!(POST "/auth/mfa/totp/confirm" => Mfa, Access::Bearer),
    route!(DELETE "/auth/mfa/totp" => Mfa, Access::Bearer),
    route!(POST "/auth/token/refresh" => Refresh, Access::Public),
    route!(POST "/auth/logout" => Refresh, Access::Bearer),
    route!(POST "/auth/logout/all" => Refresh, Access::Bearer),
    route!(GET "/auth/sessions" => Refresh, Access::Bearer),
    route!(POST "/auth/password" => Login, Access::Bearer),
    route!(POST "/auth/reauth" => Login, Access::Bearer),
    route!(GET "/.well-known/jwks.json" => Login, Access::Public),
    route!(GET "/me" => Login, Access::Bearer),
    route!(GET "/admin/users" => Admin, Access::Permission("users:read")),
    route!(POST "/admin/users/{user_id}/roles" => Admin, Access::Permission("users:manage")),
    route!(DELETE "/admin/users/{user_id}/roles/{role}" => Admin, Access::Permission("users:manage")),
    route!(POST "/admin/users/{user_id}/sessions/revoke" => Admin, Access::Permission("sessions:revoke")),
    route!(POST "/admin/api-keys" => Admin, Access::Permission("apikeys:manage")),
    route!(DELETE "/admin/api-keys/{key_id}" => Admin, Access::Permission("apikeys:manage")),
];

/// True when `path` matches `template` segment by segment (`{x}` matches one
/// non-empty segment).
pub fn matches(template: &str, path: &str) -> bool {
    let mut t = template.trim_matches('/').split('/');
    let mut p = path.trim_matches('/').split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(ts), Some(ps)) if ts.starts_with('{') && ts.ends_with('}') => {
                if ps.is_empty() {
                    return false;
                }
            }
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return false,
        }
    }
}

/// The route for a request: `Ok(route)`, `Err(true)` when the path exists with
/// another method (405), `Err(false)` when it does not exist (404).
pub fn find(method: &Method, path: &str) -> Result<&'static Route, bool> {
    let mut path_known = false;
    for route in ROUTES.iter() {
        if matches(route.template, path) {
            if route.method == method {
                return Ok(route);
            }
            path_known = true;
        }
    }
    Err(path_known)
}

/// The answer for a request no handler took, from the route table: 405 with
/// the methods the path has (the `Allow` header), else 404. Every function's
/// router and the local server end with it, so they answer alike.
pub fn unrouted(method: &Method, path: &str) -> crate::ApiError {
    let allowed: Vec<&str> = ROUTES
        .iter()
        .filter(|r| matches(r.template, path) && r.method != method)
        .map(|r| r.method.as_str())
        .collect();
    if allowed.is_empty() || find(method, path).is_ok() {
        // Unknown, or another function's route: this one does not serve it.
        crate::ApiError::NotFound
    } else {
        crate::ApiError::MethodNotAllowed { allow: allowed.join(", ") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_whole_segments() {
        assert!(matches("/admin/users/{user_id}/roles", "/admin/users/abc/roles"));
        assert!(!matches("/admin/users/{user_id}/roles", "/admin/users//roles"));
        assert!(!matches("/admin/users/{user_id}/roles", "/admin/users/abc/roles/x"));
        assert!(!matches("/me", "/mee"));
    }

    #[test]
    fn routes_resolve_with_405_and_404() {
        assert_eq!(find(&Method::GET, "/me").map(|r| r.function), Ok(Function::Login));
        assert_eq!(find(&Method::DELETE, "/me").map(|r| r.function), Err(true));
        assert_eq!(find(&Method::GET, "/nope").map(|r| r.function), Err(false));
        let admin = find(&Method::DELETE, "/admin/users/u1/roles/admin").map(|r| r.access);
        assert_eq!(admin, Ok(Access::Permission("users:manage")));
    }

    #[test]
    fn an_unrouted_request_gets_405_with_the_paths_methods_or_404() {
        let allow = |m: Method, p: &str| match unrouted(&m, p) {
            crate::ApiError::MethodNotAllowed { allow } => Some(allow),
            _ => None,
        };
        assert_eq!(allow(Method::DELETE, "/me").as_deref(), Some("GET"));
        assert_eq!(allow(Method::GET, "/admin/api-keys").as_deref(), Some("POST"));
        assert_eq!(allow(Method::GET, "/auth/mfa/totp").as_deref(), Some("DELETE"));
        assert_eq!(allow(Method::GET, "/nope"), None);
        assert_eq!(allow(Method::GET, "/me"), None, "a route another function serves is not a 405");
    }
}
