//! The string form of a signature: `"question, context: list[str] -> answer: int"`.
//!
//! Parses field names, optional type expressions and the arrow into [`ParsedSignature`]. Type expressions
//! are kept as syntax trees ([`TypeExpr`]); resolving names to Python types is the Python layer's job. The
//! accepted type syntax is the subset of Python expressions DSPy 3.4.1 understands in signature strings:
//! names, dotted names, subscripts, `|` unions, tuples, constants (strings, numbers, `True`, `False`,
//! `None`, `...`) and `Field(key=value, ...)` calls. Every input gets either a result or a
//! [`SignatureError`] with the character position of the problem; the parser never panics.

use std::fmt;

/// Type expressions nest rarely more than three levels; the bound keeps hostile input off the stack.
pub const MAX_TYPE_DEPTH: usize = 64;

/// Python's hard keywords: never valid as a parameter name, so never a field name.
const KEYWORDS: [&str; 35] = [
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

/// A parsed signature: inputs and outputs in the order written.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedSignature {
    pub inputs: Vec<FieldSpec>,
    pub outputs: Vec<FieldSpec>,
}

impl ParsedSignature {
    /// DSPy's instructions for a signature given none: "Given the fields `a`, `b`, produce the fields `c`."
    pub fn default_instructions(&self) -> String {
        let list = |fields: &[FieldSpec]| {
            fields
                .iter()
                .map(|f| format!("`{}`", f.name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "Given the fields {}, produce the fields {}.",
            list(&self.inputs),
            list(&self.outputs)
        )
    }

    /// Every distinct bare name the type expressions mention (heads of dotted names included), in order.
    pub fn type_names(&self) -> Vec<&str> {
        let mut names = Vec::new();
        for field in self.inputs.iter().chain(self.outputs.iter()) {
            if let Some(ty) = &field.ty {
                ty.expr.collect_names(&mut names);
            }
        }
        names
    }
}

impl TypeExpr {
    fn collect_names<'a>(&'a self, names: &mut Vec<&'a str>) {
        match self {
            TypeExpr::Name { id, .. } if !names.contains(&id.as_str()) => names.push(id),
            TypeExpr::Attribute { value, .. } => value.collect_names(names),
            TypeExpr::Subscript { value, args, .. } => {
                value.collect_names(names);
                args.iter().for_each(|a| a.collect_names(names));
            }
            TypeExpr::Union { left, right } => {
                left.collect_names(names);
                right.collect_names(names);
            }
            TypeExpr::Tuple(items) => items.iter().for_each(|a| a.collect_names(names)),
            TypeExpr::Call { kwargs, .. } => {
                kwargs.iter().for_each(|(_, v)| v.collect_names(names))
            }
            _ => {}
        }
    }
}

/// One field: its name, where the name starts, and its type expression if one was written.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    pub name: String,
    /// Character offset of the name in the signature string.
    pub position: usize,
    pub ty: Option<TypeSpec>,
}

/// A written type: its source text (trimmed) and its syntax tree.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeSpec {
    pub text: String,
    /// Character offset of the type expression in the signature string.
    pub position: usize,
    pub expr: TypeExpr,
}

/// A type expression. Positions are character offsets into the whole signature string.
#[derive(Debug, Clone, PartialEq)]
pub enum TypeExpr {
    /// `int`, `MyModel`.
    Name {
        id: String,
        position: usize,
    },
    /// `typing.List`, `dspy.Image`.
    Attribute {
        value: Box<TypeExpr>,
        attr: String,
        position: usize,
    },
    /// `list[str]`, `dict[str, int]`: the arguments as written, a tuple slice flattened.
    Subscript {
        value: Box<TypeExpr>,
        args: Vec<TypeExpr>,
        position: usize,
    },
    /// `int | None`.
    Union {
        left: Box<TypeExpr>,
        right: Box<TypeExpr>,
    },
    /// A parenthesised tuple `(int, str)` or `()`.
    Tuple(Vec<TypeExpr>),
    /// A string literal, decoded.
    Str(String),
    /// A bytes literal, decoded.
    Bytes(Vec<u8>),
    /// An integer literal as written (Python's `int(text, 0)` reads it).
    Int(String),
    /// A float literal as written (Python's `float(text)` reads it).
    Float(String),
    Bool(bool),
    None,
    Ellipsis,
    /// `Field(gt=0, description="...")`: keyword arguments only, as DSPy accepts.
    Call {
        func: String,
        kwargs: Vec<(String, TypeExpr)>,
        position: usize,
    },
}

/// What went wrong and where (a character offset into the signature string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    MissingArrow,
    ExtraArrow {
        position: usize,
    },
    EmptyName {
        position: usize,
    },
    NotAnIdentifier {
        found: String,
        position: usize,
    },
    ReservedName {
        name: String,
        reason: &'static str,
        position: usize,
    },
    DuplicateName {
        name: String,
        position: usize,
        first: usize,
    },
    Unclosed {
        open: char,
        position: usize,
    },
    UnexpectedClose {
        close: char,
        position: usize,
    },
    MismatchedClose {
        open: char,
        close: char,
        position: usize,
    },
    ExpectedType {
        position: usize,
    },
    Unexpected {
        found: String,
        expected: &'static str,
        position: usize,
    },
    UnterminatedString {
        position: usize,
    },
    Unsupported {
        what: &'static str,
        position: usize,
    },
    TooDeep {
        position: usize,
    },
}

impl SignatureError {
    /// The character offset the error points at; `None` when it concerns the whole string.
    pub fn position(&self) -> Option<usize> {
        use SignatureError::*;
        match self {
            MissingArrow => None,
            ExtraArrow { position }
            | EmptyName { position }
            | NotAnIdentifier { position, .. }
            | ReservedName { position, .. }
            | DuplicateName { position, .. }
            | Unclosed { position, .. }
            | UnexpectedClose { position, .. }
            | MismatchedClose { position, .. }
            | ExpectedType { position }
            | Unexpected { position, .. }
            | UnterminatedString { position }
            | Unsupported { position, .. }
            | TooDeep { position } => Some(*position),
        }
    }
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SignatureError::*;
        match self {
            MissingArrow => write!(
                f,
                "no '->' between inputs and outputs; write the fields as 'inputs -> outputs', e.g. 'question -> answer'"
            ),
            ExtraArrow { .. } => write!(f, "a second '->'; a signature has exactly one arrow between inputs and outputs"),
            EmptyName { .. } => write!(f, "an empty field name; remove the extra comma or name the field"),
            NotAnIdentifier { found, .. } => write!(
                f,
                "{} is not a valid field name; names are Python identifiers such as 'question' or 'top_k'",
                py_repr(found)
            ),
            ReservedName { name, reason, .. } => write!(f, "field name {} is reserved ({reason}); rename the field", py_repr(name)),
            DuplicateName { name, first, .. } => write!(
                f,
                "field name {} is used twice (first at position {first}); every input and output needs its own name",
                py_repr(name)
            ),
            Unclosed { open, .. } => write!(f, "'{open}' is never closed"),
            UnexpectedClose { close, .. } => write!(f, "'{close}' closes nothing"),
            MismatchedClose { open, close, .. } => write!(f, "'{close}' does not match the open '{open}'"),
            ExpectedType { .. } => write!(f, "a ':' with no type after it; write a type such as 'str' or 'list[int]', or drop the ':'"),
            Unexpected { found, expected, .. } => write!(f, "unexpected {found}, expected {expected}"),
            UnterminatedString { .. } => write!(f, "a string literal is never closed"),
            Unsupported { what, .. } => write!(f, "{what} are not supported in signature strings; use a class-based Signature"),
            TooDeep { .. } => write!(f, "the type nests deeper than {MAX_TYPE_DEPTH} levels"),
        }
    }
}

impl std::error::Error for SignatureError {}

/// `text` quoted as Python's `repr` quotes a string: single quotes unless only double quotes avoid escaping.
pub fn py_repr(text: &str) -> String {
    let quote = if text.contains('\'') && !text.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// The full message for an error in `signature`: what went wrong, where, and the line with a caret under
/// the spot. Errors found later by the Python layer (an unknown type name) are worded the same way.
pub fn error_message(signature: &str, what: &str, position: Option<usize>) -> String {
    let Some(position) = position else {
        return format!("Invalid signature {}: {what}.", py_repr(signature));
    };
    // Show the line holding the position, with a caret under the character.
    let mut column = position;
    for (i, line) in signature.split('\n').enumerate() {
        let len = line.chars().count();
        if column <= len {
            let shown: String = line.chars().collect();
            let pad: String = line
                .chars()
                .take(column)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let where_ = if signature.contains('\n') {
                format!("line {}, column {}", i + 1, column + 1)
            } else {
                format!("position {position}")
            };
            return format!(
                "Invalid signature {}: {what} (at {where_}):\n    {shown}\n    {pad}^",
                py_repr(signature)
            );
        }
        column -= len + 1;
    }
    format!(
        "Invalid signature {}: {what} (at position {position}).",
        py_repr(signature)
    )
}

/// Parses a whole signature string.
pub fn parse_signature(text: &str) -> Result<ParsedSignature, SignatureError> {
    let mut p = Parser {
        src: text,
        bytes: text.as_bytes(),
        pos: 0,
        ascii: text.is_ascii(),
    };
    let inputs = p.field_list(true)?;
    let outputs = p.field_list(false)?;
    let mut seen: Vec<(&str, usize)> = Vec::with_capacity(inputs.len() + outputs.len());
    for field in inputs.iter().chain(outputs.iter()) {
        if let Some(&(_, first)) = seen.iter().find(|(n, _)| *n == field.name) {
            return Err(SignatureError::DuplicateName {
                name: field.name.clone(),
                position: field.position,
                first,
            });
        }
        seen.push((&field.name, field.position));
    }
    Ok(ParsedSignature { inputs, outputs })
}

/// DSPy's `infer_prefix` for ASCII names: `"camelCaseText"` -> `"Camel Case Text"`, `"text2number"` ->
/// `"Text 2 Number"`. Returns `None` for non-ASCII names, whose Unicode case rules the caller applies.
pub fn infer_prefix(name: &str) -> Option<String> {
    if !name.is_ascii() {
        return None;
    }
    let b = name.as_bytes();
    // Step 1: `(.)([A-Z][a-z]+)` -> `\1_\2`, scanning left to right without overlap.
    let mut s1: Vec<u8> = Vec::with_capacity(b.len() + 8);
    let mut i = 0;
    while i < b.len() {
        if i + 2 < b.len() && b[i + 1].is_ascii_uppercase() && b[i + 2].is_ascii_lowercase() {
            let mut end = i + 3;
            while end < b.len() && b[end].is_ascii_lowercase() {
                end += 1;
            }
            s1.push(b[i]);
            s1.push(b'_');
            s1.extend_from_slice(&b[i + 1..end]);
            i = end;
        } else {
            s1.push(b[i]);
            i += 1;
        }
    }
    let lower_or_digit = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let s2 = split_pairs(&s1, lower_or_digit, |c| c.is_ascii_uppercase());
    let s3 = split_pairs(&s2, |c| c.is_ascii_alphabetic(), |c| c.is_ascii_digit());
    let s4 = split_pairs(&s3, |c| c.is_ascii_digit(), |c| c.is_ascii_alphabetic());
    let words: Vec<String> = s4
        .split(|&c| c == b'_')
        .map(|w| {
            let has_cased = w.iter().any(u8::is_ascii_alphabetic);
            if has_cased && !w.iter().any(u8::is_ascii_lowercase) {
                String::from_utf8_lossy(w).into_owned()
            } else {
                let mut out = String::with_capacity(w.len());
                for (k, &c) in w.iter().enumerate() {
                    out.push(if k == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c.to_ascii_lowercase()
                    } as char);
                }
                out
            }
        })
        .collect();
    Some(words.join(" "))
}

/// `(first)(second)` -> `\1_\2` for single-character classes, left to right without overlap.
fn split_pairs(b: &[u8], first: impl Fn(u8) -> bool, second: impl Fn(u8) -> bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len() + 4);
    let mut i = 0;
    while i < b.len() {
        if i + 1 < b.len() && first(b[i]) && second(b[i + 1]) {
            out.extend_from_slice(&[b[i], b'_', b[i + 1]]);
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn is_id_start(c: char) -> bool {
    c == '_' || unicode_ident::is_xid_start(c)
}

fn is_id_continue(c: char) -> bool {
    unicode_ident::is_xid_continue(c)
}

fn closer(open: char) -> char {
    match open {
        '(' => ')',
        '[' => ']',
        _ => '}',
    }
}

struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    /// Byte offset of the next unread character.
    pos: usize,
    /// Byte offsets are character offsets.
    ascii: bool,
}

impl<'a> Parser<'a> {
    /// Character offset of a byte offset (errors and spans report characters, as Python indexes strings).
    fn chars_at(&self, byte: usize) -> usize {
        if self.ascii {
            byte
        } else {
            self.src[..byte].chars().count()
        }
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn starts_with(&self, s: &str) -> bool {
        self.src[self.pos..].starts_with(s)
    }

    fn skip_ws(&mut self) {
        while let Some(&c) = self.bytes.get(self.pos) {
            match c {
                b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => self.pos += 1,
                b'\\' if matches!(self.bytes.get(self.pos + 1), Some(b'\n')) => self.pos += 2,
                b'\\' if self.bytes.get(self.pos + 1..self.pos + 3) == Some(b"\r\n") => {
                    self.pos += 3
                }
                _ => break,
            }
        }
    }

    fn describe_here(&self) -> String {
        match self.peek() {
            None => "end of signature".to_owned(),
            Some(_) if self.starts_with("->") => "'->'".to_owned(),
            Some(c) => py_repr(c.encode_utf8(&mut [0; 4])),
        }
    }

    fn unexpected(&self, expected: &'static str) -> SignatureError {
        // A stray closing bracket is the clearer message.
        match self.peek() {
            Some(c @ (')' | ']' | '}')) => SignatureError::UnexpectedClose {
                close: c,
                position: self.chars_at(self.pos),
            },
            _ => SignatureError::Unexpected {
                found: self.describe_here(),
                expected,
                position: self.chars_at(self.pos),
            },
        }
    }

    /// Reads a comma-separated field list up to `->` (inputs) or the end (outputs).
    fn field_list(&mut self, inputs: bool) -> Result<Vec<FieldSpec>, SignatureError> {
        let mut fields = Vec::new();
        loop {
            self.skip_ws();
            if self.at_list_end(inputs)? {
                return Ok(fields);
            }
            if self.peek() == Some(',') {
                return Err(SignatureError::EmptyName {
                    position: self.chars_at(self.pos),
                });
            }
            fields.push(self.field()?);
            self.skip_ws();
            if self.at_list_end(inputs)? {
                return Ok(fields);
            }
            match self.peek() {
                Some(',') => self.pos += 1,
                Some('=') => {
                    return Err(SignatureError::Unsupported {
                        what: "default values",
                        position: self.chars_at(self.pos),
                    })
                }
                _ => {
                    return Err(
                        self.unexpected("',' between fields or '->' between inputs and outputs")
                    )
                }
            }
        }
    }

    /// At the end of a list: consumes the arrow after inputs; rejects a missing or second arrow.
    fn at_list_end(&mut self, inputs: bool) -> Result<bool, SignatureError> {
        if self.starts_with("->") {
            if inputs {
                self.pos += 2;
                return Ok(true);
            }
            return Err(SignatureError::ExtraArrow {
                position: self.chars_at(self.pos),
            });
        }
        if self.pos >= self.bytes.len() {
            if inputs {
                return Err(SignatureError::MissingArrow);
            }
            return Ok(true);
        }
        Ok(false)
    }

    fn field(&mut self) -> Result<FieldSpec, SignatureError> {
        let start = self.pos;
        let position = self.chars_at(start);
        match self.peek() {
            Some('*') => {
                return Err(SignatureError::Unsupported {
                    what: "'*' and '**' parameters",
                    position,
                });
            }
            Some('/') => {
                return Err(SignatureError::Unsupported {
                    what: "'/' markers",
                    position,
                });
            }
            _ => {}
        }
        let name = self.identifier().ok_or_else(|| {
            let found: String = self.src[start..]
                .chars()
                .take_while(|c| {
                    !matches!(c, ',' | ':' | ' ' | '\t' | '\n' | '\r') && !c.is_whitespace()
                })
                .take(40)
                .collect();
            let found = match found.find("->") {
                Some(i) => found[..i].to_owned(),
                None => found,
            };
            if found.is_empty() {
                self.unexpected("a field name")
            } else {
                SignatureError::NotAnIdentifier { found, position }
            }
        })?;
        if KEYWORDS.contains(&name.as_str()) {
            return Err(SignatureError::ReservedName {
                name,
                reason: "a Python keyword",
                position,
            });
        }
        if name.starts_with('_') {
            return Err(SignatureError::ReservedName {
                name,
                reason: "names starting with '_' are private to pydantic models",
                position,
            });
        }
        self.skip_ws();
        let ty = if self.peek() == Some(':') {
            self.pos += 1;
            self.skip_ws();
            let ty_start = self.pos;
            if self.pos >= self.bytes.len()
                || self.starts_with("->")
                || matches!(self.peek(), Some(',' | '='))
            {
                return Err(SignatureError::ExpectedType {
                    position: self.chars_at(self.pos),
                });
            }
            let expr = self.type_expr(0)?;
            let text = self.src[ty_start..self.pos].trim_end().to_owned();
            Some(TypeSpec {
                text,
                position: self.chars_at(ty_start),
                expr,
            })
        } else {
            None
        };
        Ok(FieldSpec { name, position, ty })
    }

    fn identifier(&mut self) -> Option<String> {
        let mut chars = self.src[self.pos..].char_indices();
        let (_, first) = chars.next()?;
        if !is_id_start(first) {
            return None;
        }
        let mut end = self.src.len() - self.pos;
        for (i, c) in chars {
            if !is_id_continue(c) {
                end = i;
                break;
            }
        }
        let id = self.src[self.pos..self.pos + end].to_owned();
        self.pos += end;
        Some(id)
    }

    /// `or_expr := postfix ('|' postfix)*`, left-associative as in Python.
    fn type_expr(&mut self, depth: usize) -> Result<TypeExpr, SignatureError> {
        if depth > MAX_TYPE_DEPTH {
            return Err(SignatureError::TooDeep {
                position: self.chars_at(self.pos),
            });
        }
        let mut left = self.postfix(depth)?;
        loop {
            self.skip_ws();
            if self.peek() != Some('|') {
                return Ok(left);
            }
            self.pos += 1;
            self.skip_ws();
            let right = self.postfix(depth)?;
            left = TypeExpr::Union {
                left: Box::new(left),
                right: Box::new(right),
            };
        }
    }

    fn postfix(&mut self, depth: usize) -> Result<TypeExpr, SignatureError> {
        let mut expr = self.atom(depth)?;
        loop {
            self.skip_ws();
            let at = self.pos;
            match self.peek() {
                Some('.') if !self.starts_with("...") => {
                    self.pos += 1;
                    self.skip_ws();
                    let position = self.chars_at(self.pos);
                    let attr = self
                        .identifier()
                        .ok_or_else(|| self.unexpected("an attribute name after '.'"))?;
                    expr = TypeExpr::Attribute {
                        value: Box::new(expr),
                        attr,
                        position,
                    };
                }
                Some('[') => {
                    let position = self.chars_at(at);
                    self.pos += 1;
                    let (args, tuple) = self.sequence('[', depth)?;
                    if args.is_empty() && !tuple {
                        return Err(SignatureError::ExpectedType {
                            position: position + 1,
                        });
                    }
                    expr = TypeExpr::Subscript {
                        value: Box::new(expr),
                        args,
                        position,
                    };
                }
                Some('(') => {
                    let position = self.chars_at(at);
                    let func = match &expr {
                        TypeExpr::Name { id, .. } if id == "Field" => id.clone(),
                        _ => {
                            return Err(SignatureError::Unsupported {
                                what: "calls other than Field(...)",
                                position,
                            })
                        }
                    };
                    self.pos += 1;
                    let kwargs = self.keyword_args(depth)?;
                    expr = TypeExpr::Call {
                        func,
                        kwargs,
                        position,
                    };
                }
                _ => return Ok(expr),
            }
        }
    }

    /// Reads comma-separated types up to the closer of `open` (already consumed). Returns the items and
    /// whether they form a tuple (a comma was written, or `()`).
    fn sequence(
        &mut self,
        open: char,
        depth: usize,
    ) -> Result<(Vec<TypeExpr>, bool), SignatureError> {
        let open_at = self.pos - 1;
        let close = closer(open);
        let mut items = Vec::new();
        let mut comma = false;
        loop {
            self.skip_ws();
            match self.peek() {
                None => {
                    return Err(SignatureError::Unclosed {
                        open,
                        position: self.chars_at(open_at),
                    })
                }
                Some(c) if c == close => {
                    self.pos += 1;
                    return Ok((items, comma));
                }
                Some(c @ (')' | ']' | '}')) => {
                    return Err(SignatureError::MismatchedClose {
                        open,
                        close: c,
                        position: self.chars_at(self.pos),
                    })
                }
                Some(',') => {
                    return Err(if items.is_empty() {
                        self.unexpected("a type")
                    } else {
                        SignatureError::Unexpected {
                            found: "','".to_owned(),
                            expected: "a type between commas",
                            position: self.chars_at(self.pos),
                        }
                    })
                }
                _ => {}
            }
            if self.starts_with("->") {
                return Err(SignatureError::Unclosed {
                    open,
                    position: self.chars_at(open_at),
                });
            }
            items.push(self.type_expr(depth + 1)?);
            self.skip_ws();
            match self.peek() {
                Some(',') => {
                    comma = true;
                    self.pos += 1;
                }
                Some(c) if c == close => {}
                None => {
                    return Err(SignatureError::Unclosed {
                        open,
                        position: self.chars_at(open_at),
                    })
                }
                Some(c @ (')' | ']' | '}')) => {
                    return Err(SignatureError::MismatchedClose {
                        open,
                        close: c,
                        position: self.chars_at(self.pos),
                    })
                }
                _ if self.starts_with("->") => {
                    return Err(SignatureError::Unclosed {
                        open,
                        position: self.chars_at(open_at),
                    })
                }
                _ => {
                    return Err(self.unexpected(if open == '[' {
                        "',' or ']'"
                    } else {
                        "',' or ')'"
                    }));
                }
            }
        }
    }

    fn keyword_args(&mut self, depth: usize) -> Result<Vec<(String, TypeExpr)>, SignatureError> {
        let open_at = self.pos - 1;
        let mut kwargs = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                None => {
                    return Err(SignatureError::Unclosed {
                        open: '(',
                        position: self.chars_at(open_at),
                    })
                }
                Some(')') => {
                    self.pos += 1;
                    return Ok(kwargs);
                }
                _ => {}
            }
            let key_at = self.pos;
            let key = self
                .identifier()
                .ok_or_else(|| self.unexpected("a keyword argument such as gt=0"))?;
            self.skip_ws();
            if self.peek() != Some('=') || self.starts_with("==") {
                self.pos = key_at;
                return Err(SignatureError::Unsupported {
                    what: "positional arguments to Field(...)",
                    position: self.chars_at(key_at),
                });
            }
            self.pos += 1;
            self.skip_ws();
            kwargs.push((key, self.type_expr(depth + 1)?));
            self.skip_ws();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some(')') => {}
                None => {
                    return Err(SignatureError::Unclosed {
                        open: '(',
                        position: self.chars_at(open_at),
                    })
                }
                _ => return Err(self.unexpected("',' or ')'")),
            }
        }
    }

    fn atom(&mut self, depth: usize) -> Result<TypeExpr, SignatureError> {
        let start = self.pos;
        let position = self.chars_at(start);
        let Some(c) = self.peek() else {
            return Err(SignatureError::ExpectedType { position });
        };
        if self.starts_with("...") {
            self.pos += 3;
            return Ok(TypeExpr::Ellipsis);
        }
        if c == '(' {
            self.pos += 1;
            let (mut items, comma) = self.sequence('(', depth)?;
            if items.len() == 1 && !comma {
                return Ok(items.pop().unwrap_or(TypeExpr::None));
            }
            return Ok(TypeExpr::Tuple(items));
        }
        if c.is_ascii_digit()
            || (c == '.' && self.bytes.get(start + 1).is_some_and(u8::is_ascii_digit))
        {
            return self.number();
        }
        if c == '\'' || c == '"' {
            return self.string(false, false);
        }
        if is_id_start(c) {
            // String prefixes: r, u, b and their combinations (rb, br), any case.
            let rest = &self.src[start..];
            let prefix_len = rest
                .find(['\'', '"'])
                .filter(|&n| n <= 2 && rest[..n].chars().all(|p| p.is_ascii_alphabetic()));
            if let Some(n) = prefix_len {
                let prefix = rest[..n].to_ascii_lowercase();
                let (raw, bytes) = match prefix.as_str() {
                    "r" => (true, false),
                    "u" => (false, false),
                    "b" => (false, true),
                    "rb" | "br" => (true, true),
                    "f" | "rf" | "fr" => {
                        return Err(SignatureError::Unsupported {
                            what: "f-strings",
                            position,
                        })
                    }
                    _ => return Err(self.unexpected("a type")),
                };
                self.pos += n;
                return self.string(raw, bytes);
            }
            let id = self.identifier().unwrap_or_default();
            return Ok(match id.as_str() {
                "True" => TypeExpr::Bool(true),
                "False" => TypeExpr::Bool(false),
                "None" => TypeExpr::None,
                _ if KEYWORDS.contains(&id.as_str()) => {
                    return Err(SignatureError::ReservedName {
                        name: id,
                        reason: "a Python keyword, not a type",
                        position,
                    })
                }
                _ => TypeExpr::Name { id, position },
            });
        }
        if c == ',' || self.starts_with("->") {
            return Err(SignatureError::ExpectedType { position });
        }
        Err(self.unexpected("a type"))
    }

    fn number(&mut self) -> Result<TypeExpr, SignatureError> {
        let start = self.pos;
        let b = self.bytes;
        let mut i = self.pos;
        let mut is_float = false;
        let radix_prefix = b.get(i) == Some(&b'0')
            && matches!(b.get(i + 1), Some(b'x' | b'X' | b'o' | b'O' | b'b' | b'B'));
        if radix_prefix {
            i += 2;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
        } else {
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
                i += 1;
            }
            if b.get(i) == Some(&b'.') && b.get(i + 1) != Some(&b'.') {
                is_float = true;
                i += 1;
                while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
                    i += 1;
                }
            }
            if matches!(b.get(i), Some(b'e' | b'E')) {
                let mut j = i + 1;
                if matches!(b.get(j), Some(b'+' | b'-')) {
                    j += 1;
                }
                if b.get(j).is_some_and(u8::is_ascii_digit) {
                    is_float = true;
                    i = j;
                    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
                        i += 1;
                    }
                }
            }
        }
        if b.get(i)
            .is_some_and(|&c| c.is_ascii_alphanumeric() || c == b'_')
        {
            return Err(SignatureError::Unexpected {
                found: format!("{:?}", self.src[i..].chars().next().unwrap_or(' ')),
                expected: "a number",
                position: self.chars_at(i),
            });
        }
        let text = self.src[start..i].to_owned();
        if !is_float
            && !radix_prefix
            && text.starts_with('0')
            && text.bytes().any(|c| matches!(c, b'1'..=b'9'))
        {
            return Err(SignatureError::Unexpected {
                found: py_repr(&text),
                expected: "a decimal integer without leading zeros (write 0o17 for octal)",
                position: self.chars_at(start),
            });
        }
        self.pos = i;
        Ok(if is_float {
            TypeExpr::Float(text)
        } else {
            TypeExpr::Int(text)
        })
    }

    /// Reads a string literal at the opening quote (any prefix already consumed).
    fn string(&mut self, raw: bool, bytes: bool) -> Result<TypeExpr, SignatureError> {
        let start = self.pos;
        let position = self.chars_at(start);
        let quote = self.bytes[start];
        let triple = self.bytes.get(start..start + 3) == Some(&[quote, quote, quote][..]);
        self.pos += if triple { 3 } else { 1 };
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(SignatureError::UnterminatedString { position });
            };
            if c as u32 == quote as u32 {
                if !triple {
                    self.pos += 1;
                    break;
                }
                if self.bytes.get(self.pos..self.pos + 3) == Some(&[quote, quote, quote][..]) {
                    self.pos += 3;
                    break;
                }
            }
            if (c == '\n' || c == '\r') && !triple {
                return Err(SignatureError::UnterminatedString { position });
            }
            if bytes && !c.is_ascii() {
                return Err(SignatureError::Unexpected {
                    found: py_repr(c.encode_utf8(&mut [0; 4])),
                    expected: "ASCII characters in a bytes literal",
                    position: self.chars_at(self.pos),
                });
            }
            self.pos += c.len_utf8();
            if c != '\\' {
                out.push(c);
                continue;
            }
            let Some(e) = self.peek() else {
                return Err(SignatureError::UnterminatedString { position });
            };
            if raw {
                // Raw strings keep the backslash and the escaped character (which cannot end the string).
                out.push('\\');
                out.push(e);
                self.pos += e.len_utf8();
                continue;
            }
            self.pos += e.len_utf8();
            match e {
                '\n' => {}
                '\\' => out.push('\\'),
                '\'' => out.push('\''),
                '"' => out.push('"'),
                'a' => out.push('\x07'),
                'b' => out.push('\x08'),
                'f' => out.push('\x0c'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'v' => out.push('\x0b'),
                '0'..='7' => {
                    let mut value = e.to_digit(8).unwrap_or(0);
                    for _ in 0..2 {
                        match self.peek().and_then(|d| d.to_digit(8)) {
                            Some(d) => {
                                value = value * 8 + d;
                                self.pos += 1;
                            }
                            None => break,
                        }
                    }
                    out.push(char::from_u32(value).unwrap_or('\u{fffd}'));
                }
                'x' | 'u' | 'U' if !(bytes && e != 'x') => {
                    let n = match e {
                        'x' => 2,
                        'u' => 4,
                        _ => 8,
                    };
                    let hex = self
                        .src
                        .get(self.pos..self.pos + n)
                        .filter(|h| h.bytes().all(|d| d.is_ascii_hexdigit()));
                    let value = hex
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .and_then(char::from_u32);
                    match value {
                        Some(ch) => {
                            out.push(ch);
                            self.pos += n;
                        }
                        None => {
                            return Err(SignatureError::Unexpected {
                                found: format!("'\\{e}' escape"),
                                expected: "a complete hexadecimal escape",
                                position: self.chars_at(self.pos - 2),
                            })
                        }
                    }
                }
                'N' if !bytes => {
                    return Err(SignatureError::Unsupported {
                        what: "named Unicode escapes (\\N{...})",
                        position: self.chars_at(self.pos - 2),
                    })
                }
                other => {
                    // Python keeps unknown escapes as written.
                    out.push('\\');
                    out.push(other);
                }
            }
        }
        if bytes {
            // Only ASCII and \x escapes (< 256) reach here; each char is one byte.
            return Ok(TypeExpr::Bytes(
                out.chars().map(|c| c as u32 as u8).collect(),
            ));
        }
        Ok(TypeExpr::Str(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(fields: &[FieldSpec]) -> Vec<&str> {
        fields.iter().map(|f| f.name.as_str()).collect()
    }

    fn ty(sig: &str, index: usize) -> TypeExpr {
        let parsed = parse_signature(sig).unwrap();
        let all: Vec<_> = parsed.inputs.into_iter().chain(parsed.outputs).collect();
        all[index].ty.clone().unwrap().expr
    }

    fn name(id: &str, position: usize) -> TypeExpr {
        TypeExpr::Name {
            id: id.to_owned(),
            position,
        }
    }

    #[test]
    fn splits_inputs_and_outputs_in_order() {
        let p = parse_signature("question, context: list[str] -> answer: int, confidence: float")
            .unwrap();
        assert_eq!(names(&p.inputs), ["question", "context"]);
        assert_eq!(names(&p.outputs), ["answer", "confidence"]);
        assert!(p.inputs[0].ty.is_none());
        assert_eq!(p.inputs[1].ty.as_ref().unwrap().text, "list[str]");
        assert_eq!(p.inputs[1].position, 10);
        assert_eq!(p.outputs[1].ty.as_ref().unwrap().text, "float");
    }

    #[test]
    fn default_instructions_name_the_fields() {
        let p = parse_signature("question, context -> answer").unwrap();
        assert_eq!(
            p.default_instructions(),
            "Given the fields `question`, `context`, produce the fields `answer`."
        );
        assert_eq!(
            parse_signature(" -> ").unwrap().default_instructions(),
            "Given the fields , produce the fields ."
        );
    }

    #[test]
    fn type_names_are_listed_once_in_order() {
        let p = parse_signature("a: dict[str, Foo], b: Foo | mod.Bar -> c: Field(gt=Baz)").unwrap();
        assert_eq!(p.type_names(), ["dict", "str", "Foo", "mod", "Baz"]);
    }

    #[test]
    fn accepts_what_python_parameter_lists_accept() {
        assert_eq!(names(&parse_signature("a, -> b").unwrap().inputs), ["a"]);
        assert!(parse_signature("-> b").unwrap().inputs.is_empty());
        assert!(parse_signature(" -> ").unwrap().outputs.is_empty());
        assert_eq!(
            names(
                &parse_signature("question,\n  context -> answer")
                    .unwrap()
                    .inputs
            ),
            ["question", "context"]
        );
        assert_eq!(
            names(&parse_signature("café -> b").unwrap().inputs),
            ["café"]
        );
        assert_eq!(
            names(&parse_signature("a:int->b:float").unwrap().outputs),
            ["b"]
        );
    }

    #[test]
    fn type_syntax_trees() {
        assert_eq!(
            ty("a: dict[str, list[int]] -> b", 0),
            TypeExpr::Subscript {
                value: Box::new(name("dict", 3)),
                args: vec![
                    name("str", 8),
                    TypeExpr::Subscript {
                        value: Box::new(name("list", 13)),
                        args: vec![name("int", 18)],
                        position: 17
                    }
                ],
                position: 7,
            }
        );
        assert_eq!(
            ty("a: int | str | None -> b", 0),
            TypeExpr::Union {
                left: Box::new(TypeExpr::Union {
                    left: Box::new(name("int", 3)),
                    right: Box::new(name("str", 9))
                }),
                right: Box::new(TypeExpr::None),
            }
        );
        assert_eq!(
            ty("a: typing.List[int] -> b", 0),
            TypeExpr::Subscript {
                value: Box::new(TypeExpr::Attribute {
                    value: Box::new(name("typing", 3)),
                    attr: "List".into(),
                    position: 10
                }),
                args: vec![name("int", 15)],
                position: 14,
            }
        );
        assert_eq!(
            ty(
                r#"a: Literal['x', "y\n", 1, 2.5, True, None, b'z'] -> b"#,
                0
            ),
            TypeExpr::Subscript {
                value: Box::new(name("Literal", 3)),
                args: vec![
                    TypeExpr::Str("x".into()),
                    TypeExpr::Str("y\n".into()),
                    TypeExpr::Int("1".into()),
                    TypeExpr::Float("2.5".into()),
                    TypeExpr::Bool(true),
                    TypeExpr::None,
                    TypeExpr::Bytes(b"z".to_vec()),
                ],
                position: 10,
            }
        );
        assert_eq!(
            ty("a: tuple[int, ...] -> b", 0),
            TypeExpr::Subscript {
                value: Box::new(name("tuple", 3)),
                args: vec![name("int", 9), TypeExpr::Ellipsis],
                position: 8
            }
        );
        assert_eq!(ty("a: (int) -> b", 0), name("int", 4));
        assert_eq!(
            ty("a: list[()] -> b", 0),
            TypeExpr::Subscript {
                value: Box::new(name("list", 3)),
                args: vec![TypeExpr::Tuple(vec![])],
                position: 7
            }
        );
        assert_eq!(
            ty("a: Annotated[int, Field(gt=0)] -> b", 0),
            TypeExpr::Subscript {
                value: Box::new(name("Annotated", 3)),
                args: vec![
                    name("int", 13),
                    TypeExpr::Call {
                        func: "Field".into(),
                        kwargs: vec![("gt".into(), TypeExpr::Int("0".into()))],
                        position: 23
                    }
                ],
                position: 12,
            }
        );
    }

    #[test]
    fn arrows_inside_strings_are_not_arrows() {
        assert_eq!(
            ty("a: Literal['x->y'] -> b", 0),
            TypeExpr::Subscript {
                value: Box::new(name("Literal", 3)),
                args: vec![TypeExpr::Str("x->y".into())],
                position: 10,
            }
        );
    }

    fn err(sig: &str) -> SignatureError {
        parse_signature(sig).unwrap_err()
    }

    #[test]
    fn errors_say_what_and_where() {
        assert_eq!(
            err("question answer"),
            SignatureError::Unexpected {
                found: "'a'".into(),
                expected: "',' between fields or '->' between inputs and outputs",
                position: 9
            }
        );
        assert_eq!(err("question"), SignatureError::MissingArrow);
        assert_eq!(
            err("a -> b -> c"),
            SignatureError::ExtraArrow { position: 7 }
        );
        assert_eq!(
            err("a, , b -> c"),
            SignatureError::EmptyName { position: 3 }
        );
        assert_eq!(err(", a -> c"), SignatureError::EmptyName { position: 0 });
        assert_eq!(
            err("a, b -> a"),
            SignatureError::DuplicateName {
                name: "a".into(),
                position: 8,
                first: 0
            }
        );
        assert_eq!(
            err("a, a -> b"),
            SignatureError::DuplicateName {
                name: "a".into(),
                position: 3,
                first: 0
            }
        );
        assert_eq!(
            err("1a -> b"),
            SignatureError::NotAnIdentifier {
                found: "1a".into(),
                position: 0
            }
        );
        assert_eq!(
            err("a-b -> c"),
            SignatureError::Unexpected {
                found: "'-'".into(),
                expected: "',' between fields or '->' between inputs and outputs",
                position: 1
            }
        );
        assert!(matches!(
            err("class -> b"),
            SignatureError::ReservedName { position: 0, .. }
        ));
        assert!(matches!(
            err("a -> _b"),
            SignatureError::ReservedName { position: 5, .. }
        ));
        assert_eq!(
            err("a: list[int -> b"),
            SignatureError::Unclosed {
                open: '[',
                position: 7
            }
        );
        assert_eq!(
            err("a: list[int)] -> b"),
            SignatureError::MismatchedClose {
                open: '[',
                close: ')',
                position: 11
            }
        );
        assert_eq!(
            err("a: int] -> b"),
            SignatureError::UnexpectedClose {
                close: ']',
                position: 6
            }
        );
        assert_eq!(err("a: -> b"), SignatureError::ExpectedType { position: 3 });
        assert_eq!(
            err("a: list[] -> b"),
            SignatureError::ExpectedType { position: 8 }
        );
        assert_eq!(
            err("a: Literal['x] -> b"),
            SignatureError::UnterminatedString { position: 11 }
        );
        assert!(matches!(
            err("a=1 -> b"),
            SignatureError::Unsupported { position: 1, .. }
        ));
        assert!(matches!(
            err("a, *, b -> c"),
            SignatureError::Unsupported { position: 3, .. }
        ));
        assert_eq!(
            err("é: int, ü -> ü"),
            SignatureError::DuplicateName {
                name: "ü".into(),
                position: 13,
                first: 8
            }
        );
    }

    #[test]
    fn messages_read_as_instructions() {
        assert!(err("question").to_string().contains("'inputs -> outputs'"));
        assert!(err("a, , b -> c").to_string().contains("empty field name"));
        assert!(err("a: list[int -> b")
            .to_string()
            .contains("'[' is never closed"));
    }

    #[test]
    fn prefixes_match_dspy_examples() {
        assert_eq!(
            infer_prefix("camelCaseText").as_deref(),
            Some("Camel Case Text")
        );
        assert_eq!(
            infer_prefix("snake_case_text").as_deref(),
            Some("Snake Case Text")
        );
        assert_eq!(
            infer_prefix("text2number").as_deref(),
            Some("Text 2 Number")
        );
        assert_eq!(infer_prefix("HTMLParser").as_deref(), Some("HTML Parser"));
        assert_eq!(infer_prefix("question").as_deref(), Some("Question"));
        assert_eq!(infer_prefix("a__b").as_deref(), Some("A  B"));
        assert_eq!(infer_prefix("café"), None);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let sig = format!(
            "a: {}int{} -> b",
            "list[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert!(matches!(err(&sig), SignatureError::TooDeep { .. }));
        let sig = format!("a: {}int -> b", "(".repeat(10_000));
        assert!(matches!(err(&sig), SignatureError::TooDeep { .. }));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// Positions differ with whitespace; the round trip compares structure.
    fn strip(expr: &TypeExpr) -> TypeExpr {
        match expr {
            TypeExpr::Name { id, .. } => TypeExpr::Name {
                id: id.clone(),
                position: 0,
            },
            TypeExpr::Attribute { value, attr, .. } => TypeExpr::Attribute {
                value: Box::new(strip(value)),
                attr: attr.clone(),
                position: 0,
            },
            TypeExpr::Subscript { value, args, .. } => TypeExpr::Subscript {
                value: Box::new(strip(value)),
                args: args.iter().map(strip).collect(),
                position: 0,
            },
            TypeExpr::Union { left, right } => TypeExpr::Union {
                left: Box::new(strip(left)),
                right: Box::new(strip(right)),
            },
            TypeExpr::Tuple(items) => TypeExpr::Tuple(items.iter().map(strip).collect()),
            TypeExpr::Call { func, kwargs, .. } => TypeExpr::Call {
                func: func.clone(),
                kwargs: kwargs.iter().map(|(k, v)| (k.clone(), strip(v))).collect(),
                position: 0,
            },
            other => other.clone(),
        }
    }

    /// Python source for a type expression; `ws` is put around punctuation.
    fn render(expr: &TypeExpr, ws: &str) -> String {
        match expr {
            TypeExpr::Name { id, .. } => id.clone(),
            TypeExpr::Attribute { value, attr, .. } => format!("{}.{attr}", render(value, ws)),
            TypeExpr::Subscript { value, args, .. } => {
                let args: Vec<String> = args.iter().map(|a| render(a, ws)).collect();
                format!(
                    "{}[{ws}{}{ws}]",
                    render(value, ws),
                    args.join(&format!(",{ws}"))
                )
            }
            TypeExpr::Union { left, right } => {
                let right = match **right {
                    // `a | (b | c)` needs its parentheses to stay right-nested.
                    TypeExpr::Union { .. } => format!("({})", render(right, ws)),
                    _ => render(right, ws),
                };
                format!("{}{ws}|{ws}{right}", render(left, ws))
            }
            TypeExpr::Tuple(items) => match items.len() {
                1 => format!("({},)", render(&items[0], ws)),
                _ => format!(
                    "({})",
                    items
                        .iter()
                        .map(|a| render(a, ws))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
            TypeExpr::Str(s) => py_repr(s),
            TypeExpr::Bytes(b) => format!("b{}", py_repr(&String::from_utf8_lossy(b))),
            TypeExpr::Int(t) | TypeExpr::Float(t) => t.clone(),
            TypeExpr::Bool(true) => "True".into(),
            TypeExpr::Bool(false) => "False".into(),
            TypeExpr::None => "None".into(),
            TypeExpr::Ellipsis => "...".into(),
            TypeExpr::Call { func, kwargs, .. } => {
                let kwargs: Vec<String> = kwargs
                    .iter()
                    .map(|(k, v)| format!("{k}={}", render(v, ws)))
                    .collect();
                format!("{func}({})", kwargs.join(", "))
            }
        }
    }

    fn identifier() -> impl Strategy<Value = String> {
        "[a-zA-Zé][a-zA-Z0-9_é]{0,8}"
            .prop_filter("not a keyword", |s| !KEYWORDS.contains(&s.as_str()))
    }

    fn type_name() -> impl Strategy<Value = String> {
        identifier().prop_filter("not a constant", |s| {
            !matches!(s.as_str(), "True" | "False" | "None")
        })
    }

    fn leaf() -> impl Strategy<Value = TypeExpr> {
        prop_oneof![
            4 => type_name().prop_map(|id| TypeExpr::Name { id, position: 0 }),
            1 => "[ -~é\n\t\\\\'\"]{0,6}".prop_map(TypeExpr::Str),
            1 => "[1-9][0-9]{0,4}|0".prop_map(TypeExpr::Int),
            1 => "[0-9]{1,3}\\.[0-9]{0,3}".prop_map(TypeExpr::Float),
            1 => any::<bool>().prop_map(TypeExpr::Bool),
            1 => Just(TypeExpr::None),
            1 => Just(TypeExpr::Ellipsis),
        ]
    }

    fn type_expr() -> impl Strategy<Value = TypeExpr> {
        leaf().prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                (type_name(), proptest::collection::vec(inner.clone(), 1..4))
                    .prop_map(|(id, args)| {
                        // A single tuple argument is flattened by the parser, as Python does.
                        TypeExpr::Subscript {
                            value: Box::new(TypeExpr::Name { id, position: 0 }),
                            args: args
                                .into_iter()
                                .filter(|a| !matches!(a, TypeExpr::Tuple(_)))
                                .collect(),
                            position: 0,
                        }
                    })
                    .prop_filter("subscripts need an argument", |e| match e {
                        TypeExpr::Subscript { args, .. } => !args.is_empty(),
                        _ => true,
                    }),
                (inner.clone(), inner.clone()).prop_map(|(l, r)| TypeExpr::Union {
                    left: Box::new(l),
                    right: Box::new(r)
                }),
                (type_name(), identifier()).prop_map(|(m, attr)| TypeExpr::Attribute {
                    value: Box::new(TypeExpr::Name { id: m, position: 0 }),
                    attr,
                    position: 0,
                }),
                proptest::collection::vec(inner.clone(), 0..3).prop_map(TypeExpr::Tuple),
                proptest::collection::vec((identifier(), inner), 0..3).prop_map(|kwargs| {
                    TypeExpr::Call {
                        func: "Field".into(),
                        kwargs,
                        position: 0,
                    }
                }),
            ]
        })
    }

    fn fields() -> impl Strategy<Value = Vec<(String, Option<TypeExpr>)>> {
        proptest::collection::vec((identifier(), proptest::option::of(type_expr())), 0..4)
    }

    proptest! {
        #[test]
        fn generated_signatures_round_trip(
            inputs in fields(),
            outputs in fields(),
            ws in prop_oneof![Just(""), Just(" "), Just("\n  "), Just("\t")],
        ) {
            // Names must be distinct across the signature.
            let mut seen = std::collections::HashSet::new();
            let unique = |f: &Vec<(String, Option<TypeExpr>)>| -> Vec<(String, Option<TypeExpr>)> {
                f.iter().filter(|(n, _)| seen.insert(n.clone())).cloned().collect()
            };
            let mut unique = unique;
            let inputs = unique(&inputs);
            let outputs = unique(&outputs);
            let side = |fields: &[(String, Option<TypeExpr>)]| {
                fields
                    .iter()
                    .map(|(n, t)| match t {
                        Some(t) => format!("{n}{ws}:{ws}{}", render(t, ws)),
                        None => n.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join(&format!("{ws},{ws}"))
            };
            let text = format!("{ws}{}{ws}->{ws}{}{ws}", side(&inputs), side(&outputs));
            let parsed = parse_signature(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
            for (spec, (name, ty)) in parsed.inputs.iter().chain(parsed.outputs.iter()).zip(inputs.iter().chain(outputs.iter())) {
                prop_assert_eq!(&spec.name, name);
                let at: String = text.chars().skip(spec.position).take(name.chars().count()).collect();
                prop_assert_eq!(&at, name);
                prop_assert_eq!(spec.ty.as_ref().map(|t| strip(&t.expr)), ty.as_ref().map(strip));
            }
            prop_assert_eq!(parsed.inputs.len(), inputs.len());
            prop_assert_eq!(parsed.outputs.len(), outputs.len());
        }

        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            if let Err(e) = parse_signature(&text) {
                let _ = error_message(&text, &e.to_string(), e.position());
                prop_assert!(e.position().is_none_or(|p| p <= text.chars().count()));
            }
        }

        #[test]
        fn signature_like_text_never_panics(text in "[a-z_é0-9 ,:>\\-\\[\\]()|.'\"\\\\*=\n]{0,60}") {
            if let Err(e) = parse_signature(&text) {
                let _ = error_message(&text, &e.to_string(), e.position());
                prop_assert!(e.position().is_none_or(|p| p <= text.chars().count()));
            }
        }
    }
}
