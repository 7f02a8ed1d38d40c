//! Bound parameters: how many `$n` placeholders a statement has, which type
//! each Lua value is declared as, and the bytes sent for it.
//!
//! The rules, decided once here:
//! - `nil` is NULL with no declared type (the server infers it);
//! - booleans are `bool`, integers `int8`, other numbers `float8`, all three
//!   sent in binary (exact: no decimal conversion at all);
//! - strings are declared with no type, so the server infers it from the
//!   statement (`text` for a bare `$1`, the column's type in `col = $1`, ...).
//!   When the server reports the parameter as `bytea`, the string is sent in
//!   binary: every byte, NULs included. Otherwise it is sent as text, and a
//!   string containing a NUL byte is refused (PostgreSQL text cannot hold NUL).

use std::ffi::{c_char, c_int};

use lunet_db::Param;
use pq_sys::Oid;

pub const BOOL: Oid = 16;
pub const BYTEA: Oid = 17;
pub const INT8: Oid = 20;
pub const INT2: Oid = 21;
pub const INT4: Oid = 23;
pub const TEXT: Oid = 25;
pub const FLOAT4: Oid = 700;
pub const FLOAT8: Oid = 701;
pub const VARCHAR: Oid = 1043;
pub const NUMERIC: Oid = 1700;

/// The most parameters the protocol can carry (a 16-bit count).
pub const MAX_PARAMS: usize = 65535;

/// The type a parameter is declared with when the statement is prepared
/// (0: unspecified, the server infers it).
pub fn declared_type(p: &Param) -> Oid {
    match p {
        Param::Null | Param::Bytes(_) => 0,
        Param::Bool(_) => BOOL,
        Param::Int(_) => INT8,
        Param::Float(_) => FLOAT8,
    }
}

/// The values of one call, laid out the way `PQexecPrepared` takes them.
/// Pointers refer into `self` (or into the caller's parameters), so keep
/// both alive while the arrays are in use.
pub struct Encoded {
    /// Binary scalars and NUL-terminated copies of text values.
    storage: Vec<Vec<u8>>,
    pub values: Vec<*const c_char>,
    pub lengths: Vec<c_int>,
    pub formats: Vec<c_int>,
}

/// Encodes `params` for a statement whose parameter types the server
/// reported as `types` (None: not asked, because no string is bound).
pub fn encode(params: &[Param], types: Option<&[Oid]>) -> Result<Encoded, String> {
    let n = params.len();
    let mut e = Encoded {
        storage: Vec::with_capacity(n),
        values: Vec::with_capacity(n),
        lengths: Vec::with_capacity(n),
        formats: Vec::with_capacity(n),
    };
    // First pass: everything that needs storage of its own; remember where.
    enum Src {
        Null,
        Storage(usize, bool),
        Borrowed(usize),
    }
    let mut srcs = Vec::with_capacity(n);
    for (i, p) in params.iter().enumerate() {
        let src = match p {
            Param::Null => Src::Null,
            Param::Bool(b) => {
                e.storage.push(vec![*b as u8]);
                Src::Storage(e.storage.len() - 1, true)
            }
            Param::Int(v) => {
                e.storage.push(v.to_be_bytes().to_vec());
                Src::Storage(e.storage.len() - 1, true)
            }
            Param::Float(v) => {
                e.storage.push(v.to_bits().to_be_bytes().to_vec());
                Src::Storage(e.storage.len() - 1, true)
            }
            Param::Bytes(b) => {
                let ty = types.and_then(|t| t.get(i)).copied().unwrap_or(0);
                if ty != BYTEA && b.contains(&0) {
                    return Err(format!(
                        "parameter ${n} contains a NUL byte, which PostgreSQL text cannot hold \
                         (bind binary data to a bytea parameter, e.g. ${n}::bytea)",
                        n = i + 1
                    ));
                }
                if b.len() > i32::MAX as usize {
                    return Err(format!("parameter ${} is larger than PostgreSQL accepts (2 GiB)", i + 1));
                }
                if matches!(ty, BYTEA | TEXT | VARCHAR) {
                    // The binary form of these types is the bytes themselves.
                    Src::Borrowed(i)
                } else {
                    let mut t = Vec::with_capacity(b.len() + 1);
                    t.extend_from_slice(b);
                    t.push(0);
                    e.storage.push(t);
                    Src::Storage(e.storage.len() - 1, false)
                }
            }
        };
        srcs.push(src);
    }
    for src in srcs {
        let (ptr, len, binary) = match src {
            Src::Null => (std::ptr::null(), 0, false),
            Src::Storage(k, binary) => {
                let s = &e.storage[k];
                (s.as_ptr(), s.len(), binary)
            }
            Src::Borrowed(i) => match &params[i] {
                // An empty slice's pointer is dangling but never read (length 0).
                Param::Bytes(b) => (b.as_ptr(), b.len(), true),
                _ => unreachable!("only strings are borrowed"),
            },
        };
        e.values.push(ptr.cast());
        e.lengths.push(len as c_int);
        e.formats.push(binary as c_int);
    }
    Ok(e)
}

/// The number of parameters `sql` refers to: the highest `$n` outside string
/// literals, quoted identifiers, dollar-quoted strings and comments (the
/// lexical rules of PostgreSQL with `standard_conforming_strings` on).
pub fn count_placeholders(sql: &[u8]) -> usize {
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80;
    let mut max = 0usize;
    let mut i = 0;
    let n = sql.len();
    while i < n {
        let c = sql[i];
        let after_ident = i > 0 && ident(sql[i - 1]);
        match c {
            b'-' if sql.get(i + 1) == Some(&b'-') => {
                while i < n && sql[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if sql.get(i + 1) == Some(&b'*') => {
                let mut depth = 0usize;
                while i < n {
                    if sql[i] == b'/' && sql.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if sql[i] == b'*' && sql.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            b'\'' => {
                // E'...' (escape string): backslashes escape the next byte.
                let escapes = i > 0
                    && matches!(sql[i - 1], b'e' | b'E')
                    && !(i > 1 && ident(sql[i - 2]));
                i += 1;
                while i < n {
                    match sql[i] {
                        b'\\' if escapes => i += 2,
                        b'\'' if sql.get(i + 1) == Some(&b'\'') => i += 2,
                        b'\'' => break,
                        _ => i += 1,
                    }
                }
            }
            b'"' => {
                i += 1;
                while i < n {
                    if sql[i] == b'"' {
                        if sql.get(i + 1) == Some(&b'"') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
            }
            b'$' if !after_ident => {
                let start = i + 1;
                let mut j = start;
                if sql.get(j).is_some_and(|d| d.is_ascii_digit()) {
                    let mut v = 0usize;
                    while j < n && sql[j].is_ascii_digit() {
                        v = v.saturating_mul(10).saturating_add((sql[j] - b'0') as usize);
                        j += 1;
                    }
                    max = max.max(v);
                    i = j;
                    continue;
                }
                // A dollar-quote opener: $$ or $tag$ (tag: an identifier without `$`).
                while j < n && (sql[j].is_ascii_alphanumeric() || sql[j] == b'_' || sql[j] >= 0x80) {
                    j += 1;
                }
                if sql.get(j) == Some(&b'$') {
                    let tag = &sql[i..=j];
                    let body = j + 1;
                    match find(&sql[body..], tag) {
                        Some(end) => i = body + end + tag.len(),
                        None => i = n,
                    }
                    continue;
                }
                i += 1;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    max
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_highest_placeholder() {
        assert_eq!(count_placeholders(b"SELECT 1"), 0);
        assert_eq!(count_placeholders(b"SELECT $1, $2"), 2);
        assert_eq!(count_placeholders(b"SELECT $3"), 3);
        assert_eq!(count_placeholders(b"SELECT $1 + $1"), 1);
        assert_eq!(count_placeholders(b"SELECT $10::int"), 10);
        assert_eq!(count_placeholders(b"INSERT INTO t VALUES($1,$2)"), 2);
    }

    #[test]
    fn ignores_dollars_in_literals_identifiers_and_comments() {
        assert_eq!(count_placeholders(b"SELECT '$1', $2"), 2);
        assert_eq!(count_placeholders(b"SELECT 'it''s $5' || $1"), 1);
        assert_eq!(count_placeholders(b"SELECT E'\\' $4' || $1"), 1);
        assert_eq!(count_placeholders(b"SELECT e'\\\\' || $2"), 2);
        // Not an escape string: `tablE` is an identifier.
        assert_eq!(count_placeholders(b"SELECT 1 FROM tablE'x'"), 0);
        assert_eq!(count_placeholders(b"SELECT \"$7\" FROM t WHERE a = $1"), 1);
        assert_eq!(count_placeholders(b"SELECT \"a\"\"$9\" FROM t"), 0);
        assert_eq!(count_placeholders(b"SELECT 1 -- $3\n, $1"), 1);
        assert_eq!(count_placeholders(b"SELECT /* $3 /* $4 */ $5 */ $1"), 1);
        assert_eq!(count_placeholders(b"SELECT $$ $3 $$, $1"), 1);
        assert_eq!(count_placeholders(b"SELECT $fn$ $3 $x$ $fn$ || $2"), 2);
        assert_eq!(count_placeholders(b"SELECT $a$ unterminated $1"), 0);
        assert_eq!(count_placeholders(b"SELECT a$1 FROM t"), 0);
        assert_eq!(count_placeholders(b"SELECT 'unterminated $1"), 0);
        assert_eq!(count_placeholders(b"SELECT $"), 0);
        assert_eq!(count_placeholders("SELECT 'é$1', $1".as_bytes()), 1);
    }

    #[test]
    fn scalars_are_binary_and_strings_follow_the_described_type() {
        let params = [
            Param::Null,
            Param::Bool(true),
            Param::Int(-2),
            Param::Float(0.5),
            Param::Bytes(b"a\0b".to_vec()),
            Param::Bytes(b"42".to_vec()),
            Param::Bytes(b"txt".to_vec()),
        ];
        let types = [0, BOOL, INT8, FLOAT8, BYTEA, INT4, TEXT];
        let e = encode(&params, Some(&types)).unwrap();
        assert!(e.values[0].is_null());
        assert_eq!(e.formats, vec![0, 1, 1, 1, 1, 0, 1]);
        assert_eq!(e.lengths, vec![0, 1, 8, 8, 3, 3, 3]);
        let bytes = |k: usize| unsafe { std::slice::from_raw_parts(e.values[k].cast::<u8>(), e.lengths[k] as usize) };
        assert_eq!(bytes(2), &(-2i64).to_be_bytes());
        assert_eq!(bytes(3), &0.5f64.to_bits().to_be_bytes());
        assert_eq!(bytes(4), b"a\0b");
        assert_eq!(bytes(5), b"42\0");
    }

    #[test]
    fn a_nul_outside_bytea_is_refused() {
        let e = encode(&[Param::Int(1), Param::Bytes(b"a\0".to_vec())], Some(&[INT8, TEXT])).err().unwrap();
        assert!(e.starts_with("parameter $2 contains a NUL byte"), "{e}");
        assert!(encode(&[Param::Bytes(b"\0".to_vec())], None).is_err());
    }
}
