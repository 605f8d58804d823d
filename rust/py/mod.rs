//! The pyo3 layer: `turbodspy._core`. Each file converts one core module's inputs and outputs.

use pyo3::prelude::*;

mod key;
mod request_keyer;
mod store;
mod stored_entry;
mod template;
mod timestamp;

/// A fresh UUID4 string for a history entry.
#[pyfunction]
fn call_id() -> String {
    crate::call_id::uuid4()
}

/// Run in a forked child (`os.register_at_fork`), so its call ids never repeat its parent's.
#[pyfunction]
fn call_ids_after_fork() {
    crate::call_id::after_fork()
}
mod signature;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(key::request_key, m)?)?;
    m.add_function(wrap_pyfunction!(key::cache_key, m)?)?;
    m.add_class::<request_keyer::RequestKeyer>()?;
    m.add_function(wrap_pyfunction!(call_id, m)?)?;
    m.add_function(wrap_pyfunction!(call_ids_after_fork, m)?)?;
    m.add_function(wrap_pyfunction!(timestamp::timestamp, m)?)?;
    m.add(
        "UnsupportedValueError",
        m.py().get_type::<key::UnsupportedValueError>(),
    )?;
    m.add_class::<store::DiskStore>()?;
    m.add_class::<stored_entry::StoredRecord>()?;
    m.add_class::<stored_entry::StoredEntry>()?;
    m.add(
        "OUTPUTS_ARE_MESSAGE_CONTENTS",
        stored_entry::OUTPUTS_ARE_MESSAGE_CONTENTS,
    )?;
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
