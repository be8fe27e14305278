//! The service's parts start and stop as one: a start that fails halfway
//! leaves nothing running, and a stop stops everything.
//!
//! This is its own test binary, hence its own process: the threads it
//! counts by name are only this test's.

use std::time::Duration;

use redis::AsyncCommands;
use snowlink::configuration::Settings;
use snowlink::startup::Application;
use snowlink_testkit::Server;

/// Threads of this process whose name is `name`.
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

/// Waits (up to 5 s) for `name` to have `n` threads: a new thread names
/// itself once it runs. Returns the last count.
async fn threads_become(name: &str, n: usize) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let count = threads_named(name);
        if count == n || std::time::Instant::now() > deadline {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Worker-id leases held in Redis, and clients subscribed to invalidations.
async fn redis_traces(url: &str) -> (Vec<String>, i64) {
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let leases: Vec<String> = conn.keys("snowlink:worker:*").await.unwrap();
    let (_, subscribers): (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(snowlink::shared_cache::INVALIDATION_CHANNEL)
        .query_async(&mut conn)
        .await
        .unwrap();
    (leases, subscribers)
}

/// Redis sees a closed connection a moment after it is closed.
async fn wait_for_no_subscriber(url: &str) -> i64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, subscribers) = redis_traces(url).await;
        if subscribers == 0 || std::time::Instant::now() > deadline {
            return subscribers;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn settings(dir: &std::path::Path, redis: &Server) -> Settings {
    let mut s = Settings::default();
    s.base.data_dir = dir.to_path_buf();
    s.http.listen = "127.0.0.1:0".parse().unwrap();
    s.http.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    s.http.public_url = "http://sho.rt.test".parse().unwrap();
    s.http.workers = Some(1);
    // A leased worker id, the Redis tier, the spooler, and a forwarder (it
    // does not connect before there is something to send).
    s.ids.worker_id = None;
    s.redis.url = Some(redis.redis_url().into());
    s.kafka.brokers = Some(format!("127.0.0.1:{}", snowlink_testkit::free_port()));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: ./scripts/test runs it"]
async fn a_failed_start_leaves_nothing_running_and_a_stop_stops_everything() {
    if let Ok(filter) = std::env::var("TEST_LOG") {
        snowlink::telemetry::init(snowlink::configuration::LogFormat::Pretty, &filter);
    }
    let Some(redis) = Server::redis("a_failed_start_leaves_nothing_running") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();

    // The listen address is taken: the build fails after every other part
    // (lease, id fence, forwarder, spooler, Redis tier, metrics listener)
    // has started.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics_port = snowlink_testkit::free_port();
    let mut failing = settings(dir.path(), &redis);
    failing.http.listen = taken.local_addr().unwrap();
    failing.http.metrics_listen = Some(format!("127.0.0.1:{metrics_port}").parse().unwrap());
    let err = match Application::build(failing).await {
        Ok(_) => panic!("started on a taken address"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("binding"), "{err}");
    // Stopped parts were joined: no waiting here.
    assert_eq!(threads_named("click-spooler"), 0, "no spooler thread left");
    assert_eq!(
        threads_named("kafka-forwarder"),
        0,
        "no forwarder thread left"
    );
    let (leases, _) = redis_traces(&redis.redis_url()).await;
    assert!(leases.is_empty(), "no worker-id lease left: {leases:?}");
    assert_eq!(
        wait_for_no_subscriber(&redis.redis_url()).await,
        0,
        "no invalidation subscriber left"
    );
    std::net::TcpListener::bind(("127.0.0.1", metrics_port))
        .expect("the metrics address was given back");

    // The same parts, started for real, then stopped by the shutdown future.
    let app = Application::build(settings(dir.path(), &redis))
        .await
        .expect("starts");
    assert_eq!(threads_become("click-spooler", 1).await, 1);
    assert_eq!(threads_become("kafka-forwarder", 1).await, 1);
    let (leases, _) = redis_traces(&redis.redis_url()).await;
    assert_eq!(leases.len(), 1, "one lease while running: {leases:?}");
    let metrics_port = app.metrics_port().expect("a metrics listener");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    // Subscribed, and /metrics answers on its own address.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while redis_traces(&redis.redis_url()).await.1 == 0 {
        assert!(std::time::Instant::now() < deadline, "never subscribed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("snowlink_spool_depth"), "{text}");
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();
    assert_eq!(threads_named("click-spooler"), 0);
    assert_eq!(threads_named("kafka-forwarder"), 0);
    let (leases, _) = redis_traces(&redis.redis_url()).await;
    assert!(leases.is_empty(), "lease given back: {leases:?}");
    assert_eq!(
        wait_for_no_subscriber(&redis.redis_url()).await,
        0,
        "invalidation subscriber stopped"
    );
    std::net::TcpListener::bind(("127.0.0.1", metrics_port))
        .expect("the metrics address was given back");
}
