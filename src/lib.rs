//! mybake: build multi-architecture container images from one KDL file.
//!
//! The pipeline, one module per stage, each with one entry point and a
//! typed output:
//! `load` (files → declarations with spans) → `resolve` (variables,
//! inherits, matrix, `--set` → concrete targets) → `plan` (→ per-platform
//! DAG) → `exec` → `publish` → `report`. `build` is the stage that runs
//! `exec` and `publish` for `mybake build` (staging, signals, metadata) and
//! returns a typed `BuildReport`; `report` renders it and every event, and
//! nothing else prints. `oci` is the vocabulary the later stages share.

pub mod attrs;
pub mod build;
pub mod cli;
pub mod convert;
pub mod diag;
pub mod dockerfile;
pub mod exec;
pub mod expr;
pub mod files;
pub mod load;
pub mod lock;
pub mod oci;
pub mod par;
pub mod plan;
pub mod publish;
pub mod report;
pub mod repro;
pub mod resolve;
pub mod source;
pub mod value;
pub mod verify;

/// A hash map with a fast, seeded hasher (foldhash), for lookups by name.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// The set counterpart of [`FastMap`].
pub type FastSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;
