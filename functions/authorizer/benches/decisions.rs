//! Authorizer decisions per second on one core for distinct valid tokens and for
//! one token repeated, the raw
//! ES256 signature-verify cost (the physical limit of a decision), and
//! aws-jwt-verify verifying the same tokens in the same run. Prints numbers.
//!
//! Run: `cargo bench -p portcullis-authorizer --bench decisions`. The comparison
//! needs `node` and aws-jwt-verify installed under `PORTCULLIS_NODE_MODULES`
//! (`scripts/bench.sh` installs it); without them it is skipped and says so.
//! The session store is in memory here, so the numbers are the authorizer's own
//! CPU cost; in AWS each decision adds one DynamoDB GetItem.

mod fixture;

use portcullis_authorizer::{authorize, Ask, Decision};
use std::time::Instant;

const TOKENS: usize = 20_000;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = std::env::temp_dir().join(format!("portcullis-bench-authz-{}", std::process::id()));
    let fixture::World { config, deps, tokens, headers, signed, public, keys, .. } =
        fixture::world(&dir, TOKENS).await;

    // Decisions: verify, session lookup, RBAC, context.
    let start = Instant::now();
    for header in &headers {
        let ask = Ask { method: "GET", path: "/me", authorization: Some(header), api_key: None };
        assert!(matches!(authorize(&deps, ask).await, Decision::Allow(_)));
    }
    let decisions = start.elapsed();

    // The same token over and over (a chatty client): no decision is cached, so
    // revocation and role changes still apply on the very next request.
    let start = Instant::now();
    for _ in 0..TOKENS {
        let ask = Ask { method: "GET", path: "/me", authorization: Some(&headers[0]), api_key: None };
        assert!(matches!(authorize(&deps, ask).await, Decision::Allow(_)));
    }
    let repeated = start.elapsed();

    // Raw ES256 verification of the same signatures with aws-lc-rs.
    let start = Instant::now();
    for (input, sig) in &signed {
        public.verify_sig(input.as_bytes(), sig).expect("valid signature");
    }
    let raw = start.elapsed();

    // The same decisions under a team's policy of 200 routes, each with an
    // owner condition; every request names the last of them, so the lookup
    // passes all 200 (and Portcullis' own) before it decides. Every decision
    // is checked, never timed blind.
    let deps = portcullis_authorizer::Deps { policy: fixture::team_policy(200), ..deps };
    let paths = fixture::team_paths(TOKENS);
    let start = Instant::now();
    for (header, path) in headers.iter().zip(&paths) {
        let ask = Ask { method: "GET", path, authorization: Some(header), api_key: None };
        match authorize(&deps, ask).await {
            Decision::Allow(identity) => assert_eq!(identity.permission.as_deref(), Some("items:read")),
            other => panic!("{path}: {other:?}"),
        }
    }
    let team = start.elapsed();
    let other =
        Ask { method: "GET", path: "/r199/items/user-1/7", authorization: Some(&headers[0]), api_key: None };
    assert_eq!(authorize(&deps, other).await, Decision::Forbidden, "another user's item is refused");

    let per_sec = |d: std::time::Duration| TOKENS as f64 / d.as_secs_f64();
    let us = |d: std::time::Duration| d.as_secs_f64() * 1e6 / TOKENS as f64;
    println!("authorizer benchmark: {TOKENS} distinct ES256 tokens, one core");
    println!("  authorizer decision        {:>9.0} /s   {:>6.1} us each", per_sec(decisions), us(decisions));
    println!("  raw ES256 verify (aws-lc)  {:>9.0} /s   {:>6.1} us each", per_sec(raw), us(raw));
    println!("  decision, repeated token   {:>9.0} /s   {:>6.1} us each", per_sec(repeated), us(repeated));
    println!("  decision / raw verify      {:>9.2}x", decisions.as_secs_f64() / raw.as_secs_f64());
    println!("  decision, 200-route policy {:>9.0} /s   {:>6.1} us each", per_sec(team), us(team));
    println!(
        "  200-route / today's policy {:>9.2}x (goal: at most 1.2x)",
        team.as_secs_f64() / decisions.as_secs_f64()
    );
    println!(
        "ROW\tauthorizer decision, a team policy of 200 owner routes (the last one)\t{:.1} us\ttoday's policy {:.1} us\t{:.2}x",
        us(team),
        us(decisions),
        team.as_secs_f64() / decisions.as_secs_f64()
    );
    // Summary rows for scripts/bench.sh's table: figure, Portcullis, comparison, ratio.
    println!(
        "ROW\tauthorizer decision, distinct tokens (1 core)\t{:.1} us\traw ES256 verify {:.1} us\t{:.2}x",
        us(decisions),
        us(raw),
        decisions.as_secs_f64() / raw.as_secs_f64()
    );

    match std::env::var("PORTCULLIS_NODE_MODULES") {
        Ok(modules) => {
            std::fs::create_dir_all(&dir).expect("dir");
            let tokens_path = dir.join("tokens.json");
            let jwks_path = dir.join("jwks.json");
            std::fs::write(&tokens_path, serde_json::to_vec(&tokens).expect("json")).expect("write");
            std::fs::write(&jwks_path, portcullis_shared::tokens::jwks(&keys).to_string()).expect("write");
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/aws-jwt-verify.mjs");
            // ES modules resolve packages from the script's folder upwards; link it beside them.
            let linked = std::path::Path::new(&modules).join("..").join("aws-jwt-verify-bench.mjs");
            std::fs::copy(script, &linked).expect("copy script");
            let out = std::process::Command::new("node")
                .arg(&linked)
                .args([&tokens_path, &jwks_path])
                .args([&config.issuer, &config.audience])
                .output()
                .expect("run node");
            assert!(out.status.success(), "aws-jwt-verify failed: {}", String::from_utf8_lossy(&out.stderr));
            let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("node JSON");
            let node_per_sec = result["per_sec"].as_f64().unwrap_or(0.0);
            println!(
                "  aws-jwt-verify (Node {}) {:>9.0} /s   {:>6.1} us each (verify only, same tokens)",
                String::from_utf8_lossy(
                    &std::process::Command::new("node")
                        .arg("--version")
                        .output()
                        .map(|o| o.stdout)
                        .unwrap_or_default()
                )
                .trim(),
                node_per_sec,
                result["us_each"].as_f64().unwrap_or(0.0)
            );
            let node_repeated = result["repeated_per_sec"].as_f64().unwrap_or(0.0);
            println!("  aws-jwt-verify, repeated token {node_repeated:>9.0} /s");
            println!(
                "  Portcullis decisions / aws-jwt-verify verifications: {:.2}x",
                per_sec(decisions) / node_per_sec
            );
            println!(
                "ROW\tauthorizer decisions/s, distinct tokens\t{:.0}/s\taws-jwt-verify {node_per_sec:.0}/s\t{:.2}x",
                per_sec(decisions),
                per_sec(decisions) / node_per_sec
            );
            println!(
                "ROW\tauthorizer decisions/s, repeated token\t{:.0}/s\taws-jwt-verify {node_repeated:.0}/s\t{:.2}x",
                per_sec(repeated),
                per_sec(repeated) / node_repeated
            );
        }
        Err(_) => println!("  aws-jwt-verify: skipped (set PORTCULLIS_NODE_MODULES; scripts/bench.sh does)"),
    }
}
