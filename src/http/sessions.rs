//! `POST /api/v1/sessions`: anonymous and secure-SSO sessions.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use serde_json::json;

use super::{check_origin, json_object, json_response, AppError, CorsGrant, Fields};
use crate::app::App;
use crate::domain::auth::{anonymous_user, verify_sso, SsoPayload};
use crate::domain::{now_ms, Actor, AnonymousPolicy};

pub async fn create(
    State(app): State<Arc<App>>,
    Extension(grant): Extension<CorsGrant>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    let obj = json_object(&headers, body).await?;
    let f = Fields(&obj);
    let tenant_id = f.str("tenantId")?;
    let tenant = app
        .tenant(tenant_id)
        .await?
        .ok_or(AppError::NotFound("no such tenant"))?;
    check_origin(&tenant, &headers, &grant)?;
    let now = now_ms();
    let (user, moderator) = match obj.get("sso").filter(|v| !v.is_null()) {
        Some(sso) => {
            let sso: SsoPayload = serde_json::from_value(sso.clone())
                .map_err(|_| AppError::Unauthorized("the SSO payload is malformed"))?;
            verify_sso(&tenant.secret, &sso, now)
                .ok_or(AppError::Unauthorized("the SSO payload does not verify"))?
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
    let body = json!({
        "token": app.token_key().sign(&actor),
        "user": actor.user,
        "moderator": actor.moderator,
        "canWrite": actor.can_write(&tenant),
        "expiresAt": actor.expires_at,
    });
    Ok(json_response(StatusCode::OK, body.to_string()))
}
