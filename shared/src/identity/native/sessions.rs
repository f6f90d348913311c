//! Native sessions: our refresh tokens (kept as hashes), the user's roles read
//! from the user store, and the re-authentication that renews a session in place.

use super::NativeProvider;
use crate::domain::UserId;
use crate::http::ClientMeta;
use crate::identity::{Principal, RenewRefusal, Renewal, SignedIn};
use crate::sessions::{self, Reauth, Rotation, SessionRecord, SessionState};
use crate::tokens::{Grant, TokenIssuer, TokenResponse};
use crate::ApiError;
use secrecy::{ExposeSecret, SecretString};

/// How often a re-authentication reads its session again when a refresh of the
/// same session lands between its read and its write.
const REAUTH_ATTEMPTS: usize = 3;

fn response(
    issuer: &TokenIssuer,
    grant: Grant,
    refresh_token: &SecretString,
) -> Result<TokenResponse, ApiError> {
    let (access_token, _) = issuer.issue(grant).map_err(ApiError::internal)?;
    Ok(TokenResponse {
        access_token,
        refresh_token: refresh_token.expose_secret().to_owned(),
        token_type: "Bearer",
        expires_in: issuer.ttl_secs(),
    })
}

impl NativeProvider {
    /// The session is written before any token exists: no token without its session.
    pub(super) async fn start(
        &self,
        issuer: &TokenIssuer,
        signed_in: SignedIn,
        meta: &ClientMeta,
        now: i64,
    ) -> Result<(String, TokenResponse), ApiError> {
        let id = UserId::parse(&signed_in.user_id).ok_or(ApiError::Unauthenticated)?;
        let (session, refresh_token) = sessions::start_for_user(
            self.sessions.as_ref(),
            &self.policy,
            self.users.as_ref(),
            id,
            signed_in.amr,
            meta,
            now,
        )
        .await?;
        let grant = Grant::for_session(&session, session.roles.clone());
        Ok((signed_in.user_id, response(issuer, grant, &refresh_token)?))
    }

    /// The caller's session gets `auth_time` now and what was proven as `amr`;
    /// its live refresh token is replaced (the old one is spent: presented
    /// later it is reuse).
    pub(super) async fn resume(
        &self,
        issuer: &TokenIssuer,
        principal: &Principal,
        signed_in: SignedIn,
        now: i64,
    ) -> Result<TokenResponse, ApiError> {
        let sid = principal.caller.sid.as_deref().ok_or(ApiError::Unauthenticated)?;
        let user_id = &principal.caller.sub;
        let (refresh_token, hash) = sessions::new_refresh_token();
        let mut attempt = 0;
        let session = loop {
            let session = self.sessions.get(user_id, sid).await?.ok_or(ApiError::Unauthenticated)?;
            // A session from before the store recorded its live refresh token:
            // its token cannot be spent here, and a second live chain would hide
            // reuse. Such a session only re-authenticates by logging in again.
            if self.policy.state(&session, now) != SessionState::Live || session.head.is_none() {
                return Err(ApiError::Unauthenticated);
            }
            let step = Reauth {
                session: &session,
                new: &hash,
                amr: &signed_in.amr,
                now,
                expires_at: self.policy.expires_at(session.created_at),
            };
            match self.sessions.reauthenticate(step).await? {
                Rotation::Rotated => break session,
                _ if attempt + 1 < REAUTH_ATTEMPTS => attempt += 1,
                _ => return Err(ApiError::unavailable(std::io::Error::other("session kept changing"))),
            }
        };
        let grant = Grant {
            sub: user_id.clone(),
            sid: session.sid.clone(),
            roles: session.roles.clone(),
            amr: signed_in.amr,
            auth_time: now,
        };
        response(issuer, grant, &refresh_token)
    }

    /// A fresh successor and the roles as the user store holds them now (read
    /// after the session, so a role change in between moves its version and
    /// the rotation starts again).
    pub(super) async fn renewal(&self, session: &SessionRecord) -> Result<Renewal, RenewRefusal> {
        let id = UserId::parse(&session.user_id).ok_or(RenewRefusal::Refused("unknown_user"))?;
        let roles = sessions::role_names(self.users.as_ref(), id)
            .await
            .map_err(|e| RenewRefusal::Failed(e.into()))?;
        Ok(Renewal {
            roles,
            successor: Some(sessions::new_refresh_token()),
            retry_on_change: true,
            pool_access: None,
        })
    }
}
