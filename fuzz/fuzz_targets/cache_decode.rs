//! Untrusted bytes through every decoder of the disk cache: records, values, segment scans, the index.
//! None may panic, loop forever, or allocate beyond what the input can describe.
#![no_main]

use _core::store::index::{Index, HEADER_WORDS};
use _core::store::value::{self, Builder, ValueError};
use _core::store::{record, segment};
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::AtomicU64;

/// Counts what it builds, so decoding is exercised without a real object model.
struct Count(usize);

impl Builder for Count {
    type Value = ();
    type Error = ValueError;
    fn null(&mut self) -> Result<(), ValueError> {
        self.0 += 1;
        Ok(())
    }
    fn bool(&mut self, _: bool) -> Result<(), ValueError> {
        self.null()
    }
    fn int(&mut self, _: i64) -> Result<(), ValueError> {
        self.null()
    }
    fn big_int(&mut self, _: &str) -> Result<(), ValueError> {
        self.null()
    }
    fn float(&mut self, _: f64) -> Result<(), ValueError> {
        self.null()
    }
    fn str(&mut self, _: &str) -> Result<(), ValueError> {
        self.null()
    }
    fn list(&mut self, items: Vec<()>) -> Result<(), ValueError> {
        self.0 += items.len();
        Ok(())
    }
    fn object(&mut self, _: usize) -> Result<(), ValueError> {
        self.null()
    }
    fn set(&mut self, _: &(), _: &str, _: ()) -> Result<(), ValueError> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok((rec, len)) = record::decode(data) {
        assert!(len <= data.len() + record::ALIGN);
        let _ = value::decode(rec.value, &mut Count(0));
    }
    // A value that validates decodes; the walkers a disk hit uses never panic, on anything.
    let decoded = value::decode(data, &mut Count(0));
    assert_eq!(value::validate(data).is_ok(), decoded.is_ok());
    let _ = value::first(data);
    if let Ok(Some(found)) = value::member(data, b"a") {
        let _ = value::first(found);
    }
    if let Ok(Some(items)) = value::items(data) {
        items.for_each(drop);
    }
    // A record checks as it validates, and the members it finds decode.
    let wanted: [&[u8]; 4] = [b"outputs", b"response", b"a", b"a"];
    let mut found = [None; 4];
    let is_record = decoded.is_ok() && data.first() == Some(&value::OBJECT);
    assert_eq!(
        value::validate_record(data, &wanted, &mut found).is_ok(),
        is_record
    );
    if is_record {
        for bytes in found.into_iter().flatten() {
            assert!(value::decode(bytes, &mut Count(0)).is_ok());
        }
    }
    for found in segment::scan(data) {
        if let segment::Scanned::Good { offset, len, .. } = found {
            assert!(offset + len <= data.len() + record::ALIGN);
        }
    }
    let words: Vec<AtomicU64> = data
        .chunks(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            AtomicU64::new(u64::from_le_bytes(w))
        })
        .collect();
    if words.len() >= HEADER_WORDS {
        if let Ok(index) = Index::open(&words) {
            let key = [data[0]; 32];
            let _ = index.find(&key, |_| false);
            let _ = index.live().count();
        }
    }
});
