//! Fewer requests to an object store for the files a lake never changes.
//!
//! A Parquet reader asks for a file in pieces: its footer, its page index,
//! then each column it needs; Delta's log reader reads a checkpoint the same
//! way, once per kind of action. On S3 each piece is a request, and a query
//! over 30 days of rollups made about six per file. [`TailCache`] answers
//! the first read of such a file with one request for its last
//! [`TAIL_BYTES`] (the whole file, when it is smaller), keeps them, and
//! serves every later read that falls inside them from memory. Only files
//! written once under a name never reused are kept: data files and
//! checkpoints (`*.parquet`) and numbered commits (`_delta_log/<20
//! digits>.json`); `_last_checkpoint` and listings always go to the store.
//! What is kept is bounded ([`BUDGET_BYTES`]): past it, the cache starts
//! empty again.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use tokio::sync::OnceCell;

/// How much of a file's end the first read fetches: a rollup file or a
/// checkpoint whole, a click file's footer, page index and last row group.
pub const TAIL_BYTES: u64 = 2 << 20;
/// The most bytes kept at once.
pub const BUDGET_BYTES: u64 = 256 << 20;

/// The end of one file, as fetched.
struct Tail {
    meta: ObjectMeta,
    /// Where `bytes` start in the file (0: the whole file).
    start: u64,
    bytes: Bytes,
    attributes: object_store::Attributes,
}

impl Tail {
    /// The bytes of `range`, when they are all here.
    fn slice(&self, range: &Range<u64>) -> Option<Bytes> {
        (range.start >= self.start && range.end <= self.meta.size && range.start <= range.end).then(
            || {
                self.bytes
                    .slice((range.start - self.start) as usize..(range.end - self.start) as usize)
            },
        )
    }
}

type Slot = Arc<OnceCell<Option<Arc<Tail>>>>;

/// An object store that keeps the ends of immutable files (see the module).
pub struct TailCache {
    inner: Arc<dyn ObjectStore>,
    slots: Mutex<(HashMap<Path, Slot>, u64)>,
}

impl TailCache {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            slots: Mutex::new((HashMap::new(), 0)),
        }
    }

    /// The kept end of `location`, fetched by the first reader to ask;
    /// `None` for files that are not kept, or when fetching it failed (the
    /// caller then asks the store, which reports the error).
    async fn tail(&self, location: &Path) -> Option<Arc<Tail>> {
        if !immutable(location) {
            return None;
        }
        let slot = {
            let mut slots = self.slots.lock().expect("tail cache");
            slots.0.entry(location.clone()).or_default().clone()
        };
        // Set by the reader that fetches: the bytes are counted once.
        let fetched = std::sync::atomic::AtomicBool::new(false);
        let tail = slot
            .get_or_init(|| async {
                fetched.store(true, std::sync::atomic::Ordering::Relaxed);
                let options = GetOptions {
                    range: Some(GetRange::Suffix(TAIL_BYTES)),
                    ..Default::default()
                };
                let result = self.inner.get_opts(location, options).await.ok()?;
                let (meta, range, attributes) = (
                    result.meta.clone(),
                    result.range.clone(),
                    result.attributes.clone(),
                );
                let bytes = result.bytes().await.ok()?;
                (bytes.len() as u64 == range.end - range.start && range.end == meta.size).then(
                    || {
                        Arc::new(Tail {
                            meta,
                            start: range.start,
                            bytes,
                            attributes,
                        })
                    },
                )
            })
            .await
            .clone();
        match &tail {
            Some(t) if fetched.into_inner() => self.account(location, t.bytes.len() as u64),
            Some(_) => {}
            // Not kept: the next reader tries again.
            None => {
                self.slots.lock().expect("tail cache").0.remove(location);
            }
        }
        tail
    }

    /// Counts `len` more bytes kept, for `location`'s end just fetched;
    /// past the budget, everything else is forgotten.
    fn account(&self, location: &Path, len: u64) {
        let mut slots = self.slots.lock().expect("tail cache");
        let (map, used) = &mut *slots;
        if *used + len > BUDGET_BYTES {
            let keep = map.remove(location);
            map.clear();
            *used = 0;
            if let Some(k) = keep {
                map.insert(location.clone(), k);
            }
        }
        *used += len;
    }
}

/// Files written once and never changed: data files and checkpoints, and
/// numbered commits of the Delta log.
fn immutable(location: &Path) -> bool {
    let Some(name) = location.filename() else {
        return false;
    };
    if name.ends_with(".parquet") {
        return true;
    }
    name.strip_suffix(".json")
        .is_some_and(|n| n.len() == 20 && n.bytes().all(|b| b.is_ascii_digit()))
        && location.as_ref().contains("_delta_log/")
}

/// A plain read (no conditions, no version): what the cache may answer.
fn plain(options: &GetOptions) -> bool {
    options.if_match.is_none()
        && options.if_none_match.is_none()
        && options.if_modified_since.is_none()
        && options.if_unmodified_since.is_none()
        && options.version.is_none()
        && !options.head
}

impl fmt::Display for TailCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TailCache({})", self.inner)
    }
}

impl fmt::Debug for TailCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TailCache({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for TailCache {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if plain(&options) {
            if let Some(tail) = self.tail(location).await {
                let size = tail.meta.size;
                let range = match &options.range {
                    None => Some(0..size),
                    // Past the end is the store's answer to give.
                    Some(GetRange::Bounded(r)) if r.start >= size => None,
                    Some(GetRange::Bounded(r)) => Some(r.start..r.end.min(size)),
                    Some(GetRange::Offset(o)) if *o >= size => None,
                    Some(GetRange::Offset(o)) => Some(*o..size),
                    Some(GetRange::Suffix(n)) => Some(size.saturating_sub(*n)..size),
                };
                if let Some((range, bytes)) = range.and_then(|r| tail.slice(&r).map(|b| (r, b))) {
                    return Ok(GetResult {
                        payload: GetResultPayload::Stream(
                            futures::stream::once(async move { Ok(bytes) }).boxed(),
                        ),
                        meta: tail.meta.clone(),
                        range,
                        attributes: tail.attributes.clone(),
                    });
                }
            }
        }
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let Some(tail) = self.tail(location).await else {
            return self.inner.get_ranges(location, ranges).await;
        };
        let kept: Vec<Option<Bytes>> = ranges.iter().map(|r| tail.slice(r)).collect();
        let missing: Vec<Range<u64>> = ranges
            .iter()
            .zip(&kept)
            .filter(|(_, k)| k.is_none())
            .map(|(r, _)| r.clone())
            .collect();
        let mut fetched = if missing.is_empty() {
            Vec::new()
        } else {
            self.inner.get_ranges(location, &missing).await?
        }
        .into_iter();
        Ok(kept
            .into_iter()
            .map(|k| k.or_else(|| fetched.next()).unwrap_or_default())
            .collect())
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;

    /// Counts the reads that reach the store.
    #[derive(Debug)]
    struct Counting(InMemory, std::sync::atomic::AtomicUsize);

    impl fmt::Display for Counting {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Counting")
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Counting {
        async fn put_opts(&self, l: &Path, p: PutPayload, o: PutOptions) -> Result<PutResult> {
            self.0.put_opts(l, p, o).await
        }
        async fn put_multipart_opts(
            &self,
            l: &Path,
            o: PutMultipartOptions,
        ) -> Result<Box<dyn MultipartUpload>> {
            self.0.put_multipart_opts(l, o).await
        }
        async fn get_opts(&self, l: &Path, o: GetOptions) -> Result<GetResult> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.0.get_opts(l, o).await
        }
        fn delete_stream(
            &self,
            l: BoxStream<'static, Result<Path>>,
        ) -> BoxStream<'static, Result<Path>> {
            self.0.delete_stream(l)
        }
        fn list(&self, p: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
            self.0.list(p)
        }
        async fn list_with_delimiter(&self, p: Option<&Path>) -> Result<ListResult> {
            self.0.list_with_delimiter(p).await
        }
        async fn copy_opts(&self, f: &Path, t: &Path, o: CopyOptions) -> Result<()> {
            self.0.copy_opts(f, t, o).await
        }
    }

    fn reads(store: &Counting) -> usize {
        store.1.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[tokio::test]
    async fn small_immutable_files_are_read_once_and_answer_every_range() {
        let inner = Arc::new(Counting(InMemory::new(), Default::default()));
        let cache = TailCache::new(inner.clone());
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let file = Path::from("lake/daily/date=2026-11-01/daily-1.parquet");
        inner.put(&file, data.clone().into()).await.unwrap();
        assert_eq!(cache.get_range(&file, 10..20).await.unwrap(), data[10..20]);
        assert_eq!(
            cache.get_range(&file, 99_990..100_000).await.unwrap(),
            data[99_990..]
        );
        let both = cache.get_ranges(&file, &[0..5, 50..60]).await.unwrap();
        assert_eq!(both, [data[0..5].to_vec(), data[50..60].to_vec()]);
        assert_eq!(cache.get(&file).await.unwrap().bytes().await.unwrap(), data);
        assert_eq!(reads(&inner), 1, "one request for the whole file");
        assert_eq!(
            cache.slots.lock().unwrap().1,
            data.len() as u64,
            "kept bytes counted once, however often they are read"
        );
        // Past the end, the same answer as the store's.
        for r in [99_999..100_010, 100_000..100_010, 200_000..200_001] {
            let cached = cache
                .get_range(&file, r.clone())
                .await
                .map_err(|e| e.to_string());
            let direct = inner.get_range(&file, r).await.map_err(|e| e.to_string());
            assert_eq!(cached.is_ok(), direct.is_ok(), "{cached:?} {direct:?}");
            if let (Ok(a), Ok(b)) = (cached, direct) {
                assert_eq!(a, b);
            }
        }
    }

    #[tokio::test]
    async fn a_large_file_keeps_its_end_and_reads_the_rest_from_the_store() {
        let inner = Arc::new(Counting(InMemory::new(), Default::default()));
        let cache = TailCache::new(inner.clone());
        let size = (TAIL_BYTES + 1000) as usize;
        let data: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        let file = Path::from("lake/clicks/date=2026-11-01/clicks-x.parquet");
        inner.put(&file, data.clone().into()).await.unwrap();
        let end = size as u64;
        assert_eq!(
            cache.get_range(&file, end - 8..end).await.unwrap(),
            data[size - 8..]
        );
        // The end starts at byte 1000.
        assert_eq!(
            cache.get_range(&file, 1000..2000).await.unwrap(),
            data[1000..2000]
        );
        assert_eq!(reads(&inner), 1);
        assert_eq!(cache.get_range(&file, 0..10).await.unwrap(), data[0..10]);
        assert_eq!(
            cache.get_range(&file, 990..1010).await.unwrap(),
            data[990..1010]
        );
        assert_eq!(reads(&inner), 3, "the end once, then what lies before it");
    }

    #[tokio::test]
    async fn files_that_change_are_always_read_from_the_store() {
        let inner = Arc::new(Counting(InMemory::new(), Default::default()));
        let cache = TailCache::new(inner.clone());
        let last = Path::from("lake/clicks/_delta_log/_last_checkpoint");
        inner
            .put(&last, b"{\"version\":9}".to_vec().into())
            .await
            .unwrap();
        cache.get(&last).await.unwrap();
        inner
            .put(&last, b"{\"version\":19}".to_vec().into())
            .await
            .unwrap();
        let now = cache.get(&last).await.unwrap().bytes().await.unwrap();
        assert_eq!(&now[..], b"{\"version\":19}");
        assert_eq!(reads(&inner), 2);
        assert!(immutable(&Path::from(
            "t/_delta_log/00000000000000000007.json"
        )));
        assert!(!immutable(&Path::from("t/_delta_log/7.json")));
        assert!(!immutable(&Path::from("t/other/00000000000000000007.json")));
        // A file that does not exist is not remembered as missing.
        let commit = Path::from("lake/clicks/_delta_log/00000000000000000001.json");
        assert!(cache.get(&commit).await.is_err());
        inner.put(&commit, b"{}".to_vec().into()).await.unwrap();
        assert_eq!(
            &cache.get(&commit).await.unwrap().bytes().await.unwrap()[..],
            b"{}"
        );
    }
}
