//! Values handed out by the store without copying them: each is a view into its segment's mapping.
//!
//! A hit's value lives as long as whoever holds it (the memory tier, a history entry), often far longer
//! than the store keeps that segment. A view would keep a deleted segment's disk space (the mapping holds
//! the file), so the store remembers which values view each segment and copies them out before letting a
//! deleted segment go. Copying at hit time instead costs every hit a fresh allocation as large as the value.

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

/// The values handed out per segment that may still view its mapping.
#[derive(Default)]
pub struct Holders {
    by_segment: HashMap<u32, Views>,
}

#[derive(Default)]
struct Views {
    cells: Vec<Weak<Mutex<Bytes>>>,
    /// Dropped values are swept from `cells` when it reaches this length, so it stays within twice the live ones.
    sweep_at: usize,
}

const FIRST_SWEEP: usize = 64;

impl Holders {
    /// A value viewing `range` of segment `segment`'s mapping, remembered until it is dropped or copied out.
    pub fn hand_out(&mut self, segment: u32, map: &Arc<Mmap>, range: Range<usize>) -> HeldValue {
        let cell = Arc::new(Mutex::new(Bytes::Mapped(Arc::clone(map), range)));
        let views = self.by_segment.entry(segment).or_default();
        if views.cells.len() >= views.sweep_at {
            views.cells.retain(|cell| cell.strong_count() > 0);
            views.sweep_at = (views.cells.len() * 2).max(FIRST_SWEEP);
        }
        views.cells.push(Arc::downgrade(&cell));
        HeldValue(cell)
    }

    /// Copies out every value viewing segment `segment`, so its mapping can go.
    pub fn release(&mut self, segment: u32) {
        if let Some(views) = self.by_segment.remove(&segment) {
            for cell in views.cells.iter().filter_map(Weak::upgrade) {
                HeldValue::copy_out(&cell);
            }
        }
    }

    /// The segments some handed-out value may still view.
    pub fn segments(&self) -> Vec<u32> {
        self.by_segment.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(bytes: &[u8]) -> Arc<Mmap> {
        let mut map = memmap2::MmapOptions::new()
            .len(bytes.len())
            .map_anon()
            .unwrap();
        map.copy_from_slice(bytes);
        Arc::new(map.make_read_only().unwrap())
    }

    #[test]
    fn released_values_keep_their_bytes_and_let_the_mapping_go() {
        let map = mapping(b"0123456789");
        let mut holders = Holders::default();
        let value = holders.hand_out(7, &map, 2..6);
        assert_eq!(&*value.bytes(), b"2345");
        holders.release(7);
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
    fn dropped_values_are_not_remembered_for_long() {
        let map = mapping(b"0123456789");
        let mut holders = Holders::default();
        let kept: Vec<HeldValue> = (0..100).map(|_| holders.hand_out(1, &map, 0..4)).collect();
        for _ in 0..100_000 {
            drop(holders.hand_out(1, &map, 0..4));
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
