//! Output formats.

use std::io::Write;

use anyhow::Result;
use clap::ValueEnum;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
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

/// `s` with every character that could move the cursor, change colours or
/// reorder text on a terminal (C0 and C1 controls, DEL, bidirectional
/// overrides) written as a visible `\u{..}` escape; a backslash is doubled
/// so an escape cannot be faked.
pub fn escape_for_terminal(s: &str) -> std::borrow::Cow<'_, str> {
    fn unsafe_char(c: char) -> bool {
        c.is_control()
            || matches!(c, '\\' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !s.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The batches with every text column escaped for a terminal.
fn escaped(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<(SchemaRef, Vec<RecordBatch>)> {
    let is_text =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if is_text(f.data_type()) {
                f.as_ref().clone().with_data_type(DataType::Utf8)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    let new_schema: SchemaRef = Arc::new(Schema::new(fields));
    let mut out = Vec::with_capacity(batches.len());
    for b in batches {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(b.num_columns());
        for column in b.columns() {
            if is_text(column.data_type()) {
                let text = cast(column, &DataType::Utf8)?;
                let text = text
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .expect("cast to Utf8 gives a StringArray");
                let clean: StringArray = text.iter().map(|v| v.map(escape_for_terminal)).collect();
                columns.push(Arc::new(clean));
            } else {
                columns.push(column.clone());
            }
        }
        out.push(RecordBatch::try_new(new_schema.clone(), columns)?);
    }
    Ok((new_schema, out))
}

/// Whether `e` is a write to a reader that has gone (the reader of stdout
/// exited, or a socket's client closed or reset its end), from our own
/// writes or from Arrow's CSV and JSON writers.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    use datafusion::arrow::error::ArrowError;
    use datafusion::error::DataFusionError;
    let broken = |io: &std::io::Error| {
        matches!(
            io.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        )
    };
    let arrow = |a: &ArrowError| matches!(a, ArrowError::IoError(_, io) if broken(io));
    e.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(broken)
            || cause.downcast_ref::<ArrowError>().is_some_and(arrow)
            || matches!(
                cause.downcast_ref::<DataFusionError>(),
                Some(DataFusionError::ArrowError(a, _)) if arrow(a)
            )
            || matches!(
                cause.downcast_ref::<DataFusionError>(),
                Some(DataFusionError::IoError(io)) if broken(io)
            )
    })
}

/// A writer that keeps the first I/O error its inner writer returned.
struct Watched<'a, W: Write> {
    inner: &'a mut W,
    failed: Option<std::io::Error>,
}

impl<W: Write> Watched<'_, W> {
    fn keep<T>(&mut self, r: std::io::Result<T>) -> std::io::Result<T> {
        r.inspect_err(|e| {
            if self.failed.is_none() {
                self.failed = Some(std::io::Error::new(e.kind(), e.to_string()));
            }
        })
    }
}

impl<W: Write> Write for Watched<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let r = self.inner.write(buf);
        self.keep(r)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let r = self.inner.flush();
        self.keep(r)
    }
}

pub fn print(out: &Output, format: Format, w: &mut impl Write) -> Result<()> {
    let batches: Vec<RecordBatch> = if out.batches.is_empty() {
        vec![RecordBatch::new_empty(out.schema.clone())]
    } else {
        out.batches.clone()
    };
    match format {
        Format::Table => {
            // Lake values come from visitors (referrers, user agents): what
            // reaches a terminal is escaped.
            let (schema, batches) = escaped(&out.schema, &batches)?;
            writeln!(
                w,
                "{}",
                pretty_format_batches_with_schema(schema, &batches)?
            )?;
            if let Some(values) = &out.sparkline {
                if !values.is_empty() {
                    writeln!(w, "{}", sparkline(values))?;
                }
            }
        }
        Format::Csv => {
            // Arrow's CSV writer reports a failed write as text: the
            // watcher keeps the I/O error itself, so a closed pipe is
            // still told apart.
            let mut watched = Watched {
                inner: w,
                failed: None,
            };
            let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut watched);
            for b in &batches {
                if let Err(e) = writer.write(b) {
                    drop(writer);
                    return Err(match watched.failed.take() {
                        Some(io) => anyhow::Error::from(io).context(e.to_string()),
                        None => e.into(),
                    });
                }
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
    use super::*;

    #[test]
    fn closed_pipes_are_told_from_other_errors() {
        use datafusion::arrow::error::ArrowError;
        let pipe = || std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let ours = anyhow::Error::from(pipe()).context("printing");
        assert!(is_broken_pipe(&ours));
        let arrow = anyhow::Error::from(ArrowError::IoError("csv".into(), pipe()));
        assert!(is_broken_pipe(&arrow.context("printing")));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(is_broken_pipe(&anyhow::Error::from(reset)));
        let other = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(!is_broken_pipe(&other));
        assert!(!is_broken_pipe(&anyhow::anyhow!("Broken pipe")));
    }

    /// A writer whose reader has gone.
    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_format_reports_a_closed_pipe_as_one() {
        let schema = Arc::new(Schema::new(vec![Field::new("code", DataType::Utf8, false)]));
        let codes: ArrayRef = Arc::new(StringArray::from(vec!["a"; 10_000]));
        let out = Output {
            batches: vec![RecordBatch::try_new(schema.clone(), vec![codes]).unwrap()],
            schema,
            sparkline: None,
        };
        for format in [Format::Table, Format::Csv, Format::Json] {
            let e = print(&out, format, &mut Closed).unwrap_err();
            assert!(is_broken_pipe(&e), "{format:?}: {e:#}");
        }
    }

    #[test]
    fn sparkline_scales() {
        assert_eq!(super::sparkline(&[0, 7, 14]), "▁▅█");
        assert_eq!(super::sparkline(&[0, 0]), "▁▁");
    }

    #[test]
    fn table_output_escapes_what_a_terminal_would_obey() {
        assert_eq!(escape_for_terminal("plain"), "plain");
        assert_eq!(escape_for_terminal("a\x1b[31mred"), "a\\u{1b}[31mred");
        assert_eq!(
            escape_for_terminal("x\ry\nz\u{7f}\u{9b}"),
            "x\\u{d}y\\u{a}z\\u{7f}\\u{9b}"
        );
        assert_eq!(escape_for_terminal("\u{202e}txt.exe"), "\\u{202e}txt.exe");
        assert_eq!(
            escape_for_terminal("back\\u{1b}slash"),
            "back\\\\u{1b}slash"
        );
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new(
            "referrer",
            DataType::Utf8,
            true,
        )]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(vec![
                Some("https://a.example/\x1b]0;pwned\x07"),
                None,
            ]))],
        )
        .unwrap();
        let out = crate::model::Output {
            schema,
            batches: vec![batch],
            sparkline: None,
        };
        let mut text = Vec::new();
        print(&out, Format::Table, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(text.contains("\\u{1b}]0;pwned\\u{7}"), "{text}");
    }
}
