//! The MFA routes when users live in an external identity provider (an Amazon
//! Cognito user pool): the pool holds the TOTP secret and checks the codes
//! (`AssociateSoftwareToken`, `VerifySoftwareToken`, `SetUserMFAPreference`,
//! `RespondToAuthChallenge`), called with the pool's access token sealed inside
//! ours; throttling, audit, sessions, tokens and response shapes stay Portcullis'. The pool keeps no recovery codes, so the recovery route
//! refuses (the pool's own account recovery applies), and turning TOTP off is
//! left to the pool's administrators: neither can be checked here.

use crate::handlers::{admit, CodeBody, Deps, VerifyBody};
use http::StatusCode;
use lambda_http::Request;
use portcullis_shared::audit::EventType;
use portcullis_shared::federated::{provider_access, start_session};
use portcullis_shared::http::{json, parse_json, Caller, ClientMeta, HandlerResult};
use portcullis_shared::identity::{self, IdentityProvider};
use portcullis_shared::ApiError;
use secrecy::ExposeSecret;

pub async fn enroll(deps: &Deps, idp: &dyn IdentityProvider, req: &Request) -> HandlerResult {
    let meta = ClientMeta::from_request(req);
    let caller = Caller::from_request(req)?;
    let token = provider_access(idp, req).await?;
    let token = token.expose_secret();
    let profile = idp.profile(token).await.map_err(|e| identity::api_error(e, ApiError::Unauthenticated))?;
    if profile.mfa_enabled {
        return Err(ApiError::Conflict);
    }
    caller.require_recent_auth(deps.clock.now_secs(), deps.reauth_max_age_secs, profile.mfa_enabled)?;
    let secret =
        idp.begin_totp(token).await.map_err(|e| identity::api_error(e, ApiError::Unauthenticated))?;
    let (base32, uri, svg) =
        portcullis_shared::mfa::enrolment_from_base32(secret.expose_secret(), &profile.email)
            .ok_or_else(|| ApiError::internal(std::io::Error::other("provider TOTP secret is not base32")))?;
    deps.auditor.record(EventType::MfaEnrol, Some(caller.sub), &meta, None).await;
    json(StatusCode::OK, &serde_json::json!({ "secret": base32, "otpauth_uri": uri, "qr_svg": svg }))
}

pub async fn confirm(deps: &Deps, idp: &dyn IdentityProvider, req: &Request) -> HandlerResult {
    let meta = ClientMeta::from_request(req);
    let caller = Caller::from_request(req)?;
    let token = provider_access(idp, req).await?;
    let token = token.expose_secret();
    let body: CodeBody = parse_json(req, deps.max_body_bytes)?;
    admit(deps, &caller.sub, None, &meta).await?;
    if let Err(err) = idp.confirm_totp(token, body.code.expose_secret()).await {
        deps.auditor
            .record(EventType::MfaVerifyFailure, Some(caller.sub), &meta, Some("confirm_wrong_code"))
            .await;
        return Err(identity::api_error(err, ApiError::InvalidMfa));
    }
    deps.throttle.success(Some(&caller.sub), meta.source_ip.as_deref()).await;
    deps.auditor.record(EventType::MfaConfirm, Some(caller.sub), &meta, None).await;
    json(StatusCode::OK, &serde_json::json!({ "recovery_codes": [] }))
}

pub async fn verify(deps: &Deps, idp: &dyn IdentityProvider, req: &Request) -> HandlerResult {
    let meta = ClientMeta::from_request(req);
    let body: VerifyBody = parse_json(req, deps.max_body_bytes)?;
    let keys = deps.keys.get().await?;
    // The account the password step verified, sealed in the token (the client
    // cannot edit it): the same keyed-email bucket, or this device's own.
    let opened = identity::open_challenge(&keys.fields, body.mfa_token.expose_secret());
    let Some((email, session)) = opened.filter(|(e, _)| portcullis_shared::domain::Email::parse(e).is_ok())
    else {
        deps.auditor.record(EventType::MfaVerifyFailure, None, &meta, Some("unknown_mfa_token")).await;
        return Err(ApiError::InvalidMfa);
    };
    let account = hex::encode(keys.fields.blind_index(&email));
    let now = deps.clock.now_secs();
    let bucket = portcullis_shared::device::throttle_key(&keys.fields, req, &account, b"", now);
    admit(deps, &bucket, None, &meta).await?;
    let issued = match idp.answer_totp(&email, &session, body.code.expose_secret()).await {
        Ok(issued) => issued,
        Err(err) => {
            deps.auditor.record(EventType::MfaVerifyFailure, None, &meta, Some("provider_refused")).await;
            return Err(identity::api_error(err, ApiError::InvalidMfa));
        }
    };
    deps.throttle.success(Some(&bucket), meta.source_ip.as_deref()).await;
    let (user_id, response) = start_session(
        idp,
        &keys.tokens,
        deps.sessions.as_ref(),
        &deps.session_policy,
        issued,
        vec!["pwd".into(), "otp".into()],
        &meta,
        now,
    )
    .await?;
    deps.auditor.record(EventType::MfaVerifySuccess, Some(user_id), &meta, None).await;
    let device = portcullis_shared::device::issue(&keys.fields, &account, b"", now);
    Ok(portcullis_shared::device::remember(json(StatusCode::OK, &response)?, &device))
}
