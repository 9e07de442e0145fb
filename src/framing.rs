//! Newline framing: splits a byte stream into lines with a maximum length. No I/O.
//!
//! The reactor appends whatever a socket read returned and then asks for
//! complete lines until there are none. A line longer than the limit is
//! reported once as [`Frame::TooLarge`]; its remaining bytes are skipped up to
//! and including the next `\n`, so the connection can carry on.
//!
//! The work is linear in the bytes received: lines are taken by moving a read
//! offset, and consumed bytes are dropped once per [`LineReader::extend`]
//! (a megabyte of bare `\n` once cost seconds when every line shifted the
//! whole buffer).

/// One item taken from the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete line without its `\n` (and without a trailing `\r`).
    Line(Vec<u8>),
    /// A line went over the limit; the rest of it is being skipped.
    TooLarge,
}

/// Accumulates bytes and yields complete lines.
#[derive(Debug)]
pub struct LineReader {
    /// Bytes received; those before `start` are already consumed.
    buf: Vec<u8>,
    /// Where the unconsumed bytes begin.
    start: usize,
    /// How far `buf` is known to hold no `\n`, so a long partial line is not
    /// rescanned from the start on every read (never below `start`).
    scanned: usize,
    /// True while discarding the tail of an oversized line.
    skipping: bool,
    /// The longest line accepted, in bytes, not counting the line ending.
    max_line: usize,
}

impl LineReader {
    pub fn new(max_line: usize) -> Self {
        LineReader {
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            skipping: false,
            max_line,
        }
    }

    /// Appends bytes read from the socket, first dropping what was consumed.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    /// Moves the unconsumed bytes to the front: once per read, not per line.
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.scanned -= self.start;
            self.start = 0;
        }
    }

    /// Bytes held, complete lines and partial line together.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Takes up to `n` raw bytes from the front of the buffer, ignoring line
    /// structure (used when a connection switches to a raw byte transfer).
    pub fn take_raw(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.buffered());
        let out = self.buf[self.start..self.start + n].to_vec();
        self.start += n;
        self.scanned = self.start;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            self.scanned = 0;
        }
        out
    }

    /// Returns the next complete line, a `TooLarge` marker, or `None` when
    /// more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Frame> {
        loop {
            let newline = self.buf[self.scanned..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|p| p + self.scanned);
            match newline {
                Some(end) => {
                    let mut line = &self.buf[self.start..end];
                    self.start = end + 1;
                    self.scanned = self.start;
                    if self.skipping {
                        self.skipping = false;
                        continue;
                    }
                    if line.last() == Some(&b'\r') {
                        line = &line[..line.len() - 1];
                    }
                    let frame = if line.len() > self.max_line {
                        Frame::TooLarge
                    } else {
                        Frame::Line(line.to_vec())
                    };
                    if self.start == self.buf.len() {
                        self.buf.clear();
                        self.start = 0;
                        self.scanned = 0;
                    }
                    return Some(frame);
                }
                None => {
                    if self.skipping {
                        self.buf.clear();
                        self.start = 0;
                        self.scanned = 0;
                        return None;
                    }
                    // One extra byte allows for a '\r' before the coming '\n'.
                    if self.buffered() > self.max_line + 1 {
                        self.buf.clear();
                        self.start = 0;
                        self.scanned = 0;
                        self.skipping = true;
                        return Some(Frame::TooLarge);
                    }
                    self.scanned = self.buf.len();
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> Option<Frame> {
        Some(Frame::Line(s.as_bytes().to_vec()))
    }

    #[test]
    fn line_split_across_reads() {
        let mut r = LineReader::new(100);
        r.extend(b"{\"type\":");
        assert_eq!(r.next_frame(), None);
        r.extend(b"\"RQ_PING\"}\n");
        assert_eq!(r.next_frame(), line("{\"type\":\"RQ_PING\"}"));
        assert_eq!(r.next_frame(), None);
    }

    #[test]
    fn two_lines_in_one_read_and_crlf() {
        let mut r = LineReader::new(100);
        r.extend(b"a\r\nb\nc");
        assert_eq!(r.next_frame(), line("a"));
        assert_eq!(r.next_frame(), line("b"));
        assert_eq!(r.next_frame(), None);
        r.extend(b"\n");
        assert_eq!(r.next_frame(), line("c"));
    }

    #[test]
    fn oversized_line_is_reported_once_and_skipped() {
        let mut r = LineReader::new(8);
        r.extend(b"0123456789");
        assert_eq!(r.next_frame(), Some(Frame::TooLarge));
        assert_eq!(r.next_frame(), None);
        r.extend(b"more of the same line");
        assert_eq!(r.next_frame(), None);
        r.extend(b"\nok\n");
        assert_eq!(r.next_frame(), line("ok"));
        assert_eq!(r.next_frame(), None);
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn oversized_complete_line_in_one_read() {
        let mut r = LineReader::new(4);
        r.extend(b"123456\nabc\n");
        assert_eq!(r.next_frame(), Some(Frame::TooLarge));
        assert_eq!(r.next_frame(), line("abc"));
    }

    #[test]
    fn exact_limit_with_crlf_is_accepted() {
        let mut r = LineReader::new(4);
        r.extend(b"abcd\r");
        assert_eq!(r.next_frame(), None);
        r.extend(b"\n");
        assert_eq!(r.next_frame(), line("abcd"));
    }

    #[test]
    fn raw_bytes_can_be_taken_between_lines() {
        let mut r = LineReader::new(100);
        r.extend(b"x\n\x00\n\x01rest\n");
        assert_eq!(r.next_frame(), line("x"));
        assert_eq!(r.take_raw(3), b"\x00\n\x01".to_vec());
        assert_eq!(r.next_frame(), line("rest"));
    }

    /// The lines a whole stream holds, by a plain split: the reference.
    fn reference_lines(stream: &[u8], max_line: usize) -> Vec<Frame> {
        let mut out = Vec::new();
        let mut parts: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
        parts.pop(); // the unterminated tail
        for mut part in parts {
            if part.last() == Some(&b'\r') {
                part = &part[..part.len() - 1];
            }
            if part.len() > max_line {
                out.push(Frame::TooLarge);
            } else {
                out.push(Frame::Line(part.to_vec()));
            }
        }
        out
    }

    proptest::proptest! {
        /// However the bytes are cut into reads, the lines are those of the
        /// whole stream (lines within the limit; over-long ones only as TooLarge).
        #[test]
        fn any_chunking_gives_the_same_lines(
            stream in proptest::collection::vec(proptest::sample::select(vec![b'a', b'\n', b'\r', 0u8, 0xff]), 0..400),
            cuts in proptest::collection::vec(1usize..50, 1..40),
        ) {
            let max_line = 16;
            let mut r = LineReader::new(max_line);
            let mut got = Vec::new();
            let mut rest = &stream[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = cuts[i % cuts.len()].min(rest.len());
                r.extend(&rest[..n]);
                rest = &rest[n..];
                i += 1;
                while let Some(f) = r.next_frame() {
                    got.push(f);
                }
            }
            // An over-long line may be reported before its end arrives; then
            // its tail is skipped: the reference counts it once either way.
            let want = reference_lines(&stream, max_line);
            let lines = |v: &[Frame]| v.iter().filter_map(|f| match f {
                Frame::Line(l) => Some(l.clone()),
                Frame::TooLarge => None,
            }).collect::<Vec<_>>();
            proptest::prop_assert_eq!(lines(&got), lines(&want));
            proptest::prop_assert!(r.buffered() <= max_line + 2 || r.skipping);
        }

        /// Arbitrary bytes never panic and never hold more than one line's worth.
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..2000)) {
            let mut r = LineReader::new(64);
            for chunk in data.chunks(97) {
                r.extend(chunk);
                while r.next_frame().is_some() {}
                proptest::prop_assert!(r.buffered() <= 66);
            }
        }
    }
}
