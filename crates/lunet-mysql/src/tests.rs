//! Tests against the local MariaDB test server (127.0.0.1:3306, root, empty
//! password; `make test` starts it). They use temporary tables only, which
//! vanish with their connection. An unreachable server fails them.

use super::*;
use lunet_db::Value;

fn server() -> Config {
    let mut c = Config::default();
    if let Ok(h) = std::env::var("LUNET_DB_HOST") {
        c.host = Some(h.into_bytes());
    }
    if let Some(p) = std::env::var("LUNET_DB_PORT").ok().and_then(|p| p.parse().ok()) {
        c.port = p;
    }
    c.user = Some(std::env::var("LUNET_DB_USER").unwrap_or_else(|_| "root".into()).into_bytes());
    c.password = std::env::var("LUNET_DB_PASS").ok().map(String::into_bytes);
    c.database = Some(std::env::var("LUNET_DB_NAME").unwrap_or_else(|_| "test".into()).into_bytes());
    c
}

fn open() -> Conn {
    library_init().unwrap();
    Mysql::connect(server()).map_err(|e| format!("MariaDB test server unreachable: {e}")).unwrap().0
}

fn col(rows: &Rows, r: usize, name: &str) -> Value {
    let i = rows.columns().iter().position(|c| c == name.as_bytes()).unwrap_or_else(|| panic!("no column {name}"));
    rows.row(r)[i].clone()
}

fn both(c: &mut Conn, sql: &str, params: &[Param]) -> (Rows, Rows) {
    let text = Mysql::query(c, sql.replace('?', "NULL").as_bytes(), &[]).unwrap();
    let bin = Mysql::query(c, sql.as_bytes(), params).unwrap();
    (text, bin)
}

#[test]
fn types_read_the_same_in_both_protocols() {
    let mut c = open();
    Mysql::exec(
        &mut c,
        b"CREATE TEMPORARY TABLE t(i INT, u BIGINT UNSIGNED, b BIGINT, f FLOAT, d DOUBLE, m DECIMAL(20,6),
          dt DATETIME(6), tm TIME, y YEAR, bo BOOLEAN, bi BIT(10), j JSON, tx TEXT, bl BLOB, n INT);
          INSERT INTO t VALUES (-7, 18446744073709551615, 9007199254740992, 1.2345678, 0.30000000000000004,
          12.5, '2024-01-02 03:04:05.5', '-838:59:59', 2024, TRUE, b'1010', '{\"a\": 1}', 'h\xc3\xa9', x'00ff', NULL)",
        &[],
    )
    .unwrap();
    // The same SELECT through the text protocol and as a prepared statement.
    let sql = "SELECT i, u, b, f, d, m, dt, tm, y, bo, bi, j, tx, bl, n FROM t WHERE 1 = COALESCE(?, 1)";
    let (text, bin) = both(&mut c, sql, &[Param::Int(1)]);
    assert_eq!(text, bin);
    let r = &text;
    assert_eq!(col(r, 0, "i"), Value::Int(-7));
    assert_eq!(col(r, 0, "u"), Value::Float(18446744073709551615.0));
    assert_eq!(col(r, 0, "b"), Value::Int(1 << 53));
    assert_eq!(col(r, 0, "f"), Value::Float(1.23457));
    assert_eq!(col(r, 0, "d"), Value::Float(0.30000000000000004));
    assert_eq!(col(r, 0, "m"), Value::Bytes(b"12.500000".to_vec()));
    assert_eq!(col(r, 0, "dt"), Value::Bytes(b"2024-01-02 03:04:05.500000".to_vec()));
    assert_eq!(col(r, 0, "tm"), Value::Bytes(b"-838:59:59".to_vec()));
    assert_eq!(col(r, 0, "y"), Value::Int(2024));
    assert_eq!(col(r, 0, "bo"), Value::Int(1));
    assert_eq!(col(r, 0, "bi"), Value::Bytes(vec![0, 10]));
    assert_eq!(col(r, 0, "j"), Value::Bytes(b"{\"a\": 1}".to_vec()));
    assert_eq!(col(r, 0, "tx"), Value::Bytes("hé".as_bytes().to_vec()));
    assert_eq!(col(r, 0, "bl"), Value::Bytes(vec![0, 255]));
    assert_eq!(col(r, 0, "n"), Value::Null);
}

#[test]
fn parameters_bind_natively() {
    let mut c = open();
    let p = [Param::Null, Param::Bool(true), Param::Int(-(1 << 53)), Param::Float(0.1), Param::Bytes(b"a\0b\xff".to_vec())];
    let rows = Mysql::query(&mut c, b"SELECT ? AS n, ? AS t, ? AS i, ? AS d, ? AS s", &p).unwrap();
    assert_eq!(
        rows.row(0),
        &[Value::Null, Value::Int(1), Value::Int(-(1 << 53)), Value::Float(0.1), Value::Bytes(b"a\0b\xff".to_vec())]
    );
    let e = Mysql::query(&mut c, b"SELECT ?, ?", &[Param::Int(1)]).unwrap_err().message;
    assert!(e.starts_with("parameter count mismatch: "), "{e}");
    let e = Mysql::exec(&mut c, b"DO 1", &[Param::Int(1)]).unwrap_err().message;
    assert!(e.starts_with("parameter count mismatch: "), "{e}");
}

#[test]
fn long_values_both_ways() {
    let mut c = open();
    Mysql::exec(&mut c, b"CREATE TEMPORARY TABLE big(id INT PRIMARY KEY, v LONGBLOB)", &[]).unwrap();
    let big: Vec<u8> = (0..(3 << 20)).map(|i: u32| (i % 251) as u8).collect();
    let e = Mysql::exec(&mut c, b"INSERT INTO big VALUES (?, ?)", &[Param::Int(1), Param::Bytes(big.clone())]).unwrap();
    assert_eq!(e.affected_rows, 1);
    for params in [vec![], vec![Param::Int(1)]] {
        let sql: &[u8] = if params.is_empty() { b"SELECT v, LENGTH(v) AS n FROM big" } else { b"SELECT v, LENGTH(v) AS n FROM big WHERE id = ?" };
        let rows = Mysql::query(&mut c, sql, &params).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(col(&rows, 0, "n"), Value::Int(big.len() as i64));
        assert!(col(&rows, 0, "v") == Value::Bytes(big.clone()), "value changed");
    }
}

#[test]
fn scripts_counts_and_errors() {
    let mut c = open();
    let e = Mysql::exec(
        &mut c,
        b"CREATE TEMPORARY TABLE s(id INT AUTO_INCREMENT PRIMARY KEY, v INT);
          INSERT INTO s(v) VALUES (1), (2), (3); SELECT 1; UPDATE s SET v = v + 1 WHERE v > 1",
        &[],
    )
    .unwrap();
    assert_eq!(e, Exec { affected_rows: 5, last_insert_id: 1 });
    let e = Mysql::exec(&mut c, b"INSERT INTO s(v) VALUES (?)", &[Param::Int(9)]).unwrap();
    assert_eq!(e, Exec { affected_rows: 1, last_insert_id: 4 });
    // query returns the first result set of a script.
    let rows = Mysql::query(&mut c, b"SELECT 1 AS a; SELECT 2 AS b", &[]).unwrap();
    assert_eq!(rows.columns(), &[b"a".to_vec()]);
    let e = Mysql::query(&mut c, b"SELECT * FROM no_such_table_here", &[]).unwrap_err();
    assert_eq!(e.code.as_deref(), Some("1146/42S02"), "{e:?}");
    let err = e.message;
    let e = Mysql::query(&mut c, b"SELECT * FROM no_such_table_here WHERE 1 = ?", &[Param::Int(1)]).unwrap_err();
    assert_eq!(e.code.as_deref(), Some("1146/42S02"), "{e:?}");
    let e = Mysql::query(&mut c, b"SELECT ?, ?", &[Param::Int(1)]).unwrap_err();
    assert_eq!(e.code, None, "our own check has no code");
    assert!(err.contains("no_such_table_here' doesn't exist"), "{err}");
    let err = Mysql::exec(&mut c, b"DO 1; SELEC 2; DO 3", &[]).unwrap_err().message;
    assert!(err.contains("You have an error in your SQL syntax"), "{err}");
    // Still usable afterwards, in both protocols.
    assert_eq!(Mysql::query(&mut c, b"SELECT 5 AS x", &[]).unwrap().row(0), &[Value::Int(5)]);
    assert_eq!(Mysql::query(&mut c, b"SELECT ? AS x", &[Param::Int(6)]).unwrap().row(0), &[Value::Int(6)]);
}

#[test]
fn escaping_follows_the_connection() {
    let mut c = open();
    let info = Mysql::connect(server()).unwrap().1;
    let nasty = b"it's a \"test\" \\ with\0nul\n\r\x1a";
    let lit = escape::escape(Some(&*c.escape_info()), nasty);
    let mut sql = b"SELECT '".to_vec();
    sql.extend_from_slice(&lit);
    sql.extend_from_slice(b"' AS s");
    assert_eq!(Mysql::query(&mut c, &sql, &[]).unwrap().row(0), &[Value::Bytes(nasty.to_vec())]);
    drop(info);
    // Under NO_BACKSLASH_ESCAPES quotes are doubled and backslashes kept.
    Mysql::exec(&mut c, b"SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')", &[]).unwrap();
    let lit = escape::escape(Some(&*c.escape_info()), b"a'b\\c");
    assert_eq!(lit, b"a''b\\c");
    let mut sql = b"SELECT '".to_vec();
    sql.extend_from_slice(&lit);
    sql.extend_from_slice(b"' AS s");
    assert_eq!(Mysql::query(&mut c, &sql, &[]).unwrap().row(0), &[Value::Bytes(b"a'b\\c".to_vec())]);
    assert_eq!(Mysql::escape(None, b"a'b"), b"a\\'b");
}

#[test]
fn a_killed_connection_is_broken_and_says_so() {
    let mut victim = open();
    let mut killer = open();
    let id = victim.thread_id();
    Mysql::exec(&mut killer, format!("KILL {id}").as_bytes(), &[]).unwrap();
    let err = Mysql::query(&mut victim, b"SELECT 1", &[]).unwrap_err().message;
    assert!(victim.is_broken(), "not marked broken after: {err}");
    let again = Mysql::query(&mut victim, b"SELECT ?", &[Param::Int(1)]).unwrap_err().message;
    assert_eq!(again, format!("connection is broken: {err}"));
    // KILL QUERY stops only the statement.
    let id = killer.thread_id();
    let mut other = open();
    let t = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        Mysql::exec(&mut other, format!("KILL QUERY {id}").as_bytes(), &[]).unwrap();
    });
    let err = Mysql::query(&mut killer, b"SELECT COUNT(*) FROM seq_1_to_100000000000 WHERE seq % 7 = 3", &[]).unwrap_err().message;
    t.join().unwrap();
    assert_eq!(err, "Query execution was interrupted");
    assert!(!killer.is_broken());
    assert_eq!(Mysql::query(&mut killer, b"SELECT 1 AS x", &[]).unwrap().row(0), &[Value::Int(1)]);
}

#[test]
fn connect_failures_are_the_servers_messages() {
    library_init().unwrap();
    let mut cfg = server();
    cfg.user = Some(b"no_such_user_lunet".to_vec());
    cfg.password = Some(b"x".to_vec());
    let err = Mysql::connect(cfg).err().unwrap();
    assert_eq!(err.code.as_deref(), Some("1045/28000"), "{err:?}");
    let err = err.message;
    assert!(err.contains("Access denied for user 'no_such_user_lunet'"), "{err}");
    let mut cfg = server();
    cfg.port = 1;
    let err = Mysql::connect(cfg).err().unwrap().message;
    assert!(err.contains("Can't connect"), "{err}");
    let mut cfg = server();
    cfg.password = Some(b"a\0b".to_vec());
    assert_eq!(Mysql::connect(cfg).err().unwrap().message, "mysql.open: field 'password' contains a NUL byte");
}

#[test]
fn escaping_matches_the_librarys_own_for_every_charset_and_mode() {
    library_init().unwrap();
    // Inputs with quotes, backslashes, control bytes, valid and broken
    // multibyte sequences (0xbf 0x27 is the classic GBK trap).
    let mut inputs: Vec<Vec<u8>> = vec![
        b"plain".to_vec(),
        b"it's \\ \"q\" \0 \n \r \x1a".to_vec(),
        "h\u{e9}llo \u{2713} \u{1f600}".as_bytes().to_vec(),
        b"\xbf\x27 OR 1=1 -- ".to_vec(),
        b"\x81\x5c\x27\x95\x5c\xe0\x27\xff\xfe\x00\x5c".to_vec(),
        (0u8..=255).collect(),
    ];
    inputs.push(inputs.concat());
    for charset in ["utf8mb4", "latin1", "gbk", "sjis", "big5", "utf8mb3"] {
        let mut cfg = server();
        cfg.charset = charset.as_bytes().to_vec();
        let (mut c, info) = Mysql::connect(cfg).unwrap();
        for mode in ["", ",NO_BACKSLASH_ESCAPES"] {
            let set = format!("SET SESSION sql_mode = CONCAT(@@GLOBAL.sql_mode, '{mode}')");
            Mysql::exec(&mut c, set.as_bytes(), &[]).unwrap();
            for s in &inputs {
                assert_eq!(
                    Mysql::escape(Some(&info), s),
                    c.real_escape(s),
                    "charset {charset}, mode '{mode}', input {s:?}"
                );
            }
        }
    }
}

#[test]
fn every_option_reads_back_in_the_c_type_the_library_reads() {
    use crate::conn::{options, DEFAULT_CONNECT_TIMEOUT};
    use my::mysql_option as o;
    use std::ffi::{c_uint, c_ulong, c_void};
    library_init().unwrap();
    let cfg = Config { connect_timeout: 0, ..Config::default() };
    unsafe {
        let m = my::mysql_init(std::ptr::null_mut());
        assert!(!m.is_null());
        // Start with LOAD DATA LOCAL allowed, whatever the library's default.
        let on: c_uint = 1;
        assert_eq!(my::mysql_options(m, o::MYSQL_OPT_LOCAL_INFILE, (&on as *const c_uint).cast()), 0);
        for opt in options(&cfg, c"utf8mb4") {
            opt.apply(m).unwrap();
        }
        let get = |which, out: *mut c_void| assert_eq!(my::mysql_get_optionv(m, which, out), 0);
        let mut local_infile: c_uint = 7;
        get(o::MYSQL_OPT_LOCAL_INFILE, (&mut local_infile as *mut c_uint).cast());
        assert_eq!(local_infile, 0);
        let mut timeout: c_uint = 0;
        get(o::MYSQL_OPT_CONNECT_TIMEOUT, (&mut timeout as *mut c_uint).cast());
        assert_eq!(timeout, DEFAULT_CONNECT_TIMEOUT); // 0 means the default, not "no limit"
        let mut reconnect: my::my_bool = 7;
        get(o::MYSQL_OPT_RECONNECT, (&mut reconnect as *mut my::my_bool).cast());
        assert_eq!(reconnect, 0);
        let mut truncation: my::my_bool = 7;
        get(o::MYSQL_REPORT_DATA_TRUNCATION, (&mut truncation as *mut my::my_bool).cast());
        assert_eq!(truncation, 1);
        let mut packet: c_ulong = 0;
        get(o::MYSQL_OPT_MAX_ALLOWED_PACKET, (&mut packet as *mut c_ulong).cast());
        assert_eq!(packet as usize, 1 << 30);
        my::mysql_close(m);
    }
}

#[test]
fn empty_sql_is_the_servers_query_was_empty_in_both_protocols() {
    let mut c = open();
    for params in [&[][..], &[Param::Int(1)][..]] {
        assert_eq!(Mysql::query(&mut c, b"", params).unwrap_err().message, "Query was empty");
        assert_eq!(Mysql::exec(&mut c, b"", params).unwrap_err().message, "Query was empty");
    }
    assert_eq!(Mysql::query(&mut c, b"SELECT 1 AS x", &[]).unwrap().row(0), &[Value::Int(1)]);
}

#[test]
fn kill_query_stops_the_statement_and_keeps_the_connection() {
    let (mut c, info) = Mysql::connect(server()).unwrap();
    let info = std::sync::Arc::new(info);
    let killer = {
        let info = info.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            Mysql::interrupt(&info);
        })
    };
    let t0 = std::time::Instant::now();
    let e = Mysql::query(&mut c, b"SELECT SLEEP(5)", &[]).unwrap_err().message;
    assert!(e.contains("interrupted"), "{e}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(4), "{:?}", t0.elapsed());
    killer.join().unwrap();
    assert!(!c.is_broken());
    assert_eq!(Mysql::query(&mut c, b"SELECT 1 AS x", &[]).unwrap().row(0), &[Value::Int(1)]);
    // A kill that finds the session idle does not touch its next statement.
    Mysql::interrupt(&info);
    assert_eq!(Mysql::query(&mut c, b"SELECT 2 AS x", &[]).unwrap().row(0), &[Value::Int(2)]);
}

#[test]
fn prepared_statements_are_cached_with_an_lru_bound() {
    let mut c = open();
    for _ in 0..3 {
        Mysql::query(&mut c, b"SELECT ? AS x", &[Param::Int(1)]).unwrap();
    }
    let s = Mysql::cache_stats(&c);
    assert_eq!((s.hits, s.misses, s.size), (2, 1, 1));
    for i in 0..70 {
        Mysql::query(&mut c, format!("SELECT ? + {i} AS x").as_bytes(), &[Param::Int(1)]).unwrap();
    }
    let s = Mysql::cache_stats(&c);
    assert_eq!((s.size, s.capacity, s.evictions), (64, 64, 7));
    // Evicted statements were closed on the server too.
    let rows = Mysql::query(&mut c, b"SHOW SESSION STATUS LIKE 'Prepared_stmt_count'", &[]).unwrap();
    drop(rows);
    let rows = Mysql::query(&mut c, b"SELECT VARIABLE_VALUE AS n FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'PREPARED_STMT_COUNT'", &[]).unwrap();
    let n: i64 = match &rows.row(0)[0] {
        Value::Bytes(b) => std::str::from_utf8(b).unwrap().parse().unwrap(),
        Value::Int(n) => *n,
        v => panic!("{v:?}"),
    };
    assert!(n >= 64, "{n}");
}
