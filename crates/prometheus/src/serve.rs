//! The HTTP side: `GET /metrics` with axum.

use std::future::Future;
use std::io;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::{TcpListener, ToSocketAddrs};

use crate::exporter::Exporter;

/// The content type of a successful scrape: OpenMetrics 1.0 text, which Prometheus asks for.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Exporter {
    /// An axum router answering `GET /metrics` (to nest in an application's own server):
    /// 200 with [`render`](Self::render)'s text, or 503 with one line
    /// (`coordkit: cannot read the store: …`) when no watched instance could be read.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/metrics", get(metrics))
            .with_state(self.clone())
    }

    /// Serves [`router`](Self::router) on `addr` until the process ends (or the listener
    /// fails). Binding fails with the OS's error (address in use, permission denied).
    pub async fn serve(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        let listener = TcpListener::bind(addr).await?;
        self.serve_on(listener, std::future::pending()).await
    }

    /// Serves [`router`](Self::router) on a bound `listener` until `shutdown` completes
    /// (then it stops accepting and lets the scrapes in flight finish).
    pub async fn serve_on(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }
}

async fn metrics(State(exporter): State<Exporter>) -> Response {
    match exporter.render().await {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            let line = e.to_string().replace(['\n', '\r'], " ");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!("coordkit: cannot read the store: {line}\n"),
            )
                .into_response()
        }
    }
}
