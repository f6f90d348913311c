//! The SAM template names every function of the workspace and wires every route
//! of the HTTP contract, with the authorizer on exactly the protected ones; backup
//! data keys are created by the backup function and unwrapped only by the operator
//! role, as the restore commands of `docs/backups.md` assume.

use portcullis_shared::routes::{Access, Function, ROUTES};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use yaml::Value;

mod alarms;
mod cognito;
mod least_privilege;
mod yaml;

fn template() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/template.yaml"))
        .expect("template")
}

#[test]
fn every_workspace_function_is_in_the_template() {
    let template = template();
    let functions =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions")).expect("functions dir");
    let mut count = 0;
    for entry in functions.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let binary = format!("Binary: portcullis-{name} }}");
        assert!(template.contains(&binary), "function {name} is not built by the template ({binary})");
        count += 1;
    }
    assert_eq!(count, 7);
    for needle in
        ["Type: AWS::DynamoDB::Table", "Type: AWS::S3::Bucket", "Type: Schedule", "EnableKeyRotation: true"]
    {
        assert!(template.contains(needle), "{needle} missing");
    }
    assert!(template.matches("Type: AWS::CloudWatch::Alarm").count() >= 6, "alarms missing");
}

/// Every function verifies the database's certificate against the RDS CA
/// bundle, shipped as a layer from infra/rds-ca/.
#[test]
fn every_function_trusts_the_rds_ca_bundle_for_mysql() {
    let template = template();
    let globals = template.split("\nResources:").next().expect("globals");
    for needle in ["Layers: [!Ref RdsCaBundle]", "PORTCULLIS_DATABASE_CA_FILE: /opt/global-bundle.pem"] {
        assert!(globals.contains(needle), "Globals lack {needle}");
    }
    assert!(template.contains("RdsCaBundle:\n    Type: AWS::Serverless::LayerVersion"));
    assert!(template.contains("ContentUri: rds-ca/"));
    assert!(Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/rds-ca").is_dir());
    assert_eq!(template.matches("?require_ssl=true\"").count(), 6, "every database URL demands TLS");
}

#[test]
fn every_route_is_wired_with_the_authorizer_on_protected_ones_only() {
    let template = template();
    let lines: Vec<&str> = template.lines().map(str::trim).collect();
    for route in ROUTES.iter() {
        let method = format!("Method: {}", route.method);
        let path = format!("Path: {}", route.template);
        let at = lines
            .windows(2)
            .position(|w| w[0] == method && w[1] == path)
            .unwrap_or_else(|| panic!("{} {} is not wired", route.method, route.template));
        let public = lines.get(at + 2) == Some(&"Auth: { Authorizer: NONE }");
        assert_eq!(
            public,
            route.access == Access::Public,
            "{} {}: authorizer wiring",
            route.method,
            route.template
        );
        // The event sits under the function that serves the route.
        let owner = lines[..at]
            .iter()
            .rev()
            .find(|l| l.ends_with("Function:") && !l.starts_with('-'))
            .unwrap_or_else(|| panic!("no function above {}", route.template));
        let expected = match route.function() {
            Function::Login => "LoginFunction:",
            Function::Mfa => "MfaFunction:",
            Function::Refresh => "RefreshFunction:",
            Function::Admin => "AdminFunction:",
        };
        assert_eq!(*owner, expected, "{} {}", route.method, route.template);
    }
}

const FUNCTION_ROLE: &str = "!GetAtt BackupFunctionRole.Arn";
const OPERATOR_ROLE: &str = "!GetAtt BackupOperatorRole.Arn";
const ACCOUNT_ROOT: &str = "!Sub arn:${AWS::Partition}:iam::${AWS::AccountId}:root";
const VIA_S3: &str = "!Sub s3.${AWS::Region}.amazonaws.com";
const VIA_LAMBDA: &str = "!Sub lambda.${AWS::Region}.amazonaws.com";
const VIA_SECRETS: &str = "!Sub secretsmanager.${AWS::Region}.amazonaws.com";
/// The encryption context of a backup's data key (`functions/backup/src/envelope.rs`).
const BACKUP_CONTEXT_KEYS: [&str; 4] = ["app", "purpose", "database", "backup_id"];

fn parsed() -> Value {
    yaml::parse(&template())
}

fn properties<'a>(template: &'a Value, resource: &str) -> &'a Value {
    template
        .get("Resources")
        .and_then(|r| r.get(resource))
        .and_then(|r| r.get("Properties"))
        .unwrap_or_else(|| panic!("resource {resource} with Properties missing"))
}

fn statements(document: Option<&Value>) -> Vec<&Value> {
    document.and_then(|d| d.get("Statement")).map(Value::items).unwrap_or_default()
}

fn key_policy<'a>(template: &'a Value, key: &str) -> Vec<&'a Value> {
    statements(properties(template, key).get("KeyPolicy"))
}

fn principals(statement: &Value) -> Vec<String> {
    let aws = statement.get("Principal").and_then(|p| p.get("AWS"));
    aws.map(|a| a.items().iter().map(|p| p.to_string()).collect()).unwrap_or_default()
}

fn names(statement: &Value, principal: &str) -> bool {
    principals(statement).iter().any(|p| p == principal)
}

fn names_only(statement: &Value, principal: &str) -> bool {
    principals(statement) == [principal]
}

/// Whether an Allow statement's actions cover `action`, IAM wildcards included.
fn allows(statement: &Value, action: &str) -> bool {
    let allow = statement.get("Effect").and_then(Value::as_str) == Some("Allow");
    let actions = statement.get("Action").map(Value::items).unwrap_or_default();
    allow && actions.iter().filter_map(|a| a.as_str()).any(|pattern| wildcard(pattern, action))
}

fn wildcard(pattern: &str, action: &str) -> bool {
    let (pattern, action) = (pattern.to_ascii_lowercase(), action.to_ascii_lowercase());
    match pattern.split_once('*') {
        None => pattern == action,
        Some((head, tail)) => {
            action.starts_with(head) && (head.len()..=action.len()).any(|at| wildcard(tail, &action[at..]))
        }
    }
}

/// A condition's value, rendered as `Value` renders it; a list as a set.
fn condition(statement: &Value, operator: &str, key: &str) -> Option<BTreeSet<String>> {
    let value = statement.get("Condition")?.get(operator)?.get(key)?;
    Some(value.items().iter().map(|v| v.to_string()).collect())
}

fn one(value: &str) -> Option<BTreeSet<String>> {
    Some(BTreeSet::from([value.to_owned()]))
}

/// The ARN of the backup bucket as S3 puts it into the encryption context when the
/// bucket key is on: the bucket's own name, not a reference to the bucket (the
/// key's policy cannot refer to the bucket the key encrypts).
fn backup_bucket_arn(template: &Value) -> String {
    let name = properties(template, "BackupBucket").get("BucketName").expect("BackupBucket has a BucketName");
    match name {
        Value::Tag(tag, sub) if tag == "!Sub" => match &**sub {
            Value::Seq(parts) if parts.len() == 2 => {
                let format = parts[0].as_str().expect("BucketName format");
                format!("!Sub [arn:${{AWS::Partition}}:s3:::{format}, {}]", parts[1])
            }
            Value::Str(format) => format!("!Sub arn:${{AWS::Partition}}:s3:::{format}"),
            other => panic!("BucketName: {other}"),
        },
        other => panic!("BucketName is not a !Sub: {other}"),
    }
}

/// Use of BackupKey through S3, for this bucket's objects only: S3 unwraps object
/// keys, never a backup's data key.
fn through_s3_for_the_bucket(template: &Value, statement: &Value) -> bool {
    condition(statement, "StringEquals", "kms:ViaService") == one(VIA_S3)
        && condition(statement, "StringEquals", "kms:EncryptionContext:aws:s3:arn")
            == one(&backup_bucket_arn(template))
}

/// The statement holds KMS to a backup data key's context: `app` and `purpose`
/// (and `database` when given), the four keys and no others, and none missing.
fn bound_to_backup_context(statement: &Value, database: Option<&str>) -> bool {
    let equals = |key: &str, value: &str| {
        condition(statement, "StringEquals", &format!("kms:EncryptionContext:{key}")) == one(value)
    };
    let keys = BACKUP_CONTEXT_KEYS.iter().map(|k| k.to_string()).collect();
    equals("app", "portcullis")
        && equals("purpose", "backup")
        && database.is_none_or(|db| equals("database", db))
        && condition(statement, "ForAllValues:StringEquals", "kms:EncryptionContextKeys") == Some(keys)
        && condition(statement, "ForAnyValue:StringEquals", "kms:EncryptionContextKeys") == one("backup_id")
}

/// The statements of the backup function's own IAM policies (SAM `Policies`) and of
/// any policy resource attached to its role.
fn backup_function_identity_statements(template: &Value) -> Vec<&Value> {
    let own = properties(template, "BackupFunction").get("Policies").map(Value::items).unwrap_or_default();
    let mut found: Vec<&Value> = own.into_iter().flat_map(|p| statements(Some(p))).collect();
    let resources = template.get("Resources").expect("Resources").entries();
    for (_, resource) in resources {
        let kind = resource.get("Type").and_then(Value::as_str).unwrap_or_default();
        let Some(props) = resource.get("Properties") else { continue };
        let roles = [props.get("Roles"), props.get("RoleName")].into_iter().flatten().flat_map(Value::items);
        if kind.starts_with("AWS::IAM::")
            && roles.map(|r| r.to_string()).any(|r| r.contains("BackupFunctionRole"))
        {
            found.extend(statements(props.get("PolicyDocument")));
        }
    }
    found
}

/// Backup data keys are wrapped with BackupKey, not with AppKey, which every other
/// function's role can use.
#[test]
fn the_backup_function_wraps_its_data_keys_with_the_backup_key() {
    let template = parsed();
    let env = properties(&template, "BackupFunction").get("Environment").and_then(|e| e.get("Variables"));
    let env = env.expect("BackupFunction environment");
    for variable in ["PORTCULLIS_KMS_KEY_ID", "PORTCULLIS_BACKUP_KMS_KEY_ID"] {
        let value = env.get(variable).map(Value::to_string);
        assert_eq!(value.as_deref(), Some("!GetAtt BackupKey.Arn"), "BackupFunction {variable}");
    }
}

/// The scheduled function creates data keys for its own database and uses BackupKey
/// through S3 for the bucket; whoever controls it cannot decrypt an earlier backup.
#[test]
fn the_backup_function_creates_backup_data_keys_but_can_never_unwrap_one() {
    let template = parsed();
    let mut grants = key_policy(&template, "BackupKey");
    grants.retain(|s| names(s, FUNCTION_ROLE));
    grants.extend(backup_function_identity_statements(&template).into_iter().filter(|s| {
        let resources = s.get("Resource").map(Value::items).unwrap_or_default();
        resources.iter().map(|r| r.to_string()).any(|r| r == "*" || r.contains("BackupKey"))
    }));
    let (via_s3, direct): (Vec<&Value>, Vec<&Value>) =
        grants.into_iter().partition(|s| through_s3_for_the_bucket(&template, s));
    for grant in &direct {
        assert!(!allows(grant, "kms:Decrypt"), "BackupFunctionRole decrypts with BackupKey: {grant}");
        if allows(grant, "kms:GenerateDataKey") {
            let bound = bound_to_backup_context(grant, Some("!Ref DatabaseName"));
            assert!(bound, "GenerateDataKey for other contexts than this database's backups: {grant}");
        }
    }
    assert!(direct.iter().any(|s| allows(s, "kms:GenerateDataKey")), "no data keys for backups");
    for action in ["kms:GenerateDataKey", "kms:Decrypt"] {
        assert!(via_s3.iter().any(|s| allows(s, action)), "S3 cannot {action} for the backup function");
    }

    // Of the other keys, the backup role may use only AppKey, and only through
    // Lambda for its environment and through Secrets Manager for its password:
    // in the key policies (whoever they name, the role by !GetAtt or by path) ...
    let function_arn = backup_function_arn(&template);
    for (resource, value) in template.get("Resources").expect("Resources").entries() {
        if resource == "BackupKey" || value.get("Type").and_then(Value::as_str) != Some("AWS::KMS::Key") {
            continue;
        }
        for statement in key_policy(&template, resource) {
            let applies = names(statement, FUNCTION_ROLE)
                || least_privilege::covers(&template, statement, "BackupFunction");
            if !applies || !least_privilege::uses_key(statement) {
                continue;
            }
            assert_eq!(resource, "AppKey", "{resource}: {statement}");
            let via = condition(statement, "StringEquals", "kms:ViaService");
            assert!(
                via == one(VIA_LAMBDA) || via == one(VIA_SECRETS),
                "AppKey for the backup role: {statement}"
            );
        }
    }
    // ... and in its own policies: its environment and its secret, nothing else.
    for statement in backup_function_identity_statements(&template) {
        let resources = statement.get("Resource").map(Value::items).unwrap_or_default();
        if !resources.iter().any(|r| r.to_string().contains("AppKey")) {
            continue;
        }
        let actions = statement.get("Action").map(Value::items).unwrap_or_default();
        assert!(actions.iter().all(|a| a.as_str() == Some("kms:Decrypt")), "{statement}");
        let environment = condition(statement, "StringEquals", "kms:ViaService") == one(VIA_LAMBDA)
            && condition(statement, "StringEquals", "kms:EncryptionContext:aws:lambda:FunctionArn")
                == one(&function_arn);
        let secret = condition(statement, "StringEquals", "kms:ViaService") == one(VIA_SECRETS)
            && condition(statement, "StringEquals", "kms:EncryptionContext:SecretARN")
                == one("!Ref BackupDatabaseSecret");
        assert!(environment || secret, "AppKey for the backup function: {statement}");
    }
}

fn backup_function_arn(template: &Value) -> String {
    let function_name =
        properties(template, "BackupFunction").get("FunctionName").expect("BackupFunction name");
    let Value::Tag(_, name) = function_name else { panic!("FunctionName: {function_name}") };
    format!("!Sub arn:${{AWS::Partition}}:lambda:${{AWS::Region}}:${{AWS::AccountId}}:function:{name}")
}

/// Verify and restore run as BackupOperatorRole, assumed with MFA; no other
/// principal, the account's administrators included, can unwrap a backup data key.
#[test]
fn only_the_operator_role_unwraps_backup_data_keys_and_only_with_mfa() {
    let template = parsed();
    let role =
        template.get("Resources").and_then(|r| r.get("BackupOperatorRole")).expect("BackupOperatorRole");
    assert_eq!(role.get("Type").and_then(Value::as_str), Some("AWS::IAM::Role"));
    let trust = statements(properties(&template, "BackupOperatorRole").get("AssumeRolePolicyDocument"));
    assert!(!trust.is_empty(), "BackupOperatorRole trusts nobody");
    for statement in trust {
        assert!(names_only(statement, ACCOUNT_ROOT), "assumed from outside the account: {statement}");
        assert_eq!(condition(statement, "Bool", "aws:MultiFactorAuthPresent"), one("true"), "{statement}");
    }

    let policy = key_policy(&template, "BackupKey");
    let decrypts: Vec<&Value> = policy.into_iter().filter(|s| allows(s, "kms:Decrypt")).collect();
    for statement in &decrypts {
        let s3 = through_s3_for_the_bucket(&template, statement)
            && principals(statement).iter().all(|p| p == FUNCTION_ROLE || p == OPERATOR_ROLE);
        let operator = names_only(statement, OPERATOR_ROLE) && bound_to_backup_context(statement, None);
        assert!(s3 || operator, "BackupKey decrypts for more than the operator: {statement}");
    }
    let operator = decrypts.iter().filter(|s| names_only(s, OPERATOR_ROLE));
    assert!(
        operator.clone().any(|s| bound_to_backup_context(s, None)),
        "the operator cannot unwrap data keys"
    );
    assert!(
        operator.clone().any(|s| through_s3_for_the_bucket(&template, s)),
        "the operator cannot read objects"
    );

    let bucket = statements(properties(&template, "BackupBucketPolicy").get("PolicyDocument"));
    let reads = bucket.iter().filter(|s| names_only(s, OPERATOR_ROLE) && allows(s, "s3:GetObject"));
    let resources: Vec<String> = reads
        .flat_map(|s| s.get("Resource").map(Value::items).unwrap_or_default())
        .map(|r| r.to_string())
        .collect();
    assert!(resources.contains(&"!Sub ${BackupBucket.Arn}/*".into()), "the operator cannot get backups");
}

/// The bucket is write-once for everyone: an upload that would replace a key
/// (PutObject, CompleteMultipartUpload without `If-None-Match`) is denied, and
/// so are customer-provided keys and another KMS key. BackupKey grants no one
/// `kms:CreateGrant`, which would hand out Decrypt past its conditions.
#[test]
fn backups_are_write_once_and_backup_key_grants_no_grants() {
    let template = parsed();
    let bucket = statements(properties(&template, "BackupBucketPolicy").get("PolicyDocument"));
    let uploads: Vec<&Value> = bucket.into_iter().filter(|s| denies_uploads_for_all(s)).collect();
    let write_once = uploads.iter().any(|s| {
        condition(s, "Null", "s3:if-none-match") == one("true")
            && condition(s, "BoolIfExists", "s3:ObjectCreationOperation") == one("true")
    });
    assert!(write_once, "uploads may replace a stored backup");
    let no_sse_c = uploads
        .iter()
        .any(|s| condition(s, "Null", "s3:x-amz-server-side-encryption-customer-algorithm") == one("false"));
    assert!(no_sse_c, "uploads may use a customer-provided key");
    let only_backup_key = uploads.iter().any(|s| {
        condition(s, "StringNotEqualsIfExists", "s3:x-amz-server-side-encryption-aws-kms-key-id")
            == one("!GetAtt BackupKey.Arn")
    });
    assert!(only_backup_key, "uploads may use another KMS key");
    let no_default_key = uploads.iter().any(|s| {
        condition(s, "Null", "s3:x-amz-server-side-encryption") == one("false")
            && condition(s, "Null", "s3:x-amz-server-side-encryption-aws-kms-key-id") == one("true")
    });
    assert!(no_default_key, "uploads may ask for SSE-KMS under the account's default key");
    let single_put_manifests = uploads.iter().any(|s| {
        s.get("Resource").map(|r| r.to_string()) == Some("!Sub ${BackupBucket.Arn}/manifests/*".into())
            && condition(s, "Bool", "s3:ObjectCreationOperation") == one("false")
    });
    assert!(single_put_manifests, "a manifest may be written by a multipart upload");
    for statement in key_policy(&template, "BackupKey") {
        assert!(!allows(statement, "kms:CreateGrant"), "BackupKey grants CreateGrant: {statement}");
    }
}

fn denies_uploads_for_all(statement: &Value) -> bool {
    statement.get("Effect").and_then(Value::as_str) == Some("Deny")
        && statement.get("Principal").and_then(Value::as_str) == Some("*")
        && statement
            .get("Action")
            .map(Value::items)
            .unwrap_or_default()
            .iter()
            .any(|a| a.as_str() == Some("s3:PutObject"))
}

/// CloudFormation refuses resources that depend on each other in a circle, such as
/// a key policy naming a role whose own policy names the key (or the table the
/// key encrypts). Checked over every resource, with the roles SAM generates.
#[test]
fn no_resource_is_in_a_dependency_cycle() {
    let template = parsed();
    let graph = dependencies(&template);
    assert!(graph.contains_key("LoginFunctionRole"), "SAM's generated roles are in the graph");
    for start in graph.keys() {
        let mut path = vec![start.clone()];
        let mut seen = BTreeSet::new();
        assert!(
            !reaches(&graph, start, start, &mut path, &mut seen),
            "dependency cycle: {}",
            path.join(" -> ")
        );
    }
}

/// Which resources each resource refers to, with the role SAM generates for a
/// function (`<Function>Role`, holding its `Policies`) as a resource of its own. A
/// function's `Events` become resources of their own too, so they are left out.
fn dependencies(template: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let globals = template.get("Globals").and_then(|g| g.get("Function"));
    let mut graph = BTreeMap::new();
    for (name, resource) in template.get("Resources").expect("Resources").entries() {
        let props = resource.get("Properties");
        let function = resource.get("Type").and_then(Value::as_str) == Some("AWS::Serverless::Function");
        let mut refs = BTreeSet::new();
        for (key, value) in props.map(Value::entries).unwrap_or_default() {
            if !(function && key == "Events") {
                references(value, &mut refs);
            }
        }
        let depends_on = resource.get("DependsOn").map(Value::items).unwrap_or_default();
        refs.extend(depends_on.iter().filter_map(|d| d.as_str()).map(str::to_owned));
        if function && props.and_then(|p| p.get("Role")).is_none() {
            globals.into_iter().for_each(|g| references(g, &mut refs));
            let mut role = BTreeSet::new();
            for part in ["Policies", "DeadLetterQueue"] {
                props.and_then(|p| p.get(part)).into_iter().for_each(|v| references(v, &mut role));
            }
            graph.insert(format!("{name}Role"), role);
            refs.insert(format!("{name}Role"));
        }
        graph.insert(name.clone(), refs);
    }
    let names: BTreeSet<String> = graph.keys().cloned().collect();
    graph.values_mut().for_each(|refs| refs.retain(|r| names.contains(r)));
    graph
}

/// The names `!Ref`, `!GetAtt` and `!Sub` refer to (parameters and pseudo
/// parameters too; the caller keeps the resources).
fn references(value: &Value, found: &mut BTreeSet<String>) {
    let mut from_sub = |format: &str, vars: Option<&Value>| {
        for part in format.split("${").skip(1) {
            let name = part.split(['}', '.']).next().unwrap_or_default();
            if vars.and_then(|v| v.get(name)).is_none() {
                found.insert(name.to_owned());
            }
        }
    };
    match value {
        Value::Tag(tag, inner) if tag == "!Sub" => match &**inner {
            Value::Str(format) => from_sub(format, None),
            Value::Seq(parts) if parts.len() == 2 => {
                from_sub(parts[0].as_str().unwrap_or_default(), Some(&parts[1]));
                references(&parts[1], found);
            }
            other => references(other, found),
        },
        Value::Tag(tag, inner) if tag == "!Ref" || tag == "!GetAtt" => {
            let target = inner.items().first().and_then(|t| t.as_str()).unwrap_or_default();
            found.insert(target.split('.').next().unwrap_or_default().to_owned());
        }
        Value::Tag(_, inner) => references(inner, found),
        Value::Str(_) => {}
        Value::Seq(items) => items.iter().for_each(|i| references(i, found)),
        Value::Map(entries) => entries.iter().for_each(|(_, v)| references(v, found)),
    }
}

fn reaches(
    graph: &BTreeMap<String, BTreeSet<String>>,
    from: &str,
    target: &str,
    path: &mut Vec<String>,
    seen: &mut BTreeSet<String>,
) -> bool {
    for next in graph.get(from).into_iter().flatten() {
        path.push(next.clone());
        if next == target || (seen.insert(next.clone()) && reaches(graph, next, target, path, seen)) {
            return true;
        }
        path.pop();
    }
    false
}

/// The verify and restore commands of `docs/backups.md` take the key, the bucket
/// and the role from the stack's outputs, named as the template names them.
#[test]
fn the_documented_restore_commands_use_the_stacks_outputs() {
    let template = parsed();
    let outputs = template.get("Outputs").expect("Outputs");
    let docs = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/backups.md"))
        .expect("docs/backups.md");
    let mut blocks = docs.split("```sh\n").skip(1).filter_map(|b| b.split("```").next());
    let block = blocks.find(|b| b.contains("portcullis backup restore")).expect("restore commands");

    let placeholders = block.split('<').skip(1).filter_map(|p| p.split_once('>')).map(|(name, _)| name);
    for name in placeholders {
        // `<backup id>`, `<MFA code>`: the operator's own values; an output's name is one word.
        if name.starts_with(|c: char| c.is_ascii_uppercase())
            && name.chars().all(|c| c.is_ascii_alphanumeric())
        {
            assert!(
                outputs.get(name).is_some(),
                "docs/backups.md names <{name}>, which is not an output of the template"
            );
        }
    }
    for (before, value) in [
        ("PORTCULLIS_KMS_KEY_ID=", "!GetAtt BackupKey.Arn"),
        ("PORTCULLIS_BACKUP_BUCKET=", "!Ref BackupBucket"),
        ("--role-arn ", "!GetAtt BackupOperatorRole.Arn"),
    ] {
        let at = block
            .find(&format!("{before}<"))
            .unwrap_or_else(|| panic!("docs/backups.md lacks {before}<output>"));
        let rest = &block[at + before.len() + 1..];
        let name = rest.split('>').next().unwrap_or_default();
        let output = outputs.get(name).and_then(|o| o.get("Value")).map(Value::to_string);
        assert_eq!(output.as_deref(), Some(value), "docs/backups.md {before}<{name}>");
    }
}

/// Guesses on every route raise the alarms: a wrong current password counts as
/// a login failure, a replayed code as an MFA failure, and the MFA step's
/// throttles as lockouts.
#[test]
fn every_guessing_route_feeds_the_alarms() {
    let template = parsed();
    let filter = |name: &str| {
        let p = properties(&template, name);
        (
            p.get("LogGroupName").map(|v| v.to_string()).unwrap_or_default(),
            p.get("FilterPattern").and_then(Value::as_str).unwrap_or_default().to_owned(),
        )
    };
    let (group, pattern) = filter("LoginFailuresFilter");
    assert_eq!(group, "!Ref LoginFunctionLogs");
    assert!(
        pattern.contains("\"login_failure\"") && pattern.contains("\"password_change_failure\""),
        "{pattern}"
    );
    let (group, pattern) = filter("MfaFailuresFilter");
    assert_eq!(group, "!Ref MfaFunctionLogs");
    assert!(pattern.contains("\"mfa_verify_failure\"") && pattern.contains("\"mfa_replay\""), "{pattern}");
    let (group, pattern) = filter("MfaLockoutsFilter");
    assert_eq!(group, "!Ref MfaFunctionLogs");
    assert!(pattern.contains("\"login_throttled\""), "{pattern}");
    let metric =
        properties(&template, "MfaLockoutsFilter").get("MetricTransformations").map(|v| v.to_string());
    assert!(metric.is_some_and(|m| m.contains("Lockouts")), "MFA lockouts feed another metric");
}

/// The authorizer decides every request itself: with an identity source, API
/// Gateway answers 401 without calling it when that header is missing, and a
/// request with only `X-Api-Key` never reached it. Without one, caching must be
/// (and is) off.
#[test]
fn the_authorizer_is_called_for_api_keys_too() {
    let template = parsed();
    let authorizer = properties(&template, "Api")
        .get("Auth")
        .and_then(|a| a.get("Authorizers"))
        .and_then(|a| a.get("PortcullisAuthorizer"))
        .expect("PortcullisAuthorizer");
    let identity = authorizer.get("Identity").expect("Identity");
    for source in ["Headers", "QueryStrings", "Context", "StageVariables"] {
        assert!(
            identity.get(source).is_none(),
            "identity source {source}: requests without it never reach the authorizer"
        );
    }
    assert_eq!(identity.get("ReauthorizeEvery").and_then(Value::as_str), Some("0"), "caching must be off");
}

/// A layer's code runs inside the functions that use it (Lambda starts any
/// extension it holds): the policy layer can only be one of this account's.
#[test]
fn the_policy_layer_is_always_one_of_this_accounts() {
    let text = template();
    let layers: Vec<&str> = text.lines().filter(|l| l.contains(":layer:")).collect();
    assert_eq!(layers.len(), 2, "the authorizer's and the admin function's: {layers:?}");
    for line in layers {
        assert!(line.contains(":${AWS::AccountId}:layer:${PolicyLayerName}:"), "{line}");
    }
    assert!(!text.contains("PolicyLayerArn"), "a layer ARN parameter would admit another account's");
}

/// Security mail leaves through an encrypted queue with a dead-letter queue and
/// its alarm; notify reports which messages to retry and sends from one address.
#[test]
fn the_mail_queue_is_encrypted_redriven_alarmed_and_read_by_notify_alone() {
    let template = parsed();
    for queue in ["NotifyQueue", "NotifyDeadLetterQueue"] {
        let key = properties(&template, queue).get("KmsMasterKeyId").map(Value::to_string);
        assert_eq!(key.as_deref(), Some("!Ref MailKey"), "{queue}");
    }
    let redrive = properties(&template, "NotifyQueue").get("RedrivePolicy").expect("a redrive policy");
    assert_eq!(
        redrive.get("deadLetterTargetArn").map(Value::to_string).as_deref(),
        Some("!GetAtt NotifyDeadLetterQueue.Arn")
    );
    let alarm = properties(&template, "NotifyDeadLetterAlarm");
    assert!(alarm.to_string().contains("NotifyDeadLetterQueue.QueueName"), "{alarm}");
    let events =
        properties(&template, "NotifyFunction").get("Events").map(Value::to_string).unwrap_or_default();
    assert!(events.contains("ReportBatchItemFailures") && events.contains("NotifyQueue.Arn"), "{events}");
    let readers: Vec<&Value> =
        key_policy(&template, "MailKey").into_iter().filter(|s| allows(s, "kms:Decrypt")).collect();
    assert_eq!(readers.len(), 1, "{readers:?}");
    assert!(readers[0].to_string().contains("/notify/*"), "{}", readers[0]);
    let sends = properties(&template, "NotifyFunction").to_string();
    assert!(sends.contains("ses:FromAddress") && sends.contains("!Ref MailFromAddress"), "{sends}");
}
