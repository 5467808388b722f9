//! Merging the Arrow schemas of a month's daily files, and bringing every batch to the
//! merged schema.
//!
//! Daily files of one collection may differ a little: a property present on some days only,
//! a property that was null all day (Arrow `Null`), a number that was an integer all day and
//! a float on another. Merging takes the union of the columns (recursively inside structs),
//! makes a column nullable wherever some file lacks it, and widens `Null` to anything,
//! integers to `Int64`, integers and floats to `Float64`, and dictionaries to their values.
//! Anything else that differs cannot be merged.

use crate::error::SchemaProblem;
use arrow_array::{
    Array, ArrayRef, GenericListArray, LargeListArray, ListArray, OffsetSizeTrait, RecordBatch,
    RecordBatchOptions, StructArray, new_null_array,
};
use arrow_schema::{DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit};
use std::collections::HashMap;
use std::sync::Arc;

/// Why two column types cannot be merged: the column's dotted path and what differs.
#[derive(Debug)]
pub struct Conflict {
    /// The column (`assets.B01.href`), empty if not about one column.
    pub column: String,
    /// What could not be merged.
    pub problem: SchemaProblem,
}

/// Merges schemas into one that every one of them can be brought to with [`conform`].
/// Column order is that of the first schema, then new columns in order of appearance.
/// Schema-level metadata is dropped (file metadata is handled separately); field metadata
/// of the first schema that has a field is kept.
pub fn merge_schemas<'a>(
    schemas: impl IntoIterator<Item = &'a Schema>,
) -> Result<Schema, Conflict> {
    let mut fields: Option<Vec<Field>> = None;
    for schema in schemas {
        let other: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields = Some(match fields {
            None => other,
            Some(have) => merge_field_lists(&have, &other, "")?,
        });
    }
    Ok(Schema::new(fields.unwrap_or_default()))
}

fn merge_field_lists(a: &[Field], b: &[Field], parent: &str) -> Result<Vec<Field>, Conflict> {
    let by_name: HashMap<&str, &Field> = b.iter().map(|f| (f.name().as_str(), f)).collect();
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    for fa in a {
        match by_name.get(fa.name().as_str()) {
            Some(fb) => out.push(merge_field(fa, fb, parent)?),
            None => out.push(fa.clone().with_nullable(true)),
        }
    }
    for fb in b {
        if !a.iter().any(|fa| fa.name() == fb.name()) {
            out.push(fb.clone().with_nullable(true));
        }
    }
    Ok(out)
}

fn path(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

fn merge_field(a: &Field, b: &Field, parent: &str) -> Result<Field, Conflict> {
    let column = path(parent, a.name());
    let data_type = merge_types(a.data_type(), b.data_type(), &column)?;
    let nullable = a.is_nullable()
        || b.is_nullable()
        || *a.data_type() == DataType::Null
        || *b.data_type() == DataType::Null;
    let metadata = if a.metadata().is_empty() {
        b.metadata().clone()
    } else {
        a.metadata().clone()
    };
    Ok(Field::new(a.name(), data_type, nullable).with_metadata(metadata))
}

fn is_int(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
    )
}

fn is_float(t: &DataType) -> bool {
    matches!(t, DataType::Float16 | DataType::Float32 | DataType::Float64)
}

fn finer(a: TimeUnit, b: TimeUnit) -> TimeUnit {
    let rank = |u: TimeUnit| match u {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 1,
        TimeUnit::Microsecond => 2,
        TimeUnit::Nanosecond => 3,
    };
    if rank(a) >= rank(b) { a } else { b }
}

fn merge_types(a: &DataType, b: &DataType, column: &str) -> Result<DataType, Conflict> {
    if a == b {
        return Ok(a.clone());
    }
    let conflict = || Conflict {
        column: column.to_string(),
        problem: SchemaProblem::Types {
            a: a.clone(),
            b: b.clone(),
        },
    };
    Ok(match (a, b) {
        (DataType::Null, t) | (t, DataType::Null) => t.clone(),
        (DataType::Dictionary(_, va), DataType::Dictionary(_, vb)) if va == vb => {
            // Different key types: the widest fits both.
            DataType::Dictionary(Box::new(DataType::Int64), va.clone())
        }
        (DataType::Dictionary(_, v), t) | (t, DataType::Dictionary(_, v)) => {
            merge_types(v, t, column)?
        }
        (x, y) if is_int(x) && is_int(y) => DataType::Int64,
        (x, y) if (is_int(x) || is_float(x)) && (is_int(y) || is_float(y)) => DataType::Float64,
        // Daily files of earlier versions hold milliseconds, later ones microseconds.
        (DataType::Timestamp(ua, za), DataType::Timestamp(ub, zb)) if za == zb => {
            DataType::Timestamp(finer(*ua, *ub), za.clone())
        }
        (DataType::Utf8, DataType::LargeUtf8) | (DataType::LargeUtf8, DataType::Utf8) => {
            DataType::LargeUtf8
        }
        (DataType::Binary, DataType::LargeBinary) | (DataType::LargeBinary, DataType::Binary) => {
            DataType::LargeBinary
        }
        (DataType::Struct(fa), DataType::Struct(fb)) => {
            let a: Vec<Field> = fa.iter().map(|f| f.as_ref().clone()).collect();
            let b: Vec<Field> = fb.iter().map(|f| f.as_ref().clone()).collect();
            DataType::Struct(Fields::from(merge_field_lists(&a, &b, column)?))
        }
        (DataType::List(ea), DataType::List(eb)) => {
            DataType::List(Arc::new(merge_field(ea, eb, column)?))
        }
        (DataType::LargeList(ea), DataType::LargeList(eb))
        | (DataType::List(ea), DataType::LargeList(eb))
        | (DataType::LargeList(ea), DataType::List(eb)) => {
            DataType::LargeList(Arc::new(merge_field(ea, eb, column)?))
        }
        _ => return Err(conflict()),
    })
}

/// Brings a batch to `target`, a schema [`merge_schemas`] made from (among others) the
/// batch's schema: missing columns become nulls, types are widened, columns reordered.
pub fn conform(batch: &RecordBatch, target: &SchemaRef) -> Result<RecordBatch, Conflict> {
    if batch.schema().fields() == target.fields() {
        return RecordBatch::try_new_with_options(
            target.clone(),
            batch.columns().to_vec(),
            &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )
        .map_err(|e| Conflict {
            column: String::new(),
            problem: SchemaProblem::Arrow(e),
        });
    }
    let rows = batch.num_rows();
    let columns = target
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(col) => conform_array(col, field, field.name()),
            None => Ok(new_null_array(field.data_type(), rows)),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new_with_options(
        target.clone(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows)),
    )
    .map_err(|e| Conflict {
        column: String::new(),
        problem: SchemaProblem::Arrow(e),
    })
}

fn conform_array(array: &ArrayRef, field: &FieldRef, column: &str) -> Result<ArrayRef, Conflict> {
    let target = field.data_type();
    if array.data_type() == target {
        return Ok(array.clone());
    }
    let err = |problem: SchemaProblem| Conflict {
        column: column.to_string(),
        problem,
    };
    match target {
        DataType::Struct(fields) => {
            let Some(s) = array.as_any().downcast_ref::<StructArray>() else {
                return Err(err(SchemaProblem::NotAStruct(array.data_type().clone())));
            };
            let children = fields
                .iter()
                .map(|f| match s.column_by_name(f.name()) {
                    Some(c) => conform_array(c, f, &path(column, f.name())),
                    None => Ok(new_null_array(f.data_type(), s.len())),
                })
                .collect::<Result<Vec<_>, _>>()?;
            StructArray::try_new(fields.clone(), children, s.nulls().cloned())
                .map(|a| Arc::new(a) as ArrayRef)
                .map_err(|e| err(SchemaProblem::Arrow(e)))
        }
        DataType::List(inner) => match array.as_any().downcast_ref::<ListArray>() {
            Some(l) => conform_list(l, inner, column),
            None => cast(array, target, column),
        },
        DataType::LargeList(inner) => {
            if let Some(l) = array.as_any().downcast_ref::<LargeListArray>() {
                conform_list(l, inner, column)
            } else if let Some(l) = array.as_any().downcast_ref::<ListArray>() {
                // Conform the values first, then let the cast widen the offsets.
                let list = conform_list(l, &Arc::new(inner.as_ref().clone()), column)?;
                cast(&list, target, column)
            } else {
                cast(array, target, column)
            }
        }
        _ => cast(array, target, column),
    }
}

/// A list (of either offset size) with its values brought to `inner`, offsets and nulls kept.
fn conform_list<O: OffsetSizeTrait>(
    list: &GenericListArray<O>,
    inner: &FieldRef,
    column: &str,
) -> Result<ArrayRef, Conflict> {
    let values = conform_array(list.values(), inner, column)?;
    GenericListArray::<O>::try_new(
        inner.clone(),
        list.offsets().clone(),
        values,
        list.nulls().cloned(),
    )
    .map(|a| Arc::new(a) as ArrayRef)
    .map_err(|e| Conflict {
        column: column.to_string(),
        problem: SchemaProblem::Arrow(e),
    })
}

fn cast(array: &ArrayRef, target: &DataType, column: &str) -> Result<ArrayRef, Conflict> {
    arrow_cast::cast(array, target).map_err(|source| Conflict {
        column: column.to_string(),
        problem: SchemaProblem::Cast {
            from: Box::new(array.data_type().clone()),
            to: Box::new(target.clone()),
            source,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int32Type};
    use arrow_array::{DictionaryArray, Float64Array, Int64Array, StringArray};

    fn field(name: &str, t: DataType, nullable: bool) -> Field {
        Field::new(name, t, nullable)
    }

    fn asset(children: Vec<Field>) -> DataType {
        DataType::Struct(Fields::from(children))
    }

    #[test]
    fn merges_columns_present_in_some_files_only() {
        let a = Schema::new(vec![
            field("id", DataType::Utf8, false),
            field("eo:cloud_cover", DataType::Int64, true),
            field(
                "assets",
                asset(vec![field("B01", DataType::Utf8, false)]),
                false,
            ),
        ]);
        let b = Schema::new(vec![
            field("id", DataType::Utf8, false),
            field("view:azimuth", DataType::Null, true),
            field("eo:cloud_cover", DataType::Float64, true),
            field(
                "assets",
                asset(vec![
                    field("B01", DataType::Utf8, false),
                    field("B02", DataType::Utf8, false),
                ]),
                false,
            ),
            field("sci:doi", DataType::Utf8, false),
        ]);
        let merged = merge_schemas([&a, &b]).unwrap();
        let names: Vec<&str> = merged.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            ["id", "eo:cloud_cover", "assets", "view:azimuth", "sci:doi"]
        );
        let f = |n: &str| merged.field_with_name(n).unwrap().clone();
        assert!(!f("id").is_nullable());
        assert_eq!(f("eo:cloud_cover").data_type(), &DataType::Float64);
        assert_eq!(f("view:azimuth").data_type(), &DataType::Null);
        // Present in b only: nullable although b says it is not.
        assert!(f("sci:doi").is_nullable());
        let DataType::Struct(assets) = f("assets").data_type().clone() else {
            panic!("assets is not a struct");
        };
        assert_eq!(assets.len(), 2);
        assert!(!assets[0].is_nullable());
        assert!(assets[1].is_nullable());
    }

    #[test]
    fn widens_nulls_and_dictionaries() {
        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        let a = Schema::new(vec![
            field("x", DataType::Null, true),
            field("c", dict.clone(), false),
        ]);
        let b = Schema::new(vec![
            field("x", DataType::Float64, false),
            field("c", dict.clone(), false),
        ]);
        let merged = merge_schemas([&a, &b]).unwrap();
        assert_eq!(merged.field(0).data_type(), &DataType::Float64);
        assert!(merged.field(0).is_nullable());
        assert_eq!(merged.field(1).data_type(), &dict);
        let c = Schema::new(vec![field("c", DataType::Utf8, false)]);
        let merged = merge_schemas([&a, &c]).unwrap();
        assert_eq!(merged.field(1).data_type(), &DataType::Utf8);
    }

    #[test]
    fn millisecond_and_microsecond_days_merge_to_microseconds() {
        use arrow_array::{RecordBatch, TimestampMillisecondArray};
        let ts = |unit| DataType::Timestamp(unit, Some("UTC".into()));
        let ms = Schema::new(vec![field("datetime", ts(TimeUnit::Millisecond), true)]);
        let us = Schema::new(vec![field("datetime", ts(TimeUnit::Microsecond), true)]);
        let merged = Arc::new(merge_schemas([&ms, &us]).unwrap());
        assert_eq!(merged.field(0).data_type(), &ts(TimeUnit::Microsecond));
        let old = RecordBatch::try_new(
            Arc::new(ms),
            vec![Arc::new(
                TimestampMillisecondArray::from(vec![1_717_200_379_072]).with_timezone("UTC"),
            )],
        )
        .unwrap();
        let conformed = conform(&old, &merged).unwrap();
        let micros = conformed
            .column(0)
            .as_primitive::<arrow_array::types::TimestampMicrosecondType>();
        assert_eq!(micros.value(0), 1_717_200_379_072_000);
    }

    #[test]
    fn refuses_what_cannot_be_merged() {
        let a = Schema::new(vec![field(
            "assets",
            asset(vec![field("href", DataType::Utf8, true)]),
            true,
        )]);
        let b = Schema::new(vec![field(
            "assets",
            asset(vec![field("href", DataType::Int64, true)]),
            true,
        )]);
        let e = merge_schemas([&a, &b]).unwrap_err();
        assert_eq!(e.column, "assets.href");
        assert!(
            matches!(
                &e.problem,
                SchemaProblem::Types {
                    a: DataType::Utf8,
                    b: DataType::Int64
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.problem.to_string(), "Utf8 in one file, Int64 in another");
        let c = Schema::new(vec![field("assets", DataType::Utf8, true)]);
        assert_eq!(merge_schemas([&a, &c]).unwrap_err().column, "assets");
    }

    #[test]
    fn conforms_batches_to_the_merged_schema() {
        let a = Arc::new(Schema::new(vec![
            field("id", DataType::Utf8, false),
            field("n", DataType::Int64, true),
            field(
                "assets",
                asset(vec![field("B01", DataType::Utf8, true)]),
                true,
            ),
            field(
                "collection",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                true,
            ),
        ]));
        let b = Schema::new(vec![
            field("id", DataType::Utf8, false),
            field("n", DataType::Float64, true),
            field(
                "assets",
                asset(vec![
                    field("B01", DataType::Utf8, true),
                    field("B02", DataType::Utf8, true),
                ]),
                true,
            ),
            field("extra", DataType::Utf8, true),
            field("collection", DataType::Utf8, true),
        ]);
        let target = Arc::new(merge_schemas([a.as_ref(), &b]).unwrap());
        let assets = StructArray::try_new(
            Fields::from(vec![field("B01", DataType::Utf8, true)]),
            vec![Arc::new(StringArray::from(vec!["h1", "h2"])) as ArrayRef],
            None,
        )
        .unwrap();
        let coll: DictionaryArray<Int32Type> =
            vec!["HLSS30_2.0", "HLSS30_2.0"].into_iter().collect();
        let batch = RecordBatch::try_new(
            a.clone(),
            vec![
                Arc::new(StringArray::from(vec!["a", "b"])),
                Arc::new(Int64Array::from(vec![Some(3), None])),
                Arc::new(assets),
                Arc::new(coll),
            ],
        )
        .unwrap();
        let out = conform(&batch, &target).unwrap();
        assert_eq!(out.schema(), target);
        assert_eq!(out.num_rows(), 2);
        let n = out
            .column_by_name("n")
            .unwrap()
            .as_primitive::<Float64Type>();
        assert_eq!(n, &Float64Array::from(vec![Some(3.0), None]));
        assert_eq!(out.column_by_name("extra").unwrap().null_count(), 2);
        let assets = out.column_by_name("assets").unwrap().as_struct();
        assert_eq!(assets.column_by_name("B01").unwrap().null_count(), 0);
        assert_eq!(assets.column_by_name("B02").unwrap().null_count(), 2);
        let coll = out.column_by_name("collection").unwrap().as_string::<i32>();
        assert_eq!(coll.value(1), "HLSS30_2.0");
    }
}
