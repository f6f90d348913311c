//! Verification of Amazon Cognito user-pool tokens, for teams that keep users in
//! a pool. RS256 only; the pool's JWKS is fetched over HTTPS with a timeout,
//! cached by `kid`, and an unknown `kid` triggers at most one refetch per 10 s
//! (a flood of forged kids cannot make us hammer the endpoint). Checks `iss` (the
//! pool), `token_use`, `client_id` (access tokens) or `aud` (ID tokens), `exp`,
//! `iat`; `cognito:groups` become roles.

use crate::clock::{Clock, LEEWAY_SECS};
use crate::tokens::{TokenError, MAX_TOKEN_BYTES};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, RwLock};

/// Minimum time between two JWKS fetches caused by unknown `kid`s.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(10);

/// Which Cognito pool and clients to accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CognitoConfig {
    pub issuer: String,
    pub jwks_url: String,
    pub client_ids: Vec<String>,
    /// `access` or `id`.
    pub token_use: String,
}

impl CognitoConfig {
    /// The standard issuer and JWKS address of a pool; `jwks_url` overrides the
    /// latter (for an emulator).
    pub fn for_pool(
        region: &str,
        pool_id: &str,
        client_ids: Vec<String>,
        jwks_url: Option<String>,
        token_use: String,
    ) -> Self {
        let issuer = format!("https://cognito-idp.{region}.amazonaws.com/{pool_id}");
        let jwks_url = jwks_url.unwrap_or_else(|| format!("{issuer}/.well-known/jwks.json"));
        Self { issuer, jwks_url, client_ids, token_use }
    }
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    token_use: String,
    exp: i64,
    iat: i64,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    aud: Option<String>,
    #[serde(default, rename = "cognito:groups")]
    groups: Vec<String>,
    #[serde(default)]
    origin_jti: Option<String>,
}

/// A verified Cognito caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CognitoIdentity {
    pub sub: String,
    pub groups: Vec<String>,
    /// The pool's session id, stable across refreshes (with token revocation on).
    pub origin_jti: Option<String>,
}

#[derive(Deserialize)]
struct Jwk {
    kid: String,
    kty: String,
    #[serde(default)]
    n: String,
    #[serde(default)]
    e: String,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

/// Verifies tokens of one user pool.
pub struct CognitoVerifier {
    config: CognitoConfig,
    http: reqwest::Client,
    keys: RwLock<HashMap<String, DecodingKey>>,
    last_fetch: Mutex<Option<Instant>>,
    clock: Arc<dyn Clock>,
}

impl CognitoVerifier {
    pub fn new(config: CognitoConfig, clock: Arc<dyn Clock>) -> Self {
        crate::crypto::install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .connect_timeout(Duration::from_secs(1))
            .build()
            .unwrap_or_default();
        Self { config, http, keys: RwLock::new(HashMap::new()), last_fetch: Mutex::new(None), clock }
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// Fetches the JWKS unless a fetch happened in the last [`REFETCH_INTERVAL`].
    pub async fn refresh_keys(&self) -> Result<(), TokenError> {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < REFETCH_INTERVAL) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let jwks: Jwks =
            async { self.http.get(&self.config.jwks_url).send().await?.error_for_status()?.json().await }
                .await
                .map_err(|e: reqwest::Error| {
                    tracing::warn!(error = %e, "Cognito JWKS fetch failed");
                    TokenError::UnknownKey
                })?;
        let fresh: HashMap<String, DecodingKey> = jwks
            .keys
            .into_iter()
            .filter(|k| k.kty == "RSA")
            .filter_map(|k| DecodingKey::from_rsa_components(&k.n, &k.e).ok().map(|d| (k.kid, d)))
            .collect();
        *self.keys.write().await = fresh;
        Ok(())
    }

    /// The verified caller, or why the token is refused.
    pub async fn verify(&self, token: &str) -> Result<CognitoIdentity, TokenError> {
        if token.len() > MAX_TOKEN_BYTES || token.split('.').count() != 3 {
            return Err(TokenError::Malformed);
        }
        let header = token.split('.').next().ok_or(TokenError::Malformed)?;
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).map_err(|_| TokenError::Malformed)?)
                .map_err(|_| TokenError::Malformed)?;
        if header.keys().any(|k| !matches!(k.as_str(), "alg" | "kid" | "typ")) {
            return Err(TokenError::Header("unexpected header parameter"));
        }
        if header.get("alg").and_then(|v| v.as_str()) != Some("RS256") {
            return Err(TokenError::Header("alg must be RS256"));
        }
        let kid = header.get("kid").and_then(|v| v.as_str()).filter(|k| !k.is_empty() && k.len() <= 128);
        let kid = kid.ok_or(TokenError::Header("kid is required"))?.to_owned();
        if !self.keys.read().await.contains_key(&kid) {
            self.refresh_keys().await?;
        }
        let keys = self.keys.read().await;
        let key = keys.get(&kid).ok_or(TokenError::UnknownKey)?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.algorithms = vec![Algorithm::RS256];
        validation.set_issuer(&[&self.config.issuer]);
        validation.validate_aud = false; // checked below against client_id or aud
        validation.validate_exp = false; // checked below against the Clock
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
        let claims =
            jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|_| TokenError::Invalid)?.claims;
        let now = self.clock.now_secs();
        if claims.exp <= now - LEEWAY_SECS {
            return Err(TokenError::Expired);
        }
        if claims.iat > now + LEEWAY_SECS {
            return Err(TokenError::NotYetValid);
        }
        if claims.token_use != self.config.token_use {
            return Err(TokenError::Invalid);
        }
        let client =
            if claims.token_use == "access" { claims.client_id.as_ref() } else { claims.aud.as_ref() };
        if !client.is_some_and(|c| self.config.client_ids.iter().any(|allowed| allowed == c)) {
            return Err(TokenError::Invalid);
        }
        Ok(CognitoIdentity { sub: claims.sub, groups: claims.groups, origin_jti: claims.origin_jti })
    }
}

/// The unverified `iss` of a token, only to choose which verifier checks it.
pub fn peek_issuer(token: &str) -> Option<String> {
    let value: serde_json::Value = crate::tokens::unverified_payload(token)?;
    value.get("iss")?.as_str().map(str::to_owned)
}
