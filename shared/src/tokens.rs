//! Access tokens (RFC 9068 `at+jwt`), ES256 through `jsonwebtoken` on aws-lc-rs.
//!
//! The verifier trusts nothing from the token but its claims: the algorithm is
//! fixed (ES256), the key is chosen by `kid` among our own published keys only,
//! and a header carrying anything but `alg`, `typ` and `kid` (`jku`, `x5u`, `jwk`,
//! `x5c`, `crit`, …) is refused (RFC 8725 §3.1, §3.10). Time checks use the
//! `Clock` port with a small leeway.

use crate::clock::{Clock, LEEWAY_SECS};
use crate::crypto::{SigningKey, VerifyingKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// The only `typ` we issue and accept.
pub const TOKEN_TYPE: &str = "at+jwt";
/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub sid: String,
    pub roles: Vec<String>,
    pub amr: Vec<String>,
    pub auth_time: i64,
    /// With an external identity provider: the provider's own access token,
    /// sealed by the functions (see `identity::cognito`), so the client never holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvt: Option<String>,
}

/// Why a token was refused (logged; the client only ever learns "unauthenticated").
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token header is not acceptable: {0}")]
    Header(&'static str),
    #[error("token signing key is unknown")]
    UnknownKey,
    #[error("token signature or claims are invalid")]
    Invalid,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token could not be signed")]
    Signing,
}

/// The "tokens" body of the HTTP contract.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
}

impl Grant {
    /// The grant for a session: its user, id, login methods and time, with the
    /// user's current roles.
    pub fn for_session(session: &crate::sessions::SessionRecord, roles: Vec<String>) -> Self {
        Self {
            sub: session.user_id.clone(),
            sid: session.sid.clone(),
            roles,
            amr: session.amr.clone(),
            auth_time: session.auth_time,
        }
    }
}

/// Issues access tokens with the current signing key.
pub struct TokenIssuer {
    kid: String,
    key: EncodingKey,
    issuer: String,
    audience: String,
    ttl_secs: i64,
    clock: Arc<dyn Clock>,
}

/// What an issued token says about the caller.
#[derive(Debug, Clone)]
pub struct Grant {
    pub sub: String,
    pub sid: String,
    pub roles: Vec<String>,
    pub amr: Vec<String>,
    pub auth_time: i64,
}

impl TokenIssuer {
    pub fn new(
        key: &SigningKey,
        issuer: String,
        audience: String,
        ttl_secs: u64,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            kid: key.kid.clone(),
            key: EncodingKey::from_ec_der(&key.pkcs8),
            issuer,
            audience,
            ttl_secs: ttl_secs as i64,
            clock,
        }
    }

    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// The `kid` of the key this issuer signs with.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A signed access token for `grant`, valid from now for the configured TTL.
    pub fn issue(&self, grant: Grant) -> Result<(String, AccessClaims), TokenError> {
        self.issue_carrying(grant, None)
    }

    /// [`TokenIssuer::issue`], carrying a sealed provider token in `pvt`.
    pub fn issue_carrying(
        &self,
        grant: Grant,
        sealed_provider_token: Option<String>,
    ) -> Result<(String, AccessClaims), TokenError> {
        let now = self.clock.now_secs();
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: grant.sub,
            aud: self.audience.clone(),
            exp: now + self.ttl_secs,
            iat: now,
            nbf: now,
            jti: uuid::Uuid::new_v4().to_string(),
            sid: grant.sid,
            roles: grant.roles,
            amr: grant.amr,
            auth_time: grant.auth_time,
            pvt: sealed_provider_token,
        };
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(TOKEN_TYPE.into());
        header.kid = Some(self.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.key).map_err(|_| TokenError::Signing)?;
        Ok((token, claims))
    }
}

/// Verifies access tokens against our published keys.
pub struct TokenVerifier {
    keys: HashMap<String, DecodingKey>,
    validation: Validation,
    clock: Arc<dyn Clock>,
}

impl TokenVerifier {
    pub fn new(keys: &[VerifyingKey], issuer: &str, audience: &str, clock: Arc<dyn Clock>) -> Self {
        let keys = keys
            .iter()
            .filter_map(|k| ec_components(&k.point).map(|(x, y)| (k.kid.clone(), x, y)))
            .filter_map(|(kid, x, y)| DecodingKey::from_ec_components(&x, &y).ok().map(|key| (kid, key)))
            .collect();
        let mut validation = Validation::new(Algorithm::ES256);
        validation.algorithms = vec![Algorithm::ES256];
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        // Time is checked below against the Clock port, with our leeway.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        Self { keys, validation, clock }
    }

    /// The verified claims, or why the token is refused.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES || token.split('.').count() != 3 {
            return Err(TokenError::Malformed);
        }
        let kid = check_header(token)?;
        let key = self.keys.get(&kid).ok_or(TokenError::UnknownKey)?;
        let data = jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation)
            .map_err(|_| TokenError::Invalid)?;
        let claims = data.claims;
        let now = self.clock.now_secs();
        if claims.exp <= now - LEEWAY_SECS {
            return Err(TokenError::Expired);
        }
        if claims.nbf > now + LEEWAY_SECS || claims.iat > now + LEEWAY_SECS {
            return Err(TokenError::NotYetValid);
        }
        Ok(claims)
    }
}

/// The `sub` and `sid` a token *claims*, read without verifying anything. Only
/// for starting a read early; nothing may be decided on them until
/// [`TokenVerifier::verify`] has returned the same values.
pub fn peek_session(token: &str) -> Option<(String, String)> {
    #[derive(Deserialize)]
    struct Named {
        sub: String,
        sid: String,
    }
    if token.len() > MAX_TOKEN_BYTES {
        return None;
    }
    let named: Named = unverified_payload(token)?;
    Some((named.sub, named.sid))
}

/// A JWT's payload, decoded without verifying anything: for choosing a
/// verifier, starting a read early, or reading what a provider just issued
/// over TLS; never for an authorization decision.
pub fn unverified_payload<T: serde::de::DeserializeOwned>(token: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(token.split('.').nth(1)?).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Checks the protected header by allowlist and returns the `kid`.
fn check_header(token: &str) -> Result<String, TokenError> {
    let encoded = token.split('.').next().ok_or(TokenError::Malformed)?;
    let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| TokenError::Malformed)?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
    if let Some(extra) = header.keys().find(|k| !matches!(k.as_str(), "alg" | "typ" | "kid")) {
        return Err(TokenError::Header(match extra.as_str() {
            "crit" => "crit is not supported",
            "jku" | "x5u" | "jwk" | "x5c" => "embedded or remote keys are never trusted",
            _ => "unexpected header parameter",
        }));
    }
    if header.get("alg").and_then(|v| v.as_str()) != Some("ES256") {
        return Err(TokenError::Header("alg must be ES256"));
    }
    let typ = header.get("typ").and_then(|v| v.as_str()).unwrap_or("");
    if !(typ.eq_ignore_ascii_case(TOKEN_TYPE) || typ.eq_ignore_ascii_case("application/at+jwt")) {
        return Err(TokenError::Header("typ must be at+jwt"));
    }
    header
        .get("kid")
        .and_then(|v| v.as_str())
        .filter(|k| !k.is_empty() && k.len() <= 64)
        .map(str::to_owned)
        .ok_or(TokenError::Header("kid is required"))
}

/// Base64url `x` and `y` of an uncompressed P-256 point.
fn ec_components(point: &[u8]) -> Option<(String, String)> {
    if point.len() != 65 || point[0] != 0x04 {
        return None;
    }
    Some((URL_SAFE_NO_PAD.encode(&point[1..33]), URL_SAFE_NO_PAD.encode(&point[33..])))
}

/// The JWKS document (RFC 7517) of our verification keys.
pub fn jwks(keys: &[VerifyingKey]) -> serde_json::Value {
    let keys: Vec<_> = keys
        .iter()
        .filter_map(|k| {
            ec_components(&k.point).map(|(x, y)| {
                serde_json::json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": k.kid, "use": "sig", "alg": "ES256"})
            })
        })
        .collect();
    serde_json::json!({ "keys": keys })
}

#[cfg(test)]
mod tests;
