//! Counts warnings per crate. socketioxide-redis keeps no counters: it logs what it drops ("fred
//! driver dropped a message", "pubsub channel lagged"), so its warnings are its drop counters.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

#[derive(Clone, Default)]
pub struct WarningCounter(Arc<Mutex<BTreeMap<String, u64>>>);

impl WarningCounter {
    /// Warnings and errors so far, by crate.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap().clone()
    }
}

impl<S: Subscriber> Layer<S> for WarningCounter {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() <= Level::WARN {
            let krate = meta.target().split("::").next().unwrap_or_default();
            *self.0.lock().unwrap().entry(krate.to_string()).or_default() += 1;
        }
    }
}
