//! The hub's events: what the use cases report ([`Event`]) and the bus that hands each
//! report to whoever subscribed (webhooks queue deliveries, Spaces rebuild). Publishing
//! never blocks or fails the request that caused it: a subscriber that has slow work to do
//! spawns it.
//!
//! The bus is generic over the context it passes on, so that it sits below the context
//! that holds it.

mod event;

pub use event::{Action, Comment, Event, UpdatedRef};

use std::sync::{Arc, RwLock};

/// One subscriber: called with the publisher's context and the events, in order.
pub type Subscriber<C> = Arc<dyn Fn(&C, &[Event]) + Send + Sync>;

/// The subscribers of one hub.
pub struct Bus<C> {
    subscribers: RwLock<Vec<Subscriber<C>>>,
}

impl<C> Default for Bus<C> {
    fn default() -> Self {
        Bus {
            subscribers: RwLock::new(Vec::new()),
        }
    }
}

impl<C> Bus<C> {
    /// Adds a subscriber; it sees every event published from now on.
    pub fn subscribe(&self, subscriber: Subscriber<C>) {
        // A poisoned lock only means a subscriber list push panicked; the list is valid.
        let mut subscribers = self.subscribers.write().unwrap_or_else(|e| e.into_inner());
        subscribers.push(subscriber);
    }

    /// Hands `events` to every subscriber, in the order they subscribed.
    pub fn publish(&self, context: &C, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        let subscribers = self
            .subscribers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for subscriber in subscribers {
            subscriber(context, events);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn deleted(name: &str) -> Event {
        let repo = event::repo_named(name);
        Event::repo_deleted(&repo)
    }

    #[test]
    fn every_subscriber_sees_every_event_in_order() {
        let bus: Bus<Mutex<Vec<String>>> = Bus::default();
        let seen = Mutex::new(Vec::new());
        for tag in ["a", "b"] {
            bus.subscribe(Arc::new(
                move |log: &Mutex<Vec<String>>, events: &[Event]| {
                    for e in events {
                        if let Event::Repo { repo, .. } = e {
                            log.lock()
                                .expect("log")
                                .push(format!("{tag}:{}", repo.name));
                        }
                    }
                },
            ));
        }
        bus.publish(&seen, &[deleted("x"), deleted("y")]);
        bus.publish(&seen, &[]);
        assert_eq!(*seen.lock().expect("log"), ["a:x", "a:y", "b:x", "b:y"]);
    }
}
