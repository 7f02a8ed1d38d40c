//! The read buffer of a stream connection and the read requests it answers:
//! pure Rust, no libuv, unit-tested on its own.
//!
//! A connection's bytes that no read has taken yet wait here. A request
//! ([`Request`]) is answered by [`scan`], which looks at a byte slice (the
//! buffer, or libuv's receive buffer directly when the connection buffer is
//! empty) and says how many bytes to return and how many to consume. The
//! buffer frees its memory whenever it is drained, so an idle connection holds
//! no buffer at all.

/// What a read asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Whatever is there, up to `limit` bytes (`socket.read(conn)`).
    Any { limit: usize },
    /// Exactly this many bytes.
    Exactly(usize),
    /// A line ending in `\n`; `keep`: with its `\n` or `\r\n`, otherwise
    /// without. `max` bounds the line, its terminator included.
    Line { keep: bool, max: usize },
    /// The bytes before `delim` (and `delim` itself when `inclusive`); `max`
    /// bounds the bytes up to and including the delimiter.
    Until { delim: Box<[u8]>, inclusive: bool, max: usize },
    /// Everything until the end of the stream (`max` bounds it, if given).
    All { max: Option<usize> },
}

/// Default bound of `"*l"`/`"*L"` reads.
pub const LINE_MAX: usize = 64 * 1024;
/// Default bound of delimited reads.
pub const UNTIL_MAX: usize = 1024 * 1024;

/// The answer of [`scan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// Return the first `len` bytes and consume the first `consume` bytes.
    Ready { len: usize, consume: usize },
    /// Not enough bytes yet; the next search can start at `from`.
    More { from: usize },
    /// The frame is longer than the request's bound.
    TooLong,
}

impl Request {
    /// Whether a failure of this read returns the bytes received so far.
    pub fn framed(&self) -> bool {
        !matches!(self, Request::Any { .. })
    }

    /// The most bytes this request may need buffered before it is answered
    /// (reading must go on until then), if bounded.
    pub fn bound(&self) -> Option<usize> {
        match self {
            Request::Any { .. } => Some(1),
            Request::Exactly(n) => Some(*n),
            Request::Line { max, .. } | Request::Until { max, .. } => Some(*max),
            Request::All { max } => max.map(|m| m.saturating_add(1)),
        }
    }
}

/// Answers `req` from `data`. `from` is where the search for a terminator may
/// start (everything before it was searched already); `eof`: no more bytes
/// will come.
pub fn scan(data: &[u8], req: &Request, from: usize, eof: bool) -> Scan {
    let n = data.len();
    match req {
        Request::Any { limit } => {
            if n == 0 {
                Scan::More { from: 0 }
            } else {
                let len = n.min((*limit).max(1));
                Scan::Ready { len, consume: len }
            }
        }
        Request::Exactly(want) => {
            if n >= *want {
                Scan::Ready { len: *want, consume: *want }
            } else {
                Scan::More { from: 0 }
            }
        }
        Request::Line { keep, max } => {
            let end = n.min(*max);
            let start = from.min(end);
            match memchr::memchr(b'\n', &data[start..end]) {
                Some(i) => {
                    let nl = start + i;
                    let len = if *keep {
                        nl + 1
                    } else if nl > 0 && data[nl - 1] == b'\r' {
                        nl - 1
                    } else {
                        nl
                    };
                    Scan::Ready { len, consume: nl + 1 }
                }
                None if n >= *max => Scan::TooLong,
                None => Scan::More { from: end },
            }
        }
        Request::Until { delim, inclusive, max } => {
            let d = delim.len();
            let end = n.min(*max);
            let start = from.min(end);
            match memchr::memmem::find(&data[start..end], delim) {
                Some(i) => {
                    let at = start + i;
                    let len = if *inclusive { at + d } else { at };
                    Scan::Ready { len, consume: at + d }
                }
                None if n >= *max => Scan::TooLong,
                // A delimiter may straddle what is here and what comes next.
                None => Scan::More { from: end.saturating_sub(d.saturating_sub(1)) },
            }
        }
        Request::All { max } => match max {
            Some(m) if n > *m => Scan::TooLong,
            _ if eof => Scan::Ready { len: n, consume: n },
            _ => Scan::More { from: 0 },
        },
    }
}

/// Bytes received and not yet read.
#[derive(Default, Debug)]
pub struct ReadBuf {
    data: Vec<u8>,
    pos: usize,
    /// How far the current request's terminator search got.
    scanned: usize,
}

impl ReadBuf {
    pub fn len(&self) -> usize {
        self.data.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The unread bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data[self.pos..]
    }

    /// Bytes of memory held (for tests and statistics).
    pub fn capacity(&self) -> usize {
        self.data.capacity()
    }

    /// Appends bytes that arrived.
    pub fn extend(&mut self, b: &[u8]) {
        if b.is_empty() {
            return;
        }
        if self.pos > 0 && self.data.len() + b.len() > self.data.capacity() {
            // Reuse the space of what was read before growing.
            self.data.drain(..self.pos);
            self.pos = 0;
        }
        self.data.extend_from_slice(b);
    }

    /// Makes room for what `req` still needs (at most `cap` bytes in all), so
    /// that a large exact read arriving in pieces is copied once.
    pub fn reserve_for(&mut self, req: &Request, cap: usize) {
        if let Request::Exactly(n) = req {
            let want = (*n).min(cap);
            if want > self.len() && self.data.capacity() - self.pos < want {
                if self.pos > 0 {
                    self.data.drain(..self.pos);
                    self.pos = 0;
                }
                self.data.reserve_exact(want - self.data.len());
            }
        }
    }

    /// Puts bytes back in front of the unread ones.
    pub fn unread(&mut self, b: &[u8]) {
        if b.is_empty() {
            return;
        }
        self.scanned = 0;
        if self.pos >= b.len() {
            self.pos -= b.len();
            self.data[self.pos..self.pos + b.len()].copy_from_slice(b);
            return;
        }
        let mut v = Vec::with_capacity(b.len() + self.len());
        v.extend_from_slice(b);
        v.extend_from_slice(self.bytes());
        self.data = v;
        self.pos = 0;
    }

    /// Answers `req` from the buffered bytes, remembering how far a search
    /// got so that bytes arriving one by one are not searched again.
    pub fn scan(&mut self, req: &Request, eof: bool) -> Scan {
        let r = scan(self.bytes(), req, self.scanned, eof);
        self.scanned = match r {
            Scan::More { from } => from,
            _ => 0,
        };
        r
    }

    /// Forgets the search position (a new request starts).
    pub fn restart(&mut self) {
        self.scanned = 0;
    }

    /// Drops the first `n` unread bytes; a drained buffer frees its memory.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.pos += n.min(self.len());
        self.scanned = 0;
        if self.pos == self.data.len() {
            self.data = Vec::new();
            self.pos = 0;
        }
    }

    /// Drops everything (the connection closed).
    pub fn clear(&mut self) {
        *self = ReadBuf::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(keep: bool, max: usize) -> Request {
        Request::Line { keep, max }
    }
    fn until(d: &str, inclusive: bool, max: usize) -> Request {
        Request::Until { delim: d.as_bytes().into(), inclusive, max }
    }

    /// Feeds `input` in pieces of `step` bytes and collects answers to `req`
    /// repeated until the input ends.
    fn feed(input: &[u8], step: usize, req: &Request) -> (Vec<Vec<u8>>, Vec<u8>) {
        let mut rb = ReadBuf::default();
        let mut out = Vec::new();
        for chunk in input.chunks(step.max(1)) {
            rb.extend(chunk);
            while let Scan::Ready { len, consume } = rb.scan(req, false) {
                out.push(rb.bytes()[..len].to_vec());
                rb.consume(consume);
            }
        }
        (out, rb.bytes().to_vec())
    }

    #[test]
    fn any_takes_up_to_limit() {
        let r = Request::Any { limit: 3 };
        assert_eq!(scan(b"", &r, 0, false), Scan::More { from: 0 });
        assert_eq!(scan(b"ab", &r, 0, false), Scan::Ready { len: 2, consume: 2 });
        assert_eq!(scan(b"abcdef", &r, 0, false), Scan::Ready { len: 3, consume: 3 });
    }

    #[test]
    fn exactly_waits_for_n() {
        let r = Request::Exactly(4);
        assert_eq!(scan(b"abc", &r, 0, false), Scan::More { from: 0 });
        assert_eq!(scan(b"abcde", &r, 0, false), Scan::Ready { len: 4, consume: 4 });
        assert_eq!(scan(b"", &Request::Exactly(0), 0, false), Scan::Ready { len: 0, consume: 0 });
    }

    #[test]
    fn lines_with_and_without_terminators() {
        let input = b"one\r\ntwo\n\nlone\rcr\r\nend";
        for step in [1, 2, 3, 7, 100] {
            let (got, rest) = feed(input, step, &line(false, 64));
            assert_eq!(got, vec![b"one".to_vec(), b"two".to_vec(), b"".to_vec(), b"lone\rcr".to_vec()], "step {step}");
            assert_eq!(rest, b"end");
            let (got, _) = feed(input, step, &line(true, 64));
            assert_eq!(got[0], b"one\r\n");
            assert_eq!(got[2], b"\n");
        }
    }

    #[test]
    fn line_bound_includes_terminator() {
        assert_eq!(scan(b"abc\n", &line(false, 4), 0, false), Scan::Ready { len: 3, consume: 4 });
        assert_eq!(scan(b"abcd\n", &line(false, 4), 0, false), Scan::TooLong);
        assert_eq!(scan(b"abcd", &line(false, 4), 0, false), Scan::TooLong);
        assert_eq!(scan(b"abc", &line(false, 4), 0, false), Scan::More { from: 3 });
    }

    #[test]
    fn line_bytes_are_binary_safe() {
        let (got, _) = feed(b"a\0b\r\0\n", 1, &line(false, 64));
        assert_eq!(got, vec![b"a\0b\r\0".to_vec()]);
    }

    #[test]
    fn until_finds_delimiters_split_across_arrivals() {
        let input = b"head--BOUNDARYbody--BOUNDARY-tail";
        for step in 1..12 {
            let (got, rest) = feed(input, step, &until("--BOUNDARY", false, 1000));
            assert_eq!(got, vec![b"head".to_vec(), b"body".to_vec()], "step {step}");
            assert_eq!(rest, b"-tail");
            let (got, _) = feed(input, step, &until("--BOUNDARY", true, 1000));
            assert_eq!(got[0], b"head--BOUNDARY");
        }
    }

    #[test]
    fn until_overlapping_prefixes() {
        let (got, _) = feed(b"aaab", 1, &until("aab", false, 100));
        assert_eq!(got, vec![b"a".to_vec()]);
    }

    #[test]
    fn until_bound() {
        assert_eq!(scan(b"abc::", &until("::", false, 5), 0, false), Scan::Ready { len: 3, consume: 5 });
        assert_eq!(scan(b"abcd::", &until("::", false, 5), 0, false), Scan::TooLong);
    }

    #[test]
    fn all_needs_eof_and_honours_max() {
        let r = Request::All { max: Some(4) };
        assert_eq!(scan(b"abc", &r, 0, false), Scan::More { from: 0 });
        assert_eq!(scan(b"abc", &r, 0, true), Scan::Ready { len: 3, consume: 3 });
        assert_eq!(scan(b"abcde", &r, 0, false), Scan::TooLong);
        assert_eq!(scan(b"", &Request::All { max: None }, 0, true), Scan::Ready { len: 0, consume: 0 });
    }

    #[test]
    fn unread_goes_in_front() {
        let mut rb = ReadBuf::default();
        rb.extend(b"world");
        rb.unread(b"hello ");
        assert_eq!(rb.bytes(), b"hello world");
        rb.consume(6);
        rb.unread(b"big ");
        assert_eq!(rb.bytes(), b"big world");
        let mut empty = ReadBuf::default();
        empty.unread(b"x");
        assert_eq!(empty.bytes(), b"x");
    }

    #[test]
    fn drained_buffer_holds_no_memory() {
        let mut rb = ReadBuf::default();
        rb.extend(&[7u8; 10_000]);
        rb.consume(9_999);
        assert!(rb.capacity() >= 10_000);
        rb.consume(1);
        assert_eq!(rb.capacity(), 0);
        assert!(rb.is_empty());
    }

    #[test]
    fn extend_reuses_consumed_space() {
        let mut rb = ReadBuf::default();
        rb.extend(&[1u8; 100]);
        let cap = rb.capacity();
        rb.consume(90);
        rb.extend(&[2u8; 50]);
        assert_eq!(rb.len(), 60);
        assert!(rb.capacity() <= cap.max(150));
        assert_eq!(&rb.bytes()[..10], &[1u8; 10]);
        assert_eq!(&rb.bytes()[10..], &[2u8; 50]);
    }

    #[test]
    fn search_resumes_where_it_stopped() {
        let mut rb = ReadBuf::default();
        let r = line(false, 1 << 20);
        for _ in 0..1000 {
            rb.extend(b"x");
            assert!(matches!(rb.scan(&r, false), Scan::More { .. }));
        }
        assert_eq!(rb.scanned, 1000);
        rb.extend(b"\n");
        assert_eq!(rb.scan(&r, false), Scan::Ready { len: 1000, consume: 1001 });
    }

    #[test]
    fn exact_reads_reserve_once() {
        let mut rb = ReadBuf::default();
        let r = Request::Exactly(100_000);
        rb.reserve_for(&r, 1 << 20);
        let cap = rb.capacity();
        assert!(cap >= 100_000);
        for _ in 0..10 {
            rb.extend(&[1u8; 10_000]);
        }
        assert_eq!(rb.capacity(), cap);
        assert_eq!(rb.scan(&r, false), Scan::Ready { len: 100_000, consume: 100_000 });
        let mut small = ReadBuf::default();
        small.reserve_for(&Request::Exactly(1 << 30), 4096);
        assert!(small.capacity() < 8192);
    }

    #[test]
    fn bounds() {
        assert_eq!(Request::Exactly(9).bound(), Some(9));
        assert_eq!(line(true, 10).bound(), Some(10));
        assert_eq!(Request::All { max: None }.bound(), None);
        assert!(!Request::Any { limit: 1 }.framed());
        assert!(Request::All { max: None }.framed());
    }
}
