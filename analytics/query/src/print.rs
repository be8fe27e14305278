//! Output formats.

use std::io::Write;

use anyhow::Result;
use clap::ValueEnum;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches_with_schema;

use crate::model::Output;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// One character per value, scaled to the largest.
pub fn sparkline(values: &[i64]) -> String {
    let max = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    values
        .iter()
        .map(|&v| BARS[((v.max(0) as f64 / max) * 7.0).round() as usize])
        .collect()
}

pub fn print(out: &Output, format: Format, w: &mut impl Write) -> Result<()> {
    let batches: Vec<RecordBatch> = if out.batches.is_empty() {
        vec![RecordBatch::new_empty(out.schema.clone())]
    } else {
        out.batches.clone()
    };
    match format {
        Format::Table => {
            writeln!(
                w,
                "{}",
                pretty_format_batches_with_schema(out.schema.clone(), &batches)?
            )?;
            if let Some(values) = &out.sparkline {
                if !values.is_empty() {
                    writeln!(w, "{}", sparkline(values))?;
                }
            }
        }
        Format::Csv => {
            let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *w);
            for b in &batches {
                writer.write(b)?;
            }
        }
        Format::Json => {
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            if rows == 0 {
                writeln!(w, "[]")?;
            } else {
                let mut writer = datafusion::arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, datafusion::arrow::json::writer::JsonArray>(&mut *w);
                for b in &batches {
                    writer.write(b)?;
                }
                writer.finish()?;
                drop(writer);
                writeln!(w)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn sparkline_scales() {
        assert_eq!(super::sparkline(&[0, 7, 14]), "▁▅█");
        assert_eq!(super::sparkline(&[0, 0]), "▁▁");
    }
}
