//! `portcullis policy check` and `portcullis policy explain`: the deployment's
//! policy as the authorizer loads it, held against the API template's routes,
//! and one decision with its reason.

use portcullis_shared::rbac::rules::methods_overlap;
use portcullis_shared::rbac::{Facts, Policy, Requirement, Rule};
use portcullis_shared::template::{overlap, parameter};
use yaml_rust2::{Yaml, YamlLoader};

#[derive(clap::Subcommand)]
pub enum PolicyCommand {
    /// Load the policy as the authorizer does; with a template, also check that
    /// every route it protects with the authorizer has a rule and every rule of
    /// the team's a route. Exit status 1 when anything is wrong.
    Check {
        /// The SAM or CloudFormation template of the API (YAML or JSON).
        #[arg(long)]
        template: Option<std::path::PathBuf>,
    },
    /// Print the rule that decides METHOD PATH and the decision for a caller.
    /// Exit status 0 when allowed, 2 when refused.
    Explain {
        method: String,
        path: String,
        /// A role the caller holds (repeat for several); `user` is every account's.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// How the caller authenticated (RFC 8176 `amr`), comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "pwd")]
        amr: Vec<String>,
        /// Seconds since the caller authenticated (for step-up rules).
        #[arg(long)]
        auth_age: Option<i64>,
        /// The caller's user id (for ownership rules).
        #[arg(long, default_value = "")]
        sub: String,
        /// Explain for an API key with these grants instead of a person.
        #[arg(long = "api-key-grant", conflicts_with_all = ["roles", "token"])]
        key_grants: Vec<String>,
        /// Take sub, roles, amr and auth_time from an access token (read, not verified).
        #[arg(long, conflicts_with_all = ["roles", "sub"])]
        token: Option<String>,
    },
}

/// `portcullis policy …`: offline, on the policy the configuration names.
pub fn run(command: PolicyCommand) -> anyhow::Result<()> {
    let config = portcullis_shared::config::Config::from_env()?;
    let policy = Policy::load(&config)?;
    let source =
        config.policy_file.as_ref().map_or("the bundled policy".to_owned(), |f| f.display().to_string());
    match command {
        PolicyCommand::Check { template } => {
            println!("{source}: valid, {} rules of the team's", policy.team_rules().count());
            let Some(template) = template else { return Ok(()) };
            let routes = template_routes(&std::fs::read_to_string(&template)?)?;
            let problems = check(&policy, &routes);
            let guarded = routes.iter().filter(|r| r.authorized).count();
            println!("{}: {} routes, {guarded} behind the authorizer", template.display(), routes.len());
            for problem in &problems {
                println!("problem: {problem}");
            }
            if !problems.is_empty() {
                anyhow::bail!("{} problems between the policy and the template", problems.len());
            }
            println!("every protected route has a rule and every rule a route");
            Ok(())
        }
        PolicyCommand::Explain { method, path, roles, amr, auth_age, sub, key_grants, token } => {
            let caller = Caller::from_args(roles, amr, auth_age, sub, key_grants, token)?;
            match explain(&policy, &method, &path, &caller) {
                Ok(text) => println!("{text}"),
                Err(text) => {
                    println!("{text}");
                    std::process::exit(2);
                }
            }
            Ok(())
        }
    }
}

/// A route of the API template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRoute {
    /// `GET`, ..., or `ANY`.
    pub method: String,
    pub path: String,
    /// API Gateway calls an authorizer for it.
    pub authorized: bool,
    /// Where the template declares it (`LoginFunction.Events.GetHealth`).
    pub at: String,
}

/// The routes a SAM or CloudFormation template declares: `HttpApi` and `Api`
/// events of serverless functions (their `Auth.Authorizer`, else the API's or
/// the globals' `DefaultAuthorizer`) and `AWS::ApiGatewayV2::Route`s
/// (`AuthorizationType: CUSTOM`). JSON templates read as YAML.
pub fn template_routes(text: &str) -> anyhow::Result<Vec<ApiRoute>> {
    let docs =
        YamlLoader::load_from_str(text).map_err(|e| anyhow::anyhow!("the template is not YAML: {e}"))?;
    let doc = docs.first().ok_or_else(|| anyhow::anyhow!("the template is empty"))?;
    let resources =
        doc["Resources"].as_hash().ok_or_else(|| anyhow::anyhow!("the template has no Resources"))?;
    let guarded =
        |auth: &Yaml| auth["DefaultAuthorizer"].as_str().is_some_and(|a| a != "NONE" && a != "AWS_IAM");
    let global = guarded(&doc["Globals"]["HttpApi"]["Auth"]) || guarded(&doc["Globals"]["Api"]["Auth"]);
    let api_guarded = |api: &Yaml| match api.as_str().and_then(|name| doc["Resources"][name].as_hash()) {
        Some(_) => guarded(&doc["Resources"][api.as_str().unwrap_or_default()]["Properties"]["Auth"]),
        None => global,
    };
    let mut routes = Vec::new();
    for (name, resource) in resources {
        let name = name.as_str().unwrap_or("?");
        let properties = &resource["Properties"];
        match resource["Type"].as_str() {
            Some("AWS::Serverless::Function") => {
                for (event, e) in properties["Events"].as_hash().into_iter().flatten() {
                    let kind = e["Type"].as_str();
                    let (Some("HttpApi" | "Api"), Some(path)) = (kind, e["Properties"]["Path"].as_str())
                    else {
                        continue;
                    };
                    let p = &e["Properties"];
                    let authorized = match p["Auth"]["Authorizer"].as_str() {
                        Some(a) => a != "NONE" && a != "AWS_IAM",
                        None => api_guarded(&p["ApiId"]) || api_guarded(&p["RestApiId"]),
                    };
                    routes.push(ApiRoute {
                        method: p["Method"].as_str().unwrap_or("ANY").to_ascii_uppercase(),
                        path: path.to_owned(),
                        authorized,
                        at: format!("{name}.Events.{}", event.as_str().unwrap_or("?")),
                    });
                }
            }
            Some("AWS::ApiGatewayV2::Route") => {
                let Some((method, path)) = properties["RouteKey"].as_str().and_then(|k| k.split_once(' '))
                else {
                    continue;
                };
                routes.push(ApiRoute {
                    method: method.to_ascii_uppercase(),
                    path: path.to_owned(),
                    authorized: properties["AuthorizationType"].as_str() == Some("CUSTOM"),
                    at: name.to_owned(),
                });
            }
            _ => {}
        }
    }
    Ok(routes)
}

/// Whether API Gateway hands the authorizer the route template (a fixed method
/// and depth) rather than the request's own path.
fn templated(route: &ApiRoute) -> bool {
    route.method != "ANY" && !route.path.contains("+}")
}

/// What is wrong between `policy` and the template's `routes`: a protected
/// route no rule decides (every request refused), an owner parameter the
/// route names otherwise (the check fails closed), a rule of the team's that
/// no route with the authorizer reaches (never applied).
pub fn check(policy: &Policy, routes: &[ApiRoute]) -> Vec<String> {
    let mut problems = Vec::new();
    for route in routes.iter().filter(|r| r.authorized) {
        let here = format!("{} {} ({})", route.method, route.path, route.at);
        if !templated(route) {
            let covered =
                policy.rules().any(|(m, t, _)| methods_overlap(m, &route.method) && overlap(t, &route.path));
            if !covered {
                problems.push(format!("{here}: no rule covers any request of it, so all are refused"));
            }
            continue;
        }
        let Some(rule) = policy.rule(&route.method, &route.path) else {
            problems.push(format!("{here}: no rule decides it, so every request is refused"));
            continue;
        };
        let finer = |t: &&Rule| {
            methods_overlap(&t.method, &route.method)
                && overlap(&t.template, &route.path)
                && portcullis_shared::rbac::rules::precedence(t, rule).is_gt()
        };
        if let Some(t) = policy.team_rules().find(finer) {
            problems.push(format!(
                "{here}: the rule {} {} is more specific than the route's ({} {}), so the authorizer refuses the requests it covers; give it a route of its own",
                t.method, t.template, rule.method, rule.template
            ));
        }
        let names: Vec<&str> = route.path.split('/').filter_map(|s| parameter(s).map(|(n, _)| n)).collect();
        if let Some(owner) = rule.conditions.owner.as_ref().filter(|o| !names.contains(&o.param.as_str())) {
            problems.push(format!(
                "{here}: its rule ({} {}) reads the owner from `{{{}}}`, which the route does not name, so every request is refused",
                rule.method, rule.template, owner.param
            ));
        }
    }
    for rule in policy.team_rules() {
        let reaches =
            |r: &&ApiRoute| methods_overlap(&rule.method, &r.method) && overlap(&rule.template, &r.path);
        let public = rule.requirement == Requirement::Public;
        if !routes.iter().filter(|r| r.authorized || public).any(|r| reaches(&r)) {
            let unguarded = routes.iter().find(reaches);
            let why = match unguarded {
                Some(r) => {
                    format!("its route {} {} ({}) does not call the authorizer", r.method, r.path, r.at)
                }
                None => "no route of the template matches it".to_owned(),
            };
            problems.push(format!("team rule {} {}: never applied: {why}", rule.method, rule.template));
        }
    }
    problems
}

/// A caller to explain a decision for.
#[derive(Debug, Default)]
pub struct Caller {
    pub sub: String,
    pub roles: Vec<String>,
    pub amr: Vec<String>,
    /// Seconds since the caller authenticated.
    pub auth_age: Option<i64>,
    /// An API key's grants (then the caller holds no roles).
    pub key_grants: Option<Vec<String>>,
}

impl Caller {
    /// The caller `explain`'s arguments describe: a token's claims, an API
    /// key's grants, or a person (who holds `user`, as every account does).
    fn from_args(
        roles: Vec<String>,
        amr: Vec<String>,
        auth_age: Option<i64>,
        sub: String,
        key_grants: Vec<String>,
        token: Option<String>,
    ) -> anyhow::Result<Self> {
        Ok(match token {
            Some(token) => {
                let claims: portcullis_shared::tokens::AccessClaims =
                    portcullis_shared::tokens::unverified_payload(&token)
                        .ok_or_else(|| anyhow::anyhow!("--token is not one of our access tokens"))?;
                let now = portcullis_shared::clock::Clock::now_secs(&portcullis_shared::clock::SystemClock);
                println!(
                    "caller: the token's claims (not verified; the authorizer takes roles from the session)"
                );
                let auth_age = Some(now - claims.auth_time);
                Caller { sub: claims.sub, roles: claims.roles, amr: claims.amr, auth_age, key_grants: None }
            }
            None if !key_grants.is_empty() => {
                Caller { sub: "apikey:explain".into(), key_grants: Some(key_grants), ..Default::default() }
            }
            None => {
                let roles = std::iter::once("user".to_owned()).chain(roles).collect();
                Caller { sub, roles, amr, auth_age, key_grants: None }
            }
        })
    }
}

/// The decision on `method path` for `caller`, in words: the rule that decides
/// it and the verdict with its reason. `Ok` when allowed.
pub fn explain(policy: &Policy, method: &str, path: &str, caller: &Caller) -> Result<String, String> {
    let Some(rule) = policy.rule(method, path) else {
        return Err(format!(
            "{method} {path}\nrule: none (no rule covers it, or the path is one a backend could read otherwise)\ndecision: deny (403)"
        ));
    };
    let now = 0;
    let facts = Facts {
        sub: &caller.sub,
        session: caller.key_grants.is_none(),
        roles: &caller.roles,
        key_grants: caller.key_grants.as_deref(),
        amr: &caller.amr,
        auth_time: caller.auth_age.map(|age| now - age),
        now,
    };
    let head = format!("{method} {path}\nrule: {}", describe(rule));
    match policy.judge(rule, path, &facts, None) {
        Ok(Some(p)) => Ok(format!("{head}\ndecision: allow, with permission {p}")),
        Ok(None) => Ok(format!("{head}\ndecision: allow")),
        Err(reason) => Err(format!("{head}\ndecision: deny (403): {reason}")),
    }
}

/// A rule in one line: what it requires and under which conditions.
fn describe(rule: &Rule) -> String {
    let c = &rule.conditions;
    let mut words = vec![format!(
        "{} {} requires {}",
        rule.method,
        rule.template,
        match &rule.requirement {
            Requirement::Public => "nothing (public)".to_owned(),
            Requirement::Session => "a live session".to_owned(),
            Requirement::Permission(p) => format!("`{p}`"),
        }
    )];
    if c.mfa {
        words.push("a second factor".into());
    }
    if let Some(max) = c.max_auth_age_secs {
        words.push(format!("an authentication at most {max} s old"));
    }
    if let Some(owner) = &c.owner {
        let unless =
            owner.unless.as_deref().map(|u| format!(" unless the caller holds `{u}`")).unwrap_or_default();
        words.push(format!("`{{{}}}` equal to the caller's sub{unless}", owner.param));
    }
    words.push(if c.api_keys { "API keys admitted".into() } else { "no API keys".into() });
    words.join("; ")
}
