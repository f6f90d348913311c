//! Role-based access control: a policy of roles (which grant permissions,
//! `resource:action` with `resource:*` wildcards) and route rules (what each
//! route requires, under which conditions). Portcullis' own routes take their
//! rule from the route table (`crate::routes`, declared once); the deployment's
//! policy file (`PORTCULLIS_POLICY_FILE`, else the bundled `infra/rbac.json`)
//! adds the team's permissions, roles and routes, and may not redeclare one of
//! Portcullis'. Anything no rule covers is denied. The language is in
//! [`rules`] and `docs/security/policy.md`.

pub mod rules;

use crate::{routes, template};
use rules::RoleDef;
pub use rules::{has_second_factor, Conditions, Facts, Owner, Requirement, Rule, PUBLIC, SESSION};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// The policy shipped with this build.
pub const BUNDLED: &str = include_str!("../../../infra/rbac.json");

/// Why a policy was refused at load.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("policy file {file}: {error}")]
    File { file: String, error: Box<PolicyError> },
    #[error("cannot be read: {0}")]
    Unreadable(String),
    #[error("not a valid policy: {0}")]
    Syntax(String),
    #[error("role `{role}` grants unknown permission `{permission}`")]
    UnknownPermission { role: String, permission: String },
    #[error("role `{role}`: {what}")]
    InvalidRoleShape { role: String, what: String },
    #[error("role name `{0}` is invalid")]
    InvalidRole(String),
    #[error("rule {index} ({method} {path}): {what}")]
    Rule { index: usize, method: String, path: String, what: String },
    #[error("Portcullis route {method} {path} requires `{permission}`, which the policy does not declare")]
    UnknownRoutePermission { method: String, path: String, permission: String },
    #[error("rule {index} ({method} {path}) would decide requests of {other}")]
    DuplicateRoute { index: usize, method: String, path: String, other: String },
    #[error("role `user` (every account's) may not grant Portcullis' own permission `{0}`")]
    DefaultRoleTooStrong(String),
    #[error(
        "role `{role}` grants Portcullis' own permission `{permission}` without a second factor: write it \
         {{\"grants\": [...], \"mfa\": true}} (a stolen password alone must not administer accounts)"
    )]
    EmployeeRoleWithoutSecondFactor { role: String, permission: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default, rename = "_comment")]
    _comment: Option<serde_json::Value>,
    permissions: Vec<String>,
    roles: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    routes: Vec<serde_json::Value>,
}

/// A validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    permissions: BTreeSet<String>,
    roles: BTreeMap<String, RoleDef>,
    rules: Vec<Rule>,
    /// The owner exceptions (`orders:read:any`): held only when granted by
    /// name, never through a `resource:*` wildcard, so widening a role's
    /// grants to `orders:*` cannot hand it everyone's records.
    exact: BTreeSet<String>,
    /// How many of `rules` are Portcullis' own (they come first).
    own: usize,
    /// The rules whose first segment is a literal, by that literal in lower
    /// case, and those whose first segment is a parameter: a lookup reads only
    /// the rules that could cover a path, in their order.
    by_first: std::collections::HashMap<String, Vec<usize>>,
    open: Vec<usize>,
}

/// True when `grant` (possibly `resource:*`) names `permission`.
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

    /// The deployment's policy: the file `PORTCULLIS_POLICY_FILE` names, else
    /// the bundled one. Every error names the file and what is wrong in it.
    pub fn load(config: &crate::config::Config) -> Result<Self, PolicyError> {
        let Some(file) = &config.policy_file else { return Self::bundled() };
        let in_file = |error| PolicyError::File { file: file.display().to_string(), error: Box::new(error) };
        let text =
            std::fs::read_to_string(file).map_err(|e| in_file(PolicyError::Unreadable(e.to_string())))?;
        Self::parse(&text).map_err(in_file)
    }

    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let raw: RawPolicy = serde_json::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        let permissions: BTreeSet<String> = raw.permissions.into_iter().collect();
        let roles = rules::roles(raw.roles, &permissions)?;
        let mut rules = Self::table_rules(&permissions)?;
        let own = rules.len();
        for (index, value) in raw.routes.into_iter().enumerate() {
            let rule = rules::rule(index, value, &permissions)?;
            rules::placement(&rule, &rules[own..]).map_err(|other| PolicyError::DuplicateRoute {
                index,
                method: rule.method.clone(),
                path: rule.template.clone(),
                other,
            })?;
            rules.push(rule);
        }
        // The most specific rule decides, whatever the file's order (as API
        // Gateway picks among the routes a request matches).
        rules[own..].sort_by(|a, b| rules::precedence(b, a));
        let exact = rules.iter().filter_map(|r| r.conditions.owner.as_ref()?.unless.clone()).collect();
        let (mut by_first, mut open) = (std::collections::HashMap::<String, Vec<usize>>::new(), Vec::new());
        for (i, rule) in rules.iter().enumerate() {
            match template::first_literal(&rule.template) {
                Some(first) => by_first.entry(first.to_ascii_lowercase()).or_default().push(i),
                None => open.push(i),
            }
        }
        let policy = Self { permissions, roles, rules, exact, own, by_first, open };
        // Every account holds `user`: it may not reach Portcullis' administration.
        let table = |p: &str| {
            routes::ROUTES.iter().any(|r| matches!(r.access, routes::Access::Permission(q) if q == p))
        };
        if let Some(p) = policy.permissions_of("user").into_iter().find(|p| table(p)) {
            return Err(PolicyError::DefaultRoleTooStrong(p.to_owned()));
        }
        // Every other role that reaches Portcullis' administration (accounts,
        // sessions, API keys, the audit trail) counts only with a second factor.
        for role in
            policy.roles.iter().filter(|(name, def)| name.as_str() != "user" && !def.mfa).map(|(n, _)| n)
        {
            if let Some(p) = policy.permissions_of(role).into_iter().find(|p| table(p)) {
                let (role, permission) = (role.clone(), p.to_owned());
                return Err(PolicyError::EmployeeRoleWithoutSecondFactor { role, permission });
            }
        }
        Ok(policy)
    }

    /// The rules of the route table's routes.
    fn table_rules(permissions: &BTreeSet<String>) -> Result<Vec<Rule>, PolicyError> {
        let mut rules = Vec::new();
        for route in routes::ROUTES.iter() {
            let requirement = match route.access {
                routes::Access::Public => Requirement::Public,
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
            // API keys reach the permission routes their grants cover, never a person's.
            let api_keys = matches!(requirement, Requirement::Permission(_));
            rules.push(Rule {
                method: route.method.to_string(),
                template: route.template.to_owned(),
                requirement,
                conditions: Conditions { api_keys, ..Conditions::default() },
            });
        }
        Ok(rules)
    }

    /// The rule that decides a request (a concrete path as sent, or the route
    /// template API Gateway matched): Portcullis' own first, then the team's
    /// from the most specific, on the path's [`template::canonical`] form.
    /// `None` (deny) when none covers it, when the path has no canonical form,
    /// or when a more specific rule would cover it but for the case of a
    /// literal or the method, a `.format` suffix or surrounding whitespace (a
    /// lenient backend would serve that rule's route, while a looser rule
    /// decided).
    pub fn rule(&self, method: &str, path: &str) -> Option<&Rule> {
        let path = template::canonical(path)?;
        let first = path.trim_start_matches('/').split('/').next().unwrap_or_default();
        let keyed = match first.bytes().any(|b| b.is_ascii_uppercase()) {
            true => self.by_first.get(&first.to_ascii_lowercase()),
            false => self.by_first.get(first),
        };
        let (mut keyed, mut open) =
            (keyed.map(Vec::as_slice).unwrap_or_default().iter().peekable(), self.open.iter().peekable());
        let mut shadowed = false;
        // The candidates in the rules' order: both lists are ascending.
        while let Some(&i) = match (keyed.peek(), open.peek()) {
            (Some(k), Some(o)) if k < o => keyed.next(),
            (Some(_), Some(_)) | (None, Some(_)) => open.next(),
            (Some(_), None) => keyed.next(),
            (None, None) => None,
        } {
            let rule = &self.rules[i];
            if rule.covers(method, &path) {
                return (!shadowed).then_some(rule);
            }
            // HEAD is served as GET by most backends: a GET rule shadows it too.
            let same = rule.method == "*" || rule.method.eq_ignore_ascii_case(method);
            let head = method.eq_ignore_ascii_case("HEAD") && rule.method == "GET";
            shadowed |= (same || head) && template::matches_loosely(&rule.template, &path);
        }
        None
    }

    /// Judges `rule` (the one [`Policy::rule`] found for `path`) for a caller:
    /// `Ok` with the permission that matched, or the reason for a refusal.
    /// Path parameters come from `params` (API Gateway's, when `path` is the
    /// route template it matched), else from `path` along the rule's template;
    /// the caller holds a permission through its roles (under their
    /// conditions) or its API key's grants.
    pub fn judge(
        &self,
        rule: &Rule,
        path: &str,
        facts: &Facts<'_>,
        params: Option<&std::collections::HashMap<String, String>>,
    ) -> Result<Option<String>, &'static str> {
        let held = |p: &str| match facts.key_grants {
            Some(grants) => self.grants_cover(grants, p),
            None => self.grants(facts.roles, facts.amr, p),
        };
        // API Gateway's values are decoded: one holding a separator or a dot
        // segment would reach the backend as a path of its own.
        if params.is_some_and(|p| p.values().any(|v| !template::plain_segment(v))) {
            return Err("a path parameter is not a plain segment");
        }
        let canonical = template::canonical(path).ok_or("the path has no canonical form")?;
        let param = |name: &str| match params {
            Some(params) => params.get(name).cloned(),
            None => template::capture(&rule.template, &canonical, name).map(str::to_owned),
        };
        rule.judge(facts, &param, &held)
    }

    /// True when `grant` covers `permission` in this policy: by name, or as
    /// `resource:*` unless `permission` is an owner exception.
    fn grant_covers(&self, grant: &str, permission: &str) -> bool {
        grant == permission || (!self.exact.contains(permission) && covers(grant, permission))
    }

    /// The requirement of a concrete request, or `None` (deny) when no rule matches.
    pub fn requirement(&self, method: &str, path: &str) -> Option<&Requirement> {
        self.rule(method, path).map(|r| &r.requirement)
    }

    /// True when any of `roles` grants `permission`, whatever the roles'
    /// conditions. Unknown roles grant nothing.
    pub fn allows(&self, roles: &[String], permission: &str) -> bool {
        self.grant_lists(roles, true).any(|grant| self.grant_covers(grant, permission))
    }

    /// True when any of `roles` grants `permission` to a caller who proved
    /// what `amr` says: a role that requires a second factor grants nothing
    /// without one.
    pub fn grants(&self, roles: &[String], amr: &[String], permission: &str) -> bool {
        self.grant_lists(roles, has_second_factor(amr)).any(|grant| self.grant_covers(grant, permission))
    }

    fn grant_lists<'a>(
        &'a self,
        roles: &'a [String],
        second_factor: bool,
    ) -> impl Iterator<Item = &'a String> {
        let counts = move |def: &&RoleDef| !def.mfa || second_factor;
        roles.iter().filter_map(|r| self.roles.get(r)).filter(counts).flat_map(|def| def.grants.iter())
    }

    /// True when a set of explicit grants (an API key's) covers `permission`.
    pub fn grants_cover(&self, grants: &[String], permission: &str) -> bool {
        grants.iter().any(|g| self.grant_covers(g, permission))
    }

    /// Every permission `role` grants (its `resource:*` grants expanded).
    pub fn permissions_of(&self, role: &str) -> Vec<&str> {
        let grants = self.roles.get(role).map(|def| def.grants.as_slice()).unwrap_or_default();
        let granted = |p: &&String| grants.iter().any(|g| self.grant_covers(g, p));
        self.permissions.iter().filter(granted).map(String::as_str).collect()
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
            self.roles.get(r.as_str()).is_some_and(|def| def.grants.iter().any(|g| self.grant_covers(g, p)))
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

    /// The team's rules, most specific first (the order they decide in).
    pub fn team_rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules[self.own..].iter()
    }

    /// Whether `role` grants its permissions only with a second factor.
    pub fn role_needs_mfa(&self, role: &str) -> bool {
        self.roles.get(role).is_some_and(|def| def.mfa)
    }
}

#[cfg(test)]
mod tests;
