//! The rule language of a policy's `routes`: which requests a rule covers
//! (method, path template), what it requires (public, a live session, a
//! permission) and its conditions (a second factor, a maximum authentication
//! age, ownership of a path parameter, whether API keys may call it). The
//! JSON form is documented in `docs/security/policy.md`.

use super::{covers, PolicyError};
use crate::template::{matches, overlap, parameter, specificity};
use serde::Deserialize;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// The pseudo-permission of routes any logged-in user may call.
pub const SESSION: &str = "session";
/// The pseudo-permission of routes anyone may call, without credentials.
pub const PUBLIC: &str = "public";

/// What a route requires of its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// Anyone: the authorizer forwards no caller.
    Public,
    /// A live user session (no particular permission).
    Session,
    Permission(String),
}

/// Ownership: the path parameter `param` must equal the caller's `sub`,
/// unless the caller holds `unless` (support's `orders:read:any`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub param: String,
    pub unless: Option<String>,
}

/// What a rule asks beyond its requirement. All must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
    /// A second factor in the token's `amr`.
    pub mfa: bool,
    /// At most this many seconds since the caller last proved who they are (step-up).
    pub max_auth_age_secs: Option<i64>,
    pub owner: Option<Owner>,
    /// Whether an API key (whose grants cover the permission) may call it.
    pub api_keys: bool,
}

/// One route rule: `method` (`*` for any) on `template`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub method: String,
    pub template: String,
    pub requirement: Requirement,
    pub conditions: Conditions,
}

/// What the authorizer knows of a caller when it judges a rule.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub sub: &'a str,
    /// A live user session backs the credential (never for an API key).
    pub session: bool,
    /// The roles of a person; empty for an API key.
    pub roles: &'a [String],
    /// The grants of an API key; `None` for a person.
    pub key_grants: Option<&'a [String]>,
    pub amr: &'a [String],
    pub auth_time: Option<i64>,
    pub now: i64,
}

/// The methods in `amr` that are a second factor (RFC 8176).
pub const SECOND_FACTORS: [&str; 4] = ["otp", "mfa", "hwk", "swk"];

/// True when `amr` names a second factor.
pub fn has_second_factor(amr: &[String]) -> bool {
    amr.iter().any(|m| SECOND_FACTORS.contains(&m.as_str()))
}

impl Rule {
    /// True when this rule covers `method path`.
    pub fn covers(&self, method: &str, path: &str) -> bool {
        (self.method == "*" || self.method == method) && matches(&self.template, path)
    }

    /// The permission a caller's `held` grants must cover to pass ownership.
    fn owner_ok(&self, facts: &Facts<'_>, param: Option<&str>, held: &dyn Fn(&str) -> bool) -> bool {
        let Some(owner) = &self.conditions.owner else { return true };
        let own = param.is_some_and(|value| !value.is_empty() && value == facts.sub && facts.session);
        own || owner.unless.as_deref().is_some_and(held)
    }

    /// Judges a caller: `Ok` with the permission that matched (none for a
    /// session route), or the reason for a refusal. `param` reads a path
    /// parameter of the request; `held` says whether the caller holds a
    /// permission (its roles, under their conditions, or its key's grants).
    pub fn judge(
        &self,
        facts: &Facts<'_>,
        param: &dyn Fn(&str) -> Option<String>,
        held: &dyn Fn(&str) -> bool,
    ) -> Result<Option<String>, &'static str> {
        let c = &self.conditions;
        if self.requirement == Requirement::Public {
            return Ok(None);
        }
        if facts.key_grants.is_some() && !c.api_keys {
            return Err("API keys may not call this route");
        }
        let matched = match &self.requirement {
            Requirement::Public => None,
            Requirement::Session if facts.session => None,
            Requirement::Session => return Err("the route needs a user session"),
            Requirement::Permission(p) if held(p) => Some(p.clone()),
            Requirement::Permission(_) => return Err("the caller lacks the permission"),
        };
        if c.mfa && !has_second_factor(facts.amr) {
            return Err("the route needs a second factor");
        }
        if let Some(max) = c.max_auth_age_secs {
            let recent = |at: i64| at <= facts.now + crate::clock::LEEWAY_SECS && facts.now - at <= max;
            if !facts.auth_time.is_some_and(recent) {
                return Err("the route needs a recent authentication");
            }
        }
        let value = c.owner.as_ref().and_then(|o| param(&o.param));
        if !self.owner_ok(facts, value.as_deref(), held) {
            return Err("the caller does not own the record");
        }
        Ok(matched)
    }
}

/// A rule as a policy file writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    method: String,
    path: String,
    #[serde(default)]
    permission: Option<String>,
    #[serde(default)]
    mfa: bool,
    #[serde(default)]
    max_auth_age_secs: Option<i64>,
    #[serde(default)]
    owner: Option<RawOwner>,
    #[serde(default)]
    api_keys: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOwner {
    param: String,
    #[serde(default)]
    unless: Option<String>,
}

/// A role as a policy file writes it: its grants, or its grants and whether
/// they count only with a second factor.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    grants: Vec<String>,
    #[serde(default)]
    mfa: bool,
}

/// A validated role.
#[derive(Debug, Clone, Default)]
pub struct RoleDef {
    pub grants: Vec<String>,
    /// Its grants count only when the caller's `amr` holds a second factor.
    pub mfa: bool,
}

const METHODS: [&str; 8] = ["*", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Decodes the `roles` object: every role name valid, every grant known.
pub fn roles(
    raw: BTreeMap<String, serde_json::Value>,
    permissions: &BTreeSet<String>,
) -> Result<BTreeMap<String, RoleDef>, PolicyError> {
    let mut out = BTreeMap::new();
    for (name, value) in raw {
        crate::domain::Role::parse(&name).map_err(|_| PolicyError::InvalidRole(name.clone()))?;
        let def = match value {
            serde_json::Value::Array(_) => {
                serde_json::from_value(value).map(|grants| RoleDef { grants, mfa: false })
            }
            other => {
                serde_json::from_value::<RawRole>(other).map(|r| RoleDef { grants: r.grants, mfa: r.mfa })
            }
        }
        .map_err(|e| PolicyError::InvalidRoleShape { role: name.clone(), what: e.to_string() })?;
        if let Some(grant) = def.grants.iter().find(|g| !permissions.iter().any(|p| covers(g, p))) {
            return Err(PolicyError::UnknownPermission { role: name, permission: grant.clone() });
        }
        out.insert(name, def);
    }
    Ok(out)
}

/// Decodes rule `index` of the `routes` list against the declared permissions.
pub fn rule(
    index: usize,
    value: serde_json::Value,
    permissions: &BTreeSet<String>,
) -> Result<Rule, PolicyError> {
    let named = |v: &serde_json::Value, key| v.get(key).and_then(|x| x.as_str()).unwrap_or("?").to_owned();
    let method = match named(&value, "method").to_ascii_uppercase() {
        any if any == "ANY" => "*".to_owned(),
        method => method,
    };
    let path = named(&value, "path");
    let bad = |what: String| PolicyError::Rule { index, method: method.clone(), path: path.clone(), what };
    let raw: RawRule = serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
    if !METHODS.contains(&method.as_str()) {
        return Err(bad(format!("`{}` is not an HTTP method (or `*`, `ANY`)", raw.method)));
    }
    let params = template_params(&raw.path).map_err(bad)?;
    let known = |p: &str| permissions.contains(p);
    let requirement = match raw.permission.as_deref().map(str::trim) {
        None | Some("") => return Err(bad("no `permission` (a permission, `session` or `public`)".into())),
        Some(PUBLIC) => Requirement::Public,
        Some(SESSION) => Requirement::Session,
        Some(p) if known(p) => Requirement::Permission(p.to_owned()),
        Some(p) => return Err(bad(format!("unknown permission `{p}`"))),
    };
    let owner = raw.owner.map(|o| Owner { param: o.param, unless: o.unless });
    let conditions =
        Conditions { mfa: raw.mfa, max_auth_age_secs: raw.max_auth_age_secs, owner, api_keys: raw.api_keys };
    check_conditions(&requirement, &conditions, &params, &known).map_err(bad)?;
    Ok(Rule { method, template: raw.path, requirement, conditions })
}

/// The parameter names of a template, checked: segments non-empty, names
/// unique, a greedy `{x+}` only last.
fn template_params(template: &str) -> Result<Vec<String>, String> {
    if !template.starts_with('/') {
        return Err("the path must start with `/`".into());
    }
    let segments: Vec<&str> = template.trim_matches('/').split('/').collect();
    let mut names = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        if segment.is_empty() && template != "/" {
            return Err("the path has an empty segment".into());
        }
        match parameter(segment) {
            Some((name, greedy)) => {
                if name.is_empty() || names.iter().any(|n| n == name) {
                    return Err(format!("parameter `{segment}` is unnamed or repeated"));
                }
                if greedy && i + 1 != segments.len() {
                    return Err(format!("the greedy parameter `{segment}` must be the last segment"));
                }
                names.push(name.to_owned());
            }
            None if segment.contains(['{', '}']) => return Err(format!("`{segment}` is not a parameter")),
            None => {}
        }
    }
    Ok(names)
}

/// The conditions a requirement admits.
fn check_conditions(
    requirement: &Requirement,
    c: &Conditions,
    params: &[String],
    known: &dyn Fn(&str) -> bool,
) -> Result<(), String> {
    let conditional = c.mfa || c.max_auth_age_secs.is_some() || c.owner.is_some() || c.api_keys;
    if *requirement == Requirement::Public && conditional {
        return Err("a public route takes no conditions".into());
    }
    if *requirement == Requirement::Session && c.api_keys {
        return Err("`api_keys` needs a permission: an API key has no session".into());
    }
    if c.max_auth_age_secs.is_some_and(|s| s <= 0) {
        return Err("`max_auth_age_secs` must be positive".into());
    }
    if let Some(owner) = &c.owner {
        if !params.contains(&owner.param) {
            return Err(format!("owner parameter `{}` is not in the path", owner.param));
        }
        if let Some(p) = owner.unless.as_deref().filter(|p| !known(p)) {
            return Err(format!("owner exception `{p}` is an unknown permission"));
        }
        let ours = |p: &str| {
            crate::routes::ROUTES
                .iter()
                .any(|r| matches!(r.access, crate::routes::Access::Permission(q) if q == p))
        };
        if let Some(p) = owner.unless.as_deref().filter(|p| ours(p)) {
            return Err(format!(
                "owner exception `{p}` is Portcullis' own permission: name one of the team's"
            ));
        }
    }
    Ok(())
}

/// True when two methods (a verb, or `*`/`ANY` for any) can name one request.
pub fn methods_overlap(a: &str, b: &str) -> bool {
    let any = |m: &str| m == "*" || m == "ANY";
    any(a) || any(b) || a == b
}

/// Which of two rules decides a request both cover: the more specific
/// template ([`specificity`]), then a named method before `*`. `Greater` wins.
pub fn precedence(a: &Rule, b: &Rule) -> Ordering {
    specificity(&a.template, &b.template).then((a.method != "*").cmp(&(b.method != "*")))
}

/// Where a team rule may stand, beside Portcullis' route table and the
/// team's `earlier` rules; `Err` names what it would take over. Portcullis'
/// routes decide first, so a team rule may only be a fallback that is less
/// specific than every one of them it overlaps, and a public one may cover
/// no path of theirs under any method (`OPTIONS /{proxy+}` would open every
/// method they do not name). Two team rules may overlap when one is the
/// more specific; of one shape and method, which decides would be a guess.
pub fn placement(rule: &Rule, earlier: &[Rule]) -> Result<(), String> {
    for route in crate::routes::ROUTES.iter() {
        if !overlap(route.template, &rule.template) {
            continue;
        }
        let claims = methods_overlap(route.method.as_str(), &rule.method)
            && specificity(&rule.template, route.template) != Ordering::Less;
        if claims || rule.requirement == Requirement::Public {
            return Err(format!("Portcullis' own route {} {}", route.method, route.template));
        }
    }
    let twin = |e: &&Rule| e.method == rule.method && overlap(&e.template, &rule.template);
    match earlier.iter().find(|e| twin(e) && precedence(e, rule) == Ordering::Equal) {
        Some(e) => Err(format!("another rule ({} {}) of the same shape", e.method, e.template)),
        None => Ok(()),
    }
}
