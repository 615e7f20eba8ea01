//! Raw command-line arguments (clap). `cli::run` turns them into settings.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "mybake",
    version,
    about = "Build multi-architecture container images from one KDL file",
    args_conflicts_with_subcommands = false
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct Global {
    /// Build file (repeatable; replaces mybake.kdl + mybake.override.kdl; `-` = stdin)
    #[arg(short = 'f', long = "file", global = true, value_name = "PATH")]
    pub files: Vec<PathBuf>,
    /// Set a variable (overrides the environment and the default)
    #[arg(long = "var", global = true, value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Override a target attribute: PATTERN.ATTR=VALUE, PATTERN.ATTR+=VALUE, PATTERN.arg.KEY=VALUE
    #[arg(long = "set", global = true, value_name = "PATTERN.ATTR=VALUE")]
    pub sets: Vec<String>,
    /// Run as if started in DIR
    #[arg(short = 'C', global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build targets (default command)
    Build(BuildArgs),
    /// Print the resolved configuration as JSON (bake-shaped)
    Print {
        /// Targets or groups (default: group `default`)
        targets: Vec<String>,
    },
    /// List targets or variables
    List {
        #[arg(value_enum, default_value_t = ListWhat::Targets)]
        what: ListWhat,
        #[arg(long, value_enum, default_value_t = ListFormat::Text)]
        format: ListFormat,
    },
    /// Show the build plan (per-platform DAG)
    Plan {
        targets: Vec<String>,
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
    },
    /// Create or inspect image indexes
    #[command(subcommand)]
    Index(IndexCommand),
    /// Rebuild without cache and compare with what is published under the targets' tags (or with a second rebuild); exit 1 when anything differs
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Targets or groups (default: group `default`)
    pub targets: Vec<String>,
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
    #[arg(long, value_enum, default_value_t = Progress::Quiet)]
    pub progress: Progress,
    #[arg(long, value_name = "NAME")]
    pub builder: Option<String>,
}

#[derive(Debug, Args, Default)]
pub struct BuildArgs {
    pub targets: Vec<String>,
    /// Add `output "registry"` to every requested target (a `target:` dependency that is not requested is built, not published)
    #[arg(long, conflicts_with = "load")]
    pub push: bool,
    /// Add `output "docker"` to every requested target
    #[arg(long)]
    pub load: bool,
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Maximum concurrent solves
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub jobs: Option<usize>,
    #[arg(long)]
    pub keep_going: bool,
    #[arg(long)]
    pub no_cache: bool,
    /// Build every target even when the registry already holds it built from the same inputs (`--push` skips unchanged targets)
    #[arg(long)]
    pub rebuild: bool,
    #[arg(long)]
    pub pull: bool,
    #[arg(long, value_enum, default_value_t = Publish::All)]
    pub publish: Publish,
    #[arg(long, value_name = "NAME")]
    pub builder: Option<String>,
    /// Record every solve (one per target and platform) in the builder's build history, as `docker buildx history` lists it (off: recording delays each solve's return)
    #[arg(long)]
    pub history: bool,
}

#[derive(Debug, Subcommand)]
pub enum IndexCommand {
    /// Merge images into one index
    Create {
        /// Reference to write (repeatable)
        #[arg(short = 't', long = "tag")]
        tags: Vec<String>,
        /// Images or indexes to merge (tags or digests)
        #[arg(required = true)]
        sources: Vec<String>,
        /// Keep only these platforms (repeatable)
        #[arg(long = "platform")]
        platforms: Vec<String>,
        /// Annotation KEY=VALUE (`index:`, `manifest:` prefixes; repeatable)
        #[arg(long = "annotation")]
        annotations: Vec<String>,
        /// Print the index instead of pushing it
        #[arg(long)]
        dry_run: bool,
    },
    /// Show an index or manifest
    Inspect {
        reference: String,
        #[arg(long, value_enum, default_value_t = ListFormat::Text)]
        format: ListFormat,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ListWhat {
    Targets,
    Variables,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ListFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum PlanFormat {
    Text,
    Dot,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub enum Progress {
    #[default]
    Auto,
    Tty,
    Plain,
    Json,
    Quiet,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub enum Publish {
    #[default]
    All,
    PerTarget,
}
