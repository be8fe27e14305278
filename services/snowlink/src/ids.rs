//! Where every id this instance issues comes from: link ids and click event
//! ids alike.
//!
//! * [`IdSource`] checks the worker-id lease before each id, so no id is
//!   issued under a lease that may have passed to another instance.
//! * [`IdFence`] keeps a restarted worker from reissuing ids. Ids are only
//!   issued inside a reservation that runs [`RESERVATION`] ahead of the
//!   clock and is persisted before use: in `DATA_DIR/ids/worker-N` (fsynced,
//!   always available) and in the link store (shared by every instance, so a
//!   worker id that moves to another instance carries its fence with it).
//!   On start, the highest recorded reservation becomes the generator's
//!   floor. A restart with the clock behind it (a fast restart, an NTP step,
//!   a VM snapshot) waits for the clock, up to [`START_WAIT`] before
//!   serving, and beyond that answers 503 `id_unavailable` until the clock
//!   has caught up: for as long as the clock went back, plus at most one
//!   reservation.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use snowlink_id::{Generator, GeneratorConfig, IdError};
use snowlink_store::LinkStore;

use crate::components::{Component, Task};
use crate::configuration::Settings;
use crate::lease::{LeaseError, LeaseHolder, LocalLease, WorkerId, WorkerLease};
use crate::shared_cache::SharedCache;

/// How long a worker-id lease lasts without renewal.
pub const WORKER_LEASE_TTL: Duration = Duration::from_secs(30);

/// How far ahead of the clock ids are reserved.
pub const RESERVATION: Duration = Duration::from_millis(2_000);
/// How often the reservation is extended.
pub const RENEW_EVERY: Duration = Duration::from_millis(250);
/// Longest wait, at start, for a clock behind the last reservation.
pub const START_WAIT: Duration = Duration::from_secs(3);
/// Longest wait for the link store's reservation at start.
const STORE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum IdUnavailable {
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(transparent)]
    Id(#[from] IdError),
}

/// The `ids` section of the settings: how this instance issues ids and
/// turns them into codes.
#[derive(Debug, Clone, clap::Args)]
pub struct IdSettings {
    /// Snowflake worker id, 0..=1023, unique per running instance [default: leased from Redis if --redis-url is set, else the lowest one no other process on DATA_DIR holds].
    #[arg(
        long,
        env = "SNOWLINK_WORKER_ID",
        value_name = "N",
        value_parser = clap::value_parser!(u64).range(0..=snowlink_id::MAX_WORKER_ID as u64)
    )]
    pub worker_id: Option<u64>,
    /// Epoch of id timestamps, RFC 3339. Never change it once links exist.
    #[arg(
        long,
        env = "SNOWLINK_EPOCH",
        value_name = "TIME",
        default_value = "2025-01-01T00:00:00Z"
    )]
    pub epoch: chrono::DateTime<chrono::Utc>,
    /// Milliseconds to wait for a clock that stepped back before failing a create with 503.
    #[arg(
        long,
        env = "SNOWLINK_MAX_CLOCK_WAIT_MS",
        value_name = "MS",
        default_value_t = 100
    )]
    pub max_clock_wait_ms: u64,
    /// Secret that keys the code permutation; every instance sharing a store needs the same one.
    /// Never printed [default: random, kept in DATA_DIR/code.secret].
    #[arg(
        long,
        env = "SNOWLINK_CODE_SECRET",
        value_name = "SECRET",
        hide_env_values = true,
        value_parser = crate::configuration::secret
    )]
    pub code_secret: Option<secrecy::SecretString>,
    /// Issue sequential codes (enumerable, ordered by creation) instead of permuted ones.
    #[arg(
        long,
        env = "SNOWLINK_SEQUENTIAL_CODES",
        value_name = "BOOL",
        num_args = 0..=1,
        default_value_t = false,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub sequential_codes: bool,
    /// Accept a code secret shorter than 32 bytes, or the published demo value, with a shared store.
    /// Only for demos: whoever knows the secret can decode every code into its id and creation time.
    #[arg(
        long,
        env = "SNOWLINK_ALLOW_WEAK_CODE_SECRET",
        value_name = "BOOL",
        num_args = 0..=1,
        default_value_t = false,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    pub allow_weak_code_secret: bool,
}

/// Shortest code secret a shared store accepts.
pub const MIN_SHARED_SECRET: usize = 32;
/// The value published in docker-compose.yml for the demo.
pub const DEMO_CODE_SECRET: &str = "demo-only-change-me";

impl IdSettings {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.epoch.timestamp_millis() < 0 || self.epoch > chrono::Utc::now() {
            anyhow::bail!("epoch {} must be between 1970 and now", self.epoch);
        }
        if self
            .code_secret
            .as_ref()
            .is_some_and(|s| secrecy::ExposeSecret::expose_secret(s).is_empty())
        {
            anyhow::bail!("code_secret must not be empty");
        }
        Ok(())
    }

    /// With a store shared by several instances the secret is long-lived and
    /// guards every code: refuse a short one or the published demo one.
    pub fn validate_shared(&self) -> anyhow::Result<()> {
        let Some(secret) = &self.code_secret else {
            return Ok(());
        };
        let secret = secrecy::ExposeSecret::expose_secret(secret);
        if self.allow_weak_code_secret {
            return Ok(());
        }
        if secret == DEMO_CODE_SECRET {
            anyhow::bail!(
                "code_secret is the published demo value: set your own (for example `openssl rand -hex 32`), \
                 or allow_weak_code_secret (SNOWLINK_ALLOW_WEAK_CODE_SECRET=true) for a demo"
            );
        }
        if secret.len() < MIN_SHARED_SECRET {
            anyhow::bail!(
                "code_secret is {} bytes; a shared store needs at least {MIN_SHARED_SECRET} \
                 (for example `openssl rand -hex 32`), or allow_weak_code_secret for a demo",
                secret.len()
            );
        }
        Ok(())
    }
}

/// Ids of this instance, under its worker id and lease.
#[derive(Clone)]
pub struct IdSource {
    generator: Arc<Generator>,
    worker: WorkerId,
}

impl IdSource {
    pub fn new(generator: Arc<Generator>, worker: WorkerId) -> Self {
        Self { generator, worker }
    }

    /// Starts issuing ids as the settings say, for the service and the
    /// import alike. The worker id is the one given; else one leased from
    /// Redis, when there is one; else the lowest one no other process on
    /// this data directory holds ([`LocalLease`]). The parts this starts
    /// (the lease's renewal, the fence's) are handed to `started`.
    pub async fn start(
        settings: &Settings,
        store: Arc<dyn LinkStore>,
        shared: Option<&SharedCache>,
        started: &dyn Fn(Arc<dyn Component>),
    ) -> anyhow::Result<Self> {
        let max = snowlink_id::MAX_WORKER_ID as u64;
        let worker = match (settings.ids.worker_id, shared) {
            (Some(id), _) => WorkerId::Fixed(id),
            (None, Some(shared)) => {
                let lease =
                    WorkerLease::acquire(shared.connection(), max, WORKER_LEASE_TTL).await?;
                started(Arc::new(LeaseHolder::start(lease.clone())));
                WorkerId::Leased(lease)
            }
            (None, None) => {
                WorkerId::Local(Arc::new(LocalLease::acquire(&settings.base.data_dir, max)?))
            }
        };
        let generator = Arc::new(Generator::new(
            GeneratorConfig::new(worker.id())?
                .with_epoch_ms(settings.ids.epoch.timestamp_millis() as u64)
                .with_max_clock_wait(Duration::from_millis(settings.ids.max_clock_wait_ms)),
        ));
        std::fs::create_dir_all(&settings.base.data_dir)
            .with_context(|| format!("creating {}", settings.base.data_dir.display()))?;
        let fence = IdFence::open(&settings.base.data_dir, generator.clone(), store)
            .await
            .context("reserving ids")?;
        started(Arc::new(Task::new("id-fence", fence.spawn())));
        Ok(Self::new(generator, worker))
    }

    /// The worker id and how it is held.
    pub fn worker(&self) -> &WorkerId {
        &self.worker
    }

    pub fn worker_id(&self) -> u16 {
        self.generator.worker_id()
    }

    /// The next id, waiting (without blocking the executor) for a clock that
    /// stepped back or a reservation being persisted, within the bound.
    pub async fn next_id(&self) -> Result<u64, IdUnavailable> {
        self.worker.check()?;
        Ok(self.generator.next_id_async().await?)
    }

    /// The next id, blocking the calling thread while it waits.
    pub fn next_id_blocking(&self) -> Result<u64, IdUnavailable> {
        self.worker.check()?;
        Ok(self.generator.next_id()?)
    }
}

/// Click event ids come from the same source as link ids.
impl snowlink_clicks::EventIds for IdSource {
    fn next_event_id(&self) -> anyhow::Result<u64> {
        Ok(self.next_id_blocking()?)
    }
}

/// The persisted reservation of one worker id.
pub struct IdFence {
    generator: Arc<Generator>,
    store: Arc<dyn LinkStore>,
    file: PathBuf,
    worker: u16,
}

impl IdFence {
    /// Reads the last reservation (the local file's and the store's, the
    /// higher one), makes it the generator's floor, waits up to
    /// [`START_WAIT`] for the clock to pass it, and persists a first
    /// reservation.
    pub async fn open(
        data_dir: &Path,
        generator: Arc<Generator>,
        store: Arc<dyn LinkStore>,
    ) -> anyhow::Result<Self> {
        let worker = generator.worker_id();
        let dir = data_dir.join("ids");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let file = dir.join(format!("worker-{worker}"));
        let local = match std::fs::read_to_string(&file) {
            Ok(s) => s
                .trim()
                .parse::<i64>()
                .with_context(|| format!("{} is not a reservation", file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
        };
        let shared = match tokio::time::timeout(STORE_TIMEOUT, store.id_reservation(worker)).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, worker, "cannot read the worker's id reservation from the store; using the local one");
                0
            }
            Err(_) => {
                tracing::warn!(
                    worker,
                    "the store did not answer for the id reservation; using the local one"
                );
                0
            }
        };
        let floor = local.max(shared);
        generator.set_floor(floor.max(0) as u64);
        let fence = Self {
            generator,
            store,
            file,
            worker,
        };
        let behind = floor - crate::now_ms();
        if behind >= 0 {
            if behind < START_WAIT.as_millis() as i64 {
                tracing::info!(
                    worker,
                    behind_ms = behind,
                    "waiting for the clock to pass the last id reservation"
                );
                tokio::time::sleep(Duration::from_millis(behind as u64 + 1)).await;
            } else {
                tracing::warn!(
                    worker,
                    behind_ms = behind,
                    "the clock is behind the last id reservation; creates answer 503 until it catches up"
                );
            }
        }
        fence.renew().await?;
        Ok(fence)
    }

    /// Extends the reservation to the clock plus [`RESERVATION`]: persisted
    /// locally (required) and in the store (best effort), then opened to
    /// the generator.
    pub async fn renew(&self) -> anyhow::Result<()> {
        let floor = self.generator.floor_unix_ms() as i64;
        let until = crate::now_ms().max(floor) + RESERVATION.as_millis() as i64;
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || write_durably(&file, until))
            .await
            .context("persisting the id reservation")??;
        self.generator.set_ceiling(until as u64);
        match tokio::time::timeout(RENEW_EVERY, self.store.reserve_ids(self.worker, until)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "recording the id reservation in the store failed")
            }
            Err(_) => tracing::debug!("recording the id reservation in the store timed out"),
        }
        Ok(())
    }

    /// Renews every [`RENEW_EVERY`] until aborted.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RENEW_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = self.renew().await {
                    tracing::error!(
                        error = format!("{e:#}"),
                        "cannot persist the id reservation; ids stop at its end"
                    );
                }
            }
        })
    }
}

/// Replaces `path` with `value`, durably: a temporary file, fsync, rename,
/// fsync of the folder.
fn write_durably(path: &Path, value: i64) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(value.to_string().as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all())?;
    }
    Ok(())
}
