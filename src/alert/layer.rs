//! The tracing layer that copies chosen log events into the notifier's queue. It runs inside
//! every logging call, so it never waits: a full queue drops the event (counted).

use std::sync::Arc;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

use super::message::{capped, Alert};
use super::Hub;

pub struct AlertLayer {
    pub(super) hub: Arc<Hub>,
}

#[derive(Default)]
struct Fields {
    event: Option<String>,
    message: String,
    rest: Vec<(String, Value)>,
}

impl Fields {
    fn put(&mut self, field: &Field, v: Value) {
        match field.name() {
            "event" => self.event = v.as_str().map(str::to_string),
            "message" => self.message = v.as_str().map(capped).unwrap_or_default(),
            name => self.rest.push((name.to_string(), v)),
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, capped(value).into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, capped(&format!("{value:?}")).into());
    }
}

impl<S: Subscriber> Layer<S> for AlertLayer {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        // Cheap refusals first: nothing configured, or a line without an `event` field.
        if !self.hub.active() || event.metadata().fields().field("event").is_none() {
            return;
        }
        let mut f = Fields::default();
        event.record(&mut f);
        let Some(name) = f.event else { return };
        if !self.hub.wants(&name) {
            return;
        }
        self.hub.offer(Alert {
            event: name,
            level: event.metadata().level().to_string(),
            time: chrono::Utc::now(),
            message: f.message,
            fields: f.rest,
            suppressed: 0,
        });
    }
}
