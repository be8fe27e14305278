//! The spool as a source: the click spool of one `snowlink serve` data
//! directory, read in `seq` order as the stream `spool.<spool id>`.
//!
//! An acknowledged batch is released from the spool. Rows the ledger
//! already holds (a run killed between recording and releasing) are
//! released on resume, never read again.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use snowlink_lake::Lake;
use snowlink_spool::ClickSpool;

use crate::engine::{Record, Source};
use crate::ledger::Ledger;

pub struct SpoolSource {
    spool: ClickSpool,
    stream: String,
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
    pub fn new(mut spool: ClickSpool, path: &Path, lake: &Path) -> anyhow::Result<Self> {
        if let Err(e) = spool.claim(snowlink_spool::CONSUMER_LAKE) {
            anyhow::bail!(
                "{e}: {} is forwarded to Kafka by `snowlink serve --kafka-brokers`, and two consumers \
                 would split and duplicate clicks. Aggregate from Kafka instead \
                 (snowlink-aggregate --kafka-brokers HOST:PORT --lake {})",
                path.display(),
                lake.display()
            );
        }
        let stream = stream_name(&spool.spool_id()?);
        Ok(Self {
            spool,
            stream,
            cursor: 0,
            done: false,
        })
    }

    /// The spool, once the run is over (to release it).
    pub fn into_spool(self) -> ClickSpool {
        self.spool
    }
}

impl Source for SpoolSource {
    fn resume(&mut self, lake: &Lake, ledger: &mut Ledger) -> anyhow::Result<()> {
        let next = match ledger.position(&self.stream)? {
            Some(next) => next,
            None => self.adopt(lake, ledger)?,
        };
        // Whatever the ledger holds is durable: release it if a killed run
        // could not.
        if self.spool.released()? < next - 1 {
            self.spool.release_through(next - 1)?;
        }
        self.cursor = next - 1;
        Ok(())
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
                origin: None,
                payload: Some(event),
            })
            .collect())
    }

    fn done(&self) -> bool {
        self.done
    }

    fn acknowledge(&mut self, next: &BTreeMap<String, i64>) -> anyhow::Result<()> {
        if let Some(&n) = next.get(&self.stream) {
            self.spool
                .release_through(n - 1)
                .context("releasing aggregated rows from the spool")?;
        }
        Ok(())
    }
}

impl SpoolSource {
    /// First sight of this spool in this lake: the stream starts after what
    /// the spool already released. A spool drained by an earlier version
    /// kept its own batch state; a batch it left half-written (files named
    /// without a stream) is deleted and rewritten, and the days it had yet
    /// to roll up move to the ledger.
    fn adopt(&mut self, lake: &Lake, ledger: &mut Ledger) -> anyhow::Result<i64> {
        let next = self.spool.released()? + 1;
        if let Some(legacy) = self.spool.legacy()? {
            if let Some((first, _)) = legacy.pending {
                crate::engine::remove_click_files(lake, |_, stream, f| {
                    Ok(stream.is_none() && f >= first)
                })?;
            }
            ledger.mark_dirty(&legacy.dirty_days)?;
        }
        ledger.ensure_stream(&self.stream, next)?;
        self.spool.clear_legacy()?;
        Ok(next)
    }
}
