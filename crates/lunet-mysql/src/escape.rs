//! `escape(conn, s)` without taking the connection's lock.
//!
//! `mysql_real_escape_string` needs the `MYSQL` handle, which may be busy on
//! a pool thread for as long as a statement runs, and `escape` must not
//! block the loop. What it reads from the handle is only the character set
//! (fixed when connecting) and whether the server runs with
//! `NO_BACKSLASH_ESCAPES` (reported in the status of every reply). Both are
//! kept here, outside the lock — the status updated after every statement —
//! and the same escaping is done with them: the character set's own
//! routines (from the library's charset table) tell where a multibyte
//! character starts and ends, so no byte inside one is ever escaped and no
//! stray lead byte can swallow the quote after it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use mysqlclient_sys as my;

/// A connection's escaping facts.
pub struct EscapeInfo {
    /// The library's description of the connection's character set: static
    /// data inside libmariadb, never freed.
    charset: *const my::MARIADB_CHARSET_INFO,
    /// The server's `NO_BACKSLASH_ESCAPES` state after the last statement.
    pub(crate) no_backslash_escapes: AtomicBool,
}

// SAFETY: `charset` points to immutable static tables of the library.
unsafe impl Send for EscapeInfo {}
unsafe impl Sync for EscapeInfo {}

impl EscapeInfo {
    pub(crate) fn new(charset: *const my::MARIADB_CHARSET_INFO, no_backslash_escapes: AtomicBool) -> Self {
        EscapeInfo { charset, no_backslash_escapes }
    }
}

/// utf8mb4, for `escape(s)` without a connection.
fn default_charset() -> *const my::MARIADB_CHARSET_INFO {
    static CS: OnceLock<usize> = OnceLock::new();
    *CS.get_or_init(|| unsafe { my::mariadb_get_charset_by_name(c"utf8mb4".as_ptr()) as usize })
        as *const my::MARIADB_CHARSET_INFO
}

/// The contents of a quoted literal for `s`: backslash escapes (`\0 \n \r
/// \\ \' \" \Z`) normally, doubled quotes under `NO_BACKSLASH_ESCAPES`;
/// valid multibyte characters of the character set are copied whole.
pub fn escape(info: Option<&EscapeInfo>, s: &[u8]) -> Vec<u8> {
    let (cs, quotes_only) = match info {
        Some(i) if !i.charset.is_null() => (i.charset, i.no_backslash_escapes.load(Ordering::Relaxed)),
        _ => (default_charset(), false),
    };
    // SAFETY: a charset table entry of the library, or null.
    let cs = unsafe { cs.as_ref() };
    let mut out = Vec::with_capacity(s.len() + s.len() / 8 + 2);
    let mut i = 0;
    while i < s.len() {
        if let Some(n) = cs.and_then(|cs| multibyte_at(cs, &s[i..])) {
            out.extend_from_slice(&s[i..i + n]);
            i += n;
            continue;
        }
        let b = s[i];
        i += 1;
        if quotes_only {
            if b == b'\'' {
                out.push(b'\'');
            }
            out.push(b);
            continue;
        }
        let esc = if cs.is_some_and(|cs| lead_byte(cs, b)) {
            // The lead byte of a multibyte character that is not valid here:
            // escaped, so the server does not read the next byte into it.
            Some(b)
        } else {
            match b {
                0 => Some(b'0'),
                b'\n' => Some(b'n'),
                b'\r' => Some(b'r'),
                0x1a => Some(b'Z'),
                b'\\' | b'\'' | b'"' => Some(b),
                _ => None,
            }
        };
        match esc {
            Some(c) => out.extend_from_slice(&[b'\\', c]),
            None => out.push(b),
        }
    }
    out
}

/// The length of a valid multibyte character at the start of `s`, if any.
fn multibyte_at(cs: &my::MARIADB_CHARSET_INFO, s: &[u8]) -> Option<usize> {
    if cs.char_maxlen <= 1 {
        return None;
    }
    let valid = cs.mb_valid?;
    let range = s.as_ptr_range();
    // SAFETY: the library's validator reads only within [start, end).
    let n = unsafe { valid(range.start.cast(), range.end.cast()) } as usize;
    (n > 1 && n <= s.len()).then_some(n)
}

/// Whether `b` starts a multibyte character in this character set.
fn lead_byte(cs: &my::MARIADB_CHARSET_INFO, b: u8) -> bool {
    if cs.char_maxlen <= 1 {
        return false;
    }
    // The byte goes in as the library passes it (a C `char`, sign-extended
    // to `unsigned int`), so each character set answers exactly as it does
    // for `mysql_real_escape_string`: GBK, SJIS, Big5 and the like mask the
    // value and report their lead bytes; UTF-8's table then never does, which
    // is harmless there (no UTF-8 byte >= 0x80 can be read as `\` or `'`).
    let as_c_char = b as i8 as std::ffi::c_int as std::ffi::c_uint;
    match cs.mb_charlen {
        // SAFETY: a pure function of the library's charset table.
        Some(f) => (unsafe { f(as_c_char) }) > 1,
        None => false,
    }
}
