//! `request_key(request, ignored, fn_identifier)`: a Python request dict -> canonical JSON -> SHA-256 hex.
//!
//! Python values are written straight into the canonical bytes (no intermediate tree, no string copies);
//! only the hashing of a large request runs without the GIL.

use crate::key::{write_float, write_sorted_object, write_str, PrefixHasher};
use pyo3::create_exception;
use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
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
    /// Everything a thread reuses from one key to the next, in one place (one lookup per key).
    static STATE: RefCell<KeyState> = RefCell::new(KeyState::default());
}

#[derive(Default)]
struct KeyState {
    /// The last `ignored` tuple and its strings: callers pass the same constant tuple every time, and a
    /// tuple cannot change, so its strings are read once (the strong reference keeps its identity unique).
    ignored: Option<IgnoredNames>,
    /// The buffer each request is written into, reused (it trades places with the hasher's kept request).
    scratch: Vec<u8>,
    /// Long strings seen lately that need no escaping. A batch sends the same system prompt object with
    /// every request; a `str` never changes and the strong reference keeps its address its own, so the
    /// same object again is copied without scanning it.
    clean_strings: CleanStrings,
    /// Hashes each request resuming from the prefix it shares with the one before.
    hasher: PrefixHasher,
}

type CleanStrings = [Option<Py<PyString>>; CLEAN_STRING_SLOTS];

/// How many clean long strings a thread remembers, and which lengths count as long: scanning below
/// the lower bound costs less than the lookup, and nothing above the upper bound is kept alive.
const CLEAN_STRING_SLOTS: usize = 4;
const CLEAN_STRING_BYTES: std::ops::RangeInclusive<usize> = 256..=64 * 1024;

/// A thread keeps its buffer only up to this size; a huge request's buffer is freed after use.
const KEEP_SCRATCH_BYTES: usize = 256 * 1024;

/// Dicts of up to this many members are collected on the stack rather than in a `Vec`.
const INLINE_MEMBERS: usize = 8;

/// An `ignored` tuple (kept alive, so its address identifies it) and the names it holds.
pub(super) type IgnoredNames = (Py<PyTuple>, Rc<[String]>);

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
    key_of_written(py, |ignored_cache, w| {
        let ignored = ignored_names(ignored_cache, ignored)?;
        match request
            .cast_exact::<PyDict>()
            .or_else(|_| request.cast::<PyDict>())
        {
            Ok(dict) => write_dict(dict, w, 0, &ignored, fn_identifier),
            Err(_) => write_value(request, w, 0),
        }
    })
}

/// The key of the request `write` writes into the thread's buffer, as a `str`. `write` also gets the
/// thread's slot for the `ignored` names it read last.
pub(super) fn key_of_written<'py>(
    py: Python<'py>,
    write: impl FnOnce(&mut Option<IgnoredNames>, &mut Writer<'_>) -> PyResult<()>,
) -> PyResult<Bound<'py, PyString>> {
    let digest = STATE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut state) => key_with(py, &mut state, write),
        // Reading a non-tuple `ignored` may run Python code that asks for a key itself: give it its own.
        Err(_) => key_with(py, &mut KeyState::default(), write),
    })?;
    Ok(PyString::new(
        py,
        std::str::from_utf8(&digest).expect("hex digits are ASCII"),
    ))
}

fn key_with(
    py: Python<'_>,
    state: &mut KeyState,
    write: impl FnOnce(&mut Option<IgnoredNames>, &mut Writer<'_>) -> PyResult<()>,
) -> PyResult<[u8; 64]> {
    let KeyState {
        ignored,
        scratch,
        clean_strings,
        hasher,
    } = state;
    let written = write(
        ignored,
        &mut Writer {
            out: scratch,
            clean_strings,
        },
    );
    let digest = written.map(|()| {
        if scratch.len() > DETACH_ABOVE_BYTES {
            py.detach(|| hasher.sha256_hex_keeping(scratch))
        } else {
            hasher.sha256_hex_keeping(scratch)
        }
    });
    scratch.clear();
    if scratch.capacity() > KEEP_SCRATCH_BYTES {
        *scratch = Vec::new();
    }
    digest
}

/// Writes `value` as canonical JSON into `out`, outside any key (nothing is remembered for later keys).
pub(super) fn write_json(value: &Bound<'_, PyAny>, out: &mut Vec<u8>) -> PyResult<()> {
    let mut clean_strings = CleanStrings::default();
    write_value(
        value,
        &mut Writer {
            out,
            clean_strings: &mut clean_strings,
        },
        0,
    )
}

/// Where a request is written: the bytes, and the thread's clean long strings.
pub(super) struct Writer<'s> {
    pub(super) out: &'s mut Vec<u8>,
    clean_strings: &'s mut CleanStrings,
}

/// `Cache.cache_key` as one native call: the request key, and for a request holding non-JSON values
/// (pydantic models, callables) the key of the request as `turbodspy.clients.cache` transforms it,
/// DSPy's treatment of those values.
#[pyfunction]
#[pyo3(signature = (request, ignored_args_for_cache_key=None, fn_identifier=None))]
pub fn cache_key<'py>(
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
            let transformed = py
                .import("turbodspy.clients.cache")?
                .getattr("transformed_request")?
                .call1((request, ignored))?;
            request_key(py, &transformed, None, fn_identifier)
        }
        other => other,
    }
}

fn ignored_names(
    cached: &mut Option<IgnoredNames>,
    ignored: Option<&Bound<'_, PyAny>>,
) -> PyResult<Rc<[String]>> {
    let Some(ignored) = ignored else {
        return Ok(Rc::from([]));
    };
    let Ok(tuple) = ignored.cast_exact::<PyTuple>() else {
        // Any container of names (a list, a set), as DSPy accepts.
        return ignored
            .try_iter()?
            .map(|name| name?.extract::<String>())
            .collect::<PyResult<Vec<String>>>()
            .map(Rc::from);
    };
    if let Some((seen, names)) = cached.as_ref() {
        if seen.as_ptr() == tuple.as_ptr() {
            return Ok(Rc::clone(names));
        }
    }
    let names: Rc<[String]> = tuple.extract::<Vec<String>>()?.into();
    *cached = Some((tuple.clone().unbind(), Rc::clone(&names)));
    Ok(names)
}

fn write_dict(
    dict: &Bound<'_, PyDict>,
    w: &mut Writer<'_>,
    depth: usize,
    ignored: &[String],
    fn_identifier: Option<&str>,
) -> PyResult<()> {
    let len = dict.len();
    if len <= INLINE_MEMBERS {
        let mut members = [("", Member::Text("")); INLINE_MEMBERS + 1];
        let kept = collect_members(dict, &mut members[..=len], ignored, fn_identifier)?;
        write_members(&mut members[..kept], w, depth)
    } else {
        let mut members = vec![("", Member::Text("")); len + 1];
        let kept = collect_members(dict, &mut members[..=len], ignored, fn_identifier)?;
        write_members(&mut members[..kept], w, depth)
    }
}

/// Fills `members` (room for every member of `dict`, and one more) with the members that are not
/// ignored, plus `_fn_identifier`; returns how many.
fn collect_members<'a, 'py>(
    dict: &'a Bound<'py, PyDict>,
    members: &mut [(&'a str, Member<'a, 'py>)],
    ignored: &[String],
    fn_identifier: Option<&'a str>,
) -> PyResult<usize> {
    let mut kept = 0;
    let mut read = 0;
    for_each_member(dict, |key, value| {
        read += 1;
        if read >= members.len() {
            return Err(UnsupportedValueError::new_err(
                "dict changed size while it was read",
            ));
        }
        let key = text_of(string_key(key)?)?;
        let replaced = fn_identifier.is_some() && key == "_fn_identifier";
        if !(replaced || ignored.iter().any(|name| name == key)) {
            members[kept] = (key, Member::Value(value));
            kept += 1;
        }
        Ok(())
    })?;
    if let Some(identifier) = fn_identifier {
        members[kept] = ("_fn_identifier", Member::Text(identifier));
        kept += 1;
    }
    Ok(kept)
}

/// Calls `f` with each member of `dict` as borrowed references: no reference counting per member.
pub(super) fn for_each_member<'a, 'py>(
    dict: &'a Bound<'py, PyDict>,
    mut f: impl FnMut(Borrowed<'a, 'py, PyAny>, Borrowed<'a, 'py, PyAny>) -> PyResult<()>,
) -> PyResult<()> {
    let py = dict.py();
    let mut pos: ffi::Py_ssize_t = 0;
    let mut key = std::ptr::null_mut();
    let mut value = std::ptr::null_mut();
    // SAFETY: `PyDict_Next` hands out references owned by the dict, which outlives 'a (we borrow a strong
    // reference to it) and cannot change meanwhile: we hold the GIL, and writing a request runs no Python
    // code (type checks, string and number reads) and creates no objects a garbage collection could follow.
    while unsafe { ffi::PyDict_Next(dict.as_ptr(), &mut pos, &mut key, &mut value) } != 0 {
        let (key, value) = unsafe { (Borrowed::from_ptr(py, key), Borrowed::from_ptr(py, value)) };
        f(key, value)?;
    }
    Ok(())
}

fn string_key<'a, 'py>(key: Borrowed<'a, 'py, PyAny>) -> PyResult<Borrowed<'a, 'py, PyString>> {
    // The exact check is a pointer comparison; the subclass check is a call into the interpreter.
    key.cast_exact::<PyString>()
        .or_else(|_| key.cast::<PyString>())
        .map_err(|_| UnsupportedValueError::new_err("Dict key must be str"))
}

/// The UTF-8 text of a `str` borrowed for 'a, for as long as the string itself.
fn text_of<'a>(s: Borrowed<'a, '_, PyString>) -> PyResult<&'a str> {
    let mut size: ffi::Py_ssize_t = 0;
    // SAFETY: `s` is a live `str` for 'a; the UTF-8 bytes CPython returns are owned by it, never change,
    // and live as long as it does. A null return (a lone surrogate) raised the error we fetch.
    let data = unsafe { ffi::PyUnicode_AsUTF8AndSize(s.as_ptr(), &mut size) };
    if data.is_null() {
        return Err(PyErr::fetch(s.py()));
    }
    Ok(unsafe {
        std::str::from_utf8_unchecked(std::slice::from_raw_parts(data.cast(), size as usize))
    })
}

fn write_members(
    members: &mut [(&str, Member<'_, '_>)],
    w: &mut Writer<'_>,
    depth: usize,
) -> PyResult<()> {
    let Writer { out, clean_strings } = w;
    write_sorted_object(members, out, |member, out| match member {
        Member::Value(value) => write_value(value, &mut Writer { out, clean_strings }, depth + 1),
        Member::Text(text) => {
            write_str(text, out);
            Ok(())
        }
    })
}

#[derive(Clone, Copy)]
enum Member<'a, 'py> {
    Value(Borrowed<'a, 'py, PyAny>),
    Text(&'a str),
}

pub(super) fn write_value(
    value: &Bound<'_, PyAny>,
    w: &mut Writer<'_>,
    depth: usize,
) -> PyResult<()> {
    if depth > MAX_DEPTH {
        return Err(UnsupportedValueError::new_err(
            "request nests deeper than 128 levels",
        ));
    }
    // Exact types first, most frequent first: one pointer comparison each.
    if let Ok(s) = value.cast_exact::<PyString>() {
        write_exact_str(s, w)?;
    } else if let Ok(d) = value.cast_exact::<PyDict>() {
        write_dict(d, w, depth, &[], None)?;
    } else if let Ok(l) = value.cast_exact::<PyList>() {
        write_array(l.iter(), w, depth)?;
    } else if let Ok(i) = value.cast_exact::<PyInt>() {
        write_int(i, w.out)?;
    } else if let Ok(f) = value.cast_exact::<PyFloat>() {
        write_float(f.value(), w.out);
    } else if value.is_none() {
        w.out.extend_from_slice(b"null");
    } else if let Ok(s) = value.cast::<PyString>() {
        // Subclasses (str enums and the like) are written as their base type, as orjson does.
        write_str(s.to_str()?, w.out);
    } else if let Ok(b) = value.cast::<PyBool>() {
        // bool before int: Python's bool is an int subclass.
        w.out
            .extend_from_slice(if b.is_true() { b"true" } else { b"false" });
    } else if let Ok(i) = value.cast::<PyInt>() {
        write_int(i, w.out)?;
    } else if let Ok(f) = value.cast::<PyFloat>() {
        write_float(f.value(), w.out);
    } else if let Ok(d) = value.cast::<PyDict>() {
        write_dict(d, w, depth, &[], None)?;
    } else if let Ok(l) = value.cast::<PyList>() {
        write_array(l.iter(), w, depth)?;
    } else if let Ok(t) = value.cast::<PyTuple>() {
        write_array(t.iter(), w, depth)?;
    } else {
        return Err(UnsupportedValueError::new_err(format!(
            "Type is not JSON serializable: {}",
            value.get_type().name()?
        )));
    }
    Ok(())
}

fn write_exact_str(s: &Bound<'_, PyString>, w: &mut Writer<'_>) -> PyResult<()> {
    let text = s.to_str()?;
    let out = &mut *w.out;
    if !CLEAN_STRING_BYTES.contains(&text.len()) {
        write_str(text, out);
        return Ok(());
    }
    let slots = &mut *w.clean_strings;
    if slots
        .iter()
        .flatten()
        .any(|seen| seen.as_ptr() == s.as_ptr())
    {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        return Ok(());
    }
    let start = out.len();
    write_str(text, out);
    // Written unescaped (two quotes more than its bytes): remember it, oldest slot out.
    if out.len() - start == text.len() + 2 {
        slots.rotate_right(1);
        slots[0] = Some(s.clone().unbind());
    }
    Ok(())
}

fn write_int(i: &Bound<'_, PyInt>, out: &mut Vec<u8>) -> PyResult<()> {
    let mut overflow = 0;
    // SAFETY: `i` is a live int. This call reports overflow instead of raising, so the walk creates no
    // exception object (whose allocation could start a garbage collection) while it holds borrowed members.
    let v = unsafe { ffi::PyLong_AsLongLongAndOverflow(i.as_ptr(), &mut overflow) };
    if overflow == 0 {
        out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    } else if let (1, Ok(v)) = (overflow, i.extract::<u64>()) {
        out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    } else {
        // (Too large even for u64: the error ends the walk, so no borrowed member is used after it.)
        return Err(UnsupportedValueError::new_err(
            "Integer exceeds 64-bit range",
        ));
    }
    Ok(())
}

fn write_array<'py>(
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    w: &mut Writer<'_>,
    depth: usize,
) -> PyResult<()> {
    w.out.push(b'[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            w.out.push(b',');
        }
        write_value(&item, w, depth + 1)?;
    }
    w.out.push(b']');
    Ok(())
}
