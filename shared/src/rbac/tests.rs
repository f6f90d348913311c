//! The policy's loading, validation and decisions.

#[test]
fn a_role_is_assignable_only_by_a_holder_of_all_its_permissions() {
    let policy = Policy::bundled().expect("bundled");
    assert_eq!(policy.permissions_of("support"), ["sessions:revoke", "users:read"]);
    assert_eq!(policy.permissions_of("user"), Vec::<&str>::new());
    let key = |grants: &'static [&'static str]| {
        let policy = policy.clone();
        move |p: &str| policy.grants_cover(&grants.iter().map(|g| g.to_string()).collect::<Vec<_>>(), p)
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
            Access::Public => assert_eq!(required, Some(&Requirement::Public), "{}", route.template),
            Access::Bearer => assert_eq!(required, Some(&Requirement::Session), "{}", route.template),
            Access::Permission(perm) => {
                assert_eq!(required, Some(&Requirement::Permission(perm.into())), "{}", route.template)
            }
        }
    }
    assert_eq!(p.rules().count(), ROUTES.len());
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
const PERMISSIONS: &str =
    r#"["users:read", "users:manage", "sessions:revoke", "apikeys:manage", "audit:read"]"#;

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
    assert!(matches!(missing, PolicyError::Rule { index: 0, .. }), "{missing}");
    let route = Policy::parse(&base("{}", r#"[{"method": "GET", "path": "/x", "permission": "x:y"}]"#))
        .expect_err("unknown route permission");
    assert!(matches!(route, PolicyError::Rule { index: 0, .. }), "{route}");
    assert!(route.to_string().contains("unknown permission `x:y`"), "{route}");
    assert!(Policy::parse("{").is_err());
    assert!(Policy::parse(&base(r#"{"Bad Role": []}"#, "[]")).is_err());
}

/// A policy of the team's own: orders owned by customers, read by support
/// (`orders:read:any`), written with a second factor, refunded after a
/// step-up; a greedy file route; employees' grants that need a second factor.
const TEAM: &str = r#"{
  "permissions": ["users:read", "users:manage", "sessions:revoke", "apikeys:manage", "audit:read",
                  "orders:read", "orders:read:any", "orders:refund"],
  "roles": {
    "user": ["orders:read"],
    "support": {"grants": ["users:read", "orders:read", "orders:read:any"], "mfa": true},
    "admin": {"grants": ["users:*", "sessions:*", "apikeys:*", "audit:*", "orders:*"], "mfa": true}
  },
  "routes": [
    {"method": "GET", "path": "/orders/{user_id}/{order_id}", "permission": "orders:read",
     "owner": {"param": "user_id", "unless": "orders:read:any"}, "api_keys": true},
    {"method": "POST", "path": "/orders/{order_id}/refund", "permission": "orders:refund",
     "mfa": true, "max_auth_age_secs": 300},
    {"method": "*", "path": "/files/{proxy+}", "permission": "session"},
    {"method": "GET", "path": "/status", "permission": "public"}
  ]
}"#;

fn team() -> Policy {
    Policy::parse(TEAM).expect("the team policy is valid")
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A person with `roles` who proved `amr` at `auth_time` (now is 1000).
fn person<'a>(sub: &'a str, roles: &'a [String], amr: &'a [String], auth_time: i64) -> Facts<'a> {
    Facts { sub, session: true, roles, key_grants: None, amr, auth_time: Some(auth_time), now: 1000 }
}

/// Judges `method path` for `facts`, reading parameters from the path and
/// permissions from the roles (under their conditions) or the key's grants.
fn judge(p: &Policy, method: &str, path: &str, facts: &Facts<'_>) -> Result<Option<String>, &'static str> {
    let rule = p.rule(method, path).ok_or("no rule")?;
    p.judge(rule, path, facts, None)
}

#[test]
fn owners_read_their_records_and_support_reads_any_with_a_second_factor() {
    let p = team();
    let (user, support) = (names(&["user"]), names(&["support"]));
    let (pwd, otp) = (names(&["pwd"]), names(&["pwd", "otp"]));
    let ada = person("ada", &user, &pwd, 900);
    assert_eq!(judge(&p, "GET", "/orders/ada/7", &ada), Ok(Some("orders:read".into())));
    assert_eq!(judge(&p, "GET", "/orders/bob/7", &ada), Err("the caller does not own the record"));
    assert_eq!(judge(&p, "GET", "/orders/ada/7/", &ada), Ok(Some("orders:read".into())), "a trailing slash");
    assert_eq!(
        judge(&p, "get", "/orders/ada/7", &ada),
        Err("no rule"),
        "methods are case-sensitive, as in HTTP"
    );
    let sam = person("sam", &support, &otp, 900);
    assert_eq!(judge(&p, "GET", "/orders/bob/7", &sam), Ok(Some("orders:read".into())));
    // Support's grants need a second factor: without one it holds nothing.
    let sam_pwd = person("sam", &support, &pwd, 900);
    assert_eq!(judge(&p, "GET", "/orders/bob/7", &sam_pwd), Err("the caller lacks the permission"));
    assert!(p.role_needs_mfa("admin") && !p.role_needs_mfa("user"));
}

#[test]
fn api_keys_reach_only_rules_that_admit_them_and_never_own_a_record() {
    let p = team();
    let (reader, any) = (names(&["orders:read"]), names(&["orders:read", "orders:read:any"]));
    let key = |grants| Facts {
        sub: "apikey:k1",
        session: false,
        roles: &[],
        key_grants: Some(grants),
        amr: &[],
        auth_time: None,
        now: 1000,
    };
    assert_eq!(
        judge(&p, "GET", "/orders/apikey:k1/7", &key(&reader)),
        Err("the caller does not own the record")
    );
    assert_eq!(judge(&p, "GET", "/orders/ada/7", &key(&any)), Ok(Some("orders:read".into())));
    let refund = names(&["orders:refund"]);
    assert_eq!(judge(&p, "POST", "/orders/7/refund", &key(&refund)), Err("API keys may not call this route"));
    assert_eq!(judge(&p, "GET", "/files/a/b", &key(&any)), Err("API keys may not call this route"));
    // Portcullis' own permission routes admit keys whose grants cover them; its user routes never.
    let users = names(&["users:read"]);
    assert_eq!(judge(&p, "GET", "/admin/users", &key(&users)), Ok(Some("users:read".into())));
    assert_eq!(judge(&p, "GET", "/me", &key(&users)), Err("API keys may not call this route"));
}

#[test]
fn step_up_second_factor_greedy_paths_public_routes_and_default_deny() {
    let p = team();
    let admin = names(&["admin"]);
    let (pwd, otp) = (names(&["pwd"]), names(&["pwd", "otp"]));
    let fresh = person("root", &admin, &otp, 800);
    assert_eq!(judge(&p, "POST", "/orders/7/refund", &fresh), Ok(Some("orders:refund".into())));
    let stale = person("root", &admin, &otp, 699);
    assert_eq!(judge(&p, "POST", "/orders/7/refund", &stale), Err("the route needs a recent authentication"));
    let no_factor = person("root", &admin, &pwd, 900);
    assert_eq!(judge(&p, "POST", "/orders/7/refund", &no_factor), Err("the caller lacks the permission"));
    let user = names(&["user"]);
    let ada = person("ada", &user, &pwd, 900);
    assert_eq!(judge(&p, "DELETE", "/files/a/b/c", &ada), Ok(None), "any method, greedy");
    assert_eq!(
        judge(&p, "GET", "/files", &ada),
        Err("no rule"),
        "a greedy parameter takes one segment or more"
    );
    assert_eq!(judge(&p, "GET", "/status", &ada), Ok(None));
    assert_eq!(p.requirement("GET", "/status"), Some(&Requirement::Public));
    assert_eq!(judge(&p, "POST", "/status", &ada), Err("no rule"));
    assert_eq!(judge(&p, "GET", "/orders/ada", &ada), Err("no rule"));
    assert_eq!(judge(&p, "GET", "/orders/ada/7/8", &ada), Err("no rule"));
    assert_eq!(judge(&p, "GET", "/orders//7", &ada), Err("no rule"), "an empty segment is no parameter");
}

#[test]
fn every_mistake_in_a_policy_file_is_a_load_error_naming_the_rule() {
    let with = |routes: &str| {
        let text = format!(r#"{{"permissions": {PERMISSIONS}, "roles": {{}}, "routes": [{routes}]}}"#);
        Policy::parse(&text).map(|_| ()).map_err(|e| e.to_string())
    };
    for (rule, what) in [
        (r#"{"method": "GET", "path": "/x", "permission": "session", "mfaa": true}"#, "unknown field `mfaa`"),
        (r#"{"method": "FETCH", "path": "/x", "permission": "session"}"#, "not an HTTP method"),
        (r#"{"method": "GET", "path": "x", "permission": "session"}"#, "must start with `/`"),
        (r#"{"method": "GET", "path": "/{p+}/x", "permission": "session"}"#, "must be the last segment"),
        (r#"{"method": "GET", "path": "/{a}/{a}", "permission": "session"}"#, "unnamed or repeated"),
        (r#"{"method": "GET", "path": "/a{b}", "permission": "session"}"#, "is not a parameter"),
        (r#"{"method": "GET", "path": "/x", "permission": "public", "mfa": true}"#, "takes no conditions"),
        (r#"{"method": "GET", "path": "/x", "permission": "session", "api_keys": true}"#, "has no session"),
        (
            r#"{"method": "GET", "path": "/x", "permission": "session", "max_auth_age_secs": 0}"#,
            "must be positive",
        ),
        (
            r#"{"method": "GET", "path": "/x/{id}", "permission": "session", "owner": {"param": "user"}}"#,
            "not in the path",
        ),
        (
            r#"{"method": "GET", "path": "/x/{id}", "permission": "session", "owner": {"param": "id", "unless": "x:any"}}"#,
            "unknown permission",
        ),
        (
            r#"{"method": "*", "path": "/admin/users", "permission": "session"}"#,
            "Portcullis' own route GET /admin/users",
        ),
    ] {
        let err = with(rule).expect_err(rule);
        assert!(err.contains(what) && err.contains("rule 0"), "{rule}: {err}");
    }
    let user =
        Policy::parse(&format!(r#"{{"permissions": {PERMISSIONS}, "roles": {{"user": ["users:*"]}}}}"#));
    assert!(matches!(user, Err(PolicyError::DefaultRoleTooStrong(_))), "{user:?}");
    // A role that administers accounts, sessions, keys or the audit trail needs a
    // second factor; one that grants only the team's permissions does not.
    for grants in
        [r#"["users:*"]"#, r#"["sessions:revoke"]"#, r#"["audit:read"]"#, r#"{"grants": ["apikeys:manage"]}"#]
    {
        let weak =
            Policy::parse(&format!(r#"{{"permissions": {PERMISSIONS}, "roles": {{"ops": {grants}}}}}"#));
        assert!(
            matches!(weak, Err(PolicyError::EmployeeRoleWithoutSecondFactor { .. })),
            "{grants}: {weak:?}"
        );
    }
    let held = r#"{"grants": ["users:*", "audit:*"], "mfa": true}"#;
    assert!(
        Policy::parse(&format!(r#"{{"permissions": {PERMISSIONS}, "roles": {{"ops": {held}}}}}"#)).is_ok()
    );
    let shape =
        Policy::parse(&format!(r#"{{"permissions": {PERMISSIONS}, "roles": {{"x": {{"grant": []}}}}}}"#));
    assert!(matches!(shape, Err(PolicyError::InvalidRoleShape { .. })), "{shape:?}");
    assert!(
        Policy::parse(&format!(r#"{{"permissions": {PERMISSIONS}, "roles": {{}}, "rules": []}}"#)).is_err()
    );
}

#[test]
fn a_policy_file_is_read_at_load_and_its_errors_name_it() {
    let dir = std::env::temp_dir().join(format!("pc-policy-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("policy.json");
    let load = |file: &std::path::Path| {
        let config = crate::config::Config::from_lookup(|k| match k {
            "PORTCULLIS_STORE" => Some("memory".into()),
            "PORTCULLIS_POLICY_FILE" => Some(file.display().to_string()),
            _ => None,
        })
        .expect("config");
        Policy::load(&config)
    };
    std::fs::write(&file, TEAM).expect("write");
    assert_eq!(load(&file).expect("loads").requirement("GET", "/status"), Some(&Requirement::Public));
    std::fs::write(&file, TEAM.replace("orders:read:any\"}", "orders:read:all\"}")).expect("write");
    let err = load(&file).expect_err("an unknown exception").to_string();
    assert!(err.contains(&file.display().to_string()) && err.contains("rule 0"), "{err}");
    let err = load(&dir.join("missing.json")).expect_err("missing").to_string();
    assert!(err.contains("missing.json") && err.contains("cannot be read"), "{err}");
}

/// A policy of [`PERMISSIONS`] plus `orders:*`, with `roles` and `routes`.
fn orders_policy(roles: &str, routes: &str) -> Result<Policy, PolicyError> {
    Policy::parse(&format!(
        r#"{{"permissions": ["users:read", "users:manage", "sessions:revoke", "apikeys:manage", "audit:read",
                             "orders:read", "orders:read:any"],
            "roles": {roles}, "routes": [{routes}]}}"#
    ))
}

const OWNED: &str = r#"{"method": "GET", "path": "/orders/{user_id}/{order_id}", "permission": "orders:read",
                         "owner": {"param": "user_id", "unless": "orders:read:any"}, "api_keys": true}"#;

#[test]
fn a_greedy_or_wider_rule_never_shadows_a_more_specific_one_whatever_the_order() {
    let greedy = r#"{"method": "GET", "path": "/orders/{proxy+}", "permission": "session"}"#;
    let any = r#"{"method": "*", "path": "/orders/{id}/{n}", "permission": "session"}"#;
    let (user, pwd) = (names(&["user"]), names(&["pwd"]));
    let ada = person("ada", &user, &pwd, 900);
    for routes in [format!("{greedy}, {OWNED}"), format!("{OWNED}, {greedy}"), format!("{any}, {OWNED}")] {
        let p = orders_policy(r#"{"user": ["orders:read"]}"#, &routes).expect(&routes);
        assert_eq!(judge(&p, "GET", "/orders/ada/1", &ada), Ok(Some("orders:read".into())), "{routes}");
        assert_eq!(
            judge(&p, "GET", "/orders/bob/1", &ada),
            Err("the caller does not own the record"),
            "{routes}"
        );
    }
    // Two rules of one shape and method are ambiguous, however the parameters are named.
    let twin = OWNED.replace("{user_id}", "{owner}").replace("\"user_id\"", "\"owner\"");
    let err = orders_policy("{}", &format!("{OWNED}, {twin}")).expect_err("twins");
    assert!(matches!(err, PolicyError::DuplicateRoute { index: 1, .. }), "{err}");
    let greedy_twin = greedy.replace("proxy+", "rest+");
    assert!(orders_policy("{}", &format!("{greedy}, {greedy_twin}")).is_err());
}

#[test]
fn a_wildcard_grant_never_covers_an_owner_exception() {
    let p = orders_policy(r#"{"user": ["orders:*"], "support": ["orders:read", "orders:read:any"]}"#, OWNED)
        .expect("valid");
    let (user, support, pwd) = (names(&["user"]), names(&["support"]), names(&["pwd"]));
    let ada = person("ada", &user, &pwd, 900);
    assert_eq!(judge(&p, "GET", "/orders/ada/1", &ada), Ok(Some("orders:read".into())), "orders:* reads");
    assert_eq!(judge(&p, "GET", "/orders/bob/1", &ada), Err("the caller does not own the record"));
    assert!(!p.allows(&user, "orders:read:any") && !p.permissions_of("user").contains(&"orders:read:any"));
    let sam = person("sam", &support, &pwd, 900);
    assert_eq!(judge(&p, "GET", "/orders/bob/1", &sam), Ok(Some("orders:read".into())), "granted by name");
    let wild = names(&["orders:*"]);
    let key = Facts {
        sub: "apikey:k1",
        session: false,
        roles: &[],
        key_grants: Some(&wild),
        amr: &[],
        auth_time: None,
        now: 1000,
    };
    assert_eq!(judge(&p, "GET", "/orders/bob/1", &key), Err("the caller does not own the record"));
}

#[test]
fn a_path_a_backend_could_read_otherwise_matches_no_rule() {
    let nested = r#"{"method": "GET", "path": "/users/{user_id}/{rest+}", "permission": "session",
                     "owner": {"param": "user_id"}}"#;
    let files = r#"{"method": "*", "path": "/files/{proxy+}", "permission": "session"}"#;
    let p = orders_policy("{}", &format!("{nested}, {files}")).expect("valid");
    let (user, pwd) = (names(&["user"]), names(&["pwd"]));
    let ada = person("ada", &user, &pwd, 900);
    assert_eq!(judge(&p, "GET", "/users/ada/notes/1", &ada), Ok(None));
    assert_eq!(judge(&p, "GET", "/files/a%20b.txt", &ada), Ok(None), "other escapes are fine");
    for path in [
        "/users/ada/..%2F..%2Fusers%2Fbob%2Fnotes",
        "/users/ada/%2e%2e/%2e%2e/users/bob/notes",
        "/files/../users/bob/x",
        "/files/a%252Fb",
    ] {
        assert_eq!(judge(&p, "GET", path, &ada), Err("no rule"), "{path}");
    }
}

#[test]
fn a_rule_cannot_claim_or_open_a_path_of_portcullis_own() {
    let with = |rule: &str| orders_policy("{}", rule).map(|_| ()).map_err(|e| e.to_string());
    for rule in [
        r#"{"method": "OPTIONS", "path": "/{p+}", "permission": "public"}"#,
        r#"{"method": "GET", "path": "/{proxy+}", "permission": "public"}"#,
        r#"{"method": "HEAD", "path": "/admin/{x}", "permission": "public"}"#,
        r#"{"method": "POST", "path": "/admin/users/{id}/sessions/revoke", "permission": "session"}"#,
    ] {
        let err = with(rule).expect_err(rule);
        assert!(err.contains("rule 0"), "{rule}: {err}");
    }
    // A catch-all that needs a credential is a fallback: Portcullis' own rules come first.
    let p = orders_policy("{}", r#"{"method": "*", "path": "/{proxy+}", "permission": "session"}"#)
        .expect("valid");
    assert_eq!(p.requirement("GET", "/admin/users"), Some(&Requirement::Permission("users:read".into())));
    assert_eq!(p.requirement("POST", "/auth/login"), Some(&Requirement::Public));
    assert_eq!(p.requirement("GET", "/shop/basket"), Some(&Requirement::Session));
}

#[test]
fn a_literal_spelt_otherwise_never_falls_through_to_a_looser_rule() {
    let refund = r#"{"method": "POST", "path": "/orders/{order_id}/refund", "permission": "orders:read",
                     "mfa": true, "max_auth_age_secs": 300}"#;
    let profile = r#"{"method": "GET", "path": "/users/{user_id}/profile", "permission": "session",
                      "owner": {"param": "user_id"}}"#;
    let fallback = r#"{"method": "*", "path": "/{proxy+}", "permission": "session"}"#;
    let p =
        orders_policy(r#"{"user": ["orders:read"]}"#, &format!("{OWNED}, {refund}, {profile}, {fallback}"))
            .expect("valid");
    let (user, pwd) = (names(&["user"]), names(&["pwd"]));
    let ada = person("ada", &user, &pwd, 900);
    assert_eq!(judge(&p, "GET", "/orders/bob/7", &ada), Err("the caller does not own the record"));
    assert_eq!(
        judge(&p, "GET", "/%6Frders/bob/7", &ada),
        Err("the caller does not own the record"),
        "decoded"
    );
    assert_eq!(judge(&p, "POST", "/orders/7/%72efund", &ada), Err("the route needs a second factor"));
    for (method, path) in [
        ("GET", "/ORDERS/bob/7"),
        ("GET", "/orders;x/bob/7"),
        ("GET", "/orders//bob/7"),
        ("GET", "//orders/bob/7"),
        ("get", "/orders/bob/7"),
        ("POST", "/orders/7/Refund"),
        ("POST", "/orders/7/refund;"),
        ("POST", "/orders/7//refund"),
        ("GET", "/users/bob/Profile"),
        ("GET", "/orders/ada/..;/bob"),
        ("GET", "/orders/%c0%ae%c0%ae/bob"),
        ("GET", "/orders/%u002e/bob"),
        ("GET", "/ADMIN/users"),
        ("POST", "/orders/7/refund.json"),
        ("POST", "/orders/7/refund%20"),
        ("POST", "/orders/7/%20Refund.xml"),
    ] {
        assert_eq!(judge(&p, method, path, &ada), Err("no rule"), "{method} {path}");
    }
    assert_eq!(judge(&p, "GET", "/shop/basket", &ada), Ok(None), "the fallback still serves its own paths");
    // HEAD is served as GET by most backends: a GET rule's owner check is not left to the fallback.
    assert_eq!(judge(&p, "HEAD", "/orders/bob/7", &ada), Err("no rule"));
    assert_eq!(judge(&p, "HEAD", "/shop/basket", &ada), Ok(None));
    // API Gateway's decoded parameters must be plain segments too.
    let rule = p.rule("GET", "/orders/{user_id}/{order_id}").expect("the owner rule");
    let params = |order: &str| {
        std::collections::HashMap::from([
            ("user_id".to_owned(), "ada".to_owned()),
            ("order_id".to_owned(), order.to_owned()),
        ])
    };
    assert_eq!(
        p.judge(rule, "/orders/{user_id}/{order_id}", &ada, Some(&params("7"))),
        Ok(Some("orders:read".into()))
    );
    for bad in ["../../bob/7", "..", "7;x", "a\\b"] {
        let verdict = p.judge(rule, "/orders/{user_id}/{order_id}", &ada, Some(&params(bad)));
        assert_eq!(verdict, Err("a path parameter is not a plain segment"), "{bad}");
    }
    // An owner exception may not be one of Portcullis' permissions (it would leave every `users:*` role).
    let ours = OWNED.replace("orders:read:any", "users:manage");
    let err = orders_policy("{}", &ours).expect_err("a Portcullis permission as exception").to_string();
    assert!(err.contains("Portcullis' own permission"), "{err}");
}
