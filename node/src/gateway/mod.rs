//! The web gateway: Tahoe-LAFS's web API (WAPI) where it has the operation,
//! with the same paths, arguments, status codes and JSON shapes, and a
//! welcome page that shows the grid. `docs/gateway.md` lists every
//! endpoint and where grapevine differs.
//!
//! | module | job |
//! | --- | --- |
//! | `settings` | [`GatewaySettings`]: address, host names, limits |
//! | `guard` | the request checks (Host, cross-site writes, API token) as plain functions, and the safety headers |
//! | `safety` | the middleware that applies them to every request and response |
//! | `args` | Tahoe's query arguments: `t=`, booleans, capabilities, upload parameters |
//! | `range` | the `Range` header, as Tahoe reads it |
//! | `content` | Content-Type and Content-Disposition of downloads (never active content inline) |
//! | `body` | upload bodies under watch: size, idle and rate limits, bounded multipart buffering |
//! | `stream` | downloads streamed through a bounded channel, in flat memory |
//! | `files` | `GET /uri/$CAP` (whole, ranged, `t=json`, `t=info`), `/named`, `POST ?t=check` |
//! | `upload` | `PUT /uri`, `POST /uri?t=upload` (spooled to `DIR/tmp`) |
//! | `check` | check results in Tahoe's JSON, with and without repair |
//! | `stats` | `/`, `/statistics`, `/status`, `/members`, the static files |
//! | `grid` | the grid as this node sees it, for `/members` and the page |
//! | `page` | the HTML pages (maud; every value escaped) |
//! | `ops` | operations in progress and counters |
//! | `context` | what the handlers share, and the session slots grid operations take |
//! | `server` | hyper's HTTP/1.1 server with the gateway's limits |
//! | `error` | [`GatewayError`] and its HTTP statuses |
//!
//! The gateway is off unless the configuration names an address
//! (`gateway = "127.0.0.1:3456"`, which `grapevine init` writes). It reads
//! the node through [`crate::state`] and stores and fetches files through
//! [`crate::client`], the same calls as `grapevine put`, `get` and `check`.
//!
//! ```no_run
//! # async fn f(node: &grapevine_node::Node, dir: &grapevine_node::NodeDir) -> Result<(), grapevine_node::NodeError> {
//! use grapevine_node::gateway::{Gateway, GatewaySettings};
//! let settings = GatewaySettings::new("127.0.0.1:3456".parse().unwrap());
//! let gw = Gateway::bind(node.state().clone(), settings, dir).await?;
//! println!("http://{}/", gw.local_addr());
//! tokio::spawn(gw.serve());
//! # Ok(()) }
//! ```

mod args;
mod body;
mod check;
mod content;
mod context;
mod error;
mod files;
mod grid;
mod guard;
mod ops;
mod page;
mod range;
mod safety;
mod server;
mod settings;
mod slots;
mod stats;
mod stream;
mod upload;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use axum::Router;
use tokio::net::TcpListener;

pub use error::GatewayError;
pub use guard::{Guard, Refusal, DOWNLOAD_CSP, PAGE_CSP};
pub use settings::GatewaySettings;

use crate::dir::NodeDir;
use crate::error::NodeError;
use crate::metrics;
use crate::state::NodeState;
use context::Ctx;

/// A gateway bound to its address, ready to serve.
#[derive(Debug)]
pub struct Gateway {
    ctx: Arc<Ctx>,
    listener: TcpListener,
}

/// A gateway's socket, bound, with its token read and its spool emptied,
/// not yet serving any node: a node binds every listener it will serve
/// before it announces itself to the grid, so that one it cannot bind
/// fails the start before any peer hears of the node.
#[derive(Debug)]
pub struct GatewayListener {
    listener: TcpListener,
    settings: GatewaySettings,
    token: String,
    spool: std::path::PathBuf,
}

impl GatewayListener {
    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.settings.addr
    }

    /// The gateway of the node whose state is `state`, on this socket.
    pub fn serving(self, state: Arc<NodeState>) -> Gateway {
        let ctx = Arc::new(Ctx::new(state, self.settings, self.spool, &self.token));
        Gateway {
            ctx,
            listener: self.listener,
        }
    }
}

impl Gateway {
    /// Bind `settings.addr` for the node whose directory is `dir` (its API
    /// token, made if missing; its `tmp/`, for uploads, emptied); serve it
    /// with [`GatewayListener::serving`].
    ///
    /// # Errors
    /// [`NodeError::Bind`] if the address cannot be bound;
    /// [`NodeError::Secret`] if the token cannot be read or made.
    pub async fn listen(
        mut settings: GatewaySettings,
        dir: &NodeDir,
    ) -> Result<GatewayListener, NodeError> {
        let listener = TcpListener::bind(settings.addr)
            .await
            .map_err(NodeError::bind("gateway", settings.addr))?;
        settings.addr = listener
            .local_addr()
            .map_err(NodeError::bind("gateway", settings.addr))?;
        let token = dir.api_token()?;
        let spool = dir.tmp_path();
        if let Ok(entries) = std::fs::read_dir(&spool) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(GatewayListener {
            listener,
            settings,
            token,
            spool,
        })
    }

    /// [`Gateway::listen`], then serve the node whose state is `state`.
    ///
    /// # Errors
    /// As [`Gateway::listen`].
    pub async fn bind(
        state: Arc<NodeState>,
        settings: GatewaySettings,
        dir: &NodeDir,
    ) -> Result<Gateway, NodeError> {
        Ok(Gateway::listen(settings, dir).await?.serving(state))
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.ctx.settings.addr
    }

    /// Serve until the task is dropped.
    pub async fn serve(self) {
        let settings = self.ctx.settings.clone();
        server::serve(self.listener, router(self.ctx), settings).await
    }
}

/// The gateway's routes.
fn router(ctx: Arc<Ctx>) -> Router {
    let mut r = Router::new()
        .route("/", get(stats::welcome))
        .route("/statistics", get(stats::statistics))
        .route("/statistics/", get(stats::statistics))
        .route("/status", get(stats::status))
        .route("/status/", get(stats::status))
        .route("/members", get(stats::members))
        .route("/static/gateway.css", get(stats::css))
        .route("/static/gateway.js", get(stats::js))
        .route("/metrics", get(serve_metrics));
    for root in ["/uri", "/cap"] {
        r = r
            .route(
                root,
                get(files::get_uri_root)
                    .put(upload::put_uri)
                    .post(upload::post_uri),
            )
            .route(
                &format!("{root}/{{cap}}"),
                get(files::get_uri)
                    .post(files::post_uri)
                    .put(files::put_uri_cap),
            )
            .route(&format!("{root}/{{cap}}/{{*rest}}"), any(files::child));
    }
    for root in ["/named", "/file"] {
        r = r.route(&format!("{root}/{{cap}}/{{*name}}"), get(files::get_named));
    }
    r.fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            safety::guard,
        ))
        .with_state(ctx)
}

async fn serve_metrics(State(ctx): State<Arc<Ctx>>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::encode(&ctx.registry),
    )
}

async fn not_found() -> GatewayError {
    GatewayError::NotFound
}
