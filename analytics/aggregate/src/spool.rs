//! The spool as a source: the click spool of one `snowlink serve` data
//! directory, read in `seq` order as the stream `spool.<spool id>`.
//!
//! An acknowledged batch is released from the spool. Rows the table
//! already records (a run killed between its commit and the release) are
//! released on resume, never read again.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use snowlink_spool::ClickSpool;

use snowlink_events::ClickEventIn;

use crate::engine::{Decode, Decoded, LakeIo, Record, Source};

pub struct SpoolSource {
    spool: ClickSpool,
    stream: std::sync::Arc<str>,
    /// Last `seq` handed out.
    cursor: i64,
    done: bool,
}

/// The lake stream of a spool.
pub fn stream_name(spool_id: &str) -> String {
    format!("spool.{spool_id}")
}

impl SpoolSource {
    /// Takes `spool` as the lake's: refused when the spool is forwarded to
    /// Kafka instead.
    pub fn new(mut spool: ClickSpool, path: &Path, lake: &str) -> anyhow::Result<Self> {
        if let Err(e) = spool.claim(snowlink_spool::CONSUMER_LAKE) {
            anyhow::bail!(
                "{e}: {} is forwarded to Kafka by `snowlink serve --kafka-brokers`, and two consumers \
                 would split and duplicate clicks. Aggregate from Kafka instead \
                 (snowlink-aggregate --kafka-brokers HOST:PORT --lake {})",
                path.display(),
                lake
            );
        }
        let stream = stream_name(&spool.spool_id()?);
        Ok(Self {
            spool,
            stream: stream.into(),
            cursor: 0,
            done: false,
        })
    }

    /// The spool, once the run is over (to release it).
    pub fn into_spool(self) -> ClickSpool {
        self.spool
    }
}

impl SpoolSource {
    /// Positions the cursor after what the table records, releasing from
    /// the spool whatever the table already holds (a run killed between
    /// its commit and the release).
    fn position(&mut self, io: &LakeIo) -> anyhow::Result<HashMap<String, Option<i64>>> {
        let recorded = io.positions(&[self.stream.to_string()])?;
        let at = recorded.get(&*self.stream).copied().flatten();
        let next = match at {
            Some(next) => next,
            // First sight of this spool in this lake: it starts after what
            // the spool already released.
            None => self.spool.released()? + 1,
        };
        if self.spool.released()? < next - 1 {
            self.spool.release_through(next - 1)?;
        }
        self.cursor = next - 1;
        self.done = false;
        Ok(recorded)
    }
}

/// A spool row: the service writes no origin, since nothing resends it.
fn decode_row(row: &[u8], now_ms: i64) -> Decoded<'_> {
    ClickEventIn::parse_row(row, now_ms).map(|e| (e, None))
}

impl Source for SpoolSource {
    fn decode(&self) -> Decode {
        decode_row
    }

    fn resume(&mut self, io: &LakeIo) -> anyhow::Result<HashMap<String, Option<i64>>> {
        self.position(io)
    }

    fn remaining(&self) -> Option<u64> {
        self.spool.backlog().ok().map(|n| n as u64)
    }

    fn poll(&mut self, max: usize, _stop: &AtomicBool) -> anyhow::Result<Vec<Record>> {
        let rows = self.spool.read_after(self.cursor, max)?;
        match rows.last() {
            Some(&(last, _)) => self.cursor = last,
            None => self.done = true,
        }
        Ok(rows
            .into_iter()
            .map(|(seq, event)| Record {
                stream: self.stream.clone(),
                position: seq,
                payload: Some(event),
            })
            .collect())
    }

    fn done(&self) -> bool {
        self.done
    }

    fn acknowledge(&mut self, next: &BTreeMap<String, i64>) -> anyhow::Result<()> {
        if let Some(&n) = next.get(&*self.stream) {
            self.spool
                .release_through(n - 1)
                .context("releasing aggregated rows from the spool")?;
        }
        Ok(())
    }

    /// A spool has one consumer (its claim), so only a second lake writer
    /// of the same spool (a copy of the data directory) moves its stream.
    fn resync(&mut self, io: &LakeIo) -> anyhow::Result<HashMap<String, Option<i64>>> {
        self.position(io)
    }
}
