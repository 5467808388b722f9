//! An echo10 results page parsed while its body arrives: the body's chunks go through a
//! bounded channel to a [`PageReader`] on a blocking thread, so the page is never held whole
//! and the XML is parsed while the rest of it downloads.

use super::page::{PageReader, PageRecord};
use crate::error::{CmrProblem, Error, Result};
use crate::source::http::transport_error;
use bytes::{Buf, Bytes};
use std::io::{BufRead, Read};
use tokio::sync::mpsc;

/// Body chunks (as the connection delivers them, ~16 KB) in flight between the download
/// and the parser.
const CHUNKS_IN_FLIGHT: usize = 16;

/// Reads the records of the echo10 page in `resp`'s body. A body cut short is
/// [`Error::Http`]; one that is not an echo10 page (or ends before `</results>`) is
/// [`Error::CmrMalformed`]: both are retried like a failed request.
pub async fn read_page(url: &str, mut resp: reqwest::Response) -> Result<Vec<PageRecord>> {
    let (tx, rx) = mpsc::channel::<Bytes>(CHUNKS_IN_FLIGHT);
    let parser = tokio::task::spawn_blocking(move || {
        PageReader::new(ChunkReader::new(rx))?.collect::<std::result::Result<Vec<_>, _>>()
    });
    let mut download = Ok(());
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if tx.send(chunk).await.is_err() {
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

/// A blocking [`BufRead`] over the chunks of a channel; the end of the channel is the end
/// of the input.
struct ChunkReader {
    rx: mpsc::Receiver<Bytes>,
    chunk: Bytes,
}

impl ChunkReader {
    fn new(rx: mpsc::Receiver<Bytes>) -> ChunkReader {
        ChunkReader {
            rx,
            chunk: Bytes::new(),
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
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.chunk = chunk,
                None => break,
            }
        }
        Ok(&self.chunk)
    }

    fn consume(&mut self, amount: usize) {
        self.chunk.advance(amount.min(self.chunk.len()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chunks of `body` cut every `size` bytes, sent from another thread.
    fn reader_of(body: &'static [u8], size: usize) -> ChunkReader {
        let (tx, rx) = mpsc::channel(2);
        std::thread::spawn(move || {
            for chunk in body.chunks(size) {
                if tx.blocking_send(Bytes::from_static(chunk)).is_err() {
                    return;
                }
            }
        });
        ChunkReader::new(rx)
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
}
