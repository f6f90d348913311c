//! What cfn-lint and checkov cannot see: each function role may use AppKey only
//! for the encryption-context purposes its code uses, touch only its own item
//! kinds of the session table, and read only its own database password, which is
//! in no function's environment. The expectations are read from the code where
//! the code says them (purposes, item kinds, secrets), so a new use fails here
//! until the template grants it.

use super::yaml::Value;
use super::{allows, condition, key_policy, one, parsed, principals, properties, statements, wildcard};
use super::{ACCOUNT_ROOT, VIA_LAMBDA, VIA_SECRETS};
use std::collections::BTreeSet;
use std::path::Path;

const VIA_DYNAMODB: &str = "!Sub dynamodb.${AWS::Region}.amazonaws.com";
/// KMS actions that use key material (the rest administer the key).
const USE_ACTIONS: [&str; 5] =
    ["kms:Decrypt", "kms:GenerateDataKey", "kms:Encrypt", "kms:ReEncryptFrom", "kms:ReEncryptTo"];
/// The only function that creates the envelope keys (on a deployment's first start).
const CREATES_ENVELOPE_KEYS: &str = "login";
/// The functions that open no database (and so have no password to read).
const WITHOUT_DATABASE: [&str; 1] = ["notify"];
/// The only function that reads the mail queue, and the only key it uses besides AppKey.
const READS_MAIL: &str = "notify";

/// The partition-key kinds (`<KIND>#…`) each function reads and writes, from the
/// stores it opens: sessions `USER#`, refresh tokens `RT#`, attempt counters
/// `THROTTLE#`, MFA challenges `MFA#`, API keys `APIKEY#`.
const ITEM_KINDS: [(&str, &[&str]); 5] = [
    ("login", &["USER", "RT", "THROTTLE", "MFA"]),
    ("mfa", &["USER", "RT", "THROTTLE", "MFA"]),
    ("refresh", &["USER", "RT", "THROTTLE"]),
    ("admin", &["USER", "APIKEY"]),
    ("authorizer", &["USER", "APIKEY"]),
];
/// Item kinds an adapter writes that no function opens yet, so no role may
/// touch them: pending one-time tokens, until the account-lifecycle flows
/// (verify, reset, change an address) use them.
const OPENED_BY_NO_FUNCTION: [&str; 1] = ["PENDING"];
/// DynamoDB actions that name the items they touch (so `dynamodb:LeadingKeys`
/// is in their request). Scan and the table-level actions are not among them:
/// `ForAllValues` over an absent key is true.
const ITEM_ACTIONS: [&str; 5] =
    ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Query"];

/// Every `.rs` file under `dir`, concatenated.
pub(super) fn source(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten() {
        let path = entry.path();
        if path.is_dir() {
            text.push_str(&source(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            text.push_str(&std::fs::read_to_string(&path).expect("source file"));
        }
    }
    text
}

pub(super) fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// The template's functions: logical id (`LoginFunction`) and short name (`login`).
fn functions(template: &Value) -> Vec<(String, String)> {
    let resources = template.get("Resources").expect("Resources").entries();
    let found: Vec<(String, String)> = resources
        .iter()
        .filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some("AWS::Serverless::Function"))
        .map(|(name, _)| {
            let short = name.strip_suffix("Function").expect("named <Name>Function").to_ascii_lowercase();
            (name.clone(), short)
        })
        .collect();
    assert_eq!(found.len(), 7, "{found:?}");
    found
}

/// The statements of a function's own policies (SAM `Policies`).
fn role_statements<'a>(template: &'a Value, function: &str) -> Vec<&'a Value> {
    let policies = properties(template, function).get("Policies").map(Value::items).unwrap_or_default();
    policies.into_iter().flat_map(|p| statements(Some(p))).collect()
}

/// The purposes a function's code unwraps envelope keys for: `Boot::fields`
/// and `fields_kept` (field encryption), `Boot::tokens`/`current_tokens`
/// (token signing).
fn purposes_in_code(short: &str) -> BTreeSet<String> {
    let keyring = std::fs::read_to_string(repo("shared/src/crypto/keyring.rs")).expect("keyring");
    let code = source(&repo(&format!("functions/{short}/src")));
    let mut purposes = BTreeSet::new();
    let calls = [
        (".fields()", "field-encryption"),
        (".fields_kept(", "field-encryption"),
        (".tokens()", "token-signing"),
        (".current_tokens(", "token-signing"),
    ];
    for (call, purpose) in calls {
        assert!(keyring.contains(&format!("\"{purpose}\"")), "keyring.rs no longer names {purpose}");
        if code.contains(call) {
            purposes.insert(purpose.to_owned());
        }
    }
    purposes
}

/// The ARN of a function's role, as its `RolePath` makes it (the role's own name is CloudFormation's).
fn role_arn(template: &Value, function: &str) -> String {
    let path =
        properties(template, function).get("RolePath").unwrap_or_else(|| panic!("{function}: RolePath"));
    let Value::Tag(tag, path) = path else { panic!("{function}: RolePath is not a !Sub: {path}") };
    assert_eq!(tag, "!Sub");
    format!("!Sub arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role{path}{function}Role-X1Y2Z3")
}

/// Whether a key-policy statement applies to a function's role: named by
/// `!GetAtt`, or the account with an `aws:PrincipalArn` pattern that matches
/// the role (the account with no such condition applies to every principal).
pub(super) fn covers(template: &Value, statement: &Value, function: &str) -> bool {
    let named = principals(statement).iter().any(|p| *p == format!("!GetAtt {function}Role.Arn"));
    let account = principals(statement).iter().any(|p| p == ACCOUNT_ROOT);
    let patterns = condition(statement, "ArnLike", "aws:PrincipalArn");
    let arn = role_arn(template, function);
    named || (account && patterns.is_none_or(|ps| ps.iter().any(|p| wildcard(p, &arn))))
}

fn uses(statement: &Value) -> Vec<&'static str> {
    USE_ACTIONS.iter().copied().filter(|a| allows(statement, a)).collect()
}

/// Whether a statement allows any use of key material.
pub(super) fn uses_key(statement: &Value) -> bool {
    !uses(statement).is_empty()
}

/// A function's environment is encrypted with AppKey; its ARN, from its name.
fn function_arn(template: &Value, function: &str) -> String {
    let name =
        properties(template, function).get("FunctionName").unwrap_or_else(|| panic!("{function} name"));
    let Value::Tag(_, name) = name else { panic!("{function}: FunctionName {name}") };
    format!("!Sub arn:${{AWS::Partition}}:lambda:${{AWS::Region}}:${{AWS::AccountId}}:function:{name}")
}

fn secret_of(function: &str) -> String {
    format!("!Ref {}DatabaseSecret", function.strip_suffix("Function").expect("function"))
}

/// AppKey's policy: direct use (no `kms:ViaService`) only by the function roles,
/// each only for a purpose its code uses; Lambda, Secrets Manager and DynamoDB
/// only for the stack's environments, secrets and table.
#[test]
fn app_key_serves_each_role_only_the_purposes_its_code_uses() {
    let template = parsed();
    let functions = functions(&template);
    let mut granted = BTreeSet::new();
    for statement in key_policy(&template, "AppKey") {
        let actions = uses(statement);
        if actions.is_empty() {
            continue;
        }
        match condition(statement, "StringEquals", "kms:ViaService") {
            Some(via) if via == one(VIA_LAMBDA).expect("one") => {
                let arn = condition(statement, "ArnLike", "kms:EncryptionContext:aws:lambda:FunctionArn");
                let stack = "!Sub arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:${AWS::StackName}-*";
                assert_eq!(arn, one(stack), "environments of other functions: {statement}");
            }
            Some(via) if via == one(VIA_SECRETS).expect("one") => {
                let arn = condition(statement, "ArnLike", "kms:EncryptionContext:SecretARN");
                let stack = "!Sub arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${AWS::StackName}/database/*";
                assert_eq!(arn, one(stack), "other secrets: {statement}");
                // Created by the deployer, read by the operator and each function.
                assert_eq!(actions, ["kms:Decrypt", "kms:GenerateDataKey"], "{statement}");
            }
            Some(via) => {
                assert_eq!(via, one(VIA_DYNAMODB).expect("one"), "through another service: {statement}")
            }
            None => {
                assert!(
                    !principals(statement).iter().any(|p| p == ACCOUNT_ROOT)
                        || condition(statement, "ArnLike", "aws:PrincipalArn").is_some(),
                    "any principal of the account may be granted direct use: {statement}"
                );
                let app = condition(statement, "StringEquals", "kms:EncryptionContext:app");
                assert_eq!(app, one("portcullis"), "{statement}");
                let purposes = condition(statement, "StringEquals", "kms:EncryptionContext:purpose")
                    .unwrap_or_else(|| panic!("direct use for any purpose: {statement}"));
                for (function, short) in functions.iter().filter(|(f, _)| covers(&template, statement, f)) {
                    let used = purposes_in_code(short);
                    for action in &actions {
                        let creates = *action == "kms:GenerateDataKey" && short == CREATES_ENVELOPE_KEYS;
                        assert!(*action == "kms:Decrypt" || creates, "{short} may {action}: {statement}");
                        for purpose in &purposes {
                            assert!(
                                used.contains(purpose),
                                "{short} may {action} for {purpose}, unused: {statement}"
                            );
                            granted.insert((function.clone(), action.to_string(), purpose.clone()));
                        }
                    }
                }
            }
        }
    }
    // And what the code needs is there (else the function stops at cold start).
    for (function, short) in &functions {
        for purpose in purposes_in_code(short) {
            let key = (function.clone(), "kms:Decrypt".to_owned(), purpose.clone());
            assert!(granted.contains(&key), "{short} cannot unwrap its {purpose} key");
        }
    }
    for purpose in ["field-encryption", "token-signing"] {
        let key = ("LoginFunction".to_owned(), "kms:GenerateDataKey".to_owned(), purpose.to_owned());
        assert!(granted.contains(&key), "nobody creates the {purpose} key");
    }
}

/// The roles' own policies say the same, each naming only its own function's
/// environment and its own secret.
#[test]
fn each_role_uses_app_key_only_for_its_purposes_its_environment_and_its_secret() {
    let template = parsed();
    for (function, short) in functions(&template) {
        let mut environment = false;
        let mut secret = false;
        for statement in role_statements(&template, &function) {
            let actions = uses(statement);
            let resources: Vec<String> = statement
                .get("Resource")
                .map(Value::items)
                .unwrap_or_default()
                .iter()
                .map(|r| r.to_string())
                .collect();
            if actions.is_empty() {
                continue;
            }
            if resources == ["!GetAtt MailKey.Arn"] {
                assert_eq!(short, READS_MAIL, "{short} reads the mail queue: {statement}");
                assert_eq!(actions, ["kms:Decrypt"], "{short}: {statement}");
                let via = condition(statement, "StringEquals", "kms:ViaService");
                assert_eq!(via, one("!Sub sqs.${AWS::Region}.amazonaws.com"), "{short}: {statement}");
                continue;
            }
            assert_eq!(resources, ["!GetAtt AppKey.Arn"], "{short}: KMS on another key or on *: {statement}");
            match condition(statement, "StringEquals", "kms:ViaService") {
                Some(via) if via == one(VIA_LAMBDA).expect("one") => {
                    let arn =
                        condition(statement, "StringEquals", "kms:EncryptionContext:aws:lambda:FunctionArn");
                    assert_eq!(arn, one(&function_arn(&template, &function)), "{short}: {statement}");
                    environment = true;
                }
                Some(via) if via == one(VIA_SECRETS).expect("one") => {
                    let arn = condition(statement, "StringEquals", "kms:EncryptionContext:SecretARN");
                    assert_eq!(arn, one(&secret_of(&function)), "{short}: another secret: {statement}");
                    secret = true;
                }
                Some(via) => {
                    assert_eq!(via, one(VIA_DYNAMODB).expect("one"), "{short}: {statement}");
                    assert!(ITEM_KINDS.iter().any(|(f, _)| *f == short), "{short} does not use the table");
                }
                None => {
                    let purposes = condition(statement, "StringEquals", "kms:EncryptionContext:purpose");
                    assert_eq!(purposes, Some(purposes_in_code(&short)), "{short}: {statement}");
                    let creates = actions.contains(&"kms:GenerateDataKey");
                    assert!(!creates || short == CREATES_ENVELOPE_KEYS, "{short} creates envelope keys");
                }
            }
        }
        assert!(environment, "{short} cannot read its environment");
        assert_eq!(secret, !WITHOUT_DATABASE.contains(&short.as_str()), "{short}: its database password");
    }
}

/// The partition-key kinds the code under `dir` writes: every `"pk"` built
/// with `format!("<KIND>#…")`.
fn item_kinds_in(dir: &str) -> BTreeSet<String> {
    let code = source(&repo(dir));
    let mut kinds = BTreeSet::new();
    for line in code.lines().filter(|l| l.contains("pk\"")) {
        let after_pk = &line[line.find("pk\"").expect("pk")..];
        if let Some((_, rest)) = after_pk.split_once("format!(\"") {
            let kind = rest.split('#').next().unwrap_or_default();
            if !kind.is_empty() && kind.chars().all(|c| c.is_ascii_uppercase()) && rest.contains('#') {
                kinds.insert(kind.to_owned());
            }
        }
    }
    kinds
}

/// Where the DynamoDB adapters, and the one description of the table's keys, live.
const DYNAMO_ADAPTERS: &str = "shared/src/adapters/dynamo";

/// The partition-key kinds the stores write. All of them are built in the
/// DynamoDB adapters' folder: a key written anywhere else in `shared/src`
/// would escape both this test's owner table and the layout documented there.
fn item_kinds_in_code() -> BTreeSet<String> {
    let kinds = item_kinds_in(DYNAMO_ADAPTERS);
    assert_eq!(item_kinds_in("shared/src"), kinds, "a DynamoDB key is built outside {DYNAMO_ADAPTERS}");
    kinds
}

/// The partition-key kinds of the table layout at the top of the DynamoDB
/// adapters' `mod.rs` (the `pk` column of its table).
fn item_kinds_documented() -> BTreeSet<String> {
    let docs = std::fs::read_to_string(repo(&format!("{DYNAMO_ADAPTERS}/mod.rs"))).expect("dynamo/mod.rs");
    let mut kinds = BTreeSet::new();
    for row in docs.lines().filter_map(|l| l.strip_prefix("//! |")) {
        let pk = row.split('|').nth(1).unwrap_or_default();
        let first = pk.split('`').nth(1).unwrap_or_default();
        if let Some((kind, _)) = first.split_once('#') {
            kinds.insert(kind.to_owned());
        }
    }
    kinds
}

#[test]
fn the_table_layout_documents_exactly_the_item_kinds_the_adapters_write() {
    let documented = item_kinds_documented();
    assert!(documented.len() >= 5, "the layout table was read: {documented:?}");
    assert_eq!(documented, item_kinds_in_code(), "{DYNAMO_ADAPTERS}/mod.rs: the table layout");
}

/// `dynamodb:LeadingKeys` holds each function to its item kinds: a compromised
/// login, MFA or refresh function cannot write an `APIKEY#` item, and the
/// authorizer writes nothing.
#[test]
fn each_function_touches_only_its_own_item_kinds_of_the_session_table() {
    let template = parsed();
    let declared: BTreeSet<String> = ITEM_KINDS
        .iter()
        .flat_map(|(_, kinds)| kinds.iter().map(|k| k.to_string()))
        .chain(OPENED_BY_NO_FUNCTION.iter().map(|k| k.to_string()))
        .collect();
    assert_eq!(
        item_kinds_in_code(),
        declared,
        "an item kind in the DynamoDB adapters has no owner here, or went"
    );
    for (function, short) in functions(&template) {
        let owned = ITEM_KINDS.iter().find(|(f, _)| *f == short).map(|(_, k)| *k).unwrap_or_default();
        let on_table: Vec<&Value> = role_statements(&template, &function)
            .into_iter()
            .filter(|s| {
                let actions = s.get("Action").map(Value::items).unwrap_or_default();
                actions.iter().any(|a| a.as_str().is_some_and(|a| a.starts_with("dynamodb:")))
            })
            .collect();
        assert_eq!(on_table.is_empty(), owned.is_empty(), "{short}: DynamoDB grants");
        for statement in on_table {
            let resource = statement.get("Resource").map(Value::to_string);
            assert_eq!(resource.as_deref(), Some("!GetAtt SessionsTable.Arn"), "{short}: {statement}");
            let actions = statement.get("Action").map(Value::items).unwrap_or_default();
            for action in actions.iter().filter_map(|a| a.as_str()) {
                assert!(ITEM_ACTIONS.contains(&action), "{short}: {action} names no item: {statement}");
                if short == "authorizer" {
                    assert_eq!(action, "dynamodb:GetItem", "the authorizer writes: {statement}");
                }
            }
            let patterns = condition(statement, "ForAllValues:StringLike", "dynamodb:LeadingKeys")
                .unwrap_or_else(|| panic!("{short}: every item kind: {statement}"));
            let expected: BTreeSet<String> = owned.iter().map(|k| format!("{k}#*")).collect();
            assert_eq!(patterns, expected, "{short}");
            // Hostile keys: another kind, a kind's name run on, a bare kind.
            for kind in declared.iter().filter(|k| !owned.contains(&k.as_str())) {
                for key in [format!("{kind}#k1"), format!("{kind}#USER#k1")] {
                    assert!(!patterns.iter().any(|p| wildcard(p, &key)), "{short} may touch {key}");
                }
            }
            for kind in owned {
                assert!(patterns.iter().any(|p| wildcard(p, &format!("{kind}#abc"))), "{short}: {kind}");
                assert!(!patterns.iter().any(|p| wildcard(p, &format!("{kind}X#abc"))), "{short}: {kind}X");
            }
        }
    }
}

/// Nothing secret in any environment: no dynamic reference resolved at deploy
/// time, no password in a database URL; each function names its own secret,
/// generated here and encrypted with AppKey, and may read only that one.
#[test]
fn no_environment_holds_a_password_and_each_role_reads_only_its_own_secret() {
    let text = std::fs::read_to_string(repo("infra/template.yaml")).expect("template");
    for reference in ["{{resolve:secretsmanager", "{{resolve:ssm-secure", "{{resolve:ssm"] {
        assert!(!text.contains(reference), "a value resolved into the template: {reference}");
    }
    let template = parsed();
    let globals = template.get("Globals").and_then(|g| g.get("Function")).expect("Globals");
    let mut environments = vec![("Globals".to_owned(), globals.get("Environment"))];
    let functions = functions(&template);
    for (function, _) in &functions {
        environments.push((function.clone(), properties(&template, function).get("Environment")));
    }
    for (owner, environment) in environments {
        let variables = environment.and_then(|e| e.get("Variables")).map(Value::entries).unwrap_or_default();
        for (name, value) in variables {
            let upper = name.to_ascii_uppercase();
            let secretish =
                ["PASSWORD", "SECRET", "TOKEN", "PRIVATE", "CREDENTIAL"].iter().any(|w| upper.contains(w));
            if name == "PORTCULLIS_DATABASE_PASSWORD_SECRET" {
                assert_eq!(value.to_string(), secret_of(&owner), "{owner}: another function's secret");
            } else {
                assert!(!secretish, "{owner}: {name} in the environment");
            }
            if name == "PORTCULLIS_DATABASE_URL" {
                let url = value.to_string();
                let credentials =
                    url.split("mysql://").nth(1).and_then(|u| u.split('@').next()).unwrap_or_default();
                assert!(!credentials.contains(':'), "{owner}: a password in {url}");
            }
        }
    }
    for (function, short) in &functions {
        let env = properties(&template, function).get("Environment").and_then(|e| e.get("Variables"));
        let named = env.and_then(|v| v.get("PORTCULLIS_DATABASE_PASSWORD_SECRET")).map(Value::to_string);
        if WITHOUT_DATABASE.contains(&short.as_str()) {
            assert_eq!(named, None, "{short} opens no database");
            let reads = role_statements(&template, function).iter().any(|s| {
                let actions = s.get("Action").map(Value::items).unwrap_or_default();
                actions.iter().any(|a| {
                    a.as_str().is_some_and(|a| a.to_ascii_lowercase().starts_with("secretsmanager:"))
                })
            });
            assert!(!reads, "{short} reads a secret");
            continue;
        }
        assert_eq!(named, Some(secret_of(function)), "{short} names no secret");
        let secret = function.strip_suffix("Function").map(|f| format!("{f}DatabaseSecret")).expect("name");
        let resource = template.get("Resources").and_then(|r| r.get(&secret)).expect("the function's secret");
        assert_eq!(resource.get("Type").and_then(Value::as_str), Some("AWS::SecretsManager::Secret"));
        let props = properties(&template, &secret);
        assert_eq!(props.get("KmsKeyId").map(Value::to_string).as_deref(), Some("!Ref AppKey"), "{secret}");
        let name = props.get("Name").map(Value::to_string);
        assert_eq!(
            name,
            Some(format!("!Sub ${{AWS::StackName}}/database/{short}")),
            "{secret}: AppKey names it so"
        );
        let user = props.get("GenerateSecretString").and_then(|g| g.get("SecretStringTemplate"));
        let user = user.map(Value::to_string).unwrap_or_default();
        assert!(user.contains(&format!("\"portcullis_{short}\"")), "{secret}: {user}");
        for statement in role_statements(&template, function) {
            let reads = allows(statement, "secretsmanager:GetSecretValue");
            let any = statement.get("Action").map(Value::items).unwrap_or_default();
            let any = any
                .iter()
                .any(|a| a.as_str().is_some_and(|a| a.to_ascii_lowercase().starts_with("secretsmanager:")));
            assert_eq!(any, reads, "{short}: other Secrets Manager actions: {statement}");
            if reads {
                let resources = statement.get("Resource").map(Value::items).unwrap_or_default();
                let resources: Vec<String> = resources.iter().map(|r| r.to_string()).collect();
                assert_eq!(resources, [secret_of(function)], "{short} reads another secret: {statement}");
            }
        }
    }
}

/// Each function's name and role path are the ones AppKey's policy and its
/// role's policy name.
#[test]
fn each_function_has_the_name_and_role_path_its_key_grants_name() {
    let template = parsed();
    for (function, short) in functions(&template) {
        let props = properties(&template, &function);
        assert_eq!(
            props.get("FunctionName").map(Value::to_string),
            Some(format!("!Sub ${{AWS::StackName}}-{short}")),
            "{function}"
        );
        assert_eq!(
            props.get("RolePath").map(Value::to_string),
            Some(format!("!Sub /portcullis/${{AWS::StackName}}/{short}/")),
            "{function}"
        );
        assert!(props.get("Role").is_none(), "{function}: a role of its own escapes the path");
    }
}
