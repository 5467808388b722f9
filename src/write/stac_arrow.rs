//! The generic stac-geoparquet writer: any STAC items, as their JSON, into a file that
//! agrees with the fixed-schema HLS writer ([`crate::write::hls_arrow`]) wherever both
//! apply: datetimes as `Timestamp(Microsecond, "UTC")`, `type` / `stac_version` /
//! `collection` dictionary-encoded, `bbox` as a struct covering, the geometry as WKB
//! (`geoarrow.wkb`), every value as published, and the same `geo` and stac-geoparquet 1.1
//! metadata in the footer and in the stored Arrow schema.
//!
//! The schema is inferred from every row, not from the first batch (the `stac` crate's
//! writer does that, floors datetimes to milliseconds and stores its own `stac_version`),
//! so the caller goes over its rows twice: [`Inference::add`] each, then
//! [`GenericWriter::write`] each, in the order the file is to have.

use crate::Collection;
use crate::bbox::union_bounds;
use crate::write::metadata;
use arrow_array::builder::BinaryBuilder;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Arc;

/// Columns stored as timestamps (when they hold strings).
const DATETIME_COLUMNS: [&str; 5] = [
    "datetime",
    "start_datetime",
    "end_datetime",
    "created",
    "updated",
];
/// Columns stored dictionary-encoded (when they hold strings).
const DICTIONARY_COLUMNS: [&str; 3] = ["type", "stac_version", "collection"];
/// Rows encoded at once.
const BATCH_ROWS: usize = 1_000;

/// Why the generic writer failed.
#[derive(Debug, thiserror::Error)]
pub enum GenericError {
    /// A row that is not a JSON object of a STAC item.
    #[error("item {id:?}: not a STAC item: {source}")]
    NotAnItem {
        /// The item id, when it could be read.
        id: Option<String>,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A geometry that is not valid GeoJSON.
    #[error("item {id:?}: invalid geometry: {reason}")]
    Geometry {
        /// The item id.
        id: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// Schema inference or record batch decoding failed.
    #[error("{0}")]
    Arrow(#[from] ArrowError),
    /// The Parquet writer failed.
    #[error("{0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// The file metadata could not be serialized.
    #[error("file metadata: {0}")]
    Metadata(#[source] serde_json::Error),
}

/// One row: the flattened item (properties at the top level, `bbox` as a struct, without
/// the geometry) and its geometry as WKB.
#[derive(Debug)]
pub struct FlatRow {
    value: Value,
    wkb: Option<Vec<u8>>,
    geometry_type: Option<String>,
    bounds: Option<[f64; 4]>,
}

impl FlatRow {
    /// Flattens an item's JSON; with `collection`, its `collection` is set to it.
    pub fn from_json(json: &[u8], collection: Option<Collection>) -> Result<FlatRow, GenericError> {
        let not_an_item = |source| GenericError::NotAnItem {
            id: serde_json::from_slice::<Value>(json)
                .ok()
                .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_string)),
            source,
        };
        let item: Map<String, Value> = serde_json::from_slice(json).map_err(not_an_item)?;
        let id = item.get("id").and_then(Value::as_str).map(str::to_string);
        let mut flat = Map::with_capacity(item.len() + 16);
        let mut properties = None;
        let mut geometry = None;
        for (key, value) in item {
            match key.as_str() {
                "properties" => properties = Some(value),
                "geometry" => geometry = Some(value),
                "bbox" => {
                    flat.insert(key, bbox_struct(value));
                }
                _ => {
                    flat.insert(key, value);
                }
            }
        }
        if let Some(c) = collection {
            flat.insert("collection".into(), Value::from(c.stac_id()));
        }
        if let Some(Value::Object(props)) = properties {
            for (key, value) in props {
                flat.entry(key).or_insert(value);
            }
        }
        let mut row = FlatRow {
            value: Value::Object(flat),
            wkb: None,
            geometry_type: None,
            bounds: None,
        };
        if let Some(g) = geometry.filter(|g| !g.is_null()) {
            let mut wkb = Vec::with_capacity(256);
            let mut bounds = None;
            let kind = write_wkb(&mut wkb, &g, &mut bounds)
                .map_err(|reason| GenericError::Geometry { id, reason })?;
            row.wkb = Some(wkb);
            row.geometry_type = Some(kind);
            row.bounds = bounds;
        }
        Ok(row)
    }
}

impl FlatRow {
    /// The row's `collection`, if it has one.
    pub fn collection(&self) -> Option<&str> {
        self.value.get("collection").and_then(Value::as_str)
    }
}

/// `[xmin, ymin, xmax, ymax]` (or with z) as the struct of the covering.
fn bbox_struct(value: Value) -> Value {
    let Value::Array(b) = &value else {
        return value;
    };
    let names: &[&str] = match b.len() {
        4 => &["xmin", "ymin", "xmax", "ymax"],
        6 => &["xmin", "ymin", "zmin", "xmax", "ymax", "zmax"],
        _ => return value,
    };
    Value::Object(
        names
            .iter()
            .zip(b)
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect(),
    )
}

/// The schema and file metadata, gathered from every row.
#[derive(Debug, Default)]
pub struct Inference {
    values: Vec<Value>,
    schema: Option<Schema>,
    geometry_types: BTreeSet<String>,
    bounds: Option<[f64; 4]>,
    rows: u64,
}

impl Inference {
    /// Takes one row into account (rows are inferred a thousand at a time).
    pub fn add(&mut self, row: FlatRow) -> Result<(), GenericError> {
        self.rows += 1;
        if let Some(t) = row.geometry_type {
            self.geometry_types.insert(t);
        }
        self.bounds = union_bounds(self.bounds, row.bounds);
        self.values.push(row.value);
        if self.values.len() >= BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), GenericError> {
        if self.values.is_empty() {
            return Ok(());
        }
        let inferred = arrow_json::reader::infer_json_schema_from_iterator(
            std::mem::take(&mut self.values).iter().map(Ok),
        )?;
        self.schema = Some(match self.schema.take() {
            None => inferred,
            Some(have) => Schema::try_merge([have, inferred])?,
        });
        Ok(())
    }

    /// Rows seen.
    pub fn rows(&self) -> u64 {
        self.rows
    }
}

/// Writes rows with the schema an [`Inference`] found.
pub struct GenericWriter<W: Write + Send> {
    writer: ArrowWriter<W>,
    schema: SchemaRef,
    values: Vec<Value>,
    geometry: BinaryBuilder,
    rows: u64,
}

impl<W: Write + Send> std::fmt::Debug for GenericWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenericWriter")
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

impl<W: Write + Send> GenericWriter<W> {
    /// A writer into `out` of the rows `inference` saw, of `collections`.
    pub fn new(
        out: W,
        mut inference: Inference,
        collections: &[Collection],
        properties: parquet::file::properties::WriterProperties,
    ) -> Result<Self, GenericError> {
        inference.flush()?;
        let inferred = inference.schema.take().unwrap_or_else(Schema::empty);
        let fields: Vec<Field> = inferred
            .fields()
            .iter()
            .map(|f| {
                let name = f.name().as_str();
                let data_type = match f.data_type() {
                    DataType::Utf8 if DATETIME_COLUMNS.contains(&name) => {
                        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
                    }
                    other => other.clone(),
                };
                Field::new(name, data_type, true)
            })
            .filter(|f| f.name() != crate::write::hls_arrow::GEOMETRY)
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let geo = metadata::wkb_geometry(
            crate::write::hls_arrow::GEOMETRY,
            inference
                .geometry_types
                .iter()
                .map(String::as_str)
                .collect(),
            inference.bounds,
        )
        .map_err(GenericError::Metadata)?;
        let stac = metadata::stac_geoparquet(collections).map_err(GenericError::Metadata)?;
        let mut stored: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Utf8 if DICTIONARY_COLUMNS.contains(&f.name().as_str()) => {
                    f.as_ref().clone().with_data_type(DataType::Dictionary(
                        Box::new(DataType::Int32),
                        Box::new(DataType::Utf8),
                    ))
                }
                _ => f.as_ref().clone(),
            })
            .collect();
        stored.push(crate::write::hls_arrow::geometry_field());
        let stored = Schema::new(stored).with_metadata(metadata::schema_metadata([
            (metadata::GEO_KEY, geo.as_str()),
            (metadata::STAC_KEY, stac.as_str()),
        ]));
        let mut writer = ArrowWriter::try_new(out, Arc::new(stored), Some(properties))?;
        writer.append_key_value_metadata(KeyValue::new(metadata::GEO_KEY.into(), geo));
        writer.append_key_value_metadata(KeyValue::new(metadata::STAC_KEY.into(), stac));
        Ok(GenericWriter {
            writer,
            schema,
            values: Vec::with_capacity(BATCH_ROWS),
            geometry: BinaryBuilder::new(),
            rows: 0,
        })
    }

    /// Appends one row (flattened again from the same JSON as for the inference).
    pub fn write(&mut self, row: FlatRow) -> Result<(), GenericError> {
        self.rows += 1;
        self.values.push(row.value);
        self.geometry.append_option(row.wkb);
        if self.values.len() >= BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), GenericError> {
        if self.values.is_empty() {
            return Ok(());
        }
        let mut decoder = arrow_json::ReaderBuilder::new(self.schema.clone()).build_decoder()?;
        decoder.serialize(&self.values)?;
        self.values.clear();
        let batch = decoder
            .flush()?
            .ok_or_else(|| ArrowError::JsonError("no rows decoded".into()))?;
        // arrow-json decodes strings, not dictionaries: `type`, `stac_version` and
        // `collection` are cast after.
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns() + 1);
        let mut fields: Vec<Field> = Vec::with_capacity(batch.num_columns() + 1);
        for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
            if DICTIONARY_COLUMNS.contains(&field.name().as_str())
                && field.data_type() == &DataType::Utf8
            {
                let dictionary =
                    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
                columns.push(arrow_cast::cast(column, &dictionary)?);
                fields.push(field.as_ref().clone().with_data_type(dictionary));
            } else {
                columns.push(column.clone());
                fields.push(field.as_ref().clone());
            }
        }
        columns.push(Arc::new(self.geometry.finish()));
        fields.push(crate::write::hls_arrow::geometry_field());
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
        self.writer.write(&batch)?;
        Ok(())
    }

    /// Writes the last rows and the footer; returns the rows written and the writer.
    pub fn finish(mut self) -> Result<(u64, W), GenericError> {
        self.flush()?;
        let out = self.writer.into_inner()?;
        Ok((self.rows, out))
    }
}

/// Appends the little-endian ISO WKB of a GeoJSON geometry; returns its GeoParquet type
/// name (`MultiPolygon`, `Point Z`, …) and widens `bounds` by its x/y.
fn write_wkb(
    out: &mut Vec<u8>,
    geometry: &Value,
    bounds: &mut Option<[f64; 4]>,
) -> Result<String, String> {
    let kind = geometry
        .get("type")
        .and_then(Value::as_str)
        .ok_or("no type")?;
    let code: u32 = match kind {
        "Point" => 1,
        "LineString" => 2,
        "Polygon" => 3,
        "MultiPoint" => 4,
        "MultiLineString" => 5,
        "MultiPolygon" => 6,
        "GeometryCollection" => 7,
        other => return Err(format!("unknown type {other:?}")),
    };
    if code == 7 {
        let members = geometry
            .get("geometries")
            .and_then(Value::as_array)
            .ok_or("GeometryCollection without geometries")?;
        out.push(1);
        out.extend_from_slice(&code.to_le_bytes());
        out.extend_from_slice(&count(members.len())?);
        for g in members {
            write_wkb(out, g, bounds)?;
        }
        return Ok(kind.to_string());
    }
    let coordinates = geometry.get("coordinates").ok_or("no coordinates")?;
    let z = first_position(coordinates).is_some_and(|p| p.len() == 3);
    let dims = if z { 3 } else { 2 };
    let code = if z { code + 1000 } else { code };
    let position = |out: &mut Vec<u8>, v: &Value, bounds: &mut Option<[f64; 4]>| {
        let p = v.as_array().ok_or("a position is not an array")?;
        if p.len() != dims {
            return Err(format!(
                "a position has {} values, expected {dims}",
                p.len()
            ));
        }
        let mut xy = [0.0; 2];
        for (i, c) in p.iter().enumerate() {
            let c = c.as_f64().ok_or("a coordinate is not a number")?;
            if i < 2 {
                xy[i] = c;
            }
            out.extend_from_slice(&c.to_le_bytes());
        }
        let [x, y] = xy;
        *bounds = union_bounds(*bounds, Some([x, y, x, y]));
        Ok::<(), String>(())
    };
    let array = |v: &Value| -> Result<Vec<Value>, String> {
        v.as_array()
            .cloned()
            .ok_or_else(|| "coordinates are not arrays".to_string())
    };
    let points = |out: &mut Vec<u8>, v: &Value, bounds: &mut Option<[f64; 4]>| {
        let ps = array(v)?;
        out.extend_from_slice(&count(ps.len())?);
        for p in &ps {
            position(out, p, bounds)?;
        }
        Ok::<(), String>(())
    };
    let rings = |out: &mut Vec<u8>, v: &Value, bounds: &mut Option<[f64; 4]>| {
        let rs = array(v)?;
        out.extend_from_slice(&count(rs.len())?);
        for r in &rs {
            points(out, r, bounds)?;
        }
        Ok::<(), String>(())
    };
    let header = |out: &mut Vec<u8>, code: u32| {
        out.push(1);
        out.extend_from_slice(&code.to_le_bytes());
    };
    header(out, code);
    let sub = |c: u32| if z { c + 1000 } else { c };
    match code % 1000 {
        1 => position(out, coordinates, bounds)?,
        2 => points(out, coordinates, bounds)?,
        3 => rings(out, coordinates, bounds)?,
        4 => {
            let ps = array(coordinates)?;
            out.extend_from_slice(&count(ps.len())?);
            for p in &ps {
                header(out, sub(1));
                position(out, p, bounds)?;
            }
        }
        5 => {
            let ls = array(coordinates)?;
            out.extend_from_slice(&count(ls.len())?);
            for l in &ls {
                header(out, sub(2));
                points(out, l, bounds)?;
            }
        }
        _ => {
            let ps = array(coordinates)?;
            out.extend_from_slice(&count(ps.len())?);
            for p in &ps {
                header(out, sub(3));
                rings(out, p, bounds)?;
            }
        }
    }
    Ok(if z {
        format!("{kind} Z")
    } else {
        kind.to_string()
    })
}

fn first_position(v: &Value) -> Option<&Vec<Value>> {
    let a = v.as_array()?;
    match a.first()? {
        Value::Array(_) => first_position(a.first()?),
        _ => Some(a),
    }
}

fn count(n: usize) -> Result<[u8; 4], String> {
    u32::try_from(n)
        .map(u32::to_le_bytes)
        .map_err(|_| "too many parts for WKB".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wkb_of_every_geometry_type() {
        let mut b = None;
        let mut out = Vec::new();
        let g = serde_json::json!({"type": "Point", "coordinates": [1.0, 2.0, 3.0]});
        assert_eq!(write_wkb(&mut out, &g, &mut b).unwrap(), "Point Z");
        assert_eq!(out.len(), 1 + 4 + 24);
        assert_eq!(&out[1..5], &1001u32.to_le_bytes());
        let mut out = Vec::new();
        let g = serde_json::json!({"type": "MultiPolygon", "coordinates": [[[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]]]});
        assert_eq!(write_wkb(&mut out, &g, &mut b).unwrap(), "MultiPolygon");
        assert_eq!(out.len(), 9 + 9 + 4 + 4 * 16);
        assert_eq!(b, Some([0.0, 0.0, 1.0, 2.0]));
        let bad = serde_json::json!({"type": "Polygon", "coordinates": [[[0.0]]]});
        assert!(write_wkb(&mut Vec::new(), &bad, &mut b).is_err());
    }
}
