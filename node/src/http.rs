//! The node's HTTP server (axum on hyper): today `GET /metrics`; the web
//! gateway's routes will join the same [`router`].
//!
//! It is optional per node ([`crate::Options::http`]): a process running a
//! thousand nodes serves none, and reads each node's metrics with
//! [`crate::metrics::encode`] instead.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::error::NodeError;
use crate::metrics;
use crate::state::NodeState;

/// The node's routes.
pub fn router(state: Arc<NodeState>) -> Router {
    let registry = Arc::new(metrics::registry(state));
    Router::new()
        .route("/metrics", get(serve_metrics))
        .with_state(registry)
}

async fn serve_metrics(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::encode(&registry),
    )
}

/// Bind `addr` for the HTTP server.
///
/// # Errors
/// [`NodeError::Bind`].
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, NodeError> {
    TcpListener::bind(addr)
        .await
        .map_err(NodeError::bind("metrics", addr))
}

/// Serve `router` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, router: Router) {
    if let Err(e) = axum::serve(listener, router).await {
        tracing::error!("HTTP server stopped: {e}");
    }
}
