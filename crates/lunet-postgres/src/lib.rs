//! `lunet.postgres`: the PostgreSQL driver, on libpq (pq-sys).
//!
//! Only what is specific to PostgreSQL lives here: reading `open`'s table,
//! connecting with keyword/value arrays, running statements with `$n`
//! parameters bound natively (prepared once per connection and reused), and
//! typing result values by their column's type. The Lua API, connection
//! handles, the thread-pool jobs and the per-connection lock come from
//! `lunet-db`.

#![allow(non_snake_case)]

mod conn;
mod decode;
mod params;

use std::ffi::{c_int, CStr};

use lunet_abi::ffi::{self, lua_State};
use lunet_abi::lua::{raw_field, to_number, type_name, Raise};
use lunet_abi::lua_fn;
use lunet_db::{CacheStats, DbError, Driver, Exec, Param, Rows, Session, Statement};

use conn::{Canceller, Pg, Setting};

struct Postgres;

/// `open`'s fields: Lua name (and table key), libpq keyword, whether it is a number.
const FIELDS: &[(&str, &CStr, &CStr, bool)] = &[
    ("host", c"host", c"host", false),
    ("port", c"port", c"port", true),
    ("user", c"user", c"user", false),
    ("password", c"password", c"password", false),
    ("database", c"database", c"dbname", false),
    ("sslmode", c"sslmode", c"sslmode", false),
    ("connect_timeout", c"connect_timeout", c"connect_timeout", true),
];

/// Used for the fields `open` leaves out. A `connect_timeout` of 0 counts as
/// left out: libpq would take it (like no value at all) as "wait forever",
/// and a server that accepts the connection but never answers would then
/// hold the `open` for good.
const DEFAULTS: &[(&str, &CStr, &[u8])] = &[
    ("host", c"host", b"127.0.0.1"),
    ("port", c"port", b"5432"),
    ("connect_timeout", c"connect_timeout", b"10"),
];

impl Driver for Postgres {
    const NAME: &'static str = "postgres";
    const METATABLE: &'static CStr = c"lunet.postgres.connection";

    type Config = Vec<Setting>;
    type Conn = Pg;
    /// Cancels the running statement (the connection is closed, or the
    /// statement's wait ended early). The statement fails with 57014
    /// ("canceling statement due to user request"); the connection stays
    /// usable (inside a transaction block, the transaction is aborted).
    type Info = Canceller;

    unsafe fn config(L: *mut lua_State, idx: c_int) -> Result<Vec<Setting>, Raise> {
        let mut settings: Vec<Setting> = Vec::with_capacity(FIELDS.len() + 2);
        match ffi::lua_type(L, idx) {
            ffi::LUA_TNONE | ffi::LUA_TNIL => {}
            ffi::LUA_TTABLE => {
                for &(field, key, keyword, numeric) in FIELDS {
                    raw_field(L, idx, key);
                    let value = read_field(L, field, numeric);
                    ffi::lua_settop(L, -2);
                    if let Some(v) = value? {
                        settings.push((field, keyword, v));
                    }
                }
            }
            _ => {
                return Err(format!(
                    "bad argument #{idx} to 'postgres.open' (table expected, got {})",
                    type_name(L, idx)
                )
                .into())
            }
        }
        settings.retain(|s| !(s.0 == "connect_timeout" && s.2 == b"0"));
        for &(field, keyword, value) in DEFAULTS {
            if !settings.iter().any(|s| s.0 == field) {
                settings.push((field, keyword, value.to_vec()));
            }
        }
        // Text in and out is UTF-8; the application name can be overridden by PGAPPNAME.
        settings.push(("client_encoding", c"client_encoding", b"UTF8".to_vec()));
        settings.push(("application_name", c"fallback_application_name", b"lunet".to_vec()));
        Ok(settings)
    }

    fn connect(settings: Vec<Setting>) -> Result<(Pg, Canceller), DbError> {
        let pg = Pg::connect(&settings)?;
        let canceller = pg.canceller();
        Ok((pg, canceller))
    }

    fn query(conn: &mut Pg, sql: &[u8], params: &[Param]) -> Result<Rows, DbError> {
        conn.query(sql, params)
    }

    fn exec(conn: &mut Pg, sql: &[u8], params: &[Param]) -> Result<Exec, DbError> {
        conn.exec(sql, params)
    }

    fn cache_stats(conn: &Pg) -> CacheStats {
        conn.cache_stats()
    }

    fn session(conn: &Pg) -> Session {
        Session { in_transaction: conn.in_transaction(), broken: conn.is_broken() }
    }

    fn batch(conn: &mut Pg, batch: &mut [Statement<'_>]) {
        conn.batch(batch)
    }

    fn interrupt(canceller: &Canceller) {
        canceller.cancel()
    }
}

/// Reads the field on top of the stack: None if nil; strings (and numbers,
/// in their string form) for text fields; integers for numeric ones.
unsafe fn read_field(L: *mut lua_State, field: &str, numeric: bool) -> Result<Option<Vec<u8>>, Raise> {
    let t = ffi::lua_type(L, -1);
    if t == ffi::LUA_TNIL {
        return Ok(None);
    }
    if numeric {
        // Numbers, and strings holding one ("5432"), as Lua converts them.
        let n = match to_number(L, -1) {
            Some(n) => n,
            None => return Err(field_error(L, field, "an integer")),
        };
        if n.fract() != 0.0 || !(0.0..=2_147_483_647.0).contains(&n) {
            return Err(format!("bad argument #1 to 'postgres.open' (field '{field}' must be a non-negative integer)").into());
        }
        return Ok(Some((n as i64).to_string().into_bytes()));
    }
    match t {
        ffi::LUA_TSTRING | ffi::LUA_TNUMBER => {
            let mut len = 0usize;
            // Converts a number in place: fine, the value is a copy on the stack.
            let p = ffi::lua_tolstring(L, -1, &mut len);
            Ok(Some(std::slice::from_raw_parts(p.cast::<u8>(), len).to_vec()))
        }
        _ => Err(field_error(L, field, "a string")),
    }
}

unsafe fn field_error(L: *mut lua_State, field: &str, what: &str) -> Raise {
    format!("bad argument #1 to 'postgres.open' (field '{field}' must be {what}, got {})", type_name(L, -1)).into()
}

lua_fn! {
    /// `require("lunet.postgres")`
    #[no_mangle]
    pub fn luaopen_lunet_postgres(L) {
        lunet_db::open_module::<Postgres>(L)
    }
}
