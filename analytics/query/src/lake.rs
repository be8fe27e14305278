//! The DataFusion session over the lake's Delta tables.
//!
//! `clicks`, `daily` and `dims` are registered from their latest Delta
//! versions (the files the log lists, nothing else in their folders), each
//! with its `date` partition column, so a `date` filter prunes whole days
//! and the files' statistics let a one-link question skip most files. The
//! same code reads a local folder and an S3 bucket. [`Lake::days`] tells,
//! per date, how many clicks the day holds and whether its rollups were
//! counted from exactly those clicks: the query plans decide from it which
//! days come from a rollup and which from the raw clicks.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use snowlink_lake::deltalake_core::DeltaTable;
use snowlink_lake::{DayState, TableKind};

use crate::stats::{StatsCache, STATS_CACHE_BYTES};

/// A session over the lake, and what each day holds.
pub struct Lake {
    pub ctx: SessionContext,
    pub days: BTreeMap<String, DayState>,
    /// The loaded tables (kept to refresh them).
    tables: Vec<(TableKind, Option<DeltaTable>)>,
    /// Days counted for `stats`, shared by the sessions a refresh makes.
    pub stats_cache: Arc<StatsCache>,
    lake: snowlink_lake::Lake,
}

/// The session settings every query runs with. DataFusion's own settings
/// can be tuned from the environment, as in datafusion-cli
/// (`DATAFUSION_EXECUTION_TARGET_PARTITIONS=4`).
fn session() -> SessionContext {
    let config = SessionConfig::from_env()
        .unwrap_or_default()
        .with_information_schema(true)
        .set_bool("datafusion.execution.parquet.pushdown_filters", true)
        .set_bool("datafusion.execution.parquet.reorder_filters", true)
        .set_bool(
            "datafusion.execution.parquet.schema_force_view_types",
            false,
        );
    SessionContext::new_with_config(config)
}

impl Lake {
    /// Opens the lake at a path, `file://` or `s3://` URL. A lake in any
    /// other layout is refused with the command that converts it; a lake
    /// with no tables yet answers with no rows.
    pub async fn open(spec: &str) -> Result<Lake> {
        let lake = snowlink_lake::Lake::open(spec)?;
        if let snowlink_lake::Location::Local(root) = lake.location() {
            anyhow::ensure!(root.is_dir(), "the lake {} does not exist", root.display());
        }
        lake.check_layout().await?;
        // The three logs at once: on object storage each is a few round
        // trips.
        let tables = futures::future::try_join_all(TableKind::ALL.map(|kind| {
            let lake = &lake;
            async move {
                let table = lake.load(kind).await.with_context(|| {
                    format!("opening the {} table of {}", kind.name(), lake.display())
                })?;
                Ok::<_, anyhow::Error>((kind, table))
            }
        }))
        .await?;
        let mut this = Lake {
            ctx: session(),
            days: BTreeMap::new(),
            tables,
            stats_cache: Arc::new(StatsCache::new(STATS_CACHE_BYTES)),
            lake,
        };
        this.register().await?;
        Ok(this)
    }

    /// A session over every table's latest version (for a long-lived
    /// reader); this one stays as it is until dropped.
    pub async fn reloaded(&self) -> Result<Lake> {
        let tables = futures::future::try_join_all(self.tables.iter().cloned().map(
            |(kind, table)| async move {
                let table = match table {
                    Some(mut t) => {
                        t.update_incremental(None).await?;
                        Some(t)
                    }
                    None => self.lake.load(kind).await?,
                };
                Ok::<_, anyhow::Error>((kind, table))
            },
        ))
        .await?;
        let mut new = Lake {
            ctx: session(),
            days: BTreeMap::new(),
            tables,
            stats_cache: self.stats_cache.clone(),
            lake: self.lake.clone(),
        };
        new.register().await?;
        Ok(new)
    }

    fn table(&self, kind: TableKind) -> Option<&DeltaTable> {
        self.tables
            .iter()
            .find(|(k, _)| *k == kind)
            .and_then(|(_, t)| t.as_ref())
    }

    async fn register(&mut self) -> Result<()> {
        for (kind, table) in &self.tables {
            register(&self.ctx, *kind, table.as_ref()).await?;
        }
        self.days = match self.table(TableKind::Clicks) {
            Some(clicks) => snowlink_lake::day_states(
                clicks,
                self.table(TableKind::Daily),
                self.table(TableKind::Dims),
            )?,
            None => BTreeMap::new(),
        };
        Ok(())
    }
}

/// The columns of a table as queries see them: the file columns, then
/// `date` as a string.
fn table_schema(kind: TableKind) -> SchemaRef {
    let mut fields: Vec<Field> = kind
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("date", DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

async fn register(ctx: &SessionContext, kind: TableKind, table: Option<&DeltaTable>) -> Result<()> {
    let name = kind.name();
    let Some(table) = table else {
        // An empty lake answers with no rows rather than an error.
        let empty = MemTable::try_new(table_schema(kind), vec![vec![]])?;
        ctx.register_table(name, Arc::new(empty))?;
        return Ok(());
    };
    table.update_datafusion_session(&ctx.state())?;
    // The snapshot already in memory, files and statistics included, seeds
    // every scan: a question reads no part of the Delta log again.
    let provider = table
        .table_provider()
        .with_eager_snapshot(table.snapshot()?.snapshot().clone())
        .with_session(Arc::new(ctx.state()))
        .build()
        .await
        .with_context(|| format!("reading the {name} table"))?;
    let delta_name = format!("delta_{name}");
    ctx.register_table(delta_name.as_str(), Arc::new(provider))?;
    // The view gives every column the type the files hold: Delta's
    // timestamps are microseconds, the lake's are milliseconds.
    let columns: Vec<String> = table_schema(kind)
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Timestamp(_, _) => format!(
                "arrow_cast({0}, 'Timestamp(Millisecond, Some(\"UTC\"))') AS {0}",
                quote(f.name())
            ),
            _ => quote(f.name()),
        })
        .collect();
    ctx.sql(&format!(
        "CREATE VIEW {name} AS SELECT {} FROM {delta_name}",
        columns.join(", ")
    ))
    .await?;
    Ok(())
}

fn quote(name: &str) -> String {
    format!("\"{name}\"")
}
