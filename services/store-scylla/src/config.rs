//! Where the cluster is, how to talk to it, and the session.

use std::time::Duration;

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::statement::{Consistency, SerialConsistency};
use secrecy::SecretString;

use crate::error::ScyllaError;

/// A setting the cluster would refuse, or that would end up inside CQL text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("no ScyllaDB node given")]
    NoNodes,
    #[error(
        "keyspace {0:?} must be 1 to 48 letters, digits or underscores, starting with a letter"
    )]
    Keyspace(String),
    #[error("replication {0:?} must be a CQL map such as {{'class': 'NetworkTopologyStrategy', 'dc1': 3}}")]
    Replication(String),
    #[error(
        "unknown consistency {0:?} (ONE, QUORUM, LOCAL_QUORUM, LOCAL_ONE, EACH_QUORUM, ALL, ...)"
    )]
    Consistency(String),
    #[error("unknown serial consistency {0:?} (SERIAL or LOCAL_SERIAL)")]
    SerialConsistency(String),
}

/// Where the cluster is and how to talk to it: the `scylla` section of the
/// service's settings. Each field is declared once; its doc comment is the
/// `--help` text and the meaning of the config-file key of the same name as
/// its `id` (`scylla_nodes`, `scylla_keyspace`, ...).
#[derive(Debug, Clone, clap::Args)]
pub struct ScyllaConfig {
    /// ScyllaDB nodes, comma-separated host:port; stores links there instead of the embedded database.
    /// The driver discovers the rest of the cluster. Run `snowlink migrate` once first.
    #[arg(
        id = "scylla_nodes",
        long = "scylla-nodes",
        env = "SNOWLINK_SCYLLA_NODES",
        value_name = "HOST:PORT,...",
        value_delimiter = ','
    )]
    pub nodes: Vec<String>,
    /// ScyllaDB keyspace.
    #[arg(
        id = "scylla_keyspace",
        long = "scylla-keyspace",
        env = "SNOWLINK_SCYLLA_KEYSPACE",
        value_name = "NAME",
        default_value = "snowlink"
    )]
    pub keyspace: String,
    /// Consistency of ScyllaDB reads and writes: ONE, QUORUM, LOCAL_QUORUM, LOCAL_ONE, EACH_QUORUM, ALL, ...
    #[arg(
        id = "scylla_consistency",
        long = "scylla-consistency",
        env = "SNOWLINK_SCYLLA_CONSISTENCY",
        value_name = "LEVEL",
        default_value = "LOCAL_QUORUM",
        value_parser = parse_consistency
    )]
    pub consistency: Consistency,
    /// Consistency of lightweight transactions (alias claims, key names): SERIAL or LOCAL_SERIAL.
    #[arg(
        id = "scylla_serial_consistency",
        long = "scylla-serial-consistency",
        env = "SNOWLINK_SCYLLA_SERIAL_CONSISTENCY",
        value_name = "LEVEL",
        default_value = "LOCAL_SERIAL",
        value_parser = parse_serial_consistency
    )]
    pub serial_consistency: SerialConsistency,
    /// ScyllaDB user name (with --scylla-password).
    #[arg(
        id = "scylla_username",
        long = "scylla-username",
        env = "SNOWLINK_SCYLLA_USERNAME",
        value_name = "USER"
    )]
    pub username: Option<String>,
    /// ScyllaDB password. Never printed.
    #[arg(
        id = "scylla_password",
        long = "scylla-password",
        env = "SNOWLINK_SCYLLA_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true,
        value_parser = secret
    )]
    pub password: Option<SecretString>,
    /// Prefer ScyllaDB replicas in this datacenter (others only as a fallback).
    #[arg(
        id = "scylla_local_datacenter",
        long = "scylla-local-datacenter",
        env = "SNOWLINK_SCYLLA_LOCAL_DATACENTER",
        value_name = "DC"
    )]
    pub local_datacenter: Option<String>,
    /// Keyspace replication that `snowlink migrate` creates, a CQL map.
    /// Production: {'class': 'NetworkTopologyStrategy', 'dc1': 3}.
    #[arg(
        id = "scylla_replication",
        long = "scylla-replication",
        env = "SNOWLINK_SCYLLA_REPLICATION",
        value_name = "MAP",
        default_value = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )]
    pub replication: String,
    /// How long one request may take before it fails.
    #[arg(skip = Duration::from_secs(5))]
    pub request_timeout: Duration,
}

/// Reads a secret setting (this crate's password, and the service's code
/// secret and Redis URL): the value is redacted from then on.
pub fn secret(value: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(value))
}

impl Default for ScyllaConfig {
    /// The declared defaults, with no node: keyspace `snowlink`,
    /// `LOCAL_QUORUM`, `LOCAL_SERIAL`, SimpleStrategy with one replica.
    fn default() -> Self {
        use clap::{Args, FromArgMatches};
        // Environment variables are dropped: a default never depends on them.
        let cmd = Self::augment_args(clap::Command::new("defaults"))
            .mut_args(|a| a.env(None))
            .no_binary_name(true);
        let matches = cmd.get_matches_from(std::iter::empty::<String>());
        Self::from_arg_matches(&matches).expect("the declared defaults parse")
    }
}

impl ScyllaConfig {
    /// The declared defaults for `nodes`.
    pub fn new(nodes: Vec<String>) -> Self {
        Self {
            nodes,
            ..Self::default()
        }
    }

    /// Empty values given through the environment (`SNOWLINK_SCYLLA_USERNAME=`)
    /// mean "not set".
    pub fn normalize(&mut self) {
        self.nodes.retain(|n| !n.trim().is_empty());
        for field in [&mut self.username, &mut self.local_datacenter] {
            if field.as_ref().is_some_and(|v| v.is_empty()) {
                *field = None;
            }
        }
        if self
            .password
            .as_ref()
            .is_some_and(|p| secrecy::ExposeSecret::expose_secret(p).is_empty())
        {
            self.password = None;
        }
    }

    /// Whether the settings select ScyllaDB over the embedded store.
    pub fn enabled(&self) -> bool {
        !self.nodes.is_empty()
    }

    /// Checks what the driver would only reject later, or what would end up
    /// inside CQL text.
    pub fn validate(&self) -> Result<(), ScyllaError> {
        if self.nodes.is_empty() || self.nodes.iter().any(|n| n.trim().is_empty()) {
            return Err(ConfigError::NoNodes.into());
        }
        let ks = &self.keyspace;
        if ks.is_empty()
            || ks.len() > 48
            || !ks.starts_with(|c: char| c.is_ascii_alphabetic())
            || !ks.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(ConfigError::Keyspace(ks.clone()).into());
        }
        let r = self.replication.trim();
        if !(r.starts_with('{') && r.ends_with('}')) || r.contains(';') {
            return Err(ConfigError::Replication(r.to_owned()).into());
        }
        Ok(())
    }
}

/// Parses a consistency level name such as `LOCAL_QUORUM` or `quorum`.
pub fn parse_consistency(s: &str) -> Result<Consistency, ConfigError> {
    Ok(
        match s.trim().to_ascii_uppercase().replace('-', "_").as_str() {
            "ANY" => Consistency::Any,
            "ONE" => Consistency::One,
            "TWO" => Consistency::Two,
            "THREE" => Consistency::Three,
            "QUORUM" => Consistency::Quorum,
            "ALL" => Consistency::All,
            "LOCAL_QUORUM" => Consistency::LocalQuorum,
            "EACH_QUORUM" => Consistency::EachQuorum,
            "LOCAL_ONE" => Consistency::LocalOne,
            other => return Err(ConfigError::Consistency(other.to_owned())),
        },
    )
}

/// Parses `SERIAL` or `LOCAL_SERIAL`.
pub fn parse_serial_consistency(s: &str) -> Result<SerialConsistency, ConfigError> {
    match s.trim().to_ascii_uppercase().replace('-', "_").as_str() {
        "SERIAL" => Ok(SerialConsistency::Serial),
        "LOCAL_SERIAL" => Ok(SerialConsistency::LocalSerial),
        other => Err(ConfigError::SerialConsistency(other.to_owned())),
    }
}

/// Opens a session with the configured profile. No keyspace is required to
/// exist yet, so [`migrate`] can use it too.
pub async fn connect(config: &ScyllaConfig) -> Result<Session, ScyllaError> {
    config.validate()?;
    let mut policy = DefaultPolicy::builder().token_aware(true);
    if let Some(dc) = &config.local_datacenter {
        policy = policy
            .prefer_datacenter(dc.clone())
            .permit_dc_failover(true);
    }
    let profile = ExecutionProfile::builder()
        .consistency(config.consistency)
        .serial_consistency(Some(config.serial_consistency))
        .request_timeout(Some(config.request_timeout))
        .load_balancing_policy(policy.build())
        .build();
    let mut builder = SessionBuilder::new()
        .known_nodes(&config.nodes)
        .connection_timeout(Duration::from_secs(5))
        .default_execution_profile_handle(profile.into_handle());
    if let (Some(user), Some(pass)) = (&config.username, &config.password) {
        use secrecy::ExposeSecret;
        let pass = pass.expose_secret();
        builder = builder.user(user, pass);
    }
    Ok(builder.build().await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_names() {
        assert_eq!(
            parse_consistency("local_quorum").unwrap(),
            Consistency::LocalQuorum
        );
        assert_eq!(parse_consistency("ONE").unwrap(), Consistency::One);
        assert!(parse_consistency("most").is_err());
        assert_eq!(
            parse_serial_consistency("serial").unwrap(),
            SerialConsistency::Serial
        );
        assert!(parse_serial_consistency("quorum").is_err());
    }

    #[test]
    fn config_is_checked() {
        let ok = ScyllaConfig::new(vec!["127.0.0.1:9042".into()]);
        ok.validate().unwrap();
        let mut bad = ok.clone();
        bad.keyspace = "snow; DROP".into();
        assert!(bad.validate().is_err());
        let mut bad = ok.clone();
        bad.replication = "{'class': 'SimpleStrategy'}; DROP KEYSPACE x".into();
        assert!(bad.validate().is_err());
        let mut bad = ok;
        bad.nodes.clear();
        assert!(bad.validate().is_err());
    }
}
