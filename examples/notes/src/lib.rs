//! An example of a team's own API behind the Portcullis authorizer: notes owned
//! by users, as a Lambda function. The authorizer decides every request against
//! the deployment's policy (`examples/notes/policy.json`): who may read whose
//! notes, that an API key may only read, that deleting needs a recent sign-in.
//! This function learns who called from the authorizer's context
//! ([`Caller::from_request`]) and never from the request itself: the owner of a
//! note it writes is the caller's `sub`, and a write for another user is refused
//! here too, whatever the policy says (defence in depth).
//!
//! | route | policy |
//! | --- | --- |
//! | `GET /notes/{user_id}` | `notes:read`, owner unless `notes:read:any`, API keys |
//! | `GET /notes/{user_id}/{note_id}` | the same |
//! | `PUT /notes/{user_id}/{note_id}` | `notes:write`, owner |
//! | `DELETE /notes/{user_id}/{note_id}` | `notes:write`, owner, signed in within 5 minutes |
//! | `GET /notes/{user_id}/{note_id}/raw` | none: the authorizer refuses it (deny by default) |

pub mod local;
pub mod store;

use http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use portcullis_shared::error::Violation;
use portcullis_shared::http::{finish, json, no_content, parse_json, Caller, HandlerResult};
use portcullis_shared::ApiError;
use serde::Deserialize;
pub use store::{Note, Notes};

/// The largest note, in bytes of UTF-8.
pub const MAX_TEXT_BYTES: usize = 8 * 1024;
/// The body limit: a note's text escaped as JSON at most doubles, plus the envelope.
const MAX_BODY_BYTES: usize = 2 * MAX_TEXT_BYTES + 256;

/// What a handler needs: the table and the clock (seconds since the epoch).
pub struct Deps {
    pub notes: Notes,
    pub now: fn() -> i64,
}

/// The body of `PUT /notes/{user_id}/{note_id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Write {
    text: String,
}

/// Answers one request; always a response (problem+json on failure), never a panic.
pub async fn handle(deps: &Deps, req: Request) -> Response<Body> {
    finish(route(deps, &req).await)
}

async fn route(deps: &Deps, req: &Request) -> HandlerResult {
    let caller = Caller::from_request(req)?;
    // The path as the authorizer judged it (API Gateway's, not the URI lambda_http
    // rebuilds from client headers), each segment decoded once; a path with no
    // such form reached no rule, and reaches nothing here either.
    let served = portcullis_shared::http::served_path(req);
    let path = portcullis_shared::template::canonical(served).ok_or(ApiError::NotFound)?;
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match (segments.as_slice(), req.method()) {
        (["notes", user], &Method::GET) => json(StatusCode::OK, &list(deps, user).await?),
        (["notes", user, note], &Method::GET) => {
            let note = deps.notes.get(user, valid_note_id(note)?).await?.ok_or(ApiError::NotFound)?;
            json(StatusCode::OK, &note)
        }
        (["notes", user, note], &Method::PUT) => {
            write_access(&caller, user)?;
            let body: Write = parse_json(req, MAX_BODY_BYTES)?;
            let note = Note {
                user_id: (*user).to_owned(),
                note_id: valid_note_id(note)?.to_owned(),
                text: valid_text(body.text)?,
                updated_at: (deps.now)(),
            };
            deps.notes.put(&note).await?;
            json(StatusCode::OK, &note)
        }
        (["notes", user, note], &Method::DELETE) => {
            write_access(&caller, user)?;
            if deps.notes.delete(user, valid_note_id(note)?).await? {
                no_content()
            } else {
                Err(ApiError::NotFound)
            }
        }
        (["notes", _], _) => Err(ApiError::MethodNotAllowed { allow: "GET".into() }),
        (["notes", _, _], _) => Err(ApiError::MethodNotAllowed { allow: "GET, PUT, DELETE".into() }),
        (["notes", user, note, "raw"], &Method::GET) => {
            let note = deps.notes.get(user, valid_note_id(note)?).await?.ok_or(ApiError::NotFound)?;
            let mut resp = Response::new(Body::Text(note.text));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8".parse().map_err(ApiError::internal)?,
            );
            Ok(resp)
        }
        _ => Err(ApiError::NotFound),
    }
}

async fn list(deps: &Deps, user: &str) -> Result<serde_json::Value, ApiError> {
    Ok(serde_json::json!({ "notes": deps.notes.list(user).await? }))
}

/// Only the owner writes its notes, and only as a person: an API key writes
/// nothing, whatever a policy grants it.
fn write_access(caller: &Caller, user: &str) -> Result<(), ApiError> {
    if caller.sub == user && caller.api_key_id.is_none() {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

fn invalid(field: &'static str, rule: &'static str, message: &str) -> ApiError {
    ApiError::Validation(vec![Violation { rule, field, message: message.to_owned() }])
}

/// 1 to 64 of `A-Z a-z 0-9 _ -`.
fn valid_note_id(id: &str) -> Result<&str, ApiError> {
    let ok = (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    ok.then_some(id).ok_or_else(|| invalid("note_id", "format", "1 to 64 letters, digits, '_' or '-'"))
}

fn valid_text(text: String) -> Result<String, ApiError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(invalid("text", "too_long", "at most 8192 bytes of UTF-8"));
    }
    if text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r')) {
        return Err(invalid("text", "control_character", "no control characters but tab and line breaks"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_ids_are_plain_and_texts_bounded() {
        assert!(valid_note_id("groceries_2026-12").is_ok());
        for bad in ["", "a b", "a.b", "ü", &"x".repeat(65)] {
            assert!(valid_note_id(bad).is_err(), "{bad:?}");
        }
        assert!(valid_text("😀".repeat(MAX_TEXT_BYTES / 4)).is_ok());
        assert!(valid_text(format!("{}a", "😀".repeat(MAX_TEXT_BYTES / 4))).is_err());
        assert!(valid_text("a\u{0}b".into()).is_err());
        assert!(valid_text("line\nline\ttab".into()).is_ok());
    }

    fn caller(sub: &str, api_key: Option<&str>) -> Caller {
        Caller {
            sub: sub.into(),
            sid: None,
            roles: vec!["user".into()],
            api_key_id: api_key.map(str::to_owned),
            auth_time: None,
            amr: vec![],
            permission: None,
        }
    }

    #[test]
    fn only_the_owner_writes_and_never_with_an_api_key() {
        assert!(write_access(&caller("ada", None), "ada").is_ok());
        assert!(write_access(&caller("ada", None), "bob").is_err());
        assert!(write_access(&caller("apikey:k1", Some("k1")), "apikey:k1").is_err());
    }
}
