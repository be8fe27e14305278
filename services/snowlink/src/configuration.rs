//! Typed settings.
//!
//! Every setting can come from four places; later ones win:
//! 1. the built-in default (works out of the box on one machine),
//! 2. a TOML file given with `--config` / `SNOWLINK_CONFIG` (keys as in
//!    [`Settings`], e.g. `listen = "0.0.0.0:8080"`),
//! 3. an environment variable `SNOWLINK_<NAME>`,
//! 4. a command-line flag `--<name>`.
//!
//! Environment variables and flags are declared together in [`ServeArgs`] so
//! that `--help` documents both.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

/// Everything the service needs to start. Secrets (the code secret, the
/// ScyllaDB password, the Redis URL, which may hold a password) are
/// `SecretString`s: `Debug` shows them redacted, and they are read only
/// where they are used.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP server binds; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Address serving `/metrics` alone; unset serves it on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// Directory holding the embedded database and the code secret.
    pub data_dir: PathBuf,
    /// Base of every short URL handed out, e.g. `https://sho.rt`.
    pub public_url: Url,
    /// Snowflake worker id, 0..=1023; unique per running instance. Unset:
    /// leased from Redis when `redis_url` is set, else 0.
    pub worker_id: Option<u64>,
    /// Custom epoch of the Snowflake timestamps.
    pub epoch: DateTime<Utc>,
    /// How long an id request waits for a clock that stepped back before the
    /// API answers 503.
    pub max_clock_wait_ms: u64,
    /// Secret keying the code permutation. When unset, a random one is
    /// generated on first start and kept in `DATA_DIR/code.secret`.
    pub code_secret: Option<SecretString>,
    /// Issue sequential, enumerable codes instead of permuted ones.
    pub sequential_codes: bool,
    /// Longest target URL accepted, in bytes.
    pub max_url_length: usize,
    /// Links kept in the in-process cache.
    pub cache_capacity: u64,
    /// How long a found link stays cached, in seconds.
    pub cache_ttl_secs: u64,
    /// How long an unknown code stays cached as unknown, in seconds.
    pub negative_cache_ttl_secs: u64,
    /// Failed API-key attempts allowed per client address per minute before
    /// the API answers 429.
    pub auth_failures_per_minute: u32,
    /// HTTP worker threads; defaults to the number of CPU cores.
    pub workers: Option<usize>,
    /// Log output: `pretty` for people, `json` for log shippers.
    pub log_format: LogFormat,
    /// Record a click event for every redirect served.
    pub clicks_enabled: bool,
    /// Clicks that may wait in memory for the spool; beyond, clicks are shed.
    pub click_queue_capacity: usize,
    /// Header with the client address from a trusted proxy (e.g.
    /// `X-Forwarded-For`, first entry used); unset uses the peer address.
    pub client_ip_header: Option<String>,
    /// Header with the client's ISO country code from a trusted proxy;
    /// empty disables.
    pub country_header: String,
    /// ScyllaDB nodes (`host:port`); when set, links and keys live there
    /// instead of the embedded database.
    pub scylla_nodes: Vec<String>,
    pub scylla_keyspace: String,
    /// Consistency of reads and writes, e.g. `LOCAL_QUORUM`.
    pub scylla_consistency: String,
    /// Consistency of lightweight transactions: `SERIAL` or `LOCAL_SERIAL`.
    pub scylla_serial_consistency: String,
    pub scylla_username: Option<String>,
    pub scylla_password: Option<SecretString>,
    /// Datacenter whose replicas are preferred.
    pub scylla_local_datacenter: Option<String>,
    /// Keyspace replication map used by `snowlink migrate`.
    pub scylla_replication: String,
    /// Redis URL (`redis://host:port/db`); when set, Redis is a cache shared
    /// by all instances, carries invalidations, and leases worker ids.
    pub redis_url: Option<SecretString>,
    /// Kafka bootstrap servers (`host:port,...`); when set, click events are
    /// forwarded from the spool to Kafka.
    pub kafka_brokers: Option<String>,
    pub kafka_topic: String,
    /// How long a click may wait for Kafka's acknowledgement before its
    /// batch is resent from the spool, in milliseconds.
    pub kafka_message_timeout_ms: u64,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("valid literal"),
            metrics_listen: None,
            data_dir: PathBuf::from("./data"),
            public_url: Url::parse("http://127.0.0.1:8080").expect("valid literal"),
            worker_id: None,
            epoch: DateTime::from_timestamp_millis(snowlink_id::DEFAULT_EPOCH_MS as i64)
                .expect("valid epoch"),
            max_clock_wait_ms: 100,
            code_secret: None,
            sequential_codes: false,
            max_url_length: 2048,
            cache_capacity: 100_000,
            cache_ttl_secs: 300,
            negative_cache_ttl_secs: 5,
            auth_failures_per_minute: 30,
            workers: None,
            log_format: LogFormat::Pretty,
            clicks_enabled: true,
            click_queue_capacity: 65_536,
            client_ip_header: None,
            country_header: "CF-IPCountry".into(),
            scylla_nodes: Vec::new(),
            scylla_keyspace: "snowlink".into(),
            scylla_consistency: "LOCAL_QUORUM".into(),
            scylla_serial_consistency: "LOCAL_SERIAL".into(),
            scylla_username: None,
            scylla_password: None,
            scylla_local_datacenter: None,
            scylla_replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}".into(),
            redis_url: None,
            kafka_brokers: None,
            kafka_topic: snowlink_events::kafka::DEFAULT_TOPIC.into(),
            kafka_message_timeout_ms: 10_000,
        }
    }
}

/// Settings as flags and environment variables. Unset ones fall back to the
/// config file, then to the defaults.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (keys in snake_case).
    #[arg(long, env = "SNOWLINK_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "SNOWLINK_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// Serve /metrics on this address only, not on --listen [default: on --listen].
    /// Keeps metrics off the public port.
    #[arg(long, env = "SNOWLINK_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// Directory for the embedded database and secrets [default: ./data].
    #[arg(long, env = "SNOWLINK_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Public base URL that short links are built on [default: http://127.0.0.1:8080].
    /// Links pointing at this host are refused, to prevent redirect loops.
    #[arg(long, env = "SNOWLINK_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<Url>,

    /// Snowflake worker id, 0..=1023, unique per running instance [default: leased from Redis if --redis-url is set, else 0].
    #[arg(long, env = "SNOWLINK_WORKER_ID", value_name = "N")]
    pub worker_id: Option<u64>,

    /// Epoch of id timestamps, RFC 3339 [default: 2025-01-01T00:00:00Z].
    /// Never change it once links exist.
    #[arg(long, env = "SNOWLINK_EPOCH", value_name = "TIME")]
    pub epoch: Option<DateTime<Utc>>,

    /// Milliseconds to wait for a clock that stepped back before failing a create with 503 [default: 100].
    #[arg(long, env = "SNOWLINK_MAX_CLOCK_WAIT_MS", value_name = "MS")]
    pub max_clock_wait_ms: Option<u64>,

    /// Secret that keys the code permutation [default: random, kept in DATA_DIR/code.secret].
    #[arg(
        long,
        env = "SNOWLINK_CODE_SECRET",
        value_name = "SECRET",
        hide_env_values = true,
        value_parser = secret
    )]
    pub code_secret: Option<SecretString>,

    /// Issue sequential codes (enumerable, ordered by creation) instead of permuted ones.
    #[arg(long, env = "SNOWLINK_SEQUENTIAL_CODES", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub sequential_codes: Option<bool>,

    /// Longest target URL accepted, in bytes [default: 2048].
    #[arg(long, env = "SNOWLINK_MAX_URL_LENGTH", value_name = "BYTES")]
    pub max_url_length: Option<usize>,

    /// Links kept in the in-process cache [default: 100000].
    #[arg(long, env = "SNOWLINK_CACHE_CAPACITY", value_name = "N")]
    pub cache_capacity: Option<u64>,

    /// Seconds a found link stays cached [default: 300].
    #[arg(long, env = "SNOWLINK_CACHE_TTL_SECS", value_name = "SECS")]
    pub cache_ttl_secs: Option<u64>,

    /// Seconds an unknown code stays cached as unknown [default: 5].
    #[arg(long, env = "SNOWLINK_NEGATIVE_CACHE_TTL_SECS", value_name = "SECS")]
    pub negative_cache_ttl_secs: Option<u64>,

    /// Failed API-key attempts per client address per minute before 429 [default: 30].
    #[arg(long, env = "SNOWLINK_AUTH_FAILURES_PER_MINUTE", value_name = "N")]
    pub auth_failures_per_minute: Option<u32>,

    /// HTTP worker threads [default: number of CPU cores].
    #[arg(long, env = "SNOWLINK_WORKERS", value_name = "N")]
    pub workers: Option<usize>,

    /// Log format [default: pretty].
    #[arg(long, env = "SNOWLINK_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// Record a click event for every redirect [default: true].
    #[arg(long, env = "SNOWLINK_CLICKS_ENABLED", value_name = "BOOL")]
    pub clicks_enabled: Option<bool>,

    /// Clicks that may wait in memory for the spool before new ones are shed [default: 65536].
    #[arg(long, env = "SNOWLINK_CLICK_QUEUE_CAPACITY", value_name = "N")]
    pub click_queue_capacity: Option<usize>,

    /// Header holding the client address, set by a trusted proxy, e.g. X-Forwarded-For [default: the peer address].
    /// Only set this behind a proxy that overwrites it.
    #[arg(long, env = "SNOWLINK_CLIENT_IP_HEADER", value_name = "HEADER")]
    pub client_ip_header: Option<String>,

    /// Header holding the client's ISO country code, set by a trusted proxy or CDN; empty disables [default: CF-IPCountry].
    #[arg(long, env = "SNOWLINK_COUNTRY_HEADER", value_name = "HEADER")]
    pub country_header: Option<String>,

    /// ScyllaDB nodes, comma-separated host:port; stores links there instead of the embedded database.
    /// Run `snowlink migrate` once first.
    #[arg(
        long,
        env = "SNOWLINK_SCYLLA_NODES",
        value_name = "HOST:PORT,...",
        value_delimiter = ','
    )]
    pub scylla_nodes: Option<Vec<String>>,

    /// ScyllaDB keyspace [default: snowlink].
    #[arg(long, env = "SNOWLINK_SCYLLA_KEYSPACE", value_name = "NAME")]
    pub scylla_keyspace: Option<String>,

    /// Consistency of ScyllaDB reads and writes [default: LOCAL_QUORUM].
    #[arg(long, env = "SNOWLINK_SCYLLA_CONSISTENCY", value_name = "LEVEL")]
    pub scylla_consistency: Option<String>,

    /// Consistency of lightweight transactions (alias claims): SERIAL or LOCAL_SERIAL [default: LOCAL_SERIAL].
    #[arg(long, env = "SNOWLINK_SCYLLA_SERIAL_CONSISTENCY", value_name = "LEVEL")]
    pub scylla_serial_consistency: Option<String>,

    /// ScyllaDB user name (with --scylla-password).
    #[arg(long, env = "SNOWLINK_SCYLLA_USERNAME", value_name = "USER")]
    pub scylla_username: Option<String>,

    /// ScyllaDB password.
    #[arg(
        long,
        env = "SNOWLINK_SCYLLA_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true,
        value_parser = secret
    )]
    pub scylla_password: Option<SecretString>,

    /// Prefer ScyllaDB replicas in this datacenter.
    #[arg(long, env = "SNOWLINK_SCYLLA_LOCAL_DATACENTER", value_name = "DC")]
    pub scylla_local_datacenter: Option<String>,

    /// Keyspace replication for `snowlink migrate`, a CQL map [default: {'class': 'SimpleStrategy', 'replication_factor': 1}].
    /// Production: {'class': 'NetworkTopologyStrategy', 'dc1': 3}.
    #[arg(long, env = "SNOWLINK_SCYLLA_REPLICATION", value_name = "MAP")]
    pub scylla_replication: Option<String>,

    /// Redis URL, e.g. redis://127.0.0.1:6379: a cache shared by all instances, cross-instance invalidation, worker-id leases.
    #[arg(
        long,
        env = "SNOWLINK_REDIS_URL",
        value_name = "URL",
        hide_env_values = true,
        value_parser = secret
    )]
    pub redis_url: Option<SecretString>,

    /// Kafka bootstrap servers, comma-separated host:port; click events are forwarded there from the local spool.
    #[arg(long, env = "SNOWLINK_KAFKA_BROKERS", value_name = "HOST:PORT,...")]
    pub kafka_brokers: Option<String>,

    /// Kafka topic for click events [default: clicks].
    #[arg(long, env = "SNOWLINK_KAFKA_TOPIC", value_name = "TOPIC")]
    pub kafka_topic: Option<String>,

    /// Milliseconds a click may wait for Kafka's acknowledgement before its batch is resent from the spool [default: 10000].
    #[arg(long, env = "SNOWLINK_KAFKA_MESSAGE_TIMEOUT_MS", value_name = "MS")]
    pub kafka_message_timeout_ms: Option<u64>,
}

fn secret(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value))
}

impl ServeArgs {
    /// Layers the config file, environment and flags over the defaults.
    pub fn into_settings(self) -> anyhow::Result<Settings> {
        let mut s = match &self.config {
            Some(path) => Settings::from_file(path)?,
            None => Settings::default(),
        };
        macro_rules! layer {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { s.$field = v; } )* };
        }
        layer!(
            listen,
            data_dir,
            public_url,
            epoch,
            max_clock_wait_ms,
            sequential_codes,
            max_url_length,
            cache_capacity,
            cache_ttl_secs,
            negative_cache_ttl_secs,
            auth_failures_per_minute,
            log_format,
            clicks_enabled,
            click_queue_capacity,
            country_header,
            scylla_nodes,
            scylla_keyspace,
            scylla_consistency,
            scylla_serial_consistency,
            scylla_replication,
            kafka_topic,
            kafka_message_timeout_ms
        );
        macro_rules! layer_optional {
            ($($field:ident),*) => { $( if let Some(v) = self.$field.filter(|v| !v.is_empty()) { s.$field = Some(v); } )* };
        }
        layer_optional!(scylla_username, scylla_local_datacenter, kafka_brokers);
        macro_rules! layer_secret {
            ($($field:ident),*) => { $( if let Some(v) = self.$field.filter(|v| !v.expose_secret().is_empty()) { s.$field = Some(v); } )* };
        }
        layer_secret!(scylla_password, redis_url);
        if let Some(id) = self.worker_id {
            s.worker_id = Some(id);
        }
        s.scylla_nodes.retain(|n| !n.trim().is_empty());
        if self.code_secret.is_some() {
            s.code_secret = self.code_secret;
        }
        if self.client_ip_header.is_some() {
            s.client_ip_header = self.client_ip_header.filter(|h| !h.is_empty());
        }
        if self.workers.is_some() {
            s.workers = self.workers;
        }
        if self.metrics_listen.is_some() {
            s.metrics_listen = self.metrics_listen;
        }
        s.validate()?;
        Ok(s)
    }
}

impl Settings {
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(id) = self
            .worker_id
            .filter(|&id| id > snowlink_id::MAX_WORKER_ID as u64)
        {
            bail!(
                "worker_id {id} is out of range 0..={}",
                snowlink_id::MAX_WORKER_ID
            );
        }
        if !self.scylla_nodes.is_empty() {
            self.scylla_config()?;
            if !self.sequential_codes && self.code_secret.is_none() {
                bail!(
                    "with a shared ScyllaDB store every instance must permute codes with the same key: \
                     set code_secret (SNOWLINK_CODE_SECRET) to one value on all instances"
                );
            }
            if self.worker_id.is_none() && self.redis_url.is_none() {
                bail!(
                    "with a shared ScyllaDB store every instance needs its own worker id: \
                     set worker_id (SNOWLINK_WORKER_ID) or redis_url (SNOWLINK_REDIS_URL) to lease one"
                );
            }
        }
        if let Some(url) = &self.redis_url {
            // The URL may hold a password: the message does not repeat it.
            redis::Client::open(url.expose_secret())
                .map_err(|e| anyhow::anyhow!("redis_url is invalid: {e}"))?;
        }
        if self.kafka_brokers.is_some() && self.kafka_topic.trim().is_empty() {
            bail!("kafka_topic must not be empty");
        }
        if !(100..=900_000).contains(&self.kafka_message_timeout_ms) {
            bail!("kafka_message_timeout_ms must be between 100 and 900000 (Kafka's longest transaction)");
        }
        if !matches!(self.public_url.scheme(), "http" | "https") || self.public_url.host().is_none()
        {
            bail!(
                "public_url {} must be an absolute http(s) URL",
                self.public_url
            );
        }
        if self.epoch.timestamp_millis() < 0 || self.epoch > Utc::now() {
            bail!("epoch {} must be between 1970 and now", self.epoch);
        }
        if self
            .code_secret
            .as_ref()
            .is_some_and(|s| s.expose_secret().is_empty())
        {
            bail!("code_secret must not be empty");
        }
        if self.max_url_length < 16 {
            bail!("max_url_length {} is too small", self.max_url_length);
        }
        Ok(())
    }

    /// The ScyllaDB connection settings, checked.
    pub fn scylla_config(&self) -> anyhow::Result<snowlink_store_scylla::ScyllaConfig> {
        use snowlink_store_scylla::{parse_consistency, parse_serial_consistency, ScyllaConfig};
        let mut c = ScyllaConfig::new(self.scylla_nodes.clone());
        c.keyspace = self.scylla_keyspace.clone();
        c.consistency = parse_consistency(&self.scylla_consistency)
            .map_err(|e| anyhow::anyhow!("scylla_consistency: {e}"))?;
        c.serial_consistency = parse_serial_consistency(&self.scylla_serial_consistency)
            .map_err(|e| anyhow::anyhow!("scylla_serial_consistency: {e}"))?;
        c.username = self.scylla_username.clone();
        c.password = self.scylla_password.clone();
        c.local_datacenter = self.scylla_local_datacenter.clone();
        c.replication = self.scylla_replication.clone();
        c.validate()?;
        Ok(c)
    }

    /// Path of the click spool.
    pub fn spool_db(&self) -> PathBuf {
        self.data_dir.join("spool.db")
    }

    /// Path of the embedded link database.
    pub fn links_db(&self) -> PathBuf {
        self.data_dir.join("links.db")
    }

    /// `public_url` with exactly one trailing slash, ready to append a code.
    pub fn short_url_base(&self) -> String {
        let mut base = self.public_url.as_str().trim_end_matches('/').to_owned();
        base.push('/');
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_which_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("snowlink.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\nworker_id = 7\n").unwrap();
        let args = ServeArgs {
            config: Some(file),
            worker_id: Some(9),
            ..Default::default()
        };
        let s = args.into_settings().unwrap();
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.worker_id, Some(9));
        assert_eq!(s.max_url_length, 2048);
    }

    #[test]
    fn distributed_settings_are_checked() {
        let shared_store_without_secret = ServeArgs {
            scylla_nodes: Some(vec!["127.0.0.1:9042".into()]),
            worker_id: Some(1),
            ..Default::default()
        };
        let err = shared_store_without_secret.into_settings().unwrap_err();
        assert!(format!("{err:#}").contains("code_secret"), "{err:#}");
        let shared_store_without_worker_source = ServeArgs {
            scylla_nodes: Some(vec!["127.0.0.1:9042".into()]),
            code_secret: Some("s3cret".into()),
            ..Default::default()
        };
        let err = shared_store_without_worker_source
            .into_settings()
            .unwrap_err();
        assert!(format!("{err:#}").contains("worker id"), "{err:#}");
        let ok = ServeArgs {
            scylla_nodes: Some(vec!["127.0.0.1:9042".into()]),
            code_secret: Some("s3cret".into()),
            redis_url: Some("redis://127.0.0.1:6379".into()),
            ..Default::default()
        }
        .into_settings()
        .unwrap();
        assert_eq!(ok.scylla_config().unwrap().keyspace, "snowlink");
        let bad_level = ServeArgs {
            scylla_nodes: Some(vec!["127.0.0.1:9042".into()]),
            code_secret: Some("s3cret".into()),
            worker_id: Some(1),
            scylla_consistency: Some("mostly".into()),
            ..Default::default()
        };
        assert!(bad_level.into_settings().is_err());
        let bad_redis = ServeArgs {
            redis_url: Some("http://nope".into()),
            ..Default::default()
        };
        assert!(bad_redis.into_settings().is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        let args = ServeArgs {
            worker_id: Some(1024),
            ..Default::default()
        };
        assert!(args.into_settings().is_err());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "no_such_setting = 1\n").unwrap();
        let err = ServeArgs {
            config: Some(file),
            ..Default::default()
        }
        .into_settings()
        .unwrap_err();
        assert!(format!("{err:#}").contains("no_such_setting"));
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    #[test]
    fn secrets_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("snowlink.toml");
        std::fs::write(
            &file,
            "scylla_password = \"file-password-42\"\nredis_url = \"redis://:redis-password-42@127.0.0.1:6379\"\n",
        )
        .unwrap();
        let cli = Cli::parse_from([
            "snowlink",
            "--config",
            file.to_str().unwrap(),
            "--code-secret",
            "flag-secret-42",
            "--scylla-nodes",
            "127.0.0.1:9042",
            "--scylla-username",
            "app",
        ]);
        let settings = cli.serve.clone().into_settings().unwrap();
        for shown in [
            format!("{settings:?}"),
            format!("{:?}", cli.serve),
            format!("{:?}", settings.scylla_config().unwrap()),
        ] {
            for secret in ["flag-secret-42", "file-password-42", "redis-password-42"] {
                assert!(!shown.contains(secret), "{secret} printed in {shown}");
            }
        }
        // Still there for the code that uses them.
        assert_eq!(
            settings.code_secret.as_ref().unwrap().expose_secret(),
            "flag-secret-42"
        );
        assert_eq!(
            settings.scylla_password.as_ref().unwrap().expose_secret(),
            "file-password-42"
        );
        // An invalid Redis URL is refused without repeating it.
        let err = ServeArgs {
            redis_url: Some("http://:pw-in-url-42@nope".into()),
            ..Default::default()
        }
        .into_settings()
        .unwrap_err();
        assert!(!format!("{err:#}").contains("pw-in-url-42"), "{err:#}");
    }
}
