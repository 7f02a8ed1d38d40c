//! `lunet.mysql`: the MySQL/MariaDB driver, on MariaDB Connector/C (Debian's
//! `libmariadb`) through mysqlclient-sys.
//!
//! Only what is specific to MySQL lives here: reading `open`'s argument,
//! connecting, running statements (the text protocol without parameters, so
//! scripts and transaction statements work; native prepared statements with
//! them), mapping column types to Lua values, noticing a connection the
//! server dropped, and escaping literals the way the connection would. The
//! Lua API, handles, thread-pool jobs and the per-connection lock come from
//! `lunet-db`.
//!
//! Library lifecycle: `mysql_library_init` runs once, on the loop thread,
//! when the module is loaded (before any connection); every pool thread that
//! touches the library calls `mysql_thread_init` first and `mysql_thread_end`
//! when it exits (a thread-local guard). `mysql_library_end` is never called:
//! pool threads may still be closing connections while the process exits.

#![allow(non_snake_case)]
#![allow(clippy::missing_safety_doc)]

mod conn;
mod escape;
mod rows;
mod stmt;

use std::ffi::{c_int, CStr};
use std::sync::OnceLock;

use lunet_abi::ffi::{self, lua_State};
use lunet_abi::lua::{raw_field, to_number, type_name, Raise};
use lunet_abi::lua_fn;
use lunet_db::{CacheStats, DbError, Driver, Exec, Param, Rows, Session};
use mysqlclient_sys as my;

pub use conn::{Config, Conn, Info};

struct Mysql;

impl Driver for Mysql {
    const NAME: &'static str = "mysql";
    const METATABLE: &'static CStr = c"lunet.mysql.connection";

    type Config = Config;
    type Conn = Conn;
    type Info = Info;

    unsafe fn config(L: *mut lua_State, idx: c_int) -> Result<Config, Raise> {
        read_config(L, idx)
    }

    fn connect(config: Config) -> Result<(Conn, Info), DbError> {
        thread_ready();
        Conn::connect(&config)
    }

    fn query(conn: &mut Conn, sql: &[u8], params: &[Param]) -> Result<Rows, DbError> {
        thread_ready();
        conn.query(sql, params)
    }

    fn exec(conn: &mut Conn, sql: &[u8], params: &[Param]) -> Result<Exec, DbError> {
        thread_ready();
        conn.exec(sql, params)
    }

    fn cache_stats(conn: &Conn) -> CacheStats {
        conn.cache_stats()
    }

    fn session(conn: &Conn) -> Session {
        Session { in_transaction: conn.in_transaction(), broken: conn.is_broken() }
    }

    fn close(conn: Conn) {
        thread_ready();
        drop(conn);
    }

    /// `KILL QUERY` over a side connection (see [`conn::Killer`]): the
    /// statement fails with "Query execution was interrupted" (1317) and
    /// the connection stays usable. (Inside a transaction only that
    /// statement is rolled back, as for any failed statement.)
    fn interrupt(info: &Info) {
        thread_ready();
        info.killer.kill_query();
    }

    fn escape(info: Option<&Info>, s: &[u8]) -> Vec<u8> {
        escape::escape(info.map(|i| &*i.escape), s)
    }
}

/// Calls `mysql_thread_end` when a thread that used the library exits.
struct ThreadGuard;

impl Drop for ThreadGuard {
    fn drop(&mut self) {
        unsafe { my::mysql_thread_end() };
    }
}

thread_local! {
    static THREAD: ThreadGuard = {
        unsafe { my::mysql_thread_init() };
        ThreadGuard
    };
}

/// Makes sure the calling thread ran `mysql_thread_init` (once per thread).
pub(crate) fn thread_ready() {
    // During thread teardown the guard may already be gone; the library
    // (Connector/C keeps no per-thread state) still works then.
    let _ = THREAD.try_with(|_| ());
}

/// `mysql_library_init`, once per process, on the loop thread.
fn library_init() -> Result<(), Raise> {
    static INIT: OnceLock<c_int> = OnceLock::new();
    let rc = *INIT.get_or_init(|| unsafe { my::mysql_server_init(0, std::ptr::null_mut(), std::ptr::null_mut()) });
    if rc != 0 {
        return Err(format!("lunet.mysql: mysql_library_init failed (code {rc})").into());
    }
    Ok(())
}

const OPEN: &str = "mysql.open";

/// Reads a string field of the `open` table (absent: `None`).
unsafe fn string_field(L: *mut lua_State, idx: c_int, name: &CStr) -> Result<Option<Vec<u8>>, Raise> {
    let r = match raw_field(L, idx, name) {
        ffi::LUA_TNIL => Ok(None),
        ffi::LUA_TSTRING => {
            let mut len = 0usize;
            let p = ffi::lua_tolstring(L, -1, &mut len);
            Ok(Some(std::slice::from_raw_parts(p.cast::<u8>(), len).to_vec()))
        }
        _ => Err(format!(
            "bad argument #{idx} to '{OPEN}' (field '{}' must be a string, got {})",
            name.to_string_lossy(),
            type_name(L, -1)
        )
        .into()),
    };
    ffi::lua_settop(L, -2);
    r
}

/// Reads an integer field in `0..=max` (numeric strings accepted).
unsafe fn int_field(L: *mut lua_State, idx: c_int, name: &CStr, max: u32) -> Result<Option<u32>, Raise> {
    let r = if raw_field(L, idx, name) == ffi::LUA_TNIL {
        Ok(None)
    } else {
        match to_number(L, -1) {
            Some(n) if n.fract() == 0.0 && (0.0..=max as f64).contains(&n) => Ok(Some(n as u32)),
            _ => Err(format!(
                "bad argument #{idx} to '{OPEN}' (field '{}' must be an integer from 0 to {max}, got {})",
                name.to_string_lossy(),
                type_name(L, -1)
            )
            .into()),
        }
    };
    ffi::lua_settop(L, -2);
    r
}

unsafe fn read_config(L: *mut lua_State, idx: c_int) -> Result<Config, Raise> {
    library_init()?;
    let mut c = Config::default();
    match ffi::lua_type(L, idx) {
        ffi::LUA_TNONE | ffi::LUA_TNIL => {}
        // A bare string is the host (or, containing '/', the socket path).
        ffi::LUA_TSTRING => {
            let mut len = 0usize;
            let p = ffi::lua_tolstring(L, idx, &mut len);
            let s = std::slice::from_raw_parts(p.cast::<u8>(), len).to_vec();
            if s.contains(&b'/') {
                c.host = Some(b"localhost".to_vec());
                c.socket = Some(s);
            } else {
                c.host = Some(s);
            }
        }
        ffi::LUA_TTABLE => {
            if let Some(h) = string_field(L, idx, c"host")? {
                c.host = Some(h);
            }
            if let Some(p) = int_field(L, idx, c"port", 65535)? {
                c.port = p;
            }
            c.user = string_field(L, idx, c"user")?;
            c.password = string_field(L, idx, c"password")?;
            c.database = string_field(L, idx, c"database")?;
            if let Some(cs) = string_field(L, idx, c"charset")? {
                c.charset = cs;
            }
            c.socket = string_field(L, idx, c"socket")?;
            // A socket path alone means the local server through that socket.
            if c.socket.is_some() && c.host == Config::default().host {
                let explicit = string_field(L, idx, c"host")?.is_some();
                if !explicit {
                    c.host = Some(b"localhost".to_vec());
                }
            }
            if let Some(t) = int_field(L, idx, c"connect_timeout", 31_536_000)? {
                c.connect_timeout = t;
            }
        }
        _ => {
            return Err(format!("bad argument #{idx} to '{OPEN}' (table or string expected, got {})", type_name(L, idx)).into())
        }
    }
    Ok(c)
}

lua_fn! {
    /// `require("lunet.mysql")`
    #[no_mangle]
    pub fn luaopen_lunet_mysql(L) {
        library_init()?;
        lunet_db::open_module::<Mysql>(L)
    }
}

#[cfg(test)]
mod tests;
