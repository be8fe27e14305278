//! `GET /metrics`: Prometheus text exposition of the click pipeline counters.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use actix_web::{web, HttpResponse};

use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics));
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let mut out = String::new();
    if let Some(clicks) = &state.clicks {
        let m = clicks.metrics();
        for (name, help, value) in [
            (
                "snowlink_clicks_enqueued_total",
                "Click events handed to the spooler.",
                &m.enqueued,
            ),
            (
                "snowlink_clicks_dropped_total",
                "Click events shed because the click channel was full.",
                &m.dropped,
            ),
            (
                "snowlink_clicks_spooled_total",
                "Click events durably written to the spool.",
                &m.spooled,
            ),
            (
                "snowlink_spool_errors_total",
                "Failed spool writes (retried).",
                &m.spool_errors,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
    }
    if let Some(kafka) = &state.kafka {
        let _ = writeln!(
            out,
            "# HELP snowlink_kafka_forwarded_total Click events delivered to Kafka from the spool.\n# TYPE snowlink_kafka_forwarded_total counter\nsnowlink_kafka_forwarded_total {}",
            kafka.forwarded.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP snowlink_kafka_failures_total Forwarding batches that failed (retried).\n# TYPE snowlink_kafka_failures_total counter\nsnowlink_kafka_failures_total {}",
            kafka.failures.load(Ordering::Relaxed)
        );
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}
