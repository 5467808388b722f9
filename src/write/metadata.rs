//! The file-level metadata of every file, in one place: GeoParquet's `geo` and
//! `stac-geoparquet`, built for a new file ([`wkb_multipolygons`], [`stac_geoparquet`]) and
//! read and merged from daily files into a monthly one ([`FileMetadata`]).

use crate::Collection;
use crate::error::MetadataProblem;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The GeoParquet metadata key.
pub const GEO_KEY: &str = "geo";
/// The stac-geoparquet metadata key.
pub const STAC_KEY: &str = stac::geoparquet::METADATA_KEY;
/// The stac-geoparquet version of the files written (1.1: with `collections`).
pub const STAC_GEOPARQUET_VERSION: &str = "1.1.0";

/// The GeoParquet `geo` metadata, as the `stac` writer's encoder writes it: WKB geometry,
/// MultiPolygons, the total bounds and the covering by the `bbox` column.
#[derive(Serialize)]
struct GeoMetadata<'a> {
    version: &'a str,
    primary_column: &'a str,
    columns: BTreeMap<&'a str, GeoColumn<'a>>,
}

#[derive(Serialize)]
struct GeoColumn<'a> {
    encoding: &'a str,
    geometry_types: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bbox: Option<[f64; 4]>,
    covering: Covering<'a>,
}

#[derive(Serialize)]
struct Covering<'a> {
    bbox: BboxCovering<'a>,
}

#[derive(Serialize)]
struct BboxCovering<'a> {
    xmin: [&'a str; 2],
    ymin: [&'a str; 2],
    xmax: [&'a str; 2],
    ymax: [&'a str; 2],
}

/// The `geo` metadata of a file whose one geometry column, `column`, holds WKB
/// MultiPolygons (none if `!any_rows`) within `bounds`, covered by the `bbox` column: as the
/// `stac` crate's writer writes it.
pub fn wkb_multipolygons(
    column_name: &str,
    bounds: Option<[f64; 4]>,
    any_rows: bool,
) -> serde_json::Result<String> {
    let types = if any_rows {
        vec!["MultiPolygon"]
    } else {
        Vec::new()
    };
    wkb_geometry(column_name, types, bounds)
}

/// The `geo` metadata of a file whose one geometry column, `column`, holds WKB geometries
/// of `geometry_types` (GeoParquet names: `MultiPolygon`, `Point Z`, …) within `bounds`,
/// covered by the `bbox` column.
pub fn wkb_geometry(
    column_name: &str,
    geometry_types: Vec<&str>,
    bounds: Option<[f64; 4]>,
) -> serde_json::Result<String> {
    let column = GeoColumn {
        encoding: "WKB",
        geometry_types,
        bbox: bounds,
        covering: Covering {
            bbox: BboxCovering {
                xmin: ["bbox", "xmin"],
                ymin: ["bbox", "ymin"],
                xmax: ["bbox", "xmax"],
                ymax: ["bbox", "ymax"],
            },
        },
    };
    let metadata = GeoMetadata {
        version: "1.1.0",
        primary_column: column_name,
        columns: BTreeMap::from([(column_name, column)]),
    };
    serde_json::to_string(&metadata)
}

/// The `stac-geoparquet` metadata of a new file (stac-geoparquet 1.1): the version and the
/// `collections` map, each collection's id to its STAC Collection JSON.
pub fn stac_geoparquet(collections: &[Collection]) -> serde_json::Result<String> {
    let collections: Map<String, Value> = collections
        .iter()
        .map(|c| (c.stac_id().to_string(), c.stac_collection()))
        .collect();
    serde_json::to_string(&serde_json::json!({
        "version": STAC_GEOPARQUET_VERSION,
        "collections": collections,
    }))
}

/// File-level `(key, value)` pairs as Arrow schema metadata: readers that take the Arrow
/// schema stored in the file (GeoPandas on a partition folder, pyarrow datasets) find `geo`
/// there, not in the Parquet footer's key/value list.
pub fn schema_metadata<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> HashMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// File metadata gathered from inputs, one at a time.
#[derive(Debug, Default, Clone)]
pub struct FileMetadata {
    geo: Option<Map<String, Value>>,
    stac: Option<Map<String, Value>>,
}

impl FileMetadata {
    /// Adds one input's `geo` and `stac-geoparquet` values (JSON text, if present).
    /// Errors when an input has no `geo` metadata, when a value is not a JSON object, and
    /// when the `geo` metadata of two inputs disagree on something a merged file cannot
    /// hold: primary column, geometry column encoding or CRS.
    pub fn add(&mut self, geo: Option<&str>, stac: Option<&str>) -> Result<(), MetadataProblem> {
        let parse = |key: &'static str, s: &str| -> Result<Map<String, Value>, MetadataProblem> {
            match serde_json::from_str::<Value>(s) {
                Ok(Value::Object(m)) => Ok(m),
                Ok(_) => Err(MetadataProblem::NotAnObject { key }),
                Err(source) => Err(MetadataProblem::NotJson { key, source }),
            }
        };
        let Some(geo) = geo else {
            return Err(MetadataProblem::NoGeo);
        };
        let geo = parse(GEO_KEY, geo)?;
        match &mut self.geo {
            None => self.geo = Some(geo),
            Some(have) => merge_geo(have, &geo)?,
        }
        if let Some(stac) = stac {
            let stac = parse(STAC_KEY, stac)?;
            match &mut self.stac {
                None => self.stac = Some(stac),
                Some(have) => merge_stac(have, &stac),
            }
        }
        Ok(())
    }

    /// Adds a collection of the rows to the `collections` map (stac-geoparquet 1.1), if
    /// no input had it already (daily files of earlier versions have no map).
    pub fn add_collection(&mut self, collection: Collection) {
        let stac = self.stac.get_or_insert_with(Map::new);
        let entry = stac
            .entry("collections")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(map) = entry {
            map.entry(collection.stac_id().to_string())
                .or_insert_with(|| collection.stac_collection());
        }
    }

    /// The merged `(key, JSON)` pairs to write, `geo` first.
    pub fn key_values(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(geo) = &self.geo {
            out.push((GEO_KEY.to_string(), Value::Object(geo.clone()).to_string()));
        }
        // The file written is stac-geoparquet 1.1, whatever version its inputs were.
        let mut stac = self.stac.clone().unwrap_or_default();
        stac.insert("version".into(), Value::from(STAC_GEOPARQUET_VERSION));
        out.push((STAC_KEY.to_string(), Value::Object(stac).to_string()));
        out
    }

    /// The merged `bbox` of the primary geometry column, if every input had one.
    pub fn bbox(&self) -> Option<Vec<f64>> {
        let geo = self.geo.as_ref()?;
        let primary = geo.get("primary_column")?.as_str()?;
        let bbox = geo.get("columns")?.get(primary)?.get("bbox")?.as_array()?;
        bbox.iter().map(Value::as_f64).collect()
    }
}

fn merge_geo(
    have: &mut Map<String, Value>,
    other: &Map<String, Value>,
) -> Result<(), MetadataProblem> {
    if have.get("primary_column") != other.get("primary_column") {
        return Err(MetadataProblem::PrimaryColumn {
            here: other.get("primary_column").cloned().map(Box::new),
            earlier: have.get("primary_column").cloned().map(Box::new),
        });
    }
    let empty = Map::new();
    let other_columns = other
        .get("columns")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let Some(Value::Object(columns)) = have.get_mut("columns") else {
        return Err(MetadataProblem::NoColumns);
    };
    for (name, col) in other_columns {
        let Value::Object(col) = col else {
            continue;
        };
        let Some(Value::Object(mine)) = columns.get_mut(name) else {
            columns.insert(name.clone(), Value::Object(col.clone()));
            continue;
        };
        for key in ["encoding", "crs", "edges", "orientation", "epoch"] {
            if mine.get(key) != col.get(key) {
                return Err(MetadataProblem::ColumnDiffers {
                    column: name.clone(),
                    key,
                    here: col.get(key).cloned().map(Box::new),
                    earlier: mine.get(key).cloned().map(Box::new),
                });
            }
        }
        // Geometry types: the union (an empty list means "any", and stays so).
        let types = |v: Option<&Value>| -> Option<BTreeSet<String>> {
            v.and_then(Value::as_array).map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
        };
        if let (Some(a), Some(b)) = (
            types(mine.get("geometry_types")),
            types(col.get("geometry_types")),
        ) {
            let union: Vec<Value> = if a.is_empty() || b.is_empty() {
                Vec::new()
            } else {
                a.union(&b).cloned().map(Value::from).collect()
            };
            mine.insert("geometry_types".into(), Value::Array(union));
        }
        // Bounding box: the union of both; dropped if either lacks one (it would be wrong).
        let merged = match (bbox_of(mine.get("bbox")), bbox_of(col.get("bbox"))) {
            (Some(a), Some(b)) if a.len() == b.len() && a.len() % 2 == 0 => {
                let half = a.len() / 2;
                Some(
                    a.iter()
                        .zip(&b)
                        .enumerate()
                        .map(|(i, (x, y))| if i < half { x.min(*y) } else { x.max(*y) })
                        .collect::<Vec<f64>>(),
                )
            }
            _ => None,
        };
        match merged {
            Some(b) => {
                mine.insert("bbox".into(), Value::from(b));
            }
            None => {
                mine.remove("bbox");
            }
        }
        // A covering is kept only if both files state the same one.
        if mine.get("covering") != col.get("covering") {
            mine.remove("covering");
        }
    }
    Ok(())
}

fn bbox_of(v: Option<&Value>) -> Option<Vec<f64>> {
    v?.as_array()?.iter().map(Value::as_f64).collect()
}

fn merge_stac(have: &mut Map<String, Value>, other: &Map<String, Value>) {
    if let Some(Value::Object(theirs)) = other.get("collections") {
        let entry = have
            .entry("collections")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(mine) = entry {
            for (k, v) in theirs {
                mine.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn geo(bbox: Option<[f64; 4]>, types: &[&str]) -> String {
        let mut col = json!({
            "encoding": "WKB",
            "geometry_types": types,
            "covering": {"bbox": {"xmin": ["bbox", "xmin"], "ymin": ["bbox", "ymin"],
                                  "xmax": ["bbox", "xmax"], "ymax": ["bbox", "ymax"]}},
        });
        if let Some(b) = bbox {
            col["bbox"] = json!(b);
        }
        json!({"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": col}})
            .to_string()
    }

    #[test]
    fn unions_bboxes_and_geometry_types() {
        let mut m = FileMetadata::default();
        m.add(
            Some(&geo(Some([0.0, 1.0, 2.0, 3.0]), &["MultiPolygon"])),
            Some(r#"{"version":"1.0.0"}"#),
        )
        .unwrap();
        m.add(Some(&geo(Some([-5.0, 2.0, 1.0, 9.0]), &["Polygon"])), None)
            .unwrap();
        assert_eq!(m.bbox(), Some(vec![-5.0, 1.0, 2.0, 9.0]));
        let kv = m.key_values();
        assert_eq!(kv[0].0, "geo");
        let g: Value = serde_json::from_str(&kv[0].1).unwrap();
        assert_eq!(
            g["columns"]["geometry"]["geometry_types"],
            json!(["MultiPolygon", "Polygon"])
        );
        assert_eq!(
            g["columns"]["geometry"]["covering"]["bbox"]["xmin"],
            json!(["bbox", "xmin"])
        );
        // Inputs of stac-geoparquet 1.0 make a 1.1 file.
        assert_eq!(
            kv[1],
            ("stac-geoparquet".into(), r#"{"version":"1.1.0"}"#.into())
        );
    }

    #[test]
    fn drops_a_bbox_that_one_input_lacks() {
        let mut m = FileMetadata::default();
        m.add(Some(&geo(Some([0.0, 1.0, 2.0, 3.0]), &[])), None)
            .unwrap();
        m.add(Some(&geo(None, &[])), None).unwrap();
        assert_eq!(m.bbox(), None);
        // Without stac-geoparquet metadata in any input, the current version is written.
        assert!(m.key_values()[1].1.contains(r#""version":"1.1.0""#));
    }

    #[test]
    fn new_files_are_stac_geoparquet_1_1_with_their_collections() {
        let text = stac_geoparquet(&[Collection::Hlss30]).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["version"], "1.1.0");
        assert_eq!(v["collections"]["HLSS30_2.0"]["type"], "Collection");
        assert_eq!(v["collections"].as_object().unwrap().len(), 1);
        // Merged month files keep the collections of their daily inputs.
        let mut m = FileMetadata::default();
        m.add(Some(&geo(None, &[])), Some(&text)).unwrap();
        let other = stac_geoparquet(&[Collection::Hlsl30]).unwrap();
        m.add(Some(&geo(None, &[])), Some(&other)).unwrap();
        let merged: Value = serde_json::from_str(&m.key_values()[1].1).unwrap();
        assert_eq!(merged["version"], "1.1.0");
        let ids: BTreeSet<&String> = merged["collections"].as_object().unwrap().keys().collect();
        assert_eq!(
            ids.into_iter().collect::<Vec<_>>(),
            ["HLSL30_2.0", "HLSS30_2.0"]
        );
    }

    #[test]
    fn refuses_incompatible_geo_metadata() {
        let mut m = FileMetadata::default();
        m.add(Some(&geo(None, &[])), None).unwrap();
        let other = geo(None, &[]).replace("WKB", "point");
        let e = m.add(Some(&other), None).unwrap_err();
        assert!(
            matches!(&e, MetadataProblem::ColumnDiffers { column, key: "encoding", .. } if column == "geometry"),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            r#"geo metadata: column "geometry" has encoding "point" here, "WKB" in an earlier file"#
        );
        assert!(matches!(m.add(None, None), Err(MetadataProblem::NoGeo)));
        assert!(matches!(
            m.add(Some("[1]"), None),
            Err(MetadataProblem::NotAnObject { key: "geo" })
        ));
        let e = m.add(Some("{"), None).unwrap_err();
        assert!(
            std::error::Error::source(&e).is_some_and(|s| s.is::<serde_json::Error>()),
            "{e:?}"
        );
    }
}
