//! The one session path: a session token and the request's `Origin` become
//! an actor and its tenant, the same way for REST (`Authorization: Bearer`)
//! and WebSocket (`hello`). Judged in the contract's order: token (401),
//! tenant (401, or 503 when storage fails), origin (403), tenant policy
//! (403); then, for mutations, write permission (403) and write rate (429).
//! Errors are [`AppError`]s, which carry both the HTTP status and the
//! WebSocket close code.

use std::sync::Arc;

use crate::app::limits::ClientKey;
use crate::app::App;
use crate::domain::{now_ms, Actor, Tenant};
use crate::error::AppError;

/// Someone with a valid session token, from an origin their tenant allows,
/// whom the tenant lets read.
#[derive(Debug, Clone)]
pub struct Session {
    pub actor: Actor,
    pub tenant: Arc<Tenant>,
}

/// Checks a session token (`None` when the request carried none) and the
/// request's origin. `origin_allowed` runs once the origin has passed, so
/// the REST layer can grant CORS to the answers a browser may read.
///
/// Errors: `Unauthorized` (no, bad or expired token, unknown tenant),
/// `Unavailable` (storage failed: retry, the token may be fine), `Forbidden`
/// (origin, or the tenant does not let this user read).
pub async fn authenticate(
    app: &App,
    token: Option<&str>,
    origin: Option<&str>,
    origin_allowed: impl FnOnce(),
) -> Result<Session, AppError> {
    let token = token.ok_or(AppError::Unauthorized("a session token is required"))?;
    let actor = app
        .token_key()
        .verify(token.trim(), now_ms())
        .ok_or(AppError::Unauthorized(
            "the session token is invalid or expired",
        ))?;
    let tenant = app
        .tenant(&actor.tenant_id)
        .await?
        .ok_or(AppError::Unauthorized("the session's tenant is unknown"))?;
    check_origin(&tenant, origin)?;
    origin_allowed();
    if !actor.can_read(&tenant) {
        return Err(AppError::Forbidden(
            "this tenant does not allow anonymous users",
        ));
    }
    Ok(Session { actor, tenant })
}

/// The tenant's list of allowed browser origins (empty: any).
pub fn check_origin(tenant: &Tenant, origin: Option<&str>) -> Result<(), AppError> {
    if tenant.allows_origin(origin) {
        Ok(())
    } else {
        Err(AppError::Forbidden("this origin may not use this tenant"))
    }
}

impl Session {
    /// Write permission, then the write rate. Every mutation request that
    /// gets this far counts against the rate, accepted or not. The bucket is
    /// shared by all nodes when the broker keeps one; if the broker cannot
    /// answer, this node's own bucket decides.
    /// Anonymous users' writes also count against their client address's
    /// bucket (`client`), so a fresh session per write gains nothing.
    pub async fn may_write(&self, app: &App, client: ClientKey) -> Result<(), AppError> {
        if !self.actor.can_write(&self.tenant) {
            return Err(AppError::Forbidden(
                "this tenant lets anonymous users read only",
            ));
        }
        if self.actor.user.anonymous {
            app.addresses
                .anonymous_writes
                .check(&client)
                .map_err(AppError::too_many_writes)?;
        }
        let (per_minute, burst) = (app.config.write_rate_per_minute, app.config.write_burst);
        if per_minute == 0 {
            return Ok(());
        }
        let key = format!("{}\n{}", self.tenant.id, self.actor.user.id);
        let verdict = match app.broker.take_write(&key, per_minute, burst).await {
            Ok(Some(v)) => v,
            Ok(None) => app.limiter.check(&key),
            Err(e) => {
                app.metrics.broker_errors.increment(1);
                tracing::warn!(error = %e, "shared rate limit unavailable; using this node's");
                app.limiter.check(&key)
            }
        };
        verdict.map_err(AppError::too_many_writes)
    }
}
