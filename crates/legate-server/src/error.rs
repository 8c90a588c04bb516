//! `ApiError`: the one way errors leave the HTTP API (RFC 6749 §5.2, RFC 8693 §2.2.2).

use std::borrow::Cow;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use legate_core::exchange::{ErrorResponse, OAuthErrorCode};

/// The description every rejected subject token gets, whatever the reason.
///
/// SECURITY: an invalid token, an untrusted issuer, a replay and a policy denial all look
/// the same on the wire, so a caller cannot probe which check failed (or which policies
/// exist); the precise reason is in the audit event with the same `request_id`.
pub const GENERIC_REJECTION: &str =
    "the subject token was rejected; quote the request_id to your Legate operator";

/// An error response. Its description is written for clients and never carries
/// internals; the audit log holds the rest.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The OAuth error code.
    pub code: OAuthErrorCode,
    /// Client-safe text.
    pub description: Cow<'static, str>,
    /// The request id.
    pub request_id: String,
    /// `Retry-After` in whole seconds, for a 429 (a 503 always says 1).
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    /// An error for request `request_id`.
    pub fn new(
        code: OAuthErrorCode,
        description: impl Into<Cow<'static, str>>,
        request_id: &str,
    ) -> Self {
        Self {
            code,
            description: description.into(),
            request_id: request_id.to_owned(),
            retry_after_secs: None,
        }
    }

    /// A rate-limit refusal (429) telling the client to retry after `secs` (at least 1).
    pub fn rate_limited(
        description: impl Into<Cow<'static, str>>,
        retry_after_secs: u64,
        request_id: &str,
    ) -> Self {
        let mut e = Self::new(OAuthErrorCode::RateLimited, description, request_id);
        e.retry_after_secs = Some(retry_after_secs.max(1));
        e
    }

    /// The generic rejection of a subject token.
    pub fn rejected(request_id: &str) -> Self {
        Self::new(
            OAuthErrorCode::InvalidRequest,
            GENERIC_REJECTION,
            request_id,
        )
    }

    fn status(&self) -> StatusCode {
        match self.code {
            OAuthErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            OAuthErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            OAuthErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            OAuthErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = self.retry_after_secs;
        let body = ErrorResponse {
            error: self.code,
            error_description: self.description.into_owned(),
            request_id: self.request_id,
        };
        let mut response = (status, Json(body)).into_response();
        no_store(&mut response);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // RFC 9110 §10.2.3: a hint for clients that retry (`legate exchange` does).
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            // RFC 6585 §4: whole seconds, rounded up by the caller.
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.unwrap_or(1)),
            );
        }
        response
    }
}

/// RFC 6749 §5.1: token responses must not be cached.
pub fn no_store(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}
