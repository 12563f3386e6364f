//! The broker's HTTP listener (`http_listen`): `/metrics` (see [`crate::metrics`]),
//! `/healthz` (the process answers) and `/readyz` (serving Kafka requests; 503 once shutdown
//! has begun, so an orchestrator stops routing clients before the listener closes).

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::error::BrokerError;
use crate::state::SharedState;

async fn metrics(State(state): State<SharedState>) -> impl IntoResponse {
    let text = crate::metrics::render(&state).await;
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text)
}

async fn readyz(State(state): State<SharedState>) -> impl IntoResponse {
    if state.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

/// Binds `addr` and serves until the broker shuts down; returns the bound address and the
/// server task.
pub async fn start(
    state: SharedState,
    addr: &str,
) -> Result<(SocketAddr, JoinHandle<()>), BrokerError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| BrokerError::io("binding the HTTP listener", addr, e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| BrokerError::io("binding the HTTP listener", addr, e))?;
    let stop = state.shutdown.clone();
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state);
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "HTTP listener failed");
        }
    });
    Ok((bound, task))
}
