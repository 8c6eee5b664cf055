//! `AppError`: the one error a client is answered with, on either transport.
//! Each variant knows its HTTP status, its stable `code` (protocol §7) and
//! the WebSocket close code that says the same thing, so a storage failure
//! is "try again" on both (503 / 1013) and never looks like a bad token.
//! Internal details are logged where the error is made, never sent.

use axum::http::StatusCode;

use crate::domain::DomainError;
use crate::protocol::CloseCode;
use crate::store::StoreError;

#[derive(Debug)]
pub enum AppError {
    /// 400 `invalid_input`, naming the offending field when there is one.
    Invalid {
        field: Option<&'static str>,
        message: String,
    },
    /// 401: no session, a bad or expired token, an unknown tenant.
    Unauthorized(&'static str),
    /// 403: the origin, the tenant's policy or the ownership rules say no.
    Forbidden(&'static str),
    NotFound(&'static str),
    /// 405: the path exists, the method does not.
    MethodNotAllowed,
    /// 410: the client's (epoch, seq) is no longer in the log.
    HistoryGone(&'static str),
    /// 413: the body is larger than [`crate::http::MAX_BODY`].
    TooLarge,
    /// 413: an upload larger than `--upload-max-bytes`.
    UploadTooLarge {
        message: String,
    },
    /// 408: the body did not arrive within `--body-timeout`.
    BodyTimeout,
    /// 431: the request line and headers exceed `http::MAX_HEAD_BYTES`.
    HeadTooLarge,
    Conflict(&'static str),
    /// 429 with `Retry-After` in whole seconds.
    RateLimited {
        retry_after: u64,
        /// What was limited ("too many writes; retry later").
        message: &'static str,
    },
    /// 503 with `Retry-After` in whole seconds: this node holds as many
    /// connections as it may (`--max-connections`).
    Overloaded {
        retry_after: u64,
    },
    /// 503: storage or broker failed; the client should retry.
    Unavailable,
    /// 500: a bug. Logged where it happened.
    Internal,
}

impl AppError {
    pub fn invalid(field: Option<&'static str>, message: impl Into<String>) -> Self {
        AppError::Invalid {
            field,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Invalid { .. } => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            AppError::HistoryGone(_) => StatusCode::GONE,
            AppError::TooLarge | AppError::UploadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            AppError::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Overloaded { .. } | AppError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable error code of the contract.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Invalid { .. } => "invalid_input",
            AppError::Unauthorized(_) => "unauthorized",
            AppError::Forbidden(_) => "forbidden",
            AppError::NotFound(_) => "not_found",
            AppError::MethodNotAllowed => "method_not_allowed",
            AppError::HistoryGone(_) => "history_gone",
            AppError::TooLarge | AppError::UploadTooLarge { .. } => "payload_too_large",
            AppError::BodyTimeout => "request_timeout",
            AppError::HeadTooLarge => "headers_too_large",
            AppError::Conflict(_) => "conflict",
            AppError::RateLimited { .. } => "rate_limited",
            AppError::Overloaded { .. } | AppError::Unavailable => "unavailable",
            AppError::Internal => "internal",
        }
    }

    /// The WebSocket close code that ends a connection for this reason.
    pub fn close_code(&self) -> CloseCode {
        match self {
            AppError::Unauthorized(_) => CloseCode::Unauthorized,
            AppError::Forbidden(_) => CloseCode::Forbidden,
            AppError::TooLarge | AppError::UploadTooLarge { .. } => CloseCode::MessageTooBig,
            AppError::RateLimited { .. } | AppError::Overloaded { .. } | AppError::Unavailable => {
                CloseCode::TryAgainLater
            }
            AppError::Internal => CloseCode::InternalError,
            AppError::Invalid { .. }
            | AppError::NotFound(_)
            | AppError::MethodNotAllowed
            | AppError::HistoryGone(_)
            | AppError::BodyTimeout
            | AppError::HeadTooLarge
            | AppError::Conflict(_) => CloseCode::PolicyViolation,
        }
    }

    /// The human-readable message sent with the code.
    pub fn message(&self) -> &str {
        match self {
            AppError::Invalid { message, .. } | AppError::UploadTooLarge { message } => message,
            AppError::Unauthorized(m)
            | AppError::Forbidden(m)
            | AppError::NotFound(m)
            | AppError::HistoryGone(m)
            | AppError::Conflict(m) => m,
            AppError::TooLarge => {
                "the body is too large (64 KiB at most; 4 MiB for an annotation import)"
            }
            AppError::MethodNotAllowed => "this path does not take that method",
            AppError::BodyTimeout => "the body did not arrive in time",
            AppError::HeadTooLarge => "the request line and headers exceed 32 KiB",
            AppError::RateLimited { message, .. } => message,
            AppError::Overloaded { .. } => "this server is at its connection limit; retry later",
            AppError::Unavailable => "storage or broker unavailable; retry later",
            AppError::Internal => "internal error",
        }
    }

    /// Seconds a client should wait before retrying, when the error says.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            AppError::RateLimited { retry_after, .. } | AppError::Overloaded { retry_after } => {
                Some(*retry_after)
            }
            // Storage or broker trouble is usually brief.
            AppError::Unavailable => Some(1),
            _ => None,
        }
    }

    /// 429 for a write over the per-user or per-address write rate.
    pub fn too_many_writes(retry_after: u64) -> AppError {
        AppError::RateLimited {
            retry_after,
            message: "too many writes; retry later",
        }
    }

    /// 429 for a client address out of failed operator-key or
    /// tenant-secret attempts.
    pub fn too_many_failures(retry_after: u64) -> AppError {
        AppError::RateLimited {
            retry_after,
            message: "too many failed sign-in attempts from this address; retry later",
        }
    }

    /// 429 for a WebSocket upgrade from an address that holds as many
    /// open sockets as it may.
    pub fn too_many_sockets() -> AppError {
        AppError::RateLimited {
            retry_after: 5,
            message: "too many open connections from this address; retry later",
        }
    }

    /// 429 for a client address over its session-creation rate.
    pub fn too_many_sessions(retry_after: u64) -> AppError {
        AppError::RateLimited {
            retry_after,
            message: "too many new sessions from this address; retry later",
        }
    }

    pub fn field(&self) -> Option<&'static str> {
        match self {
            AppError::Invalid { field, .. } => *field,
            _ => None,
        }
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

impl From<DomainError> for AppError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid { field, message } => AppError::Invalid {
                field: Some(field),
                message,
            },
            DomainError::NotFound => AppError::NotFound("no such chat or comment"),
            DomainError::Forbidden(m) => AppError::Forbidden(m),
        }
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => AppError::Conflict("it already exists"),
            StoreError::Domain(d) => d.into(),
            StoreError::UploadQuota { size, quota, .. } if size > quota => {
                AppError::UploadTooLarge {
                    message: format!(
                        "this image takes {size} bytes, more than this site's whole daily upload quota of {quota} bytes"
                    ),
                }
            }
            StoreError::UploadQuota { .. } => AppError::RateLimited {
                retry_after: crate::usage::seconds_to_midnight(),
                message:
                    "this site's daily upload quota is used up; uploads resume at midnight UTC",
            },
            StoreError::Unavailable(msg) => {
                tracing::error!(error = %msg, "storage failure");
                AppError::Unavailable
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A storage failure is "retry" on both transports: never a 401/4401,
    /// which the widget takes as "my session is invalid".
    #[test]
    fn storage_failures_say_try_again_on_both_transports() {
        let e = AppError::from(StoreError::Unavailable("database is locked".into()));
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.close_code(), CloseCode::TryAgainLater);
        assert_eq!(u16::from(e.close_code()), 1013);
        let bad = AppError::Unauthorized("x");
        assert_eq!(
            (bad.status().as_u16(), u16::from(bad.close_code())),
            (401, 4401)
        );
    }
}
