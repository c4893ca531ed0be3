//! The middleware every gateway request passes: the Host and cross-site
//! checks of [`crate::gateway::guard`] before any handler runs, and the
//! safety headers on every response, refusals and errors included (a
//! download's own Content-Security-Policy is kept, everything else gets the
//! pages' strict one). The API token is checked by the handlers that spend
//! grid space, which know when they do.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{CONTENT_SECURITY_POLICY, HOST, ORIGIN};
use axum::http::HeaderName;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::gateway::context::Ctx;
use crate::gateway::error::GatewayError;
use crate::gateway::guard::{header, Refusal, EVERY_RESPONSE, PAGE_CSP};

/// Check `req` and stamp its response.
pub async fn guard(State(ctx): State<Arc<Ctx>>, req: Request, next: Next) -> Response {
    let mut resp = match check(&ctx, &req) {
        Ok(()) => next.run(req).await,
        Err(r) => GatewayError::Refused(r).into_response(),
    };
    if resp.status() == axum::http::StatusCode::METHOD_NOT_ALLOWED
        && !resp
            .headers()
            .contains_key(axum::http::header::CONTENT_TYPE)
    {
        // The router's own 405 has no body: one like every other error.
        let allow = resp.headers().get(axum::http::header::ALLOW).cloned();
        resp = GatewayError::MethodNotAllowed.into_response();
        if let Some(a) = allow {
            resp.headers_mut().insert(axum::http::header::ALLOW, a);
        }
    }
    let h = resp.headers_mut();
    for (name, value) in EVERY_RESPONSE {
        h.insert(
            HeaderName::from_static(name),
            axum::http::HeaderValue::from_static(value),
        );
    }
    if !h.contains_key(CONTENT_SECURITY_POLICY) {
        if let Some(v) = header(PAGE_CSP) {
            h.insert(CONTENT_SECURITY_POLICY, v);
        }
    }
    // No CORS, ever (nothing sets these; make sure nothing slips through).
    let cors: Vec<HeaderName> = h
        .keys()
        .filter(|k| k.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for k in cors {
        h.remove(k);
    }
    resp
}

fn check(ctx: &Ctx, req: &Request) -> Result<(), Refusal> {
    let text = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    let host = text(HOST);
    ctx.guard.check_host(host)?;
    // A request line in absolute form names its host there too.
    if let Some(a) = req.uri().authority() {
        ctx.guard.check_host(Some(a.as_str()))?;
    }
    ctx.guard.check_origin(
        req.method(),
        host.unwrap_or_default(),
        text(ORIGIN),
        text(HeaderName::from_static("sec-fetch-site")),
    )
}
