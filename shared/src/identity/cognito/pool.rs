//! The Cognito user pool's API, as the identity port's Cognito provider uses
//! it: `AdminCreateUser`, `InitiateAuth`, `RespondToAuthChallenge`,
//! `ChangePassword`, the software-token calls and `GetUser`, through the
//! confidential app client ([`AppClient`]), with the pool's errors mapped to
//! what the client may learn.

use crate::domain::Password;
use crate::identity::IdentityError;
use aws_sdk_cognitoidentityprovider::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cognitoidentityprovider::types::{
    AuthFlowType, AuthenticationResultType, ChallengeNameType, SoftwareTokenMfaSettingsType,
};
use aws_sdk_cognitoidentityprovider::Client;
use secrecy::{ExposeSecret, SecretString};

pub use super::app::AppClient;

/// Tokens the pool issued.
#[derive(Debug)]
pub struct ProviderTokens {
    pub access_token: SecretString,
    /// Absent when the pool keeps the presented one valid (no rotation).
    pub refresh_token: Option<SecretString>,
    pub expires_in: i64,
}

/// The outcome of a right password.
#[derive(Debug)]
pub enum PasswordLogin {
    Tokens(ProviderTokens),
    /// A TOTP code is required; `session` is the pool's challenge handle.
    TotpRequired {
        session: SecretString,
    },
}

/// What the pool says about one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub user_id: String,
    pub email: String,
    pub mfa_enabled: bool,
}

/// An Amazon Cognito user pool, through a confidential app client (see
/// [`AppClient`]) that allows `USER_PASSWORD_AUTH` and `REFRESH_TOKEN_AUTH`;
/// accounts are created with the admin APIs (the pool refuses self sign-up).
/// Usernames are emails.
pub struct Pool {
    app: AppClient,
}

impl Pool {
    pub fn new(app: AppClient) -> Self {
        Self { app }
    }

    async fn sdk(&self) -> &Client {
        self.app.sdk().get().await
    }

    /// `InitiateAuth` through our app client, with the `SECRET_HASH` of `username`.
    async fn initiate_auth(
        &self,
        flow: AuthFlowType,
        username: &str,
        parameters: &[(&str, &str)],
    ) -> Result<aws_sdk_cognitoidentityprovider::operation::initiate_auth::InitiateAuthOutput, IdentityError>
    {
        let hash = self.app.secret_hash(username).await?;
        let mut call = self
            .sdk()
            .await
            .initiate_auth()
            .client_id(self.app.client_id())
            .auth_flow(flow)
            .auth_parameters("SECRET_HASH", hash);
        for (name, value) in parameters {
            call = call.auth_parameters(*name, *value);
        }
        call.send().await.map_err(classify)
    }

    /// Deletes an account whose creation did not complete (best effort: logged).
    async fn undo_create(&self, email: &str) {
        let deleted = self
            .sdk()
            .await
            .admin_delete_user()
            .user_pool_id(self.app.pool_id())
            .username(email)
            .send()
            .await;
        if let Err(err) = deleted {
            tracing::error!(error = %crate::error::error_chain(&err), "could not delete a half-created Cognito user");
        }
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
        _ => IdentityError::Unavailable(crate::error::error_chain(&err)),
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

impl Pool {
    /// `AdminCreateUser` with the password as its (policy-checked) temporary one and
    /// no invitation, then `AdminSetUserPassword` to make it permanent: the account
    /// exists only once our policy and the pool's have both accepted the password.
    pub async fn sign_up(&self, email: &str, password: &Password) -> Result<String, IdentityError> {
        use aws_sdk_cognitoidentityprovider::types::{AttributeType, MessageActionType};
        let attribute = |name: &str, value: &str| {
            AttributeType::builder()
                .name(name)
                .value(value)
                .build()
                .map_err(|e| IdentityError::Unavailable(e.to_string()))
        };
        let created = self
            .sdk()
            .await
            .admin_create_user()
            .user_pool_id(self.app.pool_id())
            .username(email)
            .temporary_password(password.expose())
            .message_action(MessageActionType::Suppress)
            .user_attributes(attribute("email", email)?)
            .send()
            .await
            .map_err(classify)?;
        let sub = created
            .user()
            .and_then(|u| u.attributes().iter().find(|a| a.name() == "sub").and_then(|a| a.value()))
            .map(str::to_owned);
        let permanent = self
            .sdk()
            .await
            .admin_set_user_password()
            .user_pool_id(self.app.pool_id())
            .username(email)
            .password(password.expose())
            .permanent(true)
            .send()
            .await
            .map_err(classify);
        match (permanent, sub) {
            (Ok(_), Some(sub)) => Ok(sub),
            (Ok(_), None) => {
                self.undo_create(email).await;
                Err(IdentityError::Unavailable("AdminCreateUser returned no sub".into()))
            }
            (Err(err), _) => {
                self.undo_create(email).await;
                Err(err)
            }
        }
    }

    pub async fn password_login(
        &self,
        email: &str,
        password: &Password,
    ) -> Result<PasswordLogin, IdentityError> {
        let out = self
            .initiate_auth(
                AuthFlowType::UserPasswordAuth,
                email,
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

    pub async fn answer_totp(
        &self,
        email: &str,
        session: &SecretString,
        code: &str,
    ) -> Result<ProviderTokens, IdentityError> {
        let hash = self.app.secret_hash(email).await?;
        let out = self
            .sdk()
            .await
            .respond_to_auth_challenge()
            .client_id(self.app.client_id())
            .challenge_name(ChallengeNameType::SoftwareTokenMfa)
            .session(session.expose_secret())
            .challenge_responses("SECRET_HASH", hash)
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

    pub async fn refresh(
        &self,
        username: &str,
        refresh_token: &SecretString,
    ) -> Result<ProviderTokens, IdentityError> {
        let out = self
            .initiate_auth(
                AuthFlowType::RefreshTokenAuth,
                username,
                &[("REFRESH_TOKEN", refresh_token.expose_secret())],
            )
            .await?;
        tokens(out.authentication_result())
    }

    pub async fn sign_out_everywhere(&self, access_token: &str) -> Result<(), IdentityError> {
        self.sdk().await.global_sign_out().access_token(access_token).send().await.map_err(classify)?;
        Ok(())
    }

    pub async fn change_password(
        &self,
        access_token: &str,
        current: &Password,
        new: &Password,
    ) -> Result<(), IdentityError> {
        self.sdk()
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

    pub async fn begin_totp(&self, access_token: &str) -> Result<SecretString, IdentityError> {
        let out = self
            .sdk()
            .await
            .associate_software_token()
            .access_token(access_token)
            .send()
            .await
            .map_err(classify)?;
        let secret = out.secret_code().ok_or_else(|| IdentityError::Unavailable("no TOTP secret".into()))?;
        Ok(SecretString::from(secret.to_owned()))
    }

    pub async fn confirm_totp(&self, access_token: &str, code: &str) -> Result<(), IdentityError> {
        let out = self
            .sdk()
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
        self.sdk()
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

    pub async fn profile(&self, access_token: &str) -> Result<Profile, IdentityError> {
        let out = self.sdk().await.get_user().access_token(access_token).send().await.map_err(classify)?;
        let attribute =
            |name: &str| out.user_attributes().iter().find(|a| a.name() == name).and_then(|a| a.value());
        Ok(Profile {
            user_id: attribute("sub").unwrap_or_default().to_owned(),
            email: attribute("email").unwrap_or(out.username()).to_owned(),
            mfa_enabled: out.user_mfa_setting_list().iter().any(|m| m == "SOFTWARE_TOKEN_MFA"),
        })
    }

    pub async fn seal(&self, token: &str, owner: &str) -> Result<String, IdentityError> {
        self.app.seal(token, owner).await
    }

    pub async fn open(&self, sealed: &str, owner: &str) -> Result<SecretString, IdentityError> {
        self.app.open(sealed, owner).await
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
    /// The provider's own name for the account (Cognito's `username` claim: the
    /// sub in a pool whose usernames are emails); the refresh flow's `SECRET_HASH`
    /// is computed over it.
    pub username: String,
}

pub fn issued_claims(access_token: &str) -> Option<IssuedClaims> {
    let value: serde_json::Value = crate::tokens::unverified_payload(access_token)?;
    let sub = value.get("sub")?.as_str()?.to_owned();
    Some(IssuedClaims {
        username: value.get("username").and_then(|u| u.as_str()).unwrap_or(&sub).to_owned(),
        sub,
        sid: value.get("origin_jti")?.as_str()?.to_owned(),
        groups: value
            .get("cognito:groups")
            .and_then(|g| g.as_array())
            .map(|g| g.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    #[test]
    fn issued_claims_need_sub_and_origin_jti() {
        let token = |claims: serde_json::Value| format!("h.{}.s", URL_SAFE_NO_PAD.encode(claims.to_string()));
        let claims = issued_claims(&token(
            serde_json::json!({"sub": "u1", "origin_jti": "o1", "cognito:groups": ["admin"]}),
        ))
        .expect("claims");
        let expected = IssuedClaims {
            sub: "u1".into(),
            sid: "o1".into(),
            groups: vec!["admin".into()],
            username: "u1".into(),
        };
        assert_eq!(claims, expected);
        assert!(issued_claims(&token(serde_json::json!({"sub": "u1"}))).is_none());
        assert!(issued_claims("not-a-jwt").is_none());
    }
}
