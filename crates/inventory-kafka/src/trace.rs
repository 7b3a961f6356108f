//! W3C trace context across the saga: a consumed record's `traceparent` is the parent of its
//! event's span, and what that span causes (the outbox row, then the published record) carries
//! the context of the span that caused it. With tracing off (no OpenTelemetry layer installed) the
//! spans have no context and the consumed headers are passed on unchanged.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::decode::CARRIED_HEADERS;

struct Headers<'a>(&'a [(String, String)]);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

struct Collect(HashMap<String, String>);

impl Injector for Collect {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

/// Makes the trace context in `headers` (if any) the parent of `span`.
pub fn continue_from(span: &Span, headers: &[(String, String)]) {
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
    if parent.span().span_context().is_valid() {
        // Fails only when the span was already started: it keeps its own parent then.
        let _ = span.set_parent(parent);
    }
}

/// Replaces the trace context in `headers` by `span`'s, when `span` is traced.
pub fn carry(span: &Span, headers: &mut Vec<(String, String)>) {
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return;
    }
    let mut injected = Collect(HashMap::new());
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut injected));
    if injected.0.is_empty() {
        return;
    }
    headers.retain(|(k, _)| !CARRIED_HEADERS.iter().any(|c| c.eq_ignore_ascii_case(k)));
    let mut injected: Vec<(String, String)> = injected.0.into_iter().collect();
    injected.sort();
    headers.extend(injected);
}
