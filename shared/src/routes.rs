//! The HTTP contract's routes, declared once: the method, the path template,
//! the function and the route it is for that function, and what authentication
//! it needs. Each function's router resolves requests by this table and its
//! dispatch matches its own route enum exhaustively (a route declared here
//! without a handler does not compile); the local server routes by it; the
//! authorizer's RBAC rules and admin's permission checks come from it; the IaC
//! checks hold the template to it.

use crate::template::matches;
use http::Method;

/// The function that serves a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Login,
    Mfa,
    Refresh,
    Admin,
}

/// The login function's routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRoute {
    Health,
    Register,
    Login,
    ChangePassword,
    Reauth,
    Jwks,
    Me,
}

/// The mfa function's routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MfaRoute {
    Verify,
    Recovery,
    Enroll,
    Confirm,
    RemoveTotp,
}

/// The refresh function's routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshRoute {
    Refresh,
    Logout,
    LogoutAll,
    Sessions,
}

/// The admin function's routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRoute {
    ListUsers,
    GrantRole,
    RevokeRole,
    RevokeSessions,
    CreateApiKey,
    RevokeApiKey,
    SearchAudit,
    /// The caller's own security events.
    MyEvents,
}

/// A route as the function that serves it names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Login(LoginRoute),
    Mfa(MfaRoute),
    Refresh(RefreshRoute),
    Admin(AdminRoute),
}

impl Endpoint {
    pub fn function(self) -> Function {
        match self {
            Self::Login(_) => Function::Login,
            Self::Mfa(_) => Function::Mfa,
            Self::Refresh(_) => Function::Refresh,
            Self::Admin(_) => Function::Admin,
        }
    }
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
    pub endpoint: Endpoint,
    pub access: Access,
}

impl Route {
    /// The function that serves it.
    pub fn function(&self) -> Function {
        self.endpoint.function()
    }
}

macro_rules! route {
    ($m:ident $t:literal => $f:ident::$r:ident, $a:expr) => {
        Route { method: Method::$m, template: $t, endpoint: Endpoint::$f(paste_route!($f, $r)), access: $a }
    };
}

macro_rules! paste_route {
    (Login, $r:ident) => {
        LoginRoute::$r
    };
    (Mfa, $r:ident) => {
        MfaRoute::$r
    };
    (Refresh, $r:ident) => {
        RefreshRoute::$r
    };
    (Admin, $r:ident) => {
        AdminRoute::$r
    };
}

/// Every route of the HTTP contract (DESIGN.md).
pub static ROUTES: [Route; 24] = [
    route!(GET "/health" => Login::Health, Access::Public),
    route!(POST "/auth/register" => Login::Register, Access::Public),
    route!(POST "/auth/login" => Login::Login, Access::Public),
    route!(POST "/auth/mfa/verify" => Mfa::Verify, Access::Public),
    route!(POST "/auth/mfa/recovery" => Mfa::Recovery, Access::Public),
    route!(POST "/auth/mfa/totp/enroll" => Mfa::Enroll, Access::Bearer),
    route!(POST "/auth/mfa/totp/confirm" => Mfa::Confirm, Access::Bearer),
    route!(DELETE "/auth/mfa/totp" => Mfa::RemoveTotp, Access::Bearer),
    route!(POST "/auth/token/refresh" => Refresh::Refresh, Access::Public),
    route!(POST "/auth/logout" => Refresh::Logout, Access::Bearer),
    route!(POST "/auth/logout/all" => Refresh::LogoutAll, Access::Bearer),
    route!(GET "/auth/sessions" => Refresh::Sessions, Access::Bearer),
    route!(POST "/auth/password" => Login::ChangePassword, Access::Bearer),
    route!(POST "/auth/reauth" => Login::Reauth, Access::Bearer),
    route!(GET "/.well-known/jwks.json" => Login::Jwks, Access::Public),
    route!(GET "/me" => Login::Me, Access::Bearer),
    route!(GET "/me/events" => Admin::MyEvents, Access::Bearer),
    route!(GET "/admin/users" => Admin::ListUsers, Access::Permission("users:read")),
    route!(POST "/admin/users/{user_id}/roles" => Admin::GrantRole, Access::Permission("users:manage")),
    route!(DELETE "/admin/users/{user_id}/roles/{role}" => Admin::RevokeRole, Access::Permission("users:manage")),
    route!(POST "/admin/users/{user_id}/sessions/revoke" => Admin::RevokeSessions, Access::Permission("sessions:revoke")),
    route!(POST "/admin/api-keys" => Admin::CreateApiKey, Access::Permission("apikeys:manage")),
    route!(DELETE "/admin/api-keys/{key_id}" => Admin::RevokeApiKey, Access::Permission("apikeys:manage")),
    route!(GET "/admin/audit" => Admin::SearchAudit, Access::Permission("audit:read")),
];

/// The route enum of one function.
pub trait Served: Copy {
    /// The function's own route, or `None` for another function's.
    fn pick(endpoint: Endpoint) -> Option<Self>;
}

macro_rules! served {
    ($t:ident, $v:ident) => {
        impl Served for $t {
            fn pick(endpoint: Endpoint) -> Option<Self> {
                match endpoint {
                    Endpoint::$v(route) => Some(route),
                    _ => None,
                }
            }
        }
    };
}

served!(LoginRoute, Login);
served!(MfaRoute, Mfa);
served!(RefreshRoute, Refresh);
served!(AdminRoute, Admin);

/// A request resolved to one of a function's routes, with its path.
#[derive(Debug, Clone, Copy)]
pub struct Resolved<'p, R> {
    pub route: R,
    pub access: Access,
    template: &'static str,
    path: &'p str,
}

impl<'p, R> Resolved<'p, R> {
    /// The path segment standing where the template has `{name}`.
    pub fn param(&self, name: &str) -> Option<&'p str> {
        crate::template::capture(self.template, self.path, name)
    }
}

/// The route of `R`'s function a request names; otherwise the answer every
/// router gives alike: 405 with the path's own methods in `Allow`, else 404
/// (an unknown path, or another function's route).
pub fn resolve<'p, R: Served>(method: &Method, path: &'p str) -> Result<Resolved<'p, R>, crate::ApiError> {
    let route = find(method, path).map_err(|_| unrouted(method, path))?;
    let served = R::pick(route.endpoint).ok_or(crate::ApiError::NotFound)?;
    Ok(Resolved { route: served, access: route.access, template: route.template, path })
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
    use crate::template::overlap;

    #[test]
    fn routes_resolve_with_405_and_404() {
        assert_eq!(find(&Method::GET, "/me").map(|r| r.function()), Ok(Function::Login));
        assert_eq!(find(&Method::DELETE, "/me").map(|r| r.function()), Err(true));
        assert_eq!(find(&Method::GET, "/nope").map(|r| r.function()), Err(false));
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

    #[test]
    fn a_function_resolves_its_own_routes_with_their_parameters_and_nothing_else() {
        let found =
            resolve::<AdminRoute>(&Method::DELETE, "/admin/users/u-1/roles/support/").expect("admin's");
        assert_eq!((found.route, found.access), (AdminRoute::RevokeRole, Access::Permission("users:manage")));
        assert_eq!((found.param("user_id"), found.param("role")), (Some("u-1"), Some("support")));
        assert_eq!(found.param("key_id"), None);
        let login = resolve::<LoginRoute>(&Method::GET, "/me").expect("login's");
        assert_eq!(login.route, LoginRoute::Me);
        assert!(matches!(resolve::<MfaRoute>(&Method::GET, "/me"), Err(crate::ApiError::NotFound)));
        assert!(matches!(
            resolve::<LoginRoute>(&Method::PUT, "/me"),
            Err(crate::ApiError::MethodNotAllowed { allow }) if allow == "GET"
        ));
        assert!(matches!(resolve::<LoginRoute>(&Method::GET, "/nope"), Err(crate::ApiError::NotFound)));
    }

    /// No path is two routes of one method: the first match the table takes is
    /// the only one, as API Gateway (which prefers literal segments) sees it too.
    #[test]
    fn every_route_is_declared_once() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    !(a.method == b.method && overlap(a.template, b.template)) && a.endpoint != b.endpoint,
                    "{} {} / {} {}",
                    a.method,
                    a.template,
                    b.method,
                    b.template
                );
            }
        }
    }

    /// The contract's tables (DESIGN.md, "HTTP contract"): `(method, path, auth)` per row.
    fn contract_rows() -> Vec<(String, String, String)> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/DESIGN.md");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        text.lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let (method, path) = cells.get(1)?.split_once(' ')?;
                let known = ["GET", "POST", "DELETE", "PATCH", "PUT"].contains(&method);
                known.then(|| {
                    (method.to_owned(), path.to_owned(), cells.get(2).copied().unwrap_or("").to_owned())
                })
            })
            .collect()
    }

    /// What the contract's auth column says a caller must present.
    fn contract_access(auth: &str) -> Option<Access> {
        if auth == "none" {
            return Some(Access::Public);
        }
        if auth.starts_with("bearer") {
            return Some(Access::Bearer);
        }
        let permission = auth.split('`').nth(1)?;
        ROUTES.iter().find_map(|r| match r.access {
            Access::Permission(p) if p == permission => Some(Access::Permission(p)),
            _ => None,
        })
    }

    #[test]
    fn the_route_table_is_the_contracts() {
        let rows = contract_rows();
        assert!(rows.len() >= ROUTES.len(), "the contract's tables were not found: {rows:?}");
        for route in ROUTES.iter() {
            let row = rows.iter().find(|(m, p, _)| m == route.method.as_str() && p == route.template);
            let Some((_, _, auth)) = row else {
                panic!("{} {} is not in the contract", route.method, route.template);
            };
            assert_eq!(
                contract_access(auth),
                Some(route.access),
                "{} {}: {auth}",
                route.method,
                route.template
            );
        }
    }
}
