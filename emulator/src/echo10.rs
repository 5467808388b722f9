//! Writing a [`GranuleMeta`] as an ECHO10 `<Granule>` record, shaped like LP DAAC's.
//!
//! Element order and the attributes carried follow the two real records in
//! `tests/fixtures/echo10/` (one per collection). The mapped values come from the meta; the
//! others (product ids, processing times, sizes, zenith angles, …) are plausible values derived
//! deterministically from it, so that the same meta always renders the same bytes.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use hls_flow::collection::Collection;
use hls_flow::source::echo10::attr;
use hls_flow::source::hls::{GranuleMeta, epsg_of_tile, format_datetime};
use quick_xml::escape::escape;

/// Renders a granule as an ECHO10 `<Granule>` record (no XML declaration, two-space
/// indentation, as LP DAAC's `.cmr.xml` files).
///
/// Parsing the result with [`parse_granule`](super::parse_granule) gives back an equal
/// `GranuleMeta` provided that its strings are non-empty without surrounding whitespace,
/// contain only characters XML 1.0 can carry and no carriage returns, that its times have at
/// most microsecond precision, and that it has at least one ring of 3 points or more with
/// coordinates in range. Absent optional values leave their attribute (and the attributes
/// derived from them) out.
pub fn render_granule(meta: &GranuleMeta) -> String {
    let mut w = Writer::default();
    write_granule(&mut w, meta);
    w.out
}

fn write_granule(w: &mut Writer, meta: &GranuleMeta) {
    let d = Derived::of(meta);
    w.open("Granule");
    w.leaf("GranuleUR", &meta.granule_ur);
    w.leaf(
        "InsertTime",
        &format_datetime(&shift(meta.updated, Duration::microseconds(-7))),
    );
    w.leaf("LastUpdate", &format_datetime(&meta.updated));
    w.open("Collection");
    w.leaf("DataSetId", meta.collection.dataset_id());
    w.close("Collection");
    w.open("DataGranule");
    w.leaf("DataGranuleSizeInBytes", &d.size_bytes.to_string());
    w.leaf("ProducerGranuleId", d.producer_id);
    w.leaf("DayNightFlag", "DAY");
    w.leaf(
        "ProductionDateTime",
        &d.processed.format("%Y-%m-%dT%H:%M:%S.000000Z").to_string(),
    );
    w.leaf("LocalVersionId", "2.0");
    w.close("DataGranule");
    w.open("Temporal");
    w.open("RangeDateTime");
    w.leaf("BeginningDateTime", &format_datetime(&meta.begin));
    w.leaf("EndingDateTime", &format_datetime(&meta.end));
    w.close("RangeDateTime");
    w.close("Temporal");
    w.open("Spatial");
    w.open("HorizontalSpatialDomain");
    w.open("Geometry");
    for ring in &meta.polygons {
        w.open("GPolygon");
        w.open("Boundary");
        for (lon, lat) in ring {
            w.open("Point");
            w.leaf("PointLongitude", &float(*lon));
            w.leaf("PointLatitude", &float(*lat));
            w.close("Point");
        }
        w.close("Boundary");
        w.close("GPolygon");
    }
    w.close("Geometry");
    w.close("HorizontalSpatialDomain");
    w.close("Spatial");
    w.open("Platforms");
    w.open("Platform");
    w.leaf("ShortName", &meta.platform);
    w.open("Instruments");
    w.open("Instrument");
    w.leaf("ShortName", &meta.instrument);
    w.close("Instrument");
    w.close("Instruments");
    w.close("Platform");
    w.close("Platforms");
    w.open("AdditionalAttributes");
    match meta.collection {
        Collection::Hlss30 => s30_attributes(w, meta, &d),
        Collection::Hlsl30 => l30_attributes(w, meta, &d),
    }
    w.close("AdditionalAttributes");
    w.empty("OnlineAccessURLs");
    w.empty("OnlineResources");
    w.leaf("DataFormat", "Cloud Optimized GeoTIFF (COG)");
    w.empty("AssociatedBrowseImageUrls");
    w.close("Granule");
}

/// The additional attributes of an HLSS30 record, in LP DAAC's order.
fn s30_attributes(w: &mut Writer, meta: &GranuleMeta, d: &Derived) {
    w.attribute("PRODUCT_URI", &[&d.source_product]);
    mapped_head(w, meta, d);
    w.attribute("HLS_PROCESSING_TIME", &[&d.processing_time()]);
    w.attribute("SENSING_TIME", &[&format_datetime(&meta.begin)]);
    if let Some(epsg) = d.epsg {
        w.attribute("HORIZONTAL_CS_CODE", &[&format!("EPSG:{epsg}")]);
        w.attribute(
            "HORIZONTAL_CS_NAME",
            &[&format!("WGS84 / UTM zone {}N", epsg - 32600)],
        );
    }
    w.optional(attr::ULX, meta.ulx.map(float));
    w.optional(attr::ULY, meta.uly.map(float));
    w.attribute("SPATIAL_RESAMPLING_ALG", &["Area Weighted Average"]);
    w.attribute("ADD_OFFSET", &["0"]);
    w.attribute("REF_SCALE_FACTOR", &["0.0001"]);
    w.attribute("ANG_SCALE_FACTOR", &["0.01"]);
    mapped_tail(w, meta, d);
    for (band, slope, offset) in [
        ("01", "0.9959", "-0.0002"),
        ("02", "0.9778", "-0.004"),
        ("03", "1.0075", "-0.0008"),
        ("04", "0.9761", "0.001"),
        ("11", "1.0", "-0.0003"),
        ("12", "0.9867", "0.0004"),
        ("8A", "0.9966", "0.0"),
    ] {
        w.attribute(
            &format!("MSI_BAND_{band}_BANDPASS_ADJUSTMENT_SLOPE_AND_OFFSET"),
            &[slope, offset],
        );
    }
    w.attribute("AROP_AVE_XSHIFT(METERS)", &["0.0"]);
    w.attribute("AROP_AVE_YSHIFT(METERS)", &["0.0"]);
    w.attribute("AROP_NCP", &["0"]);
    w.attribute("AROP_RMSE(METERS)", &["0.0"]);
    w.attribute("AROP_S2_REFIMG", &["NONE"]);
    w.attribute("ACCODE", &["LaSRC v3.1.0"]);
    w.attribute("PROCESSING_BASELINE", &["03.00"]);
    doi(w, meta);
}

/// The additional attributes of an HLSL30 record, in LP DAAC's order.
fn l30_attributes(w: &mut Writer, meta: &GranuleMeta, d: &Derived) {
    w.attribute("LANDSAT_PRODUCT_ID", &[&d.source_product]);
    mapped_head(w, meta, d);
    w.attribute("SPATIAL_RESAMPLING_ALG", &["Cubic Convolution"]);
    w.attribute("HLS_PROCESSING_TIME", &[&d.processing_time()]);
    let sensing = format_datetime(&meta.begin);
    let sensing = format!("{}0Z", sensing.trim_end_matches('Z'));
    w.attribute("SENSING_TIME", &[&sensing]);
    if let Some(epsg) = d.epsg {
        w.attribute(
            "HORIZONTAL_CS_NAME",
            &[&format!("UTM, WGS84, UTM ZONE {}", epsg - 32600)],
        );
    }
    w.optional(attr::ULX, meta.ulx.map(float));
    w.optional(attr::ULY, meta.uly.map(float));
    w.attribute("ADD_OFFSET", &["0"]);
    w.attribute("REF_SCALE_FACTOR", &["0.0001"]);
    w.attribute("THERM_SCALE_FACTOR", &["0.01"]);
    w.attribute("ANG_SCALE_FACTOR", &["0.01"]);
    mapped_tail(w, meta, d);
    w.attribute("ACCODE", &["LaSRC v3.0.5"]);
    w.attribute("TIRS_SSM_MODEL", &["FINAL"]);
    w.attribute("TIRS_SSM_POSITION_STATUS", &["ESTIMATED"]);
    w.attribute("USGS_SOFTWARE", &["LPGS_15.3.1"]);
    doi(w, meta);
}

/// `CLOUD_COVERAGE` … `SPATIAL_RESOLUTION`, common to both collections.
fn mapped_head(w: &mut Writer, meta: &GranuleMeta, d: &Derived) {
    w.optional(
        attr::CLOUD_COVERAGE,
        meta.cloud_cover.map(integral_or_float),
    );
    w.optional(attr::MGRS_TILE_ID, meta.mgrs_tile.clone());
    w.attribute("SPATIAL_COVERAGE", &[&d.spatial_coverage.to_string()]);
    w.optional(attr::SPATIAL_RESOLUTION, meta.resolution.map(float));
}

/// `FILLVALUE` … `NBAR_SOLAR_ZENITH`, common to both collections.
fn mapped_tail(w: &mut Writer, meta: &GranuleMeta, d: &Derived) {
    w.attribute("FILLVALUE", &["-9999"]);
    w.attribute("QA_FILLVALUE", &["255"]);
    w.optional(attr::NCOLS, meta.ncols.map(|n| n.to_string()));
    w.optional(attr::NROWS, meta.nrows.map(|n| n.to_string()));
    w.optional(attr::MEAN_SUN_AZIMUTH_ANGLE, meta.sun_azimuth.map(float));
    w.attribute("MEAN_SUN_ZENITH_ANGLE", &[&format!("{:.8}", d.sun_zenith)]);
    w.optional(attr::MEAN_VIEW_AZIMUTH_ANGLE, meta.view_azimuth.map(float));
    w.attribute(
        "MEAN_VIEW_ZENITH_ANGLE",
        &[&format!("{:.8}", d.view_zenith)],
    );
    w.attribute(
        "NBAR_SOLAR_ZENITH",
        &[&format!("{:.8}", (d.sun_zenith - 2.345).max(0.0))],
    );
}

fn doi(w: &mut Writer, meta: &GranuleMeta) {
    if let Some(doi) = &meta.doi {
        w.attribute(attr::IDENTIFIER_PRODUCT_DOI, &[doi]);
        w.attribute("IDENTIFIER_PRODUCT_DOI_AUTHORITY", &["https://doi.org"]);
    }
}

/// A float in Rust's shortest representation that parses back to the same value
/// (`30.0`, `-70.85016357`, `1e-7`).
pub(crate) fn float(v: f64) -> String {
    format!("{v:?}")
}

/// An integral float as an integer (`53`), as LP DAAC writes `CLOUD_COVERAGE`; others as
/// [`float`].
pub(crate) fn integral_or_float(v: f64) -> String {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if v.fract() == 0.0 && v.abs() < EXACT {
        format!("{}", v as i64)
    } else {
        float(v)
    }
}

/// The values of a record that are not in the meta, derived from it deterministically.
struct Derived<'a> {
    /// `ProducerGranuleId`: the id without its `.v2.0` suffix.
    producer_id: &'a str,
    /// When HLS processed the granule (`HLS_PROCESSING_TIME`, `ProductionDateTime`).
    processed: DateTime<Utc>,
    /// `PRODUCT_URI` (S30) / `LANDSAT_PRODUCT_ID` (L30).
    source_product: String,
    size_bytes: u64,
    spatial_coverage: u64,
    epsg: Option<i64>,
    sun_zenith: f64,
    view_zenith: f64,
}

impl<'a> Derived<'a> {
    fn of(meta: &'a GranuleMeta) -> Self {
        let id = meta.granule_ur.as_str();
        // FNV-1a of the granule id: the source of the "random" values.
        let hash = fnv1a(id.as_bytes());
        let producer_id = id.strip_suffix(".v2.0").unwrap_or(id);
        let processed = shift(meta.updated, Duration::seconds(-23));
        // The datatake start is the id's time token (`2021168T100559`), else the begin time.
        let acquired = id
            .split('.')
            .nth(3)
            .and_then(|t| NaiveDateTime::parse_from_str(t, "%Y%jT%H%M%S").ok())
            .map_or(meta.begin, |t| t.and_utc());
        let tile = meta
            .mgrs_tile
            .clone()
            .or_else(|| {
                id.split('.')
                    .nth(2)
                    .map(|t| t.trim_start_matches('T').to_string())
            })
            .unwrap_or_default();
        let source_product = match meta.collection {
            Collection::Hlss30 => {
                let unit = meta
                    .platform
                    .strip_prefix("Sentinel-2")
                    .and_then(|u| u.chars().next())
                    .unwrap_or('A');
                format!(
                    "S2{unit}_MSIL1C_{}_N0300_R{:03}_T{tile}_{}.SAFE",
                    acquired.format("%Y%m%dT%H%M%S"),
                    1 + hash % 143,
                    shift(acquired, Duration::seconds(8195)).format("%Y%m%dT%H%M%S"),
                )
            }
            Collection::Hlsl30 => {
                let mission = meta
                    .platform
                    .chars()
                    .last()
                    .filter(char::is_ascii_digit)
                    .unwrap_or('8');
                format!(
                    "LC0{mission}_L1TP_{:03}{:03}_{}_{}_02_T1",
                    1 + hash % 233,
                    1 + (hash >> 8) % 248,
                    acquired.format("%Y%m%d"),
                    shift(acquired, Duration::days(10)).format("%Y%m%d"),
                )
            }
        };
        let base = match meta.collection {
            Collection::Hlss30 => 12_000_000,
            Collection::Hlsl30 => 4_000_000,
        };
        let center_lat = meta.bbox().map_or(0.0, |b| (b[1] + b[3]) / 2.0);
        Derived {
            producer_id,
            processed,
            source_product,
            size_bytes: base + hash % 16_000_000,
            spatial_coverage: 1 + (hash >> 16) % 100,
            epsg: meta.mgrs_tile.as_deref().and_then(epsg_of_tile),
            sun_zenith: (20.0 + center_lat.abs() * 0.6).min(89.0),
            view_zenith: ((hash >> 24) % 1_100_000_000) as f64 / 1e8,
        }
    }

    /// `HLS_PROCESSING_TIME`: whole seconds.
    fn processing_time(&self) -> String {
        self.processed.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    }
}

/// `t + by`, or `t` where that is out of range.
fn shift(t: DateTime<Utc>, by: Duration) -> DateTime<Utc> {
    t.checked_add_signed(by).unwrap_or(t)
}

/// 64-bit FNV-1a.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// An indenting XML writer over a `String`.
#[derive(Default)]
struct Writer {
    out: String,
    depth: usize,
    /// Whether this writer wrote a line already (the next one starts on a new line).
    started: bool,
}

impl Writer {
    fn indent(&mut self) {
        if self.started {
            self.out.push('\n');
        }
        self.started = true;
        for _ in 0..self.depth {
            self.out.push_str("  ");
        }
    }

    fn open(&mut self, name: &str) {
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
        self.depth += 1;
    }

    fn close(&mut self, name: &str) {
        self.depth = self.depth.saturating_sub(1);
        self.indent();
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    fn empty(&mut self, name: &str) {
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        self.out.push_str("/>");
    }

    fn leaf(&mut self, name: &str, value: &str) {
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
        self.out.push_str(&escape(value));
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    fn attribute(&mut self, name: &str, values: &[&str]) {
        self.open("AdditionalAttribute");
        self.leaf("Name", name);
        self.open("Values");
        for v in values {
            self.leaf("Value", v);
        }
        self.close("Values");
        self.close("AdditionalAttribute");
    }

    fn optional(&mut self, name: &str, value: Option<String>) {
        if let Some(v) = value {
            self.attribute(name, &[&v]);
        }
    }
}

/// Renders a CMR echo10 results page: `hits` (CMR-Hits of the whole query), `took` (ms) and
/// one `<result>` per granule, its `concept-id` taken from [`GranuleMeta::concept_id`], all
/// of revision 1.
pub fn render_page(hits: u64, took: u64, metas: &[GranuleMeta]) -> String {
    let records: Vec<(&GranuleMeta, u32)> = metas.iter().map(|m| (m, 1)).collect();
    render_page_revisions(hits, took, &records)
}

/// [`render_page`] with each granule's revision id (the `revision-id` of its `<result>`).
pub fn render_page_revisions(hits: u64, took: u64, records: &[(&GranuleMeta, u32)]) -> String {
    let rendered: Vec<String> = records.iter().map(|(m, _)| render_granule(m)).collect();
    let records: Vec<PageRecord<'_>> = records
        .iter()
        .zip(&rendered)
        .map(|(&(meta, revision_id), xml)| PageRecord {
            meta,
            revision_id,
            xml,
        })
        .collect();
    render_page_records(hits, took, &records)
}

/// One `<result>` of a page: its granule, revision id, and its `<Granule>` record already
/// rendered (by [`render_granule`]).
#[derive(Debug, Clone, Copy)]
pub struct PageRecord<'a> {
    /// The granule (its concept id and collection name the `<result>`).
    pub meta: &'a GranuleMeta,
    /// The `revision-id` of the `<result>`.
    pub revision_id: u32,
    /// The `<Granule>` record.
    pub xml: &'a str,
}

/// Assembles a CMR echo10 results page from records rendered beforehand: the server renders
/// each granule's record once and copies it into every page that lists it.
pub fn render_page_records(hits: u64, took: u64, records: &[PageRecord<'_>]) -> String {
    let size = records.iter().map(|r| r.xml.len() + 160).sum::<usize>();
    let mut out = String::with_capacity(200 + size);
    out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?><results><hits>"#);
    out.push_str(&hits.to_string());
    out.push_str("</hits><took>");
    out.push_str(&took.to_string());
    out.push_str("</took>");
    for r in records {
        out.push_str(r#"<result concept-id=""#);
        out.push_str(&escape(r.meta.concept_id.as_str()));
        out.push_str(r#"" collection-concept-id=""#);
        out.push_str(r.meta.collection.concept_id());
        out.push_str(r#"" revision-id=""#);
        out.push_str(&r.revision_id.to_string());
        out.push_str(r#"" format="application/echo10+xml">"#);
        out.push_str(r.xml);
        out.push_str("</result>");
    }
    out.push_str("</results>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_render_like_lp_daac_and_round_trip() {
        assert_eq!(float(30.0), "30.0");
        assert_eq!(float(-1099980.0), "-1099980.0");
        assert_eq!(float(-70.85016357), "-70.85016357");
        assert_eq!(integral_or_float(53.0), "53");
        assert_eq!(integral_or_float(2.5), "2.5");
        assert_eq!(integral_or_float(1e300), "1e300");
        for v in [
            1e-7,
            1e300,
            -0.0,
            f64::MIN_POSITIVE,
            5e-324,
            f64::MAX,
            0.1 + 0.2,
        ] {
            assert_eq!(float(v).parse::<f64>().unwrap(), v);
            assert_eq!(integral_or_float(v).parse::<f64>().unwrap(), v);
        }
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
