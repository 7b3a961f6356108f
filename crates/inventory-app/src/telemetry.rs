//! Logs, traces and the metrics recorder.
//!
//! Tracing is off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is
//! set; then spans go by OTLP over HTTP/protobuf, and the standard `OTEL_*` variables
//! (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_SDK_DISABLED`) are read by the
//! OpenTelemetry SDK itself.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::dispatcher::WeakDispatch;
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;

use crate::BoxError;
use crate::settings::LogFormat;

/// The service's name in traces unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` say otherwise.
pub const SERVICE_NAME: &str = "inventory-service";

/// What must be flushed before the process exits.
#[must_use = "call shutdown() before exiting, or buffered spans and log lines are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    /// Writes the log lines still queued when dropped.
    _logs: WorkerGuard,
}

/// Log lines queued for stderr, most. Past it (a reader that stopped draining the pipe), lines are
/// dropped and counted in `inventory_log_lines_dropped_total`; no thread that logs ever waits.
const LOG_QUEUE_LINES: usize = 10_000;

/// stderr through a thread of its own; the writer, what flushes it at exit, and its drop count.
fn log_writer() -> (NonBlocking, WorkerGuard) {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .thread_name("log-writer")
        .finish(std::io::stderr());
    let dropped = writer.error_counter();
    // The count is read into the metric once a second, by a thread that lives as long as the process.
    let _ = std::thread::Builder::new().name("log-drops".into()).spawn(move || {
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
            metrics::counter!("inventory_log_lines_dropped_total").absolute(dropped.dropped_lines() as u64);
        }
    });
    (writer, guard)
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn tracing_enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still buffered.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            eprintln!("trace export at shutdown failed: {e}");
        }
    }
}

/// Whether the environment asks for traces.
fn otlp_configured() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.eq_ignore_ascii_case("none"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

fn tracer_provider() -> Result<SdkTracerProvider, BoxError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().build()?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    // An empty OTEL_SERVICE_NAME names nothing (the SDK would call us "unknown_service").
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|n| !n.trim().is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| a.contains("service.name="));
    if !named {
        resource = resource.with_service_name(SERVICE_NAME);
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// The installed subscriber, for reading a span's trace and span ids while writing a log line.
static DISPATCH: OnceLock<WeakDispatch> = OnceLock::new();

/// The W3C ids of a span, when it is traced.
fn otel_ids<S>(span: &tracing_subscriber::registry::SpanRef<'_, S>) -> Option<(String, String)>
where
    S: for<'a> LookupSpan<'a>,
{
    let dispatch = DISPATCH.get()?.upgrade()?;
    let context = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)?;
    let span = context.span();
    let ids = span.span_context();
    ids.is_valid()
        .then(|| (ids.trace_id().to_string(), ids.span_id().to_string()))
}

/// Installs logs (`RUST_LOG` filter, default info; pretty or JSON lines on stderr) and, when
/// configured, the trace exporter. JSON lines carry `trace_id` and `span_id` when tracing is on.
pub fn init(format: LogFormat) -> Result<Telemetry, BoxError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn"));
    let provider = if otlp_configured() {
        Some(tracer_provider()?)
    } else {
        None
    };
    let otel = provider.as_ref().map(|p| {
        opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
        tracing_opentelemetry::layer().with_tracer(p.tracer(SERVICE_NAME))
    });
    let (writer, guard) = log_writer();
    let (json, pretty) = match format {
        LogFormat::Json => {
            let mut json = json_subscriber::JsonLayer::new(writer);
            json.with_timer("timestamp", tracing_subscriber::fmt::time::SystemTime)
                .with_level("level")
                .with_target("target")
                .with_current_span("span")
                .with_flattened_event();
            json.add_from_span("trace_id", |span| otel_ids(span).map(|(trace, _)| trace));
            json.add_from_span("span_id", |span| otel_ids(span).map(|(_, span)| span));
            (Some(json), None)
        }
        LogFormat::Pretty => (
            None,
            Some(tracing_subscriber::fmt::layer().compact().with_writer(writer)),
        ),
    };
    let subscriber = tracing_subscriber::registry()
        .with(filter)
        .with(otel)
        .with(json)
        .with(pretty);
    let dispatch = tracing::Dispatch::new(subscriber);
    let _ = DISPATCH.set(dispatch.downgrade());
    // A second init (tests build several apps in one process) keeps the first subscriber.
    let _ = tracing::dispatcher::set_global_default(dispatch);
    Ok(Telemetry { provider, _logs: guard })
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ];
            // Batch sizes are counts, up to KAFKA_BATCH_MAX (500 by default), not seconds.
            let sizes = [1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];
            let builder = PrometheusBuilder::new()
                .set_buckets(&buckets)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full("inventory_consumer_batch_size".into()), &sizes))
                .unwrap_or_else(|_| PrometheusBuilder::new());
            match builder.install_recorder() {
                Ok(handle) => handle,
                // Another recorder is installed (tests): render our own, unattached.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::metrics_handle;

    #[test]
    fn batch_sizes_are_counted_in_buckets_of_records_and_durations_in_seconds() {
        let handle = metrics_handle();
        metrics::histogram!("inventory_consumer_batch_size").record(150.0);
        metrics::histogram!("inventory_batch_duration_seconds").record(0.02);
        let text = handle.render();
        let line = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("no {name} in\n{text}"))
                .to_owned()
        };
        assert!(line("inventory_consumer_batch_size_bucket{le=\"100\"}").ends_with(" 0"));
        assert!(line("inventory_consumer_batch_size_bucket{le=\"250\"}").ends_with(" 1"));
        assert!(line("inventory_batch_duration_seconds_bucket{le=\"0.01\"}").ends_with(" 0"));
        assert!(line("inventory_batch_duration_seconds_bucket{le=\"0.025\"}").ends_with(" 1"));
    }
}
