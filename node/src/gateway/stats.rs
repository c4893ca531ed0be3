//! The node's pages and figures: the welcome page `/` (and Tahoe's
//! `/?t=json`), `/statistics` (`t=json` in Tahoe's `{"stats", "counters"}`
//! shape, `t=openmetrics` in the OpenMetrics text format), `/status`
//! (`t=json`: Tahoe's `{"active", "recent"}` operations), grapevine's own
//! `/members` (`t=json`: the grid as this node sees it), and the two static
//! files the pages load. An unknown `t=` is a 400, as in Tahoe.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{json, Value};

use crate::gateway::args::{bad_t, t, Args};
use crate::gateway::context::Ctx;
use crate::gateway::error::GatewayError;
use crate::gateway::{grid, page};

fn json_response(content_type: &'static str, v: &Value) -> Response {
    let mut body = serde_json::to_string_pretty(v).unwrap_or_default();
    body.push('\n');
    (
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-store")],
        body,
    )
        .into_response()
}

fn internal(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::Internal(e.to_string())
}

/// `GET /`.
pub async fn welcome(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<Args>,
) -> Result<Response, GatewayError> {
    let view = grid::view(&ctx.state).await.map_err(internal)?;
    match t(&q) {
        "" => {
            let status = ctx.state.status().await.map_err(internal)?;
            Ok(Html(page::welcome(&view, &status, ctx.guard.token_needed())).into_response())
        }
        "json" => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            let servers: Vec<Value> = view
                .members
                .iter()
                .filter(|m| m.storage)
                .map(|m| {
                    json!({
                        "nodeid": m.id,
                        "available_space": u64::from(m.free_mib) << 20,
                        "nickname": m.nickname,
                        "version": m.version,
                        "connection_status": m.state,
                        "last_received_data": (now - m.last_heard_s).floor(),
                    })
                })
                .collect();
            Ok(json_response(
                "application/json",
                &json!({"introducers": {"statuses": []}, "servers": servers}),
            ))
        }
        other => Err(bad_t("/", other)),
    }
}

/// `GET /members`.
pub async fn members(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<Args>,
) -> Result<Response, GatewayError> {
    let view = grid::view(&ctx.state).await.map_err(internal)?;
    match t(&q) {
        "json" => Ok(json_response(
            "application/json",
            &serde_json::to_value(&view).map_err(internal)?,
        )),
        "" => Ok(Html(page::json_page(
            "Members",
            &serde_json::to_value(&view).map_err(internal)?,
        ))
        .into_response()),
        other => Err(bad_t("/members", other)),
    }
}

/// The node's figures in Tahoe's statistics shape.
async fn statistics_json(ctx: &Ctx) -> Result<Value, GatewayError> {
    let s = ctx.state.status().await.map_err(internal)?;
    let o = &ctx.ops;
    let ld = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    Ok(json!({
        "stats": {
            "node.uptime": s.uptime_s,
            "storage_server.disk_avail": s.storage_free,
            "storage_server.disk_used": s.storage_used,
            "storage_server.accepting_immutable_shares": u8::from(s.storage_free > 0),
            "grapevine.records": s.records,
            "grapevine.members.alive": s.alive,
            "grapevine.members.suspect": s.suspect,
            "grapevine.members.dead": s.dead,
            "grapevine.members.left": s.left,
            "grapevine.sessions_open": s.sessions_open,
            "grapevine.rss_bytes": s.rss_bytes,
            "grapevine.storage_requests": s.storage_requests,
            "grapevine.storage_request_mean_ms": s.storage_request_mean_ms,
            "grapevine.gateway.operations_active": o.active_count(),
        },
        "counters": {
            "uploader.files_uploaded": ld(&o.files_uploaded),
            "uploader.bytes_uploaded": ld(&o.bytes_uploaded),
            "downloader.files_downloaded": ld(&o.files_downloaded),
            "downloader.bytes_downloaded": ld(&o.bytes_downloaded),
            "grapevine.datagrams_sent": s.datagrams_sent,
            "grapevine.bytes_sent": s.bytes_sent,
            "grapevine.datagrams_received": s.datagrams_received,
        },
    }))
}

/// `GET /statistics`.
pub async fn statistics(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<Args>,
) -> Result<Response, GatewayError> {
    match t(&q) {
        "json" => Ok(json_response(
            "text/plain; charset=utf-8",
            &statistics_json(&ctx).await?,
        )),
        "openmetrics" => {
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, &ctx.registry).map_err(internal)?;
            Ok((
                [(
                    CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                out,
            )
                .into_response())
        }
        "" => {
            Ok(Html(page::json_page("Statistics", &statistics_json(&ctx).await?)).into_response())
        }
        other => Err(bad_t("/statistics", other)),
    }
}

/// `GET /status`.
pub async fn status(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<Args>,
) -> Result<Response, GatewayError> {
    match t(&q) {
        "json" => Ok(json_response("application/json", &ctx.ops.status_json())),
        "" => Ok(Html(page::json_page("Operations", &ctx.ops.status_json())).into_response()),
        other => Err(bad_t("/status", other)),
    }
}

/// `GET /static/gateway.css`.
pub async fn css() -> Response {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("assets/gateway.css"),
    )
        .into_response()
}

/// `GET /static/gateway.js`.
pub async fn js() -> Response {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("assets/gateway.js"),
    )
        .into_response()
}
