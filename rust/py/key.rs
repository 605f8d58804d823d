//! `request_key(request, ignored, fn_identifier)`: a Python request dict -> canonical JSON -> SHA-256 hex.
//!
//! Python values are written straight into the canonical bytes (no intermediate tree, no string copies);
//! only the hashing of a large request runs without the GIL.

use crate::key::{key_of_canonical, write_float, write_sorted_object, write_str};
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
}

/// An `ignored` tuple (kept alive, so its address identifies it) and the names it holds.
type IgnoredNames = (Py<PyTuple>, Rc<[String]>);

/// `fn_identifier`, when given, is hashed as the request's `_fn_identifier` member (as DSPy adds it),
/// which spares the caller a copy of the request dict.
#[pyfunction]
#[pyo3(signature = (request, ignored=None, fn_identifier=None))]
pub fn request_key(
    py: Python<'_>,
    request: &Bound<'_, PyAny>,
    ignored: Option<&Bound<'_, PyAny>>,
    fn_identifier: Option<&str>,
) -> PyResult<String> {
    let ignored = ignored_names(ignored)?;
    let mut buf = Vec::with_capacity(2048);
    match request.cast::<PyDict>() {
        Ok(dict) => write_dict(dict, &mut buf, 0, &ignored, fn_identifier)?,
        Err(_) => write_value(request, &mut buf, 0)?,
    }
    if buf.len() > DETACH_ABOVE_BYTES {
        Ok(py.detach(|| key_of_canonical(&buf)))
    } else {
        Ok(key_of_canonical(&buf))
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
    let items: Vec<(Bound<'_, PyString>, Bound<'_, PyAny>)> = dict
        .iter()
        .map(|(k, v)| {
            k.cast_into::<PyString>()
                .map(|k| (k, v))
                .map_err(|_| UnsupportedValueError::new_err("Dict key must be str"))
        })
        .collect::<PyResult<_>>()?;
    let mut members: Vec<(&str, Member)> = Vec::with_capacity(items.len() + 1);
    for (key, value) in &items {
        let key = key.to_str()?;
        if ignored.iter().any(|name| name == key)
            || (fn_identifier.is_some() && key == "_fn_identifier")
        {
            continue;
        }
        members.push((key, Member::Value(value)));
    }
    if let Some(identifier) = fn_identifier {
        members.push(("_fn_identifier", Member::Text(identifier)));
    }
    write_sorted_object(&mut members, out, |member, out| match member {
        Member::Value(value) => write_value(value, out, depth + 1),
        Member::Text(text) => {
            write_str(text, out);
            Ok(())
        }
    })
}

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
    if let Ok(s) = value.cast::<PyString>() {
        write_str(s.to_str()?, out);
    } else if value.is_none() {
        out.extend_from_slice(b"null");
    } else if let Ok(b) = value.cast::<PyBool>() {
        // bool before int: Python's bool is an int subclass.
        out.extend_from_slice(if b.is_true() { b"true" } else { b"false" });
    } else if let Ok(i) = value.cast::<PyInt>() {
        if let Ok(v) = i.extract::<i64>() {
            out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        } else if let Ok(v) = i.extract::<u64>() {
            out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        } else {
            return Err(UnsupportedValueError::new_err(
                "Integer exceeds 64-bit range",
            ));
        }
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
