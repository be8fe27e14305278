//! The `snowlink` command line.

use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use snowlink_store::{LinkStore, Scope};

use crate::configuration::{
    parse_with_config_file, CodeSettings, ImportSettings, Parsed, Settings, StoreSettings,
};
use crate::startup::Application;

/// Snowlink: a URL shortener with click analytics.
///
/// Runs on one machine with no servers to install: links live in an embedded
/// database under the data directory. Every setting can also be given as an
/// environment variable (shown in brackets) or in a TOML file (--config).
#[derive(Debug, Parser)]
#[command(name = "snowlink", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service.
    ///
    /// Example: snowlink serve --listen 0.0.0.0:8080 --public-url https://sho.rt
    Serve(Settings),
    /// Manage API keys for the management API.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Create or update the ScyllaDB schema (keyspace, tables) from the
    /// migrations compiled into this binary. Safe to run again: applied
    /// migrations are recorded and skipped.
    ///
    /// Example: SNOWLINK_SCYLLA_NODES=scylla:9042 snowlink migrate
    ///
    /// The embedded database needs no migration: it updates itself on start.
    Migrate {
        #[command(flatten)]
        settings: StoreSettings,
    },
    /// Load links from a CSV file, e.g. another shortener's export, through
    /// the store and the API's rules.
    ///
    /// The header names the columns: url (required), alias, tags (separated
    /// by ',', ';' or spaces) and expires_at (RFC 3339); others are ignored.
    /// A rerun creates nothing twice: a row whose alias already holds the same
    /// URL, or whose URL the owner already has, counts as already there.
    /// Rows that fail are listed with their line; the exit status is 1 if any
    /// failed. Links are made by the API's own rules, and ids are issued as
    /// the service issues them (--worker-id, else a worker id leased from
    /// Redis, else one no running service on this data directory holds).
    ///
    /// Example: snowlink import links.csv --owner growth
    Import {
        /// The CSV file.
        file: std::path::PathBuf,
        /// Owner of the imported links [default: the owner of the keys, when they all have the same one].
        #[arg(long, value_name = "TEAM")]
        owner: Option<String>,
        #[command(flatten)]
        settings: ImportSettings,
    },
    /// Show the effective settings and where each comes from: a flag, the
    /// environment, the config file or the default. Secrets are redacted.
    ///
    /// Example: snowlink settings --config snowlink.toml
    #[command(name = "settings")]
    ShowSettings {
        #[command(flatten)]
        settings: Settings,
    },
    /// Show the id, time and worker behind a generated code (needs the code secret).
    Decode {
        /// A generated code, e.g. 3fK9xQ2mZpA.
        code: String,
        #[command(flatten)]
        settings: CodeSettings,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it, alone, on stdout. It is stored only as a
    /// hash: copy it now, it cannot be shown again.
    ///
    /// Example: KEY=$(snowlink keys create --name ci)
    Create {
        /// A unique name for the key, e.g. the team or tool using it.
        #[arg(long)]
        name: String,
        /// Whose links the key manages: keys with the same owner share their
        /// links [default: the key's name].
        #[arg(long, value_name = "TEAM")]
        owner: Option<String>,
        /// What the key may do, comma-separated: links:read, links:write,
        /// stats:read, admin (every owner's links) [default: links:read,links:write,stats:read].
        #[arg(long = "scope", value_name = "SCOPE,...", value_delimiter = ',', value_parser = parse_scope)]
        scopes: Option<Vec<Scope>>,
        /// Requests per minute this key may make, e.g. 600/min or 10/s [default: the service's --key-rate-limit].
        #[arg(long, value_name = "N/min", value_parser = crate::ratelimit::parse_rate)]
        rate_limit: Option<u32>,
        #[command(flatten)]
        settings: StoreSettings,
    },
    /// List keys (name, owner, scopes, rate limit, prefix, creation time, revocation).
    List {
        #[command(flatten)]
        settings: StoreSettings,
    },
    /// Revoke a key by name. Running services stop accepting it within 10 seconds.
    Revoke {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        settings: StoreSettings,
    },
}

impl Cli {
    /// Parses the process's arguments, with the values of a `--config` file
    /// as the defaults of the flags they name. Exits on `--help`,
    /// `--version` and usage errors, as clap does.
    pub fn from_env() -> Parsed<Cli> {
        match parse_with_config_file::<Cli>(std::env::args_os().collect()) {
            Ok(parsed) => parsed,
            Err(e) => match e.downcast::<clap::Error>() {
                Ok(usage) => usage.exit(),
                Err(e) => {
                    eprintln!("error: {e:#}");
                    std::process::exit(2)
                }
            },
        }
    }
}

pub fn run(parsed: Parsed<Cli>) -> anyhow::Result<()> {
    let Parsed { cli, sources } = parsed;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Serve(args) => {
            let settings = args.checked()?;
            crate::telemetry::init(settings.log_format, "info");
            raise_open_files_limit();
            runtime.block_on(async {
                let app = Application::build(settings).await?;
                app.run_until_stopped().await?;
                Ok(())
            })
        }
        Command::Migrate { settings } => {
            crate::telemetry::init(crate::configuration::LogFormat::Pretty, "info");
            runtime.block_on(migrate(&settings.checked()?))
        }
        Command::Keys(cmd) => {
            crate::telemetry::init(crate::configuration::LogFormat::Pretty, "warn");
            runtime.block_on(keys(cmd))
        }
        Command::Import {
            file,
            owner,
            settings,
        } => {
            crate::telemetry::init(crate::configuration::LogFormat::Pretty, "warn");
            let settings = settings.checked()?;
            runtime.block_on(import(&file, owner, &settings))
        }
        Command::ShowSettings { settings } => {
            settings.checked()?;
            for source in sources {
                match source.value {
                    Some(value) => println!(
                        "{} = {}  # {}",
                        source.key,
                        toml::Value::String(value),
                        source.origin
                    ),
                    None => println!("# {} is unset", source.key),
                }
            }
            Ok(())
        }
        Command::Decode { code, settings } => {
            crate::telemetry::init(crate::configuration::LogFormat::Pretty, "warn");
            decode(&code, &settings.checked()?)
        }
    }
}

async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn LinkStore>> {
    crate::startup::open_store(settings).await
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    anyhow::ensure!(
        settings.scylla.enabled(),
        "nothing to migrate: no ScyllaDB nodes are configured (set SNOWLINK_SCYLLA_NODES); \
         the embedded database migrates itself when it is opened"
    );
    let config = &settings.scylla;
    let session = snowlink_store_scylla::connect(config)
        .await
        .with_context(|| format!("connecting to ScyllaDB at {}", config.nodes.join(",")))?;
    let report = snowlink_store_scylla::migrate(&session, config).await?;
    println!(
        "keyspace {}: applied {} migration(s){}, {} already applied",
        config.keyspace,
        report.applied.len(),
        if report.applied.is_empty() {
            String::new()
        } else {
            format!(" ({})", report.applied.join(", "))
        },
        report.already_applied.len()
    );
    Ok(())
}

async fn keys(cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Create {
            name,
            owner,
            scopes,
            rate_limit,
            settings,
        } => {
            anyhow::ensure!(
                !name.trim().is_empty() && name.len() <= 128,
                "--name must be 1 to 128 characters"
            );
            if let Some(owner) = &owner {
                anyhow::ensure!(
                    !owner.trim().is_empty() && owner.len() <= 128,
                    "--owner must be 1 to 128 characters"
                );
            }
            let store = open_store(&settings.checked()?).await?;
            let spec = crate::keys::KeySpec {
                name,
                owner,
                scopes,
                rate_limit,
            };
            let (key, record) = crate::keys::mint_key(&spec, crate::now_ms());
            store.create_api_key(&record).await?;
            println!("{key}");
        }
        KeysCommand::List { settings } => {
            let store = open_store(&settings.checked()?).await?;
            println!(
                "{:<24} {:<24} {:<40} {:<10} {:<12} {:<26} REVOKED",
                "NAME", "OWNER", "SCOPES", "RATE", "PREFIX", "CREATED"
            );
            for k in store.list_api_keys().await? {
                let when = |ms: i64| {
                    chrono::DateTime::from_timestamp_millis(ms)
                        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                        .unwrap_or_default()
                };
                println!(
                    "{:<24} {:<24} {:<40} {:<10} {:<12} {:<26} {}",
                    k.name,
                    k.owner,
                    Scope::to_column(&k.scopes),
                    k.rate_limit
                        .map(|r| format!("{r}/min"))
                        .unwrap_or_else(|| "default".into()),
                    k.prefix,
                    when(k.created_at),
                    k.revoked_at.map(when).unwrap_or_else(|| "-".into())
                );
            }
        }
        KeysCommand::Revoke { name, settings } => {
            let store = open_store(&settings.checked()?).await?;
            anyhow::ensure!(
                store.revoke_api_key(&name, crate::now_ms()).await?,
                "no active key named {name:?}"
            );
            eprintln!("revoked {name:?}");
        }
    }
    Ok(())
}

async fn import(
    file: &std::path::Path,
    owner: Option<String>,
    settings: &Settings,
) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    let owner = match owner {
        Some(owner) => owner,
        None => {
            let mut owners: Vec<String> = store
                .list_api_keys()
                .await?
                .into_iter()
                .filter(|k| k.revoked_at.is_none())
                .map(|k| k.owner)
                .collect();
            owners.sort();
            owners.dedup();
            match owners.as_slice() {
                [one] => one.clone(),
                [] => anyhow::bail!(
                    "no API key exists yet: give the links' owner with --owner TEAM \
                     (and create a key with `snowlink keys create --name NAME --owner TEAM`)"
                ),
                many => anyhow::bail!(
                    "keys belong to several owners ({}): choose one with --owner",
                    many.join(", ")
                ),
            }
        }
    };
    let codec = crate::startup::code_codec(settings)?;
    let started = std::time::Instant::now();
    let report = crate::import::import(file, &owner, store, settings, codec).await?;
    for (line, why) in &report.failed {
        eprintln!("line {line}: {why}");
    }
    println!(
        "imported {} links for {owner:?}, {} already there, {} failed, in {:.1} s",
        report.created,
        report.already_there,
        report.failed.len(),
        started.elapsed().as_secs_f64()
    );
    anyhow::ensure!(
        report.failed.is_empty(),
        "{} rows were not imported (listed above)",
        report.failed.len()
    );
    Ok(())
}

fn decode(code: &str, settings: &Settings) -> anyhow::Result<()> {
    let codec = crate::startup::code_codec(settings)?;
    let id = codec
        .decode(code)
        .with_context(|| format!("{code:?} is not a generated code"))?;
    let parts = snowlink_id::IdParts::from_id(id, settings.ids.epoch.timestamp_millis() as u64);
    let time = chrono::DateTime::from_timestamp_millis(parts.unix_ms as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default();
    println!(
        "{}",
        serde_json::json!({
            "code": code,
            "id": id,
            "created_at": time,
            "worker_id": parts.worker_id,
            "sequence": parts.sequence,
        })
    );
    Ok(())
}

/// Each client connection holds a file descriptor; lift the soft limit to the
/// hard one so thousands of concurrent clients are accepted, not refused.
fn raise_open_files_limit() {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct passed.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
                let wanted = lim.rlim_max;
                lim.rlim_cur = wanted;
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                    tracing::debug!(open_files = wanted, "raised the open-files limit");
                }
            }
        }
    }
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    Scope::parse(s.trim()).ok_or_else(|| {
        format!("unknown scope {s:?}; scopes are links:read, links:write, stats:read and admin")
    })
}
