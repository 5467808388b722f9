//! Reading one `<Granule>` record with a streaming XML reader.

use super::Parsed;
use super::builder::{GranuleBuilder, Tag};
use super::error::{Echo10Error, clip};
use quick_xml::Reader;
use quick_xml::events::{BytesRef, BytesStart, Event};
use std::io::BufRead;

/// Parses one ECHO10 `<Granule>` record (a document whose root is `<Granule>`, as in LP
/// DAAC's `.cmr.xml` files) into a [`GranuleMeta`](crate::source::hls::GranuleMeta) and the names of
/// the optional values that were absent or unusable.
///
/// `concept_id` is the granule's CMR concept id (it is not in the record). Unknown elements
/// and attributes are ignored; values are trimmed. Errors: malformed XML, a root other than
/// `<Granule>`, anything but comments after it, and a missing or unusable required value
/// (`GranuleUR` with an `HLS.L30.`/`HLS.S30.` prefix, `BeginningDateTime`, `LastUpdate` or
/// `InsertTime`, platform and instrument short names, at least one `GPolygon` whose
/// boundaries have 3 points or more, all with coordinates in range).
pub fn parse_granule(xml: &[u8], concept_id: &str) -> Result<Parsed, Echo10Error> {
    let mut reader = new_reader(xml);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match next_event(&mut reader, &mut buf, None)? {
            Event::Start(e) => {
                check_attributes(&e, &reader, None)?;
                let tag = Tag::of(e.local_name().as_ref());
                if tag != Tag::Granule {
                    return Err(Echo10Error::Unexpected {
                        granule: None,
                        expected: "Granule",
                        found: format!("<{}>", clip(e.name().as_ref())),
                    });
                }
                break;
            }
            Event::Eof => {
                return Err(Echo10Error::Missing {
                    granule: None,
                    field: "Granule",
                });
            }
            other => expect_no_content(&other, None, "Granule")?,
        }
    }
    let mut builder = GranuleBuilder::new();
    builder.start(Tag::Granule);
    read_granule(&mut reader, &mut buf, &mut builder)?;
    let id = builder.granule_ur().map(str::to_string);
    loop {
        buf.clear();
        match next_event(&mut reader, &mut buf, id.as_deref())? {
            Event::Eof => break,
            Event::Start(e) => {
                return Err(Echo10Error::Unexpected {
                    granule: id,
                    expected: "end of input",
                    found: format!("<{}>", clip(e.name().as_ref())),
                });
            }
            other => expect_no_content(&other, id.as_deref(), "end of input")?,
        }
    }
    builder.finish(concept_id)
}

/// A reader configured for ECHO10: `<a/>` is read as `<a></a>`, end tags are checked.
pub(crate) fn new_reader<R: BufRead>(input: R) -> Reader<R> {
    let mut reader = Reader::from_reader(input);
    let config = reader.config_mut();
    config.expand_empty_elements = true;
    config.check_end_names = true;
    reader
}

/// The next event, with XML errors converted.
pub(crate) fn next_event<'b, R: BufRead>(
    reader: &mut Reader<R>,
    buf: &'b mut Vec<u8>,
    granule: Option<&str>,
) -> Result<Event<'b>, Echo10Error> {
    reader
        .read_event_into(buf)
        .map_err(|source| Echo10Error::Xml {
            granule: granule.map(str::to_string),
            position: reader.error_position(),
            source,
        })
}

/// Accepts the events allowed outside elements (whitespace, comments, declarations).
pub(crate) fn expect_no_content(
    event: &Event<'_>,
    granule: Option<&str>,
    expected: &'static str,
) -> Result<(), Echo10Error> {
    let found = match event {
        Event::Text(t) if t.trim().is_empty() => return Ok(()),
        Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) | Event::Eof => {
            return Ok(());
        }
        Event::Text(t) => format!("text {:?}", clip(t)),
        Event::CData(_) => "CDATA".to_string(),
        Event::GeneralRef(r) => format!("&{};", clip(r)),
        Event::End(e) => format!("</{}>", clip(e.name().as_ref())),
        Event::Start(e) | Event::Empty(e) => {
            format!("<{}>", clip(e.name().as_ref()))
        }
    };
    Err(Echo10Error::Unexpected {
        granule: granule.map(str::to_string),
        expected,
        found,
    })
}

/// Feeds the events of a `<Granule>` element, whose start tag was read and given to
/// `builder`, up to and including its end tag.
pub(crate) fn read_granule<R: BufRead>(
    reader: &mut Reader<R>,
    buf: &mut Vec<u8>,
    builder: &mut GranuleBuilder,
) -> Result<(), Echo10Error> {
    // The granule's id, for errors only (it is read early in the record).
    let granule = |builder: &GranuleBuilder| builder.granule_ur().map(str::to_string);
    loop {
        buf.clear();
        let event = reader
            .read_event_into(buf)
            .map_err(|source| Echo10Error::Xml {
                granule: granule(builder),
                position: reader.error_position(),
                source,
            })?;
        match event {
            Event::Start(e) => {
                check_attributes(&e, reader, builder.granule_ur())?;
                builder.start(Tag::of(e.local_name().as_ref()));
            }
            Event::Empty(e) => {
                check_attributes(&e, reader, builder.granule_ur())?;
                builder.start(Tag::of(e.local_name().as_ref()));
                builder.end();
            }
            Event::End(_) => {
                builder.end();
                if builder.depth() == 0 {
                    return Ok(());
                }
            }
            // Text outside the elements whose values are kept (the indentation between
            // elements, mostly) is not decoded.
            Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) if !builder.wants_text() => {}
            Event::Text(t) => builder.text(&t.xml10_content()),
            Event::CData(c) => builder.text(&c.xml10_content()),
            Event::GeneralRef(r) => match resolve_reference(&r) {
                Some(Resolved::Char(c)) => builder.text(c.encode_utf8(&mut [0; 4])),
                Some(Resolved::Str(s)) => builder.text(s),
                None => {
                    return Err(Echo10Error::Entity {
                        granule: granule(builder),
                        position: reader.buffer_position(),
                        entity: clip(&r),
                    });
                }
            },
            Event::Eof => {
                return Err(Echo10Error::Truncated {
                    granule: granule(builder),
                    inside: builder.innermost(),
                });
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
}

/// Checks that a start tag's attributes are well-formed (ECHO10 elements have none that
/// matter, but a malformed tag is malformed XML).
pub(crate) fn check_attributes<R>(
    e: &BytesStart<'_>,
    reader: &Reader<R>,
    granule: Option<&str>,
) -> Result<(), Echo10Error> {
    for attribute in e.attributes() {
        if let Err(source) = attribute {
            return Err(Echo10Error::Xml {
                granule: granule.map(str::to_string),
                position: reader.buffer_position(),
                source: quick_xml::Error::InvalidAttr(source),
            });
        }
    }
    Ok(())
}

/// What an entity reference stands for.
pub(crate) enum Resolved {
    /// A character reference (`&#233;`).
    Char(char),
    /// A predefined entity (`&amp;`).
    Str(&'static str),
}

/// Resolves character references and the five predefined entities.
pub(crate) fn resolve_reference(r: &BytesRef<'_>) -> Option<Resolved> {
    match r.resolve_char_ref() {
        Ok(Some(c)) => Some(Resolved::Char(c)),
        Ok(None) => quick_xml::escape::resolve_xml_entity(r).map(Resolved::Str),
        Err(_) => None,
    }
}
