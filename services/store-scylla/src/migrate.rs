//! Applying the CQL files of `migrations/` in order, once each.

use scylla::client::session::Session;
use scylla::statement::unprepared::Statement;
use scylla::statement::Consistency;

use crate::{ScyllaConfig, ScyllaError};

/// The migration files, compiled in, in the order they apply.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_links.cql",
        include_str!("../../../migrations/0001_links.cql"),
    ),
    (
        "0002_id_reservations.cql",
        include_str!("../../../migrations/0002_id_reservations.cql"),
    ),
    (
        "0003_owners_and_tags.cql",
        include_str!("../../../migrations/0003_owners_and_tags.cql"),
    ),
    (
        "0004_public_stats.cql",
        include_str!("../../../migrations/0004_public_stats.cql"),
    ),
];

/// What [`migrate`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    pub applied: Vec<String>,
    pub already_applied: Vec<String>,
}

/// The statements of one migration file, with `{{keyspace}}` filled in.
pub fn statements(source: &str, keyspace: &str) -> Vec<String> {
    let without_comments: String = source
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.replace("{{keyspace}}", keyspace))
        .collect()
}

/// A stable checksum of a file (FNV-1a, hex), to notice an edited migration.
pub fn checksum(source: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in source.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

async fn run(session: &Session, cql: &str) -> Result<(), ScyllaError> {
    let mut st = Statement::new(cql);
    // Schema changes go through every node; ALL is not needed, agreement is
    // awaited below.
    st.set_consistency(Consistency::Quorum);
    match session.query_unpaged(st, &[]).await {
        Ok(_) => Ok(()),
        // A file interrupted after this column was added is applied again
        // from its start: the column being there already is success.
        Err(e)
            if is_add_column(cql)
                && e.to_string().contains("conflicts with an existing column") =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn is_add_column(cql: &str) -> bool {
    let words: Vec<String> = cql
        .split_whitespace()
        .take(4)
        .map(str::to_ascii_uppercase)
        .collect();
    words.len() == 4 && words[0] == "ALTER" && words[1] == "TABLE" && words[3] == "ADD"
}

/// Creates the keyspace and the migration log if needed, then applies every
/// file not yet recorded, in order. Running it again is a no-op.
pub async fn migrate(
    session: &Session,
    config: &ScyllaConfig,
) -> Result<MigrateReport, ScyllaError> {
    let ks = &config.keyspace;
    run(
        session,
        &format!(
            "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {}",
            config.replication
        ),
    )
    .await?;
    run(
        session,
        &format!(
            "CREATE TABLE IF NOT EXISTS {ks}.schema_migrations (name text PRIMARY KEY, checksum text, applied_at timestamp)"
        ),
    )
    .await?;
    session.await_schema_agreement().await?;

    let mut report = MigrateReport::default();
    for (name, source) in MIGRATIONS {
        let sum = checksum(source);
        let mut select = Statement::new(format!(
            "SELECT checksum FROM {ks}.schema_migrations WHERE name = ?"
        ));
        select.set_consistency(Consistency::Quorum);
        let recorded: Option<(Option<String>,)> = session
            .query_unpaged(select, (name,))
            .await?
            .into_rows_result()?
            .maybe_first_row()?;
        if let Some((recorded,)) = recorded {
            if recorded.as_deref() != Some(sum.as_str()) {
                return Err(ScyllaError::Migration(format!(
                    "{name} was applied with checksum {} but now has {sum}: \
                     applied migrations must not change; add a new file instead",
                    recorded.unwrap_or_default()
                )));
            }
            report.already_applied.push((*name).to_owned());
            continue;
        }
        for cql in statements(source, ks) {
            run(session, &cql).await?;
        }
        session.await_schema_agreement().await?;
        let mut record = Statement::new(format!(
            "INSERT INTO {ks}.schema_migrations (name, checksum, applied_at) VALUES (?, ?, toTimestamp(now()))"
        ));
        record.set_consistency(Consistency::Quorum);
        session.query_unpaged(record, (name, &sum)).await?;
        tracing::info!(migration = name, keyspace = %ks, "applied");
        report.applied.push((*name).to_owned());
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_split_into_templated_statements() {
        let (_, source) = MIGRATIONS[0];
        let stmts = statements(source, "ks1");
        assert_eq!(stmts.len(), 3, "{stmts:#?}");
        assert!(stmts
            .iter()
            .all(|s| s.starts_with("CREATE TABLE IF NOT EXISTS ks1.")));
        assert!(stmts.iter().all(|s| !s.contains("{{") && !s.contains("--")));
    }

    #[test]
    fn migrations_are_in_order_and_checksums_stable() {
        let names: Vec<_> = MIGRATIONS.iter().map(|(n, _)| *n).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert_eq!(checksum("abc"), checksum("abc"));
        assert_ne!(checksum("abc"), checksum("abd"));
    }

    #[test]
    fn every_file_in_the_migrations_folder_is_compiled_in() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".cql"))
            .collect();
        on_disk.sort();
        let listed: Vec<String> = MIGRATIONS.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(on_disk, listed);
    }
}
