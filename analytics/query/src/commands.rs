//! The questions the CLI answers.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, Int64Array, RecordBatch, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionContext;

use crate::cli::{Bucket, Dimension, Range};
use crate::time::{date_of, parse_time};

/// A result to print: its schema (so empty results still have a header),
/// its rows, and for time series the values of the sparkline.
pub struct Output {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub sparkline: Option<Vec<i64>>,
}

struct Bounds {
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
}

impl Bounds {
    fn parse(range: &Range, now: DateTime<Utc>) -> Result<Self> {
        let since = range
            .since
            .as_deref()
            .map(|s| parse_time(s, now).context("--since"))
            .transpose()?;
        let until = range
            .until
            .as_deref()
            .map(|s| parse_time(s, now).context("--until"))
            .transpose()?;
        if let (Some(s), Some(u)) = (since, until) {
            if s >= u {
                bail!("--since ({s}) must be before --until ({u})");
            }
        }
        Ok(Self { since, until })
    }

    /// SQL conditions, starting with `AND`. The `date` conditions prune
    /// partitions; the `ts` conditions make the bounds exact.
    fn sql(&self) -> String {
        let mut s = String::new();
        if let Some(since) = self.since {
            s += &format!(
                " AND date >= '{}' AND ts >= arrow_cast({}, 'Timestamp(Millisecond, Some(\"UTC\"))')",
                date_of(since),
                since.timestamp_millis()
            );
        }
        if let Some(until) = self.until {
            s += &format!(
                " AND date <= '{}' AND ts < arrow_cast({}, 'Timestamp(Millisecond, Some(\"UTC\"))')",
                date_of(until),
                until.timestamp_millis()
            );
        }
        s
    }
}

/// Codes are `[A-Za-z0-9_-]`; anything else cannot have clicks.
fn quoted_code(code: &str) -> Result<String> {
    if code.is_empty()
        || code.len() > 64
        || !code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        bail!("{code:?} is not a valid short code");
    }
    Ok(format!("'{code}'"))
}

/// Runs a query. The lake is read-only here: statements that would create
/// tables, write files or change settings are refused.
async fn query(ctx: &SessionContext, sql: &str) -> Result<Output> {
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let df = ctx.sql_with_options(sql, options).await?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    Ok(Output {
        schema,
        batches,
        sparkline: None,
    })
}

async fn ensure_known(ctx: &SessionContext, code: &str) -> Result<()> {
    let out = query(
        ctx,
        &format!(
            "SELECT COUNT(*) AS n FROM clicks WHERE code = {}",
            quoted_code(code)?
        ),
    )
    .await?;
    let n = out
        .batches
        .first()
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .map(|a| a.value(0))
        })
        .unwrap_or(0);
    if n == 0 {
        bail!("unknown code {code:?}: the lake has no clicks for it");
    }
    Ok(())
}

fn rows(out: &Output) -> usize {
    out.batches.iter().map(RecordBatch::num_rows).sum()
}

pub async fn top(
    ctx: &SessionContext,
    range: &Range,
    limit: u64,
    now: DateTime<Utc>,
) -> Result<Output> {
    let bounds = Bounds::parse(range, now)?;
    query(
        ctx,
        &format!(
            "SELECT code, COUNT(*) AS clicks, COUNT(DISTINCT visitor_id) AS unique_visitors \
             FROM clicks WHERE TRUE{} GROUP BY code ORDER BY clicks DESC, code LIMIT {limit}",
            bounds.sql()
        ),
    )
    .await
}

pub async fn timeseries(
    ctx: &SessionContext,
    code: &str,
    by: Bucket,
    range: &Range,
    now: DateTime<Utc>,
) -> Result<Output> {
    let bounds = Bounds::parse(range, now)?;
    let step: i64 = match by {
        Bucket::Hour => 3_600_000,
        Bucket::Day => 86_400_000,
    };
    let found = query(
        ctx,
        &format!(
            "SELECT (CAST(ts AS BIGINT) / {step}) * {step} AS bucket, COUNT(*) AS clicks \
             FROM clicks WHERE code = {}{} GROUP BY 1 ORDER BY 1",
            quoted_code(code)?,
            bounds.sql()
        ),
    )
    .await?;
    if rows(&found) == 0 {
        ensure_known(ctx, code).await?;
    }
    let mut counts = std::collections::BTreeMap::new();
    for b in &found.batches {
        let buckets = b
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .context("bucket column")?;
        let clicks = b
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .context("clicks column")?;
        for i in 0..b.num_rows() {
            counts.insert(buckets.value(i), clicks.value(i));
        }
    }
    let floor = |t: DateTime<Utc>| t.timestamp_millis().div_euclid(step) * step;
    let start = bounds
        .since
        .map(floor)
        .or_else(|| counts.keys().next().copied());
    let end = bounds
        .until
        .map(|u| floor(u - chrono::Duration::milliseconds(1)))
        .or(bounds.since.map(|_| floor(now)))
        .or_else(|| counts.keys().next_back().copied());
    let (mut times, mut values) = (Vec::new(), Vec::new());
    if let (Some(start), Some(end)) = (start, end) {
        let mut t = start;
        while t <= end {
            times.push(t);
            values.push(counts.get(&t).copied().unwrap_or(0));
            t += step;
        }
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new(
            "bucket",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("clicks", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(TimestampMillisecondArray::from(times).with_timezone("UTC")),
            Arc::new(Int64Array::from(values.clone())),
        ],
    )?;
    Ok(Output {
        schema,
        batches: vec![batch],
        sparkline: Some(values),
    })
}

pub async fn breakdown(
    ctx: &SessionContext,
    code: &str,
    by: Dimension,
    range: &Range,
    now: DateTime<Utc>,
) -> Result<Output> {
    let bounds = Bounds::parse(range, now)?;
    let (column, label) = match by {
        Dimension::Referrer => ("referrer_host", "referrer"),
        Dimension::Country => ("country", "country"),
        Dimension::Browser => ("browser", "browser"),
        Dimension::Os => ("os", "os"),
        Dimension::Device => ("device", "device"),
    };
    let out = query(
        ctx,
        &format!(
            "SELECT COALESCE({column}, '(none)') AS {label}, COUNT(*) AS clicks, \
             COUNT(DISTINCT visitor_id) AS unique_visitors \
             FROM clicks WHERE code = {}{} GROUP BY 1 ORDER BY clicks DESC, 1",
            quoted_code(code)?,
            bounds.sql()
        ),
    )
    .await?;
    if rows(&out) == 0 {
        ensure_known(ctx, code).await?;
    }
    Ok(out)
}

pub async fn sql(ctx: &SessionContext, sql: &str) -> Result<Output> {
    query(ctx, sql).await
}
