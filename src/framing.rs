//! Newline framing: splits a byte stream into lines with a maximum length. No I/O.
//!
//! The reactor appends whatever a socket read returned and then asks for
//! complete lines until there are none. A line longer than the limit is
//! reported once as [`Frame::TooLarge`]; its remaining bytes are skipped up to
//! and including the next `\n`, so the connection can carry on.

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
    /// Bytes received but not yet returned as a line.
    buf: Vec<u8>,
    /// How far `buf` is known to hold no `\n`, so a long partial line is not
    /// rescanned from the start on every read.
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
            scanned: 0,
            skipping: false,
            max_line,
        }
    }

    /// Appends bytes read from the socket.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held, complete lines and partial line together.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Takes up to `n` raw bytes from the front of the buffer, ignoring line
    /// structure (used when a connection switches to a raw byte transfer).
    pub fn take_raw(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.buf.len());
        let out: Vec<u8> = self.buf.drain(..n).collect();
        self.scanned = 0;
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
                    let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                    self.scanned = 0;
                    line.pop(); // the '\n'
                    if self.skipping {
                        self.skipping = false;
                        continue;
                    }
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    if line.len() > self.max_line {
                        return Some(Frame::TooLarge);
                    }
                    return Some(Frame::Line(line));
                }
                None => {
                    if self.skipping {
                        self.buf.clear();
                        self.scanned = 0;
                        return None;
                    }
                    // One extra byte allows for a '\r' before the coming '\n'.
                    if self.buf.len() > self.max_line + 1 {
                        self.buf.clear();
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
}
