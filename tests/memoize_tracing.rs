//! The `tracing` feature: which events memokit emits, and that a hit emits none.
//!
//! `cargo test --features tracing --test memoize_tracing` (compiled out without the feature).
#![cfg(feature = "tracing")]

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use memokit::{memoize, Memoizer, Timeout};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// One recorded event: target, level, message and the `function` field.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    target: String,
    level: tracing::Level,
    message: String,
    function: Option<String>,
}

/// A subscriber that records every event (no spans).
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

#[derive(Default)]
struct Fields {
    message: String,
    function: Option<String>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "function" => self.function = Some(format!("{value:?}")),
            _ => {}
        }
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let m = event.metadata();
        self.0.lock().unwrap().push(Seen {
            target: m.target().to_owned(),
            level: *m.level(),
            message: f.message,
            function: f.function,
        });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

impl Recorder {
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

static MEMO: std::sync::LazyLock<Memoizer> =
    std::sync::LazyLock::new(|| Memoizer::builder().capacity(1_000).build().expect("memoizer"));

#[memoize(memoizer = &MEMO, timeout = Timeout::Never)]
fn traced_square(x: u64) -> u64 {
    x * x
}

#[test]
fn registration_misses_and_deletes_are_traced_and_hits_are_not() {
    let rec = Recorder::default();
    tracing::subscriber::with_default(rec.clone(), || {
        assert_eq!(traced_square(3), 9);
        let first = rec.take();
        let name = first
            .iter()
            .find(|s| s.message == "memoized function registered")
            .and_then(|s| s.function.clone())
            .expect("a registration event");
        assert!(name.ends_with("traced_square"), "function field: {name}");
        assert!(
            first.iter().any(|s| s.message == "miss"
                && s.level == tracing::Level::TRACE
                && s.target == "memokit"
                && s.function.as_deref() == Some(name.as_str())),
            "a miss event: {first:?}"
        );

        // Hits emit nothing.
        MEMO.flush();
        for _ in 0..100 {
            assert_eq!(traced_square(3), 9);
        }
        assert_eq!(rec.take(), Vec::new(), "a hit emitted an event");

        // A delete of one result, then of all: debug events naming the function; the engine
        // reports the retired generation.
        traced_square_memo().delete(&(3,));
        traced_square_memo().delete_all();
        let deletes = rec.take();
        for msg in ["delete one result", "delete all results"] {
            assert!(
                deletes.iter().any(|s| s.message == msg
                    && s.level == tracing::Level::DEBUG
                    && s.function.as_deref() == Some(name.as_str())),
                "no {msg:?} event: {deletes:?}"
            );
        }
        assert!(
            deletes
                .iter()
                .any(|s| s.target == "memokit_engine" && s.message == "generation retired"),
            "no engine retirement event: {deletes:?}"
        );
    });
}
