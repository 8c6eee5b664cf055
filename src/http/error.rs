//! How an [`AppError`] becomes an HTTP answer: its status, the contract's
//! `{"error": {"code", "message", "field"?}}` body and, for 429 and 503
//! with a wait, `Retry-After`. Internals were logged where the error was
//! made; nothing here reveals them.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

pub use crate::error::AppError;
use crate::protocol::{ErrorBody, ErrorDetail};

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.message(),
                field: self.field(),
            },
        };
        let mut res = (self.status(), axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after() {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        res
    }
}
