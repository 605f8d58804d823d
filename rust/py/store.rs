//! `DiskStore`: the disk tier's Rust store as a Python class. Disk I/O runs with the GIL released.

use super::stored_entry::StoredEntry;
use crate::store::record::{RecordMeta, ENCODING_TAGGED, KEY_LEN};
use crate::store::value::{self, Builder, ValueError, Writer, MAX_BIG_INT_DIGITS, MAX_DEPTH};
use crate::store::{now_ms, Found, Stats, Store, StoreError, VerifyReport};
use pyo3::exceptions::{PyOSError, PyPermissionError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use std::cell::RefCell;
use std::path::PathBuf;

/// The one place store errors become Python exceptions. I/O problems are `OSError` (with the errno), so
/// the Python layer can catch them as one family and fall back to memory-only.
fn to_py(err: StoreError) -> PyErr {
    match err {
        StoreError::Io { ref source, .. } => match source.raw_os_error() {
            Some(errno) => PyOSError::new_err((errno, err.to_string())),
            None => PyOSError::new_err(err.to_string()),
        },
        StoreError::ReadOnly(_) => PyPermissionError::new_err(err.to_string()),
        StoreError::IndexFull(_) => PyOSError::new_err(err.to_string()),
        StoreError::ValueTooLarge(_) => PyValueError::new_err(err.to_string()),
    }
}

impl From<ValueError> for PyErr {
    fn from(err: ValueError) -> PyErr {
        PyValueError::new_err(err.to_string())
    }
}

fn parse_key(key: &str) -> PyResult<[u8; KEY_LEN]> {
    let bytes = key.as_bytes();
    let bad = || {
        PyValueError::new_err(format!(
            "cache key must be 64 hex characters (a SHA-256 request key), got {key:?}"
        ))
    };
    if bytes.len() != KEY_LEN * 2 {
        return Err(bad());
    }
    let mut out = [0u8; KEY_LEN];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16).ok_or_else(bad)?;
        let lo = (pair[1] as char).to_digit(16).ok_or_else(bad)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Ok(out)
}

fn hex(key: &[u8; KEY_LEN]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    key.iter()
        .flat_map(|b| {
            [
                HEX[(b >> 4) as usize] as char,
                HEX[(b & 15) as usize] as char,
            ]
        })
        .collect()
}

/// A cache directory shared by processes: append-only segments and a mapped index.
#[pyclass(frozen, module = "turbodspy._core")]
pub struct DiskStore {
    store: Store,
}

#[pymethods]
impl DiskStore {
    #[new]
    fn new(directory: PathBuf, size_limit_bytes: u64) -> Self {
        DiskStore {
            store: Store::new(directory, size_limit_bytes),
        }
    }

    #[getter]
    fn directory(&self) -> PathBuf {
        self.store.dir().to_owned()
    }

    #[getter]
    fn size_limit_bytes(&self) -> u64 {
        self.store.size_limit()
    }

    /// The record stored under `key`, or None; counted in the hit/miss statistics.
    fn get<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.lookup(py, key, true)
    }

    /// The LM cache entry under `key`, or None: its record checked whole and decoded only as far as a hit
    /// needs. The record passed its checksum, so a malformed value means a file forged to match: still a miss.
    fn get_entry(&self, py: Python<'_>, key: &str) -> PyResult<Option<StoredEntry>> {
        match self.find(py, key, true)? {
            Some(found) => StoredEntry::read(py, found.value),
            None => Ok(None),
        }
    }

    /// Like `get` but not counted in the statistics (for export and inspection).
    fn peek<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.lookup(py, key, false)
    }

    fn contains(&self, py: Python<'_>, key: &str) -> PyResult<bool> {
        let key = parse_key(key)?;
        let found = py.detach(|| self.store.get(&key, false)).map_err(to_py)?;
        Ok(found.is_some())
    }

    /// Stores the JSON-native `record` under `key`; `tokens` and `cost` (dollars) are what a later hit saves.
    #[pyo3(signature = (key, record, tokens=0, cost=0.0))]
    fn put(
        &self,
        py: Python<'_>,
        key: &str,
        record: &Bound<'_, PyAny>,
        tokens: u64,
        cost: f64,
    ) -> PyResult<()> {
        let key = parse_key(key)?;
        let mut writer = Writer::default();
        encode(record, &mut writer, 0)?;
        let cost_nanos = if cost.is_finite() && cost > 0.0 {
            (cost * 1e9).round() as u64
        } else {
            0
        };
        let meta = RecordMeta {
            created_ms: now_ms(),
            tokens,
            cost_nanos,
        };
        py.detach(|| self.store.put(&key, &writer.buf, meta))
            .map_err(to_py)
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let Stats {
            entries,
            bytes,
            segments,
            hits,
            misses,
            tokens_saved,
            cost_saved_nanos,
            bad_records,
            index_generation,
        } = py.detach(|| self.store.stats()).map_err(to_py)?;
        let d = PyDict::new(py);
        d.set_item("entries", entries)?;
        d.set_item("bytes", bytes)?;
        d.set_item("segments", segments)?;
        d.set_item("hits", hits)?;
        d.set_item("misses", misses)?;
        d.set_item("tokens_saved", tokens_saved)?;
        d.set_item("cost_saved", cost_saved_nanos as f64 / 1e9)?;
        d.set_item("bad_records", bad_records)?;
        d.set_item("index_generation", index_generation)?;
        d.set_item("size_limit_bytes", self.store.size_limit())?;
        d.set_item("directory", self.store.dir())?;
        Ok(d)
    }

    fn verify<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let VerifyReport {
            ok,
            bad,
            interrupted_writes,
            damaged_slots,
            index_was_unreadable,
            index_rebuilt,
            entries,
        } = py
            .detach(|| self.store.verify(&|bytes| value::validate(bytes).is_ok()))
            .map_err(to_py)?;
        let d = PyDict::new(py);
        d.set_item("checked", ok + bad)?;
        d.set_item("ok", ok)?;
        d.set_item("bad", bad)?;
        d.set_item("interrupted_writes", interrupted_writes)?;
        d.set_item("damaged_index_slots", damaged_slots)?;
        d.set_item("index_was_unreadable", index_was_unreadable)?;
        d.set_item("index_rebuilt", index_rebuilt)?;
        d.set_item("entries", entries)?;
        Ok(d)
    }

    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.store.clear()).map_err(to_py)
    }

    /// Every key with a readable record, as hex strings.
    fn keys(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let keys = py.detach(|| self.store.keys()).map_err(to_py)?;
        Ok(keys.iter().map(hex).collect())
    }
}

impl DiskStore {
    /// The record under `key` in the tagged encoding, checksum verified, or None.
    fn find(&self, py: Python<'_>, key: &str, count: bool) -> PyResult<Option<Found>> {
        let key = parse_key(key)?;
        // Reads are a few microseconds of mapped memory: keep the GIL unless another thread holds the store.
        let found = match self.store.try_get(&key, count) {
            Some(found) => found,
            None => py.detach(|| self.store.get(&key, count)),
        };
        Ok(found
            .map_err(to_py)?
            .filter(|found| found.flags & 0xff == ENCODING_TAGGED))
    }

    fn lookup<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        count: bool,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Some(found) = self.find(py, key, count)? else {
            return Ok(None);
        };
        // The record passed its checksum, so a decoding failure means a file forged to match: still a miss.
        Ok(decode_objects(py, &found.value.bytes()).ok())
    }
}

thread_local! {
    static KEYS: RefCell<KeyCache> = RefCell::new(KeyCache::default());
}

pub(super) fn decode_objects<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    KEYS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut keys) => value::decode(
            bytes,
            &mut Objects {
                py,
                keys: &mut keys,
            },
        ),
        // Never reentered in practice (decoding runs no Python code); a fresh cache keeps it safe anyway.
        Err(_) => value::decode(
            bytes,
            &mut Objects {
                py,
                keys: &mut KeyCache::default(),
            },
        ),
    })
}

/// Encodes a JSON-native Python value; anything else is a `TypeError` naming the type.
fn encode(v: &Bound<'_, PyAny>, w: &mut Writer, depth: usize) -> PyResult<()> {
    if depth > MAX_DEPTH {
        return Err(PyValueError::new_err(format!(
            "cache record nests deeper than {MAX_DEPTH} levels"
        )));
    }
    if v.is_none() {
        w.null();
    } else if let Ok(s) = v.cast::<PyString>() {
        w.str(s.to_str()?);
    } else if let Ok(b) = v.cast::<PyBool>() {
        // Before int: Python's bool is an int subclass.
        w.bool(b.is_true());
    } else if let Ok(i) = v.cast::<PyInt>() {
        match i.extract::<i64>() {
            Ok(n) => w.int(n),
            Err(_) => {
                let digits = i.str()?;
                let digits = digits.to_str()?;
                if digits.trim_start_matches('-').len() > MAX_BIG_INT_DIGITS {
                    return Err(PyValueError::new_err(format!(
                        "cache records hold integers of at most {MAX_BIG_INT_DIGITS} digits"
                    )));
                }
                w.big_int(digits)
            }
        }
    } else if let Ok(f) = v.cast::<PyFloat>() {
        w.float(f.value());
    } else if let Ok(d) = v.cast::<PyDict>() {
        w.object(d.len());
        for (k, item) in d.iter() {
            let name = k.cast::<PyString>().map_err(|_| {
                PyTypeError::new_err(format!(
                    "cache records must be JSON-native: a dict key is {}, not str",
                    k.get_type()
                        .name()
                        .map(|n| n.to_string())
                        .unwrap_or_default()
                ))
            })?;
            w.key(name.to_str()?);
            encode(&item, w, depth + 1)?;
        }
    } else if let Ok(l) = v.cast::<PyList>() {
        w.list(l.len());
        for item in l.iter() {
            encode(&item, w, depth + 1)?;
        }
    } else if let Ok(t) = v.cast::<PyTuple>() {
        w.list(t.len());
        for item in t.iter() {
            encode(&item, w, depth + 1)?;
        }
    } else {
        return Err(PyTypeError::new_err(format!(
            "cache records must be JSON-native (dict, list, str, int, float, bool, None), got {}",
            v.get_type().name()?
        )));
    }
    Ok(())
}

/// Decodes straight into Python objects.
struct Objects<'py, 'k> {
    py: Python<'py>,
    keys: &'k mut KeyCache,
}

/// Member names repeat in every record ("choices", "message", "content", ...): reusing their `str` objects
/// skips creating and hashing them again (a `str` caches its hash). Direct-mapped: a clash just replaces.
struct KeyCache {
    slots: Vec<Option<(Box<str>, Py<PyString>)>>,
}

impl Default for KeyCache {
    fn default() -> Self {
        KeyCache {
            slots: (0..KEY_CACHE_SLOTS).map(|_| None).collect(),
        }
    }
}

const KEY_CACHE_SLOTS: usize = 512;
const KEY_CACHE_MAX_LEN: usize = 48;

impl KeyCache {
    fn get<'py>(&mut self, py: Python<'py>, key: &str) -> Bound<'py, PyString> {
        let b = key.as_bytes();
        if b.is_empty() || b.len() > KEY_CACHE_MAX_LEN {
            return PyString::new(py, key);
        }
        // FNV-1a: member names are short, so hashing all their bytes costs a few nanoseconds.
        let mix = b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &c| {
            (h ^ u64::from(c)).wrapping_mul(0x100_0000_01b3)
        });
        let slot = &mut self.slots[(mix % KEY_CACHE_SLOTS as u64) as usize];
        if let Some((cached, s)) = slot {
            if **cached == *key {
                return s.bind(py).clone();
            }
        }
        let s = PyString::new(py, key);
        *slot = Some((key.into(), s.clone().unbind()));
        s
    }
}

impl<'py> Builder for Objects<'py, '_> {
    type Value = Bound<'py, PyAny>;
    type Error = PyErr;

    fn null(&mut self) -> PyResult<Self::Value> {
        Ok(self.py.None().into_bound(self.py))
    }
    fn bool(&mut self, v: bool) -> PyResult<Self::Value> {
        Ok(PyBool::new(self.py, v).to_owned().into_any())
    }
    fn int(&mut self, v: i64) -> PyResult<Self::Value> {
        Ok(v.into_pyobject(self.py)?.into_any())
    }
    fn big_int(&mut self, digits: &str) -> PyResult<Self::Value> {
        self.py.get_type::<PyInt>().call1((digits,))
    }
    fn float(&mut self, v: f64) -> PyResult<Self::Value> {
        Ok(PyFloat::new(self.py, v).into_any())
    }
    fn str(&mut self, v: &str) -> PyResult<Self::Value> {
        Ok(PyString::new(self.py, v).into_any())
    }
    fn list(&mut self, items: Vec<Self::Value>) -> PyResult<Self::Value> {
        Ok(PyList::new(self.py, items)?.into_any())
    }
    fn object(&mut self, _len: usize) -> PyResult<Self::Value> {
        Ok(PyDict::new(self.py).into_any())
    }
    fn set(&mut self, object: &Self::Value, key: &str, value: Self::Value) -> PyResult<()> {
        let key = self.keys.get(self.py, key);
        object.cast::<PyDict>()?.set_item(key, value)
    }
}
