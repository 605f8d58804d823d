//! The pyo3 layer: `turbodspy._core`. Each file converts one core module's inputs and outputs.

use pyo3::prelude::*;

mod key;
mod store;
mod template;

/// A fresh UUID4 string for a history entry.
#[pyfunction]
fn call_id() -> String {
    crate::call_id::uuid4()
}
mod signature;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(key::request_key, m)?)?;
    m.add_class::<key::RequestKeyer>()?;
    m.add_function(wrap_pyfunction!(call_id, m)?)?;
    m.add(
        "UnsupportedValueError",
        m.py().get_type::<key::UnsupportedValueError>(),
    )?;
    m.add_class::<store::DiskStore>()?;
    m.add_class::<store::StoredRecord>()?;
    m.add_function(wrap_pyfunction!(signature::parse_signature, m)?)?;
    m.add_function(wrap_pyfunction!(signature::signature_error, m)?)?;
    m.add_function(wrap_pyfunction!(signature::infer_ascii_prefix, m)?)?;
    m.add(
        "SignatureSyntaxError",
        m.py().get_type::<signature::SignatureSyntaxError>(),
    )?;
    m.add_class::<template::Template>()?;
    m.add_function(wrap_pyfunction!(template::parse_json_object, m)?)?;
    m.add_function(wrap_pyfunction!(template::parse_json_container, m)?)?;
    m.add_function(wrap_pyfunction!(template::parse_json_value, m)?)?;
    Ok(())
}
