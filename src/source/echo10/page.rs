//! CMR's echo10 results pages (`/search/granules.echo10`), written and read one `<result>`
//! at a time.
//!
//! ```xml
//! <?xml version="1.0" encoding="UTF-8"?><results><hits>N</hits><took>T</took>
//! <result concept-id="G…-LPCLOUD" collection-concept-id="C…-LPCLOUD" revision-id="1"
//!  format="application/echo10+xml"><Granule>…</Granule></result>…</results>
//! ```

use super::Parsed;
use super::builder::{GranuleBuilder, Tag};
use super::error::{Echo10Error, clip};
use super::parse::Resolved;
use super::parse::{expect_no_content, new_reader, next_event, read_granule, resolve_reference};
use crate::collection::Collection;
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use std::io::BufRead;

/// One `<result>` of a page: the granule's concept id and its parsed record, or why the record
/// cannot be used (the page goes on).
#[derive(Debug)]
pub struct PageRecord {
    /// The `concept-id` attribute (empty if absent, in which case `record` is an error).
    pub concept_id: String,
    /// The record's values and missing optional names, or the record's error.
    pub record: Result<Parsed, Echo10Error>,
}

impl PageRecord {
    /// The record of a `<result>` with these attributes (`concept_id` empty if absent) whose
    /// `<Granule>` was read (`None`: it had none).
    pub(crate) fn of_result(
        concept_id: String,
        collection_concept_id: Option<String>,
        record: Option<Result<Parsed, Echo10Error>>,
    ) -> PageRecord {
        let record = match record {
            None => Err(Echo10Error::Missing {
                granule: None,
                field: "Granule",
            }),
            Some(Ok(parsed)) if concept_id.is_empty() => Err(Echo10Error::Missing {
                granule: Some(parsed.0.granule_ur),
                field: "concept-id",
            }),
            Some(Ok(parsed)) => check_collection(parsed, collection_concept_id),
            Some(Err(e)) => Err(e),
        };
        PageRecord { concept_id, record }
    }
}

/// The attributes of a `<result>` start tag.
struct ResultAttrs {
    concept_id: Option<String>,
    collection_concept_id: Option<String>,
}

/// Where the reader is.
enum Next {
    /// A `<result>` start tag was read (by [`PageReader::new`]).
    Pending(ResultAttrs),
    /// Between results.
    Read,
    /// After `</results>` or a document error.
    Done,
}

/// A streaming reader of a CMR echo10 results page: an iterator of [`PageRecord`]s that holds
/// one record's state at a time.
///
/// [`PageReader::new`] reads up to the first `<result>`, so [`PageReader::hits`] is known
/// before the records are. An `Err` item is a broken document (malformed XML, truncation, a
/// root other than `<results>`): it is the last item. A broken record is an `Ok` item whose
/// [`PageRecord::record`] is an error; the following records are still read.
pub struct PageReader<R: BufRead> {
    reader: Reader<R>,
    buf: Vec<u8>,
    hits: Option<u64>,
    took: Option<u64>,
    next: Next,
}

impl<R: BufRead> PageReader<R> {
    /// Starts reading a page: its prolog, `<results>`, `<hits>` and `<took>`.
    ///
    /// A CMR `<errors>` document gives [`Echo10Error::Cmr`] with its messages.
    pub fn new(input: R) -> Result<Self, Echo10Error> {
        let mut page = PageReader {
            reader: new_reader(input),
            buf: Vec::new(),
            hits: None,
            took: None,
            next: Next::Read,
        };
        page.read_root()?;
        page.next = match page.advance()? {
            Some(attrs) => Next::Pending(attrs),
            None => Next::Done,
        };
        Ok(page)
    }

    /// The page's `<hits>`: how many granules the whole query matches.
    pub fn hits(&self) -> Option<u64> {
        self.hits
    }

    /// The page's `<took>` (ms).
    pub fn took(&self) -> Option<u64> {
        self.took
    }

    /// Reads up to the root's start tag; it must be `<results>`.
    fn read_root(&mut self) -> Result<(), Echo10Error> {
        loop {
            self.buf.clear();
            let root = match next_event(&mut self.reader, &mut self.buf, None)? {
                Event::Start(e) => e.local_name().as_ref().to_string(),
                Event::Eof => {
                    return Err(Echo10Error::Missing {
                        granule: None,
                        field: "results",
                    });
                }
                other => {
                    expect_no_content(&other, None, "results")?;
                    continue;
                }
            };
            return match root.as_str() {
                "results" => Ok(()),
                "errors" => Err(self.read_errors()),
                other => Err(Echo10Error::Unexpected {
                    granule: None,
                    expected: "results",
                    found: format!("<{}>", clip(other)),
                }),
            };
        }
    }

    /// Collects the messages of a CMR `<errors>` document.
    fn read_errors(&mut self) -> Echo10Error {
        let mut messages = Vec::new();
        loop {
            self.buf.clear();
            let is_error = match next_event(&mut self.reader, &mut self.buf, None) {
                Ok(Event::Start(_)) => true,
                Ok(Event::End(_) | Event::Eof) => break,
                Ok(_) => false,
                Err(e) => return e,
            };
            if is_error {
                match self.read_text("error") {
                    Ok(m) => messages.push(clip(&m)),
                    Err(e) => return e,
                }
            }
        }
        Echo10Error::Cmr {
            message: messages.join("; "),
        }
    }

    /// Reads inside `<results>` up to the next `<result>` start tag, or to `</results>` and
    /// the end of the input (`None`).
    fn advance(&mut self) -> Result<Option<ResultAttrs>, Echo10Error> {
        loop {
            self.buf.clear();
            let name = match next_event(&mut self.reader, &mut self.buf, None)? {
                Event::Start(e) => {
                    if e.local_name().as_ref() == "result" {
                        return result_attrs(&e, &self.reader).map(Some);
                    }
                    Some(e.local_name().as_ref().to_string())
                }
                Event::End(_) => None,
                Event::Eof => {
                    return Err(Echo10Error::Truncated {
                        granule: None,
                        inside: "results",
                    });
                }
                other => {
                    expect_no_content(&other, None, "result")?;
                    continue;
                }
            };
            match name.as_deref() {
                None => {
                    self.read_epilog()?;
                    return Ok(None);
                }
                Some("hits") => self.hits = Some(self.read_count("hits")?),
                Some("took") => self.took = Some(self.read_count("took")?),
                Some(_) => self.skip_element("element", None)?,
            }
        }
    }

    /// Accepts only comments and whitespace after `</results>`.
    fn read_epilog(&mut self) -> Result<(), Echo10Error> {
        loop {
            self.buf.clear();
            match next_event(&mut self.reader, &mut self.buf, None)? {
                Event::Eof => return Ok(()),
                other => expect_no_content(&other, None, "end of input")?,
            }
        }
    }

    /// Reads one `<result>` after its start tag, up to and including its end tag.
    fn read_result(&mut self, attrs: ResultAttrs) -> Result<PageRecord, Echo10Error> {
        let concept_id = attrs.concept_id.unwrap_or_default();
        let mut record: Option<Result<Parsed, Echo10Error>> = None;
        loop {
            self.buf.clear();
            let granule = record
                .as_ref()
                .and_then(|r| r.as_ref().ok())
                .map(|(m, _)| m.granule_ur.as_str());
            let is_granule = match next_event(&mut self.reader, &mut self.buf, granule)? {
                Event::Start(e) => Tag::of(e.local_name().as_ref()) == Tag::Granule,
                Event::End(_) => break,
                Event::Eof => {
                    return Err(Echo10Error::Truncated {
                        granule: granule.map(str::to_string),
                        inside: "result",
                    });
                }
                // Anything else inside <result> is not ours to judge.
                _ => continue,
            };
            if is_granule && record.is_none() {
                let mut builder = GranuleBuilder::new();
                builder.start(Tag::Granule);
                read_granule(&mut self.reader, &mut self.buf, &mut builder)?;
                record = Some(builder.finish(&concept_id));
            } else {
                self.skip_element("result", granule)?;
            }
        }
        Ok(PageRecord::of_result(
            concept_id,
            attrs.collection_concept_id,
            record,
        ))
    }

    /// Skips the rest of an element whose start tag was read.
    fn skip_element(
        &mut self,
        inside: &'static str,
        granule: Option<&str>,
    ) -> Result<(), Echo10Error> {
        let mut depth = 1usize;
        while depth > 0 {
            self.buf.clear();
            match next_event(&mut self.reader, &mut self.buf, granule)? {
                Event::Start(_) => depth += 1,
                Event::End(_) => depth -= 1,
                Event::Eof => {
                    return Err(Echo10Error::Truncated {
                        granule: granule.map(str::to_string),
                        inside,
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The text of an element whose start tag was read (nested elements skipped).
    fn read_text(&mut self, inside: &'static str) -> Result<String, Echo10Error> {
        let mut text = String::new();
        loop {
            self.buf.clear();
            let nested = match next_event(&mut self.reader, &mut self.buf, None)? {
                Event::Text(t) => {
                    text.push_str(&t.xml10_content());
                    false
                }
                Event::CData(c) => {
                    text.push_str(&c.xml10_content());
                    false
                }
                Event::GeneralRef(r) => {
                    match resolve_reference(&r) {
                        Some(Resolved::Char(c)) => text.push(c),
                        Some(Resolved::Str(s)) => text.push_str(s),
                        None => {
                            return Err(Echo10Error::Entity {
                                granule: None,
                                position: self.reader.buffer_position(),
                                entity: clip(&r),
                            });
                        }
                    }
                    false
                }
                Event::Start(_) => true,
                Event::End(_) => return Ok(text.trim().to_string()),
                Event::Eof => {
                    return Err(Echo10Error::Truncated {
                        granule: None,
                        inside,
                    });
                }
                _ => false,
            };
            if nested {
                self.skip_element(inside, None)?;
            }
        }
    }

    /// A non-negative integer element (`<hits>`, `<took>`).
    fn read_count(&mut self, field: &'static str) -> Result<u64, Echo10Error> {
        let text = self.read_text(field)?;
        text.parse().map_err(|_| Echo10Error::Invalid {
            granule: None,
            field,
            value: clip(&text),
            reason: "not a non-negative integer",
        })
    }
}

impl<R: BufRead> Iterator for PageReader<R> {
    type Item = Result<PageRecord, Echo10Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let attrs = match std::mem::replace(&mut self.next, Next::Done) {
            Next::Done => return None,
            Next::Pending(attrs) => attrs,
            Next::Read => match self.advance() {
                Ok(Some(attrs)) => attrs,
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            },
        };
        let item = self.read_result(attrs);
        if item.is_ok() {
            self.next = Next::Read;
        }
        Some(item)
    }
}

impl<R: BufRead> std::iter::FusedIterator for PageReader<R> {}

/// The `concept-id` and `collection-concept-id` of a `<result>` start tag.
fn result_attrs<R>(e: &BytesStart<'_>, reader: &Reader<R>) -> Result<ResultAttrs, Echo10Error> {
    let mut attrs = ResultAttrs {
        concept_id: None,
        collection_concept_id: None,
    };
    let xml_error = |source| Echo10Error::Xml {
        granule: None,
        position: reader.buffer_position(),
        source,
    };
    for a in e.attributes() {
        let a = a.map_err(|e| xml_error(quick_xml::Error::InvalidAttr(e)))?;
        let slot = match a.key.local_name().as_ref() {
            "concept-id" => &mut attrs.concept_id,
            "collection-concept-id" => &mut attrs.collection_concept_id,
            _ => continue,
        };
        let value = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(xml_error)?;
        *slot = Some(value.trim().to_string());
    }
    Ok(attrs)
}

/// Checks a record's collection against its result's `collection-concept-id`, if given.
fn check_collection(
    parsed: Parsed,
    collection_concept_id: Option<String>,
) -> Result<Parsed, Echo10Error> {
    match collection_concept_id {
        Some(ccid) if Collection::from_concept_id(&ccid) != Some(parsed.0.collection) => {
            Err(Echo10Error::CollectionMismatch {
                granule: Some(parsed.0.granule_ur),
                field: "collection-concept-id",
                value: clip(&ccid),
                collection: parsed.0.collection,
            })
        }
        _ => Ok(parsed),
    }
}
