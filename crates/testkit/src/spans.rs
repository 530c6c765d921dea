//! Collects the spans and events coordkit emits, for tests that check names and fields.
//!
//! ```
//! let spans = coordkit_testkit::spans::Spans::capture();
//! tracing::info_span!(target: "demo", "work", item = 7).in_scope(|| {
//!     tracing::warn!(target: "demo", "careful");
//! });
//! let closed = spans.closed("work");
//! assert_eq!(closed[0].fields["item"], "7");
//! assert_eq!(spans.events("demo")[0].fields["message"], "careful");
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::DefaultGuard;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A span, closed.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    /// The span's name.
    pub name: String,
    /// Its target.
    pub target: String,
    /// Its level.
    pub level: Level,
    /// Every field recorded, as text (`Debug` of the value; strings without quotes).
    pub fields: BTreeMap<String, String>,
    /// The name of its parent span, if any.
    pub parent: Option<String>,
}

/// An event.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// Its target.
    pub target: String,
    /// Its level.
    pub level: Level,
    /// Its fields, the message as `message`.
    pub fields: BTreeMap<String, String>,
    /// The name of the span it happened in, if any.
    pub span: Option<String>,
}

#[derive(Default)]
struct Store {
    closed: Vec<SpanRecord>,
    events: Vec<EventRecord>,
}

/// The spans and events collected: those of this thread while it lives ([`Spans::capture`]),
/// or of the whole process ([`Spans::global`]: for code that runs on a runtime's worker
/// threads; tests that share it tell their spans apart by their fields).
pub struct Spans {
    store: Arc<Mutex<Store>>,
    _guard: Option<DefaultGuard>,
}

/// The process-wide store of [`Spans::global`].
static GLOBAL: OnceLock<Arc<Mutex<Store>>> = OnceLock::new();

impl fmt::Debug for Spans {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spans").finish_non_exhaustive()
    }
}

impl Spans {
    /// Starts collecting, every level and target, on this thread.
    pub fn capture() -> Spans {
        let store = Arc::new(Mutex::new(Store::default()));
        let subscriber = tracing_subscriber::registry().with(Collect {
            store: Arc::clone(&store),
        });
        Spans {
            store,
            _guard: Some(tracing::subscriber::set_default(subscriber)),
        }
    }

    /// Collects everything the process emits, on every thread, from the first call on (the
    /// process's global subscriber: panics when another one was installed before).
    pub fn global() -> Spans {
        let store = GLOBAL.get_or_init(|| {
            let store = Arc::new(Mutex::new(Store::default()));
            let subscriber = tracing_subscriber::registry().with(Collect {
                store: Arc::clone(&store),
            });
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global tracing subscriber in this test binary");
            store
        });
        Spans {
            store: Arc::clone(store),
            _guard: None,
        }
    }

    /// The spans named `name` closed so far.
    pub fn closed(&self, name: &str) -> Vec<SpanRecord> {
        let store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        store
            .closed
            .iter()
            .filter(|s| s.name == name)
            .cloned()
            .collect()
    }

    /// The events of `target` so far.
    pub fn events(&self, target: &str) -> Vec<EventRecord> {
        let store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        store
            .events
            .iter()
            .filter(|e| e.target == target)
            .cloned()
            .collect()
    }
}

/// A span's fields while it is open.
struct Open(BTreeMap<String, String>);

struct Collect {
    store: Arc<Mutex<Store>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Collect {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Open(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(open) = span.extensions_mut().get_mut::<Open>()
        {
            values.record(&mut Fields(&mut open.0));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let span = ctx.event_span(event).map(|s| s.name().to_owned());
        let meta = event.metadata();
        self.store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .events
            .push(EventRecord {
                target: meta.target().to_owned(),
                level: *meta.level(),
                fields,
                span,
            });
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let fields = span
            .extensions_mut()
            .remove::<Open>()
            .map(|o| o.0)
            .unwrap_or_default();
        let meta = span.metadata();
        let record = SpanRecord {
            name: meta.name().to_owned(),
            target: meta.target().to_owned(),
            level: *meta.level(),
            fields,
            parent: span.parent().map(|p| p.name().to_owned()),
        };
        self.store
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed
            .push(record);
    }
}
