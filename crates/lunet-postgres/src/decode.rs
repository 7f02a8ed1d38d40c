//! Result values: PostgreSQL's text output form, typed by the column's type.
//!
//! - `int2`, `int4`, `int8` → integers (Lua numbers: exact up to 2^53);
//! - `float4`, `float8` → doubles (the server prints the shortest text that
//!   reads back exactly, so nothing is lost);
//! - `numeric` → the nearest double (about 15-17 significant digits; cast to
//!   `text` in SQL to keep every digit);
//! - `bool` → booleans;
//! - `bytea` → the raw bytes (both output formats, `hex` and `escape`);
//! - anything else → its text form, unchanged.

use lunet_db::Value;
use pq_sys::Oid;

use crate::params::{BOOL, BYTEA, FLOAT4, FLOAT8, INT2, INT4, INT8, NUMERIC};

/// How a column's values are read, decided once per column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int,
    Float,
    Bytea,
    Text,
}

pub fn kind_of(oid: Oid) -> Kind {
    match oid {
        BOOL => Kind::Bool,
        INT2 | INT4 | INT8 => Kind::Int,
        FLOAT4 | FLOAT8 | NUMERIC => Kind::Float,
        BYTEA => Kind::Bytea,
        _ => Kind::Text,
    }
}

/// The value of one non-NULL field. Text that does not parse as its
/// column's type (never expected) is returned as text rather than lost.
pub fn decode(kind: Kind, text: &[u8]) -> Value {
    match kind {
        Kind::Bool => match text {
            b"t" => Value::Bool(true),
            b"f" => Value::Bool(false),
            _ => Value::Bytes(text.to_vec()),
        },
        Kind::Int => match std::str::from_utf8(text).ok().and_then(|s| s.parse::<i64>().ok()) {
            Some(n) => Value::Int(n),
            None => Value::Bytes(text.to_vec()),
        },
        Kind::Float => match parse_float(text) {
            Some(f) => Value::Float(f),
            None => Value::Bytes(text.to_vec()),
        },
        Kind::Bytea => match unescape_bytea(text) {
            Some(b) => Value::Bytes(b),
            None => Value::Bytes(text.to_vec()),
        },
        Kind::Text => Value::Bytes(text.to_vec()),
    }
}

/// PostgreSQL's float and numeric output: decimal, or `NaN`, `Infinity`,
/// `-Infinity`.
pub fn parse_float(text: &[u8]) -> Option<f64> {
    match text {
        b"NaN" => Some(f64::NAN),
        b"Infinity" => Some(f64::INFINITY),
        b"-Infinity" => Some(f64::NEG_INFINITY),
        _ => {
            let s = std::str::from_utf8(text).ok()?;
            // Rust would also accept "inf" and "nan"; PostgreSQL never prints them.
            if !s.bytes().all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'+' | b'e' | b'E')) {
                return None;
            }
            s.parse::<f64>().ok()
        }
    }
}

/// Decodes `bytea` output: `\x` followed by hex digits (the default), or the
/// older escape format (`\\` for a backslash, `\ooo` octal, other bytes as is).
pub fn unescape_bytea(text: &[u8]) -> Option<Vec<u8>> {
    if let Some(hex) = text.strip_prefix(b"\\x") {
        if hex.len() % 2 != 0 {
            return None;
        }
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        return hex.chunks_exact(2).map(|p| Some(digit(p[0])? << 4 | digit(p[1])?)).collect();
    }
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] != b'\\' {
            out.push(text[i]);
            i += 1;
        } else if text.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let oct = text.get(i + 1..i + 4)?;
            if !oct.iter().all(|c| (b'0'..=b'7').contains(c)) || oct[0] > b'3' {
                return None;
            }
            out.push((oct[0] - b'0') << 6 | (oct[1] - b'0') << 3 | (oct[2] - b'0'));
            i += 4;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::approx_constant)] // the digits the issue names, not pi
    fn numbers_parse_exactly() {
        assert_eq!(decode(Kind::Int, b"-9223372036854775808"), Value::Int(i64::MIN));
        assert_eq!(decode(Kind::Float, b"3.14159265358979"), Value::Float(3.14159265358979));
        assert_eq!(decode(Kind::Float, b"1234567.5"), Value::Float(1234567.5));
        assert_eq!(decode(Kind::Float, b"1e+300"), Value::Float(1e300));
        assert_eq!(decode(Kind::Float, b"-Infinity"), Value::Float(f64::NEG_INFINITY));
        assert!(matches!(decode(Kind::Float, b"NaN"), Value::Float(f) if f.is_nan()));
        assert_eq!(decode(Kind::Float, b"inf"), Value::Bytes(b"inf".to_vec()));
        assert_eq!(decode(Kind::Bool, b"t"), Value::Bool(true));
        assert_eq!(decode(Kind::Bool, b"f"), Value::Bool(false));
    }

    #[test]
    fn bytea_both_output_formats() {
        assert_eq!(unescape_bytea(b"\\x00ff41"), Some(vec![0, 0xff, b'A']));
        assert_eq!(unescape_bytea(b"\\x"), Some(vec![]));
        assert_eq!(unescape_bytea(b"\\x0"), None);
        assert_eq!(unescape_bytea(b"a\\000b\\\\c\\377"), Some(vec![b'a', 0, b'b', b'\\', b'c', 0xff]));
        assert_eq!(unescape_bytea(b"bad\\9"), None);
        assert_eq!(decode(Kind::Bytea, b"\\x6869"), Value::Bytes(b"hi".to_vec()));
    }

    #[test]
    fn kinds_by_type() {
        assert_eq!(kind_of(INT2), Kind::Int);
        assert_eq!(kind_of(NUMERIC), Kind::Float);
        assert_eq!(kind_of(1114), Kind::Text); // timestamp
    }
}
