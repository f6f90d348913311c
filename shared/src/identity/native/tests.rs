//! The native provider on the in-memory stores: the enumeration defence and
//! the second factor's one-time rules, without any service.

use super::NativeProvider;
use crate::adapters::memory::MemorySessionStore;
use crate::adapters::memory::MemoryStore;
use crate::crypto::{FieldCipher, PasswordHasher};
use crate::domain::{Email, Password, Role};
use crate::identity::{IdentityError, IdentityProvider, Next};
use crate::runtime::Backends;
use std::sync::Arc;

const PASSWORD: &str = "correct horse battery staple";

fn provider() -> (NativeProvider, FieldCipher, PasswordHasher) {
    let config = crate::config::Config::from_lookup(|_| None).expect("default configuration");
    let backends = Backends::memory(Arc::new(MemoryStore::new()), Arc::new(MemorySessionStore::new()));
    let hasher = PasswordHasher::new().expect("hasher");
    let native = NativeProvider::new(backends.native_stores(), config.session_policy(), hasher.clone());
    (native, FieldCipher::new(&[7u8; 32]), hasher)
}

async fn register(native: &NativeProvider, fields: &FieldCipher, email: &str) -> String {
    let email = Email::parse(email).expect("address");
    native
        .register(fields, &email, &Password::new(PASSWORD), vec![Role::user()], 0)
        .await
        .expect("registered")
}

/// The argon2 computations one refused password check costs for `typed`.
async fn cost_of_refusal(
    native: &NativeProvider,
    fields: &FieldCipher,
    hasher: &PasswordHasher,
    typed: &str,
) -> u64 {
    let before = hasher.computations();
    let account = native.locate(fields, typed).await.expect("located");
    let outcome = native.check_password(account, &Password::new("not the password"), 0).await;
    assert!(matches!(outcome, Err(IdentityError::Refused)), "{typed}: {outcome:?}");
    hasher.computations() - before
}

#[tokio::test]
async fn unknown_accounts_and_malformed_emails_cost_the_argon2_verification_a_known_one_does() {
    let (native, fields, hasher) = provider();
    register(&native, &fields, "ada@example.com").await;
    let known = cost_of_refusal(&native, &fields, &hasher, "ada@example.com").await;
    assert_eq!(known, 1, "a wrong password is one verification");
    for typed in ["nobody@example.com", "not an address", ""] {
        assert_eq!(cost_of_refusal(&native, &fields, &hasher, typed).await, known, "{typed:?}");
    }
}

#[tokio::test]
async fn unknown_accounts_are_counted_under_the_keyed_hash_of_what_was_typed() {
    let (native, fields, _) = provider();
    let id = register(&native, &fields, "ada@example.com").await;
    let known = native.locate(&fields, "ada@example.com").await.expect("located");
    assert_eq!((known.key.as_str(), known.subject.as_deref()), (id.as_str(), Some(id.as_str())));
    assert!(!known.binding.is_empty(), "a device cookie is bound to the password hash");
    let unknown = native.locate(&fields, "Nobody@Example.com ").await.expect("located");
    let again = native.locate(&fields, "nobody@example.com").await.expect("located");
    assert_eq!(unknown.key, again.key, "one bucket per address, however it is typed");
    assert_eq!(unknown.key, hex::encode(fields.blind_index("nobody@example.com")));
    assert!(unknown.subject.is_none() && unknown.binding.is_empty());
    assert_eq!((known.refusal, unknown.refusal), ("wrong_password", "unknown_account"));
}

#[tokio::test]
async fn a_right_password_signs_in_with_pwd_and_a_taken_address_is_refused() {
    let (native, fields, _) = provider();
    let id = register(&native, &fields, "ada@example.com").await;
    let account = native.locate(&fields, "ada@example.com").await.expect("located");
    let verified = native.check_password(account, &Password::new(PASSWORD), 0).await.expect("verified");
    match verified.next {
        Next::SignedIn(signed_in) => {
            assert_eq!((signed_in.user_id, signed_in.amr), (id, vec!["pwd".to_owned()]))
        }
        Next::SecondFactor(_) => panic!("no second factor is enrolled"),
    }
    let email = Email::parse("ADA@example.com").expect("address");
    let again = native.register(&fields, &email, &Password::new(PASSWORD), vec![Role::user()], 0).await;
    assert!(matches!(again, Err(IdentityError::Exists)), "{again:?}");
}
