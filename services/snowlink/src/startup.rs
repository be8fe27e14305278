//! Building and running the service.

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use secrecy::ExposeSecret;
use snowlink_id::CodeCodec;
use snowlink_store::{CodeScheme, LinkStore, SqliteStore};
use snowlink_store_scylla::ScyllaStore;

use crate::cache::{LinkCache, RedisTier};
use crate::components::{Component, Components};
use crate::configuration::Settings;
use crate::error::{json_error, ApiError, ErrorCode};
use crate::ids::IdSource;
use crate::keys::KeyVerifier;
use crate::lease::WorkerId;
use crate::manage::LinkService;
use crate::metrics::Metrics;
use crate::shared_cache::SharedCache;
use crate::state::AppState;
use snowlink_clicks::{ClickPipeline, Forwarder, VisitorKeys};

/// A built, not yet running, service bound to its port.
pub struct Application {
    port: u16,
    metrics_port: Option<u16>,
    server: Server,
    worker: WorkerId,
    /// Every running part, in start order; stopped in reverse.
    components: Arc<Components>,
}

/// Makes the data directory this user's alone (0700), and its databases
/// (the links, the spool, their journals, the rescue file) readable by this
/// user only (0600): they hold every link, key hash and click. SQLite gives
/// a journal the mode of its database.
pub fn keep_private(data_dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let private = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("making {} private", path.display()))
    };
    private(data_dir, 0o700)?;
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let ours = name.starts_with("links.db")
            || name.starts_with(snowlink_spool::FILE_NAME)
            || name.ends_with(".rescue");
        if ours && entry.file_type()?.is_file() {
            private(&entry.path(), 0o600)?;
        }
    }
    Ok(())
}

/// Opens the store the settings select: ScyllaDB when nodes are given, else
/// the embedded database under the data directory.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn LinkStore>> {
    if !settings.scylla.enabled() {
        std::fs::create_dir_all(&settings.base.data_dir).with_context(|| {
            format!(
                "creating data directory {}",
                settings.base.data_dir.display()
            )
        })?;
        // Generated links are found by the id their code decodes to.
        let scheme = code_scheme(code_codec(settings)?);
        let store = SqliteStore::open_with_scheme(settings.links_db(), scheme)
            .with_context(|| format!("opening {}", settings.links_db().display()))?;
        keep_private(&settings.base.data_dir)?;
        Ok(Arc::new(store))
    } else {
        let config = &settings.scylla;
        let store = ScyllaStore::connect(config).await.with_context(|| {
            format!(
                "connecting to ScyllaDB at {} (keyspace {}; has `snowlink migrate` been run?)",
                config.nodes.join(","),
                config.keyspace
            )
        })?;
        Ok(Arc::new(store))
    }
}

impl Application {
    /// Opens the configured store and binds `settings.http.listen` (port 0 picks
    /// a free port).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let store = open_store(&settings).await?;
        Self::build_with_store(settings, store).await
    }

    /// Builds the service over any [`LinkStore`]. If any step fails, every
    /// part already started is stopped before the error is returned.
    pub async fn build_with_store(
        settings: Settings,
        store: Arc<dyn LinkStore>,
    ) -> anyhow::Result<Self> {
        let components = Arc::new(Components::default());
        match Self::start(settings, store, components.clone()).await {
            Ok(app) => Ok(app),
            Err(e) => {
                components.shutdown().await;
                Err(e)
            }
        }
    }

    async fn start(
        settings: Settings,
        store: Arc<dyn LinkStore>,
        components: Arc<Components>,
    ) -> anyhow::Result<Self> {
        // Settings that can fail are read before anything starts.
        let url_policy = settings.url_policy()?;
        let stats = crate::stats::StatsEngine::from_settings(&settings.stats)?;
        let metrics = Arc::new(Metrics::new());
        let started = |part: Arc<dyn Component>| {
            metrics.register(|registry| part.register_metrics(registry));
            components.push(part);
        };
        let store = metrics.timed_store(store);
        let codec = code_codec(&settings)?;
        let shared = match settings.redis.client()? {
            Some(client) => Some(Arc::new(SharedCache::new(
                client,
                settings.cache.ttl(),
                settings.cache.negative_ttl(),
            )?)),
            None => None,
        };
        let ids = IdSource::start(&settings, store.clone(), shared.as_deref(), &started).await?;
        let worker = ids.worker().clone();
        // The forwarder starts before the spooler so that it stops after
        // it: clicks drained into the spool at shutdown are still forwarded.
        if settings.kafka.brokers.is_some() && settings.clicks.enabled {
            let forwarder = Forwarder::start(&settings.spool_db(), settings.kafka.clone())
                .context("starting the kafka forwarder")?;
            started(Arc::new(forwarder));
        }
        let clicks = if settings.clicks.enabled {
            let pipeline = Arc::new(
                ClickPipeline::start(
                    &settings.spool_db(),
                    VisitorKeys::open(settings.visitor_key_dir()).with_context(|| {
                        format!("opening {}", settings.visitor_key_dir().display())
                    })?,
                    Arc::new(ids.clone()),
                    settings.clicks.queue_capacity as usize,
                )
                .with_context(|| format!("opening {}", settings.spool_db().display()))?,
            );
            let sender = pipeline.sender();
            started(pipeline);
            keep_private(&settings.base.data_dir)?;
            Some(sender)
        } else {
            None
        };
        let mut cache = LinkCache::new(
            store.clone(),
            settings.cache.capacity,
            settings.cache.ttl(),
            settings.cache.negative_ttl(),
        )
        .with_metrics(metrics.cache.clone());
        let limiter = crate::ratelimit::RateLimiter::new(shared.as_ref().map(|s| s.connection()));
        if let Some(shared) = shared {
            cache = cache.with_shared(shared);
        }
        if let Some(tier) = RedisTier::start(&cache) {
            started(Arc::new(tier));
        }
        let links = LinkService::new(store.clone(), ids, codec, url_policy, Some(cache.clone()));
        let state = web::Data::new(AppState {
            cache,
            keys: KeyVerifier::new(store.clone(), settings.http.auth_failures_per_minute),
            limiter,
            key_rate_limit: settings.http.key_rate_limit,
            links,
            store,
            short_url_base: settings.short_url_base(),
            clicks,
            client_ip_header: settings.http.client_ip_header.clone(),
            country_header: settings.http.country_header.clone(),
            stats,
            components: components.clone(),
            metrics: metrics.clone(),
            metrics_here: settings.http.metrics_listen.is_none(),
        });

        let metrics_port = match settings.http.metrics_listen {
            Some(addr) => {
                let part = MetricsServer::start(addr, metrics.clone())?;
                let port = part.port;
                started(Arc::new(part));
                Some(port)
            }
            None => None,
        };
        let json_limit = (settings.http.max_url_length * 4).max(16 * 1024);
        let listener = TcpListener::bind(settings.http.listen)
            .with_context(|| format!("binding {}", settings.http.listen))?;
        let port = listener.local_addr()?.port();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(
                    web::JsonConfig::default()
                        .limit(json_limit)
                        .content_type_required(false)
                        .error_handler(|err, _req| json_error(err).into()),
                )
                .app_data(web::QueryConfig::default().error_handler(|err, _req| {
                    ApiError::new(ErrorCode::InvalidQuery, format!("invalid query: {err}")).into()
                }))
                .wrap(actix_web::middleware::from_fn(
                    crate::routes::record_requests,
                ))
                .configure(crate::routes::configure)
                .default_service(web::to(crate::routes::fallback))
        })
        // Many clients connecting at once must queue, not be refused.
        .backlog(4096)
        .listen(listener)?
        .shutdown_timeout(10);
        if let Some(workers) = settings.http.workers {
            server = server.workers(workers);
        }
        tracing::info!(
            port,
            metrics_port,
            data_dir = %settings.base.data_dir.display(),
            public_url = %settings.http.public_url,
            worker_id = worker.id(),
            leased = matches!(worker, WorkerId::Leased(_)),
            store = if settings.scylla.enabled() { "scylla" } else { "embedded" },
            redis = settings.redis.url.is_some(),
            kafka = settings.kafka.brokers.is_some(),
            keyed_codes = !settings.ids.sequential_codes,
            parts = ?components.names(),
            "snowlink listening"
        );
        Ok(Self {
            port,
            metrics_port,
            server: server.run(),
            worker,
            components,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port serving `/metrics` alone, when `metrics_listen` is set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_port
    }

    /// The Snowflake worker id this instance issues ids with.
    pub fn worker_id(&self) -> u64 {
        self.worker.id()
    }

    /// A handle to stop the server gracefully from elsewhere.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGINT/SIGTERM or [`ServerHandle::stop`].
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(std::future::pending()).await
    }

    /// Serves until `shutdown` completes, SIGINT/SIGTERM, or
    /// [`ServerHandle::stop`]. In-flight requests finish first, so every
    /// acknowledged write is on disk; then every part stops, last started
    /// first (queued clicks are written to the spool, the spool is
    /// forwarded for a few seconds, the lease is given back).
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        let handle = self.server.handle();
        let mut server = std::pin::pin!(self.server);
        let served = tokio::select! {
            served = &mut server => served,
            () = shutdown => {
                // The server acts on the stop only while it is polled.
                let (_, served) = tokio::join!(handle.stop(true), server);
                served
            }
        };
        self.components.shutdown().await;
        served?;
        tracing::info!("snowlink stopped");
        Ok(())
    }
}

/// `/metrics` on its own address, as a running part.
struct MetricsServer {
    port: u16,
    handle: ServerHandle,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<std::io::Result<()>>>>,
}

impl MetricsServer {
    fn start(addr: std::net::SocketAddr, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .with_context(|| format!("binding the metrics address {addr}"))?;
        let port = listener.local_addr()?.port();
        let metrics = web::Data::from(metrics);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(metrics.clone())
                .configure(crate::routes::metrics_only)
        })
        .workers(1)
        .disable_signals()
        // A scrape is short: nothing to wait for at shutdown.
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
        Ok(Self {
            port,
            handle: server.handle(),
            task: std::sync::Mutex::new(Some(tokio::spawn(server))),
        })
    }
}

impl Component for MetricsServer {
    fn name(&self) -> &'static str {
        "metrics-server"
    }

    fn shutdown(&self) -> futures::future::BoxFuture<'_, ()> {
        let task = self.task.lock().expect("metrics server").take();
        Box::pin(async move {
            self.handle.stop(true).await;
            if let Some(task) = task {
                let _ = task.await;
            }
        })
    }
}

/// How the embedded store finds a generated link by the id `codec`
/// decodes its code to.
pub fn code_scheme(codec: CodeCodec) -> CodeScheme {
    CodeScheme::new(codec.fingerprint(), move |code| {
        codec
            .decode(code)
            .ok()
            .and_then(|id| i64::try_from(id).ok())
    })
}

/// The codec the settings ask for; in keyed mode with no configured secret,
/// the secret is read from (or created in) `DATA_DIR/code.secret`.
pub fn code_codec(settings: &Settings) -> anyhow::Result<CodeCodec> {
    if settings.ids.sequential_codes {
        return Ok(CodeCodec::sequential());
    }
    let secret = match &settings.ids.code_secret {
        Some(s) => s.expose_secret().as_bytes().to_vec(),
        None => load_or_create_secret(&settings.base.data_dir.join("code.secret"))?,
    };
    Ok(CodeCodec::keyed(&secret))
}

fn load_or_create_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let secret = existing.trim();
        anyhow::ensure!(!secret.is_empty(), "{} is empty", path.display());
        return Ok(secret.as_bytes().to_vec());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(secret.as_bytes())?;
            file.sync_all()?;
            tracing::info!(path = %path.display(), "created a new code secret");
            Ok(secret.into_bytes())
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(std::fs::read_to_string(path)?.trim().as_bytes().to_vec())
        }
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}
