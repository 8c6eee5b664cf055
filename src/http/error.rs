//! `AppError`: the one error type of the HTTP layer. Each variant maps to a
//! status and a stable code; internal details are logged here, once, and
//! never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::domain::DomainError;
use crate::protocol::{ErrorBody, ErrorDetail};
use crate::store::StoreError;

#[derive(Debug)]
pub enum AppError {
    Invalid {
        field: Option<&'static str>,
        message: String,
    },
    Unauthorized(&'static str),
    Forbidden(&'static str),
    NotFound(&'static str),
    HistoryGone(&'static str),
    TooLarge,
    Conflict(&'static str),
    RateLimited {
        retry_after: u64,
    },
    Unavailable,
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
            AppError::HistoryGone(_) => StatusCode::GONE,
            AppError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            AppError::Invalid { .. } => "invalid_input",
            AppError::Unauthorized(_) => "unauthorized",
            AppError::Forbidden(_) => "forbidden",
            AppError::NotFound(_) => "not_found",
            AppError::HistoryGone(_) => "history_gone",
            AppError::TooLarge => "payload_too_large",
            AppError::Conflict(_) => "conflict",
            AppError::RateLimited { .. } => "rate_limited",
            AppError::Unavailable => "unavailable",
            AppError::Internal => "internal",
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let message: &str = match &self {
            AppError::Invalid { message, .. } => message,
            AppError::Unauthorized(m)
            | AppError::Forbidden(m)
            | AppError::NotFound(m)
            | AppError::HistoryGone(m)
            | AppError::Conflict(m) => m,
            AppError::TooLarge => "the body is larger than 64 KiB",
            AppError::RateLimited { .. } => "too many writes; retry later",
            AppError::Unavailable => "storage or broker unavailable; retry later",
            AppError::Internal => "internal error",
        };
        let field = match &self {
            AppError::Invalid { field, .. } => *field,
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message,
                field,
            },
        };
        let mut res = (self.status(), axum::Json(body)).into_response();
        if let AppError::RateLimited { retry_after } = self {
            if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        res
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
            StoreError::Unavailable(msg) => {
                tracing::error!(error = %msg, "storage failure");
                AppError::Unavailable
            }
        }
    }
}
