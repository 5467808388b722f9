//! Proof of equivalence with the `stac` crate's writer, and the shape errors.

use super::*;
use crate::Collection;
use crate::source::hls::{GranuleMeta, to_stac_item};
use arrow_array::RecordBatchReader;
use bytes::Bytes;
use chrono::{Duration, TimeZone, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use serde_json::{Value, json};
use stac::geoparquet::{WriterBuilder, WriterOptions};

/// A varied granule: item 0 has every optional attribute (so the `stac` writer infers the
/// full schema from the first item); others miss some, cross the equator, the antimeridian
/// and midnight, and have one or two polygons.
fn meta(collection: Collection, i: usize) -> GranuleMeta {
    let day = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + Duration::days((i % 366) as i64);
    let begin = match i % 10 {
        1 => day + Duration::milliseconds(86_399_950), // 23:59:59.950
        2 => day,                                      // 00:00:00.000000
        3 => day + Duration::microseconds(86_399_999_999), // 23:59:59.999999
        4 => day + Duration::microseconds(43_200_000_500), // 12:00:00.000500
        5 => day + Duration::microseconds(1_999),
        _ => {
            day + Duration::seconds((i as i64 * 7_919) % 86_400)
                + Duration::microseconds((i as i64 * 104_729) % 1_000_000)
        }
    };
    let end = if i % 6 == 5 {
        begin + Duration::microseconds(1_234_567)
    } else {
        begin
    };
    let lon = -177.0 + (i as f64 * 1.37) % 350.0;
    let lat = if i % 4 == 3 { -33.5 } else { 71.1 } - (i as f64 * 0.11) % 5.0;
    let ring = |dx: f64| {
        vec![
            (lon + dx, lat),
            (lon + dx, lat + 0.72),
            (lon + dx + 1.45, lat + 0.46),
            (lon + dx + 1.47, lat + 0.01),
        ]
    };
    let mut polygons = vec![ring(0.0)];
    if i % 3 == 2 {
        polygons.push(ring(2.1));
    }
    let (platform, instrument) = match (collection, i % 3) {
        (Collection::Hlsl30, 0) => ("LANDSAT-8", "OLI"),
        (Collection::Hlsl30, _) => ("LANDSAT-9", "OLI"),
        (Collection::Hlss30, 0) => ("Sentinel-2A", "Sentinel-2 MSI"),
        (Collection::Hlss30, 1) => ("Sentinel-2B", "Sentinel-2 MSI"),
        (Collection::Hlss30, _) => ("Sentinel-2C", "Sentinel-2 MSI"),
    };
    let zone = 1 + i % 60;
    let tile = format!("{zone:02}W{}V", ["E", "F", "G"][i % 3]);
    let some_unless = |n: usize| i % n != n - 1;
    GranuleMeta {
        collection,
        granule_ur: format!(
            "HLS.{}.T{tile}.{}.v2.0.{i}",
            collection.product(),
            begin.format("%Y%jT%H%M%S")
        ),
        concept_id: format!("G{}-LPCLOUD", 3_000_000_000u64 + i as u64),
        begin,
        end,
        updated: end,
        platform: platform.into(),
        instrument: instrument.into(),
        polygons,
        cloud_cover: some_unless(7).then_some((i % 101) as f64),
        mgrs_tile: some_unless(19).then_some(tile),
        ulx: some_unless(11).then_some(199_980.0 + (i % 5) as f64 * 109_800.0),
        uly: Some(if i % 4 == 3 {
            -3_700_020.0 + i as f64
        } else {
            8_000_040.0
        }),
        nrows: some_unless(17).then_some(3660),
        ncols: Some(3660),
        resolution: Some(30.0),
        sun_azimuth: some_unless(23).then_some(187.71039035 - i as f64 * 0.31),
        view_azimuth: some_unless(29).then_some(296.0704673 - i as f64 * 0.07),
        doi: some_unless(13).then_some(collection.doi().to_string()),
    }
}

/// The item as published plus `collection`, as the cache stores it.
fn item_json(collection: Collection, i: usize) -> Value {
    let mut item = to_stac_item(&meta(collection, i));
    item["collection"] = json!(collection.stac_id());
    item
}

fn zstd3() -> Compression {
    Compression::ZSTD(ZstdLevel::try_new(3).unwrap())
}

fn stac_file(items: Vec<stac::Item>) -> Bytes {
    let mut buf = Vec::new();
    WriterBuilder::new(&mut buf)
        .writer_options(WriterOptions::new().with_compression(zstd3()))
        .build(items)
        .unwrap()
        .finish()
        .unwrap();
    Bytes::from(buf)
}

fn small_batches() -> HlsWriterOptions {
    HlsWriterOptions::default()
        .with_batch_rows(64)
        .with_max_row_group_row_count(100)
}

fn fast_file_from_json(collection: Collection, jsons: &[Vec<u8>]) -> (Bytes, WriteStats) {
    let mut w = HlsGeoparquetWriter::new(Vec::new(), collection, small_batches()).unwrap();
    for json in jsons {
        w.write_json(json).unwrap();
    }
    let (buf, stats) = w.finish_into_inner().unwrap();
    (Bytes::from(buf), stats)
}

fn fast_file_from_items(collection: Collection, items: &[stac::Item]) -> Bytes {
    let mut buf = Vec::new();
    let mut w = HlsGeoparquetWriter::new(&mut buf, collection, small_batches()).unwrap();
    for item in items {
        w.write_item(item).unwrap();
    }
    let stats = w.finish().unwrap();
    assert_eq!(stats.items, items.len() as u64);
    Bytes::from(buf)
}

fn read_back(file: &Bytes) -> Vec<Value> {
    stac::geoparquet::from_reader(file.clone())
        .unwrap()
        .items
        .into_iter()
        .map(|item| serde_json::to_value(item).unwrap())
        .collect()
}

fn key_value(file: &Bytes, key: &str) -> Value {
    let reader = ParquetRecordBatchReaderBuilder::try_new(file.clone()).unwrap();
    let kv = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap();
    let value = kv.iter().find(|kv| kv.key == key).unwrap();
    serde_json::from_str(value.value.as_deref().unwrap()).unwrap()
}

/// Every column of the file, read as one batch per column, and its Parquet schema.
fn columns(file: &Bytes) -> (arrow_schema::SchemaRef, Vec<arrow_array::ArrayRef>, String) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file.clone()).unwrap();
    let mut parquet_schema = Vec::new();
    parquet::schema::printer::print_schema(
        &mut parquet_schema,
        builder.metadata().file_metadata().schema(),
    );
    let reader = builder.with_batch_size(1_000_000).build().unwrap();
    let schema = reader.schema();
    let batches: Vec<_> = reader.map(Result::unwrap).collect();
    assert_eq!(batches.len(), 1, "one batch across row groups");
    (
        schema,
        batches[0].columns().to_vec(),
        String::from_utf8(parquet_schema).unwrap(),
    )
}

fn assert_equivalent(collection: Collection, n: usize) {
    let values: Vec<Value> = (0..n).map(|i| item_json(collection, i)).collect();
    let jsons: Vec<Vec<u8>> = values
        .iter()
        .map(|v| serde_json::to_vec(v).unwrap())
        .collect();
    // Parsed from the same bytes: serde_json's default float parsing is not always the
    // closest f64 (no `float_roundtrip`), and both paths should see the same numbers.
    let items: Vec<stac::Item> = jsons
        .iter()
        .map(|json| serde_json::from_slice(json).unwrap())
        .collect();

    let expected_file = stac_file(items.clone());
    let (fast_file, stats) = fast_file_from_json(collection, &jsons);
    let fast_items_file = fast_file_from_items(collection, &items);
    assert_eq!(stats.items, n as u64);
    assert_eq!(stats.batches, n.div_ceil(64) as u64);
    assert_eq!(stats.row_groups, n.div_ceil(100));
    assert_eq!(stats.bytes, fast_file.len() as u64);

    // Every item reads back as it went in (only `collection` added), microseconds included.
    let expected: Vec<Value> = items
        .iter()
        .map(|item| {
            let mut item = item.clone();
            item.collection = Some(collection.stac_id().into());
            serde_json::to_value(item).unwrap()
        })
        .collect();
    for file in [&fast_file, &fast_items_file] {
        let got = read_back(file);
        assert_eq!(got.len(), n);
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert!(g == e, "item {i}:\n{g}\n{e}");
        }
    }

    // The `stac` writer's Arrow schema (names, types, nesting, nullability, field metadata)
    // and Parquet schema, but for the datetimes in microseconds; the same column contents
    // (WKB bytes, dictionaries) but for the datetimes (the `stac` writer floors them to
    // milliseconds) and `stac_version` (it stores its own, 1.1.0).
    let (expected_schema, expected_columns, expected_parquet) = columns(&expected_file);
    let micros = |f: &arrow_schema::FieldRef| -> arrow_schema::Field {
        match f.data_type() {
            arrow_schema::DataType::Timestamp(_, tz) => {
                f.as_ref()
                    .clone()
                    .with_data_type(arrow_schema::DataType::Timestamp(
                        arrow_schema::TimeUnit::Microsecond,
                        tz.clone(),
                    ))
            }
            _ => f.as_ref().clone(),
        }
    };
    let expected_fields: Vec<arrow_schema::Field> =
        expected_schema.fields().iter().map(micros).collect();
    let expected_parquet = expected_parquet.replace("MILLIS", "MICROS");
    for file in [&fast_file, &fast_items_file] {
        let (schema, cols, parquet_schema) = columns(file);
        let fields: Vec<arrow_schema::Field> =
            schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        assert_eq!(fields, expected_fields);
        assert_eq!(parquet_schema, expected_parquet);
        for (i, (g, e)) in cols.iter().zip(&expected_columns).enumerate() {
            let name = schema.field(i).name();
            if name.ends_with("datetime") || name == "stac_version" {
                continue;
            }
            assert_eq!(g.to_data(), e.to_data(), "column {name}");
        }
        assert_eq!(key_value(file, "geo"), key_value(&expected_file, "geo"));
        let stac = key_value(file, "stac-geoparquet");
        assert_eq!(stac["version"], "1.1.0");
        assert_eq!(
            stac["collections"][collection.stac_id()],
            collection.stac_collection()
        );
    }
    assert_eq!(
        HlsBatchBuilder::new(collection)
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect::<Vec<_>>(),
        expected_fields
    );
}

#[test]
fn s30_reads_back_as_the_stac_writers_file() {
    assert_equivalent(Collection::Hlss30, 300);
}

#[test]
fn l30_reads_back_as_the_stac_writers_file() {
    assert_equivalent(Collection::Hlsl30, 300);
}

#[test]
fn the_real_item_reads_back_exactly() {
    let json =
        include_bytes!("../../../tests/fixtures/stac/HLS.S30.T01WEV.2024153T000609.v2.0_stac.json");
    let item: stac::Item = serde_json::from_slice(json).unwrap();
    let mut with_collection = item.clone();
    with_collection.collection = Some("HLSS30_2.0".into());
    let expected = vec![serde_json::to_value(with_collection).unwrap()];
    let (fast, _) = fast_file_from_json(Collection::Hlss30, &[json.to_vec()]);
    let got = read_back(&fast);
    assert_eq!(got, expected);
    assert_eq!(
        got[0]["properties"]["datetime"],
        "2024-06-01T00:06:19.072460Z"
    );
    assert_eq!(got[0]["stac_version"], "1.0.0");
    assert_eq!(
        read_back(&fast_file_from_items(Collection::Hlss30, &[item])),
        expected
    );
}

#[test]
fn missing_optional_attributes_read_back_absent() {
    let mut m = meta(Collection::Hlss30, 0);
    m.cloud_cover = None;
    m.ulx = None;
    m.doi = None;
    m.mgrs_tile = None;
    let json = serde_json::to_vec(&to_stac_item(&m)).unwrap();
    let (file, _) = fast_file_from_json(Collection::Hlss30, &[json]);
    let item = &read_back(&file)[0];
    let props = item["properties"].as_object().unwrap();
    for key in ["eo:cloud_cover", "proj:transform", "sci:doi", "proj:epsg"] {
        assert!(!props.contains_key(key), "{key} should be absent");
    }
    assert!(props.contains_key("proj:shape"));
    assert_eq!(item["links"].as_array().unwrap().len(), 1);
    assert_eq!(item["collection"], "HLSS30_2.0");
}

#[test]
fn timestamps_keep_their_microseconds() {
    let mut m = meta(Collection::Hlsl30, 0);
    m.begin =
        Utc.with_ymd_and_hms(2024, 12, 31, 23, 59, 59).unwrap() + Duration::microseconds(999_999);
    m.end = m.begin;
    let json = serde_json::to_vec(&to_stac_item(&m)).unwrap();
    let (file, _) = fast_file_from_json(Collection::Hlsl30, &[json]);
    let item = &read_back(&file)[0];
    assert_eq!(
        item["properties"]["datetime"],
        "2024-12-31T23:59:59.999999Z"
    );
}

fn error_for(collection: Collection, edit: impl FnOnce(&mut Value)) -> HlsArrowError {
    let mut value = item_json(collection, 0);
    edit(&mut value);
    let json = serde_json::to_vec(&value).unwrap();
    let mut w =
        HlsGeoparquetWriter::new(Vec::new(), collection, HlsWriterOptions::default()).unwrap();
    let err = w.write_json(&json).unwrap_err();
    assert!(err.is_shape_mismatch());
    // The same item as a `stac::Item` is refused too, when it can be one.
    if let Ok(item) = serde_json::from_value::<stac::Item>(value) {
        assert!(w.write_item(&item).is_err(), "write_item accepted {err}");
    }
    assert_eq!(w.items(), 0);
    err
}

#[test]
fn unknown_property_is_named() {
    let err = error_for(Collection::Hlss30, |v| {
        v["properties"]["s2:tile_id"] = json!("x");
    });
    assert!(
        matches!(&err, HlsArrowError::UnknownProperty { key, id: Some(_) } if key == "s2:tile_id"),
        "{err}"
    );
    assert!(err.to_string().contains("s2:tile_id"));
}

#[test]
fn unknown_property_with_null_value_is_named() {
    let err = error_for(Collection::Hlss30, |v| {
        v["properties"]["s2:product_uri"] = Value::Null;
    });
    assert!(
        matches!(&err, HlsArrowError::UnknownProperty { key, .. } if key == "s2:product_uri"),
        "{err}"
    );
}

#[test]
fn unknown_asset_is_named() {
    let err = error_for(Collection::Hlss30, |v| {
        v["assets"]["B13"] = v["assets"]["B12"].clone();
    });
    assert!(
        matches!(&err, HlsArrowError::UnknownAsset { key, .. } if key == "B13"),
        "{err}"
    );
    // An S30-only asset in an L30 item.
    let err = error_for(Collection::Hlsl30, |v| {
        v["assets"]["B8A"] = v["assets"]["B01"].clone();
    });
    assert!(
        matches!(&err, HlsArrowError::UnknownAsset { key, .. } if key == "B8A"),
        "{err}"
    );
}

#[test]
fn unknown_top_level_field_is_named() {
    let err = error_for(Collection::Hlss30, |v| v["stac_extra"] = json!(1));
    assert!(
        matches!(&err, HlsArrowError::UnknownField { field, .. } if field == "stac_extra"),
        "{err}"
    );
}

#[test]
fn fields_outside_the_schema_are_named() {
    let err = error_for(Collection::Hlss30, |v| {
        v["assets"]["B05"]["eo:bands"][0]["common_name"] = json!("rededge");
    });
    assert!(
        matches!(&err, HlsArrowError::UnexpectedField { field, .. } if field == "assets.B05.eo:bands[0].common_name"),
        "{err}"
    );
    let err = error_for(Collection::Hlss30, |v| {
        v["assets"]["thumbnail"]["eo:bands"] = json!([{"name": "rgb"}]);
    });
    assert!(
        matches!(&err, HlsArrowError::UnexpectedField { field, .. } if field == "assets.thumbnail.eo:bands"),
        "{err}"
    );
    let err = error_for(Collection::Hlss30, |v| {
        v["assets"]["B01"]["title"] = json!("Coastal");
    });
    let message = err.to_string();
    assert!(
        message.contains("assets.B01") && message.contains("title"),
        "{message}"
    );
    let err = error_for(Collection::Hlss30, |v| {
        v["links"][0]["title"] = json!("self");
    });
    assert!(err.to_string().contains("title"), "{err}");
}

#[test]
fn wrong_types_are_named() {
    let err = error_for(Collection::Hlss30, |v| {
        v["properties"]["eo:cloud_cover"] = json!("18");
    });
    assert!(
        err.to_string().contains("properties.eo:cloud_cover"),
        "{err}"
    );
    assert_eq!(
        err.item_id(),
        Some(item_json(Collection::Hlss30, 0)["id"].as_str().unwrap())
    );
    let err = error_for(Collection::Hlss30, |v| {
        v["properties"]["proj:shape"] = json!([3660.5, 3660]);
    });
    assert!(err.to_string().contains("properties.proj:shape"), "{err}");
    let err = error_for(Collection::Hlss30, |v| {
        v["properties"]["datetime"] = json!("yesterday");
    });
    assert!(err.to_string().contains("properties.datetime"), "{err}");
    let err = error_for(Collection::Hlss30, |v| {
        v["geometry"] = json!({"type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]]});
    });
    assert!(err.to_string().contains("geometry.type"), "{err}");
    let err = error_for(Collection::Hlss30, |v| {
        v["geometry"]["coordinates"][0][0][0] = json!([1.0, 2.0, 3.0]);
    });
    assert!(err.to_string().contains("geometry.coordinates"), "{err}");
    let err = error_for(Collection::Hlss30, |v| {
        v["collection"] = json!("HLSL30_2.0")
    });
    assert!(err.to_string().contains("collection"), "{err}");
    let err = error_for(Collection::Hlss30, |v| {
        v["bbox"] = json!([0, 0, 0, 1, 1, 1])
    });
    assert!(err.to_string().contains("bbox"), "{err}");
}

#[test]
fn malformed_json_is_an_error_never_a_panic() {
    let json = serde_json::to_vec(&item_json(Collection::Hlss30, 0)).unwrap();
    let mut w =
        HlsGeoparquetWriter::new(Vec::new(), Collection::Hlss30, HlsWriterOptions::default())
            .unwrap();
    for cut in 0..json.len() {
        let err = w.write_json(&json[..cut]).unwrap_err();
        assert!(err.is_shape_mismatch());
    }
    for bad in [
        &b""[..],
        b"null",
        b"[]",
        b"{}",
        b"\xff\xfe",
        b"{\"id\": 5}",
        b"{\"type\":\"Feature\"}",
    ] {
        assert!(w.write_json(bad).is_err());
    }
    // The writer is still good after all those refusals.
    w.write_json(&json).unwrap();
    let stats = w.finish().unwrap();
    assert_eq!(stats.items, 1);
}

#[test]
fn escaped_strings_and_any_key_order_are_fine() {
    let value = item_json(Collection::Hlsl30, 1);
    // Reverse the key order of every object, and escape the slashes of the hrefs.
    fn reverse(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .rev()
                    .map(|(k, v)| (k.clone(), reverse(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(reverse).collect()),
            other => other.clone(),
        }
    }
    let json = serde_json::to_string(&reverse(&value))
        .unwrap()
        .replace('/', "\\/");
    let (file, _) = fast_file_from_json(Collection::Hlsl30, &[json.into_bytes()]);
    let mut item: stac::Item = serde_json::from_value(value).unwrap();
    item.collection = Some("HLSL30_2.0".into());
    assert_eq!(read_back(&file), vec![serde_json::to_value(item).unwrap()]);
}

#[test]
fn an_empty_file_is_still_stac_geoparquet() {
    let w = HlsGeoparquetWriter::new(Vec::new(), Collection::Hlsl30, HlsWriterOptions::default())
        .unwrap();
    let (buf, stats) = w.finish_into_inner().unwrap();
    assert_eq!(stats.items, 0);
    let items = stac::geoparquet::from_reader(Bytes::from(buf)).unwrap();
    assert!(items.items.is_empty());
}

#[test]
fn numbers_keep_every_digit() {
    // Parsed without correct rounding (serde_json without `float_roundtrip`), this is
    // -93.28763416520331.
    let published = "-93.28763416520333";
    let mut value = item_json(Collection::Hlss30, 0);
    let x: f64 = published.parse().unwrap();
    value["geometry"]["coordinates"][0][0][0][0] = json!(x);
    value["properties"]["view:sun_azimuth"] = json!(x + 300.0);
    let json = serde_json::to_string(&value).unwrap();
    assert!(json.contains(published));
    let (file, _) = fast_file_from_json(Collection::Hlss30, &[json.into_bytes()]);
    let item = &read_back(&file)[0];
    let got = item["geometry"]["coordinates"][0][0][0][0]
        .as_f64()
        .unwrap();
    assert_eq!(got.to_string(), published);
    assert_eq!(
        item["properties"]["view:sun_azimuth"]
            .as_f64()
            .unwrap()
            .to_bits(),
        (x + 300.0).to_bits()
    );
}

/// The JSON bytes of `meta`'s item as published (no `collection`).
fn published_json(meta: &GranuleMeta) -> Vec<u8> {
    serde_json::to_vec(&to_stac_item(meta)).unwrap()
}

#[test]
fn rows_from_echo10_values_equal_rows_from_their_items() {
    for collection in [Collection::Hlss30, Collection::Hlsl30] {
        let metas: Vec<GranuleMeta> = (0..300).map(|i| meta(collection, i)).collect();
        let mut from_json = HlsBatchBuilder::new(collection);
        let mut from_meta = HlsBatchBuilder::new(collection);
        for m in &metas {
            from_json.append_json(&published_json(m)).unwrap();
            from_meta.append_meta(m).unwrap();
        }
        assert_eq!(from_meta.bounds(), from_json.bounds());
        assert_eq!(from_meta.finish().unwrap(), from_json.finish().unwrap());
    }
}

#[test]
fn echo10_values_of_another_collection_or_without_geometry_are_refused() {
    let mut b = HlsBatchBuilder::new(Collection::Hlss30);
    let e = b.append_meta(&meta(Collection::Hlsl30, 1)).unwrap_err();
    assert!(e.is_shape_mismatch(), "{e}");
    assert!(e.to_string().contains("HLSL30_2.0"), "{e}");
    let mut empty = meta(Collection::Hlss30, 1);
    empty.polygons.clear();
    let e = b.append_meta(&empty).unwrap_err();
    assert!(e.to_string().contains("geometry"), "{e}");
    assert!(b.is_empty());
}

/// The file of `metas` written one by one in (datetime, id) order, in batches of 64.
fn sorted_file(collection: Collection, metas: &[GranuleMeta]) -> Vec<u8> {
    let mut sorted: Vec<&GranuleMeta> = metas.iter().collect();
    sorted.sort_by(|a, b| (a.begin, &a.granule_ur).cmp(&(b.begin, &b.granule_ur)));
    let jsons: Vec<Vec<u8>> = sorted.iter().map(|m| published_json(m)).collect();
    fast_file_from_json(collection, &jsons).0.to_vec()
}

fn runs_file(runs: SortedRuns, collection: Collection) -> (Vec<u8>, u64) {
    let mut w = HlsGeoparquetWriter::new(Vec::new(), collection, small_batches()).unwrap();
    runs.write_into(&mut w, 64).unwrap();
    let (buf, stats) = w.finish_into_inner().unwrap();
    (buf, stats.items)
}

#[test]
fn sorted_runs_write_the_bytes_of_the_rows_written_in_order() {
    let collection = Collection::Hlss30;
    // Out of order, with equal datetimes (ordered by id then) and a row per time edge.
    let mut metas: Vec<GranuleMeta> = (0..230).map(|i| meta(collection, (i * 37) % 230)).collect();
    metas[5].begin = metas[6].begin;
    metas[5].end = metas[6].begin;
    let expected = sorted_file(collection, &metas);
    let dir = tempfile::tempdir().unwrap();
    // (run rows, memory limit): one run; runs in memory; runs spilled as soon as made.
    for (run_rows, limit) in [(10_000, usize::MAX), (17, usize::MAX), (17, 0), (64, 0)] {
        let mut runs =
            SortedRuns::with_limits(collection, Some(dir.path().into()), run_rows, limit);
        for (i, m) in metas.iter().enumerate() {
            if i % 2 == 0 {
                runs.push_json(&published_json(m)).unwrap();
            } else {
                runs.check_granule(m).unwrap();
                runs.push_granule(Box::new(m.clone())).unwrap();
            }
        }
        assert_eq!(runs.rows(), 230);
        if limit == 0 {
            assert_eq!(runs.spilled_runs(), 230 / run_rows);
        } else {
            assert_eq!(runs.spilled_runs(), 0);
        }
        let (bytes, items) = runs_file(runs, collection);
        assert_eq!(items, 230);
        assert!(bytes == expected, "run rows {run_rows}, limit {limit}");
    }
    // The spill files are gone once written.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn sorted_runs_of_nothing_write_an_empty_file() {
    let runs = SortedRuns::new(Collection::Hlsl30, None);
    let (_, items) = runs_file(runs, Collection::Hlsl30);
    assert_eq!(items, 0);
}

/// The rows of a file (its columns, whatever the schema's metadata) and its row groups' sizes.
fn file_rows(file: Bytes) -> (Vec<arrow_array::ArrayRef>, Vec<i64>) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let groups = builder
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .collect();
    let reader = builder.build().unwrap();
    let schema = reader.schema();
    let batches: Vec<arrow_array::RecordBatch> = reader.map(Result::unwrap).collect();
    let all = arrow_select::concat::concat_batches(&schema, &batches).unwrap();
    (all.columns().to_vec(), groups)
}

/// Granules a CMR listing gives nearly in order: ~0.4 s apart, some at the same time (the
/// later id listed first), each pair of neighbours 0.2 s apart listed in reverse.
fn listed_in_order(collection: Collection, n: usize) -> Vec<GranuleMeta> {
    let start = Utc.with_ymd_and_hms(2024, 5, 15, 0, 0, 0).unwrap();
    let mut metas: Vec<GranuleMeta> = (0..n)
        .map(|i| {
            let mut m = meta(collection, i);
            m.begin = start + Duration::microseconds(i as i64 / 3 * 400_000 + (i % 3) as i64 * 7);
            if i % 7 == 0 {
                m.begin = start + Duration::microseconds(i as i64 / 3 * 400_000);
            }
            m.end = m.begin + Duration::seconds(5);
            m
        })
        .collect();
    for pair in metas.chunks_mut(2) {
        pair.reverse();
    }
    metas
}

/// Row groups of 100 rows, written in batches of 100: as daily files are (2,000 and 2,000).
fn whole_groups() -> HlsWriterOptions {
    small_batches().with_batch_rows(100)
}

fn early_runs(dir: &std::path::Path, collection: Collection) -> SortedRuns {
    SortedRuns::with_limits(collection, Some(dir.into()), 100, 0).write_early(whole_groups())
}

#[test]
fn granules_listed_in_order_are_written_early_with_the_rows_of_the_merge() {
    let collection = Collection::Hlss30;
    let metas = listed_in_order(collection, 1_030);
    let (expected, _) = file_rows(Bytes::from(sorted_file(collection, &metas)));
    let dir = tempfile::tempdir().unwrap();
    let mut runs = early_runs(dir.path(), collection);
    for m in &metas {
        runs.check_granule(m).unwrap();
        runs.push_granule(Box::new(m.clone())).unwrap();
    }
    assert_eq!(runs.rows(), 1_030);
    let Ended::Written(w) = runs.finish_early().unwrap() else {
        panic!("the rows went to runs");
    };
    let (out, stats) = w.finish_into_inner().unwrap();
    assert_eq!(stats.items, 1_030);
    let early = out.finish().unwrap().to_bytes().unwrap();
    // The very bytes of the same granules merged from runs.
    let mut runs = SortedRuns::with_limits(collection, Some(dir.path().into()), 100, 0);
    for m in metas.iter().rev() {
        runs.push_granule(Box::new(m.clone())).unwrap();
    }
    let mut w = HlsGeoparquetWriter::new(Vec::new(), collection, whole_groups()).unwrap();
    runs.write_into(&mut w, 100).unwrap();
    assert!(
        w.finish_into_inner().unwrap().0 == early,
        "not the merge's bytes"
    );
    let (rows, groups) = file_rows(early);
    assert!(rows == expected, "the rows differ from the merge's");
    // Whole row groups, written as they came, and nothing spilled.
    assert_eq!(groups, [vec![100; 10], vec![30]].concat());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_granule_listed_out_of_order_sends_the_rows_to_the_merge() {
    let collection = Collection::Hlsl30;
    let in_order = listed_in_order(collection, 950);
    // A granule listed late: after 900 others, it precedes rows already written.
    let mut late = in_order.clone();
    let moved = late.remove(300);
    late.push(moved);
    // Out of order from the start, and one JSON row among the granules.
    let mut shuffled = in_order.clone();
    shuffled.reverse();
    let cases = [
        ("late", &late, None),
        ("reversed", &shuffled, Some(500)),
        // A row of JSON while written early: the rest goes to runs too.
        ("JSON", &in_order, Some(500)),
    ];
    for (case, metas, json_at) in cases {
        let (expected, _) = file_rows(Bytes::from(sorted_file(collection, metas)));
        let dir = tempfile::tempdir().unwrap();
        let mut runs = early_runs(dir.path(), collection);
        for (i, m) in metas.iter().enumerate() {
            if Some(i) == json_at {
                runs.push_json(&published_json(m)).unwrap();
            } else {
                runs.check_granule(m).unwrap();
                runs.push_granule(Box::new(m.clone())).unwrap();
            }
        }
        let Ended::Runs(runs) = runs.finish_early().unwrap() else {
            panic!("{case}: written early out of order");
        };
        assert_eq!(runs.rows(), 950, "{case}");
        let (file, items) = runs_file(*runs, collection);
        assert_eq!(items, 950, "{case}");
        let (rows, _) = file_rows(Bytes::from(file));
        assert!(rows == expected, "{case}: the rows differ");
        // The file written early and the spilled runs are gone.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "{case}");
    }
}

#[test]
fn a_granule_of_another_collection_is_refused_before_it_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let runs = early_runs(dir.path(), Collection::Hlss30);
    let other = meta(Collection::Hlsl30, 1);
    let e = runs.check_granule(&other).unwrap_err();
    assert!(e.is_shape_mismatch(), "{e}");
    assert_eq!(runs.rows(), 0);
}

#[test]
fn granules_of_one_second_are_held_together_and_a_small_day_goes_to_runs() {
    let collection = Collection::Hlss30;
    // 600 granules in the same second (held back together), then 400 later ones.
    let mut metas = listed_in_order(collection, 1_000);
    let second = metas[0].begin;
    for (i, m) in metas.iter_mut().take(600).enumerate() {
        m.begin = second + Duration::microseconds(i as i64 % 17);
    }
    let (expected, _) = file_rows(Bytes::from(sorted_file(collection, &metas)));
    let dir = tempfile::tempdir().unwrap();
    let mut runs = early_runs(dir.path(), collection);
    for m in &metas {
        runs.push_granule(Box::new(m.clone())).unwrap();
    }
    let Ended::Written(w) = runs.finish_early().unwrap() else {
        panic!("the rows went to runs");
    };
    let (out, _) = w.finish_into_inner().unwrap();
    let (rows, _) = file_rows(out.finish().unwrap().to_bytes().unwrap());
    assert!(rows == expected, "the rows differ from the merge's");

    // Fewer granules than make a write: the runs, for a file of that many rows.
    let mut runs = early_runs(dir.path(), collection);
    for m in &metas[..150] {
        runs.push_granule(Box::new(m.clone())).unwrap();
    }
    let Ended::Runs(runs) = runs.finish_early().unwrap() else {
        panic!("a small day was written early");
    };
    assert_eq!(runs.rows(), 150);
}
