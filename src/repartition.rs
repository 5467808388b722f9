//! TEMPORARY stub, replaced by the repartition branch.
#![allow(missing_docs, clippy::too_many_arguments)]
use crate::{Collection, Error, Result, output::Output};
use object_store::path::Path;
#[derive(Debug, Default)]
pub struct RepartitionOptions {
    pub tmp_dir: Option<std::path::PathBuf>,
}
pub struct RepartitionReport {
    pub rows: u64,
    pub bytes: u64,
    pub path: Option<Path>,
}
pub async fn repartition_month(
    _: &Output,
    _: &[Path],
    _: &Output,
    _: Collection,
    _: i32,
    _: u32,
    _: &RepartitionOptions,
) -> Result<RepartitionReport> {
    Err(Error::Task("repartition not merged yet".into()))
}
