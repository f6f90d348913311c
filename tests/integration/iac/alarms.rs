//! Every guessing limit raises an alarm: the throttles behind a bearer token
//! (disabling TOTP, changing the password, re-authenticating) and registration
//! have their own, and every function that throttles feeds `Lockouts`. The
//! events and reasons the filters match are ones the code records.

use super::least_privilege::{repo, source};
use super::yaml::Value;
use super::{parsed, properties};
use portcullis_shared::routes::{Function, ROUTES};
use std::collections::BTreeSet;

/// Metric, the function whose log group it reads, the event, and the reasons
/// (any of them) that single it out.
const THROTTLE_ALARMS: [(&str, &str, &str, &[&str]); 4] = [
    ("MfaDisableFailures", "MfaFunction", "mfa_verify_failure", &["disable_code"]),
    ("PasswordChangeFailures", "LoginFunction", "password_change_failure", &[]),
    (
        "RegistrationThrottled",
        "LoginFunction",
        "login_throttled",
        &["registration_address", "registration_source_ip"],
    ),
    ("ReauthFailures", "LoginFunction", "reauth_failure", &[]),
];
/// Events named before the code that records them lands: `POST /auth/reauth`.
const PENDING_EVENTS: [&str; 1] = ["reauth_failure"];

fn resources(template: &Value) -> &[(String, Value)] {
    template.get("Resources").expect("Resources").entries()
}

fn of_type<'a>(template: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    let found =
        resources(template).iter().filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some(kind));
    found.map(|(name, r)| (name.as_str(), r.get("Properties").expect("Properties"))).collect()
}

fn metric_of(filter: &Value) -> String {
    let transformations = filter.get("MetricTransformations").map(Value::items).unwrap_or_default();
    let metric = transformations.first().and_then(|t| t.get("MetricName")).and_then(Value::as_str);
    metric.unwrap_or_default().to_owned()
}

/// The quoted values a filter pattern compares `$.<field>` with.
fn compared(pattern: &str, field: &str) -> BTreeSet<String> {
    let needle = format!("$.{field} = \"");
    pattern.split(&needle).skip(1).filter_map(|rest| rest.split('"').next()).map(str::to_owned).collect()
}

/// The function that serves `POST /auth/reauth`, once the route exists.
fn reauth_function() -> &'static str {
    let route = ROUTES.iter().find(|r| r.template == "/auth/reauth");
    match route.map(|r| r.function()) {
        None | Some(Function::Login) => "LoginFunction",
        Some(Function::Mfa) => "MfaFunction",
        Some(Function::Refresh) => "RefreshFunction",
        Some(Function::Admin) => "AdminFunction",
    }
}

#[test]
fn every_new_throttle_has_its_own_alarm() {
    let template = parsed();
    for (metric, function, event, reasons) in THROTTLE_ALARMS {
        let function = if metric == "ReauthFailures" { reauth_function() } else { function };
        let filter = properties(&template, &format!("{metric}Filter"));
        let group = filter.get("LogGroupName").map(Value::to_string);
        assert_eq!(group, Some(format!("!Ref {function}Logs")), "{metric}");
        let pattern = filter.get("FilterPattern").and_then(Value::as_str).unwrap_or_default();
        assert_eq!(
            compared(pattern, "event_type"),
            BTreeSet::from([event.to_owned()]),
            "{metric}: {pattern}"
        );
        let expected: BTreeSet<String> = reasons.iter().map(|r| r.to_string()).collect();
        assert_eq!(compared(pattern, "reason"), expected, "{metric}: {pattern}");
        if reasons.len() > 1 {
            assert!(pattern.contains("||"), "{metric}: any of the reasons, not all: {pattern}");
        }
        assert_eq!(metric_of(filter), metric);
        alarmed(&template, metric);
    }
}

/// An alarm on `metric` that notifies the topic.
fn alarmed(template: &Value, metric: &str) {
    let alarms = of_type(template, "AWS::CloudWatch::Alarm");
    let alarm = alarms.iter().find(|(_, a)| a.get("MetricName").and_then(Value::as_str) == Some(metric));
    let (name, alarm) = alarm.unwrap_or_else(|| panic!("no alarm on {metric}"));
    assert_eq!(alarm.get("Namespace").and_then(Value::as_str), Some("Portcullis"), "{name}");
    let actions = alarm.get("AlarmActions").map(Value::to_string);
    assert_eq!(actions.as_deref(), Some("[!Ref AlarmTopic]"), "{name}");
}

#[test]
fn every_metric_is_alarmed_and_matches_only_events_and_reasons_the_code_records() {
    let template = parsed();
    let audit = std::fs::read_to_string(repo("shared/src/audit.rs")).expect("audit.rs");
    let code = source(&repo("functions")) + &source(&repo("shared/src"));
    for (name, filter) in of_type(&template, "AWS::Logs::MetricFilter") {
        alarmed(&template, &metric_of(filter));
        let pattern = filter.get("FilterPattern").and_then(Value::as_str).unwrap_or_default();
        let events = compared(pattern, "event_type");
        assert!(!events.is_empty(), "{name}: {pattern}");
        for event in events {
            // An audit event type, or one the authorizer logs itself.
            let recorded = audit.contains(&format!("=> \"{event}\""))
                || code.contains(&format!("event_type = \"{event}\""));
            assert!(recorded || PENDING_EVENTS.contains(&event.as_str()), "{name}: no event {event}");
        }
        for reason in compared(pattern, "reason") {
            assert!(code.contains(&format!("\"{reason}\"")), "{name}: no reason {reason}");
        }
    }
}

/// A function that throttles records `login_throttled` in its own log group;
/// each such group feeds `Lockouts`.
#[test]
fn every_function_that_throttles_feeds_the_lockouts_alarm() {
    let template = parsed();
    let filters = of_type(&template, "AWS::Logs::MetricFilter");
    let mut throttling = 0;
    for short in ["login", "mfa", "refresh", "admin", "authorizer", "backup"] {
        let code = source(&repo(&format!("functions/{short}/src")));
        if !(code.contains("admit_audited") || code.contains("EventType::LoginThrottled")) {
            continue;
        }
        throttling += 1;
        let group = format!("!Ref {}{}FunctionLogs", short[..1].to_ascii_uppercase(), &short[1..]);
        let fed = filters.iter().any(|(_, f)| {
            f.get("LogGroupName").map(Value::to_string) == Some(group.clone())
                && compared(f.get("FilterPattern").and_then(Value::as_str).unwrap_or_default(), "event_type")
                    .contains("login_throttled")
                && metric_of(f) == "Lockouts"
        });
        assert!(fed, "{short}'s throttles raise no alarm");
    }
    assert_eq!(throttling, 3, "login, mfa and refresh throttle");
    alarmed(&template, "Lockouts");
}
