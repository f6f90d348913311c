//! The authorizer's regression guard, run under callgrind by
//! `scripts/regression-guard.sh`: `decide_all` makes N allow decisions on
//! distinct tokens, `verify_all` does N bare ES256 verifications of the same
//! signatures. Instruction counts are deterministic, so the ratio of the two is
//! a machine-independent measure of what the authorizer adds to the signature
//! check (parsing, claims, session lookup, RBAC, context). `decide_team_all`
//! makes the same decisions under a team policy of 200 owner routes, each on
//! the last route, against today's `decide_all`.

#[path = "../benches/fixture.rs"]
mod fixture;

use portcullis_authorizer::{authorize, Ask, Decision};

const N: usize = 200;

#[inline(never)]
fn decide_all(rt: &tokio::runtime::Runtime, world: &fixture::World) {
    rt.block_on(async {
        for header in &world.headers {
            let ask = Ask { method: "GET", path: "/me", authorization: Some(header), api_key: None };
            assert!(matches!(authorize(&world.deps, ask).await, Decision::Allow(_)));
        }
    });
}

#[inline(never)]
fn decide_team_all(rt: &tokio::runtime::Runtime, deps: &portcullis_authorizer::Deps, world: &fixture::World) {
    rt.block_on(async {
        for (header, path) in world.headers.iter().zip(fixture::team_paths(N)) {
            let ask = Ask { method: "GET", path: &path, authorization: Some(header), api_key: None };
            assert!(matches!(authorize(deps, ask).await, Decision::Allow(_)));
        }
    });
}

#[inline(never)]
fn verify_all(world: &fixture::World) {
    for (input, sig) in &world.signed {
        assert!(world.public.verify_sig(input.as_bytes(), sig).is_ok());
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let dir = std::env::temp_dir().join(format!("portcullis-guard-{}", std::process::id()));
    let world = rt.block_on(fixture::world(&dir, N));
    decide_all(&rt, &world);
    verify_all(&world);
    let team = rt.block_on(portcullis_authorizer::Deps::build(
        &world.config,
        &world.backends,
        std::sync::Arc::new(portcullis_shared::clock::SystemClock),
    ));
    let team = portcullis_authorizer::Deps { policy: fixture::team_policy(200), ..team.expect("deps") };
    rt.block_on(team.verifier.get()).expect("verification keys");
    decide_team_all(&rt, &team, &world);
    std::fs::remove_dir_all(&dir).ok();
    println!("{N} decisions and {N} verifications done");
}
