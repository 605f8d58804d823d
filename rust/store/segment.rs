//! Segment files: append-only logs of records, `seg-<id>.tds`, each opening with a 32-byte header.
//!
//! A segment is never truncated or rewritten once created (another process may have it mapped, and a
//! mapped file that shrinks kills the reader with SIGBUS); eviction and `clear` delete whole files,
//! which leaves existing mappings valid.

use super::record::{self, Record, ALIGN, RECORD_MAGIC};
use std::fs::{self, File, Metadata};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const SEGMENT_MAGIC: u64 = u64::from_le_bytes(*b"TDSSEGMT");
pub const SEGMENT_VERSION: u32 = 1;
pub const SEGMENT_HEADER_LEN: usize = 32;

pub fn path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("seg-{id:010}.tds"))
}

/// The segment id in a file name written by `path`, if it is one.
pub fn id_of(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("seg-")?.strip_suffix(".tds")?;
    if digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

/// A segment file as this process first opened it. Its name may later be deleted, or even given to a new
/// file (if the index was lost and ids started over), so the file is known by its identity, not its name.
/// No descriptor is kept: a reader of a big store would otherwise hold one per segment.
#[derive(Clone, Debug)]
pub struct SegmentFile {
    path: Arc<Path>,
    identity: (u64, u64),
}

impl SegmentFile {
    /// Opens segment `path` for reading, with its length now.
    pub fn open(path: PathBuf) -> Option<(SegmentFile, File, u64)> {
        let file = File::open(&path).ok()?;
        let meta = file.metadata().ok()?;
        let segment = SegmentFile {
            path: path.into(),
            identity: identity(&meta),
        };
        Some((segment, file, meta.len()))
    }

    /// The file's length now, or None once its name no longer leads to it (deleted, or replaced).
    pub fn current_len(&self) -> Option<u64> {
        let meta = fs::metadata(&self.path).ok()?;
        (identity(&meta) == self.identity).then_some(meta.len())
    }

    /// The file, opened again by name, if the name still leads to it.
    pub fn reopen(&self) -> Option<File> {
        let file = File::open(&self.path).ok()?;
        (identity(&file.metadata().ok()?) == self.identity).then_some(file)
    }
}

fn identity(meta: &Metadata) -> (u64, u64) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino())
    }
    // Elsewhere a file that is open or mapped cannot be deleted, so its name is identity enough.
    #[cfg(not(unix))]
    {
        let _ = meta;
        (0, 0)
    }
}

/// Whether an open file was deleted: appending to it would write records nobody can read.
pub fn is_deleted(meta: &Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        meta.nlink() == 0
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        false
    }
}

/// Layout: magic u64 | version u32 | id u32 | created_ms u64 | reserved u64.
pub fn header(id: u32, created_ms: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..8].copy_from_slice(&SEGMENT_MAGIC.to_le_bytes());
    h[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&id.to_le_bytes());
    h[16..24].copy_from_slice(&created_ms.to_le_bytes());
    h
}

/// One finding of a scan over a segment's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scanned<'a> {
    Good {
        offset: usize,
        len: usize,
        record: Record<'a>,
    },
    /// Bytes between good records that do not decode: damage.
    Bad { offset: usize, len: usize },
    /// A record cut short: a writer died mid-append (later appends may follow it).
    Interrupted { offset: usize, len: usize },
}

/// Walks every record of a mapped segment. After damage it resynchronises on the next aligned offset
/// where a record decodes, so one bad byte costs one record, not the rest of the file.
pub fn scan(bytes: &[u8]) -> impl Iterator<Item = Scanned<'_>> {
    let mut at = SEGMENT_HEADER_LEN.min(bytes.len());
    std::iter::from_fn(move || {
        if at + ALIGN > bytes.len() {
            return None;
        }
        let start = at;
        match record::decode(&bytes[start..]) {
            Ok((record, len)) => {
                at = start + len;
                Some(Scanned::Good {
                    offset: start,
                    len,
                    record,
                })
            }
            Err(_) => {
                let mut next = start + ALIGN;
                let mut resynced = false;
                while next + ALIGN <= bytes.len() {
                    let magic =
                        u32::from_le_bytes(bytes[next..next + 4].try_into().expect("4 bytes"));
                    if magic == RECORD_MAGIC && record::decode(&bytes[next..]).is_ok() {
                        resynced = true;
                        break;
                    }
                    next += ALIGN;
                }
                let next = if resynced { next } else { bytes.len() };
                at = next;
                let len = next - start;
                if is_interrupted(&bytes[start..], len, resynced) {
                    Some(Scanned::Interrupted { offset: start, len })
                } else {
                    Some(Scanned::Bad { offset: start, len })
                }
            }
        }
    })
}

/// True if the undecodable region (`len` bytes at the start of `rest`, followed by a good record if
/// `resynced`) starts like a record whose declared length runs past the region: what a killed writer leaves.
/// A flipped byte elsewhere in a record leaves its declared length intact, so it counts as damage.
fn is_interrupted(rest: &[u8], len: usize, resynced: bool) -> bool {
    match record::declared_len(rest) {
        Some(declared) => declared > len,
        // At the end of the file: a header cut before its length field.
        None => {
            !resynced
                && len < record::HEADER_LEN
                && (len < 4 || rest[..4] == RECORD_MAGIC.to_le_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::{encode, RecordMeta};
    use proptest::prelude::*;

    fn segment(values: &[Vec<u8>]) -> (Vec<u8>, Vec<usize>) {
        let mut bytes = header(1, 0).to_vec();
        let mut offsets = vec![];
        for (n, value) in values.iter().enumerate() {
            offsets.push(bytes.len());
            encode(&[n as u8; 32], value, RecordMeta::default(), 0, &mut bytes);
        }
        (bytes, offsets)
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(id_of("seg-0000000042.tds"), Some(42));
        assert_eq!(
            id_of(
                path(Path::new("/x"), 7)
                    .file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
            ),
            Some(7)
        );
        assert_eq!(id_of("seg-42.tds"), None);
        assert_eq!(id_of("index.tdi"), None);
    }

    proptest! {
        #[test]
        fn a_damaged_record_costs_only_itself(values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 2..20),
                                              victim in any::<prop::sample::Index>(), byte in any::<prop::sample::Index>()) {
            let (mut bytes, offsets) = segment(&values);
            let v = victim.index(values.len());
            let used = record::HEADER_LEN + 32 + values[v].len();
            bytes[offsets[v] + byte.index(used)] ^= 0x40;
            let good: Vec<u8> = scan(&bytes)
                .filter_map(|s| match s { Scanned::Good { record, .. } => Some(record.key[0]), _ => None })
                .collect();
            let expected: Vec<u8> = (0..values.len() as u8).filter(|&n| n as usize != v).collect();
            prop_assert_eq!(good, expected);
        }

        #[test]
        fn a_cut_segment_keeps_every_whole_record(values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..20),
                                                  cut in any::<prop::sample::Index>()) {
            let (bytes, offsets) = segment(&values);
            let keep = SEGMENT_HEADER_LEN + cut.index(bytes.len() - SEGMENT_HEADER_LEN);
            let whole = offsets.iter().zip(&values)
                .filter(|(o, v)| *o + record::HEADER_LEN + 32 + v.len() <= keep).count();
            let found: Vec<_> = scan(&bytes[..keep]).collect();
            let good = found.iter().filter(|s| matches!(s, Scanned::Good { .. })).count();
            prop_assert_eq!(good, whole);
            let bad = found.iter().any(|s| matches!(s, Scanned::Bad { .. }));
            prop_assert!(!bad);
        }
    }
}
