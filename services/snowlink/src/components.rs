//! The running parts of the service, each with the same small interface:
//! a name, its health, its metrics, and a shutdown.
//!
//! [`Application`](crate::startup::Application) starts the parts one by one
//! and pushes each into [`Components`] as soon as it runs. If a later step
//! fails (the listener cannot bind, say), every part already started is
//! stopped, in reverse order, before the error is returned: a failed start
//! leaves no thread, task or lease behind. A normal stop does the same
//! after the HTTP server has finished its requests. `/readyz` and
//! `/metrics` iterate over the parts.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use prometheus_client::registry::Registry;

/// What a part says about itself on `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// The key in the readiness body (`redis`, `kafka`, `worker_lease`).
    pub key: &'static str,
    /// Whether the part works; a part that does not makes the service
    /// `degraded`, never unready (only the store does that).
    pub ok: bool,
    /// The value shown: `ok`, or what is wrong.
    pub state: &'static str,
}

pub trait Component: Send + Sync {
    fn name(&self) -> &'static str;

    /// `None` when the part has nothing to report on `/readyz`.
    fn health(&self) -> Option<Health> {
        None
    }

    /// Registers the part's metrics; called once, when it has started.
    fn register_metrics(&self, _registry: &mut Registry) {}

    /// Stops the part and waits until it has. Called once.
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

/// The parts started so far, in start order.
#[derive(Default)]
pub struct Components {
    parts: Mutex<Vec<Arc<dyn Component>>>,
}

impl Components {
    /// Records a part that has started.
    pub fn push(&self, part: Arc<dyn Component>) {
        self.parts.lock().expect("components").push(part);
    }

    /// The health of every part that reports one, in start order.
    pub fn health(&self) -> Vec<Health> {
        self.snapshot().iter().filter_map(|p| p.health()).collect()
    }

    /// Names of the running parts, in start order.
    pub fn names(&self) -> Vec<&'static str> {
        self.snapshot().iter().map(|p| p.name()).collect()
    }

    fn snapshot(&self) -> Vec<Arc<dyn Component>> {
        self.parts.lock().expect("components").clone()
    }

    /// Stops every part, last started first, and forgets them.
    pub async fn shutdown(&self) {
        let parts = std::mem::take(&mut *self.parts.lock().expect("components"));
        for part in parts.into_iter().rev() {
            tracing::debug!(part = part.name(), "stopping");
            part.shutdown().await;
        }
    }
}

/// A background task as a part: stopped by aborting it.
pub struct Task {
    name: &'static str,
    handle: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Task {
    pub fn new(name: &'static str, handle: tokio::task::JoinHandle<()>) -> Self {
        Self {
            name,
            handle: Mutex::new(Some(handle)),
        }
    }
}

impl Component for Task {
    fn name(&self) -> &'static str {
        self.name
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        let handle = self.handle.lock().expect("task handle").take();
        Box::pin(async move {
            if let Some(handle) = handle {
                handle.abort();
                let _ = handle.await;
            }
        })
    }
}

/// The click pipeline's spooler thread, as a part of the service.
impl Component for snowlink_clicks::ClickPipeline {
    fn name(&self) -> &'static str {
        "click-spooler"
    }

    fn register_metrics(&self, registry: &mut Registry) {
        snowlink_clicks::ClickPipeline::register_metrics(self, registry);
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(snowlink_clicks::ClickPipeline::shutdown(self))
    }
}

/// The spool's forwarder to Kafka, as a part of the service.
impl Component for snowlink_clicks::Forwarder {
    fn name(&self) -> &'static str {
        "kafka-forwarder"
    }

    fn health(&self) -> Option<Health> {
        let ok = self.connected();
        Some(Health {
            key: "kafka",
            ok,
            state: if ok { "ok" } else { "unavailable" },
        })
    }

    fn register_metrics(&self, registry: &mut Registry) {
        snowlink_clicks::Forwarder::register_metrics(self, registry);
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(snowlink_clicks::Forwarder::shutdown(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Part {
        name: &'static str,
        log: Arc<Mutex<Vec<&'static str>>>,
    }

    impl Component for Part {
        fn name(&self) -> &'static str {
            self.name
        }
        fn shutdown(&self) -> BoxFuture<'_, ()> {
            Box::pin(async move { self.log.lock().unwrap().push(self.name) })
        }
    }

    #[tokio::test]
    async fn parts_stop_in_reverse_order_once() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let parts = Components::default();
        for name in ["a", "b", "c"] {
            parts.push(Arc::new(Part {
                name,
                log: log.clone(),
            }));
        }
        assert_eq!(parts.names(), vec!["a", "b", "c"]);
        parts.shutdown().await;
        parts.shutdown().await;
        assert_eq!(*log.lock().unwrap(), vec!["c", "b", "a"]);
        assert!(parts.names().is_empty());
    }

    #[tokio::test]
    async fn a_task_is_aborted() {
        let task = Task::new(
            "sleeper",
            tokio::spawn(async { tokio::time::sleep(std::time::Duration::from_secs(3600)).await }),
        );
        task.shutdown().await;
        assert!(task.handle.lock().unwrap().is_none());
    }
}
