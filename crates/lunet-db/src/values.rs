//! Values crossing between Lua and a database: bound parameters (Lua → SQL,
//! read on the loop thread) and result rows (SQL → Lua, pushed on the loop
//! thread). Both are plain owned Rust data in between, while the statement
//! runs on the pool.

use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::handle::Running;

use lunet_abi::ffi::{self, lua_State};
use lunet_abi::lua::{push_bytes, type_name, Raise};

/// A bound parameter, converted from a Lua value.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// `nil`
    Null,
    /// A boolean (SQLite and MySQL bind it as 1/0, Postgres as a boolean).
    Bool(bool),
    /// A number with no fractional part within the 64-bit range.
    Int(i64),
    /// Any other number (full double precision, also inf and nan).
    Float(f64),
    /// A string: every byte, NULs included.
    Bytes(Vec<u8>),
}

impl Param {
    /// The parameter for a Lua number: integral values in range become
    /// 64-bit integers, anything else stays a double.
    pub fn from_number(n: f64) -> Param {
        // 2^63 is exactly representable; i64's range is [-2^63, 2^63).
        const LIMIT: f64 = 9_223_372_036_854_775_808.0;
        if n.fract() == 0.0 && (-LIMIT..LIMIT).contains(&n) {
            Param::Int(n as i64)
        } else {
            Param::Float(n)
        }
    }
}

/// A result value. SQL NULL is [`Value::Null`] and becomes an absent key.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Text, blobs, and the text form of any other type.
    Bytes(Vec<u8>),
}

/// The rows of a query: column names once, values row after row.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Rows {
    columns: Vec<Vec<u8>>,
    values: Vec<Value>,
}

impl Rows {
    pub fn new(columns: Vec<Vec<u8>>) -> Rows {
        Rows { columns, values: Vec::new() }
    }

    /// Appends one value; the values of a row are appended in column order.
    #[inline]
    pub fn push(&mut self, v: Value) {
        self.values.push(v);
    }

    pub fn columns(&self) -> &[Vec<u8>] {
        &self.columns
    }

    /// Number of complete rows. With no columns there are no rows to report.
    pub fn len(&self) -> usize {
        self.values.len().checked_div(self.columns.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn row(&self, i: usize) -> &[Value] {
        let n = self.columns.len();
        &self.values[i * n..(i + 1) * n]
    }
}

/// A failed open or statement: the message scripts see as the second
/// return value and, when the database gave one, its machine-readable code
/// (the third): Postgres' SQLSTATE (`"40001"`), MySQL's `"<errno>/<SQLSTATE>"`
/// (`"1213/40001"`), SQLite's extended result code name (`"SQLITE_BUSY"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbError {
    pub message: String,
    pub code: Option<String>,
}

impl DbError {
    pub fn new(message: impl Into<String>, code: impl Into<String>) -> DbError {
        DbError { message: message.into(), code: Some(code.into()) }
    }
}

/// A failure of our own (bad SQL text, a count mismatch): no code.
impl From<String> for DbError {
    fn from(message: String) -> DbError {
        DbError { message, code: None }
    }
}

impl From<&str> for DbError {
    fn from(message: &str) -> DbError {
        DbError { message: message.into(), code: None }
    }
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What `exec` reports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Exec {
    pub affected_rows: u64,
    pub last_insert_id: i64,
}

/// Which function a queued statement came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementKind {
    /// `query`: wants the rows.
    Query,
    /// `exec`: wants what changed (and may be a script when it has no parameters).
    Exec,
}

/// What a statement produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Rows(Rows),
    Exec(Exec),
}

/// One statement of a batch handed to [`crate::Driver::batch`]: what to run,
/// and where the driver puts its outcome.
#[derive(Debug)]
pub struct Statement<'a> {
    pub kind: StatementKind,
    pub sql: &'a [u8],
    pub params: &'a [Param],
    /// Set by the driver: `Rows` for a query, `Exec` for an exec, or the
    /// error. Left `None`, the statement is reported as not run, or as
    /// "connection is closed" once [`Statement::closing`] is true.
    pub outcome: Option<Result<Output, DbError>>,
    closing: Option<&'a AtomicBool>,
    /// Set when the coroutine that queued it stopped waiting for it.
    abandoned: Option<&'a AtomicBool>,
    /// The connection's running mark and this statement's id in it.
    running: Option<(&'a Running, u64)>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Running")
    }
}

impl<'a> Statement<'a> {
    pub fn new(kind: StatementKind, sql: &'a [u8], params: &'a [Param]) -> Statement<'a> {
        Statement { kind, sql, params, outcome: None, closing: None, abandoned: None, running: None }
    }

    pub(crate) fn with_job(mut self, abandoned: &'a AtomicBool, running: &'a Running, id: u64) -> Statement<'a> {
        self.abandoned = Some(abandoned);
        self.running = Some((running, id));
        self
    }

    /// Whether the coroutine that queued this statement has stopped waiting
    /// for it (its wait timed out or its task was cancelled): nobody will
    /// see its outcome. A driver must not start such a statement (leave its
    /// `outcome` as `None`).
    pub fn abandoned(&self) -> bool {
        self.abandoned.is_some_and(|f| f.load(Ordering::SeqCst))
    }

    /// Call right before this statement starts (for a pipeline: right
    /// before waiting for its results): from now on an interrupt meant for
    /// it (`Driver::interrupt`, when its wait ends early) may be sent to the
    /// connection, until the next statement's `begin` or the end of the
    /// batch. Returns false when the statement was abandoned: do not start
    /// it then; if it was already sent (a pipeline), nobody else will
    /// interrupt it, so the driver should cancel it itself.
    pub fn begin(&self) -> bool {
        if let Some((running, id)) = self.running {
            running.set(id);
        }
        // After the mark (both SeqCst): either this sees the abandonment or
        // the interrupt hook sees the mark.
        !self.abandoned()
    }

    pub(crate) fn with_closing(mut self, flag: &'a AtomicBool) -> Statement<'a> {
        self.closing = Some(flag);
        self
    }

    /// Whether the connection has been closed by the script since this
    /// batch was taken: a driver should not start statements it has not
    /// sent yet (leave their `outcome` as `None`).
    pub fn closing(&self) -> bool {
        self.closing.is_some_and(|f| f.load(Ordering::Acquire))
    }

    /// Runs the statement alone through [`crate::Driver::query`] or
    /// [`crate::Driver::exec`], as if it had not been batched.
    pub fn run_alone<D: crate::Driver>(&self, conn: &mut D::Conn) -> Result<Output, DbError> {
        match self.kind {
            StatementKind::Query => D::query(conn, self.sql, self.params).map(Output::Rows),
            StatementKind::Exec => D::exec(conn, self.sql, self.params).map(Output::Exec),
        }
    }
}

/// The one wording of a parameter count mismatch, for every driver.
pub fn count_mismatch(expected: usize, given: usize) -> String {
    format!(
        "parameter count mismatch: the statement has {expected} placeholder{}, {given} value{} given",
        if expected == 1 { "" } else { "s" },
        if given == 1 { " was" } else { "s were" },
    )
}

/// Escapes `s` for a single-quoted SQL literal by doubling every `'`
/// (SQLite, and Postgres with standard_conforming_strings).
pub fn double_quotes(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    for &b in s {
        if b == b'\'' {
            out.push(b'\'');
        }
        out.push(b);
    }
    out
}

/// Reads the Lua values at stack indices `first..=last` as parameters.
/// `fname` is the user-facing function name for the error raised on a value
/// that cannot be bound (tables, functions, userdata, threads).
///
/// # Safety
/// Loop thread; the indices must be valid.
pub(crate) unsafe fn read_params(L: *mut lua_State, first: c_int, last: c_int, fname: &str) -> Result<Vec<Param>, Raise> {
    let mut params = Vec::with_capacity((last - first + 1).max(0) as usize);
    for i in first..=last {
        let p = match ffi::lua_type(L, i) {
            ffi::LUA_TNIL => Param::Null,
            ffi::LUA_TBOOLEAN => Param::Bool(ffi::lua_toboolean(L, i) != 0),
            ffi::LUA_TNUMBER => Param::from_number(ffi::lua_tonumber(L, i)),
            ffi::LUA_TSTRING => {
                let mut len = 0usize;
                let p = ffi::lua_tolstring(L, i, &mut len);
                Param::Bytes(std::slice::from_raw_parts(p.cast::<u8>(), len).to_vec())
            }
            _ => {
                return Err(format!(
                    "bad argument #{i} to '{fname}' (parameter {} must be nil, boolean, number or string, got {})",
                    i - first + 1,
                    type_name(L, i)
                )
                .into())
            }
        };
        params.push(p);
    }
    Ok(params)
}

/// Pushes one non-NULL value.
#[inline]
unsafe fn push_value(L: *mut lua_State, v: &Value) {
    match v {
        Value::Null => ffi::lua_pushnil(L),
        Value::Bool(b) => ffi::lua_pushboolean(L, *b as c_int),
        Value::Int(n) => ffi::lua_pushnumber(L, *n as f64),
        Value::Float(f) => ffi::lua_pushnumber(L, *f),
        Value::Bytes(b) => push_bytes(L, b),
    }
}

/// Pushes the rows as an array of tables keyed by column name, NULLs left
/// out. Column names are pushed once and reused as keys when the stack has
/// room for them.
///
/// # Safety
/// Loop thread; `L` needs a few free slots (more are requested here).
pub(crate) unsafe fn push_rows(L: *mut lua_State, rows: &Rows) {
    let ncols = rows.columns().len();
    let nrows = rows.len();
    ffi::lua_createtable(L, nrows.min(i32::MAX as usize) as c_int, 0);
    let base = ffi::lua_gettop(L);
    let cached = ncols < 4000 && ffi::lua_checkstack(L, ncols as c_int + 4) != 0;
    if cached {
        for name in rows.columns() {
            push_bytes(L, name);
        }
    }
    for r in 0..nrows {
        let row = rows.row(r);
        let present = row.iter().filter(|v| !matches!(v, Value::Null)).count();
        ffi::lua_createtable(L, 0, present as c_int);
        for (c, v) in row.iter().enumerate() {
            if matches!(v, Value::Null) {
                continue;
            }
            if cached {
                ffi::lua_pushvalue(L, base + 1 + c as c_int);
            } else {
                push_bytes(L, &rows.columns()[c]);
            }
            push_value(L, v);
            ffi::lua_rawset(L, -3);
        }
        ffi::lua_rawseti(L, base, (r + 1) as _);
    }
    ffi::lua_settop(L, base);
}

/// Pushes `nil, message[, code]`.
///
/// # Safety
/// Loop thread; `L` needs three free slots.
pub(crate) unsafe fn push_error(L: *mut lua_State, e: &DbError) -> c_int {
    ffi::lua_pushnil(L);
    push_bytes(L, e.message.as_bytes());
    match &e.code {
        Some(code) => {
            push_bytes(L, code.as_bytes());
            3
        }
        None => 2,
    }
}

/// Pushes `{affected_rows = n, last_insert_id = n}`.
///
/// # Safety
/// Loop thread; `L` needs three free slots.
pub(crate) unsafe fn push_exec(L: *mut lua_State, e: &Exec) {
    ffi::lua_createtable(L, 0, 2);
    ffi::lua_pushnumber(L, e.affected_rows as f64);
    ffi::lua_setfield(L, -2, c"affected_rows".as_ptr());
    ffi::lua_pushnumber(L, e.last_insert_id as f64);
    ffi::lua_setfield(L, -2, c"last_insert_id".as_ptr());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_become_integers_only_when_integral_and_in_range() {
        assert_eq!(Param::from_number(42.0), Param::Int(42));
        assert_eq!(Param::from_number(-0.0), Param::Int(0));
        assert_eq!(Param::from_number(9007199254740993.0), Param::Int(9007199254740992));
        assert_eq!(Param::from_number(-9_223_372_036_854_775_808.0), Param::Int(i64::MIN));
        assert_eq!(Param::from_number(9_223_372_036_854_775_808.0), Param::Float(9_223_372_036_854_775_808.0));
        assert_eq!(Param::from_number(1.5), Param::Float(1.5));
        assert!(matches!(Param::from_number(f64::NAN), Param::Float(f) if f.is_nan()));
        assert_eq!(Param::from_number(f64::INFINITY), Param::Float(f64::INFINITY));
    }

    #[test]
    fn quotes_are_doubled_and_other_bytes_kept() {
        assert_eq!(double_quotes(b"O'Brien"), b"O''Brien");
        assert_eq!(double_quotes(b"''"), b"''''");
        assert_eq!(double_quotes(b"a\0b\\"), b"a\0b\\");
        assert_eq!(double_quotes(b""), b"");
    }

    #[test]
    fn rows_are_sliced_by_column_count() {
        let mut r = Rows::new(vec![b"a".to_vec(), b"b".to_vec()]);
        assert!(r.is_empty());
        for v in [Value::Int(1), Value::Null, Value::Float(2.5), Value::Bytes(b"x".to_vec())] {
            r.push(v);
        }
        assert_eq!(r.len(), 2);
        assert_eq!(r.row(1), &[Value::Float(2.5), Value::Bytes(b"x".to_vec())]);
        assert_eq!(Rows::new(vec![]).len(), 0);
    }

    #[test]
    fn mismatch_message_names_both_counts() {
        assert_eq!(
            count_mismatch(2, 1),
            "parameter count mismatch: the statement has 2 placeholders, 1 value was given"
        );
        assert!(count_mismatch(1, 3).starts_with("parameter count mismatch: "));
    }
}
