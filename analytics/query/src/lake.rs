//! The DataFusion session over the lake.

use std::path::Path;
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};

/// A session with `clicks`, `daily` and `dims` registered. Each has a `date`
/// column (`YYYY-MM-DD` string) taken from the folder names.
pub async fn open(root: &Path) -> Result<SessionContext> {
    ensure!(root.is_dir(), "the lake {} does not exist", root.display());
    // The layout is the lake crate's: the same folders the writer uses.
    let lake = snowlink_lake::Lake::new(root);
    let config = SessionConfig::new()
        .with_information_schema(true)
        .set_bool("datafusion.execution.parquet.pushdown_filters", true)
        .set_bool("datafusion.execution.parquet.reorder_filters", true);
    let ctx = SessionContext::new_with_config(config);
    register(
        &ctx,
        "clicks",
        &lake.clicks_root(),
        snowlink_events::arrow::click_schema(),
    )
    .await?;
    register(
        &ctx,
        "daily",
        &lake.daily_root(),
        snowlink_lake::daily_schema(),
    )
    .await?;
    register(
        &ctx,
        "dims",
        &lake.dims_root(),
        snowlink_lake::dims_schema(),
    )
    .await?;
    Ok(ctx)
}

async fn register(ctx: &SessionContext, name: &str, dir: &Path, schema: SchemaRef) -> Result<()> {
    let has_files = std::fs::read_dir(dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if !has_files {
        // An empty lake answers with no rows rather than an error.
        let mut fields: Vec<_> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(datafusion::arrow::datatypes::Field::new(
            "date",
            DataType::Utf8,
            false,
        ));
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
        let table = MemTable::try_new(schema, vec![vec![]])?;
        ctx.register_table(name, Arc::new(table))?;
        return Ok(());
    }
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![("date".to_owned(), DataType::Utf8)]);
    let url = format!("{}/", dir.canonicalize()?.display());
    ctx.register_listing_table(name, url, options, Some(schema), None)
        .await
        .with_context(|| format!("opening table {name} at {}", dir.display()))?;
    Ok(())
}
