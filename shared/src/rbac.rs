//! Role-based access control: the policy in `infra/rbac.json`, bundled into the
//! binary and validated when it loads. Roles grant permissions (`resource:action`,
//! with `resource:*` wildcards); each protected route requires one permission, or
//! `session` (any live user session). Portcullis' own routes take their
//! requirement from the route table (`crate::routes`, declared once); the
//! policy's `routes` list adds routes beyond them and may not redeclare one.
//! Anything not in the policy is denied.

use crate::routes;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// The policy shipped with this build.
pub const BUNDLED: &str = include_str!("../../infra/rbac.json");

/// The pseudo-permission of routes any logged-in user may call.
pub const SESSION: &str = "session";

/// Why a policy was refused at load.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("RBAC policy is not valid JSON: {0}")]
    Syntax(String),
    #[error("RBAC policy: role `{role}` grants unknown permission `{permission}`")]
    UnknownPermission { role: String, permission: String },
    #[error("RBAC policy: route {method} {path} requires unknown permission `{permission}`")]
    UnknownRoutePermission { method: String, path: String, permission: String },
    #[error("RBAC policy: route {method} {path} has no permission")]
    RouteWithoutPermission { method: String, path: String },
    #[error(
        "RBAC policy: route {method} {path} is listed twice, or is a path of Portcullis' own route table"
    )]
    DuplicateRoute { method: String, path: String },
    #[error("RBAC policy: role name `{0}` is invalid")]
    InvalidRole(String),
}

#[derive(Deserialize)]
struct RawRoute {
    method: String,
    path: String,
    #[serde(default)]
    permission: Option<String>,
}

#[derive(Deserialize)]
struct RawPolicy {
    permissions: Vec<String>,
    roles: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    routes: Vec<RawRoute>,
}

/// What a route requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// A live user session (no particular permission).
    Session,
    Permission(String),
}

#[derive(Debug, Clone)]
struct Rule {
    method: String,
    template: String,
    requirement: Requirement,
}

/// A validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    permissions: BTreeSet<String>,
    roles: BTreeMap<String, Vec<String>>,
    rules: Vec<Rule>,
}

/// True when `grant` (possibly `resource:*`) covers `permission`.
fn covers(grant: &str, permission: &str) -> bool {
    match grant.strip_suffix(":*") {
        Some(resource) => permission.split_once(':').is_some_and(|(r, _)| r == resource),
        None => grant == permission,
    }
}

impl Policy {
    /// The bundled policy; an invalid one is a build defect caught by the tests.
    pub fn bundled() -> Result<Self, PolicyError> {
        Self::parse(BUNDLED)
    }

    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let raw: RawPolicy = serde_json::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        let permissions: BTreeSet<String> = raw.permissions.into_iter().collect();
        for (role, grants) in &raw.roles {
            crate::domain::Role::parse(role).map_err(|_| PolicyError::InvalidRole(role.clone()))?;
            for grant in grants {
                if !permissions.iter().any(|p| covers(grant, p)) {
                    return Err(PolicyError::UnknownPermission {
                        role: role.clone(),
                        permission: grant.clone(),
                    });
                }
            }
        }
        let mut rules = Self::table_rules(&permissions)?;
        for route in raw.routes {
            let method = route.method.to_ascii_uppercase();
            // Not one path of Portcullis' own (public ones included), however written.
            let ours = routes::ROUTES
                .iter()
                .any(|r| r.method.as_str() == method && routes::overlap(r.template, &route.path));
            if ours || rules.iter().any(|r| r.method == method && routes::overlap(&r.template, &route.path)) {
                return Err(PolicyError::DuplicateRoute { method, path: route.path });
            }
            let requirement = match route.permission.as_deref().map(str::trim) {
                None | Some("") => {
                    return Err(PolicyError::RouteWithoutPermission { method, path: route.path })
                }
                Some(SESSION) => Requirement::Session,
                Some(p) if permissions.contains(p) => Requirement::Permission(p.to_owned()),
                Some(p) => {
                    return Err(PolicyError::UnknownRoutePermission {
                        method,
                        path: route.path,
                        permission: p.to_owned(),
                    })
                }
            };
            rules.push(Rule { method, template: route.path, requirement });
        }
        Ok(Self { permissions, roles: raw.roles, rules })
    }

    /// The rules of the route table's protected routes.
    fn table_rules(permissions: &BTreeSet<String>) -> Result<Vec<Rule>, PolicyError> {
        let mut rules = Vec::new();
        for route in routes::ROUTES.iter() {
            let requirement = match route.access {
                routes::Access::Public => continue,
                routes::Access::Bearer => Requirement::Session,
                routes::Access::Permission(p) if permissions.contains(p) => {
                    Requirement::Permission(p.to_owned())
                }
                routes::Access::Permission(p) => {
                    return Err(PolicyError::UnknownRoutePermission {
                        method: route.method.to_string(),
                        path: route.template.to_owned(),
                        permission: p.to_owned(),
                    })
                }
            };
            rules.push(Rule {
                method: route.method.to_string(),
                template: route.template.to_owned(),
                requirement,
            });
        }
        Ok(rules)
    }

    /// The requirement of a concrete request, or `None` (deny) when no rule matches.
    pub fn requirement(&self, method: &str, path: &str) -> Option<&Requirement> {
        self.rules
            .iter()
            .find(|r| r.method.eq_ignore_ascii_case(method) && routes::matches(&r.template, path))
            .map(|r| &r.requirement)
    }

    /// True when any of `roles` grants `permission`. Unknown roles grant nothing.
    pub fn allows(&self, roles: &[String], permission: &str) -> bool {
        roles.iter().filter_map(|r| self.roles.get(r)).flatten().any(|grant| covers(grant, permission))
    }

    /// True when a set of explicit grants (an API key's) covers `permission`.
    pub fn grants_cover(grants: &[String], permission: &str) -> bool {
        grants.iter().any(|g| covers(g, permission))
    }

    /// Every permission `role` grants (its `resource:*` grants expanded).
    pub fn permissions_of(&self, role: &str) -> Vec<&str> {
        let grants = self.roles.get(role).map(Vec::as_slice).unwrap_or_default();
        self.permissions.iter().filter(|p| grants.iter().any(|g| covers(g, p))).map(String::as_str).collect()
    }

    /// The escalation check (as Kubernetes RBAC's): a caller may grant or revoke
    /// `role` only when it holds every permission the role grants itself, as
    /// decided by `holds`.
    pub fn may_assign(&self, role: &str, holds: impl Fn(&str) -> bool) -> bool {
        self.is_role(role) && self.permissions_of(role).into_iter().all(holds)
    }

    /// The roles that grant some permission `role` grants (`role` among them
    /// when it grants any): the assignments a removal of `role` must see to
    /// know whether anyone else still holds each of its permissions.
    pub fn roles_sharing(&self, role: &str) -> Vec<crate::domain::Role> {
        let own = self.permissions_of(role);
        self.roles
            .keys()
            .filter(|other| self.permissions_of(other).iter().any(|p| own.contains(p)))
            .filter_map(|other| crate::domain::Role::parse(other).ok())
            .collect()
    }

    /// The permissions of `role` that nobody would hold any more once `user`
    /// loses it, given every assignment of [`Policy::roles_sharing`]: the
    /// last-holder guard. A permission nobody holds can never be granted
    /// again (granting a role needs every permission of it), so such a removal
    /// would lock the deployment out of part of itself.
    pub fn last_held<U: PartialEq>(
        &self,
        assignments: &[(U, crate::domain::Role)],
        user: &U,
        role: &str,
    ) -> Vec<&str> {
        let grants = |r: &crate::domain::Role, p: &str| {
            self.roles.get(r.as_str()).is_some_and(|gs| gs.iter().any(|g| covers(g, p)))
        };
        self.permissions_of(role)
            .into_iter()
            .filter(|p| {
                let held =
                    |(u, r): &&(U, crate::domain::Role)| grants(r, p) && !(u == user && r.as_str() == role);
                let before = assignments.iter().any(|(_, r)| grants(r, p));
                before && !assignments.iter().any(|a| held(&a))
            })
            .collect()
    }

    pub fn is_permission(&self, permission: &str) -> bool {
        self.permissions.contains(permission)
    }

    pub fn is_role(&self, role: &str) -> bool {
        self.roles.contains_key(role)
    }

    /// Every (method, template, requirement) rule, for consistency checks.
    pub fn rules(&self) -> impl Iterator<Item = (&str, &str, &Requirement)> {
        self.rules.iter().map(|r| (r.method.as_str(), r.template.as_str(), &r.requirement))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_role_is_assignable_only_by_a_holder_of_all_its_permissions() {
        let policy = Policy::bundled().expect("bundled");
        assert_eq!(policy.permissions_of("support"), ["sessions:revoke", "users:read"]);
        assert_eq!(policy.permissions_of("user"), Vec::<&str>::new());
        let key = |grants: &'static [&'static str]| {
            move |p: &str| Policy::grants_cover(&grants.iter().map(|g| g.to_string()).collect::<Vec<_>>(), p)
        };
        // users:manage alone is not enough to hand out admin or support.
        assert!(!policy.may_assign("admin", key(&["users:manage"])));
        assert!(!policy.may_assign("support", key(&["users:manage"])));
        assert!(policy.may_assign("user", key(&["users:manage"])));
        assert!(policy.may_assign("support", key(&["users:manage", "users:read", "sessions:revoke"])));
        let admin = vec!["admin".to_string()];
        assert!(policy.may_assign("admin", |p| policy.allows(&admin, p)));
        assert!(!policy.may_assign("no-such-role", |_| true));
    }

    use super::*;
    use crate::domain::Role;
    use crate::routes::{Access, ROUTES};

    #[test]
    fn removing_a_role_may_not_leave_a_permission_without_holder() {
        let p = policy();
        let role = |r: &str| Role::parse(r).expect("role");
        let names = |roles: Vec<Role>| roles.iter().map(|r| r.as_str().to_owned()).collect::<Vec<_>>();
        assert_eq!(names(p.roles_sharing("support")), ["admin", "support"]);
        assert_eq!(names(p.roles_sharing("admin")), ["admin", "auditor", "support"]);
        assert!(p.roles_sharing("user").is_empty());
        let one_admin = [(1, role("admin")), (2, role("support"))];
        // Support still holds users:read and sessions:revoke; nobody else the rest.
        assert_eq!(p.last_held(&one_admin, &1, "admin"), ["apikeys:manage", "audit:read", "users:manage"]);
        assert!(p.last_held(&one_admin, &2, "support").is_empty(), "the admin still holds them");
        assert!(p.last_held(&one_admin, &2, "admin").is_empty(), "2 does not hold admin: nothing changes");
        let two_admins = [(1, role("admin")), (2, role("admin"))];
        assert!(p.last_held(&two_admins, &1, "admin").is_empty());
        assert!(p.last_held::<i32>(&[], &1, "admin").is_empty(), "nobody held them before either");
        assert!(p.last_held(&one_admin, &1, "user").is_empty());
    }

    fn policy() -> Policy {
        Policy::bundled().expect("the bundled policy is valid")
    }

    #[test]
    fn the_bundled_policy_matches_the_route_table() {
        let p = policy();
        for route in ROUTES.iter() {
            let required = p.requirement(route.method.as_str(), route.template);
            match route.access {
                Access::Public => assert_eq!(required, None, "{} {}", route.method, route.template),
                Access::Bearer => assert_eq!(required, Some(&Requirement::Session), "{}", route.template),
                Access::Permission(perm) => {
                    assert_eq!(required, Some(&Requirement::Permission(perm.into())), "{}", route.template)
                }
            }
        }
        assert_eq!(p.rules().count(), ROUTES.iter().filter(|r| r.access != Access::Public).count());
    }

    #[test]
    fn roles_grant_what_the_contract_names() {
        let p = policy();
        let roles = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(p.allows(&roles(&["admin"]), "users:manage"));
        assert!(p.allows(&roles(&["admin"]), "apikeys:manage"));
        assert!(p.allows(&roles(&["support"]), "users:read"));
        assert!(!p.allows(&roles(&["support"]), "users:manage"));
        assert!(!p.allows(&roles(&["user"]), "users:read"));
        assert!(!p.allows(&roles(&["auditor"]), "users:read"));
        assert!(!p.allows(&roles(&["root"]), "users:read"), "unknown roles grant nothing");
        assert_eq!(p.requirement("GET", "/admin/users/x/unknown"), None, "deny by default");
    }

    /// The permissions the route table names.
    const PERMISSIONS: &str = r#"["users:read", "users:manage", "sessions:revoke", "apikeys:manage"]"#;

    #[test]
    fn a_policy_may_add_routes_but_not_redeclare_portcullis_own() {
        let with = |routes: &str| {
            Policy::parse(&format!(r#"{{"permissions": {PERMISSIONS}, "roles": {{}}, "routes": {routes}}}"#))
        };
        let extra =
            with(r#"[{"method": "GET", "path": "/orders/{id}", "permission": "session"}]"#).expect("valid");
        assert_eq!(extra.requirement("GET", "/orders/7"), Some(&Requirement::Session));
        assert_eq!(extra.requirement("GET", "/me"), Some(&Requirement::Session), "the table's own");
        for ours in [
            r#"{"method": "GET", "path": "/admin/users", "permission": "session"}"#,
            r#"{"method": "post", "path": "/admin/users/{id}/roles/", "permission": "session"}"#,
            r#"{"method": "POST", "path": "//auth/register", "permission": "session"}"#,
        ] {
            let redeclared = with(&format!("[{ours}]"));
            assert!(matches!(redeclared, Err(PolicyError::DuplicateRoute { .. })), "{ours}: {redeclared:?}");
        }
        let missing = Policy::parse(r#"{"permissions": ["users:read"], "roles": {}}"#);
        assert!(matches!(missing, Err(PolicyError::UnknownRoutePermission { .. })), "{missing:?}");
    }

    #[test]
    fn invalid_policies_are_refused_with_a_clear_message() {
        let base = |roles: &str, routes: &str| {
            format!(r#"{{"permissions": {PERMISSIONS}, "roles": {roles}, "routes": {routes}}}"#)
        };
        let unknown = Policy::parse(&base(r#"{"user": ["users:delete"]}"#, "[]")).expect_err("unknown grant");
        assert!(unknown.to_string().contains("users:delete"), "{unknown}");
        let missing =
            Policy::parse(&base("{}", r#"[{"method": "GET", "path": "/x"}]"#)).expect_err("no permission");
        assert!(matches!(missing, PolicyError::RouteWithoutPermission { .. }));
        let route = Policy::parse(&base("{}", r#"[{"method": "GET", "path": "/x", "permission": "x:y"}]"#))
            .expect_err("unknown route permission");
        assert!(matches!(route, PolicyError::UnknownRoutePermission { .. }));
        assert!(Policy::parse("{").is_err());
        assert!(Policy::parse(&base(r#"{"Bad Role": []}"#, "[]")).is_err());
    }
}
