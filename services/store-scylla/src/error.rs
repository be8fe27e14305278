//! The backend's one error type, and how it reaches the store trait.

use snowlink_store::StoreError;

/// What can go wrong talking to the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ScyllaError {
    #[error("connecting to ScyllaDB: {0}")]
    Connect(Box<scylla::errors::NewSessionError>),
    #[error("CQL request failed: {0}")]
    Execution(Box<scylla::errors::ExecutionError>),
    #[error("preparing a CQL statement: {0}")]
    Prepare(Box<scylla::errors::PrepareError>),
    #[error("waiting for schema agreement: {0}")]
    SchemaAgreement(Box<scylla::errors::SchemaAgreementError>),
    #[error("unexpected CQL result: {0}")]
    Result(String),
    #[error("migration: {0}")]
    Migration(String),
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
}

macro_rules! boxed_error {
    ($($t:ty => $v:ident),*) => {$(
        impl From<$t> for ScyllaError {
            fn from(e: $t) -> Self { ScyllaError::$v(Box::new(e)) }
        }
    )*};
}
boxed_error!(
    scylla::errors::NewSessionError => Connect,
    scylla::errors::ExecutionError => Execution,
    scylla::errors::PrepareError => Prepare,
    scylla::errors::SchemaAgreementError => SchemaAgreement
);

macro_rules! result_error {
    ($($t:ty),*) => {$(
        impl From<$t> for ScyllaError {
            fn from(e: $t) -> Self { ScyllaError::Result(e.to_string()) }
        }
    )*};
}
result_error!(
    scylla::errors::IntoRowsResultError,
    scylla::errors::MaybeFirstRowError,
    scylla::errors::FirstRowError,
    scylla::errors::RowsError,
    scylla::errors::DeserializationError,
    scylla::errors::NextRowError,
    scylla::errors::PagerExecutionError,
    scylla::deserialize::TypeCheckError
);

/// A backend failure as the link store reports it.
pub(crate) fn backend(e: impl Into<ScyllaError>) -> StoreError {
    StoreError::backend(e.into())
}
