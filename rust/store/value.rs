//! The stored form of a cached record: a compact tagged binary encoding of a JSON-native value.
//!
//! It holds exactly what JSON holds (plus integers of any size, and NaN/infinity as Python's `json` allows),
//! and decodes straight into the caller's objects without text parsing: a hit costs a walk over the bytes.
//! Decoding never trusts a length: every count is checked against the bytes left.
//!
//! Tags: 0 null, 1 false, 2 true, 3 integer (zigzag LEB128), 4 big integer (length, ASCII decimal),
//! 5 float (f64 LE), 6 string (length, UTF-8), 7 list (count, items), 8 object (count, then per member a
//! length-prefixed UTF-8 key and a value). Lengths and counts are LEB128.

pub const NULL: u8 = 0;
pub const FALSE: u8 = 1;
pub const TRUE: u8 = 2;
pub const INT: u8 = 3;
pub const BIG_INT: u8 = 4;
pub const FLOAT: u8 = 5;
pub const STR: u8 = 6;
pub const LIST: u8 = 7;
pub const OBJECT: u8 = 8;

/// Records nest a few levels; anything deeper is refused on both sides.
pub const MAX_DEPTH: usize = 128;

/// The most digits a big integer may have: Python's default limit for converting text to `int`, so every
/// value that validates also decodes (a longer one is refused on both sides).
pub const MAX_BIG_INT_DIGITS: usize = 4300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueError {
    Truncated,
    BadTag(u8),
    BadUtf8,
    BadNumber,
    TooDeep,
    TrailingBytes,
}

impl std::fmt::Display for ValueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValueError::Truncated => write!(f, "stored value ends early"),
            ValueError::BadTag(t) => write!(f, "stored value has unknown tag {t}"),
            ValueError::BadUtf8 => write!(f, "stored value has a string that is not UTF-8"),
            ValueError::BadNumber => write!(f, "stored value has a malformed number"),
            ValueError::TooDeep => write!(f, "stored value nests deeper than {MAX_DEPTH} levels"),
            ValueError::TrailingBytes => write!(f, "stored value has bytes after its end"),
        }
    }
}

/// Appends encoded values to a buffer; the caller writes a container's header, then its items.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn null(&mut self) {
        self.buf.push(NULL);
    }
    pub fn bool(&mut self, v: bool) {
        self.buf.push(if v { TRUE } else { FALSE });
    }
    pub fn int(&mut self, v: i64) {
        self.buf.push(INT);
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }
    /// An integer outside i64, as its decimal digits (with a leading '-' if negative).
    pub fn big_int(&mut self, digits: &str) {
        self.buf.push(BIG_INT);
        self.bytes(digits.as_bytes());
    }
    pub fn float(&mut self, v: f64) {
        self.buf.push(FLOAT);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn str(&mut self, v: &str) {
        self.buf.push(STR);
        self.bytes(v.as_bytes());
    }
    pub fn list(&mut self, len: usize) {
        self.buf.push(LIST);
        self.varint(len as u64);
    }
    pub fn object(&mut self, len: usize) {
        self.buf.push(OBJECT);
        self.varint(len as u64);
    }
    /// A member name inside an object (followed by its value).
    pub fn key(&mut self, k: &str) {
        self.bytes(k.as_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }
}

/// Builds the decoded value in the caller's representation (Python objects, or a Rust tree in tests).
pub trait Builder {
    type Value;
    type Error: From<ValueError>;
    fn null(&mut self) -> Result<Self::Value, Self::Error>;
    fn bool(&mut self, v: bool) -> Result<Self::Value, Self::Error>;
    fn int(&mut self, v: i64) -> Result<Self::Value, Self::Error>;
    fn big_int(&mut self, digits: &str) -> Result<Self::Value, Self::Error>;
    fn float(&mut self, v: f64) -> Result<Self::Value, Self::Error>;
    fn str(&mut self, v: &str) -> Result<Self::Value, Self::Error>;
    fn list(&mut self, items: Vec<Self::Value>) -> Result<Self::Value, Self::Error>;
    fn object(&mut self, len: usize) -> Result<Self::Value, Self::Error>;
    fn set(
        &mut self,
        object: &Self::Value,
        key: &str,
        value: Self::Value,
    ) -> Result<(), Self::Error>;
}

/// Decodes one value that fills `bytes` exactly.
pub fn decode<B: Builder>(bytes: &[u8], builder: &mut B) -> Result<B::Value, B::Error> {
    let mut reader = Reader { bytes, at: 0 };
    let value = reader.value(builder, 0)?;
    if reader.at != bytes.len() {
        return Err(ValueError::TrailingBytes.into());
    }
    Ok(value)
}

/// Checks that `bytes` hold exactly one well-formed value, without building anything: a value that passes
/// decodes without error, so a reader may check at once and decode later, or only in part.
pub fn validate(bytes: &[u8]) -> Result<(), ValueError> {
    let mut reader = Reader { bytes, at: 0 };
    reader.skip::<true>(0)?;
    if reader.at != bytes.len() {
        return Err(ValueError::TrailingBytes);
    }
    Ok(())
}

/// [`validate`] for a record (a top-level object) that also finds, in the same walk, the members named in
/// `wanted`: `found[i]` (one slot per name) becomes the encoded value of `wanted[i]` (the last one, as
/// decoding keeps), else stays None.
pub fn validate_record<'a>(
    bytes: &'a [u8],
    wanted: &[&[u8]],
    found: &mut [Option<&'a [u8]>],
) -> Result<(), ValueError> {
    let mut reader = Reader { bytes, at: 0 };
    let tag = reader.byte()?;
    if tag != OBJECT {
        return Err(ValueError::BadTag(tag));
    }
    for _ in 0..reader.count()? {
        let key = reader.text()?.as_bytes();
        let start = reader.at;
        reader.skip_item::<true>(1)?;
        for (slot, name) in found.iter_mut().zip(wanted) {
            if *name == key {
                *slot = Some(&bytes[start..reader.at]);
            }
        }
    }
    if reader.at != bytes.len() {
        return Err(ValueError::TrailingBytes);
    }
    Ok(())
}

/// Where member `name` of an object that passed [`validate`] starts: its encoded value, followed by whatever
/// follows it (see [`first`]); None when `bytes` are not an object or it has no such member. Only the
/// members before it are walked, so of a repeated name (never written by turbodspy, whose records come from
/// dicts) it finds the first.
pub fn member<'a>(bytes: &'a [u8], name: &[u8]) -> Result<Option<&'a [u8]>, ValueError> {
    let mut reader = Reader { bytes, at: 0 };
    if bytes.first() != Some(&OBJECT) {
        return Ok(None);
    }
    reader.at = 1;
    for _ in 0..reader.count()? {
        let len = reader.count()?;
        if reader.take(len)? == name {
            return Ok(Some(&bytes[reader.at..]));
        }
        reader.skip::<false>(1)?;
    }
    Ok(None)
}

/// The first value in `bytes`, exactly (bytes that passed [`validate`], or a [`member`] of them).
pub fn first(bytes: &[u8]) -> Result<&[u8], ValueError> {
    let mut reader = Reader { bytes, at: 0 };
    reader.skip::<false>(1)?;
    Ok(&bytes[..reader.at])
}

/// Where each item of a list that passed [`validate`] starts (as [`member`] gives a value: see [`first`]);
/// None when `bytes` are not a list. An item is walked over only when the next one is asked for.
pub fn items(bytes: &[u8]) -> Result<Option<Items<'_>>, ValueError> {
    let mut reader = Reader { bytes, at: 0 };
    if bytes.first() != Some(&LIST) {
        return Ok(None);
    }
    reader.at = 1;
    let left = reader.count()?;
    Ok(Some(Items {
        reader,
        left,
        started: false,
    }))
}

pub struct Items<'a> {
    reader: Reader<'a>,
    left: usize,
    /// Whether an item was handed out, to be walked over before the next.
    started: bool,
}

impl<'a> Iterator for Items<'a> {
    type Item = Result<&'a [u8], ValueError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        if self.started {
            if let Err(e) = self.reader.skip::<false>(1) {
                self.left = 0;
                return Some(Err(e));
            }
        }
        self.started = true;
        self.left -= 1;
        Some(Ok(&self.reader.bytes[self.reader.at..]))
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, ValueError> {
        let b = *self.bytes.get(self.at).ok_or(ValueError::Truncated)?;
        self.at += 1;
        Ok(b)
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64, ValueError> {
        // Most lengths and counts fit one byte.
        if let Some(&b) = self.bytes.get(self.at) {
            if b < 0x80 {
                self.at += 1;
                return Ok(u64::from(b));
            }
        }
        self.long_varint()
    }

    #[cold]
    fn long_varint(&mut self) -> Result<u64, ValueError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(ValueError::BadNumber)
    }

    /// A count of items that each take at least one byte: never more than the bytes left.
    #[inline(always)]
    fn count(&mut self) -> Result<usize, ValueError> {
        let n = self.varint()?;
        if n > (self.bytes.len() - self.at) as u64 {
            return Err(ValueError::Truncated);
        }
        Ok(n as usize)
    }

    #[inline(always)]
    fn take(&mut self, n: usize) -> Result<&'a [u8], ValueError> {
        let end = self.at.checked_add(n).ok_or(ValueError::Truncated)?;
        let slice = self.bytes.get(self.at..end).ok_or(ValueError::Truncated)?;
        self.at = end;
        Ok(slice)
    }

    #[inline(always)]
    fn text(&mut self) -> Result<&'a str, ValueError> {
        let n = self.count()?;
        let bytes = self.take(n)?;
        // Member names and most values are short ASCII: one inlined word-wise check beats the call.
        if bytes.len() <= 32 && bytes.is_ascii() {
            // SAFETY: ASCII bytes are valid UTF-8.
            return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
        }
        std::str::from_utf8(bytes).map_err(|_| ValueError::BadUtf8)
    }

    /// Walks over one value with exactly the checks [`Reader::value`] makes, building nothing; with
    /// `CHECK_UTF8` false, strings are skipped by length (for bytes already validated).
    fn skip<const CHECK_UTF8: bool>(&mut self, depth: usize) -> Result<(), ValueError> {
        if depth > MAX_DEPTH {
            return Err(ValueError::TooDeep);
        }
        match self.byte()? {
            NULL | FALSE | TRUE => {}
            INT => {
                self.varint()?;
            }
            BIG_INT => {
                let digits = self.text()?;
                big_int_digits(digits)?;
            }
            FLOAT => {
                self.take(8)?;
            }
            STR => self.skip_text::<CHECK_UTF8>()?,
            LIST => {
                for _ in 0..self.count()? {
                    self.skip_item::<CHECK_UTF8>(depth + 1)?;
                }
            }
            OBJECT => {
                for _ in 0..self.count()? {
                    self.skip_text::<CHECK_UTF8>()?;
                    self.skip_item::<CHECK_UTF8>(depth + 1)?;
                }
            }
            tag => return Err(ValueError::BadTag(tag)),
        }
        Ok(())
    }

    /// [`Reader::skip`] for an item of a container, with the common scalars walked over in place: most items
    /// of a record are, and a call per item costs more than the item's own check.
    #[inline(always)]
    fn skip_item<const CHECK_UTF8: bool>(&mut self, depth: usize) -> Result<(), ValueError> {
        if depth <= MAX_DEPTH {
            match self.bytes.get(self.at) {
                Some(&(NULL | FALSE | TRUE)) => {
                    self.at += 1;
                    return Ok(());
                }
                Some(&STR) => {
                    self.at += 1;
                    return self.skip_text::<CHECK_UTF8>();
                }
                Some(&INT) => {
                    self.at += 1;
                    return self.varint().map(drop);
                }
                _ => {}
            }
        }
        self.skip::<CHECK_UTF8>(depth)
    }

    #[inline(always)]
    fn skip_text<const CHECK_UTF8: bool>(&mut self) -> Result<(), ValueError> {
        if CHECK_UTF8 {
            self.text()?;
        } else {
            let n = self.count()?;
            self.take(n)?;
        }
        Ok(())
    }

    fn value<B: Builder>(&mut self, b: &mut B, depth: usize) -> Result<B::Value, B::Error> {
        if depth > MAX_DEPTH {
            return Err(ValueError::TooDeep.into());
        }
        match self.byte()? {
            NULL => b.null(),
            FALSE => b.bool(false),
            TRUE => b.bool(true),
            INT => {
                let z = self.varint()?;
                b.int(((z >> 1) as i64) ^ -((z & 1) as i64))
            }
            BIG_INT => {
                let digits = self.text()?;
                big_int_digits(digits)?;
                b.big_int(digits)
            }
            FLOAT => {
                let raw = self.take(8)?;
                b.float(f64::from_le_bytes(raw.try_into().expect("8 bytes")))
            }
            STR => {
                let s = self.text()?;
                b.str(s)
            }
            LIST => {
                let n = self.count()?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(b, depth + 1)?);
                }
                b.list(items)
            }
            OBJECT => {
                let n = self.count()?;
                let object = b.object(n)?;
                for _ in 0..n {
                    let key = self.text()?;
                    let value = self.value(b, depth + 1)?;
                    b.set(&object, key, value)?;
                }
                Ok(object)
            }
            tag => Err(ValueError::BadTag(tag).into()),
        }
    }
}

/// A big integer's text: decimal digits, optionally after a '-'.
fn big_int_digits(digits: &str) -> Result<(), ValueError> {
    let unsigned = digits.strip_prefix('-').unwrap_or(digits);
    if unsigned.is_empty()
        || unsigned.len() > MAX_BIG_INT_DIGITS
        || !unsigned.bytes().all(|c| c.is_ascii_digit())
    {
        return Err(ValueError::BadNumber);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cell::RefCell;

    /// A JSON-native tree for the tests (objects keep member order, as Python dicts do).
    #[derive(Debug, Clone, PartialEq)]
    enum V {
        Null,
        Bool(bool),
        Int(i64),
        Big(String),
        Float(u64),
        Str(String),
        List(Vec<V>),
        Object(RefCell<Vec<(String, V)>>),
    }

    fn encode(v: &V, w: &mut Writer) {
        match v {
            V::Null => w.null(),
            V::Bool(b) => w.bool(*b),
            V::Int(i) => w.int(*i),
            V::Big(d) => w.big_int(d),
            V::Float(bits) => w.float(f64::from_bits(*bits)),
            V::Str(s) => w.str(s),
            V::List(items) => {
                w.list(items.len());
                items.iter().for_each(|i| encode(i, w));
            }
            V::Object(members) => {
                let members = members.borrow();
                w.object(members.len());
                for (k, v) in members.iter() {
                    w.key(k);
                    encode(v, w);
                }
            }
        }
    }

    struct Tree;
    impl Builder for Tree {
        type Value = V;
        type Error = ValueError;
        fn null(&mut self) -> Result<V, ValueError> {
            Ok(V::Null)
        }
        fn bool(&mut self, v: bool) -> Result<V, ValueError> {
            Ok(V::Bool(v))
        }
        fn int(&mut self, v: i64) -> Result<V, ValueError> {
            Ok(V::Int(v))
        }
        fn big_int(&mut self, d: &str) -> Result<V, ValueError> {
            Ok(V::Big(d.to_owned()))
        }
        fn float(&mut self, v: f64) -> Result<V, ValueError> {
            Ok(V::Float(v.to_bits()))
        }
        fn str(&mut self, v: &str) -> Result<V, ValueError> {
            Ok(V::Str(v.to_owned()))
        }
        fn list(&mut self, items: Vec<V>) -> Result<V, ValueError> {
            Ok(V::List(items))
        }
        fn object(&mut self, len: usize) -> Result<V, ValueError> {
            Ok(V::Object(RefCell::new(Vec::with_capacity(len))))
        }
        fn set(&mut self, object: &V, key: &str, value: V) -> Result<(), ValueError> {
            match object {
                V::Object(m) => m.borrow_mut().push((key.to_owned(), value)),
                _ => unreachable!(),
            }
            Ok(())
        }
    }

    fn values() -> impl Strategy<Value = V> {
        let leaf = prop_oneof![
            Just(V::Null),
            any::<bool>().prop_map(V::Bool),
            any::<i64>().prop_map(V::Int),
            "-?[1-9][0-9]{19,40}".prop_map(V::Big),
            any::<u64>().prop_map(V::Float),
            any::<String>().prop_map(V::Str),
        ];
        leaf.prop_recursive(6, 200, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(V::List),
                proptest::collection::vec((any::<String>(), inner), 0..8)
                    .prop_map(|m| V::Object(RefCell::new(m))),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trips(v in values()) {
            let mut w = Writer::default();
            encode(&v, &mut w);
            prop_assert_eq!(decode(&w.buf, &mut Tree), Ok(v));
        }

        #[test]
        fn every_truncation_is_an_error(v in values(), cut in any::<prop::sample::Index>()) {
            let mut w = Writer::default();
            encode(&v, &mut w);
            let keep = cut.index(w.buf.len());
            prop_assert!(decode(&w.buf[..keep], &mut Tree).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes, &mut Tree);
            let mut found = [None; 2];
            let _ = validate_record(&bytes, &[b"a", b"b"], &mut found);
            if let Ok(Some(items)) = items(&bytes) {
                items.for_each(drop);
            }
            let _ = member(&bytes, b"a").map(|m| m.map(first));
        }

        #[test]
        fn validate_accepts_exactly_what_decode_accepts(
            v in values(),
            flip in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut w = Writer::default();
            encode(&v, &mut w);
            prop_assert_eq!(validate(&w.buf), Ok(()));
            let mut damaged = w.buf.clone();
            let at = flip.index(damaged.len());
            damaged[at] = byte;
            damaged.truncate(cut.index(damaged.len()) + 1);
            prop_assert_eq!(validate(&damaged), decode(&damaged, &mut Tree).map(|_| ()));
        }

        #[test]
        fn validate_record_checks_as_validate_and_finds_the_last_of_each_member(
            m in proptest::collection::vec(("[a-c]{1,2}", values()), 0..8),
            flip in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let object = V::Object(RefCell::new(m.clone()));
            let mut w = Writer::default();
            encode(&object, &mut w);
            let wanted: [&[u8]; 3] = [b"a", b"bc", b"zz"];
            let mut found = [None; 3];
            prop_assert_eq!(validate_record(&w.buf, &wanted, &mut found), Ok(()));
            for (name, span) in wanted.iter().zip(found) {
                let expected = m.iter().rev().find(|(k, _)| k.as_bytes() == *name).map(|(_, v)| v.clone());
                prop_assert_eq!(span.map(|bytes| decode(bytes, &mut Tree).expect("a whole value")), expected);
            }
            let mut damaged = w.buf.clone();
            let at = flip.index(damaged.len());
            damaged[at] = byte;
            let mut found = [None; 3];
            let is_record = validate(&damaged).is_ok() && damaged[0] == OBJECT;
            prop_assert_eq!(validate_record(&damaged, &wanted, &mut found).is_ok(), is_record);
        }
    }

    #[test]
    fn refuses_lengths_beyond_the_bytes_and_deep_nesting() {
        assert_eq!(
            decode(&[LIST, 0xff, 0xff, 0xff, 0x0f], &mut Tree),
            Err(ValueError::Truncated)
        );
        assert_eq!(
            decode(&[STR, 5, b'a'], &mut Tree),
            Err(ValueError::Truncated)
        );
        let mut deep = vec![];
        for _ in 0..=MAX_DEPTH + 1 {
            deep.extend_from_slice(&[LIST, 1]);
        }
        deep.push(NULL);
        assert_eq!(decode(&deep, &mut Tree), Err(ValueError::TooDeep));
        assert_eq!(
            decode(&[NULL, NULL], &mut Tree),
            Err(ValueError::TrailingBytes)
        );
        assert_eq!(
            decode(&[BIG_INT, 2, b'1', b'x'], &mut Tree),
            Err(ValueError::BadNumber)
        );
        let mut huge = Writer::default();
        huge.big_int(&"9".repeat(MAX_BIG_INT_DIGITS + 1));
        assert_eq!(validate(&huge.buf), Err(ValueError::BadNumber));
        assert_eq!(decode(&huge.buf, &mut Tree), Err(ValueError::BadNumber));
        let mut largest = Writer::default();
        largest.big_int(&format!("-{}", "9".repeat(MAX_BIG_INT_DIGITS)));
        assert_eq!(validate(&largest.buf), Ok(()));
        let mut found = [None; 2];
        let wanted: [&[u8]; 2] = [b"a", b"a"];
        assert_eq!(
            validate_record(&[LIST, 0], &wanted, &mut found),
            Err(ValueError::BadTag(LIST))
        );
        assert_eq!(
            validate_record(&[OBJECT, 2, 1, b'a', NULL, 1], &wanted, &mut found),
            Err(ValueError::Truncated)
        );
        let object = [OBJECT, 2, 1, b'a', NULL, 1, b'b', LIST, 2, TRUE, FALSE];
        assert_eq!(member(&object, b"b"), Ok(Some(&[LIST, 2, TRUE, FALSE][..])));
        assert_eq!(member(&object, b"a"), Ok(Some(&object[4..])));
        assert_eq!(first(&object[4..]), Ok(&[NULL][..]));
        assert_eq!(member(&object, b"c"), Ok(None));
        assert_eq!(member(&[LIST, 0], b"a"), Ok(None));
        let listed =
            |bytes| -> Vec<Result<&[u8], ValueError>> { items(bytes).unwrap().unwrap().collect() };
        assert_eq!(
            listed(&[LIST, 2, TRUE, FALSE]),
            [Ok(&[TRUE, FALSE][..]), Ok(&[FALSE][..])]
        );
        assert_eq!(
            listed(&[LIST, 2, LIST, 5]),
            [Ok(&[LIST, 5][..]), Err(ValueError::Truncated)]
        );
        assert!(items(&object).unwrap().is_none());
        // A name asked for twice is found in both slots.
        let mut found = [None; 2];
        assert_eq!(validate_record(&object, &wanted, &mut found), Ok(()));
        assert_eq!(found, [Some(&[NULL][..]), Some(&[NULL][..])]);
    }
}
