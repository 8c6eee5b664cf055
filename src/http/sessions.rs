//! `POST /api/v1/sessions`: anonymous and secure-SSO sessions.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use serde_json::Value;

use super::extract::{origin, Client, Fields, FromJson, Json};
use super::openapi::SessionErrors;
use super::{json, AppError, CorsGrant};
use crate::app::session::check_origin;
use crate::app::App;
use crate::domain::auth::{anonymous_user, verify_sso, SsoPayload};
use crate::domain::{now_ms, Actor, AnonymousPolicy};
use crate::protocol::{SessionAnswer, SessionRequest};
use crate::store::DirectoryUser;

/// The body as read: `sso` is judged only after the tenant and origin.
pub struct SessionBody {
    tenant_id: String,
    sso: Option<Value>,
}

impl FromJson for SessionBody {
    fn from_json(f: &Fields<'_>) -> Result<Self, AppError> {
        Ok(SessionBody {
            tenant_id: f.str("tenantId")?,
            sso: f.get("sso").cloned(),
        })
    }
}

/// A session token: anonymous, or for the user of a signed SSO payload.
#[utoipa::path(post, path = "/api/v1/sessions", tag = "sessions", request_body = SessionRequest,
    responses((status = 200, body = SessionAnswer), SessionErrors))]
pub async fn create(
    State(app): State<Arc<App>>,
    Extension(grant): Extension<CorsGrant>,
    Client(client): Client,
    headers: HeaderMap,
    Json(body): Json<SessionBody>,
) -> Result<Response, AppError> {
    let tenant = app
        .tenant(&body.tenant_id)
        .await?
        .ok_or(AppError::NotFound("no such tenant"))?;
    check_origin(&tenant, origin(&headers))?;
    grant.allow();
    // After the origin check, so a browser can read the 429 and its
    // Retry-After.
    app.addresses
        .sessions
        .check(&client)
        .map_err(AppError::too_many_sessions)?;
    let now = now_ms();
    let (user, moderator) = match body.sso {
        Some(sso) => {
            let sso: SsoPayload = serde_json::from_value(sso)
                .map_err(|_| AppError::Unauthorized("the SSO payload is malformed"))?;
            let u = verify_sso(&tenant.secret, &sso, now)
                .ok_or(AppError::Unauthorized("the SSO payload does not verify"))?;
            // Every SSO user is in the tenant's directory, as last seen.
            let entry = DirectoryUser {
                user: u.user.clone(),
                email: u.email,
                locale: u.locale.to_owned(),
                mail_ok: u.mail_ok,
            };
            app.store.remember_user(&tenant.id, &entry).await?;
            (u.user, u.moderator)
        }
        None if tenant.anonymous == AnonymousPolicy::None => {
            return Err(AppError::Unauthorized("this tenant requires SSO"));
        }
        None => (anonymous_user(), false),
    };
    let actor = Actor {
        tenant_id: tenant.id.clone(),
        user,
        moderator,
        expires_at: now + app.config.session_hours as i64 * 3_600_000,
    };
    Ok(json(
        StatusCode::OK,
        &SessionAnswer {
            token: app.token_key().sign(&actor),
            user: &actor.user,
            moderator: actor.moderator,
            can_write: actor.can_write(&tenant),
            expires_at: actor.expires_at,
            upload_max_bytes: app.config.upload_max_bytes,
        },
    ))
}
