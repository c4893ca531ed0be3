//! Uploads: `PUT /uri` (the body is the file; the answer is its capability
//! as text) and `POST /uri?t=upload` (an HTML form's `file` field; the
//! answer is a page with the capability and links, or with `when_done=` a
//! redirect, `%(uri)s` in it replaced by the capability). Both need the API
//! token when the gateway listens beyond localhost; the form may carry it
//! as a `token` field before the file.
//!
//! The body is spooled to a temporary file in the node directory's `tmp/`
//! (removed when the upload ends, whatever happens; leftovers of a crash are
//! removed at start) and then stored exactly as `grapevine put` stores a
//! file, with the node's convergence secret, so memory stays flat whatever
//! the file's size. Bodies are watched ([`crate::gateway::body`]): larger
//! than `gateway_max_upload_mib` is a 413 (at once when Content-Length says
//! so), too slow a 408. `k`, `n` and `happy` (query or form) choose the
//! encoding, grapevine's addition; the default is 3-of-10, happy 7.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use futures_util::StreamExt;
use grapevine_storage::{Cap, Params};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use tempfile::NamedTempFile;
use tokio::io::AsyncWriteExt;

use crate::client::PutOptions;
use crate::gateway::args::{self, Args};
use crate::gateway::body::{Meter, Metered, HEADROOM};
use crate::gateway::context::Ctx;
use crate::gateway::error::GatewayError;
use crate::gateway::ops::Kind;
use crate::gateway::page;

/// Longest form value other than the file, bytes.
pub const MAX_FIELD: usize = 4096;

fn io(e: std::io::Error) -> GatewayError {
    GatewayError::Internal(format!("spooling the upload: {e}"))
}

/// A body being written to a temporary file.
struct Spool {
    tmp: NamedTempFile,
    file: tokio::fs::File,
    size: u64,
}

impl Spool {
    fn new(ctx: &Ctx) -> Result<Self, GatewayError> {
        std::fs::create_dir_all(&ctx.spool).map_err(io)?;
        let tmp = tempfile::Builder::new()
            .prefix("upload-")
            .tempfile_in(&ctx.spool)
            .map_err(io)?;
        let file = tokio::fs::File::from_std(tmp.reopen().map_err(io)?);
        Ok(Spool { tmp, file, size: 0 })
    }

    async fn write(&mut self, b: &[u8]) -> Result<(), GatewayError> {
        self.file.write_all(b).await.map_err(io)?;
        self.size += b.len() as u64;
        Ok(())
    }

    async fn done(mut self) -> Result<(NamedTempFile, u64), GatewayError> {
        self.file.flush().await.map_err(io)?;
        Ok((self.tmp, self.size))
    }
}

/// A Content-Length past the limit (with `allowance` for a form's other
/// parts) is refused before the body is read.
fn check_length(ctx: &Ctx, headers: &HeaderMap, allowance: u64) -> Result<(), GatewayError> {
    let len = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match len {
        Some(l) if l > ctx.settings.max_upload.saturating_add(allowance) => {
            Err(GatewayError::TooLarge(ctx.settings.max_upload))
        }
        _ => Ok(()),
    }
}

/// The body's failure: the meter's verdict if it cut the body off.
fn body_err(meter: &Meter, e: impl std::fmt::Display) -> GatewayError {
    meter
        .verdict()
        .unwrap_or_else(|| GatewayError::BadRequest(format!("reading the upload: {e}")))
}

/// Store the spooled file with `params`; its capability.
async fn store(
    ctx: &Ctx,
    tmp: &NamedTempFile,
    size: u64,
    params: Params,
) -> Result<Cap, GatewayError> {
    let _slots = ctx.grid_slots(params.n).await?;
    let op = ctx.ops.start(Kind::Upload, String::new(), size);
    let opts = PutOptions {
        params,
        random_key: false,
    };
    let up = ctx
        .client
        .put_path(tmp.path(), opts, &|done| op.progress(done))
        .await?;
    if let Cap::Chk(c) = &up.cap {
        op.set_storage_index(c.storage_index().to_string());
    }
    op.progress(size);
    op.succeeded();
    ctx.ops.files_uploaded.fetch_add(1, Relaxed);
    ctx.ops.bytes_uploaded.fetch_add(size, Relaxed);
    Ok(up.cap)
}

fn auth(headers: &HeaderMap) -> Option<&str> {
    headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok())
}

/// `PUT /uri`.
pub async fn put_uri(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<Args>,
    req: Request,
) -> Result<Response, GatewayError> {
    match args::t(&q) {
        "" => {}
        "mkdir" => return Err(no_directories()),
        other => return Err(args::bad_t("PUT /uri", other)),
    }
    ctx.guard
        .check_token(auth(req.headers()), None)
        .map_err(GatewayError::Refused)?;
    let params = args::params(&q, ctx.settings.params)?;
    check_length(&ctx, req.headers(), 0)?;
    let (mut body, meter) = Metered::new(req.into_body().into_data_stream(), &ctx.settings, None);
    let mut spool = Spool::new(&ctx)?;
    while let Some(piece) = body.next().await {
        let piece = piece.map_err(|e| body_err(&meter, e))?;
        spool.write(&piece).await?;
    }
    let (tmp, size) = spool.done().await?;
    let cap = store(&ctx, &tmp, size, params).await?;
    Ok((
        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
        cap.to_string(),
    )
        .into_response())
}

fn no_directories() -> GatewayError {
    GatewayError::BadRequest(
        "grapevine has no directories (yet): PUT /uri or POST /uri?t=upload store a file".into(),
    )
}

/// `POST /uri` (`t=upload`, or no `t`).
pub async fn post_uri(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<Args>,
    req: Request,
) -> Result<Response, GatewayError> {
    match args::t(&q) {
        "" | "upload" => {}
        "mkdir" | "mkdir-with-children" | "mkdir-immutable" => return Err(no_directories()),
        other => return Err(args::bad_t("POST /uri", other)),
    }
    check_length(&ctx, req.headers(), HEADROOM)?;
    let headers = req.headers().clone();
    let boundary = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| multer::parse_boundary(ct).ok())
        .ok_or_else(|| {
            GatewayError::BadRequest(
                "POST /uri?t=upload takes a multipart/form-data body with a `file` field".into(),
            )
        })?;
    let (body, meter) = Metered::new(
        req.into_body().into_data_stream(),
        &ctx.settings,
        Some(HEADROOM),
    );
    let mut form = multer::Multipart::new(body, boundary);
    let mut fields: Args = q;
    let mut file: Option<(NamedTempFile, u64, Option<String>)> = None;
    while let Some(mut field) = form.next_field().await.map_err(|e| body_err(&meter, e))? {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            if file.is_some() {
                return Err(GatewayError::BadRequest("one file per upload".into()));
            }
            ctx.guard
                .check_token(auth(&headers), fields.get("token").map(String::as_str))
                .map_err(GatewayError::Refused)?;
            let filename = field.file_name().map(str::to_string);
            let mut spool = Spool::new(&ctx)?;
            while let Some(piece) = field.chunk().await.map_err(|e| body_err(&meter, e))? {
                meter.consumed(piece.len() as u64);
                spool.write(&piece).await?;
            }
            let (tmp, size) = spool.done().await?;
            file = Some((tmp, size, filename));
        } else {
            let mut value = Vec::new();
            while let Some(piece) = field.chunk().await.map_err(|e| body_err(&meter, e))? {
                meter.consumed(piece.len() as u64);
                if value.len() + piece.len() > MAX_FIELD {
                    return Err(GatewayError::BadRequest(format!(
                        "form field {:?} is longer than {MAX_FIELD} bytes",
                        name.chars().take(40).collect::<String>()
                    )));
                }
                value.extend_from_slice(&piece);
            }
            fields
                .entry(name)
                .or_insert_with(|| String::from_utf8_lossy(&value).into_owned());
        }
    }
    let Some((tmp, size, filename)) = file else {
        return Err(GatewayError::BadRequest(
            "the form has no `file` field".into(),
        ));
    };
    let params = args::params(&fields, ctx.settings.params)?;
    let cap = store(&ctx, &tmp, size, params).await?;
    drop(tmp);
    if let Some(to) = fields.get("when_done").filter(|w| !w.is_empty()) {
        if !to.starts_with('/')
            || to.starts_with("//")
            || to.contains('\\')
            || to.chars().any(char::is_control)
        {
            return Err(GatewayError::BadRequest(
                "when_done must be a path on this gateway (starting with one /)".into(),
            ));
        }
        let c = utf8_percent_encode(&cap.to_string(), NON_ALPHANUMERIC).to_string();
        let to = to.replace("%(uri)s", &c);
        return Ok((StatusCode::SEE_OTHER, [(LOCATION, to)], Body::empty()).into_response());
    }
    Ok(Html(page::upload_result(&cap.to_string(), filename.as_deref())).into_response())
}
