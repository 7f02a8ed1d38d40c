//! The synchronous floor for `bench/mysql.lua`: the benchmark's statements
//! run straight through the C API on one connection and one thread — no
//! event loop, no thread pool — each statement prepared once and executed
//! over and over, as a careful synchronous program would.
//!
//!   mysql_floor <host> <port> <user> <password> <database> <preloaded-rows> <selects> <inserts>
//!
//! Prints `select_per_s <n>` and `insert_per_s <n>`. Works in a table of its
//! own (`floor_items`), created and dropped here, with the same schema and
//! statements as the Lua benchmark.

use std::ffi::{c_ulong, c_void, CStr, CString};
use std::time::Instant;

use mysqlclient_sys as my;
use my::enum_field_types as ty;

/// What the statements' binds read from and write to.
struct Buffers {
    name: [u8; 64],
    name_len: c_ulong,
    score: i64,
    id: i64,
    got_id: i64,
    got_score: i64,
    got_name: [u8; 64],
    got_name_len: c_ulong,
}

impl Default for Buffers {
    fn default() -> Self {
        Buffers { name: [0; 64], name_len: 0, score: 0, id: 0, got_id: 0, got_score: 0, got_name: [0; 64], got_name_len: 0 }
    }
}

impl Buffers {
    fn set_name(&mut self, s: &str) {
        self.name[..s.len()].copy_from_slice(s.as_bytes());
        self.name_len = s.len() as c_ulong;
    }
}

fn fail(what: &str, msg: *const std::ffi::c_char) -> ! {
    let text = if msg.is_null() { String::new() } else { unsafe { CStr::from_ptr(msg) }.to_string_lossy().into_owned() };
    eprintln!("mysql_floor: {what}: {text}");
    std::process::exit(1);
}

unsafe fn run(m: *mut my::MYSQL, sql: &str) {
    if my::mysql_real_query(m, sql.as_ptr().cast(), sql.len() as c_ulong) != 0 {
        fail(sql, my::mysql_error(m));
    }
}

unsafe fn prepare(m: *mut my::MYSQL, sql: &str) -> *mut my::MYSQL_STMT {
    let st = my::mysql_stmt_init(m);
    if st.is_null() || my::mysql_stmt_prepare(st, sql.as_ptr().cast(), sql.len() as c_ulong) != 0 {
        fail(sql, my::mysql_error(m));
    }
    st
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 9 {
        eprintln!("usage: {} <host> <port> <user> <password> <database> <preloaded-rows> <selects> <inserts>", args[0]);
        std::process::exit(2);
    }
    let c = |i: usize| CString::new(args[i].as_str()).expect("no NUL in arguments");
    let (host, user, password, database) = (c(1), c(3), c(4), c(5));
    let port: u32 = args[2].parse().expect("port must be a number");
    let rows: i64 = args[6].parse().expect("preloaded-rows must be a number");
    let n: i64 = args[7].parse().expect("selects must be a number");
    let n_insert: i64 = args[8].parse().expect("inserts must be a number");

    unsafe {
        my::mysql_server_init(0, std::ptr::null_mut(), std::ptr::null_mut());
        let m = my::mysql_init(std::ptr::null_mut());
        let connected = my::mysql_real_connect(
            m,
            host.as_ptr(),
            user.as_ptr(),
            password.as_ptr(),
            database.as_ptr(),
            port,
            std::ptr::null(),
            0,
        );
        if connected.is_null() {
            fail("connect", my::mysql_error(m));
        }
        run(m, "DROP TABLE IF EXISTS floor_items");
        run(
            m,
            "CREATE TABLE floor_items(id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(64) NOT NULL, score INT NOT NULL) ENGINE=InnoDB",
        );
        // Every buffer the binds point to lives in this box and is only
        // touched through `b` from here on.
        let b: *mut Buffers = Box::into_raw(Box::new(Buffers::default()));
        let ins = prepare(m, "INSERT INTO floor_items(name, score) VALUES (?, ?)");
        let mut params: [my::MYSQL_BIND; 2] = std::mem::zeroed();
        params[0].buffer_type = ty::MYSQL_TYPE_STRING;
        params[0].buffer = (*b).name.as_mut_ptr().cast::<c_void>();
        params[0].buffer_length = (*b).name.len() as c_ulong;
        params[0].length = &mut (*b).name_len;
        params[1].buffer_type = ty::MYSQL_TYPE_LONGLONG;
        params[1].buffer = (&mut (*b).score as *mut i64).cast();
        if my::mysql_stmt_bind_param(ins, params.as_mut_ptr()) != 0 {
            fail("bind", my::mysql_stmt_error(ins));
        }
        run(m, "START TRANSACTION");
        for i in 1..=rows {
            (*b).set_name(&format!("item {i}"));
            (*b).score = i * 3;
            if my::mysql_stmt_execute(ins) != 0 {
                fail("insert", my::mysql_stmt_error(ins));
            }
        }
        run(m, "COMMIT");

        // Point SELECT by primary key, reading every column of the row.
        let sel = prepare(m, "SELECT id, name, score FROM floor_items WHERE id = ?");
        let mut sel_param: [my::MYSQL_BIND; 1] = std::mem::zeroed();
        sel_param[0].buffer_type = ty::MYSQL_TYPE_LONGLONG;
        sel_param[0].buffer = (&mut (*b).id as *mut i64).cast();
        if my::mysql_stmt_bind_param(sel, sel_param.as_mut_ptr()) != 0 {
            fail("bind", my::mysql_stmt_error(sel));
        }
        let mut out: [my::MYSQL_BIND; 3] = std::mem::zeroed();
        out[0].buffer_type = ty::MYSQL_TYPE_LONGLONG;
        out[0].buffer = (&mut (*b).got_id as *mut i64).cast();
        out[1].buffer_type = ty::MYSQL_TYPE_STRING;
        out[1].buffer = (*b).got_name.as_mut_ptr().cast();
        out[1].buffer_length = (*b).got_name.len() as c_ulong;
        out[1].length = &mut (*b).got_name_len;
        out[2].buffer_type = ty::MYSQL_TYPE_LONGLONG;
        out[2].buffer = (&mut (*b).got_score as *mut i64).cast();
        let mut checksum = 0i64;
        let t = Instant::now();
        for i in 0..n {
            (*b).id = (i * 7919) % rows + 1;
            if my::mysql_stmt_execute(sel) != 0 || my::mysql_stmt_bind_result(sel, out.as_mut_ptr()) != 0 {
                fail("select", my::mysql_stmt_error(sel));
            }
            while my::mysql_stmt_fetch(sel) == 0 {
                checksum += (*b).got_id + (*b).got_score + (*b).got_name_len as i64;
            }
            my::mysql_stmt_free_result(sel);
        }
        let select_s = t.elapsed().as_secs_f64();

        // Single-row INSERT, each its own (autocommit) transaction.
        let t = Instant::now();
        for i in 0..n_insert {
            (*b).set_name("new item");
            (*b).score = i;
            if my::mysql_stmt_execute(ins) != 0 {
                fail("insert", my::mysql_stmt_error(ins));
            }
        }
        let insert_s = t.elapsed().as_secs_f64();

        my::mysql_stmt_close(sel);
        my::mysql_stmt_close(ins);
        run(m, "DROP TABLE floor_items");
        my::mysql_close(m);
        drop(Box::from_raw(b));
        println!("select_per_s {:.0}", n as f64 / select_s);
        println!("insert_per_s {:.0}", n_insert as f64 / insert_s);
        println!("checksum {checksum}");
    }
}
