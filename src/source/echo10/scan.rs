//! A scanner of our own for the plain ECHO10 that CMR serves: one `<Granule>` record held
//! contiguously, read with `memchr` from tag to tag, no events and no copies.
//!
//! It reads a strict subset of XML: elements without attributes, whose names are plain
//! (`[A-Za-z0-9_.-]`, no namespace prefix), text without entity or character references and
//! without carriage returns, and nothing else: no comments, CDATA sections, processing
//! instructions or declarations. End tags must close the element they end. Input outside
//! that subset is not an error here: [`scan_granule`] answers [`Scan::Outside`], and the
//! caller reads the input with the general reader ([`parse`](super::parse), quick-xml), which
//! accepts all of XML and reports its errors. The two give the same [`GranuleBuilder`] calls
//! on the subset (the tests in `stream` compare them on pages of every shape).

use super::builder::{GranuleBuilder, Tag};
use memchr::memchr;

/// What [`scan_granule`] made of its input.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scan {
    /// The input was whitespace, one `<Granule>` element and whitespace, and `builder` has
    /// been given all of it (its depth is back to 0).
    Read,
    /// The input is outside the subset this scanner reads: `builder` may have been given a
    /// part of it and must be dropped.
    Outside,
}

/// Feeds `builder` (new, before `<Granule>`) the record in `content`: whitespace, one
/// `<Granule>` element, whitespace (the content of a CMR `<result>`).
pub(crate) fn scan_granule(content: &str, builder: &mut GranuleBuilder) -> Scan {
    match scan(content, builder) {
        Some(()) => Scan::Read,
        None => Scan::Outside,
    }
}

fn scan(content: &str, builder: &mut GranuleBuilder) -> Option<()> {
    let bytes = content.as_bytes();
    // The names of the open elements, to check the end tags.
    let mut open: Vec<&str> = Vec::with_capacity(8);
    let mut read_granule = false;
    let mut at = 0;
    loop {
        // Text up to the next tag (or the end of the input).
        let lt = memchr(b'<', &bytes[at..]).map_or(bytes.len(), |i| at + i);
        let text = &content[at..lt];
        if open.is_empty() {
            if !is_blank(text) {
                return None;
            }
        } else if !text.is_empty() {
            if text.bytes().any(|b| b == b'&' || b == b'\r') {
                return None;
            }
            if builder.wants_text() {
                builder.text(text);
            }
        }
        if lt == bytes.len() {
            return (read_granule && open.is_empty()).then_some(());
        }
        let gt = lt + memchr(b'>', &bytes[lt..])?;
        let tag = &content[lt + 1..gt];
        at = gt + 1;
        if let Some(name) = tag.strip_prefix('/') {
            if open.pop() != Some(name) {
                return None;
            }
            builder.end();
            continue;
        }
        let (name, empty) = match tag.strip_suffix('/') {
            Some(name) => (name, true),
            None => (tag, false),
        };
        if !is_plain_name(name) {
            return None;
        }
        let tag = Tag::of(name);
        if open.is_empty() {
            // The one element at the top is the record.
            if tag != Tag::Granule || read_granule {
                return None;
            }
            read_granule = true;
        }
        builder.start(tag);
        if empty {
            builder.end();
        } else {
            open.push(name);
        }
    }
}

/// Whether `text` is XML whitespace only.
fn is_blank(text: &str) -> bool {
    text.bytes().all(is_xml_space)
}

/// Whether `b` is XML whitespace (space, tab, line feed, carriage return).
pub(crate) fn is_xml_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Whether `name` is a non-empty name of letters, digits, `_`, `.` and `-`, starting with a
/// letter or `_` (no namespace prefix, no attributes).
fn is_plain_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::echo10::parse_granule;

    const S30: &str =
        include_str!("../../../tests/fixtures/echo10/HLS.S30.T35VLJ.2021168T100559.v2.0.cmr.xml");
    const L30: &str =
        include_str!("../../../tests/fixtures/echo10/HLS.L30.T19LBJ.2020239T144556.v2.0.cmr.xml");

    fn scanned(content: &str) -> Option<String> {
        let mut builder = GranuleBuilder::new();
        match scan_granule(content, &mut builder) {
            Scan::Read => Some(format!("{:?}", builder.finish("G1-LPCLOUD"))),
            Scan::Outside => None,
        }
    }

    #[test]
    fn the_real_records_scan_as_the_general_reader_parses_them() {
        for record in [S30, L30] {
            let general = format!("{:?}", parse_granule(record.as_bytes(), "G1-LPCLOUD"));
            assert!(general.starts_with("Ok("), "{general}");
            assert_eq!(scanned(record).as_deref(), Some(general.as_str()));
        }
    }

    #[test]
    fn what_is_outside_the_subset_is_left_to_the_general_reader() {
        let outside = [
            // References, comments, CDATA, processing instructions, attributes, prefixes.
            S30.replace("Sentinel-2B", "Sentinel&#45;2B"),
            S30.replace("<Temporal>", "<Temporal><!-- c -->"),
            S30.replace("Sentinel-2B", "<![CDATA[Sentinel-2B]]>"),
            S30.replace("<Temporal>", "<Temporal><?pi x?>"),
            S30.replace("<Temporal>", "<Temporal a=\"1\">"),
            S30.replace("<Temporal>", "<Temporal >"),
            S30.replace("<Temporal>", "<t:Temporal>"),
            S30.replace("Sentinel-2B", "Sentinel-2B\r"),
            // Not one well-formed <Granule>.
            S30.replace("</Temporal>", "</Tempora>"),
            S30.replace("</Granule>", ""),
            format!("{S30}{S30}"),
            format!("x{S30}"),
            S30.replace("<Granule>", "<Granules>")
                .replace("</Granule>", "</Granules>"),
            S30[..S30.len() / 2].to_string(),
            String::new(),
        ];
        for (i, content) in outside.iter().enumerate() {
            assert_eq!(scanned(content), None, "case {i}");
        }
    }

    #[test]
    fn empty_elements_and_unknown_elements_are_read() {
        let record = S30.replace(
            "<DayNightFlag>DAY</DayNightFlag>",
            "<DayNightFlag/><Extra><Deeper>x</Deeper></Extra>",
        );
        let general = format!("{:?}", parse_granule(record.as_bytes(), "G1-LPCLOUD"));
        assert_eq!(scanned(&record).as_deref(), Some(general.as_str()));
    }
}
