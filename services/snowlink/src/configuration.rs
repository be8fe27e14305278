//! Typed settings, each declared once.
//!
//! The settings are split into sections owned by the code that uses them:
//! [`HttpSettings`] here, [`IdSettings`](crate::ids::IdSettings),
//! [`CacheSettings`](crate::cache::CacheSettings),
//! [`ClickSettings`](snowlink_clicks::ClickSettings),
//! [`RedisSettings`](crate::shared_cache::RedisSettings),
//! [`KafkaSettings`](snowlink_clicks::KafkaSettings) and, in the ScyllaDB
//! store's crate, [`ScyllaConfig`]. Each field is declared once, as a clap
//! argument: its doc comment is the `--help` text, its attribute names the
//! flag, the environment variable and the default, and its id is the key in
//! the config file. Adding a setting is adding one field.
//!
//! Every setting can come from four places; earlier ones win:
//! 1. a command-line flag `--<name>`,
//! 2. an environment variable `SNOWLINK_<NAME>`,
//! 3. a TOML file given with `--config` / `SNOWLINK_CONFIG`, whose keys are
//!    the flag names with underscores (`public_url = "https://sho.rt"`),
//! 4. the declared default.
//!
//! The file is read by the same parsers as the flags: its values become the
//! defaults of the flags they name ([`parse_with_config_file`]), so a key is
//! spelled, parsed and documented exactly like its flag, and the precedence
//! above is clap's own.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{ArgMatches, Args, FromArgMatches};
pub use snowlink_store_scylla::ScyllaConfig;
use url::Url;

pub use crate::cache::CacheSettings;
pub use crate::ids::IdSettings;
pub use crate::shared_cache::RedisSettings;
pub use crate::stats::StatsSettings;
pub use snowlink_clicks::ClickSettings;
pub use snowlink_clicks::KafkaSettings;

/// Everything the service needs to start. Secrets (the code secret, the
/// ScyllaDB password, the Redis URL, which may hold a password) are
/// `SecretString`s: `Debug` shows them redacted, and they are read only
/// where they are used.
#[derive(Clone, Debug, clap::Args)]
pub struct Settings {
    #[command(flatten)]
    pub base: BaseSettings,
    /// Log output: pretty for people, json for log shippers.
    #[arg(
        long,
        env = "SNOWLINK_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Pretty
    )]
    pub log_format: LogFormat,
    #[command(flatten, next_help_heading = "HTTP")]
    pub http: HttpSettings,
    #[command(flatten, next_help_heading = "Link targets")]
    pub targets: crate::targets::TargetSettings,
    #[command(flatten, next_help_heading = "Ids and codes")]
    pub ids: IdSettings,
    #[command(flatten, next_help_heading = "Cache")]
    pub cache: CacheSettings,
    #[command(flatten, next_help_heading = "Clicks")]
    pub clicks: ClickSettings,
    #[command(flatten, next_help_heading = "Link statistics")]
    pub stats: StatsSettings,
    #[command(flatten, next_help_heading = "Redis (shared cache, worker-id leases)")]
    pub redis: RedisSettings,
    #[command(flatten, next_help_heading = "Kafka (click events)")]
    pub kafka: KafkaSettings,
    #[command(flatten, next_help_heading = "ScyllaDB (link store)")]
    pub scylla: ScyllaConfig,
}

/// What every command reads: the config file and the data directory.
#[derive(Clone, Debug, clap::Args)]
pub struct BaseSettings {
    /// TOML file with any of these settings; keys are the flag names with underscores, e.g. public_url = "https://sho.rt".
    /// Flags and environment variables override it.
    #[arg(long, env = "SNOWLINK_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for the embedded database, the click spool and the code secret.
    #[arg(
        long,
        env = "SNOWLINK_DATA_DIR",
        value_name = "DIR",
        default_value = "./data"
    )]
    pub data_dir: PathBuf,
}

/// The settings of the commands that only open the link store (`keys`,
/// `migrate`): the data directory and ScyllaDB.
#[derive(Clone, Debug, clap::Args)]
pub struct StoreSettings {
    #[command(flatten)]
    pub base: BaseSettings,
    #[command(flatten, next_help_heading = "ScyllaDB (link store)")]
    pub scylla: ScyllaConfig,
}

impl StoreSettings {
    /// Checked, as whole settings whose other sections keep their defaults.
    pub fn checked(mut self) -> anyhow::Result<Settings> {
        self.scylla.normalize();
        if self.scylla.enabled() {
            self.scylla.validate().context("scylla settings")?;
        }
        Ok(Settings {
            base: self.base,
            scylla: self.scylla,
            ..Settings::default()
        })
    }
}

/// The settings of `snowlink decode`: the data directory (it may hold the
/// code secret) and how codes are made.
#[derive(Clone, Debug, clap::Args)]
pub struct CodeSettings {
    #[command(flatten)]
    pub base: BaseSettings,
    #[command(flatten, next_help_heading = "Ids and codes")]
    pub ids: IdSettings,
}

impl CodeSettings {
    /// Checked, as whole settings whose other sections keep their defaults.
    pub fn checked(self) -> anyhow::Result<Settings> {
        self.ids.validate()?;
        Ok(Settings {
            base: self.base,
            ids: self.ids,
            ..Settings::default()
        })
    }
}

/// The settings of `snowlink import`: the link store, how ids and codes
/// are issued (Redis leases a worker id), and the rules of a target.
#[derive(Clone, Debug, clap::Args)]
pub struct ImportSettings {
    #[command(flatten)]
    pub base: BaseSettings,
    #[command(flatten, next_help_heading = "HTTP")]
    pub http: HttpSettings,
    #[command(flatten, next_help_heading = "Link targets")]
    pub targets: crate::targets::TargetSettings,
    #[command(flatten, next_help_heading = "Ids and codes")]
    pub ids: IdSettings,
    #[command(flatten, next_help_heading = "Redis (worker-id leases)")]
    pub redis: RedisSettings,
    #[command(flatten, next_help_heading = "ScyllaDB (link store)")]
    pub scylla: ScyllaConfig,
}

impl ImportSettings {
    /// Checked, as whole settings whose other sections keep their defaults.
    pub fn checked(self) -> anyhow::Result<Settings> {
        Settings {
            base: self.base,
            http: self.http,
            targets: self.targets,
            ids: self.ids,
            redis: self.redis,
            scylla: self.scylla,
            ..Settings::default()
        }
        .checked()
    }
}

/// The `http` section of the settings.
#[derive(Clone, Debug, clap::Args)]
pub struct HttpSettings {
    /// Address to listen on; port 0 picks a free port.
    #[arg(
        long,
        env = "SNOWLINK_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,
    /// Serve /metrics on this address only, not on --listen, to keep metrics off the public port [default: on --listen].
    #[arg(long, env = "SNOWLINK_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// Public base URL that short links are built on.
    /// Links pointing at this host are refused, to prevent redirect loops.
    #[arg(
        long,
        env = "SNOWLINK_PUBLIC_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub public_url: Url,
    /// HTTP worker threads [default: number of CPU cores].
    #[arg(
        long,
        env = "SNOWLINK_WORKERS",
        value_name = "N",
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024)
    )]
    pub workers: Option<usize>,
    /// Longest target URL accepted, in bytes.
    #[arg(
        long,
        env = "SNOWLINK_MAX_URL_LENGTH",
        value_name = "BYTES",
        default_value_t = 2048,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(16..=1_048_576)
    )]
    pub max_url_length: usize,
    /// Failed API-key attempts per client address per minute before 429.
    #[arg(
        long,
        env = "SNOWLINK_AUTH_FAILURES_PER_MINUTE",
        value_name = "N",
        default_value_t = 30
    )]
    pub auth_failures_per_minute: u32,
    /// Management requests per minute per API key, e.g. 600/min or 10/s; `keys create --rate-limit` overrides it per key.
    /// Shared by every instance through Redis when --redis-url is set.
    #[arg(
        long,
        env = "SNOWLINK_KEY_RATE_LIMIT",
        value_name = "N/min",
        default_value = "600/min",
        value_parser = crate::ratelimit::parse_rate
    )]
    pub key_rate_limit: u32,
    /// Header holding the client address, set by a trusted proxy, e.g. X-Forwarded-For (first entry used) [default: the peer address].
    /// Only set this behind a proxy that overwrites it.
    #[arg(long, env = "SNOWLINK_CLIENT_IP_HEADER", value_name = "HEADER")]
    pub client_ip_header: Option<String>,
    /// Header holding the client's ISO country code, e.g. CF-IPCountry behind Cloudflare [default: none, no
    /// country is recorded]. Only name a header that a proxy in front of every request sets or overwrites:
    /// clients can send any header, and a spoofed country would be stored as fact. Like --client-ip-header.
    #[arg(long, env = "SNOWLINK_COUNTRY_HEADER", value_name = "HEADER")]
    pub country_header: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Reads a secret flag; the value is redacted from then on.
pub use snowlink_store_scylla::secret;

/// The declared defaults of a settings section, whatever the environment.
pub fn defaults<T: Args + FromArgMatches>() -> T {
    let cmd = T::augment_args(clap::Command::new("defaults"))
        .mut_args(|a| a.env(None))
        .no_binary_name(true);
    let matches = cmd.get_matches_from(std::iter::empty::<OsString>());
    T::from_arg_matches(&matches).expect("the declared defaults parse")
}

impl Default for Settings {
    fn default() -> Self {
        defaults()
    }
}

impl Settings {
    /// The target-URL rules of these settings; reads the blocklist.
    pub fn url_policy(&self) -> anyhow::Result<crate::links::UrlPolicy> {
        let mut own = self.targets.own_hosts.clone();
        // The listen address is one of ours unless it is a wildcard.
        if !self.http.listen.ip().is_unspecified() && self.http.listen.port() != 0 {
            own.push(self.http.listen.to_string());
        }
        Ok(crate::links::UrlPolicy {
            max_len: self.http.max_url_length,
            own_hosts: crate::targets::OwnHosts::new(&self.http.public_url, &own)?,
            allow_private: self.targets.allow_private_targets,
            blocklist: std::sync::Arc::new(match &self.targets.blocklist {
                Some(path) => crate::targets::Blocklist::open(path.clone())?,
                None => crate::targets::Blocklist::none(),
            }),
        })
    }

    /// Cleans up empty values (an empty environment variable means "not
    /// set") and checks what a single value's parser cannot.
    pub fn checked(mut self) -> anyhow::Result<Self> {
        self.scylla.normalize();
        self.redis.normalize();
        self.kafka.normalize();
        for header in [
            &mut self.http.client_ip_header,
            &mut self.http.country_header,
        ] {
            if header.as_ref().is_some_and(|h| h.is_empty()) {
                *header = None;
            }
        }
        self.validate()?;
        Ok(self)
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.ids.validate()?;
        self.redis.validate()?;
        self.kafka.validate()?;
        if let Some(id) = self
            .ids
            .worker_id
            .filter(|&id| id > snowlink_id::MAX_WORKER_ID as u64)
        {
            bail!(
                "worker_id {id} is out of range 0..={}",
                snowlink_id::MAX_WORKER_ID
            );
        }
        if self.scylla.enabled() {
            self.scylla.validate().context("scylla settings")?;
            if !self.ids.sequential_codes && self.ids.code_secret.is_none() {
                bail!(
                    "with a shared ScyllaDB store every instance must permute codes with the same key: \
                     set code_secret (SNOWLINK_CODE_SECRET) to one value on all instances"
                );
            }
            self.ids.validate_shared()?;
            if self.ids.worker_id.is_none() && self.redis.url.is_none() {
                bail!(
                    "with a shared ScyllaDB store every instance needs its own worker id: \
                     set worker_id (SNOWLINK_WORKER_ID) or redis_url (SNOWLINK_REDIS_URL) to lease one"
                );
            }
        }
        let url = &self.http.public_url;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            bail!("public_url {url} must be an absolute http(s) URL");
        }
        Ok(())
    }

    /// Directory of the visitor-hash keys.
    pub fn visitor_key_dir(&self) -> PathBuf {
        self.clicks
            .visitor_key_dir
            .clone()
            .unwrap_or_else(|| self.base.data_dir.join("visitor-keys"))
    }

    /// Path of the click spool.
    pub fn spool_db(&self) -> PathBuf {
        snowlink_spool::path_in(&self.base.data_dir)
    }

    /// Path of the embedded link database.
    pub fn links_db(&self) -> PathBuf {
        self.base.data_dir.join("links.db")
    }

    /// `public_url` with exactly one trailing slash, ready to append a code.
    pub fn short_url_base(&self) -> String {
        let mut base = self
            .http
            .public_url
            .as_str()
            .trim_end_matches('/')
            .to_owned();
        base.push('/');
        base
    }
}

/// A parsed command line, and where each setting's value came from.
pub struct Parsed<C> {
    pub cli: C,
    pub sources: Vec<Source>,
}

/// One setting's effective value and its origin, for `snowlink settings`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub key: String,
    /// `flag`, `env`, `file`, `default` or `unset`.
    pub origin: &'static str,
    /// The value as given; secrets are shown as `[redacted]`.
    pub value: Option<String>,
}

/// Parses a command line whose subcommands flatten [`Settings`], with the
/// values of its config file as the defaults of the flags they name. A usage
/// error, `--help` or `--version` comes back as a [`clap::Error`] inside the
/// error, for the caller to print and exit with (`clap::Error::exit`).
pub fn parse_with_config_file<C: clap::Parser>(args: Vec<OsString>) -> anyhow::Result<Parsed<C>> {
    let matches = C::command().try_get_matches_from(&args)?;
    let file = deepest(&matches)
        .try_get_one::<PathBuf>("config")
        .ok()
        .flatten()
        .cloned();
    let (matches, values) = match file {
        None => (matches, Vec::new()),
        Some(file) => {
            let values = read_config_file(&file)?;
            let command = with_defaults(C::command(), &values);
            (command.try_get_matches_from(&args)?, values)
        }
    };
    let sources = sources(deepest(&matches), &values);
    Ok(Parsed {
        cli: C::from_arg_matches(&matches)?,
        sources,
    })
}

fn sources(matches: &ArgMatches, file: &[(String, String)]) -> Vec<Source> {
    use clap::parser::ValueSource;
    let settings = Settings::augment_args(clap::Command::new("snowlink"));
    settings
        .get_arguments()
        // Only the settings this command takes.
        .filter(|a| a.get_id() != "config" && matches.try_get_raw(a.get_id().as_str()).is_ok())
        .map(|arg| {
            let key = arg.get_id().as_str();
            let origin = match matches.value_source(key) {
                Some(ValueSource::CommandLine) => "flag",
                Some(ValueSource::EnvVariable) => "env",
                Some(ValueSource::DefaultValue) if file.iter().any(|(k, _)| k == key) => "file",
                Some(_) => "default",
                None => "unset",
            };
            let value = matches.get_raw(key).map(|values| {
                if arg.is_hide_env_values_set() {
                    "[redacted]".to_owned()
                } else {
                    let delimiter = arg.get_value_delimiter().unwrap_or(',').to_string();
                    values
                        .map(|v| v.to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join(&delimiter)
                }
            });
            Source {
                key: key.to_owned(),
                origin,
                value,
            }
        })
        .collect()
}

fn deepest(matches: &ArgMatches) -> &ArgMatches {
    match matches.subcommand() {
        Some((_, sub)) => deepest(sub),
        None => matches,
    }
}

/// Makes each file value the default of the argument with its id, in the
/// command and every subcommand.
fn with_defaults(command: clap::Command, values: &[(String, String)]) -> clap::Command {
    command
        .mut_args(
            |arg| match values.iter().find(|(id, _)| arg.get_id() == id) {
                Some((_, value)) => {
                    let hide = arg.is_hide_env_values_set();
                    arg.default_value(value.clone()).hide_default_value(hide)
                }
                None => arg,
            },
        )
        .mut_subcommands(|sub| with_defaults(sub, values))
}

/// Reads a config file into `(key, value)` pairs, each checked by the
/// parser of the flag it names.
pub fn read_config_file(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))?;
    let settings = Settings::augment_args(clap::Command::new("snowlink"));
    let mut values = Vec::new();
    for (key, value) in table {
        let arg = settings
            .get_arguments()
            .find(|a| a.get_id() == key.as_str() && key != "config")
            .with_context(|| {
                format!(
                    "config file {}: unknown setting {key:?} (keys are the flag names of \
                     `snowlink serve --help` with underscores, e.g. public_url)",
                    path.display()
                )
            })?;
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                value.to_string()
            }
            toml::Value::Array(items) if arg.get_value_delimiter().is_some() => {
                let delimiter = arg.get_value_delimiter().unwrap_or(',').to_string();
                items
                    .into_iter()
                    .map(|v| match v {
                        toml::Value::String(s) => Ok(s),
                        other => bail!(
                            "config file {}: {key}: expected a list of strings, found {other}",
                            path.display()
                        ),
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?
                    .join(&delimiter)
            }
            other => bail!(
                "config file {}: {key}: expected a single value, found {}",
                path.display(),
                other.type_str()
            ),
        };
        values.push((key, text));
    }
    // Each value goes through its flag's parser now, so a bad one is reported
    // as the file's, not as a flag the user never typed.
    let check = settings
        .mut_args(|a| a.env(None).default_value(None).required(false))
        .no_binary_name(true);
    let argv = values.iter().map(|(key, value)| {
        let arg = check.get_arguments().find(|a| a.get_id() == key.as_str());
        let long = arg.and_then(|a| a.get_long()).unwrap_or(key);
        format!("--{long}={value}")
    });
    if let Err(e) = check.clone().try_get_matches_from(argv.collect::<Vec<_>>()) {
        let message = e.to_string();
        let first = message.lines().next().unwrap_or_default();
        bail!(
            "config file {}: {}",
            path.display(),
            first.trim_start_matches("error: ")
        );
    }
    Ok(values)
}

/// The settings tables of `docs/settings.md`, from the declarations: one table per
/// section, one row per setting (flag and file key, environment variable,
/// default, meaning).
pub fn settings_markdown() -> String {
    let command = Settings::augment_args(clap::Command::new("snowlink"));
    let mut out = String::new();
    let mut heading = None;
    for arg in command.get_arguments() {
        let this = arg.get_help_heading().unwrap_or("General");
        if heading != Some(this) {
            heading = Some(this);
            out.push_str(&format!(
                "\n**{this}**\n\n| flag (file key) | environment | default | meaning |\n|---|---|---|---|\n"
            ));
        }
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        // A default that is not a value is stated in the help: "[default: ...]".
        let (meaning, stated_default) = match help.split_once(" [default: ") {
            Some((before, rest)) => {
                let (stated, after) = rest.split_once(']').unwrap_or((rest, ""));
                (format!("{before}{after}"), Some(stated.to_owned()))
            }
            None => (help.clone(), None),
        };
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let default = if !defaults.is_empty() {
            format!("`{}`", defaults.join(","))
        } else {
            stated_default.unwrap_or_else(|| "none".into())
        };
        out.push_str(&format!(
            "| `--{}` (`{}`) | `{}` | {} | {} |\n",
            arg.get_long().unwrap_or_default(),
            arg.get_id(),
            arg.get_env()
                .map(|e| e.to_string_lossy().into_owned())
                .unwrap_or_default(),
            default.replace('|', "\\|"),
            meaning.replace('|', "\\|"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    fn parse(args: &[&str]) -> anyhow::Result<Settings> {
        let args = std::iter::once("snowlink")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        parse_with_config_file::<Cli>(args)?.cli.settings.checked()
    }

    fn file(dir: &tempfile::TempDir, text: &str) -> String {
        let path = dir.path().join("snowlink.toml");
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }

    #[test]
    fn flags_beat_file_which_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let config = file(
            &dir,
            "listen = \"127.0.0.1:9000\"\nworker_id = 7\ncache_ttl_secs = 60\n\
             clicks_enabled = false\nscylla_nodes = [\"a:9042\", \"b:9042\"]\n\
             scylla_consistency = \"one\"\ncode_secret = \"file-secret-of-at-least-32-bytes!!\"\nredis_url = \"redis://127.0.0.1:1\"\n",
        );
        let s = parse(&["--config", &config, "--worker-id", "9"]).unwrap();
        assert_eq!(s.http.listen.port(), 9000, "from the file");
        assert_eq!(s.ids.worker_id, Some(9), "the flag wins over the file");
        assert_eq!(s.cache.ttl_secs, 60);
        assert!(!s.clicks.enabled);
        assert_eq!(s.scylla.nodes, ["a:9042", "b:9042"]);
        assert_eq!(format!("{:?}", s.scylla.consistency), "One");
        assert_eq!(s.http.max_url_length, 2048, "the declared default");
        assert_eq!(s.cache.negative_ttl_secs, 5);
    }

    #[test]
    fn defaults_are_the_declared_ones() {
        let s = Settings::default();
        assert_eq!(s.http.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            s.ids.epoch.timestamp_millis() as u64,
            snowlink_id::DEFAULT_EPOCH_MS
        );
        assert_eq!(s.kafka.topic, snowlink_events::kafka::DEFAULT_TOPIC);
        assert_eq!(s.scylla.keyspace, "snowlink");
        assert!(s.clicks.enabled);
        assert!(!s.ids.sequential_codes);
        assert_eq!(s.base.data_dir, PathBuf::from("./data"));
    }

    #[test]
    fn distributed_settings_are_checked() {
        let err = parse(&["--scylla-nodes", "127.0.0.1:9042", "--worker-id", "1"]).unwrap_err();
        assert!(format!("{err:#}").contains("code_secret"), "{err:#}");
        let err = parse(&[
            "--scylla-nodes",
            "127.0.0.1:9042",
            "--code-secret",
            "a-long-enough-secret-of-32-bytes-",
        ])
        .unwrap_err();
        assert!(format!("{err:#}").contains("worker id"), "{err:#}");
        let ok = parse(&[
            "--scylla-nodes=127.0.0.1:9042",
            "--code-secret=a-long-enough-secret-of-32-bytes-",
            "--redis-url=redis://127.0.0.1:6379",
        ])
        .unwrap();
        assert_eq!(ok.scylla.keyspace, "snowlink");
        let err = parse(&[
            "--scylla-nodes=127.0.0.1:9042",
            "--code-secret=a-long-enough-secret-of-32-bytes-",
            "--worker-id=1",
            "--scylla-consistency=mostly",
        ])
        .unwrap_err();
        assert!(format!("{err:#}").contains("mostly"), "{err:#}");
        assert!(parse(&["--redis-url", "http://nope"]).is_err());
    }

    #[test]
    fn a_shared_store_refuses_a_weak_code_secret_unless_told_it_is_a_demo() {
        let shared = ["--scylla-nodes=127.0.0.1:9042", "--worker-id=1"];
        let with = |extra: &[&str]| {
            let mut args = shared.to_vec();
            args.extend_from_slice(extra);
            parse(&args)
        };
        let err = format!("{:#}", with(&["--code-secret=short"]).unwrap_err());
        assert!(err.contains("32"), "{err}");
        let demo = format!("--code-secret={}", crate::ids::DEMO_CODE_SECRET);
        let err = format!("{:#}", with(&[&demo]).unwrap_err());
        assert!(err.contains("demo"), "{err}");
        assert!(with(&[&demo, "--allow-weak-code-secret"]).is_ok());
        assert!(with(&["--code-secret=short", "--allow-weak-code-secret=true"]).is_ok());
        assert!(with(&["--code-secret=0123456789abcdef0123456789abcdef"]).is_ok());
        // The embedded store keeps its own secret: nothing to refuse.
        assert!(parse(&["--code-secret=short"]).is_ok());
    }

    #[test]
    fn bad_values_are_refused_and_named() {
        let err = parse(&["--worker-id", "1024"]).unwrap_err();
        assert!(format!("{err:#}").contains("1024"), "{err:#}");
        assert!(parse(&["--kafka-message-timeout-ms", "99"]).is_err());
        assert!(parse(&["--public-url", "ftp://sho.rt"]).is_err());
        let dir = tempfile::tempdir().unwrap();
        let config = file(&dir, "no_such_setting = 1\n");
        let err = parse(&["--config", &config]).unwrap_err();
        assert!(format!("{err:#}").contains("no_such_setting"), "{err:#}");
        let config = file(&dir, "worker_id = \"seven\"\n");
        let err = format!("{:#}", parse(&["--config", &config]).unwrap_err());
        assert!(
            err.contains("config file") && err.contains("seven"),
            "{err}"
        );
        let config = file(&dir, "listen = [1, 2]\n");
        let err = format!("{:#}", parse(&["--config", &config]).unwrap_err());
        assert!(err.contains("listen"), "{err}");
    }

    #[test]
    fn secrets_never_print() {
        let dir = tempfile::tempdir().unwrap();
        let config = file(
            &dir,
            "scylla_password = \"file-password-42\"\nredis_url = \"redis://:redis-password-42@127.0.0.1:6379\"\n",
        );
        let settings = parse(&[
            "--config",
            &config,
            "--code-secret",
            "flag-secret-42-and-more-to-make-32-bytes",
            "--scylla-nodes",
            "127.0.0.1:9042",
            "--scylla-username",
            "app",
        ])
        .unwrap();
        let shown = format!("{settings:?}");
        for secret in [
            "flag-secret-42-and-more-to-make-32-bytes",
            "file-password-42",
            "redis-password-42",
        ] {
            assert!(!shown.contains(secret), "{secret} printed in {shown}");
        }
        // Still there for the code that uses them.
        assert_eq!(
            settings.ids.code_secret.as_ref().unwrap().expose_secret(),
            "flag-secret-42-and-more-to-make-32-bytes"
        );
        assert_eq!(
            settings.scylla.password.as_ref().unwrap().expose_secret(),
            "file-password-42"
        );
        // An invalid Redis URL is refused without repeating it.
        let err = parse(&["--redis-url", "http://:pw-in-url-42@nope"]).unwrap_err();
        assert!(!format!("{err:#}").contains("pw-in-url-42"), "{err:#}");
    }

    /// The settings tables of `docs/settings.md` are the declared ones.
    /// With `SNOWLINK_BLESS=1` the test rewrites them instead.
    #[test]
    fn the_documented_tables_match_the_declarations() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/settings.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let (start, end) = ("<!-- settings:start -->\n", "<!-- settings:end -->");
        let from = readme.find(start).expect("a settings:start marker") + start.len();
        let to = readme.find(end).expect("a settings:end marker");
        let expected = settings_markdown();
        if std::env::var_os("SNOWLINK_BLESS").is_some() {
            let updated = format!("{}{}\n{}", &readme[..from], expected.trim(), &readme[to..]);
            std::fs::write(path, updated).unwrap();
            return;
        }
        assert_eq!(
            readme[from..to].trim(),
            expected.trim(),
            "docs/settings.md's tables differ; run with SNOWLINK_BLESS=1 to rewrite them"
        );
    }
}
