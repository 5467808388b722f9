//! CMR JSON granule entries (`/search/granules.json`), rendered from a [`GranuleMeta`] key
//! for key in the order CMR writes them.

use super::rng::Rng;
use chrono::{DateTime, Utc};
use hls_flow::collection::Collection;
use hls_flow::source::hls::{GranuleMeta, LPDAAC_PUBLIC, bands};
use std::fmt::Write;
use std::sync::OnceLock;

const FEDSEARCH: &str = "http://esipfed.org/ns/fedsearch/1.1/";
const HOST: &str = "https://data.lpdaac.earthdatacloud.nasa.gov";
const S3_TITLE: &str = "This link provides direct download access via S3 to the granule";

/// CMR's time format: milliseconds and `Z`.
pub(crate) fn format_ms(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Appends `s` as the inside of a JSON string (escaped).
fn push_escaped(out: &mut String, s: &str) {
    if !s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(s);
        return;
    }
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Appends `s` as a JSON string.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    push_parts(out, &[s]);
}

/// Appends the concatenation of `parts` as one JSON string.
fn push_parts(out: &mut String, parts: &[&str]) {
    out.push('"');
    for p in parts {
        push_escaped(out, p);
    }
    out.push('"');
}

fn field(out: &mut String, key: &str, value: &str) {
    push_json_str(out, key);
    out.push(':');
    push_json_str(out, value);
    out.push(',');
}

/// A granule link; `title` and `href` are given in pieces (no intermediate strings).
fn link(out: &mut String, rel: &str, title: &[&str], href: &[&str]) {
    out.push_str("{\"rel\":\"");
    out.push_str(FEDSEARCH);
    out.push_str(rel);
    out.push_str("\",\"title\":");
    push_parts(out, title);
    out.push_str(",\"hreflang\":\"en-US\",\"href\":");
    push_parts(out, href);
    out.push_str("},");
}

fn inherited(out: &mut String, rel: &str, href: &str, length: Option<&str>) {
    out.push_str("{\"inherited\":true,");
    if let Some(l) = length {
        field(out, "length", l);
    }
    out.push_str("\"rel\":");
    push_parts(out, &[FEDSEARCH, rel]);
    out.push_str(",\"hreflang\":\"en-US\",\"href\":");
    push_json_str(out, href);
    out.push_str("},");
}

/// The inherited links of a collection, rendered once.
fn inherited_block(c: Collection) -> &'static str {
    static BLOCKS: OnceLock<[String; 2]> = OnceLock::new();
    let blocks = BLOCKS.get_or_init(|| {
        Collection::ALL.map(|c| {
            let mut s = String::new();
            inherited_links(&mut s, c);
            s
        })
    });
    match c {
        Collection::Hlsl30 => &blocks[0],
        Collection::Hlss30 => &blocks[1],
    }
}

/// The collection-level links CMR appends to every entry (`"inherited": true`).
fn inherited_links(out: &mut String, c: Collection) {
    inherited(
        out,
        "data#",
        &format!(
            "https://search.earthdata.nasa.gov/search?q={}",
            c.concept_id()
        ),
        Some("20MB"),
    );
    inherited(
        out,
        "metadata#",
        &format!("https://doi.org/{}", c.doi()),
        None,
    );
    inherited(
        out,
        "metadata#",
        "https://www.earthdata.nasa.gov/centers/lp-daac",
        None,
    );
    for doc in [
        "https://lpdaac.usgs.gov/documents/1698/HLS_User_Guide_V2.pdf",
        "https://lpdaac.usgs.gov/documents/769/HLS_ATBD_V15_provisional.pdf",
        "https://lpdaac.usgs.gov/documents/1117/HLS_Quick_Guide_v02.pdf",
        "https://github.com/nasa/HLS-Data-Resources/blob/main/python/tutorials/HLS_Tutorial.ipynb",
        "https://github.com/nasa/HLS-Data-Resources/tree/main/python/scripts/HLS_SuPER",
        "https://github.com/nasa/HLS-Data-Resources/tree/main/bash/hls-bulk-download",
        "https://github.com/nasa/HLS-Data-Resources/blob/main/r/HLS_Tutorial.Rmd",
    ] {
        inherited(out, "documentation#", doc, None);
    }
    inherited(
        out,
        "data#",
        "https://appeears.earthdatacloud.nasa.gov/",
        None,
    );
}

/// A polygon ring as CMR writes it: "lat lon" pairs, counter-clockwise (the reverse of
/// ECHO10's clockwise `Boundary`), closed.
pub(crate) fn ring_string(ring: &[(f64, f64)]) -> String {
    let mut s = String::new();
    let Some(&first) = ring.first() else {
        return s;
    };
    let order = std::iter::once(first)
        .chain(ring[1..].iter().rev().copied())
        .chain(std::iter::once(first));
    for (i, (lon, lat)) in order.enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{lat} {lon}");
    }
    s
}

/// The inverse of [`ring_string`]: ECHO10-ordered `(lon, lat)` points, not closed.
pub(crate) fn parse_ring(s: &str) -> Option<Vec<(f64, f64)>> {
    let nums: Vec<f64> = s
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    if nums.len() < 8 || !nums.len().is_multiple_of(2) {
        return None;
    }
    let mut pts: Vec<(f64, f64)> = nums.chunks(2).map(|p| (p[1], p[0])).collect();
    if pts.first() == pts.last() {
        pts.pop();
    }
    let first = pts.first().copied()?;
    Some(
        std::iter::once(first)
            .chain(pts[1..].iter().rev().copied())
            .collect(),
    )
}

/// Formats a cloud cover as CMR does (`"44"`).
fn cloud_string(cc: f64) -> String {
    if cc.fract() == 0.0 {
        format!("{}", cc as i64)
    } else {
        format!("{cc}")
    }
}

/// Appends the CMR JSON entry of `meta` to `out`. `base` is the emulator's URL: the https
/// `_stac.json` link points at it; all other links keep LP DAAC's hosts. The band links
/// come in a per-granule order, as CMR's do.
pub(crate) fn render(out: &mut String, meta: &GranuleMeta, base: &str) {
    let c = meta.collection;
    let id = meta.granule_ur.as_str();
    let folder = c.bucket_folder();
    out.push('{');
    field(
        out,
        "producer_granule_id",
        id.strip_suffix(".v2.0").unwrap_or(id),
    );
    field(out, "time_start", &format_ms(&meta.begin));
    if let Some(cc) = meta.cloud_cover {
        field(out, "cloud_cover", &cloud_string(cc));
    }
    field(out, "updated", &format_ms(&meta.updated));
    field(out, "dataset_id", c.dataset_id());
    field(out, "data_center", "LPCLOUD");
    field(out, "title", id);
    field(out, "coordinate_system", "GEODETIC");
    field(out, "day_night_flag", "DAY");
    field(out, "time_end", &format_ms(&meta.end));
    field(out, "id", &meta.concept_id);
    field(out, "original_format", "ECHO10");
    out.push_str("\"browse_flag\":true,\"polygons\":[");
    for (i, ring) in meta.polygons.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('[');
        push_json_str(out, &ring_string(ring));
        out.push(']');
    }
    out.push_str("],");
    field(out, "collection_concept_id", c.concept_id());
    out.push_str("\"online_access_flag\":true,\"links\":[");

    let mut order: Vec<&str> = bands(c).iter().map(|b| b.name).collect();
    Rng::from_parts(&[id
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(131) ^ u64::from(b))])
    .shuffle(&mut order);
    let protected: [&str; 5] = ["lp-prod-protected/", folder, "/", id, "/"];
    let public: [&str; 5] = ["lp-prod-public/", folder, "/", id, "/"];
    let [p0, p1, p2, p3, p4] = protected;
    let [q0, q1, q2, q3, q4] = public;
    for band in &order {
        link(
            out,
            "data#",
            &["Download ", id, ".", band, ".tif"],
            &[HOST, "/", p0, p1, p2, p3, p4, id, ".", band, ".tif"],
        );
    }
    for band in &order {
        link(
            out,
            "s3#",
            &[S3_TITLE],
            &["s3://", p0, p1, p2, p3, p4, id, ".", band, ".tif"],
        );
    }
    let meta_title = [S3_TITLE, " (EXTENDED METADATA)"];
    link(
        out,
        "metadata#",
        &["Download ", id, "_stac.json (EXTENDED METADATA)"],
        &[base, "/", q0, q1, q2, q3, q4, id, "_stac.json"],
    );
    link(
        out,
        "metadata#",
        &["Download ", id, ".cmr.xml (EXTENDED METADATA)"],
        &[HOST, "/", p0, p1, p2, p3, p4, id, ".cmr.xml"],
    );
    link(
        out,
        "metadata#",
        &meta_title,
        &["s3://", q0, q1, q2, q3, q4, id, "_stac.json"],
    );
    link(
        out,
        "metadata#",
        &meta_title,
        &["s3://", p0, p1, p2, p3, p4, id, ".cmr.xml"],
    );
    link(
        out,
        "metadata#",
        &[
            "api endpoint to retrieve temporary credentials valid for same-region direct s3 access (VIEW RELATED INFORMATION)",
        ],
        &[HOST, "/s3credentials"],
    );
    link(
        out,
        "browse#",
        &["Download ", id, ".jpg"],
        &[HOST, "/", q0, q1, q2, q3, q4, id, ".jpg"],
    );
    link(
        out,
        "browse#",
        &[S3_TITLE],
        &["s3://", q0, q1, q2, q3, q4, id, ".jpg"],
    );
    out.push_str(inherited_block(c));
    if out.ends_with(',') {
        out.pop();
    }
    out.push_str("]}");
}

/// Rewrites an LP DAAC https `_stac.json` href to the emulator (`None` if it is not one).
pub(crate) fn rewrite_stac_href(href: &str, base: &str) -> Option<String> {
    if !href.ends_with("_stac.json") {
        return None;
    }
    href.strip_prefix(LPDAAC_PUBLIC)
        .map(|rest| format!("{base}/lp-prod-public{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_round_trip_and_are_counter_clockwise() {
        let recorded = "46.8656957 -92.9691665 47.8528661 -92.5619411 47.8537018 -93.0002674 46.8656999 -93.0002624 46.8656957 -92.9691665";
        let ring = parse_ring(recorded).unwrap();
        assert_eq!(ring.len(), 4);
        assert_eq!(ring[0], (-92.9691665, 46.8656957));
        // ECHO10 order is clockwise: signed area (shoelace) is negative.
        let area: f64 = (0..ring.len())
            .map(|i| {
                let (a, b) = (ring[i], ring[(i + 1) % ring.len()]);
                a.0 * b.1 - b.0 * a.1
            })
            .sum();
        assert!(area < 0.0);
        assert_eq!(ring_string(&ring), recorded);
        assert_eq!(parse_ring("1 2 3"), None);
    }

    #[test]
    fn json_strings_are_escaped() {
        let mut s = String::new();
        push_json_str(&mut s, "a\"b\\c\n\u{1}");
        assert_eq!(s, r#""a\"b\\c\n\u0001""#);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v, "a\"b\\c\n\u{1}");
    }

    #[test]
    fn rewrites_only_https_stac_links() {
        let base = "http://127.0.0.1:9";
        let h =
            "https://data.lpdaac.earthdatacloud.nasa.gov/lp-prod-public/HLSL30.020/X/X_stac.json";
        assert_eq!(
            rewrite_stac_href(h, base).as_deref(),
            Some("http://127.0.0.1:9/lp-prod-public/HLSL30.020/X/X_stac.json")
        );
        assert_eq!(
            rewrite_stac_href("s3://lp-prod-public/HLSL30.020/X/X_stac.json", base),
            None
        );
        assert_eq!(
            rewrite_stac_href(
                "https://data.lpdaac.earthdatacloud.nasa.gov/lp-prod-public/HLSL30.020/X/X.jpg",
                base
            ),
            None
        );
    }
}
