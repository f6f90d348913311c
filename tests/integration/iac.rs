//! The SAM template names every function of the workspace and wires every route
//! of the HTTP contract, with the authorizer on exactly the protected ones.

use portcullis_shared::routes::{Access, Function, ROUTES};
use std::path::Path;

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
    assert_eq!(count, 6);
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
        let expected = match route.function {
            Function::Login => "LoginFunction:",
            Function::Mfa => "MfaFunction:",
            Function::Refresh => "RefreshFunction:",
            Function::Admin => "AdminFunction:",
        };
        assert_eq!(*owner, expected, "{} {}", route.method, route.template);
    }
}
