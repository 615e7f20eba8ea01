//! Every integration test of the `mybake` crate, in one test binary (one
//! link of the dependencies instead of one per file). Each module is one
//! former `tests/NAME.rs`; `common` is the shared harness (the fluent
//! `Test` builder) and `common::testbed` the real test bed.

mod bake_parity;
mod build;
mod cli;
mod common;
mod convert;
mod examples_schema;
mod expr;
mod help;
mod hostile;
mod monorepo;
mod outputs;
mod publish;
mod push_retry;
mod references;
mod repro;
mod scheduler;
mod set;
mod signals;
mod skip;
mod ssh;
mod target_inputs;
mod verify;
