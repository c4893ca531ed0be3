//! The gateway's errors, each with the HTTP status Tahoe's web API gives
//! the same failure (400 for a bad argument or capability, 410 when too few
//! shares are found, 416 for a range past the end) and a plain-text body of
//! one sentence. No error changes anything on the grid except where its
//! variant says so.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use grapevine_storage::client::ClientError;
use grapevine_storage::CodecError;

use crate::error::OpError;
use crate::gateway::guard::Refusal;

/// A request the gateway could not carry out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// A malformed request: an unknown `t=`, a bad boolean, a missing field.
    #[error("{0}")]
    BadRequest(String),
    /// The text in the URL is not a capability.
    #[error("{text:?} is not a valid file capability: {why}")]
    BadCap {
        /// What was given (cut to 100 characters).
        text: String,
        /// Why.
        why: String,
    },
    /// No such page or operation.
    #[error("not found: see docs/gateway.md for the gateway's paths")]
    NotFound,
    /// A path that does not take this method (the router's own 405, given
    /// a sentence; its `Allow` header is kept).
    #[error("this path does not take that method: the Allow header says which it takes")]
    MethodNotAllowed,
    /// Refused by the request checks (Host, origin, token).
    #[error("{}", .0.message())]
    Refused(Refusal),
    /// The range starts at or past the end of a file of this size.
    #[error("the range starts at or past the end of the file ({0} bytes)")]
    RangeNotSatisfiable(u64),
    /// The upload is larger than `gateway_max_upload_mib`.
    #[error("the upload is larger than this gateway takes ({0} bytes)")]
    TooLarge(u64),
    /// The body came too slowly (or stopped).
    #[error("the request body came too slowly: {0}")]
    SlowBody(String),
    /// Fewer good shares than needed were found (nothing was written to
    /// the client).
    #[error("NotEnoughSharesError: {0}. Some servers are unavailable or shares were lost; check the file (POST /uri/CAP?t=check) to learn more")]
    Gone(String),
    /// Fewer servers than `happy` took shares; the upload failed (shares
    /// placed are unreferenced).
    #[error("the upload failed: {0}")]
    Unhappy(String),
    /// Every session slot stayed in use.
    #[error("the gateway is busy: {0}")]
    Busy(String),
    /// Anything else (session, storage, local I/O).
    #[error("{0}")]
    Internal(String),
}

impl GatewayError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::BadRequest(_) | GatewayError::BadCap { .. } => StatusCode::BAD_REQUEST,
            GatewayError::NotFound => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::Refused(r) => r.status(),
            GatewayError::RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            GatewayError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::SlowBody(_) => StatusCode::REQUEST_TIMEOUT,
            GatewayError::Gone(_) => StatusCode::GONE,
            GatewayError::Unhappy(_) | GatewayError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A bad capability `text`.
    pub fn bad_cap(text: &str, why: impl ToString) -> Self {
        GatewayError::BadCap {
            text: text.chars().take(100).collect(),
            why: why.to_string(),
        }
    }
}

impl From<OpError> for GatewayError {
    fn from(e: OpError) -> Self {
        match e {
            OpError::Storage(ClientError::Codec(c @ CodecError::NotEnoughShares { .. })) => {
                GatewayError::Gone(c.to_string())
            }
            OpError::Storage(e @ ClientError::NoShares { .. }) => GatewayError::Gone(e.to_string()),
            OpError::Storage(e @ ClientError::NotHappy { .. }) => {
                GatewayError::Unhappy(e.to_string())
            }
            OpError::Storage(e @ ClientError::PoolExhausted(_)) => {
                GatewayError::Busy(e.to_string())
            }
            OpError::Storage(ClientError::Codec(
                e @ (CodecError::BadParams(_) | CodecError::CapMismatch { .. }),
            )) => GatewayError::BadRequest(e.to_string()),
            OpError::Storage(e @ ClientError::TooFewSessions { .. }) => {
                GatewayError::BadRequest(e.to_string())
            }
            e => GatewayError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!("gateway: {self}");
        } else {
            tracing::debug!("gateway: {self}");
        }
        let mut r = (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{self}\n"),
        )
            .into_response();
        match &self {
            GatewayError::RangeNotSatisfiable(size) => {
                if let Ok(v) = format!("bytes */{size}").parse() {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
            }
            GatewayError::Refused(Refusal::NeedToken | Refusal::BadToken) => {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("tahoe-lafs"),
                );
            }
            _ => {}
        }
        r
    }
}
