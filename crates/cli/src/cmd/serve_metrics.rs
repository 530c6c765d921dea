//! `coordkit serve-metrics`: coordkit-prometheus's exporter on an address, until Ctrl-C.

use coordkit_prometheus::Exporter;

use super::Ctx;
use crate::app::ServeMetricsArgs;
use crate::fail::{Fail, Outcome};

pub(crate) async fn run(ctx: &Ctx, args: &ServeMetricsArgs) -> Outcome {
    ctx.no_watch("serve-metrics")?;
    if ctx.json {
        return Err(Fail::usage(
            "--json does not apply to `serve-metrics` (it serves the Prometheus text format)",
        ));
    }
    // With no queue, breaker or tracker named, every indexed one is watched.
    let discover = args.discover
        || (args.queues.is_empty() && args.breakers.is_empty() && args.trackers.is_empty());
    let exporter = Exporter::builder(&ctx.pool, &ctx.keyspace)
        .queues(&args.queues)
        .breakers(&args.breakers)
        .error_trackers(&args.trackers)
        .agent_registries(&args.registries)
        .top_signatures(args.top_signatures)
        .signature_window(args.signature_window)
        .discover(discover)
        .build()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| Fail::failed(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Fail::failed(format!("cannot listen on {}: {e}", args.listen)))?;
    eprintln!(
        "serving the metrics of namespace {} on http://{addr}/metrics (Ctrl-C to stop)",
        ctx.namespace()
    );
    exporter
        .serve_on(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| Fail::failed(format!("the metrics server stopped: {e}")))
}
