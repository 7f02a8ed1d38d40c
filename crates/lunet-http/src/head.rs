//! Pure parsing of HTTP/1.1 message heads (with `httparse`) and the framing
//! rules on top of it: how long the body is, whether the connection stays
//! open, and the request-smuggling defences of RFC 9112 (section 6.3).
//! No Lua here: `lua_api` turns the results into Lua values.

use std::mem::MaybeUninit;

use httparse::{Header, ParserConfig, Status};

/// The most headers a message may carry, whatever the configured limit.
pub const HEADERS_CAP: usize = 512;

/// What a request's head may be.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Header fields (431 past it).
    pub max_headers: usize,
    /// The request line, its CRLF included (414 past it).
    pub max_line: usize,
    /// The whole head, request line and blank line included (431 past it).
    pub max_head: usize,
}

/// How the body of a message is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// No body (a request without Content-Length or Transfer-Encoding).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the peer closes (responses only).
    Close,
}

/// A parsed request head. Names are as received; values are raw bytes.
#[derive(Debug)]
pub struct Request<'h, 'b> {
    pub head_len: usize,
    pub method: &'b str,
    pub target: &'b str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub headers: &'h [Header<'b>],
    pub body: Body,
    /// The connection must not be reused after this exchange.
    pub close: bool,
    /// The client sent `Expect: 100-continue`.
    pub expect_continue: bool,
}

/// A parsed response head.
#[derive(Debug)]
pub struct Response<'h, 'b> {
    pub head_len: usize,
    pub status: u16,
    pub reason: &'b str,
    pub minor: u8,
    pub headers: &'h [Header<'b>],
    pub body: Body,
    pub close: bool,
}

/// The outcome of parsing what has arrived so far.
#[derive(Debug)]
pub enum Parsed<T> {
    /// The head is not complete yet (and within the limits).
    Partial,
    Done(T),
    /// Reject with this status (requests) and reason.
    Fail(u16, &'static str),
}

/// Room for the header fields of one message, left uninitialised (httparse
/// writes only the fields it finds: no 16 KiB clearing per request).
pub type Storage<'b> = [MaybeUninit<Header<'b>>; HEADERS_CAP];

/// A fresh header array for `parse_request` / `parse_response`.
pub fn header_storage<'b>() -> Storage<'b> {
    [const { MaybeUninit::uninit() }; HEADERS_CAP]
}

fn eq_ci(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Whether the comma-separated list `v` holds the token `tok` (any case).
pub fn has_token(v: &[u8], tok: &[u8]) -> bool {
    v.split(|&c| c == b',').any(|t| eq_ci(trim(t), tok))
}

/// Content-Length: one or more decimal digits, at most 2^53 (a Lua number
/// holds it exactly); None for anything else.
fn parse_length(v: &[u8]) -> Option<u64> {
    let v = trim(v);
    if v.is_empty() || v.len() > 16 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = v.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
    (n <= 1 << 53).then_some(n)
}

/// The framing fields shared by requests and responses.
#[derive(Default)]
struct Fields {
    lengths: usize,
    length: Option<u64>,
    bad_length: bool,
    te: Option<Vec<u8>>,
    hosts: usize,
    close: bool,
    keep_alive: bool,
    expect: Option<bool>,
}

fn scan(headers: &[Header<'_>]) -> Fields {
    let mut f = Fields::default();
    for h in headers {
        let n = h.name.as_bytes();
        if eq_ci(n, b"content-length") {
            f.lengths += 1;
            match parse_length(h.value) {
                Some(l) => f.length = Some(l),
                None => f.bad_length = true,
            }
        } else if eq_ci(n, b"transfer-encoding") {
            let te = f.te.get_or_insert_with(Vec::new);
            if !te.is_empty() {
                te.push(b',');
            }
            te.extend_from_slice(h.value);
        } else if eq_ci(n, b"host") {
            f.hosts += 1;
        } else if eq_ci(n, b"connection") {
            f.close |= has_token(h.value, b"close");
            f.keep_alive |= has_token(h.value, b"keep-alive");
        } else if eq_ci(n, b"expect") {
            let ok = eq_ci(trim(h.value), b"100-continue");
            f.expect = Some(f.expect.unwrap_or(true) && ok);
        }
    }
    f
}

/// Whether a Transfer-Encoding list ends with `chunked` (and names it once).
fn te_chunked(te: &[u8]) -> (bool, bool) {
    let codings: Vec<&[u8]> = te.split(|&c| c == b',').map(trim).filter(|t| !t.is_empty()).collect();
    let last = codings.last().is_some_and(|c| eq_ci(c, b"chunked"));
    let count = codings.iter().filter(|c| eq_ci(c, b"chunked")).count();
    (last, count == 1)
}

/// Whether the request line is well formed but for its version
/// (`METHOD target HTTP/d.d`): 505 then, 400 for anything else.
fn names_a_version(buf: &[u8]) -> bool {
    let line = buf.split(|&c| c == b'\n').next().unwrap_or(b"");
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let parts: Vec<&[u8]> = line.split(|&c| c == b' ').collect();
    matches!(parts.as_slice(), [m, t, v] if !m.is_empty() && !t.is_empty()
        && v.len() == 8 && v.starts_with(b"HTTP/") && v[5].is_ascii_digit() && v[6] == b'.' && v[7].is_ascii_digit())
}

/// Parses the head of a request at the start of `buf`.
pub fn parse_request<'h, 'b>(
    buf: &'b [u8],
    storage: &'h mut [MaybeUninit<Header<'b>>],
    lim: Limits,
) -> Parsed<Request<'h, 'b>> {
    let n = lim.max_headers.clamp(1, storage.len());
    let mut req = httparse::Request::new(&mut []);
    let line_end = buf.iter().position(|&c| c == b'\n');
    match line_end {
        Some(e) if e + 1 > lim.max_line => return Parsed::Fail(414, "request line too long"),
        None if buf.len() >= lim.max_line => return Parsed::Fail(414, "request line too long"),
        _ => {}
    }
    let head_len = match req.parse_with_uninit_headers(buf, &mut storage[..n]) {
        Ok(Status::Complete(len)) => len,
        Ok(Status::Partial) => {
            if buf.len() >= lim.max_head {
                return Parsed::Fail(431, "request header too large");
            }
            return Parsed::Partial;
        }
        Err(httparse::Error::TooManyHeaders) => return Parsed::Fail(431, "too many header fields"),
        Err(httparse::Error::Version) if names_a_version(buf) => {
            return Parsed::Fail(505, "HTTP version not supported")
        }
        Err(httparse::Error::HeaderName | httparse::Error::HeaderValue) => {
            return Parsed::Fail(400, "malformed header field")
        }
        Err(_) => return Parsed::Fail(400, "malformed request line"),
    };
    if head_len > lim.max_head {
        return Parsed::Fail(431, "request header too large");
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Parsed::Fail(400, "malformed request line");
    };
    let headers: &'h [Header<'b>] = req.headers;
    let f = scan(headers);
    if minor == 1 && f.hosts != 1 {
        return Parsed::Fail(400, if f.hosts == 0 { "missing Host header" } else { "duplicate Host header" });
    }
    if f.hosts > 1 {
        return Parsed::Fail(400, "duplicate Host header");
    }
    let body = match (&f.te, f.lengths) {
        (Some(_), n) if n > 0 => return Parsed::Fail(400, "both Content-Length and Transfer-Encoding"),
        (Some(_), _) if minor == 0 => return Parsed::Fail(400, "Transfer-Encoding in an HTTP/1.0 request"),
        (Some(te), _) => match te_chunked(te) {
            (true, true) => Body::Chunked,
            (true, false) => return Parsed::Fail(400, "chunked applied twice"),
            (false, _) if te.split(|&c| c == b',').all(|t| trim(t).is_empty()) => {
                return Parsed::Fail(400, "empty Transfer-Encoding")
            }
            (false, _) => return Parsed::Fail(501, "unsupported transfer coding"),
        },
        (None, 0) => Body::None,
        (None, 1) if f.bad_length => return Parsed::Fail(400, "invalid Content-Length"),
        (None, 1) => Body::Length(f.length.unwrap_or(0)),
        (None, _) => return Parsed::Fail(400, "duplicate Content-Length"),
    };
    if f.expect == Some(false) {
        return Parsed::Fail(417, "unsupported expectation");
    }
    let close = f.close || (minor == 0 && !f.keep_alive);
    Parsed::Done(Request {
        head_len,
        method,
        target,
        minor,
        headers,
        body,
        close,
        expect_continue: f.expect == Some(true) && minor == 1,
    })
}

/// Parses the head of a response to a request made with `method`.
pub fn parse_response<'h, 'b>(
    buf: &'b [u8],
    storage: &'h mut [MaybeUninit<Header<'b>>],
    max_headers: usize,
    max_head: usize,
    method: &[u8],
) -> Parsed<Response<'h, 'b>> {
    let n = max_headers.clamp(1, storage.len());
    let mut res = httparse::Response::new(&mut []);
    let head_len = match ParserConfig::default().parse_response_with_uninit_headers(&mut res, buf, &mut storage[..n]) {
        Ok(Status::Complete(len)) => len,
        Ok(Status::Partial) => {
            if buf.len() >= max_head {
                return Parsed::Fail(0, "response header too large");
            }
            return Parsed::Partial;
        }
        Err(httparse::Error::TooManyHeaders) => return Parsed::Fail(0, "too many response header fields"),
        Err(_) => return Parsed::Fail(0, "malformed response"),
    };
    if head_len > max_head {
        return Parsed::Fail(0, "response header too large");
    }
    let (Some(status), Some(minor)) = (res.code, res.version) else {
        return Parsed::Fail(0, "malformed response");
    };
    let reason = res.reason.unwrap_or("");
    let headers: &'h [Header<'b>] = res.headers;
    let f = scan(headers);
    let no_body = eq_ci(method, b"HEAD") || (100..200).contains(&status) || status == 204 || status == 304;
    let body = if no_body {
        Body::None
    } else {
        match (&f.te, f.lengths) {
            (Some(te), _) => match te_chunked(te) {
                (true, true) => Body::Chunked,
                (true, false) => return Parsed::Fail(0, "malformed response: chunked applied twice"),
                (false, _) => Body::Close,
            },
            (None, 0) => Body::Close,
            (None, _) if f.bad_length => return Parsed::Fail(0, "malformed response: invalid Content-Length"),
            (None, _) => {
                // Several Content-Length fields must agree (RFC 9112 6.3).
                let all: Vec<u64> = headers
                    .iter()
                    .filter(|h| eq_ci(h.name.as_bytes(), b"content-length"))
                    .filter_map(|h| parse_length(h.value))
                    .collect();
                if all.windows(2).any(|w| w[0] != w[1]) {
                    return Parsed::Fail(0, "malformed response: conflicting Content-Length");
                }
                Body::Length(f.length.unwrap_or(0))
            }
        }
    };
    let close = f.close || (minor == 0 && !f.keep_alive) || body == Body::Close;
    Parsed::Done(Response { head_len, status, reason, minor, headers, body, close })
}

/// The size of a chunk from its size line (`1a;ext=1\r\n`, the line end
/// included). None for a malformed line or a size past 2^53.
pub fn chunk_size(line: &[u8]) -> Option<u64> {
    match httparse::parse_chunk_size(line) {
        Ok(Status::Complete((used, size))) if used == line.len() && size <= 1 << 53 => Some(size),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIM: Limits = Limits { max_headers: 100, max_line: 8192, max_head: 16384 };

    fn req(s: &str) -> Result<(Body, bool, bool, usize), (u16, &'static str)> {
        let mut st = header_storage();
        match parse_request(s.as_bytes(), &mut st, LIM) {
            Parsed::Done(r) => Ok((r.body, r.close, r.expect_continue, r.head_len)),
            Parsed::Partial => Err((0, "partial")),
            Parsed::Fail(c, m) => Err((c, m)),
        }
    }

    #[test]
    fn plain_requests() {
        let r = req("GET /a?b HTTP/1.1\r\nHost: x\r\n\r\nrest").unwrap();
        assert_eq!(r, (Body::None, false, false, 30));
        assert_eq!(req("GET / HTTP/1.0\r\n\r\n").unwrap().1, true);
        assert_eq!(req("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap().1, false);
        assert_eq!(req("GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, close\r\n\r\n").unwrap().1, true);
        assert_eq!(req("GET / HTTP/1.1\r\nHost: x\r\n").unwrap_err().0, 0);
    }

    #[test]
    fn bodies() {
        let r = req("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n").unwrap();
        assert_eq!(r.0, Body::Length(12));
        let r = req("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\nExpect: 100-Continue\r\n\r\n").unwrap();
        assert_eq!((r.0, r.2), (Body::Chunked, true));
    }

    #[test]
    fn smuggling_and_bad_lengths_are_rejected() {
        let bad = [
            ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1,1\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
            ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400),
            ("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n", 501),
            ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: x\r\nX : a\r\n\r\n", 400),
            ("GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
            ("G T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("GET / HTTP/1.1 x\r\nHost: x\r\n\r\n", 400),
            ("GET / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n", 417),
        ];
        for (s, code) in bad {
            assert_eq!(req(s).map(|_| ()).unwrap_err().0, code, "{s:?}");
        }
    }

    #[test]
    fn limits() {
        let mut st = header_storage();
        let lim = Limits { max_headers: 2, max_line: 20, max_head: 60 };
        let long_line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(30));
        assert!(matches!(parse_request(long_line.as_bytes(), &mut st, lim), Parsed::Fail(414, _)));
        assert!(matches!(parse_request(&long_line.as_bytes()[..25], &mut st, lim), Parsed::Fail(414, _)));
        let many = "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n";
        assert!(matches!(parse_request(many.as_bytes(), &mut st, lim), Parsed::Fail(431, _)));
        let big = format!("GET / HTTP/1.1\r\nHost: x\r\nA: {}", "v".repeat(60));
        assert!(matches!(parse_request(big.as_bytes(), &mut st, lim), Parsed::Fail(431, _)));
    }

    #[test]
    fn responses() {
        let mut st = header_storage();
        let p = |st: &mut [MaybeUninit<Header<'static>>], s: &'static str, m: &str| match parse_response(s.as_bytes(), st, 100, 65536, m.as_bytes()) {
            Parsed::Done(r) => Some((r.status, r.body, r.close)),
            _ => None,
        };
        assert_eq!(p(&mut st, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc", "GET"), Some((200, Body::Length(3), false)));
        assert_eq!(p(&mut st, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", "HEAD"), Some((200, Body::None, false)));
        assert_eq!(p(&mut st, "HTTP/1.1 204 No\r\n\r\n", "GET"), Some((204, Body::None, false)));
        assert_eq!(p(&mut st, "HTTP/1.0 200 OK\r\n\r\n", "GET"), Some((200, Body::Close, true)));
        assert_eq!(p(&mut st, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "GET"), Some((200, Body::Chunked, false)));
        assert_eq!(p(&mut st, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", "GET"), None);
    }

    /// Mutated and truncated messages never panic, and whatever parses
    /// stays inside the buffer.
    #[test]
    fn mutations_never_panic() {
        let seeds: [&[u8]; 3] = [
            b"POST /a?b=c HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
            b"1a;x=y\r\n",
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let lim = Limits { max_headers: 8, max_line: 64, max_head: 256 };
        for _ in 0..20000 {
            let mut m = seeds[(next() % 3) as usize].to_vec();
            for _ in 0..(next() % 4) {
                let at = (next() as usize) % m.len();
                match next() % 3 {
                    0 => m[at] = next() as u8,
                    1 => m.insert(at, b"\r\n:; \t\0,"[(next() % 8) as usize]),
                    _ => m.truncate(at.max(1)),
                }
            }
            let mut st = header_storage();
            if let Parsed::Done(r) = parse_request(&m, &mut st, lim) {
                assert!(r.head_len <= m.len());
            }
            let mut st = header_storage();
            if let Parsed::Done(r) = parse_response(&m, &mut st, 8, 256, b"GET") {
                assert!(r.head_len <= m.len());
            }
            let _ = chunk_size(&m);
        }
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(chunk_size(b"1a\r\n"), Some(26));
        assert_eq!(chunk_size(b"0;name=value\r\n"), Some(0));
        assert_eq!(chunk_size(b"zz\r\n"), None);
        assert_eq!(chunk_size(b"-1\r\n"), None);
        assert_eq!(chunk_size(b"ffffffffffffffffff\r\n"), None);
        assert_eq!(chunk_size(b"1a"), None);
    }
}
