//! Values handed out by the store without copying them: each is a view into its segment's mapping.
//!
//! A hit's value lives as long as whoever holds it (the memory tier, a history entry), often far longer
//! than the store keeps that segment. A view would keep a deleted segment's disk space (the mapping holds
//! the file), so the store remembers which values view each segment and copies them out once it sees the
//! segment's file deleted, and all of them when the store itself goes (nobody watches the files then).
//! Copying at hit time instead costs every hit a fresh allocation as large as the value.

use super::segment::SegmentFile;
use memmap2::Mmap;
use std::collections::HashMap;
use std::ops::{Deref, Range};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// A value's bytes: in its segment's mapping, or copied out of it.
#[derive(Clone)]
pub enum Bytes {
    Mapped(Arc<Mmap>, Range<usize>),
    Owned(Arc<[u8]>),
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(map, range) => &map[range.clone()],
            Bytes::Owned(bytes) => bytes,
        }
    }
}

/// A value read from the store. Cheap to clone; the bytes never change, wherever they live.
#[derive(Clone)]
pub struct HeldValue(Arc<Mutex<Bytes>>);

impl HeldValue {
    /// The bytes. The lock is held only to clone the handle, never while the caller reads them.
    pub fn bytes(&self) -> Bytes {
        lock(&self.0).clone()
    }

    /// Moves the bytes out of their mapping (a no-op once copied).
    fn copy_out(cell: &Mutex<Bytes>) {
        let mut bytes = lock(cell);
        if let Bytes::Mapped(..) = &*bytes {
            *bytes = Bytes::Owned(Arc::from(&bytes[..]));
        }
    }
}

impl std::fmt::Debug for HeldValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HeldValue({} bytes)", self.bytes().len())
    }
}

fn lock(cell: &Mutex<Bytes>) -> MutexGuard<'_, Bytes> {
    // Nothing panics while holding it; a poisoned lock still guards whole bytes.
    cell.lock().unwrap_or_else(|e| e.into_inner())
}

/// The values handed out per segment that may still view its mapping. Dropping it copies them all out.
#[derive(Default)]
pub struct Holders {
    by_segment: HashMap<u32, Views>,
}

struct Views {
    file: SegmentFile,
    cells: Vec<Weak<Mutex<Bytes>>>,
    /// Dropped values are swept from `cells` when it reaches this length, so it stays within twice the live ones.
    sweep_at: usize,
}

const FIRST_SWEEP: usize = 64;

impl Holders {
    /// A value viewing `range` of `map`, the mapping of segment `segment` (`file`), remembered until it is
    /// dropped or copied out.
    pub fn hand_out(
        &mut self,
        segment: u32,
        file: &SegmentFile,
        map: &Arc<Mmap>,
        range: Range<usize>,
    ) -> HeldValue {
        let cell = Arc::new(Mutex::new(Bytes::Mapped(Arc::clone(map), range)));
        let views = self.by_segment.entry(segment).or_insert_with(|| Views {
            file: file.clone(),
            cells: vec![],
            sweep_at: 0,
        });
        if views.cells.len() >= views.sweep_at {
            views.cells.retain(|cell| cell.strong_count() > 0);
            views.sweep_at = (views.cells.len() * 2).max(FIRST_SWEEP);
        }
        views.cells.push(Arc::downgrade(&cell));
        HeldValue(cell)
    }

    /// Copies out the values viewing segments whose files were deleted. Other values keep viewing theirs.
    pub fn release_deleted(&mut self) {
        self.by_segment.retain(|_, views| {
            let on_disk = views.file.current_len().is_some();
            if !on_disk {
                views.copy_out();
            }
            on_disk
        });
    }

    /// The segments some handed-out value may still view.
    #[cfg(test)]
    pub fn segments(&self) -> Vec<u32> {
        self.by_segment.keys().copied().collect()
    }
}

impl Views {
    fn copy_out(&self) {
        for cell in self.cells.iter().filter_map(Weak::upgrade) {
            HeldValue::copy_out(&cell);
        }
    }
}

impl Drop for Holders {
    /// Values outlive their store as copies: once it is gone, nothing would see their files deleted.
    fn drop(&mut self) {
        for views in self.by_segment.values() {
            views.copy_out();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file `name` holding "0123456789", mapped as a segment is.
    fn segment(dir: &tempfile::TempDir, name: &str) -> (SegmentFile, Arc<Mmap>) {
        let path = dir.path().join(name);
        std::fs::write(&path, b"0123456789").unwrap();
        let (file, open, _) = SegmentFile::open(path).unwrap();
        let map = unsafe { memmap2::Mmap::map(&open) }.unwrap();
        (file, Arc::new(map))
    }

    #[test]
    fn released_values_keep_their_bytes_and_let_the_mapping_go() {
        let dir = tempfile::tempdir().unwrap();
        let (file, map) = segment(&dir, "a");
        let mut holders = Holders::default();
        let value = holders.hand_out(7, &file, &map, 2..6);
        assert_eq!(&*value.bytes(), b"2345");
        std::fs::remove_file(dir.path().join("a")).unwrap();
        holders.release_deleted();
        assert!(matches!(value.bytes(), Bytes::Owned(_)));
        assert_eq!(&*value.bytes(), b"2345");
        assert_eq!(
            Arc::strong_count(&map),
            1,
            "the value still holds the mapping"
        );
        assert!(holders.segments().is_empty());
    }

    #[test]
    fn only_values_of_deleted_files_are_copied_out() {
        let dir = tempfile::tempdir().unwrap();
        let mut holders = Holders::default();
        let (kept_file, kept_map) = segment(&dir, "kept");
        let (deleted_file, deleted_map) = segment(&dir, "deleted");
        let kept = holders.hand_out(1, &kept_file, &kept_map, 0..4);
        let deleted = holders.hand_out(2, &deleted_file, &deleted_map, 4..8);
        std::fs::remove_file(dir.path().join("deleted")).unwrap();
        holders.release_deleted();
        assert!(matches!(kept.bytes(), Bytes::Mapped(..)));
        assert!(matches!(deleted.bytes(), Bytes::Owned(_)));
        assert_eq!(&*deleted.bytes(), b"4567");
        assert_eq!(holders.segments(), vec![1]);
        // A new file under the old one's name is not the old one.
        std::fs::remove_file(dir.path().join("kept")).unwrap();
        std::fs::write(dir.path().join("kept"), b"0123456789").unwrap();
        holders.release_deleted();
        assert!(matches!(kept.bytes(), Bytes::Owned(_)));
        assert_eq!(&*kept.bytes(), b"0123");
    }

    #[test]
    fn values_outlive_their_holders_as_copies() {
        let dir = tempfile::tempdir().unwrap();
        let (file, map) = segment(&dir, "a");
        let mut holders = Holders::default();
        let value = holders.hand_out(1, &file, &map, 1..3);
        drop(holders);
        assert!(matches!(value.bytes(), Bytes::Owned(_)));
        assert_eq!(&*value.bytes(), b"12");
        assert_eq!(Arc::strong_count(&map), 1);
    }

    #[test]
    fn dropped_values_are_not_remembered_for_long() {
        let dir = tempfile::tempdir().unwrap();
        let (file, map) = segment(&dir, "a");
        let mut holders = Holders::default();
        let kept: Vec<HeldValue> = (0..100)
            .map(|_| holders.hand_out(1, &file, &map, 0..4))
            .collect();
        for _ in 0..100_000 {
            drop(holders.hand_out(1, &file, &map, 0..4));
        }
        let remembered = holders.by_segment[&1].cells.len();
        assert!(
            remembered <= 2 * kept.len() + FIRST_SWEEP,
            "{remembered} remembered"
        );
        assert_eq!(
            Arc::strong_count(&map),
            1 + kept.len(),
            "a dropped value let go of the mapping"
        );
    }
}
