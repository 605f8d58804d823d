//! The disk tier of the LM cache: a directory of append-only segment files plus a mapped hash index,
//! shared by any number of processes.
//!
//! Reads map the files and take no lock. Writes append under an exclusive `flock` on `<dir>/lock`
//! (released by the kernel when a writer dies, so a killed process never wedges the store). Files
//! that other processes may have mapped are never truncated or rewritten: an index shard is replaced
//! by writing a new file and renaming it over `index-NN.tdi` after marking the old one retired, and
//! eviction and `clear` delete whole segments. The format is documented in `docs/cache-format.md`.
//!
//! The index is split into 16 shards by a key byte, so growing one (the only pause a writer takes
//! that grows with the store) rewrites a sixteenth of it. Shard 0's header also holds the store-wide
//! counters: segment ids, data size, hits, misses and what hits saved.

pub mod held;
pub mod index;
pub mod record;
pub mod segment;
pub mod value;

use fs4::FileExt;
use held::{HeldValue, Holders};
use index::{Counter, Index, Location, HEADER_CHECKED_WORDS};
use memmap2::{Mmap, MmapOptions, MmapRaw};
use record::{RecordMeta, KEY_LEN};
use segment::SegmentFile;
use std::cell::OnceCell;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

pub const SHARDS: usize = 16;
pub const LOCK_FILE: &str = "lock";
pub const QUARANTINE_DIR: &str = "quarantine";

/// Segments roll over at a sixteenth of the size limit (within these bounds), so eviction can free
/// space a segment at a time without emptying the store.
const MIN_SEGMENT_BYTES: u64 = 64 * 1024;
const MAX_SEGMENT_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} ({path}): {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("a value of {0} bytes is larger than the store accepts ({max} bytes)", max = record::MAX_VALUE_LEN)]
    ValueTooLarge(usize),
    #[error("the cache index {0} is read-only; this process cannot write to the cache")]
    ReadOnly(PathBuf),
    #[error(
        "the cache index {0} is full even after a rebuild; run `python -m turbodspy cache verify`"
    )]
    IndexFull(PathBuf),
}

pub type Result<T> = std::result::Result<T, StoreError>;

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Counters and sizes for `cache stats`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub entries: u64,
    pub bytes: u64,
    pub segments: u64,
    pub hits: u64,
    pub misses: u64,
    pub tokens_saved: u64,
    pub cost_saved_nanos: u64,
    pub bad_records: u64,
    pub index_generation: u64,
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records that decoded with a good checksum.
    pub ok: u64,
    /// Damaged byte ranges (each counts once), copied to `quarantine/` and dropped from the index.
    pub bad: u64,
    /// Records cut short by a writer that died mid-append (harmless: never indexed; reported for completeness).
    pub interrupted_writes: u64,
    pub damaged_slots: u64,
    pub index_was_unreadable: bool,
    pub index_rebuilt: bool,
    pub entries: u64,
}

struct MappedIndex {
    map: MmapRaw,
    writable: bool,
    /// The header as a view first found it sound, and its slot mask. A header is written once, before its file
    /// gets its name, so later views compare its words instead of checking its checksum again; a header
    /// damaged since fails the comparison and the full check, and the shard is mapped afresh (another process
    /// may have rebuilt it). The mask stays the one checked against this mapping's length.
    checked: OnceCell<([u64; HEADER_CHECKED_WORDS], u64)>,
}

impl MappedIndex {
    fn words(&self) -> &[AtomicU64] {
        // SAFETY: the mapping is page-aligned (so 8-aligned) and lives as long as `self`; AtomicU64 has
        // the size and alignment of u64; every process touches these words only through atomics; and
        // the file is never truncated (replacements are new files), so the pages stay backed.
        unsafe {
            std::slice::from_raw_parts(self.map.as_ptr().cast::<AtomicU64>(), self.map.len() / 8)
        }
    }

    /// Whether the shard is readable and not retired (a newer file replaced it).
    fn is_current(&self) -> bool {
        self.view().is_some_and(|v| !v.is_retired())
    }

    fn view(&self) -> Option<Index<'_>> {
        let words = self.words();
        let header = |words: &[AtomicU64]| -> [u64; HEADER_CHECKED_WORDS] {
            std::array::from_fn(|i| words[i].load(Ordering::Acquire))
        };
        if let Some((seen, mask)) = self.checked.get() {
            return (header(words) == *seen).then(|| Index::checked(words, *mask));
        }
        let index = Index::open(words).ok()?;
        let _ = self.checked.set((header(words), index.capacity() - 1));
        Some(index)
    }
}

/// Read-only mappings of segments, with the values handed out that view them.
#[derive(Default)]
struct Segments {
    maps: HashMap<u32, MappedSegment>,
    /// Values handed out that view these mappings (or earlier ones of the same segments).
    held: Holders,
}

/// A segment's mapping. It reaches past the file's end, so a segment another process is filling is
/// remapped a few times, not once per record: values keep the mapping they view alive, and one mapping
/// per hit would exhaust the process's mappings.
struct MappedSegment {
    file: SegmentFile,
    map: Arc<Mmap>,
    /// The file's length when last asked. Only bytes below it are read: past the end, pages fault.
    file_len: u64,
}

/// Address space for a segment of `len` bytes: two to four times its length, at least 1 MiB.
#[cfg(unix)]
fn mapped_len(len: u64) -> u64 {
    (len.max(1 << 19) * 2).next_power_of_two()
}

/// Windows maps no further than a file's end.
#[cfg(not(unix))]
fn mapped_len(len: u64) -> u64 {
    len
}

fn map_segment(file: &File, file_len: u64) -> Option<Arc<Mmap>> {
    let len = usize::try_from(mapped_len(file_len)).ok()?;
    // SAFETY: segment files are append-only and never truncated by turbodspy (see the module docs):
    // bytes already in the file do not change, and only bytes below its known length are read.
    unsafe { MmapOptions::new().len(len).map(file) }
        .ok()
        .map(Arc::new)
}

impl Segments {
    /// Segment `id`'s bytes, if it holds at least `end` of them.
    fn bytes(&mut self, dir: &Path, id: u32, end: u64) -> Option<&[u8]> {
        let seg = match self.maps.entry(id) {
            Entry::Occupied(mapped) => mapped.into_mut(),
            Entry::Vacant(slot) => {
                let (file, open, file_len) = SegmentFile::open(segment::path(dir, id))?;
                let map = map_segment(&open, file_len)?;
                slot.insert(MappedSegment {
                    file,
                    map,
                    file_len,
                })
            }
        };
        if end > seg.file_len {
            seg.file_len = seg.file.current_len()?;
            if end > seg.file_len {
                return None;
            }
        }
        if seg.file_len > seg.map.len() as u64 {
            seg.map = map_segment(&seg.file.reopen()?, seg.file_len)?;
        }
        Some(&seg.map[..seg.file_len as usize])
    }

    /// A value at `range` of segment `id`, which `bytes` mapped.
    fn hand_out(&mut self, id: u32, range: std::ops::Range<usize>) -> HeldValue {
        let seg = &self.maps[&id];
        self.held.hand_out(id, &seg.file, &seg.map, range)
    }

    /// Lets go of segments deleted since they were mapped (the index changed, so some may be): values viewing
    /// them are copied out and their mappings dropped, so the files' space is freed. Segments still on disk
    /// stay mapped, their values in place. Segments are deleted before the index that drops them is
    /// published, so a change seen here follows the deletions that came with it.
    fn let_go_of_deleted(&mut self) {
        self.held.release_deleted();
        self.maps.retain(|_, seg| seg.file.current_len().is_some());
    }

    /// Whether segment `id`, mapped, is still on disk under its name.
    fn on_disk(&self, id: u32) -> bool {
        self.maps
            .get(&id)
            .is_some_and(|seg| seg.file.current_len().is_some())
    }
}

#[derive(Default)]
struct State {
    shards: [Option<MappedIndex>; SHARDS],
    segments: Segments,
    /// The segment this process appends to, with its file open for appending.
    active: Option<(u32, File)>,
    /// The process that opened `active` (a forked child reopens it).
    writer_pid: u32,
    /// Counted here when the index cannot be written (a read-only cache).
    local_hits: u64,
    local_misses: u64,
}

/// A cache directory. Cheap to create: nothing touches the disk until the first call.
pub struct Store {
    dir: PathBuf,
    size_limit: u64,
    state: Mutex<State>,
    /// The lock file, with the id of the process that opened it.
    write_gate: Mutex<Option<(u32, File)>>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Tells whether a value's bytes decode (the store itself treats values as opaque bytes).
pub type ValueCheck<'a> = &'a dyn Fn(&[u8]) -> bool;

/// Whether a record's value passes `check` (a value in an encoding `check` does not read is left alone).
fn well_formed(record: &record::Record<'_>, check: ValueCheck<'_>) -> bool {
    record.flags & 0xff != record::ENCODING_TAGGED || check(record.value)
}

/// The index shard holding `key`: a key byte the slot tag and home slot do not use.
pub fn shard_of(key: &[u8; KEY_LEN]) -> usize {
    usize::from(key[KEY_LEN - 1]) % SHARDS
}

pub fn shard_file(shard: usize) -> String {
    format!("index-{shard:02}.tdi")
}

/// Shard 0's header holds the store-wide counters.
const GLOBAL: usize = 0;
const GLOBAL_COUNTERS: [Counter; 8] = [
    Counter::NextSegment,
    Counter::ActiveSegment,
    Counter::DataBytes,
    Counter::Hits,
    Counter::Misses,
    Counter::TokensSaved,
    Counter::CostSavedNanos,
    Counter::BadRecords,
];

/// A hit's value with the metadata stored beside it.
pub struct Found {
    pub value: HeldValue,
    pub meta: RecordMeta,
    pub flags: u32,
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>, size_limit: u64) -> Store {
        let dir = dir.into();
        Store {
            // Files are opened, and known, by path: a relative one would change meaning with the working directory.
            dir: std::path::absolute(&dir).unwrap_or(dir),
            size_limit,
            state: Mutex::new(State::default()),
            write_gate: Mutex::new(None),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn size_limit(&self) -> u64 {
        self.size_limit
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves only caches behind; they are rebuilt on demand.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn shard_path(&self, shard: usize) -> PathBuf {
        self.dir.join(shard_file(shard))
    }

    /// Maps shard `i` if the state has none or the one it has was retired. Read-write if allowed.
    fn refresh_shard(&self, st: &mut State, i: usize) -> Result<()> {
        let first_look = st.shards[i].is_none();
        if let Some(mapped) = &st.shards[i] {
            if mapped.is_current() {
                return Ok(());
            }
            // A new index may have dropped whole segments (eviction, clear): let go of deleted ones, and
            // of any other retired shards, so deleted files do not keep their disk space.
            st.segments.let_go_of_deleted();
            for shard in st.shards.iter_mut() {
                if shard.as_ref().is_some_and(|m| !m.is_current()) {
                    *shard = None;
                }
            }
        }
        st.shards[i] = None;
        let path = self.shard_path(i);
        let (file, writable) = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => (f, true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(_) => match File::open(&path) {
                Ok(f) => (f, false),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io_err("cannot open the cache index", &path)(e)),
            },
        };
        let len = file
            .metadata()
            .map_err(io_err("cannot stat the cache index", &path))?
            .len();
        if len < index::HEADER_BYTES as u64 || len % 8 != 0 {
            return Ok(());
        }
        let map = if writable {
            MmapOptions::new().map_raw(&file)
        } else {
            MmapOptions::new().map_raw_read_only(&file)
        }
        .map_err(io_err("cannot map the cache index", &path))?;
        st.shards[i] = Some(MappedIndex {
            map,
            writable,
            checked: OnceCell::new(),
        });
        if first_look {
            // This shard was never seen retired here, but the store may have changed since segments were mapped.
            st.segments.let_go_of_deleted();
        }
        Ok(())
    }

    /// The value stored under `key`, or None. A record that fails its checksum is skipped and counted.
    /// `count` records the lookup in the hit/miss statistics.
    pub fn get(&self, key: &[u8; KEY_LEN], count: bool) -> Result<Option<Found>> {
        self.get_in(&mut self.state(), key, count)
    }

    /// Like `get` when the index shards it reads are mapped and current; None at once if another thread of
    /// this process is using the store, or the index must be mapped again (which may copy out values of
    /// deleted segments). A caller holding Python's GIL then calls `get` with the GIL released.
    pub fn try_get(&self, key: &[u8; KEY_LEN], count: bool) -> Option<Result<Option<Found>>> {
        let mut st = match self.state.try_lock() {
            Ok(st) => st,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        // A shard mapped but retired or unreadable is mapped again, which may copy out values. A shard not
        // mapped at all (no index yet) only costs a failed open.
        let current = |i: usize| st.shards[i].as_ref().is_none_or(MappedIndex::is_current);
        if !current(shard_of(key)) || (count && !current(GLOBAL)) {
            return None;
        }
        Some(self.get_in(&mut st, key, count))
    }

    fn get_in(&self, st: &mut State, key: &[u8; KEY_LEN], count: bool) -> Result<Option<Found>> {
        let shard = shard_of(key);
        self.refresh_shard(st, shard)?;
        if count {
            self.refresh_shard(st, GLOBAL)?;
        }
        let mut found = None;
        let mut bad = 0;
        {
            let State {
                shards, segments, ..
            } = &mut *st;
            if let Some(view) = shards[shard].as_ref().and_then(MappedIndex::view) {
                view.find(key, |loc| {
                    let (range, meta, flags) = match read_record(segments, &self.dir, loc) {
                        Some(Ok((k, value, meta, flags))) if k == key => {
                            let start = loc.offset as usize + record::VALUE_OFFSET;
                            (start..start + value.len(), meta, flags)
                        }
                        Some(Err(())) => {
                            bad += 1;
                            return false;
                        }
                        _ => return false,
                    };
                    found = Some(Found {
                        value: segments.hand_out(loc.segment, range),
                        meta,
                        flags,
                    });
                    true
                });
            }
        }
        let global = st.shards[GLOBAL]
            .as_ref()
            .filter(|m| m.writable)
            .and_then(MappedIndex::view);
        match global {
            Some(view) => {
                if bad > 0 {
                    view.add(Counter::BadRecords, bad);
                }
                if count {
                    match &found {
                        Some(f) => {
                            view.add(Counter::Hits, 1);
                            view.add(Counter::TokensSaved, f.meta.tokens);
                            view.add(Counter::CostSavedNanos, f.meta.cost_nanos);
                        }
                        None => view.add(Counter::Misses, 1),
                    }
                }
            }
            None if count => match &found {
                Some(_) => st.local_hits += 1,
                None => st.local_misses += 1,
            },
            None => {}
        }
        Ok(found)
    }

    /// Stores `value` under `key` (replacing an older, different value). Returns once the record and its
    /// index slot are in the files: from then on every process, and every later process, finds it.
    pub fn put(&self, key: &[u8; KEY_LEN], value: &[u8], meta: RecordMeta) -> Result<()> {
        if value.len() > record::MAX_VALUE_LEN {
            return Err(StoreError::ValueTooLarge(value.len()));
        }
        let mut buf = Vec::with_capacity(record::encoded_len(value.len()));
        record::encode(key, value, meta, record::ENCODING_TAGGED, &mut buf);
        let shard = shard_of(key);
        self.locked(|st| {
            self.index_for_write(st)?;
            self.repair_if_active_segment_deleted(st)?;
            if view_of(st, shard).needs_rebuild() {
                self.rebuild(st, shard, &|_| true)?;
            }
            // An older record of this key: identical means nothing to do; different means it is
            // removed once the new one is in place, so readers always find one or the other.
            let mut same = false;
            let mut old = self.find_slot(st, shard, key, |v| same = v == value);
            if same {
                // Read through this process's mapping, the record may lie in a segment since deleted by a clear
                // or eviction that died before publishing the index without it: repair the index, then write.
                if old.is_some_and(|(_, loc)| st.segments.on_disk(loc.segment)) {
                    return Ok(());
                }
                self.drop_missing_segments(st)?;
                old = self.find_slot(st, shard, key, |_| {});
            }
            let mut old_slot = old.map(|(slot, _)| slot);
            let loc = self.append(st, &buf)?;
            if view_of(st, shard).insert(key, loc).is_err() {
                // Only if the counters were damaged: the table filled without asking for a rebuild.
                self.rebuild(st, shard, &|_| true)?;
                old_slot = self.find_slot(st, shard, key, |_| {}).map(|(slot, _)| slot);
                view_of(st, shard)
                    .insert(key, loc)
                    .map_err(|_| StoreError::IndexFull(self.shard_path(shard)))?;
            }
            if let Some(slot) = old_slot {
                view_of(st, shard).remove(slot);
            }
            self.enforce_limit(st)
        })
    }

    /// The slot and location of `key`'s current record in `shard`, passing that record's value to `seen`.
    fn find_slot(
        &self,
        st: &mut State,
        shard: usize,
        key: &[u8; KEY_LEN],
        mut seen: impl FnMut(&[u8]),
    ) -> Option<(u64, Location)> {
        let State {
            shards, segments, ..
        } = st;
        let view = shards[shard].as_ref().and_then(MappedIndex::view)?;
        view.find(key, |loc| match read_record(segments, &self.dir, loc) {
            Some(Ok((k, v, _, _))) if k == key => {
                seen(v);
                true
            }
            _ => false,
        })
    }

    /// Runs `f` holding the exclusive file lock, then this process's state lock. The state lock is taken
    /// last so readers in this process never wait while a writer waits for another process.
    fn locked<R>(&self, f: impl FnOnce(&mut State) -> Result<R>) -> Result<R> {
        // One writer per process at a time: threads share the lock file's open description, and with it
        // the flock, so the flock alone cannot keep them apart.
        let mut gate = self.write_gate.lock().unwrap_or_else(|e| e.into_inner());
        if gate
            .as_ref()
            .is_some_and(|(pid, _)| *pid != std::process::id())
        {
            // A forked child inherited the parent's open description; it needs its own.
            *gate = None;
        }
        if gate.is_none() {
            fs::create_dir_all(&self.dir)
                .map_err(io_err("cannot create the cache directory", &self.dir))?;
            let path = self.dir.join(LOCK_FILE);
            let lock = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io_err("cannot open the cache lock file", &path))?;
            *gate = Some((std::process::id(), lock));
        }
        let (_, lock) = gate.as_ref().expect("set above");
        // Fully qualified: std's File::lock (Rust 1.89) would shadow fs4's method and raise the MSRV.
        FileExt::lock(lock).map_err(io_err("cannot lock the cache", &self.dir.join(LOCK_FILE)))?;
        let result = {
            let mut st = self.state();
            if st.writer_pid != std::process::id() {
                st.active = None;
                st.writer_pid = std::process::id();
            }
            f(&mut st)
        };
        let _ = FileExt::unlock(lock);
        result
    }

    /// Under the lock: makes sure every shard is mapped, valid, current and writable. A shard that is
    /// missing or unreadable means the index is rebuilt from the segments; a retired shard still at its
    /// path (a writer died between retiring it and the rename) is rebuilt from itself.
    fn index_for_write(&self, st: &mut State) -> Result<()> {
        for i in 0..SHARDS {
            self.refresh_shard(st, i)?;
            match &st.shards[i] {
                Some(m) if !m.writable => return Err(StoreError::ReadOnly(self.shard_path(i))),
                Some(m) => match m.view() {
                    Some(v) if !v.is_retired() => {}
                    Some(_) => self.rebuild(st, i, &|_| true)?,
                    None => return self.rebuild_from_segments(st).map(|_| ()),
                },
                None => return self.rebuild_from_segments(st).map(|_| ()),
            }
        }
        Ok(())
    }

    /// A writer whose open segment was deleted while the index still names it as the active one (a clear or
    /// eviction died between deleting files and publishing the index) repairs the index and starts a new
    /// segment: appended there, records would be unreadable. After a completed clear or eviction the index
    /// names another segment, and the writer only opens that one.
    fn repair_if_active_segment_deleted(&self, st: &mut State) -> Result<()> {
        let Some((id, file)) = &st.active else {
            return Ok(());
        };
        let deleted = file.metadata().is_ok_and(|m| segment::is_deleted(&m));
        if !deleted {
            return Ok(());
        }
        let still_named = view_of(st, GLOBAL).get(Counter::ActiveSegment) == u64::from(*id);
        st.active = None;
        if still_named {
            self.drop_missing_segments(st)?;
            view_of(st, GLOBAL).set(Counter::ActiveSegment, 0);
        }
        Ok(())
    }

    /// Drops from the index every entry whose segment file is gone, and lets go of deleted segments.
    fn drop_missing_segments(&self, st: &mut State) -> Result<()> {
        let left = self.segment_ids()?;
        for i in 0..SHARDS {
            self.rebuild(st, i, &|loc| left.binary_search(&loc.segment).is_ok())?;
        }
        st.segments.let_go_of_deleted();
        Ok(())
    }

    fn segment_target(&self) -> u64 {
        (self.size_limit / 16).clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES)
    }

    /// Appends an encoded record to the active segment (rolling to a new one when it is full).
    fn append(&self, st: &mut State, buf: &[u8]) -> Result<Location> {
        let State {
            shards,
            active: writer_active,
            ..
        } = st;
        let view = shards[GLOBAL]
            .as_ref()
            .and_then(MappedIndex::view)
            .expect("index open");
        let mut active = view.get(Counter::ActiveSegment) as u32;
        if writer_active.as_ref().map(|a| a.0) != Some(active) {
            *writer_active = None;
            if active != 0 {
                *writer_active = open_segment(&self.dir, active, false)?.map(|f| (active, f));
            }
        }
        let mut len = match writer_active {
            Some((_, f)) => f
                .metadata()
                .map_err(io_err("cannot stat a cache segment", &self.dir))?
                .len(),
            None => 0,
        };
        let full = len + buf.len() as u64 > self.segment_target()
            && len > segment::SEGMENT_HEADER_LEN as u64;
        if writer_active.is_none() || full {
            active = (view.get(Counter::NextSegment) as u32)
                .max(active.saturating_add(1))
                .max(1);
            view.set(Counter::NextSegment, u64::from(active) + 1);
            let file = open_segment(&self.dir, active, true)?.expect("created");
            len = file
                .metadata()
                .map_err(io_err("cannot stat a cache segment", &self.dir))?
                .len();
            view.add(Counter::DataBytes, len);
            view.set(Counter::ActiveSegment, u64::from(active));
            *writer_active = Some((active, file));
        }
        let (_, file) = writer_active.as_mut().expect("set above");
        let path = segment::path(&self.dir, active);
        // A writer killed mid-append leaves a torn tail; pad past it so records stay aligned for scans.
        let pad = (record::ALIGN as u64 - len % record::ALIGN as u64) % record::ALIGN as u64;
        if pad > 0 {
            file.write_all(&[0u8; record::ALIGN][..pad as usize])
                .map_err(io_err("cannot write to the cache", &path))?;
        }
        let offset = len + pad;
        file.write_all(buf)
            .map_err(io_err("cannot write to the cache", &path))?;
        view.add(Counter::DataBytes, pad + buf.len() as u64);
        Ok(Location {
            segment: active,
            len: buf.len() as u32,
            offset,
        })
    }

    /// Writes a new shard `i` holding its live entries that `keep` accepts, sized for them, then swaps it
    /// in. The store-wide counters move with shard 0.
    fn rebuild(&self, st: &mut State, i: usize, keep: &dyn Fn(Location) -> bool) -> Result<()> {
        let old = st.shards[i].take();
        let old_view = old.as_ref().and_then(MappedIndex::view);
        // Counted, not read from the header: a damaged counter must not undersize the new table.
        let live = old_view.as_ref().map_or(0, |v| {
            v.live().filter(|(_, _, loc)| keep(*loc)).count() as u64
        });
        let new = self.write_index(i, index::capacity_for(live + 1), |new| {
            if let Some(old) = &old_view {
                if i == GLOBAL {
                    for c in GLOBAL_COUNTERS {
                        new.set(c, old.get(c));
                    }
                }
                old.copy_into(new, keep)
                    .expect("sized for the live entries");
            }
        })?;
        self.publish(st, i, old_view.as_ref(), new)
    }

    /// Creates `index-NN.tdi.tmp-<pid>` with `capacity` slots, lets `fill` write it, returns the mapping.
    fn write_index(
        &self,
        i: usize,
        capacity: u64,
        fill: impl FnOnce(&Index<'_>),
    ) -> Result<(PathBuf, MappedIndex)> {
        let tmp = self
            .dir
            .join(format!("{}.tmp-{}", shard_file(i), std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io_err("cannot create a cache index", &tmp))?;
        // Built in memory and written in full (not a sparse file filled through the mapping): later slot
        // writes then land on allocated blocks, so no page fault waits for the filesystem to allocate.
        let words: Vec<AtomicU64> = std::iter::repeat_with(|| AtomicU64::new(0))
            .take((index::file_len(capacity) / 8) as usize)
            .collect();
        let view = Index::init(&words, capacity, now_ms(), now_ms());
        fill(&view);
        let mut out = io::BufWriter::with_capacity(1 << 20, &file);
        for word in &words {
            out.write_all(&word.load(Ordering::Relaxed).to_le_bytes())
                .map_err(io_err("cannot write a cache index", &tmp))?;
        }
        out.flush()
            .map_err(io_err("cannot write a cache index", &tmp))?;
        drop(out);
        let map = MmapOptions::new()
            .map_raw(&file)
            .map_err(io_err("cannot map a cache index", &tmp))?;
        Ok((
            tmp,
            MappedIndex {
                map,
                writable: true,
                checked: OnceCell::new(),
            },
        ))
    }

    /// Retires the old shard, then renames the new one over its path. Readers that see the retired flag
    /// reopen the path; a crash between the two steps is repaired by the next writer.
    fn publish(
        &self,
        st: &mut State,
        i: usize,
        old: Option<&Index<'_>>,
        (tmp, new): (PathBuf, MappedIndex),
    ) -> Result<()> {
        if let Some(old) = old {
            old.set(Counter::Retired, 1);
        }
        let path = self.shard_path(i);
        fs::rename(&tmp, &path).map_err(io_err("cannot replace the cache index", &path))?;
        st.shards[i] = Some(new);
        Ok(())
    }

    fn segment_ids(&self) -> Result<Vec<u32>> {
        let mut ids = vec![];
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ids),
            Err(e) => return Err(io_err("cannot list the cache directory", &self.dir)(e)),
        };
        for entry in entries.flatten() {
            if let Some(id) = entry.file_name().to_str().and_then(segment::id_of) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// Under the lock: reads every segment and writes an index of the good records.
    fn rebuild_from_segments(&self, st: &mut State) -> Result<VerifyReport> {
        self.rebuild_with(st, None)
    }

    /// Scans every segment and writes all shards from the good records (the newest record of a key
    /// wins). Bad ranges are copied to `quarantine/` when `quarantine` is set.
    /// A new index from every record the segments hold. `verify` passes its check of values: records that
    /// fail it, and damaged bytes, are then counted and quarantined.
    fn rebuild_with(&self, st: &mut State, verify: Option<ValueCheck<'_>>) -> Result<VerifyReport> {
        let quarantine = verify.is_some();
        let mut report = VerifyReport::default();
        let mut latest: HashMap<[u8; KEY_LEN], Location> = HashMap::new();
        let mut data_bytes = 0;
        let ids = self.segment_ids()?;
        for &id in &ids {
            let path = segment::path(&self.dir, id);
            let Ok(file) = File::open(&path) else {
                continue;
            };
            // SAFETY: as in `Segments::bytes`: segments are append-only, never truncated.
            let Ok(map) = (unsafe { MmapOptions::new().map(&file) }) else {
                continue;
            };
            data_bytes += map.len() as u64;
            for found in segment::scan(&map) {
                match found {
                    segment::Scanned::Good {
                        offset,
                        len,
                        record,
                    } if verify.is_none_or(|check| well_formed(&record, check)) => {
                        report.ok += 1;
                        let loc = Location {
                            segment: id,
                            len: len as u32,
                            offset: offset as u64,
                        };
                        latest.insert(*record.key, loc);
                    }
                    // A record whose checksum holds but whose value does not decode was forged to match:
                    // damage all the same (reads already treat it as a miss).
                    segment::Scanned::Good { offset, len, .. }
                    | segment::Scanned::Bad { offset, len } => {
                        report.bad += 1;
                        if quarantine {
                            self.quarantine(id, offset, &map[offset..offset + len])?;
                        }
                    }
                    segment::Scanned::Interrupted { .. } => report.interrupted_writes += 1,
                }
            }
        }
        let mut by_shard: Vec<Vec<([u8; KEY_LEN], Location)>> = vec![vec![]; SHARDS];
        for (key, loc) in &latest {
            by_shard[shard_of(key)].push((*key, *loc));
        }
        let next_segment = u64::from(ids.last().map_or(1, |&id| id + 1));
        for (i, mut entries) in by_shard.into_iter().enumerate() {
            let old = st.shards[i].take();
            let old_view = old.as_ref().and_then(MappedIndex::view);
            entries.sort_unstable_by_key(|(_, loc)| (loc.segment, loc.offset));
            let new =
                self.write_index(i, index::capacity_for(entries.len() as u64 + 1), |new| {
                    if i == GLOBAL {
                        if let Some(old) = &old_view {
                            for c in GLOBAL_COUNTERS {
                                new.set(c, old.get(c));
                            }
                        }
                        let next = new.get(Counter::NextSegment).max(next_segment);
                        new.set(Counter::NextSegment, next);
                        new.set(
                            Counter::ActiveSegment,
                            ids.last().map_or(0, |&id| u64::from(id)),
                        );
                        new.set(Counter::DataBytes, data_bytes);
                    }
                    for (key, loc) in &entries {
                        new.insert(key, *loc).expect("sized for the entries");
                    }
                })?;
            self.publish(st, i, old_view.as_ref(), new)?;
        }
        report.entries = latest.len() as u64;
        report.index_rebuilt = true;
        Ok(report)
    }

    fn quarantine(&self, id: u32, offset: usize, bytes: &[u8]) -> Result<()> {
        let dir = self.dir.join(QUARANTINE_DIR);
        fs::create_dir_all(&dir).map_err(io_err("cannot create the quarantine directory", &dir))?;
        let path = dir.join(format!("seg-{id:010}-at-{offset}.bad"));
        fs::write(&path, bytes).map_err(io_err("cannot write a quarantined record", &path))
    }

    /// Evicts the oldest segments until the store is a tenth under its limit.
    fn enforce_limit(&self, st: &mut State) -> Result<()> {
        let index_bytes: u64 = st
            .shards
            .iter()
            .filter_map(|m| m.as_ref().and_then(MappedIndex::view))
            .map(|v| index::file_len(v.capacity()))
            .sum();
        let global = view_of(st, GLOBAL);
        if global.get(Counter::DataBytes).saturating_add(index_bytes) <= self.size_limit / 20 * 19 {
            return Ok(());
        }
        // Near or over the limit by the counter: measure the files. The counter misses what killed writers
        // left half-written, and a damaged counter must not empty the store.
        let sizes: Vec<(u32, u64)> = self
            .segment_ids()?
            .into_iter()
            .map(|id| {
                let size = fs::metadata(segment::path(&self.dir, id)).map_or(0, |m| m.len());
                (id, size)
            })
            .collect();
        let data_bytes: u64 = sizes.iter().map(|s| s.1).sum();
        global.set(Counter::DataBytes, data_bytes);
        let total = data_bytes + index_bytes;
        if total <= self.size_limit {
            return Ok(());
        }
        let target = self.size_limit / 10 * 9;
        let mut remaining = total;
        let mut dropped = vec![];
        for (id, size) in sizes {
            if remaining <= target {
                break;
            }
            dropped.push((id, size));
            remaining = remaining.saturating_sub(size);
        }
        if dropped.is_empty() {
            return Ok(());
        }
        // Files first, then the index (as in `clear`). Unlinking leaves other processes' mappings valid;
        // the space returns when they unmap.
        let active = global.get(Counter::ActiveSegment) as u32;
        for &(id, size) in &dropped {
            let _ = fs::remove_file(segment::path(&self.dir, id));
            global.sub(Counter::DataBytes, size);
            if id == active {
                global.set(Counter::ActiveSegment, 0);
            }
        }
        // Entries of any segment now missing go (also those a writer killed before this step left behind).
        self.drop_missing_segments(st)?;
        if dropped.iter().any(|&(id, _)| id == active) {
            st.active = None;
        }
        Ok(())
    }

    /// Empties the store. Concurrent readers see either old entries or none, never a fault.
    pub fn clear(&self) -> Result<()> {
        self.locked(|st| {
            let ids = self.segment_ids()?;
            let mut next = u64::from(ids.last().map_or(1, |&id| id + 1));
            // Files first, then the index: a reader that sees the new index finds them gone, and copies
            // out what it holds of them. Until then it finds old entries, or misses where a file is gone.
            for &id in &ids {
                let _ = fs::remove_file(segment::path(&self.dir, id));
            }
            let _ = fs::remove_dir_all(self.dir.join(QUARANTINE_DIR));
            for i in 0..SHARDS {
                self.refresh_shard(st, i)?;
                let old = st.shards[i].take();
                let old_view = old.as_ref().and_then(MappedIndex::view);
                if i == GLOBAL {
                    next = old_view
                        .as_ref()
                        .map_or(next, |o| o.get(Counter::NextSegment).max(next));
                }
                let new = self.write_index(i, index::MIN_CAPACITY, |new| {
                    if i == GLOBAL {
                        new.set(Counter::NextSegment, next);
                    }
                })?;
                self.publish(st, i, old_view.as_ref(), new)?;
            }
            st.segments.let_go_of_deleted();
            st.active = None;
            st.local_hits = 0;
            st.local_misses = 0;
            Ok(())
        })
    }

    /// Checks every record of every segment, copies damaged bytes to `quarantine/`, and rebuilds the index
    /// from the good records.
    /// Checks every record (its checksum, and its value with `well_formed`), quarantines damage and rebuilds
    /// the index from the good records.
    pub fn verify(&self, well_formed: ValueCheck<'_>) -> Result<VerifyReport> {
        self.locked(|st| {
            let mut damaged = 0;
            let mut unreadable = false;
            for i in 0..SHARDS {
                self.refresh_shard(st, i)?;
                match &st.shards[i] {
                    Some(m) if !m.writable => return Err(StoreError::ReadOnly(self.shard_path(i))),
                    Some(m) => match m.view() {
                        Some(v) => damaged += v.damaged_slots(),
                        None => unreadable = true,
                    },
                    None => unreadable |= self.shard_path(i).exists(),
                }
            }
            let mut report = self.rebuild_with(st, Some(well_formed))?;
            report.damaged_slots = damaged;
            report.index_was_unreadable = unreadable;
            Ok(report)
        })
    }

    pub fn stats(&self) -> Result<Stats> {
        let mut st = self.state();
        let mut stats = Stats::default();
        for i in 0..SHARDS {
            self.refresh_shard(&mut st, i)?;
            if let Some(view) = st.shards[i].as_ref().and_then(MappedIndex::view) {
                stats.entries += view.get(Counter::LiveEntries);
                if i == GLOBAL {
                    stats.hits = view.get(Counter::Hits);
                    stats.misses = view.get(Counter::Misses);
                    stats.tokens_saved = view.get(Counter::TokensSaved);
                    stats.cost_saved_nanos = view.get(Counter::CostSavedNanos);
                    stats.bad_records = view.get(Counter::BadRecords);
                    stats.index_generation = view.generation();
                }
            }
        }
        stats.hits += st.local_hits;
        stats.misses += st.local_misses;
        let ids = self.segment_ids()?;
        stats.segments = ids.len() as u64;
        let files = ids
            .iter()
            .map(|&id| segment::path(&self.dir, id))
            .chain((0..SHARDS).map(|i| self.shard_path(i)));
        for path in files {
            stats.bytes += fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        }
        Ok(stats)
    }

    /// Every key with a readable record (for export).
    pub fn keys(&self) -> Result<Vec<[u8; KEY_LEN]>> {
        let mut st = self.state();
        let mut keys = vec![];
        for i in 0..SHARDS {
            self.refresh_shard(&mut st, i)?;
            let State {
                shards, segments, ..
            } = &mut *st;
            let Some(view) = shards[i].as_ref().and_then(MappedIndex::view) else {
                continue;
            };
            for (_, _, loc) in view.live() {
                if let Some(Ok((key, _, _, _))) = read_record(segments, &self.dir, loc) {
                    keys.push(*key);
                }
            }
        }
        Ok(keys)
    }
}

/// Shard `i` of a state whose shards are all open (callers hold the write lock and checked them).
fn view_of(st: &State, i: usize) -> Index<'_> {
    st.shards[i]
        .as_ref()
        .and_then(MappedIndex::view)
        .expect("index open")
}

type Decoded<'a> = (&'a [u8; KEY_LEN], &'a [u8], RecordMeta, u32);

/// The record at `loc`: None if its segment is gone or shorter than the slot says (a stale index),
/// Err if the bytes are there but damaged.
fn read_record<'s>(
    segments: &'s mut Segments,
    dir: &Path,
    loc: Location,
) -> Option<std::result::Result<Decoded<'s>, ()>> {
    let end = loc.offset.checked_add(u64::from(loc.len))?;
    let bytes = segments.bytes(dir, loc.segment, end)?;
    let bytes = &bytes[loc.offset as usize..end as usize];
    Some(match record::decode(bytes) {
        Ok((r, len)) if len == bytes.len() => Ok((r.key, r.value, r.meta, r.flags)),
        _ => Err(()),
    })
}

/// Opens segment `id` for appending; with `create`, creates it (with its header) if missing.
fn open_segment(dir: &Path, id: u32, create: bool) -> Result<Option<File>> {
    let path = segment::path(dir, id);
    match OpenOptions::new().append(true).open(&path) {
        Ok(f) => return Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound && create => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("cannot open a cache segment", &path)(e)),
    }
    let mut file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err("cannot create a cache segment", &path))?;
    file.write_all(&segment::header(id, now_ms()))
        .map_err(io_err("cannot write to the cache", &path))?;
    Ok(Some(file))
}

#[cfg(test)]
mod tests;
