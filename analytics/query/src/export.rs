//! `clicks CODE`: one link's raw clicks as CSV, in time order, streamed.
//!
//! The answer is written one day at a time: each day's clicks are sorted by
//! time and written as they come out of the engine, so memory holds at most
//! one day of one link, whatever the range.

use std::io::Write;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, BooleanArray, StringArray, TimestampMillisecondArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use futures::StreamExt;

use crate::commands::{dates_in_range, quoted_code, Bounds};
use crate::model::Range;

/// The CSV header. No visitor id and no user agent: the export is a
/// link's clicks, not a way to follow people.
pub const CSV_HEADER: &str = "time,code,referrer,referrer_host,country,browser,os,device,bot";

/// Writes the header, then every click of `code` in the range, oldest first
/// (ties in event order). Returns the number of clicks written.
pub async fn clicks_csv(
    lake: &crate::lake::Lake,
    code: &str,
    range: &Range,
    now: DateTime<Utc>,
    out: &mut impl Write,
) -> Result<u64> {
    let bounds = Bounds::parse(range, now)?;
    let quoted = quoted_code(code)?;
    writeln!(out, "{CSV_HEADER}")?;
    let mut written = 0u64;
    let ctx = &lake.ctx;
    for date in dates_in_range(lake, &bounds)? {
        let sql = format!(
            "SELECT ts, referrer, referrer_host, country, browser, os, device, is_bot \
             FROM clicks WHERE date = '{date}' AND code = {quoted}{}{} ORDER BY ts, event_id",
            bounds.sql(),
            range.bots_sql()
        );
        let mut stream = ctx
            .sql(&sql)
            .await?
            .execute_stream()
            .await
            .with_context(|| format!("reading the clicks of {date}"))?;
        let mut line = String::new();
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let ts = batch
                .column(0)
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .context("ts column")?;
            let texts: Vec<StringArray> = (1..=6)
                .map(|i| {
                    cast(batch.column(i), &DataType::Utf8).map(|a| {
                        a.as_any()
                            .downcast_ref::<StringArray>()
                            .expect("cast to Utf8 gives strings")
                            .clone()
                    })
                })
                .collect::<Result<_, _>>()?;
            let bots = batch
                .column(7)
                .as_any()
                .downcast_ref::<BooleanArray>()
                .context("is_bot column")?;
            for row in 0..batch.num_rows() {
                line.clear();
                let t = DateTime::from_timestamp_millis(ts.value(row)).unwrap_or_default();
                line += &t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                line.push(',');
                // Through the guard too: an alias made before they were
                // refused may start with '-'.
                push_field(&mut line, code);
                for column in &texts {
                    line.push(',');
                    if !column.is_null(row) {
                        push_field(&mut line, column.value(row));
                    }
                }
                line += if bots.value(row) { ",true" } else { ",false" };
                line.push('\n');
                out.write_all(line.as_bytes())?;
                written += 1;
            }
        }
        out.flush()?;
    }
    Ok(written)
}

/// One CSV field: quoted when it holds a separator, a quote or a line
/// break; a field a spreadsheet would run as a formula gets a leading `'`.
fn push_field(line: &mut String, value: &str) {
    let formula = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = formula || value.contains([',', '"', '\n', '\r']);
    if !quote {
        line.push_str(value);
        return;
    }
    line.push('"');
    if formula {
        line.push('\'');
    }
    for c in value.chars() {
        if c == '"' {
            line.push('"');
        }
        line.push(c);
    }
    line.push('"');
}

#[cfg(test)]
mod tests {
    use super::push_field;

    #[test]
    fn fields_are_quoted_when_they_must_be() {
        for (value, expected) in [
            ("https://a.example/x", "https://a.example/x"),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("line\nbreak", "\"line\nbreak\""),
            ("=HYPERLINK(\"x\")", "\"'=HYPERLINK(\"\"x\"\")\""),
            ("@cmd", "\"'@cmd\""),
        ] {
            let mut line = String::new();
            push_field(&mut line, value);
            assert_eq!(line, expected, "{value}");
        }
    }
}
