//! An echo10 results page parsed while its body arrives: the body's chunks go to a parser on
//! a blocking thread, at most [`BYTES_IN_FLIGHT`] of them at a time, so the page is never held
//! whole and the XML is parsed while the rest of it downloads.
//!
//! The parser cuts the page into its `<result>` elements and reads each record, held
//! contiguously (one record and one chunk at most), with our own scanner
//! ([`scan_granule`]); at the first thing outside the plain XML it reads (a comment, an
//! entity, an attribute, a broken or truncated document, CMR's `<errors>`), the rest of the
//! page goes to the general [`PageReader`], which reads all of XML and reports its errors.
//! Records are the same either way.

use super::builder::GranuleBuilder;
use super::error::Echo10Error;
use super::page::{PageReader, PageRecord};
use super::scan::{Scan, is_xml_space, scan_granule};
use crate::error::{CmrProblem, Error, Result};
use crate::source::http::transport_error;
use bytes::{Buf, Bytes};
use memchr::memmem;
use std::io::{BufRead, Cursor, Read};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// Bytes in a kibibyte: the unit of [`BYTES_IN_FLIGHT`]'s permits.
const KIB: usize = 1024;

/// Bytes of body chunks in flight between the download and the parser, at most (a chunk
/// larger than this goes alone). A chunk is a slice of the connection's read buffer and keeps
/// all of it: on a fast connection (loopback) hyper's buffer grows to ~400 KB a read, and
/// sixteen chunks in flight held ~7 MB per page being read (a bulk day of 40,000 granules
/// peaked ~10 MB above one of 15,000 for it, heaptrack). Over a real network chunks are
/// ~16 KB, and this is still sixteen of them.
const BYTES_IN_FLIGHT: usize = 256 * 1024;

/// Reads the records of the echo10 page in `resp`'s body. A body cut short is
/// [`Error::Http`]; one that is not an echo10 page (or ends before `</results>`) is
/// [`Error::CmrMalformed`]: both are retried like a failed request.
pub async fn read_page(url: &str, mut resp: reqwest::Response) -> Result<Vec<PageRecord>> {
    let (tx, rx) = mpsc::unbounded_channel::<Chunk>();
    let room = Room::new(BYTES_IN_FLIGHT);
    let parser = tokio::task::spawn_blocking(move || read_records(ChunkReader::new(rx)));
    let mut download = Ok(());
    loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => {
                if tx.send(room.hold(bytes).await).is_err() {
                    // The parser stopped on an error: its result says which.
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                download = Err(transport_error(url, e));
                break;
            }
        }
    }
    drop(tx);
    let parsed = parser.await;
    // A body cut short reads as a truncated page: the transport error tells what happened.
    download?;
    parsed
        .map_err(|source| Error::Join {
            task: format!("echo10 parser of {url}"),
            source,
        })?
        .map_err(|e| Error::CmrMalformed {
            url: url.to_string(),
            problem: CmrProblem::Echo10(e),
        })
}

/// Every record of the echo10 page in `input`, or the page's error.
fn read_records(input: ChunkReader) -> std::result::Result<Vec<PageRecord>, Echo10Error> {
    let mut page = Splitter::new(input);
    let mut records = Vec::new();
    loop {
        match page.next_record(&mut records) {
            Step::Record => {}
            Step::End => return Ok(records),
            Step::Handover => break,
        }
    }
    // Byte offsets in errors are the page's, not the rest's.
    let (rest, offset) = page.into_rest();
    let offset_error = |mut e: Echo10Error| {
        e.offset_position(offset);
        e
    };
    for record in PageReader::new(rest).map_err(offset_error)? {
        let mut record = record.map_err(offset_error)?;
        if let Err(e) = &mut record.record {
            e.offset_position(offset);
        }
        records.push(record);
    }
    Ok(records)
}

/// What [`Splitter::next_record`] found.
enum Step {
    /// The next `<result>`'s record was read.
    Record,
    /// `</results>` and the end of the input.
    End,
    /// Something the splitter does not read: the rest of the page is the general reader's
    /// ([`Splitter::into_rest`]).
    Handover,
}

/// Where the splitter is in the page.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Before `<results>`.
    Prolog,
    /// Inside `<results>`, between its children.
    Results,
}

/// A child of `<results>` read by the splitter.
enum Child {
    /// `<hits>` or `<took>`.
    Count,
    /// A `<result>`, whose record was read.
    Record,
    /// `</results>`, then whitespace to the end of the input.
    End,
}

/// The fast reader of an echo10 page: cuts it into `<result>` elements, holding one at a
/// time (of at most [`MAX_RESULT_BYTES`]), and reads each record with [`scan_granule`]. It
/// reads only the page as CMR writes it: the XML declaration, `<results>`, `<hits>` and `<took>` with their numbers, and
/// `<result>` elements whose attributes are plain `name="value"` pairs and whose record the
/// scanner reads; for anything else it hands the rest of the page over ([`Step::Handover`]),
/// from the start of the child of `<results>` it could not read (from the start of the
/// input if it had not read `<results>`).
struct Splitter {
    input: ChunkReader,
    /// Input read and not yet consumed starts at `buf[at]`.
    buf: Vec<u8>,
    at: usize,
    /// How many bytes of the input were dropped from the front of `buf`.
    dropped: u64,
    place: Place,
    /// Whether the input has ended.
    ended: bool,
}

/// The most the splitter holds of one child of `<results>` (CMR's HLS records are ~9 KB):
/// past it, the general reader, which streams, reads the rest of the page.
const MAX_RESULT_BYTES: usize = 1 << 20;

/// The XML declaration CMR writes.
const DECLARATION: &[u8] = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>";

impl Splitter {
    fn new(input: ChunkReader) -> Self {
        Splitter {
            input,
            buf: Vec::new(),
            at: 0,
            dropped: 0,
            place: Place::Prolog,
            ended: false,
        }
    }

    /// Reads up to the next record (put into `records`), or the end of the page.
    fn next_record(&mut self, records: &mut Vec<PageRecord>) -> Step {
        if self.place == Place::Prolog && self.prolog().is_none() {
            // Nothing is consumed before `<results>`: the general reader reads it all.
            self.at = 0;
            return Step::Handover;
        }
        loop {
            // Positions in `buf` hold within a child: consumed input goes only here.
            if self.at * 2 >= self.buf.len() {
                self.buf.drain(..self.at);
                self.dropped += self.at as u64;
                self.at = 0;
            }
            // The whitespace before a child is handed over with it (the general reader
            // quotes text that is not only whitespace whole).
            let start = self.at;
            self.skip_blank();
            match self.child(records) {
                Some(Child::Count) => {}
                Some(Child::Record) => return Step::Record,
                Some(Child::End) => return Step::End,
                None => {
                    self.at = start;
                    return Step::Handover;
                }
            }
        }
    }

    /// Reads the declaration (if any) and `<results>`.
    fn prolog(&mut self) -> Option<()> {
        if self.starts_with(b"<?xml") {
            self.expect(DECLARATION)?;
        }
        self.skip_blank();
        self.expect(b"<results>")?;
        self.place = Place::Results;
        Some(())
    }

    /// Reads the next child of `<results>` (`None`: one the splitter does not read, maybe
    /// partly consumed).
    fn child(&mut self, records: &mut Vec<PageRecord>) -> Option<Child> {
        if self.starts_with(b"<result ") {
            records.push(self.result()?);
            return Some(Child::Record);
        }
        for (open, close) in [(&b"<hits>"[..], &b"</hits>"[..]), (b"<took>", b"</took>")] {
            if self.expect(open).is_some() {
                let end = self.find(b"<", self.at)?;
                let digits = &self.buf[self.at..end];
                // As the general reader reads them (it fails on other text).
                if !digits.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                std::str::from_utf8(digits).ok()?.parse::<u64>().ok()?;
                self.at = end;
                self.expect(close)?;
                return Some(Child::Count);
            }
        }
        self.expect(b"</results>")?;
        self.skip_blank();
        (self.fill_to(1) == 0).then_some(Child::End)
    }

    /// Reads a `<result …>…</result>` element.
    fn result(&mut self) -> Option<PageRecord> {
        let head_end = self.find(b">", self.at)?;
        let end = self.find(b"</result>", head_end)?;
        let head = std::str::from_utf8(&self.buf[self.at + b"<result".len()..head_end]).ok()?;
        let (concept_id, collection_concept_id) = result_attributes(head)?;
        let content = std::str::from_utf8(&self.buf[head_end + 1..end]).ok()?;
        let mut builder = GranuleBuilder::new();
        if scan_granule(content, &mut builder) == Scan::Outside {
            return None;
        }
        let record = builder.finish(&concept_id);
        self.at = end + b"</result>".len();
        Some(PageRecord::of_result(
            concept_id,
            collection_concept_id,
            Some(record),
        ))
    }

    /// Consumes `expected`, or answers `None` (consuming nothing).
    fn expect(&mut self, expected: &[u8]) -> Option<()> {
        self.starts_with(expected)
            .then(|| self.at += expected.len())
    }

    /// Whether the unconsumed input starts with `prefix`.
    fn starts_with(&mut self, prefix: &[u8]) -> bool {
        self.fill_to(prefix.len()) >= prefix.len() && self.buf[self.at..].starts_with(prefix)
    }

    /// Consumes XML whitespace.
    fn skip_blank(&mut self) {
        loop {
            let blank = self.buf[self.at..]
                .iter()
                .take_while(|b| is_xml_space(**b))
                .count();
            self.at += blank;
            if self.at < self.buf.len() || !self.read_chunk() {
                return;
            }
        }
    }

    /// The position in `buf` of the first `needle` at or after `from`, reading input as
    /// needed; `None` if the input ends first, or once more than [`MAX_RESULT_BYTES`] are
    /// unconsumed (no child the splitter reads is that long).
    fn find(&mut self, needle: &[u8], from: usize) -> Option<usize> {
        let mut from = from;
        loop {
            if let Some(i) = memmem::find(&self.buf[from..], needle) {
                return Some(from + i);
            }
            if self.buf.len() - self.at > MAX_RESULT_BYTES {
                return None;
            }
            from = self.buf.len().saturating_sub(needle.len() - 1).max(from);
            if !self.read_chunk() {
                return None;
            }
        }
    }

    /// Reads until `n` bytes are unconsumed, or the input ends; the number unconsumed.
    fn fill_to(&mut self, n: usize) -> usize {
        while self.buf.len() - self.at < n && self.read_chunk() {}
        self.buf.len() - self.at
    }

    /// Appends the next chunk to `buf`; `false` at the end of the input.
    fn read_chunk(&mut self) -> bool {
        if self.ended {
            return false;
        }
        match self.input.next_chunk() {
            Some(chunk) => {
                self.buf.extend_from_slice(&chunk);
                true
            }
            None => {
                self.ended = true;
                false
            }
        }
    }

    /// The rest of the page, after a [`Step::Handover`], as a document that the general
    /// reader reads from its start (`<results>` put back in front if it was read), and the
    /// offset in the page of its bytes after that prefix, less the prefix's length.
    fn into_rest(self) -> (std::io::Chain<Cursor<Vec<u8>>, ChunkReader>, u64) {
        let prefix: &[u8] = match self.place {
            Place::Prolog => b"",
            Place::Results => b"<results>",
        };
        let mut rest = Vec::with_capacity(self.buf.len() - self.at + prefix.len());
        rest.extend_from_slice(prefix);
        rest.extend_from_slice(&self.buf[self.at..]);
        // `<results>` was read, so at least its length was consumed.
        let offset = self.dropped + self.at as u64 - prefix.len() as u64;
        (Read::chain(Cursor::new(rest), self.input), offset)
    }
}

/// The `concept-id` (empty if absent) and `collection-concept-id` of a `<result>` start tag
/// whose attributes (`head`: after `<result`, before `>`) are ` name="value"` pairs of plain
/// names and values (no references, no control characters); `None` for any other.
fn result_attributes(head: &str) -> Option<(String, Option<String>)> {
    let mut concept_id = None;
    let mut collection_concept_id = None;
    let mut seen: Vec<&str> = Vec::with_capacity(4);
    let mut rest = head;
    while !rest.is_empty() {
        let pair = rest.strip_prefix(' ')?;
        let (name, after) = pair.split_once("=\"")?;
        let (value, after) = after.split_once('"')?;
        let plain_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !plain_name
            || seen.contains(&name)
            || value.bytes().any(|b| b < 0x20 || b == b'&' || b == b'<')
        {
            return None;
        }
        seen.push(name);
        match name {
            "concept-id" => concept_id = Some(value.trim().to_string()),
            "collection-concept-id" => collection_concept_id = Some(value.trim().to_string()),
            _ => {}
        }
        rest = after;
    }
    Some((concept_id.unwrap_or_default(), collection_concept_id))
}

/// Room for the bytes of chunks in flight, counted in kibibytes (rounded up).
struct Room {
    kib: Arc<Semaphore>,
    size: usize,
}

impl Room {
    /// Room for `bytes` bytes (at least one kibibyte).
    fn new(bytes: usize) -> Room {
        let size = bytes.div_ceil(KIB).max(1);
        Room {
            kib: Arc::new(Semaphore::new(size)),
            size,
        }
    }

    /// `bytes` as a chunk holding its room, once there is room for it: a chunk larger than
    /// the room waits for all of it.
    async fn hold(&self, bytes: Bytes) -> Chunk {
        let kib = bytes.len().div_ceil(KIB).clamp(1, self.size);
        // The semaphore is never closed, and `kib` is at most its size.
        let held = self
            .kib
            .clone()
            .acquire_many_owned(u32::try_from(kib).unwrap_or(u32::MAX))
            .await
            .ok();
        Chunk { bytes, _held: held }
    }
}

/// A chunk of a body on its way to the parser, with its share of [`BYTES_IN_FLIGHT`]
/// (given back when the parser is done with it).
struct Chunk {
    bytes: Bytes,
    _held: Option<OwnedSemaphorePermit>,
}

impl Chunk {
    fn empty() -> Chunk {
        Chunk {
            bytes: Bytes::new(),
            _held: None,
        }
    }
}

/// A blocking [`BufRead`] over the chunks of a channel; the end of the channel is the end
/// of the input.
struct ChunkReader {
    rx: mpsc::UnboundedReceiver<Chunk>,
    chunk: Chunk,
}

impl ChunkReader {
    fn new(rx: mpsc::UnboundedReceiver<Chunk>) -> ChunkReader {
        ChunkReader {
            rx,
            chunk: Chunk::empty(),
        }
    }
}

impl ChunkReader {
    /// The next chunk of the input (after what [`BufRead`] has not consumed), `None` at its
    /// end.
    fn next_chunk(&mut self) -> Option<Bytes> {
        // The chunk taken gives its room back now (its bytes are the caller's), and so does
        // one done with before waiting for the next: the download may be waiting for it.
        let chunk = std::mem::replace(&mut self.chunk, Chunk::empty());
        if chunk.bytes.is_empty() {
            self.rx.blocking_recv().map(|c| c.bytes)
        } else {
            Some(chunk.bytes)
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChunkReader {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.chunk.bytes.is_empty() {
            // The chunk done with gives its room back before the wait for the next: the
            // download may be waiting for that room.
            self.chunk = Chunk::empty();
            match self.rx.blocking_recv() {
                Some(chunk) => self.chunk = chunk,
                None => break,
            }
        }
        Ok(&self.chunk.bytes)
    }

    fn consume(&mut self, amount: usize) {
        self.chunk.bytes.advance(amount.min(self.chunk.bytes.len()));
        if self.chunk.bytes.is_empty() {
            // Done with: its room goes back.
            self.chunk = Chunk::empty();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    /// The chunks of `body` cut every `size` bytes, sent from another thread.
    fn reader_of(body: impl Into<Bytes>, size: usize) -> ChunkReader {
        let body: Bytes = body.into();
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            let mut at = 0;
            while at < body.len() {
                let end = (at + size).min(body.len());
                let chunk = Chunk {
                    bytes: body.slice(at..end),
                    _held: None,
                };
                if tx.send(chunk).is_err() {
                    return;
                }
                at = end;
            }
        });
        ChunkReader::new(rx)
    }

    /// What the general reader alone makes of a whole page.
    fn general(page: &[u8]) -> String {
        let records = PageReader::new(page).and_then(|r| r.collect::<Result<Vec<_>, _>>());
        format!("{records:?}")
    }

    /// What [`read_records`] makes of a page arriving in chunks of `size`.
    fn split(page: &[u8], size: usize) -> String {
        format!("{:?}", read_records(reader_of(page.to_vec(), size)))
    }

    #[test]
    fn the_splitter_reads_every_record_of_a_plain_page_itself() {
        let page = page();
        let whole = general(page);
        assert!(whole.starts_with("Ok(["), "{whole}");
        for size in [1, 7, 333, 4096, 1 << 20] {
            let mut splitter = Splitter::new(reader_of(page, size));
            let mut records = Vec::new();
            loop {
                match splitter.next_record(&mut records) {
                    Step::Record => {}
                    Step::End => break,
                    Step::Handover => panic!("handed over in chunks of {size}"),
                }
            }
            assert_eq!(records.len(), 2);
            assert_eq!(
                format!("{:?}", Ok::<_, ()>(records)),
                whole,
                "chunks of {size}"
            );
            // A record (< 10 KB) and a chunk unconsumed, at most as much consumed.
            let held = splitter.buf.len();
            assert!(
                held <= 2 * (10_000 + size),
                "held {held} in chunks of {size}"
            );
        }
    }

    #[test]
    fn a_result_too_long_to_hold_goes_to_the_general_reader() {
        let plain = String::from_utf8(page().to_vec()).unwrap();
        let padding = " ".repeat(2 * MAX_RESULT_BYTES);
        let page = plain.replacen("</Granule>", &format!("{padding}</Granule>"), 1);
        let mut splitter = Splitter::new(reader_of(page.clone(), 16 << 10));
        assert!(matches!(
            splitter.next_record(&mut Vec::new()),
            Step::Handover
        ));
        let held = splitter.buf.len();
        assert!(held <= MAX_RESULT_BYTES + (64 << 10), "held {held}");
        let records = split(page.as_bytes(), 16 << 10);
        assert!(records.starts_with("Ok(["), "{records}");
        assert_eq!(records, general(page.as_bytes()));
    }

    #[test]
    fn a_cmr_errors_document_gives_cmr_s_messages() {
        let page: &'static [u8] = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
            <errors><error>Too many requests</error></errors>";
        let error = read_records(reader_of(page, 10)).unwrap_err();
        assert!(matches!(error, Echo10Error::Cmr { .. }), "{error:?}");
        assert!(error.to_string().contains("Too many requests"), "{error}");
    }

    /// Bits of XML put into pages: most take a record or the page out of what the splitter
    /// reads, some do not (whitespace, empty elements, plain text).
    const INSERTS: &[&[u8]] = &[
        b"<!-- c -->",
        b"&amp;",
        b"&#65;",
        b"&bogus;",
        b"<![CDATA[x]]>",
        b"\r\n",
        b" ",
        b"\n  ",
        b"x",
        b"<x/>",
        b"<x>y</x>",
        b"</y>",
        b"<",
        b">",
        b"\"",
        b"/",
        b"=",
        "\u{e9}".as_bytes(),
        b"\xff",
        b"<?pi x?>",
        b"</result>",
        b"<result concept-id=\"G9-LPCLOUD\">",
        b"<hits>3</hits>",
        b" a=\"1\"",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever is done to a page, read in any chunks, the splitter and the general
        /// reader give the same records or the same error (at the same byte).
        #[test]
        fn the_splitter_and_the_general_reader_agree(
            at in 0usize..16_000,
            what in 0usize..INSERTS.len() + 2,
            len in 1usize..40,
            size in 1usize..6_000,
        ) {
            let mut page = page().to_vec();
            let at = at % (page.len() + 1);
            match what.checked_sub(INSERTS.len()) {
                None => {
                    page.splice(at..at, INSERTS[what].iter().copied());
                }
                Some(0) => page.truncate(at),
                Some(_) => {
                    page.drain(at..(at + len).min(page.len()));
                }
            }
            prop_assert_eq!(
                without_positions(&split(&page, size)),
                without_positions(&general(&page))
            );
        }
    }

    /// `text` with the numbers after `position: ` taken out: quick-xml reports 0 for some
    /// errors (invalid UTF-8), where the splitter's hand-over adds the offset of the rest.
    fn without_positions(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut parts = text.split("position: ");
        out.push_str(parts.next().unwrap_or_default());
        for part in parts {
            out.push_str("position: _");
            out.push_str(part.trim_start_matches(|c: char| c.is_ascii_digit()));
        }
        out
    }

    #[test]
    fn errors_after_a_hand_over_are_at_their_byte_in_the_page() {
        let plain = String::from_utf8(page().to_vec()).unwrap();
        // In the second record: the splitter reads the first one, then hands over.
        let platforms = plain.rfind("<Platforms>").unwrap();
        let second = platforms + plain[platforms..].find("<ShortName>").unwrap() + 11;
        assert!(plain[..second].contains("HLS.S30.T35VLJ"));
        assert!(
            plain[second..].contains("HLS.L30.T19LBJ")
                || plain[..second].contains("HLS.L30.T19LBJ")
        );
        for bad in ["&bogus;", "<a b=\"1\" b=\"2\">", "</Wrong>"] {
            let mut page = plain.clone();
            page.insert_str(second, bad);
            let general = general(page.as_bytes());
            assert!(general.contains("position: "), "{general}");
            assert!(general.contains("HLS.L30.T19LBJ"), "{general}");
            assert_eq!(split(page.as_bytes(), 100), general, "{bad}");
        }
    }

    #[test]
    fn reads_chunks_in_order_across_boundaries() {
        let body: &'static [u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        for size in [1, 3, 7, 36, 100] {
            let mut out = Vec::new();
            reader_of(body, size).read_to_end(&mut out).unwrap();
            assert_eq!(out, body, "chunks of {size}");
        }
    }

    /// A page of the two real records in the fixtures, as CMR wraps them.
    fn page() -> &'static [u8] {
        let records = [
            (
                "G2153166491-LPCLOUD",
                "C2021957295-LPCLOUD",
                include_str!(
                    "../../../tests/fixtures/echo10/HLS.S30.T35VLJ.2021168T100559.v2.0.cmr.xml"
                ),
            ),
            (
                "G1969487860-LPCLOUD",
                "C2021957657-LPCLOUD",
                include_str!(
                    "../../../tests/fixtures/echo10/HLS.L30.T19LBJ.2020239T144556.v2.0.cmr.xml"
                ),
            ),
        ];
        let mut page = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><results><hits>2</hits><took>5</took>",
        );
        for (concept, collection, record) in records {
            page.push_str(&format!(
                "<result concept-id=\"{concept}\" collection-concept-id=\"{collection}\" \
                 revision-id=\"1\" format=\"application/echo10+xml\">{}</result>",
                record.trim()
            ));
        }
        page.push_str("</results>");
        page.into_bytes().leak()
    }

    #[test]
    fn a_page_in_small_chunks_parses_as_the_whole_page() {
        let page = page();
        let whole: Vec<(String, String)> = PageReader::new(page)
            .unwrap()
            .map(|r| {
                let r = r.unwrap();
                (r.concept_id, r.record.unwrap().0.granule_ur)
            })
            .collect();
        assert_eq!(whole.len(), 2);
        for size in [5, 333, 4096] {
            let chunked: Vec<(String, String)> = PageReader::new(reader_of(page, size))
                .unwrap()
                .map(|r| {
                    let r = r.unwrap();
                    (r.concept_id, r.record.unwrap().0.granule_ur)
                })
                .collect();
            assert_eq!(chunked, whole, "chunks of {size}");
        }
    }

    #[test]
    fn a_page_cut_short_is_an_error() {
        let page = page();
        let cut: &'static [u8] = &page[..page.len() * 2 / 3];
        let result: std::result::Result<Vec<_>, _> =
            PageReader::new(reader_of(cut, 1000)).and_then(|r| r.collect());
        assert!(result.is_err());
    }

    #[tokio::test]
    async fn chunks_wait_for_room_and_a_large_one_takes_all_of_it() {
        let room = Room::new(4 * KIB);
        let wait = std::time::Duration::from_millis(50);
        let first = room.hold(Bytes::from(vec![0; 3 * KIB])).await;
        // 2 KiB more do not fit beside 3 of 4: they wait until the first chunk is done.
        assert!(
            tokio::time::timeout(wait, room.hold(Bytes::from(vec![0; 2 * KIB])))
                .await
                .is_err()
        );
        // A byte counts as a kibibyte: one fits.
        let byte = room.hold(Bytes::from_static(b"<")).await;
        drop(first);
        let second = room.hold(Bytes::from(vec![0; 2 * KIB])).await;
        drop((byte, second));
        // Larger than the room: it waits for all of it, and nothing fits beside it.
        let large = room.hold(Bytes::from(vec![0; 10 * KIB])).await;
        assert_eq!(large.bytes.len(), 10 * KIB);
        assert!(
            tokio::time::timeout(wait, room.hold(Bytes::from_static(b">")))
                .await
                .is_err()
        );
        drop(large);
        room.hold(Bytes::from_static(b">")).await;
    }

    /// A download of `body` in chunks of `size` bytes, each waiting for room in `room`,
    /// from another thread.
    fn download(body: Vec<u8>, size: usize, room: Room) -> ChunkReader {
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for part in body.chunks(size) {
                let chunk = futures::executor::block_on(room.hold(Bytes::copy_from_slice(part)));
                if tx.send(chunk).is_err() {
                    return;
                }
            }
        });
        ChunkReader::new(rx)
    }

    #[test]
    fn the_parser_gives_room_back_before_it_waits_for_more() {
        // Chunks of 8 KiB in a room of 4: each takes all of it, so the download waits for
        // every chunk to be done with before it sends the next.
        let body: Vec<u8> = (0..64 * KIB).map(|i| (i % 251) as u8).collect();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let whole = body.clone();
        std::thread::spawn(move || {
            let mut reader = download(whole, 8 * KIB, Room::new(4 * KIB));
            // As the splitter reads (a chunk at a time), then as the general reader does.
            let mut all = Vec::new();
            for _ in 0..2 {
                all.extend_from_slice(&reader.next_chunk().unwrap());
            }
            let mut line = Vec::new();
            reader.read_until(0, &mut line).unwrap();
            all.extend_from_slice(&line);
            reader.read_to_end(&mut all).unwrap();
            let _ = done_tx.send(all);
        });
        let all = done_rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the reader and the download waited on each other");
        assert_eq!(all, body);
    }
}
