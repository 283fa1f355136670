//! The one error type handlers return, and how it maps to a status and a JSON body.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::api::ErrorBody;

/// A handler error. A 5xx never shows internals to the client; it is logged instead.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("parameter `{param}`: {message}")]
    BadParam { param: String, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("busy: every query slot stayed taken; retry shortly")]
    Busy,
}

impl ApiError {
    pub fn bad(param: &str, message: impl Into<String>) -> Self {
        ApiError::BadParam {
            param: param.to_string(),
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            ApiError::BadParam { param, .. } => (
                StatusCode::BAD_REQUEST,
                ErrorBody {
                    error: self.to_string(),
                    parameter: Some(param.clone()),
                },
            ),
            ApiError::NotFound(_) => (
                StatusCode::NOT_FOUND,
                ErrorBody {
                    error: self.to_string(),
                    parameter: None,
                },
            ),
            ApiError::Busy => {
                let body = Json(ErrorBody {
                    error: self.to_string(),
                    parameter: None,
                });
                let retry = [(axum::http::header::RETRY_AFTER, "1")];
                return (StatusCode::TOO_MANY_REQUESTS, retry, body).into_response();
            }
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorBody {
                        error: "internal error".to_string(),
                        parameter: None,
                    },
                )
            }
        };
        (status, Json(body)).into_response()
    }
}
