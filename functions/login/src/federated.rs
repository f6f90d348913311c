//! The login routes when users live in an external identity provider (an Amazon
//! Cognito user pool): the provider checks the password; validation, the password
//! policy, throttling, audit, session records, the tokens the client holds (ours,
//! carrying the provider's sealed: `portcullis_shared::federated`) and the
//! response shapes are the same as the native routes'.

use crate::handlers::{
    admit, admit_registration, parse_email, typed_email, Credentials, Deps, PasswordChange, Profile, Reauth,
};
use http::StatusCode;
use lambda_http::Request;
use portcullis_shared::audit::EventType;
use portcullis_shared::federated::{provider_access, start_session};
use portcullis_shared::http::{json, no_content, parse_json, Caller, ClientMeta, HandlerResult};
use portcullis_shared::identity::{self, IdentityError, IdentityProvider, PasswordLogin};
use portcullis_shared::sessions;
use portcullis_shared::ApiError;
use secrecy::ExposeSecret;

pub async fn register(deps: &Deps, idp: &dyn IdentityProvider, req: &Request) -> HandlerResult {
    let meta = ClientMeta::from_request(req);
    let body: Credentials = parse_json(req, deps.max_body_bytes)?;
    let email = parse_email(&body.email)?;
    let bucket = admit_registration(deps, &email, &meta).await?;
    // Our policy first (breached passwords, the email's local part); the pool's own after.
    deps.policy.check(&body.password, &email, "password").await?;
    let user_id = idp
        .sign_up(email.as_str(), &body.password)
        .await
        .map_err(|e| identity::api_error(e, ApiError::EmailUnavailable))?;
    deps.throttle.forget(&bucket).await;
    deps.auditor.record(EventType::Register, Some(user_id.clone()), &meta, None).await;
    json(StatusCode::CREATED, &serde_json::json!({ "user_id": user_id }))
}

/// Unknown accounts, wrong passwords and malformed emails end in the same 401
/// and count against the same keyed-email bucket as the native route.
pub async fn login(deps: &Deps, idp: &dyn IdentityProvider, req: &Request) -> HandlerResult {
    let meta = ClientMeta::from_request(req);
    let body: Credentials = parse_json(req, deps.max_body_bytes)?;
    let keys = deps.keys.get().await?;
    let (email, index) = typed_email(&keys, &body.email);
    let account = hex::encode(index);
    // A known device of this account counts on its own budget (see `device`).
    let now = deps.clock.now_secs();
    // The pool keeps the password hash: no binding to it here (docs/security/README.md).
    let bucket = portcullis_shared::device::throttle_key(&keys.fields, req, &account, b"", now);
    admit(deps, &bucket, None, &meta).await?;
    let outcome = match &email {
        Some(email) => idp.password_login(email.as_str(), &body.password).await,
        None => Err(IdentityError::Refused),
    };
    let (email, outcome) = match (email, outcome) {
        (Some(email), Ok(outcome)) => (email, outcome),
        (_, Err(other)) if !matches!(other, IdentityError::Refused) => {
            return Err(identity::api_error(other, ApiError::InvalidCredentials))
        }
        _ => {
            deps.auditor.record(EventType::LoginFailure, None, &meta, Some("provider_refused")).await;
            return Err(ApiError::InvalidCredentials);
        }
    };
    match outcome {
        PasswordLogin::TotpRequired { session } => {
            // The account's count stands until the second factor succeeds.
            deps.throttle.success(None, meta.source_ip.as_deref()).await;
            deps.auditor.record(EventType::MfaChallenge, None, &meta, Some("provider_totp")).await;
            json(
                StatusCode::OK,
                &serde_json::json!({
                    "mfa_required": true,
                    "mfa_token": identity::seal_challenge(&keys.fields, email.as_str(), &session),
                    // The pool keeps no recovery codes: its own recovery flow applies.
                    "methods": ["totp"],
                }),
            )
        }
        PasswordLogin::Tokens(issued) => {
            // The last factor succeeded (with TOTP on, the MFA step resets this counter).
            deps.throttle.success(Some(&bucket), meta.source_ip.as_deref()).await;
            let (user_id, response) = start_session(
                idp,
                &keys.tokens,
                deps.sessions.as_ref(),
                &deps.session_policy,
                issued,
                vec!["pwd".into()],
                &meta,
                now,
            )
            .await?;
            deps.auditor.record(EventType::LoginSuccess, Some(user_id), &meta, None).await;
            let device = portcullis_shared::device::issue(&keys.fields, &account, b"", now);
            Ok(portcullis_shared::device::remember(json(StatusCode::OK, &response)?, &device))
        }
    }
}

/// The caller and the pool's profile of it, through the pool token sealed in
/// the caller's access token; a profile of anyone else is unauthenticated.
async fn caller_profile(
    idp: &dyn IdentityProvider,
    req: &Request,
) -> Result<(Caller, identity::Profile), ApiError> {
    let caller = Caller::from_request(req)?;
    let token = provider_access(idp, req).await?;
    let profile = idp
        .profile(token.expose_secret())
        .await
        .map_err(|e| identity::api_error(e, ApiError::Unauthenticated))?;
    if profile.user_id != caller.sub {
        return Err(ApiError::Unauthenticated);
    }
    Ok((caller, profile))
}

pub async fn me(idp: &dyn IdentityProvider, req: &Request) -> HandlerResult {
    let (caller, profile) = caller_profile(idp, req).await?;
    json(
        StatusCode::OK,
        &Profile {
            user_id: profile.user_id,
            email: profile.email,
            roles: caller.roles,
            mfa_enabled: profile.mfa_enabled,
        },
    )
}

pub async fn change_password(deps: &Deps, idp: &dyn IdentityProvider, req: &Request) -> HandlerResult {
    let meta = ClientMeta::from_request(req);
    let caller = Caller::from_request(req)?;
    let token = provider_access(idp, req).await?;
    let token = token.expose_secret();
    let body: PasswordChange = parse_json(req, deps.max_body_bytes)?;
    let profile = idp.profile(token).await.map_err(|e| identity::api_error(e, ApiError::Unauthenticated))?;
    caller.require_recent_auth(deps.clock.now_secs(), deps.reauth_max_age_secs, profile.mfa_enabled)?;
    let email = parse_email(&profile.email)?;
    deps.policy.check(&body.new_password, &email, "new_password").await?;
    // Counted with the login attempts of the same account (the keyed email).
    let keys = deps.keys.get().await?;
    let account = hex::encode(typed_email(&keys, email.as_str()).1);
    let bucket =
        portcullis_shared::device::throttle_key(&keys.fields, req, &account, b"", deps.clock.now_secs());
    admit(deps, &bucket, Some(caller.sub.clone()), &meta).await?;
    if let Err(err) = idp.change_password(token, &body.current_password, &body.new_password).await {
        if matches!(err, IdentityError::Refused) {
            deps.auditor
                .record(
                    EventType::PasswordChangeFailure,
                    Some(caller.sub.clone()),
                    &meta,
                    Some("wrong_password"),
                )
                .await;
        }
        return Err(identity::api_error(err, ApiError::InvalidCredentials));
    }
    // Not the account's count: other guessable routes share it.
    deps.throttle.success(None, meta.source_ip.as_deref()).await;
    deps.auditor.record(EventType::PasswordChange, Some(caller.sub.clone()), &meta, None).await;
    // ASVS V3.3.3: every other session of the user ends (ours; the authorizer checks them).
    let now = deps.clock.now_secs();
    let revoked =
        sessions::revoke_all(deps.sessions.as_ref(), &caller.sub, caller.sid.as_deref(), now).await?;
    if revoked > 0 {
        deps.auditor
            .record(EventType::SessionsRevoked, Some(caller.sub), &meta, Some("password_change"))
            .await;
    }
    no_content()
}

/// `POST /auth/reauth` with the pool: the password (and the TOTP code when the
/// pool requires one) go through a fresh pool login, counted with the
/// account's login attempts. The pool's `auth_time` survives refreshes, so a
/// re-authentication is a new pool session: its session record (with `amr`
/// and `auth_time` now) replaces the caller's, which is revoked.
pub async fn reauth(deps: &Deps, idp: &dyn IdentityProvider, req: &Request) -> HandlerResult {
    let meta = ClientMeta::from_request(req);
    let (caller, profile) = caller_profile(idp, req).await?;
    let sid = caller.sid.clone().ok_or(ApiError::Unauthenticated)?;
    let body: Reauth = parse_json(req, deps.max_body_bytes)?;
    let email = parse_email(&profile.email)?;
    let keys = deps.keys.get().await?;
    let account = hex::encode(typed_email(&keys, email.as_str()).1);
    let bucket =
        portcullis_shared::device::throttle_key(&keys.fields, req, &account, b"", deps.clock.now_secs());
    admit(deps, &bucket, Some(caller.sub.clone()), &meta).await?;
    let failure = |reason: &'static str| {
        deps.auditor.record(EventType::ReauthenticationFailure, Some(caller.sub.clone()), &meta, Some(reason))
    };
    let (issued, amr) = match idp.password_login(email.as_str(), &body.password).await {
        Ok(PasswordLogin::Tokens(issued)) => (issued, vec!["pwd".to_owned()]),
        Ok(PasswordLogin::TotpRequired { session }) => {
            let Some(code) = body.code.as_ref() else {
                failure("second_factor_missing").await;
                return Err(ApiError::InvalidMfa);
            };
            match idp.answer_totp(email.as_str(), &session, code.expose_secret()).await {
                Ok(issued) => (issued, vec!["pwd".to_owned(), "otp".to_owned()]),
                Err(err) => {
                    failure("wrong_code").await;
                    return Err(identity::api_error(err, ApiError::InvalidMfa));
                }
            }
        }
        Err(IdentityError::Refused) => {
            failure("wrong_password").await;
            return Err(ApiError::InvalidCredentials);
        }
        Err(other) => return Err(identity::api_error(other, ApiError::InvalidCredentials)),
    };
    deps.throttle.success(Some(&bucket), meta.source_ip.as_deref()).await;
    let now = deps.clock.now_secs();
    let (user_id, response) = start_session(
        idp,
        &keys.tokens,
        deps.sessions.as_ref(),
        &deps.session_policy,
        issued,
        amr,
        &meta,
        now,
    )
    .await?;
    if user_id != caller.sub {
        return Err(ApiError::internal(std::io::Error::other("the pool signed in another user")));
    }
    deps.sessions.revoke(&caller.sub, &sid, now).await?;
    deps.auditor.record(EventType::Reauthentication, Some(user_id), &meta, None).await;
    json(StatusCode::OK, &response)
}
