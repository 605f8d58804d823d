//! `request_key(request, ignored, fn_identifier)`: a Python request dict -> canonical JSON -> SHA-256 hex.
//!
//! Python values are written straight into the canonical bytes (no intermediate tree, no string copies);
//! only the hashing of a large request runs without the GIL.

use crate::key::{key_of_canonical_buffer, write_float, write_sorted_object, write_str};
use pyo3::create_exception;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use std::cell::RefCell;
use std::rc::Rc;

create_exception!(
    _core,
    UnsupportedValueError,
    PyTypeError,
    "A request holds a value that is not JSON-native; the caller transforms it and retries."
);

/// Requests nest a few levels (messages -> content parts); anything deeper is not a request.
const MAX_DEPTH: usize = 128;

/// Large requests are hashed without the GIL so other threads keep running.
const DETACH_ABOVE_BYTES: usize = 64 * 1024;

thread_local! {
    /// The last `ignored` tuple and its strings: callers pass the same constant tuple every time, and a
    /// tuple cannot change, so its strings are read once (the strong reference keeps its identity unique).
    static IGNORED: RefCell<Option<IgnoredNames>> = const { RefCell::new(None) };
    /// The buffer each request is written into, reused (it trades places with the hasher's kept request).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Long strings seen lately that need no escaping. A batch sends the same system prompt object with
    /// every request; a `str` never changes and the strong reference keeps its address its own, so the
    /// same object again is copied without scanning it.
    static CLEAN_STRINGS: RefCell<[Option<Py<PyString>>; CLEAN_STRING_SLOTS]> =
        const { RefCell::new([const { None }; CLEAN_STRING_SLOTS]) };
}

/// How many clean long strings a thread remembers, and which lengths count as long: scanning below
/// the lower bound costs less than the lookup, and nothing above the upper bound is kept alive.
const CLEAN_STRING_SLOTS: usize = 4;
const CLEAN_STRING_BYTES: std::ops::RangeInclusive<usize> = 256..=64 * 1024;

/// A thread keeps its buffer only up to this size; a huge request's buffer is freed after use.
const KEEP_SCRATCH_BYTES: usize = 256 * 1024;

/// Dicts of up to this many members are collected on the stack rather than in a `Vec`.
const INLINE_MEMBERS: usize = 8;

/// An `ignored` tuple (kept alive, so its address identifies it) and the names it holds.
type IgnoredNames = (Py<PyTuple>, Rc<[String]>);

/// `fn_identifier`, when given, is hashed as the request's `_fn_identifier` member (as DSPy adds it),
/// which spares the caller a copy of the request dict.
#[pyfunction]
#[pyo3(signature = (request, ignored=None, fn_identifier=None))]
pub fn request_key<'py>(
    py: Python<'py>,
    request: &Bound<'py, PyAny>,
    ignored: Option<&Bound<'py, PyAny>>,
    fn_identifier: Option<&str>,
) -> PyResult<Bound<'py, PyString>> {
    let ignored = ignored_names(ignored)?;
    // The thread's buffer from the request before (taken, so a nested call could never share it).
    let mut buf = SCRATCH.with(|cell| cell.take());
    let written = match request
        .cast_exact::<PyDict>()
        .or_else(|_| request.cast::<PyDict>())
    {
        Ok(dict) => write_dict(dict, &mut buf, 0, &ignored, fn_identifier),
        Err(_) => write_value(request, &mut buf, 0),
    };
    let digest = written.map(|()| {
        if buf.len() > DETACH_ABOVE_BYTES {
            py.detach(|| key_of_canonical_buffer(&mut buf))
        } else {
            key_of_canonical_buffer(&mut buf)
        }
    });
    buf.clear();
    if buf.capacity() <= KEEP_SCRATCH_BYTES {
        SCRATCH.with(|cell| cell.replace(buf));
    }
    let digest = digest?;
    Ok(PyString::new(
        py,
        std::str::from_utf8(&digest).expect("hex digits are ASCII"),
    ))
}

/// `Cache.cache_key` as one native call: the request key, and on a request holding non-JSON values
/// (pydantic models, callables) the key of `transform(request, ignored)`, DSPy's treatment of them.
#[pyclass(frozen, module = "turbodspy._core")]
pub struct RequestKeyer {
    transform: Py<PyAny>,
}

#[pymethods]
impl RequestKeyer {
    #[new]
    fn new(transform: Py<PyAny>) -> Self {
        RequestKeyer { transform }
    }

    #[pyo3(signature = (request, ignored_args_for_cache_key=None, fn_identifier=None))]
    fn __call__<'py>(
        &self,
        py: Python<'py>,
        request: &Bound<'py, PyAny>,
        ignored_args_for_cache_key: Option<&Bound<'py, PyAny>>,
        fn_identifier: Option<&str>,
    ) -> PyResult<Bound<'py, PyString>> {
        match request_key(py, request, ignored_args_for_cache_key, fn_identifier) {
            Err(e) if e.is_instance_of::<UnsupportedValueError>(py) => {
                let ignored = match ignored_args_for_cache_key {
                    Some(names) => names.clone(),
                    None => PyTuple::empty(py).into_any(),
                };
                let transformed = self.transform.bind(py).call1((request, ignored))?;
                request_key(py, &transformed, None, fn_identifier)
            }
            other => other,
        }
    }
}

fn ignored_names(ignored: Option<&Bound<'_, PyAny>>) -> PyResult<Rc<[String]>> {
    let Some(ignored) = ignored else {
        return Ok(Rc::from([]));
    };
    let Ok(tuple) = ignored.cast_exact::<PyTuple>() else {
        return Ok(ignored.extract::<Vec<String>>()?.into());
    };
    IGNORED.with(|cell| {
        let mut cached = cell.borrow_mut();
        if let Some((seen, names)) = cached.as_ref() {
            if seen.as_ptr() == tuple.as_ptr() {
                return Ok(Rc::clone(names));
            }
        }
        let names: Rc<[String]> = tuple.extract::<Vec<String>>()?.into();
        *cached = Some((tuple.clone().unbind(), Rc::clone(&names)));
        Ok(names)
    })
}

fn write_dict(
    dict: &Bound<'_, PyDict>,
    out: &mut Vec<u8>,
    depth: usize,
    ignored: &[String],
    fn_identifier: Option<&str>,
) -> PyResult<()> {
    if dict.len() <= INLINE_MEMBERS {
        let mut entries: [Option<Entry<'_>>; INLINE_MEMBERS] = [const { None }; INLINE_MEMBERS];
        let mut count = 0;
        for (key, value) in dict.iter() {
            let slot = entries.get_mut(count).ok_or_else(|| {
                UnsupportedValueError::new_err("dict changed size while it was read")
            })?;
            *slot = Some((string_key(key)?, value));
            count += 1;
        }
        let mut members = [("", Member::Text("")); INLINE_MEMBERS + 1];
        let kept = collect_members(
            entries[..count].iter().flatten(),
            &mut members,
            ignored,
            fn_identifier,
        )?;
        write_members(&mut members[..kept], out, depth)
    } else {
        let entries = dict
            .iter()
            .map(|(key, value)| Ok((string_key(key)?, value)))
            .collect::<PyResult<Vec<Entry<'_>>>>()?;
        let mut members = vec![("", Member::Text("")); entries.len() + 1];
        let kept = collect_members(entries.iter(), &mut members, ignored, fn_identifier)?;
        write_members(&mut members[..kept], out, depth)
    }
}

/// A dict member as read: its key (checked to be a str) and its value.
type Entry<'py> = (Bound<'py, PyString>, Bound<'py, PyAny>);

fn string_key(key: Bound<'_, PyAny>) -> PyResult<Bound<'_, PyString>> {
    // The exact check is a pointer comparison; the subclass check is a call into the interpreter.
    key.cast_into_exact::<PyString>()
        .or_else(|e| e.into_inner().cast_into::<PyString>())
        .map_err(|_| UnsupportedValueError::new_err("Dict key must be str"))
}

/// Fills `members` with the entries that are not ignored, plus `_fn_identifier`; returns how many.
fn collect_members<'a, 'py: 'a>(
    entries: impl Iterator<Item = &'a Entry<'py>>,
    members: &mut [(&'a str, Member<'a, 'py>)],
    ignored: &[String],
    fn_identifier: Option<&'a str>,
) -> PyResult<usize> {
    let mut kept = 0;
    for (key, value) in entries {
        let key = key.to_str()?;
        if ignored.iter().any(|name| name == key)
            || (fn_identifier.is_some() && key == "_fn_identifier")
        {
            continue;
        }
        members[kept] = (key, Member::Value(value));
        kept += 1;
    }
    if let Some(identifier) = fn_identifier {
        members[kept] = ("_fn_identifier", Member::Text(identifier));
        kept += 1;
    }
    Ok(kept)
}

fn write_members(
    members: &mut [(&str, Member<'_, '_>)],
    out: &mut Vec<u8>,
    depth: usize,
) -> PyResult<()> {
    write_sorted_object(members, out, |member, out| match member {
        Member::Value(value) => write_value(value, out, depth + 1),
        Member::Text(text) => {
            write_str(text, out);
            Ok(())
        }
    })
}

#[derive(Clone, Copy)]
enum Member<'a, 'py> {
    Value(&'a Bound<'py, PyAny>),
    Text(&'a str),
}

fn write_value(value: &Bound<'_, PyAny>, out: &mut Vec<u8>, depth: usize) -> PyResult<()> {
    if depth > MAX_DEPTH {
        return Err(UnsupportedValueError::new_err(
            "request nests deeper than 128 levels",
        ));
    }
    // Exact types first, most frequent first: one pointer comparison each.
    if let Ok(s) = value.cast_exact::<PyString>() {
        write_exact_str(s, out)?;
    } else if let Ok(d) = value.cast_exact::<PyDict>() {
        write_dict(d, out, depth, &[], None)?;
    } else if let Ok(l) = value.cast_exact::<PyList>() {
        write_array(l.iter(), out, depth)?;
    } else if let Ok(i) = value.cast_exact::<PyInt>() {
        write_int(i, out)?;
    } else if let Ok(f) = value.cast_exact::<PyFloat>() {
        write_float(f.value(), out);
    } else if value.is_none() {
        out.extend_from_slice(b"null");
    } else if let Ok(s) = value.cast::<PyString>() {
        // Subclasses (str enums and the like) are written as their base type, as orjson does.
        write_str(s.to_str()?, out);
    } else if let Ok(b) = value.cast::<PyBool>() {
        // bool before int: Python's bool is an int subclass.
        out.extend_from_slice(if b.is_true() { b"true" } else { b"false" });
    } else if let Ok(i) = value.cast::<PyInt>() {
        write_int(i, out)?;
    } else if let Ok(f) = value.cast::<PyFloat>() {
        write_float(f.value(), out);
    } else if let Ok(d) = value.cast::<PyDict>() {
        write_dict(d, out, depth, &[], None)?;
    } else if let Ok(l) = value.cast::<PyList>() {
        write_array(l.iter(), out, depth)?;
    } else if let Ok(t) = value.cast::<PyTuple>() {
        write_array(t.iter(), out, depth)?;
    } else {
        return Err(UnsupportedValueError::new_err(format!(
            "Type is not JSON serializable: {}",
            value.get_type().name()?
        )));
    }
    Ok(())
}

fn write_exact_str(s: &Bound<'_, PyString>, out: &mut Vec<u8>) -> PyResult<()> {
    let text = s.to_str()?;
    if !CLEAN_STRING_BYTES.contains(&text.len()) {
        write_str(text, out);
        return Ok(());
    }
    CLEAN_STRINGS.with(|cell| {
        let Ok(mut slots) = cell.try_borrow_mut() else {
            write_str(text, out);
            return;
        };
        if slots
            .iter()
            .flatten()
            .any(|seen| seen.as_ptr() == s.as_ptr())
        {
            out.reserve(text.len() + 2);
            out.push(b'"');
            out.extend_from_slice(text.as_bytes());
            out.push(b'"');
            return;
        }
        let start = out.len();
        write_str(text, out);
        // Written unescaped (two quotes more than its bytes): remember it, oldest slot out.
        if out.len() - start == text.len() + 2 {
            slots.rotate_right(1);
            slots[0] = Some(s.clone().unbind());
        }
    });
    Ok(())
}

fn write_int(i: &Bound<'_, PyInt>, out: &mut Vec<u8>) -> PyResult<()> {
    if let Ok(v) = i.extract::<i64>() {
        out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    } else if let Ok(v) = i.extract::<u64>() {
        out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    } else {
        return Err(UnsupportedValueError::new_err(
            "Integer exceeds 64-bit range",
        ));
    }
    Ok(())
}

fn write_array<'py>(
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    out: &mut Vec<u8>,
    depth: usize,
) -> PyResult<()> {
    out.push(b'[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_value(&item, out, depth + 1)?;
    }
    out.push(b']');
    Ok(())
}
