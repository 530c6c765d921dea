//! coordkit's spans exported with OpenTelemetry: a worker runs a few tasks of a queue, and
//! every script call (`coordkit.script`) and every attempt of a task (`coordkit.task`, with
//! the handler's own span inside it) leaves as an OpenTelemetry span. The exporter here prints
//! them to stdout; swap it for an OTLP exporter (`opentelemetry-otlp`) to send them to
//! Jaeger, Tempo or any collector. Targets and fields: `coordkit::core::trace`.
//!
//! ```text
//! cargo run --example otel_spans            # starts a throwaway redis-server
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example otel_spans
//! ```
#![allow(clippy::print_stdout)]

use std::time::Duration;

use coordkit::core::{Keyspace, Pool, PoolConfig};
use coordkit::retry_queue::{NewTask, Queue, TaskError, Worker};
use coordkit_testkit::RedisServer;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Every coordkit span and event, at DEBUG and above, and the handler's own.
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(opentelemetry_stdout::SpanExporter::default())
        .build();
    let filter = Targets::new()
        .with_target("coordkit", tracing::Level::DEBUG)
        .with_target("otel_spans", tracing::Level::INFO);
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("coordkit-example")))
        .with(filter);
    tracing::subscriber::set_global_default(subscriber)?;

    // REDIS_URL when set; otherwise a throwaway server that lives as long as this program.
    let (config, _server) = match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => (PoolConfig::from_url(&url)?, None),
        _ => {
            let server = RedisServer::start()?;
            (PoolConfig::from_url(&server.url())?, Some(server))
        }
    };
    let pool = Pool::connect(config).await?;
    let queue = Queue::builder(&pool, &Keyspace::new("otel-example")?, "summaries").build()?;
    let worker = Worker::builder(&queue, |task| async move {
        // The handler's span is a child of its attempt's `coordkit.task` span.
        let _summarize = tracing::info_span!(target: "otel_spans", "summarize").entered();
        if task.attempt == 1 {
            return Err(TaskError::Retry("the model timed out".into()));
        }
        Ok(())
    })
    .start()
    .await?;
    for doc in ["a", "b", "c"] {
        queue.enqueue(NewTask::new(doc)).await?;
    }
    while worker.stats().acked < 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown().await;
    provider.shutdown()?;
    println!("exported the spans of 3 tasks (each failed once, then completed)");
    Ok(())
}
