//! Files by capability: `GET /uri/$CAP` (and HEAD) streams the file, with
//! `Range`, `filename=` and `save=true`; `GET /named/$CAP/NAME` the same
//! with the name from the path; `t=json`, `t=uri`, `t=readonly-uri` and
//! `t=info` (the file page, with a check) describe it; `GET /uri?uri=$CAP`
//! redirects to `/uri/$CAP`; `POST /uri/$CAP?t=check` checks it. `/cap` is
//! a synonym of `/uri` and `/file` of `/named`, as in Tahoe.
//!
//! A download is a task writing into a bounded channel that the response
//! body reads ([`crate::gateway::stream`]): a whole file through the same
//! `download` as `grapevine get`, a range through `download_range`, which
//! reads only the segments the range touches. The response is sent once the
//! first bytes are decoded, so a file with too few shares is a clean 410,
//! not a 200 cut short. Immutable files have an ETag (`"SI-t"`, Tahoe's)
//! and `If-None-Match` gets a 304.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header::{
    ACCEPT_RANGES, AUTHORIZATION, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_RANGE,
    CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, LOCATION, RANGE,
};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use grapevine_storage::client::CheckResults;
use grapevine_storage::Cap;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::json;

use crate::gateway::args::{self, Args};
use crate::gateway::check;
use crate::gateway::content;
use crate::gateway::context::Ctx;
use crate::gateway::error::GatewayError;
use crate::gateway::guard::DOWNLOAD_CSP;
use crate::gateway::ops::Kind;
use crate::gateway::page;
use crate::gateway::range::{self, Ranged};
use crate::gateway::stream::{self, ChannelBody, ChannelWriter};

/// What a capability says about its file without asking the grid.
struct About {
    size: u64,
    si: String,
    k_of_n: Option<(u16, u16)>,
}

fn about(cap: &Cap) -> About {
    match cap {
        Cap::Chk(c) => About {
            size: c.size,
            si: c.storage_index().to_string(),
            k_of_n: Some((c.k, c.n)),
        },
        Cap::Lit(d) => About {
            size: d.len() as u64,
            si: String::new(),
            k_of_n: None,
        },
    }
}

fn header(h: &HeaderMap, name: axum::http::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn text(body: String) -> Response {
    ([(CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

/// `GET /uri/{cap}`, `HEAD` too.
pub async fn get_uri(
    State(ctx): State<Arc<Ctx>>,
    method: Method,
    Path(cap_text): Path<String>,
    Query(q): Query<Args>,
    headers: HeaderMap,
) -> Result<Response, GatewayError> {
    let cap = args::cap(&cap_text)?;
    let a = about(&cap);
    let t = args::t(&q);
    let etag = (!a.si.is_empty()).then(|| format!("\"{}-{t}\"", a.si));
    if let (Some(tag), Some(inm)) = (&etag, header(&headers, IF_NONE_MATCH)) {
        if matches!(t, "" | "json" | "uri" | "readonly-uri")
            && inm.split(',').any(|v| v.trim() == tag || v.trim() == "*")
        {
            return Ok((StatusCode::NOT_MODIFIED, [(ETAG, tag.clone())]).into_response());
        }
    }
    let mut resp = match t {
        "" => {
            let save = args::boolean(&q, "save", false)?;
            let name = q.get("filename").map(String::as_str);
            download(ctx, method == Method::HEAD, cap, name, save, &headers).await?
        }
        "json" => {
            // Tahoe says "CHK" for every immutable file, literal ones too;
            // there are no verify capabilities yet, so no `verify_uri`.
            let info = json!({
                "ro_uri": cap.to_string(),
                "size": a.size,
                "mutable": false,
                "format": "CHK",
            });
            let mut body = serde_json::to_string_pretty(&json!(["filenode", info]))
                .map_err(|e| GatewayError::Internal(e.to_string()))?;
            body.push('\n');
            text(body)
        }
        "uri" | "readonly-uri" => text(cap.to_string()),
        "info" => {
            let report = run_check(&ctx, &cap, false).await?;
            let j = check::check_json(&cap, &report);
            Html(page::file_page(
                &cap.to_string(),
                a.size,
                &a.si,
                a.k_of_n,
                Some((&j, false)),
            ))
            .into_response()
        }
        other => return Err(args::bad_t("GET file", other)),
    };
    if let Some(tag) = etag.filter(|_| t != "info") {
        if let Ok(v) = tag.parse() {
            resp.headers_mut().insert(ETAG, v);
        }
    }
    Ok(resp)
}

/// `GET /named/{cap}/{*name}` (and `/file/...`): the name is the last
/// path segment.
pub async fn get_named(
    State(ctx): State<Arc<Ctx>>,
    method: Method,
    Path((cap_text, rest)): Path<(String, String)>,
    Query(q): Query<Args>,
    headers: HeaderMap,
) -> Result<Response, GatewayError> {
    let cap = args::cap(&cap_text)?;
    if !args::t(&q).is_empty() {
        return Err(args::bad_t("GET /named", args::t(&q)));
    }
    let save = args::boolean(&q, "save", false)?;
    let name = rest.rsplit('/').next().filter(|n| !n.is_empty());
    download(ctx, method == Method::HEAD, cap, name, save, &headers).await
}

/// `GET /uri?uri=CAP[&...]`: a redirect to `/uri/CAP[?...]`, keeping the
/// other arguments.
pub async fn get_uri_root(
    Query(q): Query<Vec<(String, String)>>,
) -> Result<Response, GatewayError> {
    let Some((_, c)) = q.iter().find(|(k, _)| k == "uri") else {
        return Err(GatewayError::BadRequest("GET /uri requires uri=".into()));
    };
    let cap = args::cap(c.trim())?;
    let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    let mut to = format!("/uri/{}", enc(&cap.to_string()));
    let rest: Vec<String> = q
        .iter()
        .filter(|(k, _)| k != "uri")
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    if !rest.is_empty() {
        to.push('?');
        to.push_str(&rest.join("&"));
    }
    Ok((StatusCode::FOUND, [(LOCATION, to)]).into_response())
}

/// `POST /uri/{cap}`: `t=check`.
pub async fn post_uri(
    State(ctx): State<Arc<Ctx>>,
    Path(cap_text): Path<String>,
    Query(q): Query<Args>,
    headers: HeaderMap,
) -> Result<Response, GatewayError> {
    let cap = args::cap(&cap_text)?;
    match args::t(&q) {
        "check" => {}
        "upload" => {
            return Err(GatewayError::BadRequest(
                "files are immutable: POST /uri?t=upload stores a new one".into(),
            ))
        }
        other => return Err(args::bad_t("POST to file", other)),
    }
    let verify = args::boolean(&q, "verify", false)?;
    let repair = args::boolean(&q, "repair", false)?;
    // Leases do not exist in grapevine: accepted and ignored.
    args::boolean(&q, "add-lease", false)?;
    if repair {
        // Repair will spend grid space.
        ctx.guard
            .check_token(header(&headers, AUTHORIZATION), None)
            .map_err(GatewayError::Refused)?;
    }
    let json_out = match q.get("output").map(|s| s.trim().to_ascii_lowercase()) {
        None => false,
        Some(o) if o == "json" => true,
        Some(o) if o == "html" => false,
        Some(o) => {
            return Err(GatewayError::BadRequest(format!(
                "unknown output={:?}",
                o.chars().take(20).collect::<String>()
            )))
        }
    };
    if json_out && repair {
        let j = match &cap {
            Cap::Chk(c) => {
                let _slots = ctx.grid_slots(c.n).await?;
                let op = ctx.ops.start(Kind::Check, c.storage_index().to_string(), 0);
                let opts = grapevine_storage::client::RepairOptions { verify, rate: None };
                let r = ctx.client.repair(&c.verify_cap(), &opts).await?;
                op.succeeded();
                check::repair_json(&cap, &r)
            }
            Cap::Lit(_) => check::check_and_repair_json(&cap, &CheckResults::literal(0)),
        };
        let mut body = serde_json::to_string_pretty(&j).unwrap_or_default();
        body.push('\n');
        return Ok(text(body));
    }
    let report = run_check(&ctx, &cap, verify).await?;
    if json_out {
        let j = check::check_json(&cap, &report);
        let mut body = serde_json::to_string_pretty(&j).unwrap_or_default();
        body.push('\n');
        return Ok(text(body));
    }
    let a = about(&cap);
    let j = check::check_json(&cap, &report);
    Ok(Html(page::file_page(
        &cap.to_string(),
        a.size,
        &a.si,
        a.k_of_n,
        Some((&j, verify)),
    ))
    .into_response())
}

/// `PUT /uri/{cap}`: files are immutable.
pub async fn put_uri_cap(Path(cap_text): Path<String>) -> Result<Response, GatewayError> {
    args::cap(&cap_text)?;
    Err(GatewayError::BadRequest(
        "files are immutable: PUT /uri stores a new one".into(),
    ))
}

/// `/uri/{cap}/...`: files have no children.
pub async fn child(
    Path((cap_text, rest)): Path<(String, String)>,
) -> Result<Response, GatewayError> {
    args::cap(&cap_text)?;
    Err(GatewayError::BadRequest(format!(
        "files have no children (asked for {:?})",
        rest.chars().take(60).collect::<String>()
    )))
}

async fn run_check(ctx: &Ctx, cap: &Cap, verify: bool) -> Result<CheckResults, GatewayError> {
    let Cap::Chk(c) = cap else {
        return Ok(CheckResults::literal(0));
    };
    let _slots = ctx.grid_slots(c.n).await?;
    let op = ctx.ops.start(Kind::Check, c.storage_index().to_string(), 0);
    let r = ctx.client.check(cap, verify).await?;
    op.succeeded();
    Ok(r)
}

async fn download(
    ctx: Arc<Ctx>,
    head: bool,
    cap: Cap,
    name: Option<&str>,
    save: bool,
    headers: &HeaderMap,
) -> Result<Response, GatewayError> {
    let a = about(&cap);
    let p = content::present(name, save);
    let (status, first, len) = match range::parse(header(headers, RANGE), a.size) {
        Ranged::Whole => (StatusCode::OK, 0, a.size),
        Ranged::Part { first, last } => (StatusCode::PARTIAL_CONTENT, first, last - first + 1),
        Ranged::Unsatisfiable => return Err(GatewayError::RangeNotSatisfiable(a.size)),
    };
    let whole = status == StatusCode::OK;
    let mut b = Response::builder()
        .status(status)
        .header(CONTENT_TYPE, &p.content_type)
        .header(ACCEPT_RANGES, "bytes")
        .header(CONTENT_SECURITY_POLICY, DOWNLOAD_CSP);
    if let Some(d) = &p.disposition {
        b = b.header(CONTENT_DISPOSITION, d);
    }
    if !whole {
        b = b.header(
            CONTENT_RANGE,
            format!("bytes {first}-{}/{}", first + len - 1, a.size),
        );
    }
    let build = |b: axum::http::response::Builder, body: Body| {
        b.body(body)
            .map_err(|e| GatewayError::Internal(e.to_string()))
    };
    if head || len == 0 {
        return build(b.header(CONTENT_LENGTH, len), Body::empty());
    }
    let slots = match &cap {
        Cap::Chk(c) => Some(ctx.grid_slots(c.n).await?),
        Cap::Lit(_) => None,
    };
    let op = ctx.ops.start(Kind::Download, a.si.clone(), len);
    let (tx, mut rx) = stream::channel();
    let task_ctx = ctx.clone();
    let task = tokio::spawn(async move {
        // The slots go back while the client reads nothing, as the
        // storage client's sessions do.
        let park_after = task_ctx.state.pool().config().park_after;
        let mut w = ChannelWriter::new(tx, task_ctx.settings.stall).with_slots(slots, park_after);
        let r = if whole {
            task_ctx
                .client
                .get(&cap, &mut w, &|done| op.progress(done))
                .await
        } else {
            task_ctx.client.get_range(&cap, first, len, &mut w).await
        };
        match &r {
            Ok(rep) => {
                op.progress(rep.bytes);
                op.succeeded();
                task_ctx.ops.files_downloaded.fetch_add(1, Relaxed);
                task_ctx.ops.bytes_downloaded.fetch_add(rep.bytes, Relaxed);
            }
            Err(e) => tracing::info!("gateway download ended: {e}"),
        }
        r
    });
    match rx.recv().await {
        Some(piece) => build(b, Body::new(ChannelBody::new(Some(piece), rx, len))),
        None => match task.await {
            Ok(Ok(_)) => Err(GatewayError::Internal(
                "the download ended without data".into(),
            )),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(GatewayError::Internal(e.to_string())),
        },
    }
}
