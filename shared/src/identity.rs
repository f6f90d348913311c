//! The identity-provider port: where users, passwords and second factors live.
//!
//! The native provider is Portcullis' own (MySQL users, argon2id, our TOTP and
//! ES256 tokens); the functions implement it directly. [`CognitoProvider`] puts
//! an Amazon Cognito user pool behind the same HTTP contract: the pool checks
//! passwords and TOTP codes and issues the tokens, while throttling, audit,
//! input validation, the password policy, security headers, sessions (idle and
//! absolute timeouts, revocation) and RBAC stay Portcullis'.

use crate::domain::Password;
use async_trait::async_trait;
use aws_sdk_cognitoidentityprovider::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cognitoidentityprovider::types::{
    AuthFlowType, AuthenticationResultType, ChallengeNameType, SoftwareTokenMfaSettingsType,
};
use aws_sdk_cognitoidentityprovider::Client;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

/// Tokens a provider issued.
#[derive(Debug)]
pub struct ProviderTokens {
    pub access_token: SecretString,
    /// Absent when the provider keeps the presented one valid (no rotation).
    pub refresh_token: Option<SecretString>,
    pub expires_in: i64,
}

/// The outcome of a right password.
#[derive(Debug)]
pub enum PasswordLogin {
    Tokens(ProviderTokens),
    /// A TOTP code is required; `session` is the provider's challenge handle.
    TotpRequired {
        session: SecretString,
    },
}

/// What a provider says about one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub user_id: String,
    pub email: String,
    pub mfa_enabled: bool,
}

/// Provider failures, already mapped to what the client may learn.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Wrong password, unknown or unconfirmed or disabled account: one answer for all.
    #[error("credentials refused")]
    Refused,
    #[error("wrong or expired code")]
    WrongCode,
    #[error("the account exists")]
    Exists,
    #[error("the provider refused the new password: {0}")]
    PasswordRejected(String),
    #[error("the provider is throttling")]
    Throttled,
    #[error("identity provider unavailable: {0}")]
    Unavailable(String),
}

/// The port. One implementation per provider; the native one lives in the functions.
#[async_trait]
pub trait IdentityProvider: Send + Sync {
    /// Creates an account; returns its stable user id.
    async fn sign_up(&self, email: &str, password: &Password) -> Result<String, IdentityError>;
    async fn password_login(&self, email: &str, password: &Password) -> Result<PasswordLogin, IdentityError>;
    async fn answer_totp(
        &self,
        email: &str,
        session: &SecretString,
        code: &str,
    ) -> Result<ProviderTokens, IdentityError>;
    async fn refresh(&self, refresh_token: &SecretString) -> Result<ProviderTokens, IdentityError>;
    /// Ends every session of the account at the provider.
    async fn sign_out_everywhere(&self, access_token: &str) -> Result<(), IdentityError>;
    async fn change_password(
        &self,
        access_token: &str,
        current: &Password,
        new: &Password,
    ) -> Result<(), IdentityError>;
    /// Starts TOTP enrolment; returns the base32 secret.
    async fn begin_totp(&self, access_token: &str) -> Result<SecretString, IdentityError>;
    /// Confirms enrolment with a first code and makes TOTP required at login.
    async fn confirm_totp(&self, access_token: &str, code: &str) -> Result<(), IdentityError>;
    async fn profile(&self, access_token: &str) -> Result<Profile, IdentityError>;
}

/// An Amazon Cognito user pool, through an app client without a secret that
/// allows `USER_PASSWORD_AUTH` and `REFRESH_TOKEN_AUTH`. Usernames are emails.
pub struct CognitoProvider {
    client: crate::runtime::AwsClient<Client>,
    client_id: String,
}

impl CognitoProvider {
    pub fn new(client: impl Into<crate::runtime::AwsClient<Client>>, client_id: String) -> Self {
        Self { client: client.into(), client_id }
    }

    /// `InitiateAuth` through our app client: the password and the refresh flows.
    async fn initiate_auth(
        &self,
        flow: AuthFlowType,
        parameters: &[(&str, &str)],
    ) -> Result<aws_sdk_cognitoidentityprovider::operation::initiate_auth::InitiateAuthOutput, IdentityError>
    {
        let mut call = self.client.get().await.initiate_auth().client_id(&self.client_id).auth_flow(flow);
        for (name, value) in parameters {
            call = call.auth_parameters(*name, *value);
        }
        call.send().await.map_err(classify)
    }
}

/// Maps a Cognito error code. Every "who are you" failure is one `Refused`
/// (with `PreventUserExistenceErrors` the pool already blurs most of them).
fn classify<E, R>(err: SdkError<E, R>) -> IdentityError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match err.as_service_error().and_then(|e| e.code()) {
        Some(
            "NotAuthorizedException"
            | "UserNotFoundException"
            | "UserNotConfirmedException"
            | "PasswordResetRequiredException",
        ) => IdentityError::Refused,
        Some("CodeMismatchException" | "ExpiredCodeException" | "EnableSoftwareTokenMFAException") => {
            IdentityError::WrongCode
        }
        Some("UsernameExistsException" | "AliasExistsException") => IdentityError::Exists,
        Some("InvalidPasswordException") => IdentityError::PasswordRejected(
            err.as_service_error().and_then(|e| e.message()).unwrap_or("password refused").to_owned(),
        ),
        Some("TooManyRequestsException" | "TooManyFailedAttemptsException" | "LimitExceededException") => {
            IdentityError::Throttled
        }
        _ => IdentityError::Unavailable(crate::http::error_chain(&err)),
    }
}

fn tokens(result: Option<&AuthenticationResultType>) -> Result<ProviderTokens, IdentityError> {
    let result = result.ok_or_else(|| IdentityError::Unavailable("no authentication result".into()))?;
    let access = result.access_token().ok_or_else(|| IdentityError::Unavailable("no access token".into()))?;
    Ok(ProviderTokens {
        access_token: SecretString::from(access.to_owned()),
        refresh_token: result.refresh_token().map(|t| SecretString::from(t.to_owned())),
        expires_in: i64::from(result.expires_in()),
    })
}

#[async_trait]
impl IdentityProvider for CognitoProvider {
    async fn sign_up(&self, email: &str, password: &Password) -> Result<String, IdentityError> {
        let out = self
            .client
            .get()
            .await
            .sign_up()
            .client_id(&self.client_id)
            .username(email)
            .password(password.expose())
            .user_attributes(
                aws_sdk_cognitoidentityprovider::types::AttributeType::builder()
                    .name("email")
                    .value(email)
                    .build()
                    .map_err(|e| IdentityError::Unavailable(e.to_string()))?,
            )
            .send()
            .await
            .map_err(classify)?;
        Ok(out.user_sub().to_owned())
    }

    async fn password_login(&self, email: &str, password: &Password) -> Result<PasswordLogin, IdentityError> {
        let out = self
            .initiate_auth(
                AuthFlowType::UserPasswordAuth,
                &[("USERNAME", email), ("PASSWORD", password.expose())],
            )
            .await?;
        match out.challenge_name() {
            None => tokens(out.authentication_result()).map(PasswordLogin::Tokens),
            Some(ChallengeNameType::SoftwareTokenMfa) => Ok(PasswordLogin::TotpRequired {
                session: SecretString::from(out.session().unwrap_or_default().to_owned()),
            }),
            // NEW_PASSWORD_REQUIRED, SMS_MFA, MFA_SETUP …: not offered through this contract.
            Some(other) => {
                tracing::warn!(challenge = %other.as_str(), "unsupported Cognito challenge: refusing the login");
                Err(IdentityError::Refused)
            }
        }
    }

    async fn answer_totp(
        &self,
        email: &str,
        session: &SecretString,
        code: &str,
    ) -> Result<ProviderTokens, IdentityError> {
        let out = self
            .client
            .get()
            .await
            .respond_to_auth_challenge()
            .client_id(&self.client_id)
            .challenge_name(ChallengeNameType::SoftwareTokenMfa)
            .session(session.expose_secret())
            .challenge_responses("USERNAME", email)
            .challenge_responses("SOFTWARE_TOKEN_MFA_CODE", code)
            .send()
            .await
            .map_err(|e| match classify(e) {
                // A spent or expired challenge session is a wrong factor to the client.
                IdentityError::Refused => IdentityError::WrongCode,
                other => other,
            })?;
        tokens(out.authentication_result())
    }

    async fn refresh(&self, refresh_token: &SecretString) -> Result<ProviderTokens, IdentityError> {
        let out = self
            .initiate_auth(
                AuthFlowType::RefreshTokenAuth,
                &[("REFRESH_TOKEN", refresh_token.expose_secret())],
            )
            .await?;
        tokens(out.authentication_result())
    }

    async fn sign_out_everywhere(&self, access_token: &str) -> Result<(), IdentityError> {
        self.client
            .get()
            .await
            .global_sign_out()
            .access_token(access_token)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn change_password(
        &self,
        access_token: &str,
        current: &Password,
        new: &Password,
    ) -> Result<(), IdentityError> {
        self.client
            .get()
            .await
            .change_password()
            .access_token(access_token)
            .previous_password(current.expose())
            .proposed_password(new.expose())
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn begin_totp(&self, access_token: &str) -> Result<SecretString, IdentityError> {
        let out = self
            .client
            .get()
            .await
            .associate_software_token()
            .access_token(access_token)
            .send()
            .await
            .map_err(classify)?;
        let secret = out.secret_code().ok_or_else(|| IdentityError::Unavailable("no TOTP secret".into()))?;
        Ok(SecretString::from(secret.to_owned()))
    }

    async fn confirm_totp(&self, access_token: &str, code: &str) -> Result<(), IdentityError> {
        let out = self
            .client
            .get()
            .await
            .verify_software_token()
            .access_token(access_token)
            .user_code(code)
            .send()
            .await
            .map_err(classify)?;
        if out.status().map(|s| s.as_str()) != Some("SUCCESS") {
            return Err(IdentityError::WrongCode);
        }
        self.client
            .get()
            .await
            .set_user_mfa_preference()
            .access_token(access_token)
            .software_token_mfa_settings(
                SoftwareTokenMfaSettingsType::builder().enabled(true).preferred_mfa(true).build(),
            )
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn profile(&self, access_token: &str) -> Result<Profile, IdentityError> {
        let out =
            self.client.get().await.get_user().access_token(access_token).send().await.map_err(classify)?;
        let attribute =
            |name: &str| out.user_attributes().iter().find(|a| a.name() == name).and_then(|a| a.value());
        Ok(Profile {
            user_id: attribute("sub").unwrap_or_default().to_owned(),
            email: attribute("email").unwrap_or(out.username()).to_owned(),
            mfa_enabled: out.user_mfa_setting_list().iter().any(|m| m == "SOFTWARE_TOKEN_MFA"),
        })
    }
}

/// Claims of a provider's access token that Portcullis keeps on its session
/// record. Read without verification: only ever applied to a token just
/// received from the provider over TLS, never to one a client presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedClaims {
    pub sub: String,
    /// The provider's session id (Cognito's `origin_jti`, stable across refreshes).
    pub sid: String,
    pub groups: Vec<String>,
}

pub fn issued_claims(access_token: &str) -> Option<IssuedClaims> {
    let value: serde_json::Value = crate::tokens::unverified_payload(access_token)?;
    Some(IssuedClaims {
        sub: value.get("sub")?.as_str()?.to_owned(),
        sid: value.get("origin_jti")?.as_str()?.to_owned(),
        groups: value
            .get("cognito:groups")
            .and_then(|g| g.as_array())
            .map(|g| g.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default(),
    })
}

/// The MFA challenge handed to the client as `mfa_token`: the account and the
/// provider's challenge session, opaque to the client (base64url JSON). Tampering
/// gains nothing: the provider binds its session to the account.
pub fn seal_challenge(email: &str, session: &SecretString) -> String {
    let json = serde_json::json!({ "u": email, "s": session.expose_secret() });
    format!("pcx_{}", URL_SAFE_NO_PAD.encode(json.to_string()))
}

/// The (account, session) inside an `mfa_token` from [`seal_challenge`].
pub fn open_challenge(token: &str) -> Option<(String, SecretString)> {
    let bytes = URL_SAFE_NO_PAD.decode(token.strip_prefix("pcx_")?).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some((value.get("u")?.as_str()?.to_owned(), SecretString::from(value.get("s")?.as_str()?.to_owned())))
}

/// Turns a provider's tokens into the contract's token response, after writing
/// Portcullis' session record for them (no token leaves without its session).
/// The provider's roles are its groups.
pub async fn start_session(
    sessions: &dyn crate::sessions::SessionStore,
    policy: &crate::sessions::SessionPolicy,
    issued: ProviderTokens,
    amr: Vec<String>,
    meta: &crate::http::ClientMeta,
    now: i64,
) -> Result<(String, crate::tokens::TokenResponse), crate::ApiError> {
    let internal = |what: &'static str| crate::ApiError::internal(std::io::Error::other(what));
    let claims = issued_claims(issued.access_token.expose_secret())
        .ok_or_else(|| internal("provider token claims"))?;
    let refresh = issued.refresh_token.ok_or_else(|| internal("provider issued no refresh token"))?;
    let external = crate::sessions::External {
        user_id: &claims.sub,
        sid: &claims.sid,
        refresh_token: refresh.expose_secret(),
        roles: claims.groups,
        amr,
    };
    crate::sessions::record_external(sessions, policy, external, meta, now).await?;
    Ok((
        claims.sub,
        crate::tokens::TokenResponse {
            access_token: issued.access_token.expose_secret().to_owned(),
            refresh_token: refresh.expose_secret().to_owned(),
            token_type: "Bearer",
            expires_in: issued.expires_in,
        },
    ))
}

/// The answer for provider failures every route treats alike; `refused` is the
/// route's own "no" (401 invalid credentials, invalid MFA, invalid refresh token).
pub fn api_error(err: IdentityError, refused: crate::ApiError) -> crate::ApiError {
    match err {
        IdentityError::Refused | IdentityError::WrongCode => refused,
        IdentityError::Exists => crate::ApiError::EmailUnavailable,
        IdentityError::PasswordRejected(message) => {
            crate::ApiError::WeakPassword(vec![crate::error::Violation {
                rule: "provider_policy",
                field: "password",
                message,
            }])
        }
        IdentityError::Throttled => crate::ApiError::TooManyRequests { retry_after_secs: 1 },
        other => crate::ApiError::unavailable(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_challenge_round_trips_and_garbage_does_not_open() {
        let token = seal_challenge("ada@example.com", &SecretString::from("session-1".to_owned()));
        let (email, session) = open_challenge(&token).expect("opens");
        assert_eq!((email.as_str(), session.expose_secret()), ("ada@example.com", "session-1"));
        assert!(open_challenge("pcx_!!").is_none());
        assert!(open_challenge(&token[1..]).is_none());
        assert!(open_challenge("pcx_e30").is_none()); // {}
    }

    #[test]
    fn issued_claims_need_sub_and_origin_jti() {
        let token = |claims: serde_json::Value| format!("h.{}.s", URL_SAFE_NO_PAD.encode(claims.to_string()));
        let claims = issued_claims(&token(
            serde_json::json!({"sub": "u1", "origin_jti": "o1", "cognito:groups": ["admin"]}),
        ))
        .expect("claims");
        assert_eq!(claims, IssuedClaims { sub: "u1".into(), sid: "o1".into(), groups: vec!["admin".into()] });
        assert!(issued_claims(&token(serde_json::json!({"sub": "u1"}))).is_none());
        assert!(issued_claims("not-a-jwt").is_none());
    }
}
