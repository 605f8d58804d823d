//! `parse_signature(text)`: a signature string -> its fields, with type expressions as small tuple trees.
//!
//! One call per signature string. Each field comes back as
//! `(name, "Prefix:" | None, type_text | None, type_tree | None, name_position)`, inputs and outputs apart,
//! followed by the distinct names the types mention and DSPy's default instructions for the fields.
//! Type trees are tuples whose first item is a tag (see `_core.pyi`); positions are character offsets.

use crate::signature::{
    error_message, infer_prefix, parse_signature as parse, FieldSpec, TypeExpr,
};
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use pyo3::IntoPyObjectExt;

create_exception!(
    _core,
    SignatureSyntaxError,
    PyValueError,
    "A signature string is malformed; the message says what and where (`.position` is the character offset)."
);

const NAME: u8 = 0;
const ATTRIBUTE: u8 = 1;
const SUBSCRIPT: u8 = 2;
const UNION: u8 = 3;
const TUPLE: u8 = 4;
const CONSTANT: u8 = 5;
const INT: u8 = 6;
const FLOAT: u8 = 7;
const CALL: u8 = 8;

type Fields<'py> = Bound<'py, PyTuple>;
type Parsed<'py> = (Fields<'py>, Fields<'py>, Bound<'py, PyTuple>, String);

#[pyfunction]
pub fn parse_signature<'py>(py: Python<'py>, text: &str) -> PyResult<Parsed<'py>> {
    let parsed = parse(text).map_err(|e| to_py_err(py, text, &e.to_string(), e.position()))?;
    let names = PyTuple::new(py, parsed.type_names())?;
    Ok((
        fields(py, &parsed.inputs)?,
        fields(py, &parsed.outputs)?,
        names,
        parsed.default_instructions(),
    ))
}

/// Builds the exception the Python layer raises for errors it finds itself (an unknown type name).
#[pyfunction]
#[pyo3(signature = (signature, what, position=None))]
pub fn signature_error(
    py: Python<'_>,
    signature: &str,
    what: &str,
    position: Option<usize>,
) -> PyErr {
    to_py_err(py, signature, what, position)
}

/// DSPy's `infer_prefix` for ASCII names; `None` for names the caller handles with Unicode rules.
#[pyfunction]
pub fn infer_ascii_prefix(name: &str) -> Option<String> {
    infer_prefix(name)
}

/// The one place signature errors become Python exceptions.
fn to_py_err(py: Python<'_>, signature: &str, what: &str, position: Option<usize>) -> PyErr {
    let err = SignatureSyntaxError::new_err(error_message(signature, what, position));
    let value = err.value(py);
    // Attribute assignment on a fresh exception instance cannot fail in practice; ignore if it does.
    let _ = value.setattr("signature", signature);
    let _ = value.setattr("position", position);
    err
}

fn fields<'py>(py: Python<'py>, specs: &[FieldSpec]) -> PyResult<Bound<'py, PyTuple>> {
    let items = specs
        .iter()
        .map(|f| {
            let (text, tree) = match &f.ty {
                Some(t) => (Some(t.text.as_str()), Some(tree(py, &t.expr)?)),
                None => (None, None),
            };
            (
                f.name.as_str(),
                infer_prefix(&f.name).map(|p| p + ":"),
                text,
                tree,
                f.position,
            )
                .into_bound_py_any(py)
        })
        .collect::<PyResult<Vec<_>>>()?;
    PyTuple::new(py, items)
}

fn tree<'py>(py: Python<'py>, expr: &TypeExpr) -> PyResult<Bound<'py, PyAny>> {
    match expr {
        TypeExpr::Name { id, position } => (NAME, id.as_str(), *position).into_bound_py_any(py),
        TypeExpr::Attribute {
            value,
            attr,
            position,
        } => (ATTRIBUTE, tree(py, value)?, attr.as_str(), *position).into_bound_py_any(py),
        TypeExpr::Subscript {
            value,
            args,
            position,
        } => (SUBSCRIPT, tree(py, value)?, trees(py, args)?, *position).into_bound_py_any(py),
        TypeExpr::Union { left, right } => {
            (UNION, tree(py, left)?, tree(py, right)?).into_bound_py_any(py)
        }
        TypeExpr::Tuple(items) => (TUPLE, trees(py, items)?).into_bound_py_any(py),
        TypeExpr::Str(s) => (CONSTANT, s.as_str()).into_bound_py_any(py),
        TypeExpr::Bytes(b) => (CONSTANT, PyBytes::new(py, b)).into_bound_py_any(py),
        TypeExpr::Int(text) => (INT, text.as_str()).into_bound_py_any(py),
        TypeExpr::Float(text) => (FLOAT, text.as_str()).into_bound_py_any(py),
        TypeExpr::Bool(b) => (CONSTANT, *b).into_bound_py_any(py),
        TypeExpr::None => (CONSTANT, py.None()).into_bound_py_any(py),
        TypeExpr::Ellipsis => (CONSTANT, py.Ellipsis()).into_bound_py_any(py),
        TypeExpr::Call {
            func,
            kwargs,
            position,
        } => {
            let kwargs = kwargs
                .iter()
                .map(|(k, v)| (k.as_str(), tree(py, v)?).into_bound_py_any(py))
                .collect::<PyResult<Vec<_>>>()?;
            (CALL, func.as_str(), PyTuple::new(py, kwargs)?, *position).into_bound_py_any(py)
        }
    }
}

fn trees<'py>(py: Python<'py>, exprs: &[TypeExpr]) -> PyResult<Bound<'py, PyTuple>> {
    let items = exprs
        .iter()
        .map(|e| tree(py, e))
        .collect::<PyResult<Vec<_>>>()?;
    PyTuple::new(py, items)
}
