//! `lunet.sqlite3`: the SQLite driver, on rusqlite and the system libsqlite3.
//!
//! Only what is specific to SQLite lives here: reading `open`'s argument,
//! opening a connection, running statements with native parameter binding,
//! and reading values by their own storage class. The Lua API, connection
//! handles, the thread-pool jobs and the per-connection lock come from
//! `lunet-db`.

#![allow(non_snake_case)]

use std::ffi::{c_int, CStr};

use lunet_abi::ffi::{self, lua_State};
use lunet_abi::lua::{raw_field, type_name, Raise};
use lunet_abi::lua_fn;
use lunet_db::{count_mismatch, CacheStats, DbError, Driver, Exec, Param, Rows, Session, StatementCache, Value};
use rusqlite::types::{Null, ToSqlOutput, ValueRef};
use rusqlite::{Connection, InterruptHandle, Statement};

mod codes;

/// Prepared statements kept per connection (by SQL text).
const STATEMENT_CACHE: usize = 64;

/// A connection and its prepared statements.
///
/// The statements borrow the connection, which rusqlite expresses with a
/// lifetime; here they live beside it, so the borrow is erased to
/// `'static` and upheld by hand: the connection is boxed (it never moves
/// while statements point at it) and `cache` is declared first, so every
/// statement is finalised before the connection closes.
struct Db {
    cache: StatementCache<Box<str>, Statement<'static>>,
    conn: Box<Connection>,
}

// SAFETY: a `Connection` may move between threads; its statements move with
// it and are only used by whoever holds the `Db` (one thread at a time).
unsafe impl Send for Db {}

impl Db {
    /// The prepared statement for `sql`, from the cache or prepared now.
    fn statement(&mut self, sql: &str) -> Result<&mut Statement<'static>, DbError> {
        if self.cache.get(sql).is_none() {
            let stmt = self.conn.prepare(sql).map_err(describe)?;
            // SAFETY: see `Db`: the statement is dropped before the boxed
            // connection it borrows.
            let stmt: Statement<'static> = unsafe { std::mem::transmute::<Statement<'_>, Statement<'static>>(stmt) };
            drop(self.cache.insert(sql.into(), stmt)); // an evicted statement is finalised here
        }
        self.cache.peek_mut(sql).ok_or_else(|| DbError::from("sqlite3 internal error: statement cache refused a statement"))
    }
}

struct Sqlite;

impl Driver for Sqlite {
    const NAME: &'static str = "sqlite3";
    const METATABLE: &'static CStr = c"lunet.sqlite3.connection";

    /// The database path (bytes: any file name the OS accepts).
    type Config = Vec<u8>;
    type Conn = Db;
    /// Stops the running statement (`sqlite3_interrupt`) from any thread.
    type Info = InterruptHandle;

    /// `sqlite3_interrupt` only sets a flag: called on the loop thread.
    const INTERRUPT_IS_QUICK: bool = true;

    unsafe fn config(L: *mut lua_State, idx: c_int) -> Result<Vec<u8>, Raise> {
        let path_at = |i: c_int| -> Vec<u8> {
            let mut len = 0usize;
            let p = ffi::lua_tolstring(L, i, &mut len);
            std::slice::from_raw_parts(p.cast::<u8>(), len).to_vec()
        };
        match ffi::lua_type(L, idx) {
            ffi::LUA_TNONE | ffi::LUA_TNIL => Ok(b":memory:".to_vec()),
            ffi::LUA_TSTRING => Ok(path_at(idx)),
            ffi::LUA_TTABLE => {
                let r = match raw_field(L, idx, c"path") {
                    ffi::LUA_TNIL => Ok(b":memory:".to_vec()),
                    ffi::LUA_TSTRING => Ok(path_at(-1)),
                    _ => Err(format!(
                        "bad argument #{idx} to 'sqlite3.open' (field 'path' must be a string, got {})",
                        type_name(L, -1)
                    )
                    .into()),
                };
                ffi::lua_settop(L, -2);
                r
            }
            _ => Err(format!(
                "bad argument #{idx} to 'sqlite3.open' (table or string expected, got {})",
                type_name(L, idx)
            )
            .into()),
        }
    }

    fn connect(path: Vec<u8>) -> Result<(Db, InterruptHandle), DbError> {
        use std::os::unix::ffi::OsStrExt;
        let conn = Connection::open(std::ffi::OsStr::from_bytes(&path)).map_err(describe)?;
        let interrupt = conn.get_interrupt_handle();
        Ok((Db { cache: StatementCache::new(STATEMENT_CACHE), conn: Box::new(conn) }, interrupt))
    }

    fn cache_stats(db: &Db) -> CacheStats {
        db.cache.stats()
    }

    fn session(db: &Db) -> Session {
        Session { in_transaction: !db.conn.is_autocommit(), broken: false }
    }

    /// The statement fails with "interrupted" (SQLITE_INTERRUPT) at its next
    /// step; the connection stays usable. (Inside an explicit transaction,
    /// SQLite rolls back the whole transaction if the statement was an
    /// INSERT, UPDATE or DELETE.) A flag set just after a statement ended
    /// is cleared by SQLite when the next statement starts.
    fn interrupt(handle: &InterruptHandle) {
        handle.interrupt();
    }

    fn query(db: &mut Db, sql: &[u8], params: &[Param]) -> Result<Rows, DbError> {
        let sql = sql_text(sql)?;
        let stmt = db.statement(sql)?;
        bind(stmt, params)?;
        match read_rows(stmt) {
            Ok(rows) => Ok(rows),
            Err(_) if is_empty(stmt) => Ok(Rows::default()),
            Err(e) => Err(describe(e)),
        }
    }

    fn exec(db: &mut Db, sql: &[u8], params: &[Param]) -> Result<Exec, DbError> {
        let sql = sql_text(sql)?;
        let mut affected = 0u64;
        if params.is_empty() {
            // A script: every statement in turn (CREATE TRIGGER ... BEGIN ... END
            // is one statement to SQLite's parser).
            let conn: &Connection = &db.conn;
            let mut batch = rusqlite::Batch::new(conn, sql);
            while let Some(mut stmt) = fallible_next(&mut batch)? {
                affected += run_counted(conn, &mut stmt).map_err(describe)?;
            }
        } else {
            let stmt = db.statement(sql)?;
            bind(stmt, params)?;
            let before = db.conn.total_changes();
            let stmt = db.cache.peek_mut(sql).ok_or("sqlite3 internal error: statement vanished")?;
            affected = match step_all(stmt) {
                Ok(()) => changed(&db.conn, before),
                Err(_) if is_empty(stmt) => 0,
                Err(e) => return Err(describe(e)),
            };
        }
        Ok(Exec { affected_rows: affected, last_insert_id: db.conn.last_insert_rowid() })
    }
}

/// The SQL as text. SQLite reads SQL as UTF-8 and stops at a NUL byte, so
/// both are refused rather than silently running something else.
fn sql_text(sql: &[u8]) -> Result<&str, DbError> {
    let s = std::str::from_utf8(sql).map_err(|e| format!("SQL text is not valid UTF-8 ({e})"))?;
    if s.contains('\0') {
        return Err("SQL text contains a NUL byte (pass binary data as a parameter)".into());
    }
    Ok(s)
}

/// Whether `stmt` came from SQL with no statement in it (only blanks or
/// comments). SQLite then gives no statement at all and stepping it fails
/// with "bad parameter or other API misuse"; we report no rows instead.
/// Only asked after a failure, so the common path pays nothing.
fn is_empty(stmt: &Statement<'_>) -> bool {
    stmt.expanded_sql().is_none()
}

/// rusqlite's message, which for SQLite failures is SQLite's own full text,
/// with the extended result code's name.
fn describe(e: rusqlite::Error) -> DbError {
    match e {
        rusqlite::Error::MultipleStatement => "more than one SQL statement given: query, and exec with parameters, \
             take exactly one (exec without parameters runs a script)"
            .into(),
        rusqlite::Error::SqliteFailure(f, _) => {
            let code = codes::name(f.extended_code);
            DbError::new(e.to_string(), code)
        }
        other => other.to_string().into(),
    }
}

fn fallible_next<'c>(batch: &mut rusqlite::Batch<'c, '_>) -> Result<Option<Statement<'c>>, DbError> {
    use rusqlite::fallible_iterator::FallibleIterator;
    batch.next().map_err(describe)
}

fn bind(stmt: &mut Statement<'_>, params: &[Param]) -> Result<(), DbError> {
    let expected = stmt.parameter_count();
    if expected != params.len() {
        return Err(count_mismatch(expected, params.len()).into());
    }
    for (i, p) in params.iter().enumerate() {
        let n = i + 1;
        let r = match p {
            Param::Null => stmt.raw_bind_parameter(n, Null),
            Param::Bool(b) => stmt.raw_bind_parameter(n, *b as i64),
            Param::Int(v) => stmt.raw_bind_parameter(n, *v),
            Param::Float(v) => stmt.raw_bind_parameter(n, *v),
            // Bound as TEXT with its length, so it compares equal to stored text;
            // any bytes, NULs included, are kept.
            Param::Bytes(b) => stmt.raw_bind_parameter(n, ToSqlOutput::Borrowed(ValueRef::Text(b))),
        };
        r.map_err(describe)?;
    }
    Ok(())
}

fn column_names(stmt: &Statement<'_>) -> Vec<Vec<u8>> {
    (0..stmt.column_count())
        .map(|i| match stmt.column_name(i) {
            Ok(name) => name.as_bytes().to_vec(),
            Err(_) => format!("column{}", i + 1).into_bytes(),
        })
        .collect()
}

fn read_rows(stmt: &mut Statement<'_>) -> rusqlite::Result<Rows> {
    let mut out = Rows::new(column_names(stmt));
    let ncols = out.columns().len();
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next()? {
        for i in 0..ncols {
            // Typed per value: SQLite columns may hold any storage class.
            out.push(match row.get_ref(i)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(n) => Value::Int(n),
                ValueRef::Real(f) => Value::Float(f),
                ValueRef::Text(b) | ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
            });
        }
    }
    Ok(out)
}

/// Steps a statement to the end (discarding any rows, as for `PRAGMA
/// journal_mode=WAL` or `INSERT ... RETURNING`) and returns the rows it
/// changed itself. `changes()` keeps the count of the last INSERT, UPDATE or
/// DELETE, so it only counts when the total moved during this statement.
fn run_counted(conn: &Connection, stmt: &mut Statement<'_>) -> rusqlite::Result<u64> {
    let before = conn.total_changes();
    step_all(stmt)?;
    Ok(changed(conn, before))
}

/// Steps a statement to its end, discarding rows; it is reset afterwards.
fn step_all(stmt: &mut Statement<'_>) -> rusqlite::Result<()> {
    let mut rows = stmt.raw_query();
    while rows.next()?.is_some() {}
    Ok(())
}

/// The rows the last statement changed, if the total moved since `before`.
fn changed(conn: &Connection, before: u64) -> u64 {
    if conn.total_changes() != before {
        conn.changes()
    } else {
        0
    }
}

/// Process-wide SQLite settings, before the library is first used: memory
/// statistics off. With them on (SQLite's default) every allocation inside
/// SQLite takes one global mutex, which the pool threads running statements
/// on different connections then fight over. Nothing in lunet reads them.
/// If SQLite was already initialised in this process (another library used
/// it first) the call is refused and nothing changes.
fn library_config() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| unsafe {
        rusqlite::ffi::sqlite3_config(rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int);
    });
}

lua_fn! {
    /// `require("lunet.sqlite3")`
    #[no_mangle]
    pub fn luaopen_lunet_sqlite3(L) {
        library_config();
        lunet_db::open_module::<Sqlite>(L)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> Db {
        Sqlite::connect(b":memory:".to_vec()).unwrap().0
    }

    #[test]
    fn query_maps_each_value_by_its_own_type() {
        let mut c = mem();
        let rows = Sqlite::query(
            &mut c,
            b"SELECT 1 AS v UNION ALL SELECT 2.5 UNION ALL SELECT 'x' UNION ALL SELECT NULL UNION ALL SELECT x'00ff'",
            &[],
        )
        .unwrap();
        assert_eq!(rows.columns(), &[b"v".to_vec()]);
        let vals: Vec<Value> = (0..rows.len()).map(|i| rows.row(i)[0].clone()).collect();
        assert_eq!(
            vals,
            vec![Value::Int(1), Value::Float(2.5), Value::Bytes(b"x".to_vec()), Value::Null, Value::Bytes(vec![0, 0xff])]
        );
    }

    #[test]
    fn parameters_bind_natively_and_text_keeps_nuls() {
        let mut c = mem();
        let p = [Param::Bytes(b"a\0b".to_vec()), Param::Int(1 << 53), Param::Bool(true), Param::Null, Param::Float(0.1)];
        let rows = Sqlite::query(&mut c, b"SELECT ? AS s, ? AS i, ? AS b, ? AS n, ? AS f, typeof(?1) AS t", &p).unwrap();
        assert_eq!(
            rows.row(0),
            &[
                Value::Bytes(b"a\0b".to_vec()),
                Value::Int(1 << 53),
                Value::Int(1),
                Value::Null,
                Value::Float(0.1),
                Value::Bytes(b"text".to_vec())
            ]
        );
    }

    #[test]
    fn count_mismatch_is_reported_both_ways() {
        let mut c = mem();
        let e = Sqlite::query(&mut c, b"SELECT ?, ?", &[Param::Int(1)]).unwrap_err().message;
        assert!(e.starts_with("parameter count mismatch: "), "{e}");
        let e = Sqlite::exec(&mut c, b"SELECT 1", &[Param::Int(1)]).unwrap_err().message;
        assert!(e.starts_with("parameter count mismatch: "), "{e}");
    }

    #[test]
    fn exec_runs_scripts_and_counts_only_direct_changes() {
        let mut c = mem();
        let e = Sqlite::exec(
            &mut c,
            b"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
              CREATE TABLE log(msg TEXT);
              CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO log VALUES ('added ' || NEW.v); END;
              INSERT INTO t(v) VALUES ('a'), ('b');",
            &[],
        )
        .unwrap();
        assert_eq!(e, Exec { affected_rows: 2, last_insert_id: 2 });
        let e = Sqlite::exec(&mut c, b"CREATE TABLE u(x)", &[]).unwrap();
        assert_eq!(e.affected_rows, 0);
        let e = Sqlite::exec(&mut c, b"UPDATE t SET v = ? WHERE id = ?", &[Param::Bytes(b"z".to_vec()), Param::Int(2)]).unwrap();
        assert_eq!(e.affected_rows, 1);
        let log = Sqlite::query(&mut c, b"SELECT count(*) AS n FROM log", &[]).unwrap();
        assert_eq!(log.row(0), &[Value::Int(2)]);
        // Statements that return rows are stepped through, not refused.
        assert!(Sqlite::exec(&mut c, b"SELECT 1; PRAGMA user_version", &[]).is_ok());
    }

    #[test]
    fn one_statement_only_with_parameters_and_in_query() {
        let mut c = mem();
        let e = Sqlite::exec(&mut c, b"SELECT ?; SELECT 2", &[Param::Int(1)]).unwrap_err().message;
        assert!(e.contains("more than one SQL statement"), "{e}");
        let e = Sqlite::query(&mut c, b"SELECT 1; SELECT 2", &[]).unwrap_err().message;
        assert!(e.contains("more than one SQL statement"), "{e}");
    }

    #[test]
    fn bad_sql_is_an_error_not_a_panic() {
        let mut c = mem();
        let e = Sqlite::query(&mut c, b"SELEC 1", &[]).unwrap_err();
        assert_eq!(e, DbError::new("near \"SELEC\": syntax error", "SQLITE_ERROR"));
        assert!(Sqlite::query(&mut c, b"SELECT 1\0; DROP TABLE x", &[]).unwrap_err().message.contains("NUL"));
        assert!(Sqlite::query(&mut c, b"SELECT '\xff'", &[]).unwrap_err().message.contains("UTF-8"));
        assert_eq!(Sqlite::query(&mut c, b"", &[]).unwrap(), Rows::default());
        assert_eq!(Sqlite::query(&mut c, b" /* nothing */ ", &[]).unwrap(), Rows::default());
        assert_eq!(Sqlite::exec(&mut c, b"  -- nothing\n", &[]).unwrap().affected_rows, 0);
    }

    #[test]
    fn failures_carry_the_extended_code_and_ours_carry_none() {
        let mut c = mem();
        Sqlite::exec(&mut c, b"CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE)", &[]).unwrap();
        Sqlite::exec(&mut c, b"INSERT INTO t(v) VALUES (?)", &[Param::Bytes(b"a".to_vec())]).unwrap();
        let e = Sqlite::exec(&mut c, b"INSERT INTO t(v) VALUES (?)", &[Param::Bytes(b"a".to_vec())]).unwrap_err();
        assert_eq!(e.code.as_deref(), Some("SQLITE_CONSTRAINT_UNIQUE"), "{e:?}");
        let e = Sqlite::exec(&mut c, b"INSERT INTO t(v) VALUES (?)", &[Param::Null]).unwrap_err();
        assert_eq!(e.code.as_deref(), Some("SQLITE_CONSTRAINT_NOTNULL"), "{e:?}");
        let e = Sqlite::query(&mut c, b"SELECT ?", &[]).unwrap_err();
        assert_eq!(e.code, None);
        let e = Sqlite::connect(b"/nonexistent-dir/x.db".to_vec()).err().unwrap();
        assert_eq!(e.code.as_deref(), Some("SQLITE_CANTOPEN"), "{e:?}");
    }

    #[test]
    fn statements_are_cached_by_text_with_an_lru_bound() {
        let mut c = mem();
        for _ in 0..3 {
            Sqlite::query(&mut c, b"SELECT 1 AS one", &[]).unwrap();
        }
        let s = Sqlite::cache_stats(&c);
        assert_eq!((s.hits, s.misses, s.size), (2, 1, 1));
        for i in 0..(STATEMENT_CACHE + 10) {
            Sqlite::query(&mut c, format!("SELECT {i} AS n").as_bytes(), &[]).unwrap();
        }
        let s = Sqlite::cache_stats(&c);
        assert_eq!(s.size as usize, STATEMENT_CACHE);
        assert_eq!(s.evictions, 11);
        // A cached statement is reset after use: rerunning it starts over.
        Sqlite::exec(&mut c, b"CREATE TABLE t(x)", &[]).unwrap();
        Sqlite::exec(&mut c, b"INSERT INTO t VALUES (1), (2), (3)", &[]).unwrap();
        for _ in 0..2 {
            let rows = Sqlite::query(&mut c, b"SELECT x FROM t WHERE x > ?", &[Param::Int(0)]).unwrap();
            assert_eq!(rows.len(), 3);
        }
        let e = Sqlite::exec(&mut c, b"UPDATE t SET x = x + ? WHERE x = 3", &[Param::Int(1)]).unwrap();
        assert_eq!(e.affected_rows, 1);
        let e = Sqlite::exec(&mut c, b"UPDATE t SET x = x + ? WHERE x = 3", &[Param::Int(1)]).unwrap();
        assert_eq!(e.affected_rows, 0);
    }
}
