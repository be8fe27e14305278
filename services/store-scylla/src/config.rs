//! Where the cluster is, how to talk to it, and the session.

use std::time::Duration;

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::statement::{Consistency, SerialConsistency};

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

/// Where the cluster is and how to talk to it.
#[derive(Debug, Clone)]
pub struct ScyllaConfig {
    /// `host:port` of one or more nodes; the driver discovers the rest.
    pub nodes: Vec<String>,
    pub keyspace: String,
    /// Consistency of reads and writes, e.g. `LOCAL_QUORUM`.
    pub consistency: Consistency,
    /// Consistency of the serial phase of lightweight transactions.
    pub serial_consistency: SerialConsistency,
    pub username: Option<String>,
    /// Never printed (`Debug` shows it redacted).
    pub password: Option<secrecy::SecretString>,
    /// Prefer replicas in this datacenter (others only as a fallback).
    pub local_datacenter: Option<String>,
    /// Replication map of the keyspace, used by [`migrate`].
    pub replication: String,
    pub request_timeout: Duration,
}

impl ScyllaConfig {
    /// Defaults for `nodes`: keyspace `snowlink`, `LOCAL_QUORUM`,
    /// `LOCAL_SERIAL`, SimpleStrategy with one replica (a demo node).
    pub fn new(nodes: Vec<String>) -> Self {
        Self {
            nodes,
            keyspace: "snowlink".into(),
            consistency: Consistency::LocalQuorum,
            serial_consistency: SerialConsistency::LocalSerial,
            username: None,
            password: None,
            local_datacenter: None,
            replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}".into(),
            request_timeout: Duration::from_secs(5),
        }
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
