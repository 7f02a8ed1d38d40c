//! The synchronous baseline for `bench/postgres.lua`: the benchmark's
//! statements run straight through libpq on one connection and one thread,
//! no event loop, no thread pool — what a plain blocking program gets.
//!
//!   postgres_floor <host> <port> <user> <database> <table> <preloaded-rows> <seconds>
//!
//! The table must exist (the Lua benchmark creates it). Prints
//! `select_per_s <n>` and `insert_per_s <n>`. Statements are prepared once
//! and bound the way lunet.postgres binds them (int8 in binary, text as
//! text, results in text), and every field of the result is read.

use std::ffi::{c_char, c_int, CStr, CString};
use std::time::{Duration, Instant};

use pq_sys::*;

fn fail(conn: *mut PGconn, what: &str) -> ! {
    let msg = unsafe { CStr::from_ptr(PQerrorMessage(conn)) }.to_string_lossy();
    eprintln!("postgres_floor: {what}: {msg}");
    std::process::exit(1);
}

/// Runs a prepared statement with binary/text parameters; returns the sum of
/// the integer fields of the result (so that reading them is not optimised away).
fn run(conn: *mut PGconn, name: &CStr, values: &[&[u8]], formats: &[c_int]) -> i64 {
    let ptrs: Vec<*const c_char> = values.iter().map(|v| v.as_ptr().cast()).collect();
    let lens: Vec<c_int> = values.iter().map(|v| v.len() as c_int).collect();
    unsafe {
        let res = PQexecPrepared(conn, name.as_ptr(), values.len() as c_int, ptrs.as_ptr(), lens.as_ptr(), formats.as_ptr(), 0);
        let status = PQresultStatus(res);
        if status != ExecStatusType::PGRES_TUPLES_OK && status != ExecStatusType::PGRES_COMMAND_OK {
            let msg = CStr::from_ptr(PQresultErrorMessage(res)).to_string_lossy().into_owned();
            eprintln!("postgres_floor: statement failed: {msg}");
            std::process::exit(1);
        }
        let mut sum = 0i64;
        for r in 0..PQntuples(res) {
            for c in 0..PQnfields(res) {
                let v = CStr::from_ptr(PQgetvalue(res, r, c)).to_bytes();
                sum += std::str::from_utf8(v).ok().and_then(|s| s.parse::<i64>().ok()).unwrap_or(v.len() as i64);
            }
        }
        PQclear(res);
        sum
    }
}

fn prepare(conn: *mut PGconn, name: &CStr, sql: &str, types: &[Oid]) {
    let sql = CString::new(sql).expect("no NUL in SQL");
    unsafe {
        let res = PQprepare(conn, name.as_ptr(), sql.as_ptr(), types.len() as c_int, types.as_ptr());
        if PQresultStatus(res) != ExecStatusType::PGRES_COMMAND_OK {
            PQclear(res);
            fail(conn, "prepare");
        }
        PQclear(res);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 8 {
        eprintln!("usage: {} <host> <port> <user> <database> <table> <preloaded-rows> <seconds>", args[0]);
        std::process::exit(2);
    }
    let rows: i64 = args[6].parse().expect("preloaded-rows must be a number");
    let seconds: f64 = args[7].parse().expect("seconds must be a number");
    let keys = [c"host", c"port", c"user", c"dbname", c"client_encoding"];
    let values: Vec<CString> = [&args[1], &args[2], &args[3], &args[4], &"UTF8".to_string()]
        .iter()
        .map(|v| CString::new(v.as_str()).expect("no NUL in arguments"))
        .collect();
    let mut kp: Vec<*const c_char> = keys.iter().map(|k| k.as_ptr()).collect();
    let mut vp: Vec<*const c_char> = values.iter().map(|v| v.as_ptr()).collect();
    kp.push(std::ptr::null());
    vp.push(std::ptr::null());
    let conn = unsafe { PQconnectdbParams(kp.as_ptr(), vp.as_ptr(), 0) };
    if conn.is_null() || unsafe { PQstatus(conn) } != ConnStatusType::CONNECTION_OK {
        fail(conn, "connect");
    }
    let table = &args[5];
    prepare(conn, c"sel", &format!("SELECT id, name, score FROM {table} WHERE id = $1"), &[20]);
    prepare(conn, c"ins", &format!("INSERT INTO {table}(name, score) VALUES ($1, $2)"), &[0, 20]);
    let budget = Duration::from_secs_f64(seconds);

    let mut checksum = 0i64;
    let (mut n, t) = (0i64, Instant::now());
    while t.elapsed() < budget {
        let id = (n * 7919) % rows + 1;
        checksum += run(conn, c"sel", &[&id.to_be_bytes()], &[1]);
        n += 1;
    }
    let select_rate = n as f64 / t.elapsed().as_secs_f64();

    // Diagnostic: pipelines of 8 point SELECTs, each with its own sync point
    // (what lunet.postgres sends for statements queued on one connection).
    let (mut n, t) = (0i64, Instant::now());
    while t.elapsed() < budget {
        unsafe {
            PQenterPipelineMode(conn);
            let mut ids = Vec::new();
            for k in 0..8 {
                ids.push(((n + k) * 7919) % rows + 1);
            }
            let vals: Vec<[u8; 8]> = ids.iter().map(|id| id.to_be_bytes()).collect();
            for v in &vals {
                let p = [v.as_ptr().cast::<c_char>()];
                PQsendQueryPrepared(conn, c"sel".as_ptr(), 1, p.as_ptr(), [8].as_ptr(), [1].as_ptr(), 0);
                PQpipelineSync(conn);
            }
            for _ in 0..8 {
                loop {
                    let r = PQgetResult(conn);
                    if r.is_null() {
                        break;
                    }
                    PQclear(r);
                }
                let r = PQgetResult(conn); // the sync
                PQclear(r);
            }
            PQexitPipelineMode(conn);
        }
        n += 8;
    }
    let pipelined_rate = n as f64 / t.elapsed().as_secs_f64();

    let (mut n, t) = (0i64, Instant::now());
    while t.elapsed() < budget {
        run(conn, c"ins", &[b"new item\0", &n.to_be_bytes()], &[0, 1]);
        n += 1;
    }
    let insert_rate = n as f64 / t.elapsed().as_secs_f64();

    unsafe { PQfinish(conn) };
    println!("select_per_s {select_rate:.0}");
    println!("insert_per_s {insert_rate:.0}");
    println!("pipelined_select_per_s {pipelined_rate:.0}");
    println!("checksum {checksum}");
}
