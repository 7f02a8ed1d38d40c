//! Native prepared statements: statements with parameters are prepared once
//! per connection (a small cache keyed by SQL text), parameters are bound in
//! the binary protocol, and result columns are fetched without any length cap.
//!
//! Long values both ways: a string parameter of `LONG_DATA_MIN` bytes or more
//! is streamed with `mysql_stmt_send_long_data` in pieces (so no single
//! packet carries it whole, and a value up to the server's
//! `max_allowed_packet` fits however many such parameters a statement has);
//! a result column longer than its fetch buffer is read in full with
//! `mysql_stmt_fetch_column` after the fetch reported it truncated.

use std::ffi::{c_ulong, c_void};

use lunet_db::{count_mismatch, CacheStats, Exec, Param, Rows, StatementCache, Value};
use mysqlclient_sys as my;
use my::enum_field_types as ty;

use crate::conn::{count, sql_ptr, text, Fail};
use crate::rows::{field_name, kind_of, text_value, unsigned_value, Kind};

/// Prepared statements kept per connection.
const CACHE_SIZE: usize = 64;
/// String parameters at least this long are streamed as long data.
const LONG_DATA_MIN: usize = 64 * 1024;
/// Size of each long-data piece.
const LONG_DATA_PIECE: usize = 1024 * 1024;
/// Initial fetch buffer of a string column (longer values are fetched whole).
const FETCH_BUF_MIN: usize = 64;
const FETCH_BUF_MAX: usize = 16 * 1024;

const MYSQL_NO_DATA: i32 = 100;

/// The last error of a statement handle, or of its connection when the
/// library left it there (a network read failing during a fetch).
unsafe fn stmt_fail(m: *mut my::MYSQL, st: *mut my::MYSQL_STMT) -> Fail {
    let code = my::mysql_stmt_errno(st);
    if code == 0 && my::mysql_errno(m) != 0 {
        return crate::conn::conn_fail(m);
    }
    let mut msg = text(my::mysql_stmt_error(st));
    if msg.is_empty() {
        msg = format!("MySQL error {code}");
    }
    Fail { code, sqlstate: crate::conn::sqlstate(my::mysql_stmt_sqlstate(st)), msg }
}

/// A connection's prepared statements by SQL text (closed when evicted,
/// forgotten or cleared).
pub(crate) struct StmtCache(StatementCache<Vec<u8>, Stmt>);

/// A statement handle, closed when dropped.
struct Stmt(*mut my::MYSQL_STMT);

impl Drop for Stmt {
    fn drop(&mut self) {
        unsafe { my::mysql_stmt_close(self.0) };
    }
}

impl Default for StmtCache {
    fn default() -> Self {
        StmtCache(StatementCache::new(CACHE_SIZE))
    }
}

impl StmtCache {
    /// Closes every statement (before the connection is closed).
    pub fn clear(&mut self) {
        drop(self.0.drain());
    }

    fn forget(&mut self, sql: &[u8]) {
        drop(self.0.remove(sql));
    }

    pub fn stats(&self) -> CacheStats {
        self.0.stats()
    }

    /// The prepared statement for `sql`, preparing it on a miss.
    unsafe fn get(&mut self, m: *mut my::MYSQL, sql: &[u8]) -> Result<*mut my::MYSQL_STMT, Fail> {
        if let Some(st) = self.0.get(sql) {
            return Ok(st.0);
        }
        let st = my::mysql_stmt_init(m);
        if st.is_null() {
            return Err(crate::conn::conn_fail(m));
        }
        if my::mysql_stmt_prepare(st, sql_ptr(sql), sql.len() as c_ulong) != 0 {
            let f = stmt_fail(m, st);
            my::mysql_stmt_close(st);
            return Err(f);
        }
        drop(self.0.insert(sql.to_vec(), Stmt(st))); // an evicted statement is closed here
        Ok(st)
    }

    /// Prepares (or reuses) `sql`, binds `params` and runs it. Returns the
    /// first result set's rows when `want_rows`, and the counts.
    pub unsafe fn run(
        &mut self,
        m: *mut my::MYSQL,
        sql: &[u8],
        params: &[Param],
        want_rows: bool,
    ) -> Result<(Option<Rows>, Exec), Fail> {
        let st = self.get(m, sql)?;
        let expected = my::mysql_stmt_param_count(st) as usize;
        if expected != params.len() {
            return Err(Fail::ours(count_mismatch(expected, params.len())));
        }
        let r = execute(m, st, params, want_rows);
        if r.is_err() {
            // Its state after a failure is not worth reasoning about: prepare
            // afresh next time.
            self.forget(sql);
        }
        r
    }
}

/// Storage the parameter binds point into; lives until the execution ends.
struct InBinds {
    binds: Vec<my::MYSQL_BIND>,
    ints: Vec<i64>,
    lens: Vec<c_ulong>,
}

unsafe fn bind_params(m: *mut my::MYSQL, st: *mut my::MYSQL_STMT, params: &[Param]) -> Result<InBinds, Fail> {
    let n = params.len();
    let mut b = InBinds { binds: vec![std::mem::zeroed(); n], ints: vec![0; n], lens: vec![0; n] };
    for (i, p) in params.iter().enumerate() {
        let bind = &mut b.binds[i];
        match p {
            Param::Null => bind.buffer_type = ty::MYSQL_TYPE_NULL,
            Param::Bool(v) => {
                b.ints[i] = *v as i64;
                bind.buffer_type = ty::MYSQL_TYPE_LONGLONG;
                bind.buffer = (&mut b.ints[i] as *mut i64).cast();
            }
            Param::Int(v) => {
                b.ints[i] = *v;
                bind.buffer_type = ty::MYSQL_TYPE_LONGLONG;
                bind.buffer = (&mut b.ints[i] as *mut i64).cast();
            }
            Param::Float(v) => {
                b.ints[i] = v.to_bits() as i64;
                bind.buffer_type = ty::MYSQL_TYPE_DOUBLE;
                bind.buffer = (&mut b.ints[i] as *mut i64).cast();
            }
            Param::Bytes(s) => {
                bind.buffer_type = ty::MYSQL_TYPE_STRING;
                if s.len() < LONG_DATA_MIN {
                    b.lens[i] = s.len() as c_ulong;
                    bind.buffer = s.as_ptr() as *mut c_void;
                    bind.buffer_length = s.len() as c_ulong;
                    bind.length = &mut b.lens[i];
                }
            }
        }
    }
    if my::mysql_stmt_bind_param(st, b.binds.as_mut_ptr()) != 0 {
        return Err(stmt_fail(m, st));
    }
    for (i, p) in params.iter().enumerate() {
        if let Param::Bytes(s) = p {
            if s.len() >= LONG_DATA_MIN {
                for piece in s.chunks(LONG_DATA_PIECE) {
                    if my::mysql_stmt_send_long_data(st, i as u32, piece.as_ptr().cast(), piece.len() as c_ulong) != 0 {
                        return Err(stmt_fail(m, st));
                    }
                }
            }
        }
    }
    Ok(b)
}

/// One result column's fetch buffer.
struct OutCol {
    kind: Kind,
    num: u64,
    buf: Vec<u8>,
    length: c_ulong,
    is_null: my::my_bool,
    error: my::my_bool,
}

unsafe fn execute(m: *mut my::MYSQL, st: *mut my::MYSQL_STMT, params: &[Param], want_rows: bool) -> Result<(Option<Rows>, Exec), Fail> {
    let inb = bind_params(m, st, params)?;
    if my::mysql_stmt_execute(st) != 0 {
        return Err(stmt_fail(m, st));
    }
    drop(inb);
    let mut rows = None;
    let mut exec = Exec::default();
    loop {
        if my::mysql_stmt_field_count(st) > 0 {
            let r = if want_rows && rows.is_none() {
                fetch_rows(m, st).map(|r| rows = Some(r))
            } else {
                discard_rows(m, st)
            };
            my::mysql_stmt_free_result(st);
            r?;
        } else {
            count(&mut exec, my::mysql_stmt_affected_rows(st), my::mysql_stmt_insert_id(st));
        }
        if my::mysql_stmt_more_results(st) == 0 {
            break;
        }
        match my::mysql_stmt_next_result(st) {
            0 => continue,
            -1 => break,
            _ => return Err(stmt_fail(m, st)),
        }
    }
    Ok((rows, exec))
}

unsafe fn discard_rows(m: *mut my::MYSQL, st: *mut my::MYSQL_STMT) -> Result<(), Fail> {
    if my::mysql_stmt_store_result(st) != 0 {
        return Err(stmt_fail(m, st));
    }
    Ok(())
}

/// Fetches every row of the current result set.
unsafe fn fetch_rows(m: *mut my::MYSQL, st: *mut my::MYSQL_STMT) -> Result<Rows, Fail> {
    // The statement's own column descriptions (MariaDB Connector/C), not a
    // copy as `mysql_stmt_result_metadata` would allocate on every execution.
    let n = my::mysql_stmt_field_count(st) as usize;
    let fields = my::mariadb_stmt_fetch_fields(st);
    if fields.is_null() {
        return Err(stmt_fail(m, st));
    }
    let fields: &[my::MYSQL_FIELD] = if n == 0 || fields.is_null() { &[] } else { std::slice::from_raw_parts(fields, n) };
    let mut rows = Rows::new(fields.iter().map(|f| field_name(f)).collect());
    let mut cols: Vec<OutCol> = fields
        .iter()
        .map(|f| {
            let kind = kind_of(f);
            let cap = match kind {
                Kind::Signed | Kind::Unsigned | Kind::Double => 0,
                _ => (f.length as usize).clamp(FETCH_BUF_MIN, FETCH_BUF_MAX),
            };
            OutCol { kind, num: 0, buf: vec![0; cap], length: 0, is_null: 0, error: 0 }
        })
        .collect();
    // `cols` is not resized from here on: the binds point into it.
    let mut binds: Vec<my::MYSQL_BIND> = vec![std::mem::zeroed(); n];
    for (b, c) in binds.iter_mut().zip(cols.iter_mut()) {
        match c.kind {
            Kind::Signed | Kind::Unsigned => {
                b.buffer_type = ty::MYSQL_TYPE_LONGLONG;
                b.is_unsigned = (c.kind == Kind::Unsigned) as my::my_bool;
                b.buffer = (&mut c.num as *mut u64).cast();
            }
            Kind::Double => {
                b.buffer_type = ty::MYSQL_TYPE_DOUBLE;
                b.buffer = (&mut c.num as *mut u64).cast();
            }
            // FLOAT too: its text form, like the text protocol gives it.
            Kind::Float | Kind::Bytes => {
                b.buffer_type = ty::MYSQL_TYPE_STRING;
                b.buffer = c.buf.as_mut_ptr().cast();
                b.buffer_length = c.buf.len() as c_ulong;
            }
        }
        b.length = &mut c.length;
        b.is_null = &mut c.is_null;
        b.error = &mut c.error;
    }
    if my::mysql_stmt_bind_result(st, binds.as_mut_ptr()) != 0 {
        return Err(stmt_fail(m, st));
    }
    loop {
        let rc = my::mysql_stmt_fetch(st);
        if rc == MYSQL_NO_DATA {
            break;
        }
        if rc != 0 && rc != my::MYSQL_DATA_TRUNCATED as i32 {
            return Err(stmt_fail(m, st));
        }
        for (i, c) in cols.iter().enumerate() {
            let v = if c.is_null != 0 {
                Value::Null
            } else {
                match c.kind {
                    Kind::Signed => Value::Int(c.num as i64),
                    Kind::Unsigned => unsigned_value(c.num),
                    Kind::Double => Value::Float(f64::from_bits(c.num)),
                    Kind::Float | Kind::Bytes => {
                        let len = c.length as usize;
                        let bytes = if len <= c.buf.len() {
                            c.buf[..len].to_vec()
                        } else {
                            fetch_whole(m, st, i, len)?
                        };
                        if c.kind == Kind::Float {
                            text_value(Kind::Float, &bytes)
                        } else {
                            Value::Bytes(bytes)
                        }
                    }
                }
            };
            rows.push(v);
        }
    }
    Ok(rows)
}

/// Reads column `i` of the current row whole (it was longer than its buffer).
unsafe fn fetch_whole(m: *mut my::MYSQL, st: *mut my::MYSQL_STMT, i: usize, len: usize) -> Result<Vec<u8>, Fail> {
    let mut out = vec![0u8; len];
    let mut got: c_ulong = 0;
    let mut is_null: my::my_bool = 0;
    let mut error: my::my_bool = 0;
    let mut b: my::MYSQL_BIND = std::mem::zeroed();
    b.buffer_type = ty::MYSQL_TYPE_STRING;
    b.buffer = out.as_mut_ptr().cast();
    b.buffer_length = len as c_ulong;
    b.length = &mut got;
    b.is_null = &mut is_null;
    b.error = &mut error;
    if my::mysql_stmt_fetch_column(st, &mut b, i as u32, 0) != 0 {
        return Err(stmt_fail(m, st));
    }
    if got as usize != len || error != 0 {
        return Err(Fail::ours(format!(
            "mysql: column {} reported {len} bytes but {got} could be read",
            i + 1
        )));
    }
    Ok(out)
}
