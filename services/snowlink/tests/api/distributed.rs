//! The distributed path against real servers: `redis-server`, Apache Kafka
//! and Apache Cassandra (the CQL engine the ScyllaDB backend is tested
//! against), started on free loopback ports (`snowlink_testkit`). Each test
//! that needs one is `#[ignore]`d with the reason: `./scripts/test` runs
//! them with `--include-ignored`, and a missing server fails them.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use clap::Parser;
use redis::AsyncCommands;
use serde_json::{json, Value};
use snowlink::configuration::Settings;
use snowlink::startup::Application;
use snowlink_store::{LinkStore, SqliteStore};
use snowlink_testkit::Server;
use tempfile::TempDir;

use crate::helpers::{client, test_settings};

/// One running instance.
struct Instance {
    address: String,
    worker_id: u64,
    handle: ServerHandle,
    stopped: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: TempDir,
}

impl Instance {
    async fn start(store: Arc<dyn LinkStore>, tweak: impl FnOnce(&mut Settings)) -> Instance {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = test_settings(dir.path());
        settings.ids.code_secret = Some("shared-secret-of-the-fleet-0123456789".into());
        tweak(&mut settings);
        let app = Application::build_with_store(settings, store)
            .await
            .expect("instance builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let worker_id = app.worker_id();
        let handle = app.handle();
        let stopped = tokio::spawn(app.run_until_stopped());
        Instance {
            address,
            worker_id,
            handle,
            stopped,
            _dir: dir,
        }
    }

    /// Graceful stop: queued clicks reach the spool, the lease is released.
    async fn stop(self) {
        self.handle.stop(true).await;
        self.stopped.await.unwrap().unwrap();
    }
}

struct Fleet {
    store: Arc<dyn LinkStore>,
    key: String,
    _dir: TempDir,
}

impl Fleet {
    async fn new() -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn LinkStore> =
            Arc::new(SqliteStore::open(dir.path().join("links.db")).unwrap());
        let (key, record) =
            snowlink::keys::mint_key(&snowlink::keys::KeySpec::named("fleet"), snowlink::now_ms());
        store.create_api_key(&record).await.unwrap();
        Fleet {
            store,
            key,
            _dir: dir,
        }
    }

    async fn create(&self, on: &Instance, url: &str) -> String {
        let r = client()
            .post(format!("{}/api/v1/links", on.address))
            .bearer_auth(&self.key)
            .json(&json!({ "url": url }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.unwrap();
        body["code"].as_str().unwrap().to_owned()
    }

    async fn delete(&self, on: &Instance, code: &str) {
        let r = client()
            .delete(format!("{}/api/v1/links/{code}", on.address))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
}

async fn follow(on: &Instance, code: &str) -> u16 {
    client()
        .get(format!("{}/{code}", on.address))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn readiness(on: &Instance) -> Value {
    client()
        .get(format!("{}/readyz", on.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until every instance listens for Redis invalidations.
async fn wait_subscribed(instances: &[&Instance]) {
    for i in instances {
        let deadline = Instant::now() + Duration::from_secs(10);
        while readiness(i).await["redis"] != "ok" {
            assert!(Instant::now() < deadline, "instance never subscribed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn redis_conn(redis: &Server) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: ./scripts/test runs it"]
async fn redirects_are_served_through_redis() {
    let Some(redis) = Server::redis("redirects_are_served_through_redis") else {
        return;
    };
    let fleet = Fleet::new().await;
    let a = Instance::start(fleet.store.clone(), |s| {
        s.redis.url = Some(redis.redis_url().into());
        s.ids.worker_id = Some(1);
    })
    .await;
    let code = fleet.create(&a, "https://example.com/through-redis").await;
    assert_eq!(follow(&a, &code).await, 302);
    let mut conn = redis_conn(&redis).await;
    let cached: Option<String> = conn.get(format!("snowlink:link:{code}")).await.unwrap();
    let cached = cached.expect("the link is in redis");
    assert!(
        cached.contains("https://example.com/through-redis"),
        "{cached}"
    );

    // An instance whose own store has never seen the link still redirects:
    // the answer came from Redis.
    let empty = Fleet::new().await;
    let b = Instance::start(empty.store.clone(), |s| {
        s.redis.url = Some(redis.redis_url().into());
        s.ids.worker_id = Some(2);
    })
    .await;
    assert_eq!(follow(&b, &code).await, 302);
    assert_eq!(readiness(&b).await["redis"], "ok");
    a.stop().await;
    b.stop().await;
}

/// Redis behind TLS and a password: the shared tier works through
/// rediss:// with the server's CA; a wrong password leaves the service
/// running without Redis, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: ./scripts/test runs it"]
async fn redis_with_tls_and_a_password() {
    let Some(redis) = Server::redis_tls("redis_with_tls_and_a_password", "s3cret-pw") else {
        return;
    };
    let fleet = Fleet::new().await;
    let a = Instance::start(fleet.store.clone(), |s| {
        s.redis.url = Some(redis.rediss_url("s3cret-pw").into());
        s.redis.ca_file = Some(redis.redis_ca());
        s.ids.worker_id = Some(1);
    })
    .await;
    wait_subscribed(&[&a]).await;
    let code = fleet.create(&a, "https://example.com/over-tls").await;
    assert_eq!(follow(&a, &code).await, 302);
    let client = redis::Client::build_with_tls(
        redis.rediss_url("s3cret-pw"),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(redis.redis_ca()).unwrap()),
        },
    )
    .unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let cached: Option<String> = conn.get(format!("snowlink:link:{code}")).await.unwrap();
    assert!(
        cached.is_some_and(|c| c.contains("over-tls")),
        "the entry went over TLS"
    );
    a.stop().await;

    let wrong = Instance::start(fleet.store.clone(), |s| {
        s.redis.url = Some(redis.rediss_url("wrong").into());
        s.redis.ca_file = Some(redis.redis_ca());
        s.ids.worker_id = Some(2);
    })
    .await;
    assert_eq!(follow(&wrong, &code).await, 302, "the store still answers");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ready = readiness(&wrong).await;
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_ne!(ready["redis"], "ok", "{ready}");
    wrong.stop().await;
}

/// Whoever can write to Redis cannot send visitors elsewhere: an entry that
/// is not a valid link of its code is ignored and the store answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: ./scripts/test runs it"]
async fn forged_redis_entries_are_not_served() {
    let Some(redis) = Server::redis("forged_redis_entries_are_not_served") else {
        return;
    };
    let fleet = Fleet::new().await;
    let a = Instance::start(fleet.store.clone(), |s| {
        s.redis.url = Some(redis.redis_url().into());
        s.ids.worker_id = Some(1);
    })
    .await;
    let code = fleet.create(&a, "https://example.com/genuine").await;
    let mut conn = redis_conn(&redis).await;
    let genuine: String = conn.get(format!("snowlink:link:{code}")).await.unwrap();
    let forged = [
        genuine.replace("https://example.com/genuine", "javascript:alert(1)"),
        genuine.replace(
            "https://example.com/genuine",
            "https://example.com/\\r\\nSet-Cookie: x=1",
        ),
        genuine.replace("\"redirect\":302", "\"redirect\":200"),
        genuine.replace(&format!("\"code\":\"{code}\""), "\"code\":\"other\""),
        "{not json".to_owned(),
    ];
    for (i, entry) in forged.iter().enumerate() {
        assert_ne!(entry, &genuine, "forgery {i} changed something");
        let _: () = conn
            .set(format!("snowlink:link:{code}"), entry)
            .await
            .unwrap();
        // A fresh instance (empty in-process cache) on the same store.
        let b = Instance::start(fleet.store.clone(), |s| {
            s.redis.url = Some(redis.redis_url().into());
            s.ids.worker_id = Some(10 + i as u64);
        })
        .await;
        let r = client()
            .get(format!("{}/{code}", b.address))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302, "forgery {i}: {entry}");
        assert_eq!(
            r.headers()["location"],
            "https://example.com/genuine",
            "forgery {i}: {entry}"
        );
        b.stop().await;
    }
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: ./scripts/test runs it"]
async fn a_delete_on_one_instance_stops_redirects_on_every_instance() {
    let Some(redis) = Server::redis("a_delete_on_one_instance_stops_redirects_on_every_instance")
    else {
        return;
    };
    let fleet = Fleet::new().await;
    let a = Instance::start(fleet.store.clone(), |s| {
        s.redis.url = Some(redis.redis_url().into())
    })
    .await;
    let b = Instance::start(fleet.store.clone(), |s| {
        s.redis.url = Some(redis.redis_url().into())
    })
    .await;
    // Both subscribed before the delete.
    wait_subscribed(&[&a, &b]).await;
    let code = fleet.create(&a, "https://example.com/soon-gone").await;
    // Both now hold the link in their in-process caches (TTL 300 s).
    assert_eq!(follow(&a, &code).await, 302);
    assert_eq!(follow(&b, &code).await, 302);
    assert_eq!(follow(&b, &code).await, 302);

    fleet.delete(&a, &code).await;
    let deleted_at = Instant::now();
    let mut b_status = follow(&b, &code).await;
    while b_status == 302 && deleted_at.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        b_status = follow(&b, &code).await;
    }
    assert_eq!(b_status, 410, "the other instance stopped redirecting");
    assert_eq!(follow(&a, &code).await, 410);
    a.stop().await;
    b.stop().await;
}

/// A delete made while Redis stalls (its circuit open on both instances)
/// still stops redirects on every instance once Redis answers: the change is
/// retried until Redis records it, instead of leaving the old entry there
/// for the other instance to reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: ./scripts/test runs it"]
async fn a_delete_during_a_redis_stall_stops_redirects_everywhere() {
    let Some(redis) = Server::redis("a_delete_during_a_redis_stall_stops_redirects_everywhere")
    else {
        return;
    };
    let fleet = Fleet::new().await;
    let a = Instance::start(fleet.store.clone(), |s| {
        s.redis.url = Some(redis.redis_url().into())
    })
    .await;
    let b = Instance::start(fleet.store.clone(), |s| {
        s.redis.url = Some(redis.redis_url().into())
    })
    .await;
    wait_subscribed(&[&a, &b]).await;
    let code = fleet.create(&a, "https://example.com/stall").await;
    assert_eq!(follow(&a, &code).await, 302);
    assert_eq!(follow(&b, &code).await, 302);
    // Redis stalls for 600 ms (SIGSTOP), long enough for every call to time
    // out and open the circuit on both instances.
    let pid = redis.pid().expect("redis runs") as i32;
    // SAFETY: kill only sends a signal to the Redis server the test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let resume = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(600)).await;
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // B's cached copy expires from its process cache meanwhile: a reload
    // would find the old entry in Redis.
    fleet.delete(&a, &code).await;
    resume.await.unwrap();
    let deleted_at = Instant::now();
    let mut statuses = (follow(&a, &code).await, follow(&b, &code).await);
    while statuses != (410, 410) && deleted_at.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        statuses = (follow(&a, &code).await, follow(&b, &code).await);
    }
    assert_eq!(statuses, (410, 410), "both instances stopped redirecting");
    // And it stays so: nothing in Redis brings the link back.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(follow(&b, &code).await, 410);
    let mut conn = redis_conn(&redis).await;
    let entry: Option<String> = conn.get(format!("snowlink:link:{code}")).await.unwrap();
    if let Some(entry) = entry {
        assert!(
            !entry.contains("\"deleted_at\":null"),
            "stale entry: {entry}"
        );
    }
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: ./scripts/test runs it"]
async fn redis_restarted_mid_load_fails_no_redirect() {
    let Some(mut redis) = Server::redis("redis_restarted_mid_load_fails_no_redirect") else {
        return;
    };
    let fleet = Fleet::new().await;
    let a = Arc::new(
        Instance::start(fleet.store.clone(), |s| {
            s.redis.url = Some(redis.redis_url().into());
            s.ids.worker_id = Some(3);
            // Short local TTL so the load keeps going through Redis.
            s.cache.ttl_secs = 1;
        })
        .await,
    );
    let mut codes = Vec::new();
    for i in 0..20 {
        codes.push(fleet.create(&a, &format!("https://example.com/{i}")).await);
    }
    let codes = Arc::new(codes);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for t in 0..4 {
        let (a, codes, stop, done, failed) = (
            a.clone(),
            codes.clone(),
            stop.clone(),
            done.clone(),
            failed.clone(),
        );
        load.push(tokio::spawn(async move {
            let mut i = t;
            while !stop.load(Ordering::Relaxed) {
                let status = follow(&a, &codes[i % codes.len()]).await;
                if status != 302 {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                done.fetch_add(1, Ordering::Relaxed);
                i += 7;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.kill();
    let before_outage = done.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during_outage = done.load(Ordering::Relaxed) - before_outage;
    assert_eq!(readiness(&a).await["status"], "degraded");
    redis.start();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    assert!(
        during_outage > 0,
        "redirects were served while redis was down"
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no redirect failed across the restart ({} served)",
        done.load(Ordering::Relaxed)
    );
    // The cache comes back by itself.
    let deadline = Instant::now() + Duration::from_secs(15);
    while readiness(&a).await["status"] != "ready" {
        assert!(Instant::now() < deadline, "redis tier never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let code = fleet.create(&a, "https://example.com/after").await;
    assert_eq!(follow(&a, &code).await, 302);
    let mut conn = redis_conn(&redis).await;
    let cached: Option<String> = conn.get(format!("snowlink:link:{code}")).await.unwrap();
    assert!(cached.is_some(), "new entries reach redis again");
    Arc::into_inner(a).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: ./scripts/test runs it"]
async fn instances_lease_distinct_worker_ids_and_never_share_a_code() {
    let Some(redis) = Server::redis("instances_lease_distinct_worker_ids_and_never_share_a_code")
    else {
        return;
    };
    let fleet = Arc::new(Fleet::new().await);
    let a = Arc::new(
        Instance::start(fleet.store.clone(), |s| {
            s.redis.url = Some(redis.redis_url().into())
        })
        .await,
    );
    let b = Arc::new(
        Instance::start(fleet.store.clone(), |s| {
            s.redis.url = Some(redis.redis_url().into())
        })
        .await,
    );
    assert_ne!(a.worker_id, b.worker_id);
    let mut conn = redis_conn(&redis).await;
    for id in [a.worker_id, b.worker_id] {
        let ttl: i64 = conn.pttl(format!("snowlink:worker:{id}")).await.unwrap();
        assert!(ttl > 0, "lease of worker {id} has a TTL: {ttl}");
    }
    let mut tasks = Vec::new();
    for inst in [a.clone(), b.clone(), a.clone(), b.clone()] {
        let fleet = fleet.clone();
        tasks.push(tokio::spawn(async move {
            let mut codes = Vec::new();
            for i in 0..150 {
                codes.push(
                    fleet
                        .create(&inst, &format!("https://example.com/{i}"))
                        .await,
                );
            }
            codes
        }));
    }
    let mut all = HashSet::new();
    let mut total = 0;
    for t in tasks {
        for c in t.await.unwrap() {
            total += 1;
            all.insert(c);
        }
    }
    assert_eq!(all.len(), total, "every code is distinct");
    let (a_id, b_id) = (a.worker_id, b.worker_id);
    Arc::into_inner(a).unwrap().stop().await;
    Arc::into_inner(b).unwrap().stop().await;
    // Released on shutdown.
    for id in [a_id, b_id] {
        let exists: bool = conn.exists(format!("snowlink:worker:{id}")).await.unwrap();
        assert!(!exists, "lease {id} released");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_worker_id_lease_the_service_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    // Nothing listens there.
    settings.redis.url =
        Some(format!("redis://127.0.0.1:{}", snowlink_testkit::free_port()).into());
    let err = match Application::build(settings).await {
        Ok(_) => panic!("started without a worker id"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("worker id"), "{err}");
}

/// Every row of the lake's `clicks` table, through its Delta log.
async fn lake_events(lake: &Path) -> Vec<snowlink_events::ClickEvent> {
    let lake = snowlink_lake::Lake::open(lake.to_str().unwrap()).unwrap();
    snowlink_lake::read_all_clicks(&lake).await.unwrap()
}

fn aggregate(brokers: &str, lake: &Path) -> anyhow::Result<()> {
    let cli = snowlink_aggregate::Cli::parse_from([
        "snowlink-aggregate",
        "--kafka-brokers",
        brokers,
        "--group",
        "test-lake",
        "--lake",
        lake.to_str().unwrap(),
        "--once",
        "--no-progress",
        "--batch-wait",
        "500ms",
    ]);
    snowlink_aggregate::run(cli)
}

async fn metric(on: &Instance, name: &str) -> u64 {
    let text = crate::helpers::metrics_text(&on.address).await;
    crate::helpers::sample(&text, name).map_or(0, |v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka: ./scripts/test runs it"]
async fn clicks_sent_while_kafka_is_down_reach_the_lake_exactly_once() {
    let Some(mut kafka) =
        Server::kafka("clicks_sent_while_kafka_is_down_reach_the_lake_exactly_once")
    else {
        return;
    };
    kafka.create_topic("clicks", 3);
    let fleet = Fleet::new().await;
    let a = Instance::start(fleet.store.clone(), |s| {
        s.kafka.brokers = Some(kafka.bootstrap());
        s.ids.worker_id = Some(5);
        // Shorter than the outage below, so batches fail and are resent.
        s.kafka.message_timeout_ms = 1_000;
    })
    .await;
    let mut codes = Vec::new();
    for i in 0..12 {
        codes.push(fleet.create(&a, &format!("https://example.com/k{i}")).await);
    }
    let mut sent: HashMap<String, u64> = HashMap::new();
    let mut add = |counts: HashMap<String, u64>| {
        for (c, n) in counts {
            *sent.entry(c).or_default() += n;
        }
    };
    let load = |round: usize, stop: Arc<AtomicBool>| {
        tokio::spawn(click_until(a.address.clone(), codes.clone(), round, stop))
    };
    // Load before, during and after the broker's death.
    let stop = Arc::new(AtomicBool::new(false));
    let running = load(0, stop.clone());
    tokio::time::sleep(Duration::from_millis(700)).await;
    kafka.kill();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        metric(&a, "snowlink_kafka_failures_total").await > 0,
        "deliveries failed while the broker was down"
    );
    kafka.start();
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    add(running.await.unwrap());
    let total: u64 = sent.values().sum();
    assert!(total > 100, "the load ran: {total} clicks");

    let deadline = Instant::now() + Duration::from_secs(90);
    while metric(&a, "snowlink_kafka_forwarded_total").await < total {
        assert!(
            Instant::now() < deadline,
            "only {} of {total} clicks forwarded",
            metric(&a, "snowlink_kafka_forwarded_total").await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    a.stop().await;

    // The topic, as Kafka's own client library reads it: every click once.
    let brokers = kafka.bootstrap();
    let in_topic = tokio::task::spawn_blocking(move || {
        snowlink_testkit::topic_clicks_read_independently(&brokers, "clicks")
    })
    .await
    .unwrap();
    if let Some(in_topic) = in_topic {
        let ids: HashSet<i64> = in_topic.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids.len(), in_topic.len(), "no event twice in the topic");
        assert_eq!(
            count_codes(in_topic.iter().map(|(_, c)| c)),
            sent,
            "exact counts per link in the topic"
        );
    }

    let lake = tempfile::tempdir().unwrap();
    let brokers = kafka.bootstrap();
    let lake_path = lake.path().to_path_buf();
    tokio::task::spawn_blocking(move || aggregate(&brokers, &lake_path))
        .await
        .unwrap()
        .expect("aggregate from kafka");
    let events = lake_events(lake.path()).await;
    let ids: HashSet<i64> = events.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), events.len(), "no event twice");
    assert_eq!(
        count_codes(events.iter().map(|e| &e.code)),
        sent,
        "exact counts per link"
    );

    // The lake, as Python's deltalake and DuckDB read it.
    if let Some((rows, duckdb_rows)) =
        snowlink_testkit::delta_clicks_read_independently(lake.path().to_str().unwrap(), &[])
    {
        assert_eq!(duckdb_rows, total, "DuckDB counts every click once");
        let ids: HashSet<i64> = rows.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids.len(), rows.len(), "no event twice for pyarrow");
        assert_eq!(
            count_codes(rows.iter().map(|(_, c)| c)),
            sent,
            "pyarrow's counts per link"
        );
    }

    // A second run finds nothing new and changes nothing.
    let brokers = kafka.bootstrap();
    let lake_path = lake.path().to_path_buf();
    tokio::task::spawn_blocking(move || aggregate(&brokers, &lake_path))
        .await
        .unwrap()
        .expect("second aggregate");
    assert_eq!(lake_events(lake.path()).await.len(), events.len());
    let daily = lake.path().join("daily");
    assert!(daily.is_dir(), "daily rollups written");
}

/// Clicks per code.
fn count_codes<'a>(codes: impl Iterator<Item = &'a String>) -> HashMap<String, u64> {
    let mut per_code: HashMap<String, u64> = HashMap::new();
    for c in codes {
        *per_code.entry(c.clone()).or_default() += 1;
    }
    per_code
}

/// Follows `codes` in turn until `stop`, requiring a 302 every time;
/// returns the clicks per code.
async fn click_until(
    address: String,
    codes: Vec<String>,
    round: usize,
    stop: Arc<AtomicBool>,
) -> HashMap<String, u64> {
    let http = client();
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let code = &codes[(i * 5 + round) % codes.len()];
        let r = http
            .get(format!("{address}/{code}"))
            .header(
                "user-agent",
                "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302, "redirects never wait for kafka");
        *counts.entry(code.clone()).or_default() += 1;
        i += 1;
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Kafka: ./scripts/test runs it"]
async fn resent_events_are_dropped_by_the_aggregate() {
    let Some(kafka) = Server::kafka("resent_events_are_dropped_by_the_aggregate") else {
        return;
    };
    kafka.create_topic("clicks", 2);
    let now = snowlink::now_ms();
    // seq 1..=30 once, then 11..=30 again (a resend after a failure), from
    // one spool.
    let sends: Vec<i64> = (1..=30).chain(11..=30).collect();
    let events: Vec<(i64, snowlink_events::ClickEvent)> = sends
        .into_iter()
        .map(|seq| {
            (
                seq,
                snowlink_events::ClickEvent {
                    schema_version: snowlink_events::SCHEMA_VERSION,
                    event_id: seq,
                    code: format!("c{}", seq % 4),
                    ts: now,
                    referrer: None,
                    referrer_host: None,
                    user_agent: None,
                    browser: None,
                    os: None,
                    device: None,
                    is_bot: false,
                    country: None,
                    visitor_id: "0f".into(),
                },
            )
        })
        .collect();
    let bootstrap = kafka.bootstrap();
    tokio::task::spawn_blocking(move || {
        snowlink_testkit::produce_clicks(&bootstrap, "clicks", "0123456789abcdef", events)
    })
    .await
    .unwrap();
    let lake = tempfile::tempdir().unwrap();
    let brokers = kafka.bootstrap();
    let lake_path = lake.path().to_path_buf();
    tokio::task::spawn_blocking(move || aggregate(&brokers, &lake_path))
        .await
        .unwrap()
        .expect("aggregate");
    let mut ids: Vec<i64> = lake_events(lake.path())
        .await
        .iter()
        .map(|e| e.event_id)
        .collect();
    ids.sort();
    assert_eq!(ids, (1..=30).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: ./scripts/test runs it"]
async fn a_worker_lease_stops_issuing_before_it_can_expire() {
    use snowlink::lease::WorkerLease;

    let Some(redis) = Server::redis("a_worker_lease_stops_issuing_before_it_can_expire") else {
        return;
    };
    let client = redis::Client::open(redis.redis_url()).unwrap();
    let manager = redis::aio::ConnectionManager::new(client).await.unwrap();
    let ttl = Duration::from_secs(3);
    // No heartbeat: the lease is left to run out.
    let lease = WorkerLease::acquire(manager, 7, ttl).await.unwrap();
    assert!(lease.worker_id() <= 7);
    assert!(lease.check().is_ok());
    let key = format!("snowlink:worker:{}", lease.worker_id());
    let mut conn = redis_conn(&redis).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while lease.check().is_ok() {
        assert!(Instant::now() < deadline, "the lease never stopped issuing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The moment it stops, Redis still holds the key: nobody else can have
    // taken the id yet.
    let left: i64 = conn.pttl(&key).await.unwrap();
    assert!(left > 0, "the key must outlive issuing; {left} ms left");
    // A renewal makes it usable again.
    assert!(lease.renew().await);
    assert!(lease.check().is_ok());
    // Another holder takes over the key: the next renewal stops issuing.
    let _: () = conn.set(&key, "someone-else").await.unwrap();
    assert!(!lease.renew().await);
    assert!(lease.check().is_err());
}

/// A fleet whose links live on a CQL engine: the test kit's Cassandra node
/// (or the one given), in a keyspace of its own.
async fn cql_fleet(node: &str, test: &str) -> Fleet {
    let mut config = snowlink_store_scylla::ScyllaConfig::new(vec![node.to_owned()]);
    config.keyspace = snowlink_testkit::unique_keyspace(test);
    config.request_timeout = Duration::from_secs(2);
    let session = snowlink_store_scylla::connect(&config).await.unwrap();
    snowlink_store_scylla::migrate(&session, &config)
        .await
        .unwrap();
    let store: Arc<dyn LinkStore> = Arc::new(
        snowlink_store_scylla::ScyllaStore::with_session(session, &config.keyspace)
            .await
            .unwrap(),
    );
    let (key, record) =
        snowlink::keys::mint_key(&snowlink::keys::KeySpec::named("fleet"), snowlink::now_ms());
    store.create_api_key(&record).await.unwrap();
    Fleet {
        store,
        key,
        _dir: tempfile::tempdir().unwrap(),
    }
}

/// Two instances sharing Cassandra, Redis and Kafka: a link created on one
/// redirects on the other, and a delete on either is 410 on both at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server, Apache Kafka, Apache Cassandra: ./scripts/test runs it"]
async fn two_instances_share_cassandra_redis_and_kafka() {
    let test = "two_instances_share_cassandra_redis_and_kafka";
    let Some(cassandra) = snowlink_testkit::shared_cassandra(test) else {
        return;
    };
    let Some(redis) = Server::redis(test) else {
        return;
    };
    let Some(kafka) = Server::kafka(test) else {
        return;
    };
    kafka.create_topic("clicks", 3);
    let fleet = cql_fleet(&cassandra.cql_node(), test).await;
    let shared = |s: &mut Settings| {
        s.redis.url = Some(redis.redis_url().into());
        s.kafka.brokers = Some(kafka.bootstrap());
    };
    let a = Instance::start(fleet.store.clone(), shared).await;
    let b = Instance::start(fleet.store.clone(), shared).await;
    assert_ne!(a.worker_id, b.worker_id, "leased worker ids differ");
    wait_subscribed(&[&a, &b]).await;
    let mut codes = Vec::new();
    for i in 0..10 {
        let on = if i % 2 == 0 { &a } else { &b };
        codes.push(
            fleet
                .create(on, &format!("https://example.com/cql/{i}"))
                .await,
        );
    }
    for code in &codes {
        assert_eq!(follow(&a, code).await, 302);
        assert_eq!(follow(&b, code).await, 302);
    }
    fleet.delete(&b, &codes[0]).await;
    fleet.delete(&a, &codes[1]).await;
    let deleted_at = Instant::now();
    loop {
        let s = [
            follow(&a, &codes[0]).await,
            follow(&b, &codes[0]).await,
            follow(&a, &codes[1]).await,
            follow(&b, &codes[1]).await,
        ];
        if s == [410; 4] {
            break;
        }
        assert!(
            deleted_at.elapsed() < Duration::from_secs(1),
            "a delete is 410 on both instances within one second: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The links are in Cassandra itself, not only in caches.
    for code in &codes[2..] {
        assert!(fleet.store.get_link(code).await.unwrap().is_some());
    }
    a.stop().await;
    b.stop().await;
}

/// Cassandra killed with SIGKILL mid-load: cached links keep redirecting,
/// creates answer 503 `store_unavailable` within a bound (never 500, never a
/// hang), `/readyz` says not ready; after a restart, creates succeed and no
/// acknowledged link is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Apache Cassandra: ./scripts/test runs it"]
async fn cassandra_killed_mid_load_loses_no_acknowledged_link() {
    let test = "cassandra_killed_mid_load_loses_no_acknowledged_link";
    if std::env::var_os("TEST_LOG").is_some() {
        snowlink::telemetry::init(snowlink::configuration::LogFormat::Pretty, "info");
    }
    let Some(mut cassandra) = Server::cassandra(test) else {
        return;
    };
    let fleet = cql_fleet(&cassandra.cql_node(), test).await;
    let a = Instance::start(fleet.store.clone(), |_| {}).await;
    let http = client();
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    // A stream of creates, running while the node is killed.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (address, key) = (a.address.clone(), fleet.key.clone());
        let (acknowledged, stop, http) = (acknowledged.clone(), stop.clone(), http.clone());
        tokio::spawn(async move {
            let mut statuses: HashMap<u16, u64> = HashMap::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let r = http
                    .post(format!("{address}/api/v1/links"))
                    .bearer_auth(&key)
                    .timeout(Duration::from_secs(15))
                    .json(&json!({ "url": format!("https://example.com/load/{i}") }))
                    .send()
                    .await
                    .expect("every create is answered within 15 s");
                let status = r.status().as_u16();
                *statuses.entry(status).or_default() += 1;
                if status == 201 {
                    let body: Value = r.json().await.unwrap();
                    acknowledged
                        .lock()
                        .unwrap()
                        .push(body["code"].as_str().unwrap().to_owned());
                } else {
                    let body: Value = r.json().await.unwrap();
                    assert_eq!(status, 503, "{body}");
                    assert_eq!(body["error"]["code"], "store_unavailable");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            statuses
        })
    };
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let cached: Vec<String> = acknowledged.lock().unwrap()[..5].to_vec();
    for code in &cached {
        assert_eq!(follow(&a, code).await, 302);
    }
    cassandra.kill();
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    for code in &cached {
        assert_eq!(follow(&a, code).await, 302, "cached links keep redirecting");
    }
    let ready = http
        .get(format!("{}/readyz", a.address))
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503, "not ready while the store is down");
    cassandra.start();
    // The driver reconnects by itself; creates succeed again.
    let deadline = Instant::now() + Duration::from_secs(60);
    let before = acknowledged.lock().unwrap().len();
    while acknowledged.lock().unwrap().len() < before + 20 {
        assert!(Instant::now() < deadline, "creates never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let statuses = writer.await.unwrap();
    assert!(
        statuses.get(&503).copied().unwrap_or(0) > 0,
        "creates failed while the node was down: {statuses:?}"
    );
    let acknowledged = acknowledged.lock().unwrap().clone();
    for code in &acknowledged {
        assert!(
            fleet.store.get_link(code).await.unwrap().is_some(),
            "acknowledged link {code} is in Cassandra"
        );
    }
    a.stop().await;
}

/// The management API on a CQL engine: two owners, listing from the owner's
/// partition, and a change made on one instance redirecting to the new
/// target on the other at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server, Apache Cassandra: ./scripts/test runs it"]
async fn owners_listing_and_edits_work_on_cassandra() {
    let test = "owners_listing_and_edits_work_on_cassandra";
    let Some(cassandra) = snowlink_testkit::shared_cassandra(test) else {
        return;
    };
    let Some(redis) = Server::redis(test) else {
        return;
    };
    let fleet = cql_fleet(&cassandra.cql_node(), test).await;
    let other = {
        let spec = snowlink::keys::KeySpec {
            owner: Some("other-team".into()),
            ..snowlink::keys::KeySpec::named("other")
        };
        let (key, record) = snowlink::keys::mint_key(&spec, snowlink::now_ms());
        fleet.store.create_api_key(&record).await.unwrap();
        key
    };
    let shared = |s: &mut Settings| s.redis.url = Some(redis.redis_url().into());
    let a = Instance::start(fleet.store.clone(), shared).await;
    let b = Instance::start(fleet.store.clone(), shared).await;
    wait_subscribed(&[&a, &b]).await;
    let mut codes = Vec::new();
    for i in 0..9 {
        codes.push(
            fleet
                .create(&a, &format!("https://example.com/owned/{i}"))
                .await,
        );
    }
    codes.reverse();
    let api = |on: &Instance, method: reqwest::Method, path: &str, key: &str| {
        client()
            .request(method, format!("{}/api/v1{path}", on.address))
            .bearer_auth(key)
    };
    // Every page from the owner's partition, newest first, exactly once.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page: Value = api(
            &b,
            reqwest::Method::GET,
            &format!("/links?limit=4{cursor}"),
            &fleet.key,
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        for link in page["links"].as_array().unwrap() {
            seen.push(link["code"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, codes);
    // The other owner sees none of them and cannot touch them.
    let page: Value = api(&a, reqwest::Method::GET, "/links", &other)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["links"], json!([]));
    let r = api(
        &a,
        reqwest::Method::PATCH,
        &format!("/links/{}", codes[0]),
        &other,
    )
    .json(&json!({"url": "https://evil.example/"}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
    // Served from b's cache, then changed on a: b follows the new target.
    assert_eq!(follow(&b, &codes[0]).await, 302);
    let r = api(&a, reqwest::Method::PATCH, &format!("/links/{}", codes[0]), &fleet.key)
        .json(&json!({"url": "https://example.com/moved", "redirect": 308, "expires_at": "2030-01-01T00:00:00Z", "tags": ["moved"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = client()
            .get(format!("{}/{}", b.address, codes[0]))
            .send()
            .await
            .unwrap();
        if r.status() == 308 {
            assert_eq!(r.headers()["location"], "https://example.com/moved");
            break;
        }
        assert!(Instant::now() < deadline, "b still serves the old target");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let page: Value = api(&a, reqwest::Method::GET, "/links?tag=moved", &fleet.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["links"][0]["code"], codes[0]);
    assert_eq!(page["links"][0]["expires_at"], "2030-01-01T00:00:00.000Z");
    // Bulk creates and QR codes on the CQL store too.
    let r = api(&b, reqwest::Method::POST, "/links/bulk", &fleet.key)
        .json(&json!({"links": [
            {"url": "https://example.com/bulk/1", "alias": "cql-bulk-1"},
            {"url": "https://example.com/bulk/2", "alias": "cql-bulk-1"},
            {"url": "https://example.com/bulk/3"},
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let statuses: Vec<u64> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [201, 409, 201]);
    assert_eq!(follow(&a, "cql-bulk-1").await, 302);
    let r = api(
        &a,
        reqwest::Method::GET,
        "/links/cql-bulk-1/qr?format=svg",
        &fleet.key,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("<svg"));
    a.stop().await;
    b.stop().await;
}

/// With Redis, a key's bucket is shared: requests on either instance draw
/// from the same tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs redis-server: ./scripts/test runs it"]
async fn a_keys_rate_limit_is_shared_by_every_instance() {
    let Some(redis) = Server::redis("a_keys_rate_limit_is_shared_by_every_instance") else {
        return;
    };
    let fleet = Fleet::new().await;
    let spec = snowlink::keys::KeySpec {
        rate_limit: Some(4),
        ..snowlink::keys::KeySpec::named("limited")
    };
    let (key, record) = snowlink::keys::mint_key(&spec, snowlink::now_ms());
    fleet.store.create_api_key(&record).await.unwrap();
    let shared = |s: &mut Settings| s.redis.url = Some(redis.redis_url().into());
    let a = Instance::start(fleet.store.clone(), shared).await;
    let b = Instance::start(fleet.store.clone(), shared).await;
    let get = |on: &Instance| {
        client()
            .get(format!("{}/api/v1/links", on.address))
            .bearer_auth(&key)
            .send()
    };
    let mut statuses = Vec::new();
    for on in [&a, &b, &a, &b, &a, &b] {
        statuses.push(get(on).await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429]);
    a.stop().await;
    b.stop().await;
}
