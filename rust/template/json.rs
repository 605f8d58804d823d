//! Reading the JSON object in a JSONAdapter completion, leniently.
//!
//! Models wrap JSON in code fences, add prose around it, leave trailing commas, use single quotes or
//! Python literals, or stop before the closing brace. [`find_object`] accepts all of these, the way
//! DSPy's `json_repair` does for the common cases, and returns `None` only when no object is there.
//! Any input is handled without panicking; nesting deeper than [`MAX_DEPTH`] is cut off.

/// A parsed JSON value. Integers keep their digits (Python's `int` has no size limit).
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(String),
    Float(f64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

pub const MAX_DEPTH: usize = 256;

/// The JSON object a completion holds: the whole text when it is JSON, else the first object in it
/// (repaired), else the first brace-balanced `{...}` span (repaired).
pub fn find_object(text: &str) -> Option<Vec<(String, Json)>> {
    let trimmed = text.trim();
    let mut strict = Parser::new(trimmed, true);
    if let Some(value) = strict.document() {
        return match value {
            Json::Object(members) => Some(members),
            _ => balanced_object(text),
        };
    }
    if let Some(start) = text.find('{') {
        if let Some(Json::Object(members)) = Parser::new(&text[start..], false).value(0) {
            return Some(members);
        }
    }
    balanced_object(text)
}

/// What a field's text means as JSON: the whole text when it is strict JSON (surrounded by JSON
/// whitespace only), else the first container in it (repaired), else `None`.
pub fn field_value(text: &str) -> Option<Json> {
    let trimmed = text.trim_matches([' ', '\t', '\n', '\r']);
    if let Some(value) = Parser::new(trimmed, true).document() {
        return Some(value);
    }
    find_container(text)
}

/// The first JSON container (`{...}` or `[...]`) in `text`, repaired; `None` when there is no bracket.
pub fn find_container(text: &str) -> Option<Json> {
    let start = text.find(['{', '['])?;
    Parser::new(&text[start..], false).value(0)
}

/// The leftmost brace-balanced span (braces counted regardless of quoting), parsed leniently.
fn balanced_object(text: &str) -> Option<Vec<(String, Json)>> {
    let mut open: Vec<usize> = Vec::new();
    let mut best: Option<(usize, usize)> = None;
    for (i, b) in text.bytes().enumerate() {
        match b {
            b'{' => open.push(i),
            b'}' => {
                if let Some(start) = open.pop() {
                    if best.is_none_or(|(s, _)| start < s) {
                        best = Some((start, i + 1));
                    }
                }
            }
            _ => {}
        }
    }
    let (start, end) = best?;
    match Parser::new(&text[start..end], false).value(0) {
        Some(Json::Object(members)) => Some(members),
        _ => None,
    }
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// Strict JSON only (RFC 8259); otherwise repair what models commonly get wrong.
    strict: bool,
    /// The open containers (`{` or `[`), innermost last.
    open: Vec<u8>,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str, strict: bool) -> Self {
        Parser {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            strict,
            open: Vec::new(),
        }
    }

    /// A whole document: one value and nothing but whitespace after it.
    fn document(&mut self) -> Option<Json> {
        let value = self.value(0)?;
        self.skip_ws();
        (self.pos == self.bytes.len()).then_some(value)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        loop {
            while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
                self.pos += 1;
            }
            if self.strict {
                return;
            }
            let rest = &self.bytes[self.pos..];
            if rest.starts_with(b"//") || rest.starts_with(b"#") {
                while !matches!(self.peek(), None | Some(b'\n')) {
                    self.pos += 1;
                }
            } else if rest.starts_with(b"/*") {
                match self.text[self.pos + 2..].find("*/") {
                    Some(end) => self.pos += 2 + end + 2,
                    None => self.pos = self.bytes.len(),
                }
            } else {
                return;
            }
        }
    }

    fn value(&mut self, depth: usize) -> Option<Json> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.skip_ws();
        match self.peek()? {
            open @ (b'{' | b'[') => {
                self.open.push(open);
                let value = if open == b'{' {
                    self.object(depth)
                } else {
                    self.array(depth)
                };
                self.open.pop();
                value
            }
            b'"' => self.value_string(b'"').map(Json::Str),
            b'\'' if !self.strict => self.value_string(b'\'').map(Json::Str),
            b'-' | b'0'..=b'9' => self.number(),
            _ => self.word(),
        }
    }

    fn object(&mut self, depth: usize) -> Option<Json> {
        self.pos += 1;
        let mut members = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b'}') => {
                    self.pos += 1;
                    return Some(Json::Object(members));
                }
                // A model that stopped early: close what is open.
                None if !self.strict => return Some(Json::Object(members)),
                None => return None,
                Some(b',') if !self.strict => {
                    self.pos += 1;
                    continue;
                }
                _ => {}
            }
            if self.strict && !members.is_empty() {
                if self.peek() != Some(b',') {
                    return None;
                }
                self.pos += 1;
                self.skip_ws();
            }
            let key = self.key()?;
            self.skip_ws();
            if self.peek().is_none() && !self.strict {
                // The text stops inside a key: that member never started.
                return Some(Json::Object(members));
            }
            if self.peek() == Some(b':') {
                self.pos += 1;
            } else if self.strict {
                return None;
            }
            self.skip_ws();
            let value = match self.peek() {
                Some(b',' | b'}') | None if !self.strict => Json::Str(String::new()),
                _ => self.value(depth + 1)?,
            };
            members.push((key, value));
        }
    }

    fn key(&mut self) -> Option<String> {
        match self.peek()? {
            b'"' => self.string(b'"'),
            b'\'' if !self.strict => self.string(b'\''),
            _ if self.strict => None,
            _ => {
                let start = self.pos;
                while !matches!(self.peek(), None | Some(b':' | b',' | b'}' | b'\n')) {
                    self.pos += 1;
                }
                let key = self.text[start..self.pos].trim();
                if key.is_empty() && self.peek() != Some(b':') {
                    // Nothing that could be a key: skip a byte so the caller makes progress.
                    self.pos = (self.pos + 1).min(self.bytes.len());
                    while !self.text.is_char_boundary(self.pos) {
                        self.pos += 1;
                    }
                }
                Some(key.to_owned())
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<Json> {
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                Some(b']') => {
                    self.pos += 1;
                    return Some(Json::Array(items));
                }
                None if !self.strict => return Some(Json::Array(items)),
                None => return None,
                Some(b',') if !self.strict => {
                    self.pos += 1;
                    continue;
                }
                Some(b'}') if !self.strict => {
                    // A stray closer: the array was never closed.
                    return Some(Json::Array(items));
                }
                _ => {}
            }
            if self.strict && !items.is_empty() {
                if self.peek() != Some(b',') {
                    return None;
                }
                self.pos += 1;
            }
            let before = self.pos;
            items.push(self.value(depth + 1)?);
            if self.pos == before {
                self.pos += 1;
            }
        }
    }

    /// A string value. Models often leave quotes unescaped inside values (`"say "hi" now"`), so in
    /// lenient mode a quote only closes the string when what follows could follow a value.
    fn value_string(&mut self, quote: u8) -> Option<String> {
        if self.strict {
            return self.string(quote);
        }
        let mut out = String::new();
        loop {
            let part = self.string(quote)?;
            out.push_str(&part);
            if self.bytes.get(self.pos - 1) != Some(&quote) || self.closes_value(self.pos) {
                return Some(out);
            }
            // The quote was text: keep it and read on to the next quote.
            out.push(quote as char);
            self.pos -= 1;
        }
    }

    /// Whether the text at `at` (just after a closing quote) can follow a value.
    fn closes_value(&self, at: usize) -> bool {
        let rest = self.text[at..].trim_start();
        match rest.as_bytes().first() {
            None | Some(b':') => true,
            Some(b'}') => self.open.last() == Some(&b'{'),
            Some(b']') => self.open.last() == Some(&b'['),
            // A missing comma before the next key: `"a": "b" "c": 2`.
            Some(&q @ (b'"' | b'\'')) => rest[1..]
                .find(q as char)
                .is_some_and(|end| rest[1 + end + 1..].trim_start().starts_with(':')),
            Some(b',') => matches!(
                rest[1..].trim_start().as_bytes().first(),
                None | Some(b'"' | b'\'' | b'{' | b'}' | b'[' | b']' | b'-' | b'0'..=b'9')
            ),
            _ => false,
        }
    }

    fn string(&mut self, quote: u8) -> Option<String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let start = self.pos;
            while let Some(b) = self.peek() {
                if b == quote || b == b'\\' || (self.strict && b < 0x20) {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(&self.text[start..self.pos]);
            match self.peek() {
                Some(b) if b == quote => {
                    self.pos += 1;
                    return Some(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.escape(&mut out)?;
                }
                None if !self.strict => return Some(out),
                _ => return None,
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Option<()> {
        let b = self.peek();
        let simple = match b {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                let unit = self.hex4()?;
                let c = if (0xD800..0xDC00).contains(&unit)
                    && self.bytes[self.pos..].starts_with(b"\\u")
                {
                    let save = self.pos;
                    self.pos += 2;
                    match self.hex4() {
                        Some(low @ 0xDC00..=0xDFFF) => {
                            char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))
                        }
                        _ => {
                            self.pos = save;
                            None
                        }
                    }
                } else {
                    char::from_u32(unit)
                };
                // A lone surrogate cannot be text; keep the replacement character in its place.
                out.push(c.unwrap_or('\u{fffd}'));
                return Some(());
            }
            Some(b'\'') if !self.strict => '\'',
            _ if self.strict => return None,
            // An unknown escape in lenient mode: keep the backslash as text.
            _ => {
                out.push('\\');
                return Some(());
            }
        };
        self.pos += 1;
        out.push(simple);
        Some(())
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.text.get(self.pos..self.pos + 4)?;
        let unit = u32::from_str_radix(digits, 16).ok()?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.pos += 4;
        Some(unit)
    }

    fn number(&mut self) -> Option<Json> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let int_start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        if self.pos == int_start
            || (self.strict && self.bytes[int_start] == b'0' && self.pos - int_start > 1)
        {
            if self.strict {
                return None;
            }
            self.pos = start;
            return self.word();
        }
        let mut is_float = false;
        if self.peek() == Some(b'.') {
            is_float = true;
            self.pos += 1;
            let frac_start = self.pos;
            while let Some(b'0'..=b'9') = self.peek() {
                self.pos += 1;
            }
            if self.pos == frac_start && self.strict {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            let save = self.pos;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            let exp_start = self.pos;
            while let Some(b'0'..=b'9') = self.peek() {
                self.pos += 1;
            }
            if self.pos == exp_start {
                if self.strict {
                    return None;
                }
                self.pos = save;
            } else {
                is_float = true;
            }
        }
        let digits = &self.text[start..self.pos];
        if !self.strict && matches!(self.peek(), Some(b) if b.is_ascii_alphabetic() || b == b'_') {
            // `12abc` is a word, not a number.
            self.pos = start;
            return self.word();
        }
        if is_float {
            let digits = digits.trim_end_matches('.');
            digits.parse::<f64>().ok().map(Json::Float)
        } else {
            Some(Json::Int(digits.trim_start_matches('+').to_owned()))
        }
    }

    /// A bare word: JSON and Python literals, else (lenient) the text up to the next delimiter.
    fn word(&mut self) -> Option<Json> {
        let start = self.pos;
        let rest = &self.text[start..];
        for (lit, value) in [
            ("true", Json::Bool(true)),
            ("false", Json::Bool(false)),
            ("null", Json::Null),
            ("True", Json::Bool(true)),
            ("False", Json::Bool(false)),
            ("None", Json::Null),
        ] {
            if rest.starts_with(lit) && (!self.strict || lit.as_bytes()[0].is_ascii_lowercase()) {
                let after = rest.as_bytes().get(lit.len());
                if !matches!(after, Some(b) if b.is_ascii_alphanumeric() || *b == b'_') {
                    self.pos += lit.len();
                    return Some(value);
                }
            }
        }
        if self.strict {
            return None;
        }
        while !matches!(self.peek(), None | Some(b',' | b'}' | b']' | b'\n')) {
            self.pos += 1;
        }
        Some(Json::Str(self.text[start..self.pos].trim().to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn obj(text: &str) -> Option<Vec<(String, Json)>> {
        find_object(text)
    }

    fn one(key: &str, value: Json) -> Option<Vec<(String, Json)>> {
        Some(vec![(key.to_owned(), value)])
    }

    #[test]
    fn strict_json_and_common_repairs() {
        let a1 = one("a", Json::Int("1".into()));
        assert_eq!(obj(r#"{"a": 1}"#), a1);
        assert_eq!(obj("```json\n{\"a\": 1}\n```"), a1);
        assert_eq!(obj("Here: {\"a\": 1} thanks"), a1);
        assert_eq!(obj("{\"a\": 1,}"), a1);
        assert_eq!(obj("{'a': 1}"), a1);
        assert_eq!(obj("{\"a\": 1"), a1);
        assert_eq!(obj("{a: 1}"), a1);
        assert_eq!(obj("{\"a\": // note\n 1}"), a1);
        assert_eq!(obj("{\"a\": True}"), one("a", Json::Bool(true)));
        assert_eq!(obj("{\"a\": \"x\ny\"}"), one("a", Json::Str("x\ny".into())));
        assert_eq!(obj("{\"a\": 1e400}"), one("a", Json::Float(f64::INFINITY)));
        assert_eq!(obj("{\"a\": 1, \"b"), a1);
        assert_eq!(
            obj("{\"a\": \"He said \"no\", then left\"}"),
            one("a", Json::Str("He said \"no\", then left".into()))
        );
        assert_eq!(obj("{'a': '['q']'}"), one("a", Json::Str("['q']".into())));
        assert_eq!(
            obj("{\"a\": \"\\u00e9\\ud83d\\ude00\"}"),
            one("a", Json::Str("é😀".into()))
        );
        assert_eq!(
            obj("{\"a\": \"b\" \"c\": 2}"),
            Some(vec![
                ("a".into(), Json::Str("b".into())),
                ("c".into(), Json::Int("2".into()))
            ])
        );
    }

    #[test]
    fn no_object_is_none() {
        assert_eq!(obj(""), None);
        assert_eq!(obj("no json here"), None);
        assert_eq!(obj("[1, 2]"), None);
        assert_eq!(obj("}{"), Some(vec![]));
    }

    #[test]
    fn deep_nesting_is_cut_off_not_overflowed() {
        let text = "{\"a\": ".to_owned() + &"[".repeat(100_000);
        let _ = obj(&text);
    }

    proptest! {
        #[test]
        fn any_text_is_handled(text in "\\PC*") {
            let _ = find_object(&text);
        }

        #[test]
        fn json_like_text_is_handled(text in "[{}\\[\\]\"':,a-z0-9 \\\\\n.eE+-]{0,64}") {
            let _ = find_object(&text);
        }
    }
}
