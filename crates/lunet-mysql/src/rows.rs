//! Column types to Lua values, and reading text-protocol result sets.
//!
//! Integers (all widths, YEAR, BOOLEAN as 0/1) become numbers — BIGINT
//! UNSIGNED above 2^63-1 as the nearest double —, FLOAT and DOUBLE become
//! numbers, NULL an absent key, and everything else (DECIMAL, dates and
//! times, JSON, BIT, text, blobs, ...) a string with every byte, exactly as
//! the server wrote it.

use lunet_db::{Rows, Value};
use mysqlclient_sys as my;
use my::enum_field_types as ty;

use crate::conn::{conn_fail, Fail};

const UNSIGNED_FLAG: u32 = 32;

/// How a column's values are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Signed,
    Unsigned,
    /// FLOAT: a number parsed from the server's text form of the value (in
    /// both protocols, so a FLOAT reads the same with and without parameters).
    Float,
    Double,
    Bytes,
}

pub(crate) fn kind_of(f: &my::MYSQL_FIELD) -> Kind {
    match f.type_ {
        ty::MYSQL_TYPE_TINY
        | ty::MYSQL_TYPE_SHORT
        | ty::MYSQL_TYPE_LONG
        | ty::MYSQL_TYPE_INT24
        | ty::MYSQL_TYPE_LONGLONG
        | ty::MYSQL_TYPE_YEAR => {
            if f.flags & UNSIGNED_FLAG != 0 {
                Kind::Unsigned
            } else {
                Kind::Signed
            }
        }
        ty::MYSQL_TYPE_FLOAT => Kind::Float,
        ty::MYSQL_TYPE_DOUBLE => Kind::Double,
        _ => Kind::Bytes,
    }
}

/// The column's name, every byte of it.
pub(crate) unsafe fn field_name(f: &my::MYSQL_FIELD) -> Vec<u8> {
    if f.name.is_null() {
        return Vec::new();
    }
    std::slice::from_raw_parts(f.name.cast::<u8>(), f.name_length as usize).to_vec()
}

pub(crate) fn unsigned_value(u: u64) -> Value {
    if u <= i64::MAX as u64 {
        Value::Int(u as i64)
    } else {
        Value::Float(u as f64)
    }
}

/// A value from its text form (text protocol, or a FLOAT in either).
pub(crate) fn text_value(kind: Kind, b: &[u8]) -> Value {
    let s = std::str::from_utf8(b).ok();
    let parsed = match kind {
        Kind::Signed => s.and_then(|s| s.parse::<i64>().ok()).map(Value::Int),
        Kind::Unsigned => s.and_then(|s| s.parse::<u64>().ok()).map(unsigned_value),
        Kind::Float | Kind::Double => s.and_then(|s| s.parse::<f64>().ok()).map(Value::Float),
        Kind::Bytes => None,
    };
    parsed.unwrap_or_else(|| Value::Bytes(b.to_vec()))
}

/// Reads every row of a text-protocol result (from `mysql_use_result`).
pub(crate) unsafe fn read_text_result(m: *mut my::MYSQL, res: *mut my::MYSQL_RES) -> Result<Rows, Fail> {
    let n = my::mysql_num_fields(res) as usize;
    let fields = my::mysql_fetch_fields(res);
    let fields: &[my::MYSQL_FIELD] = if n == 0 || fields.is_null() { &[] } else { std::slice::from_raw_parts(fields, n) };
    let kinds: Vec<Kind> = fields.iter().map(kind_of).collect();
    let mut rows = Rows::new(fields.iter().map(|f| field_name(f)).collect());
    loop {
        let row = my::mysql_fetch_row(res);
        if row.is_null() {
            break;
        }
        let lengths = my::mysql_fetch_lengths(res);
        if lengths.is_null() {
            return Err(Fail::ours("mysql: a row came without its lengths"));
        }
        for (i, kind) in kinds.iter().enumerate() {
            let p = *row.add(i);
            rows.push(if p.is_null() {
                Value::Null
            } else {
                text_value(*kind, std::slice::from_raw_parts(p.cast::<u8>(), *lengths.add(i) as usize))
            });
        }
    }
    // A NULL row is the end or an error (e.g. the statement was killed while
    // its rows streamed): never a silently shortened result.
    if my::mysql_errno(m) != 0 {
        return Err(conn_fail(m));
    }
    Ok(rows)
}

/// Reads and discards the rows of a text-protocol result.
pub(crate) unsafe fn skip_text_result(m: *mut my::MYSQL, res: *mut my::MYSQL_RES) -> Result<(), Fail> {
    while !my::mysql_fetch_row(res).is_null() {}
    if my::mysql_errno(m) != 0 {
        return Err(conn_fail(m));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_values_by_kind() {
        assert_eq!(text_value(Kind::Signed, b"-9007199254740992"), Value::Int(-(1 << 53)));
        assert_eq!(text_value(Kind::Unsigned, b"18446744073709551615"), Value::Float(18446744073709551615.0));
        assert_eq!(text_value(Kind::Unsigned, b"42"), Value::Int(42));
        assert_eq!(text_value(Kind::Float, b"1.23457"), Value::Float(1.23457));
        assert_eq!(text_value(Kind::Double, b"1e300"), Value::Float(1e300));
        assert_eq!(text_value(Kind::Bytes, b"12.50"), Value::Bytes(b"12.50".to_vec()));
        // Anything unparsable stays text rather than being lost.
        assert_eq!(text_value(Kind::Signed, b"x"), Value::Bytes(b"x".to_vec()));
    }
}
