//! Portcullis' tokens for sessions the pool authenticated.
//!
//! The client receives ours: an access token signed by our key (our `sid`,
//! `amr`, `auth_time`, roles) that carries the pool's access token sealed in its
//! `pvt` claim, and a refresh token that is the pool's refresh token sealed.
//! Sealed tokens are bound to their session (AES-GCM associated data), so one
//! cannot be moved into another session's token. The provider opens them to
//! call the pool on the user's behalf; the user cannot call the pool with them.
//! The login challenge (`mfa_token`) is sealed with the field key.

use super::pool::Pool;
use crate::crypto::FieldCipher;
use crate::http::{bearer, Caller};
use crate::identity::{IdentityError, RenewRefusal, Renewal};
use crate::sessions::SessionRecord;
use crate::tokens::{Grant, TokenIssuer};
use crate::ApiError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

fn access_owner(sub: &str, sid: &str) -> String {
    format!("access\u{0}{sub}\u{0}{sid}")
}

fn refresh_owner(sub: &str, sid: &str) -> String {
    format!("refresh\u{0}{sub}\u{0}{sid}")
}

pub(super) fn internal(what: &'static str) -> ApiError {
    ApiError::internal(std::io::Error::other(what))
}

fn sealing_failed(err: IdentityError) -> ApiError {
    crate::identity::api_error(err, internal("sealing a provider token"))
}

/// Our access token for `session`, carrying the pool's access token sealed.
pub(super) async fn issue_access(
    pool: &Pool,
    issuer: &TokenIssuer,
    session: &SessionRecord,
    roles: Vec<String>,
    provider_access: &SecretString,
) -> Result<String, ApiError> {
    let owner = access_owner(&session.user_id, &session.sid);
    let sealed = pool.seal(provider_access.expose_secret(), &owner).await.map_err(sealing_failed)?;
    let (token, _) = issuer
        .issue_carrying(Grant::for_session(session, roles), Some(sealed))
        .map_err(ApiError::internal)?;
    Ok(token)
}

/// The pool's refresh token sealed for the client, with the pool username its
/// refresh flow needs.
pub(super) async fn seal_refresh(
    pool: &Pool,
    sub: &str,
    sid: &str,
    username: &str,
    refresh_token: &SecretString,
) -> Result<String, ApiError> {
    let inner = zeroize::Zeroizing::new(
        serde_json::json!({ "u": username, "t": refresh_token.expose_secret() }).to_string(),
    );
    pool.seal(&inner, &refresh_owner(sub, sid)).await.map_err(sealing_failed)
}

/// The (pool username, pool refresh token) inside a refresh token from
/// [`seal_refresh`] for this session; `None` for anything else.
pub(super) async fn open_refresh(
    pool: &Pool,
    session: &SessionRecord,
    presented: &str,
) -> Option<(String, SecretString)> {
    let inner = pool.open(presented, &refresh_owner(&session.user_id, &session.sid)).await.ok()?;
    let value: serde_json::Value = serde_json::from_str(inner.expose_secret()).ok()?;
    Some((value.get("u")?.as_str()?.to_owned(), SecretString::from(value.get("t")?.as_str()?.to_owned())))
}

/// The pool's access token inside the caller's (authorizer-verified) access
/// token, for a call to the pool on the caller's behalf. Only opens for the
/// session the authorizer named; anything else is `Unauthenticated`.
pub(super) async fn provider_access(
    pool: &Pool,
    req: &lambda_http::Request,
) -> Result<SecretString, ApiError> {
    #[derive(serde::Deserialize)]
    struct Carried {
        pvt: String,
    }
    let caller = Caller::from_request(req)?;
    let sid = caller.sid.as_deref().ok_or(ApiError::Unauthenticated)?;
    let token = bearer(req).ok_or(ApiError::Unauthenticated)?;
    let carried: Carried = crate::tokens::unverified_payload(token).ok_or(ApiError::Unauthenticated)?;
    pool.open(&carried.pvt, &access_owner(&caller.sub, sid)).await.map_err(|err| match err {
        IdentityError::Refused => ApiError::Unauthenticated,
        other => crate::identity::api_error(other, ApiError::Unauthenticated),
    })
}

/// A refresh at the pool (`REFRESH_TOKEN_AUTH`) for our session: when the pool
/// rotates its refresh token, ours rotates with it (sealed again; the old one
/// is spent). Only a token sealed for this session opens.
pub(super) async fn renew(
    pool: &Pool,
    session: &SessionRecord,
    presented: &SecretString,
) -> Result<Renewal, RenewRefusal> {
    let Some((username, inner)) = open_refresh(pool, session, presented.expose_secret()).await else {
        return Err(RenewRefusal::Refused("unsealable_token"));
    };
    let issued = pool.refresh(&username, &inner).await.map_err(RenewRefusal::Provider)?;
    let claims = super::issued_claims(issued.access_token.expose_secret())
        .ok_or_else(|| RenewRefusal::Failed(internal("provider token claims")))?;
    if (claims.sub.as_str(), claims.sid.as_str()) != (session.user_id.as_str(), session.sid.as_str()) {
        return Err(RenewRefusal::Refused("provider_session_mismatch"));
    }
    let successor = match issued.refresh_token {
        Some(next) if next.expose_secret() != inner.expose_secret() => {
            let sealed = seal_refresh(pool, &session.user_id, &session.sid, &username, &next)
                .await
                .map_err(RenewRefusal::Failed)?;
            let hash = crate::sessions::hash_external(&sealed);
            Some((SecretString::from(sealed), hash))
        }
        _ => None,
    };
    // The pool has rotated already: a session changed meanwhile cannot start again.
    Ok(Renewal {
        roles: claims.groups,
        successor,
        retry_on_change: false,
        pool_access: Some(issued.access_token),
    })
}

/// Associated data of a sealed MFA challenge: a ciphertext sealed for another purpose does not open as one.
const CHALLENGE_AAD: &[u8] = b"portcullis-mfa-challenge";

/// What a sealed login challenge carries: the account (as the password step
/// verified it), the pool's challenge session, the throttle key the password
/// step counted under, the device token the login earns, and its expiry.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct SealedChallenge {
    #[serde(rename = "u")]
    pub email: String,
    #[serde(rename = "s")]
    pub session: String,
    #[serde(rename = "b")]
    pub bucket: String,
    #[serde(rename = "d")]
    pub device_token: String,
    #[serde(rename = "e")]
    pub expires_at: i64,
}

impl Drop for SealedChallenge {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.session);
    }
}

/// The challenge handed to the client as `mfa_token`, sealed with the field
/// key (AEAD): the client can neither read nor edit it, so the second step
/// counts its attempts where only the password step could have put them.
pub(super) fn seal_challenge(fields: &FieldCipher, challenge: &SealedChallenge) -> Result<String, ApiError> {
    let json = zeroize::Zeroizing::new(serde_json::to_vec(challenge).map_err(ApiError::internal)?);
    Ok(format!("pcx_{}", URL_SAFE_NO_PAD.encode(fields.encrypt(&json, CHALLENGE_AAD))))
}

/// The challenge inside an `mfa_token` from [`seal_challenge`]; `None` for
/// anything else (edited, forged, sealed under another key).
pub(super) fn open_challenge(fields: &FieldCipher, token: &str) -> Option<SealedChallenge> {
    let sealed = URL_SAFE_NO_PAD.decode(token.strip_prefix("pcx_")?).ok()?;
    let bytes = zeroize::Zeroizing::new(fields.decrypt(&sealed, CHALLENGE_AAD).ok()?);
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge() -> SealedChallenge {
        SealedChallenge {
            email: "ada@example.com".into(),
            session: "session-1".into(),
            bucket: "bucket-1".into(),
            device_token: "device-1".into(),
            expires_at: 1_900_000_300,
        }
    }

    #[test]
    fn a_challenge_round_trips_and_garbage_does_not_open() {
        let fields = FieldCipher::new(&[3u8; 32]);
        let token = seal_challenge(&fields, &challenge()).expect("seals");
        let opened = open_challenge(&fields, &token).expect("opens");
        assert_eq!(
            (opened.email.as_str(), opened.session.as_str(), opened.bucket.as_str()),
            ("ada@example.com", "session-1", "bucket-1")
        );
        assert!(!token.contains("ada"), "the client cannot read the account");
        assert!(open_challenge(&fields, "pcx_!!").is_none());
        assert!(open_challenge(&fields, &token[1..]).is_none());
        assert!(open_challenge(&fields, "pcx_e30").is_none()); // {}
                                                               // What a client could make of it: any account and bucket it likes, in the clear.
        let forged = format!(
            "pcx_{}",
            URL_SAFE_NO_PAD.encode(
                serde_json::json!({"u": "victim@example.com", "s": "session-1", "b": "fresh", "d": "x", "e": 9})
                    .to_string()
            )
        );
        assert!(open_challenge(&fields, &forged).is_none(), "an edited or forged challenge");
        let other = FieldCipher::new(&[4u8; 32]);
        assert!(open_challenge(&other, &token).is_none(), "another deployment's key");
    }
}
