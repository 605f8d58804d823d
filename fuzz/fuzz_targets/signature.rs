//! The signature parser on arbitrary input: it returns a parse or an error, never panics, and every error
//! position lies inside the string (the error message is built too, as the Python layer does).
#![no_main]

use _core::signature::{error_message, parse_signature};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_signature(text) {
        Ok(parsed) => {
            let _ = parsed.default_instructions();
            let _ = parsed.type_names();
            for field in parsed.inputs.iter().chain(parsed.outputs.iter()) {
                assert!(field.position < text.chars().count());
            }
        }
        Err(err) => {
            if let Some(position) = err.position() {
                assert!(position <= text.chars().count());
            }
            let _ = error_message(text, &err.to_string(), err.position());
        }
    }
});
