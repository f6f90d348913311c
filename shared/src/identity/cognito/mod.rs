//! An Amazon Cognito user pool behind the identity port: the pool checks
//! passwords and TOTP codes and holds the TOTP secret; Portcullis keeps the
//! session records (so timeouts, revocation and reuse detection apply as for
//! native sessions) and the tokens the client holds, which carry the pool's
//! tokens sealed ([`sealing`]). The pool keeps no recovery codes (its own
//! account recovery applies) and turning TOTP off is left to its
//! administrators: both are `unsupported` here.

mod app;
mod pool;
mod sealing;

pub use pool::{issued_claims, AppClient, IssuedClaims, PasswordLogin, Pool, ProviderTokens};

use crate::crypto::FieldCipher;
use crate::domain::{Email, Password, Role};
use crate::http::{Caller, ClientMeta};
use crate::identity::{
    Account, Answer, Challenge, ChallengeHandle, ChallengeSeed, Enrolment, Feature, IdentityError,
    IdentityProvider, IssuedChallenge, Need, Next, PendingFactor, Principal, RenewRefusal, Renewal, SignedIn,
    Verified,
};
use crate::sessions::{hash_external, SessionPolicy, SessionRecord, SessionStore, TokenHash};
use crate::tokens::{TokenIssuer, TokenResponse};
use crate::ApiError;
use async_trait::async_trait;
use lambda_http::Request;
use sealing::internal;
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;

/// The Cognito provider: the pool, and our session records of its logins.
pub struct CognitoProvider {
    pool: Pool,
    sessions: Arc<dyn SessionStore>,
    policy: SessionPolicy,
}

impl CognitoProvider {
    pub fn new(app: AppClient, sessions: Arc<dyn SessionStore>, policy: SessionPolicy) -> Self {
        Self { pool: Pool::new(app), sessions, policy }
    }

    fn signed_in(tokens: ProviderTokens, amr: &[&str]) -> Result<SignedIn, IdentityError> {
        let claims = issued_claims(tokens.access_token.expose_secret())
            .ok_or_else(|| internal("provider token claims"))?;
        Ok(SignedIn {
            user_id: claims.sub,
            amr: amr.iter().map(|m| m.to_string()).collect(),
            pool: Some(tokens),
        })
    }

    fn access_of(principal: &Principal) -> Result<&str, IdentityError> {
        let token = principal.pool_access.as_ref().ok_or(IdentityError::Api(ApiError::Unauthenticated))?;
        Ok(token.expose_secret())
    }
}

#[async_trait]
impl IdentityProvider for CognitoProvider {
    fn supports(&self, feature: Feature) -> bool {
        !matches!(feature, Feature::RecoveryCodes | Feature::RemoveTotp)
    }

    /// Pool accounts get their roles from the pool's groups, not from here.
    async fn register(
        &self,
        _fields: &FieldCipher,
        email: &Email,
        password: &Password,
        roles: Vec<Role>,
        _now: i64,
    ) -> Result<String, IdentityError> {
        if roles != [Role::user()] {
            return Err(IdentityError::Unsupported);
        }
        self.pool.sign_up(email.as_str(), password).await
    }

    async fn locate(&self, fields: &FieldCipher, typed: &str) -> Result<Account, ApiError> {
        let (email, index) = crate::identity::typed_email(fields, typed);
        // The pool keeps the password hash: no device binding to it.
        let key = hex::encode(index);
        Ok(Account {
            key,
            binding: Vec::new(),
            subject: None,
            refusal: "provider_refused",
            email,
            user: None,
        })
    }

    async fn check_password(
        &self,
        account: Account,
        password: &Password,
        _now: i64,
    ) -> Result<Verified, IdentityError> {
        let email = account.email.ok_or(IdentityError::Refused)?;
        let next = match self.pool.password_login(email.as_str(), password).await? {
            PasswordLogin::Tokens(tokens) => Next::SignedIn(Self::signed_in(tokens, &["pwd"])?),
            PasswordLogin::TotpRequired { session } => Next::SecondFactor(PendingFactor {
                user_id: None,
                email: Some(email),
                pool_session: Some(session),
            }),
        };
        Ok(Verified { binding: Vec::new(), next })
    }

    async fn challenge(
        &self,
        fields: &FieldCipher,
        pending: PendingFactor,
        seed: ChallengeSeed,
        now: i64,
    ) -> Result<IssuedChallenge, ApiError> {
        let (Some(email), Some(session)) = (pending.email, pending.pool_session) else {
            return Err(internal("a pool challenge without its session"));
        };
        let sealed = sealing::SealedChallenge {
            email: email.as_str().to_owned(),
            session: session.expose_secret().to_owned(),
            bucket: seed.bucket,
            device_token: seed.device_token,
            expires_at: now + crate::mfa::CHALLENGE_TTL_SECS,
        };
        // The pool keeps no recovery codes: its own recovery flow applies.
        Ok(IssuedChallenge { mfa_token: sealing::seal_challenge(fields, &sealed)?, methods: &["totp"] })
    }

    async fn open_challenge(
        &self,
        fields: &FieldCipher,
        mfa_token: &SecretString,
        now: i64,
    ) -> Result<Option<Challenge>, ApiError> {
        let Some(sealed) = sealing::open_challenge(fields, mfa_token.expose_secret()) else {
            return Ok(None);
        };
        // Expired like a stored challenge, whatever the pool's session allows.
        if Email::parse(&sealed.email).is_err() || sealed.expires_at <= now {
            return Ok(None);
        }
        Ok(Some(Challenge {
            bucket: sealed.bucket.clone(),
            subject: None,
            device_token: Some(sealed.device_token.clone()),
            inner: ChallengeHandle::Sealed {
                email: sealed.email.clone(),
                session: SecretString::from(sealed.session.clone()),
            },
        }))
    }

    async fn answer(
        &self,
        _fields: &FieldCipher,
        challenge: &Challenge,
        answer: Answer<'_>,
        _now: i64,
    ) -> Result<SignedIn, IdentityError> {
        let ChallengeHandle::Sealed { email, session } = &challenge.inner else {
            return Err(IdentityError::WrongCode);
        };
        let Answer::Totp(code) = answer else {
            return Err(IdentityError::Unsupported);
        };
        let tokens = self.pool.answer_totp(email, session, code.expose_secret()).await?;
        Self::signed_in(tokens, &["pwd", "otp"])
    }

    /// The pool's roles are its groups; the session id is the pool's (`origin_jti`).
    async fn start_session(
        &self,
        issuer: &TokenIssuer,
        signed_in: SignedIn,
        meta: &ClientMeta,
        now: i64,
    ) -> Result<(String, TokenResponse), ApiError> {
        let issued = signed_in.pool.ok_or_else(|| internal("a pool login without its tokens"))?;
        let claims = issued_claims(issued.access_token.expose_secret())
            .ok_or_else(|| internal("provider token claims"))?;
        let refresh = issued.refresh_token.ok_or_else(|| internal("provider issued no refresh token"))?;
        let refresh_token =
            sealing::seal_refresh(&self.pool, &claims.sub, &claims.sid, &claims.username, &refresh).await?;
        let external = crate::sessions::External {
            user_id: &claims.sub,
            sid: &claims.sid,
            refresh_token: &refresh_token,
            roles: claims.groups.clone(),
            amr: signed_in.amr,
        };
        let session =
            crate::sessions::record_external(self.sessions.as_ref(), &self.policy, external, meta, now)
                .await?;
        let access_token =
            sealing::issue_access(&self.pool, issuer, &session, claims.groups, &issued.access_token).await?;
        let response = TokenResponse {
            access_token,
            refresh_token,
            token_type: "Bearer",
            expires_in: issuer.ttl_secs(),
        };
        Ok((claims.sub, response))
    }

    /// The pool's profile of the caller, through the pool token sealed in the
    /// caller's access token; a profile of anyone else is unauthenticated.
    async fn principal(
        &self,
        fields: &FieldCipher,
        req: &Request,
        _need: Need,
    ) -> Result<Principal, ApiError> {
        let caller = Caller::from_request(req)?;
        let token = sealing::provider_access(&self.pool, req).await?;
        let profile = self
            .pool
            .profile(token.expose_secret())
            .await
            .map_err(|e| crate::identity::api_error(e, ApiError::Unauthenticated))?;
        if profile.user_id != caller.sub {
            return Err(ApiError::Unauthenticated);
        }
        let email = Email::parse(&profile.email).map_err(|_| ApiError::Unauthenticated)?;
        Ok(Principal {
            account_key: hex::encode(fields.blind_index(email.as_str())),
            binding: Vec::new(),
            email,
            mfa_enabled: profile.mfa_enabled,
            caller,
            user_id: None,
            user: None,
            pool_access: Some(token),
        })
    }

    async fn roles(&self, principal: &Principal) -> Result<Vec<String>, ApiError> {
        Ok(principal.caller.roles.clone())
    }

    async fn change_password(
        &self,
        principal: &Principal,
        current: &Password,
        new: &Password,
        _now: i64,
    ) -> Result<(), IdentityError> {
        self.pool.change_password(Self::access_of(principal)?, current, new).await
    }

    async fn reauthenticate(
        &self,
        _fields: &FieldCipher,
        principal: &Principal,
        password: &Password,
        code: Option<&SecretString>,
        _now: i64,
    ) -> Result<SignedIn, IdentityError> {
        let email = principal.email.as_str();
        match self.pool.password_login(email, password).await? {
            PasswordLogin::Tokens(tokens) => Self::signed_in(tokens, &["pwd"]),
            PasswordLogin::TotpRequired { session } => {
                let code = code.ok_or(IdentityError::WrongCode)?;
                // The password was right: whatever the pool says now is about the code.
                let answered = self.pool.answer_totp(email, &session, code.expose_secret()).await;
                let tokens = answered.map_err(|e| match e {
                    IdentityError::Refused => IdentityError::WrongCode,
                    other => other,
                })?;
                Self::signed_in(tokens, &["pwd", "otp"])
            }
        }
    }

    /// The pool's `auth_time` survives refreshes, so a re-authentication is a
    /// new pool session: its record (with `amr` and `auth_time` now) replaces
    /// the caller's, which is revoked.
    async fn resume_session(
        &self,
        issuer: &TokenIssuer,
        principal: &Principal,
        signed_in: SignedIn,
        meta: &ClientMeta,
        now: i64,
    ) -> Result<TokenResponse, ApiError> {
        let sid = principal.caller.sid.as_deref().ok_or(ApiError::Unauthenticated)?;
        let (user_id, response) = self.start_session(issuer, signed_in, meta, now).await?;
        if user_id != principal.caller.sub {
            return Err(internal("the pool signed in another user"));
        }
        self.sessions.revoke(&principal.caller.sub, sid, now).await?;
        Ok(response)
    }

    /// Only refresh tokens a Portcullis login recorded are accepted.
    fn refresh_hash(&self, presented: &SecretString) -> Option<TokenHash> {
        Some(hash_external(presented.expose_secret()))
    }

    /// Refreshes at the pool (`REFRESH_TOKEN_AUTH`); when the pool rotates its
    /// refresh token, ours rotates with it (the old one is spent).
    async fn renew(
        &self,
        session: &SessionRecord,
        presented: &SecretString,
    ) -> Result<Renewal, RenewRefusal> {
        let Some((username, inner)) =
            sealing::open_refresh(&self.pool, session, presented.expose_secret()).await
        else {
            return Err(RenewRefusal::Refused("unsealable_token"));
        };
        let issued = self.pool.refresh(&username, &inner).await.map_err(RenewRefusal::Provider)?;
        let claims = issued_claims(issued.access_token.expose_secret())
            .ok_or_else(|| RenewRefusal::Failed(internal("provider token claims")))?;
        if (claims.sub.as_str(), claims.sid.as_str()) != (session.user_id.as_str(), session.sid.as_str()) {
            return Err(RenewRefusal::Refused("provider_session_mismatch"));
        }
        let successor = match issued.refresh_token {
            Some(next) if next.expose_secret() != inner.expose_secret() => {
                let sealed =
                    sealing::seal_refresh(&self.pool, &session.user_id, &session.sid, &username, &next)
                        .await
                        .map_err(RenewRefusal::Failed)?;
                let hash = hash_external(&sealed);
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

    async fn access_token(
        &self,
        issuer: &TokenIssuer,
        session: &SessionRecord,
        renewal: Renewal,
    ) -> Result<String, ApiError> {
        let carried =
            renewal.pool_access.ok_or_else(|| internal("a pool refresh without its access token"))?;
        sealing::issue_access(&self.pool, issuer, session, renewal.roles, &carried).await
    }

    /// `GlobalSignOut` revokes the pool's refresh tokens; ours are revoked
    /// already, which is what the authorizer checks, so a failure is logged.
    async fn sign_out_everywhere(&self, req: &Request) {
        let outcome = match sealing::provider_access(&self.pool, req).await {
            Ok(token) => {
                self.pool.sign_out_everywhere(token.expose_secret()).await.map_err(|e| e.to_string())
            }
            Err(err) => Err(err.to_string()),
        };
        if let Err(err) = outcome {
            tracing::warn!(error = %err, "GlobalSignOut failed after the sessions were revoked");
        }
    }

    async fn begin_totp(
        &self,
        _fields: &FieldCipher,
        principal: &Principal,
        _now: i64,
    ) -> Result<Enrolment, IdentityError> {
        let secret = self.pool.begin_totp(Self::access_of(principal)?).await?;
        let (secret, otpauth_uri, qr_svg) =
            crate::mfa::enrolment_from_base32(secret.expose_secret(), principal.email.as_str())
                .ok_or_else(|| internal("provider TOTP secret is not base32"))?;
        Ok(Enrolment { secret, otpauth_uri, qr_svg })
    }

    /// The pool keeps no recovery codes.
    async fn confirm_totp(
        &self,
        _fields: &FieldCipher,
        principal: &Principal,
        code: &SecretString,
        _now: i64,
    ) -> Result<Vec<String>, IdentityError> {
        self.pool.confirm_totp(Self::access_of(principal)?, code.expose_secret()).await?;
        Ok(Vec::new())
    }

    async fn remove_totp(
        &self,
        _fields: &FieldCipher,
        _principal: &Principal,
        _code: &SecretString,
        _now: i64,
    ) -> Result<(), IdentityError> {
        Err(IdentityError::Unsupported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mfa::CHALLENGE_TTL_SECS;

    #[tokio::test]
    async fn a_sealed_challenge_expires_like_a_stored_one_and_carries_its_bucket() {
        let config = crate::config::Config::from_lookup(|_| None).expect("default configuration");
        let app = AppClient::new(crate::aws::AwsClient::lazy(), "pool".into(), "client".into());
        let sessions = Arc::new(crate::adapters::memory::MemorySessionStore::new());
        let provider = CognitoProvider::new(app, sessions, config.session_policy());
        let fields = FieldCipher::new(&[5u8; 32]);
        let pending = PendingFactor {
            user_id: None,
            email: Some(Email::parse("ada@example.com").expect("address")),
            pool_session: Some(SecretString::from("pool-session".to_owned())),
        };
        let seed = ChallengeSeed { bucket: "device-bucket".into(), device_token: "device-token".into() };
        let issued = provider.challenge(&fields, pending, seed, 1_000).await.expect("sealed");
        assert_eq!(issued.methods, ["totp"], "the pool keeps no recovery codes");
        let token = SecretString::from(issued.mfa_token);
        let live =
            provider.open_challenge(&fields, &token, 1_000 + CHALLENGE_TTL_SECS - 1).await.expect("opens");
        let live = live.expect("live until its expiry");
        assert_eq!(
            (live.bucket.as_str(), live.device_token.as_deref()),
            ("device-bucket", Some("device-token"))
        );
        let dead = provider.open_challenge(&fields, &token, 1_000 + CHALLENGE_TTL_SECS).await.expect("opens");
        assert!(dead.is_none(), "an expired challenge is dead");
    }
}
