//! The integration tests: one binary (see Cargo.toml), one module per area.

mod bulk;
mod chaos;
mod cli;
mod cli_input;
mod common;
mod echo10;
mod emulator;
mod faults;
mod harvest;
mod postgres;
mod query;
mod readers;
mod repartition;
mod run;
mod s3;
mod shapes;
mod sync;
