//! The OpenAPI 3.1 document of the REST API, `GET /api/v1/openapi.json`.
//! Routes and their entries are declared together (`utoipa_axum::routes!`
//! in [`super::router`]), so the document cannot drift from the router;
//! the shapes come from the types in [`crate::protocol`].

use std::collections::BTreeMap;

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{ContentBuilder, ObjectBuilder, Ref, RefOr, Response, Type};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

use crate::protocol::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "imagechat",
        description = "Live discussion on images: markers with threads, synced over WebSocket \
                       (`GET /api/v1/ws`, see docs/protocol.md). Errors share one shape.",
        license(name = "MIT OR Apache-2.0")
    ),
    modifiers(&Security),
    tags(
        (name = "sessions", description = "Session tokens, anonymous or SSO"),
        (name = "chats", description = "Snapshots, the six mutations and the event log"),
        (name = "annotations", description = "Chats as W3C Web Annotations or IIIF, and importing them"),
        (name = "operator", description = "Calls with the server's operator key"),
        (name = "tenant", description = "A tenant's own API and dashboard"),
        (name = "notifications", description = "The directory, mentions, follows and notifications"),
        (name = "node", description = "Health, readiness, metrics, pages and the WebSocket")
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "session",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        c.add_security_scheme(
            "operator",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        c.add_security_scheme(
            "tenant",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
        c.add_security_scheme(
            "dashboard",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("imagechat_tenant"))),
        );
    }
}

fn error_response(status: u16) -> RefOr<Response> {
    let description = match status {
        400 => "invalid_input: a field or parameter is refused (`field` names it)",
        401 => "unauthorized: no, a bad or an expired credential",
        403 => "forbidden: origin, tenant policy or ownership",
        404 => "not_found",
        408 => "request_timeout: the body did not arrive in time",
        409 => "conflict: it already exists",
        410 => "history_gone: reload the snapshot",
        413 => "payload_too_large: the body is over 64 KiB",
        429 => "rate_limited: retry after `Retry-After` seconds",
        500 => "internal",
        _ => "unavailable: storage or broker down, or the connection limit reached; retry",
    };
    let mut r = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(ErrorBody::name())))
            .build(),
    );
    if status == 429 || status == 503 {
        r = r.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::Integer))
                .description(Some("Seconds to wait"))
                .build(),
        );
    }
    RefOr::T(r.build())
}

fn errors(codes: &[u16]) -> BTreeMap<String, RefOr<Response>> {
    codes
        .iter()
        .map(|&c| (c.to_string(), error_response(c)))
        .collect()
}

macro_rules! error_set {
    ($(#[$doc:meta])* $name:ident = [$($code:literal),*]) => {
        $(#[$doc])*
        pub struct $name;
        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                errors(&[$($code),*])
            }
        }
    };
}

error_set!(
    /// What any call may answer: a bad request line or parameters, an
    /// overloaded or failing node.
    Common = [400, 500, 503]
);
error_set!(
    /// A call with a session token that reads.
    ReadErrors = [400, 401, 403, 404, 500, 503]
);
error_set!(
    /// A call with a session token that writes.
    WriteErrors = [400, 401, 403, 404, 408, 413, 429, 500, 503]
);
error_set!(
    /// `GET /api/v1/events`: as a read, and `410 history_gone`.
    EventsErrors = [400, 401, 403, 404, 410, 500, 503]
);
error_set!(
    /// A tenant call (HTTP Basic or the dashboard cookie); 429 when the
    /// client address is out of failed attempts.
    TenantErrors = [400, 401, 404, 408, 413, 429, 500, 503]
);
error_set!(
    /// `GET /api/v1/tenant/events`: as the tenant calls (401, and 429 when
    /// the client address is out of failed attempts), and as
    /// `GET /api/v1/events` (`410 history_gone`).
    TenantEventsErrors = [400, 401, 404, 408, 410, 413, 429, 500, 503]
);
error_set!(
    /// A tenant call that creates something: as [`TenantErrors`], and 409
    /// when the tenant has as many as it may.
    TenantWriteErrors = [400, 401, 404, 408, 409, 413, 429, 500, 503]
);
error_set!(
    /// The operator call: 404 when the server has no operator key, 429
    /// when the client address is out of failed attempts.
    OperatorErrors = [400, 401, 404, 408, 409, 413, 429, 500, 503]
);
error_set!(
    /// `POST /api/v1/sessions`: 429 over the client address's session rate.
    SessionErrors = [400, 401, 403, 404, 408, 413, 429, 500, 503]
);
