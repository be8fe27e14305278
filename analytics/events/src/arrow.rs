//! The Arrow schema of [`ClickEvent`] and the conversion to a record batch.
//!
//! `ts` is a real timestamp (milliseconds, UTC), so Parquet stores it as
//! `TIMESTAMP(MILLIS, isAdjustedToUTC=true)` and any reader sees a time, not a
//! number. The partition column `date` is not in the files: it lives in the
//! hive-style folder name (`date=YYYY-MM-DD`).

use std::sync::{Arc, OnceLock};

use arrow_array::builder::{
    BooleanBuilder, Int16Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::{ClickEvent, ClickEventRef};

pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// Schema of the `clicks` files, in column order.
pub fn click_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("schema_version", DataType::Int16, false),
                Field::new("event_id", DataType::Int64, false),
                Field::new("code", DataType::Utf8, false),
                Field::new("ts", timestamp_type(), false),
                Field::new("referrer", DataType::Utf8, true),
                Field::new("referrer_host", DataType::Utf8, true),
                Field::new("user_agent", DataType::Utf8, true),
                Field::new("browser", DataType::Utf8, true),
                Field::new("os", DataType::Utf8, true),
                Field::new("device", DataType::Utf8, true),
                Field::new("is_bot", DataType::Boolean, false),
                Field::new("country", DataType::Utf8, true),
                Field::new("visitor_id", DataType::Utf8, false),
            ]))
        })
        .clone()
}

/// Builds one record batch from events, in the order given.
pub fn to_record_batch(events: &[ClickEvent]) -> Result<RecordBatch, ArrowError> {
    to_record_batch_of(events.iter().map(ClickEvent::as_ref))
}

/// [`to_record_batch`] from views of events, in the order given (a sorted
/// order, say, without moving the events themselves).
pub fn to_record_batch_of<'a>(
    events: impl ExactSizeIterator<Item = ClickEventRef<'a>>,
) -> Result<RecordBatch, ArrowError> {
    let n = events.len();
    let mut version = Int16Builder::with_capacity(n);
    let mut event_id = Int64Builder::with_capacity(n);
    let mut ts = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
    let mut is_bot = BooleanBuilder::with_capacity(n);
    let mut strings: Vec<StringBuilder> = (0..9)
        .map(|_| StringBuilder::with_capacity(n, n * 16))
        .collect();
    for e in events {
        version.append_value(e.schema_version as i16);
        event_id.append_value(e.event_id);
        ts.append_value(e.ts);
        is_bot.append_value(e.is_bot);
        let cols: [Option<&str>; 9] = [
            Some(e.code),
            e.referrer,
            e.referrer_host,
            e.user_agent,
            e.browser,
            e.os,
            e.device,
            e.country,
            Some(e.visitor_id),
        ];
        for (b, v) in strings.iter_mut().zip(cols) {
            b.append_option(v);
        }
    }
    let mut s = strings
        .into_iter()
        .map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let mut next = || s.next().expect("nine string columns");
    let code = next();
    let (referrer, referrer_host, user_agent, browser, os, device, country, visitor) = (
        next(),
        next(),
        next(),
        next(),
        next(),
        next(),
        next(),
        next(),
    );
    RecordBatch::try_new(
        click_schema(),
        vec![
            Arc::new(version.finish()),
            Arc::new(event_id.finish()),
            code,
            Arc::new(ts.finish()),
            referrer,
            referrer_host,
            user_agent,
            browser,
            os,
            device,
            Arc::new(is_bot.finish()),
            country,
            visitor,
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_matches_schema_and_serde_fields() {
        let e = crate::tests::sample();
        let batch = to_record_batch(&[e.clone(), e]).unwrap();
        assert_eq!(batch.num_rows(), 2);
        // Every serde field has a column of the same name, and vice versa.
        let json: serde_json::Value = serde_json::to_value(crate::tests::sample()).unwrap();
        let mut serde_fields: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
        let mut arrow_fields: Vec<_> = click_schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        serde_fields.sort();
        arrow_fields.sort();
        assert_eq!(serde_fields, arrow_fields);
    }
}

/// Reads events back from a batch with the [`click_schema`] columns (extra
/// columns, such as a partition column, are ignored).
pub fn from_record_batch(batch: &RecordBatch) -> Result<Vec<ClickEvent>, ArrowError> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int16Type, Int64Type, TimestampMillisecondType};
    use arrow_array::Array;

    let col = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| ArrowError::SchemaError(format!("missing column {name}")))
    };
    let version = col("schema_version")?
        .as_primitive_opt::<Int16Type>()
        .ok_or_else(|| ArrowError::SchemaError("schema_version".into()))?;
    let event_id = col("event_id")?
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| ArrowError::SchemaError("event_id".into()))?;
    let ts = col("ts")?
        .as_primitive_opt::<TimestampMillisecondType>()
        .ok_or_else(|| ArrowError::SchemaError("ts".into()))?;
    let is_bot = col("is_bot")?
        .as_boolean_opt()
        .ok_or_else(|| ArrowError::SchemaError("is_bot".into()))?;
    let strings = [
        "code",
        "referrer",
        "referrer_host",
        "user_agent",
        "browser",
        "os",
        "device",
        "country",
        "visitor_id",
    ]
    .map(|name| {
        col(name).and_then(|c| {
            c.as_string_opt::<i32>()
                .ok_or_else(|| ArrowError::SchemaError(format!("{name} is not a string column")))
        })
    });
    let [code, referrer, referrer_host, user_agent, browser, os, device, country, visitor] =
        strings;
    let (code, referrer, referrer_host, user_agent, browser, os, device, country, visitor) = (
        code?,
        referrer?,
        referrer_host?,
        user_agent?,
        browser?,
        os?,
        device?,
        country?,
        visitor?,
    );
    let opt =
        |a: &arrow_array::StringArray, i: usize| (!a.is_null(i)).then(|| a.value(i).to_owned());
    Ok((0..batch.num_rows())
        .map(|i| ClickEvent {
            schema_version: version.value(i) as u16,
            event_id: event_id.value(i),
            code: code.value(i).to_owned(),
            ts: ts.value(i),
            referrer: opt(referrer, i),
            referrer_host: opt(referrer_host, i),
            user_agent: opt(user_agent, i),
            browser: opt(browser, i),
            os: opt(os, i),
            device: opt(device, i),
            is_bot: is_bot.value(i),
            country: opt(country, i),
            visitor_id: visitor.value(i).to_owned(),
        })
        .collect())
}

#[cfg(test)]
mod round_trip {
    #[test]
    fn batch_round_trips() {
        let mut a = crate::tests::sample();
        let mut b = a.clone();
        b.referrer = None;
        b.country = None;
        b.is_bot = true;
        a.event_id = 7;
        let batch = super::to_record_batch(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(super::from_record_batch(&batch).unwrap(), vec![a, b]);
    }
}
