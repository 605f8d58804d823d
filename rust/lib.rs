//! turbodspy's Rust core. Each concern lives in its own module and does not depend on Python;
//! the `py` module (behind the `python` feature) converts between Python objects and them.

pub mod call_id;
pub mod key;
pub mod signature;
pub mod store;
pub mod template;
pub mod timestamp;

#[cfg(feature = "python")]
mod py;
