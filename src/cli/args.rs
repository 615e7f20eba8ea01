//! Raw command-line arguments (clap). `cli::run` turns them into settings.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "mybake",
    version,
    about = "Build multi-architecture container images from one KDL file",
    args_conflicts_with_subcommands = false,
    after_help = EXAMPLES_TOP
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
    #[command(after_help = EXAMPLES_BUILD)]
    Build(BuildArgs),
    /// Print the resolved configuration as JSON (bake-shaped)
    #[command(after_help = EXAMPLES_PRINT)]
    Print {
        /// Targets or groups (default: group `default`)
        targets: Vec<String>,
    },
    /// List targets or variables
    #[command(after_help = EXAMPLES_LIST)]
    List {
        /// What to list
        #[arg(value_enum, default_value_t = ListWhat::Targets)]
        what: ListWhat,
        /// Output format
        #[arg(long, value_enum, default_value_t = ListFormat::Text)]
        format: ListFormat,
    },
    /// Show the build plan (per-platform DAG)
    #[command(after_help = EXAMPLES_PLAN)]
    Plan {
        /// Targets or groups (default: group `default`)
        targets: Vec<String>,
        /// Output format (`dot` for Graphviz)
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
    },
    /// Create or inspect image indexes
    #[command(subcommand, after_help = EXAMPLES_INDEX)]
    Index(IndexCommand),
    /// Pin every external image the build uses (Dockerfile `FROM`s, `docker-image://` contexts) to its digests in mybake.lock
    #[command(after_help = EXAMPLES_LOCK)]
    Lock(LockArgs),
    /// Print a shell completion script on stdout
    #[command(after_help = EXAMPLES_COMPLETIONS)]
    Completions {
        /// Shell to complete for
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Print the man page (roff) on stdout
    #[command(after_help = EXAMPLES_MAN)]
    Man,
    /// Convert docker-bake.hcl / .json files to mybake.kdl (not evaluated)
    #[command(after_help = "Examples:\n  \
        mybake convert > mybake.kdl\n  \
        mybake convert docker-bake.hcl docker-bake.override.hcl -o mybake.kdl")]
    Convert(ConvertArgs),
    /// Rebuild without cache and compare with what is published under the targets' tags (or with a second rebuild); exit 1 when anything differs
    #[command(after_help = EXAMPLES_VERIFY)]
    Verify(VerifyArgs),
}

#[derive(Debug, Args, Default)]
pub struct LockArgs {
    /// Targets or groups (default: group `default`)
    pub targets: Vec<String>,
    /// Resolve pins again: all of them, or only these images (default: keep existing pins)
    #[arg(long, value_name = "IMAGE", num_args = 0..)]
    pub update: Option<Vec<String>>,
}

/// Shells `mybake completions` writes a script for.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
}

#[derive(Debug, Args, Default)]
pub struct ConvertArgs {
    /// Bake files to convert, later ones overriding earlier ones (default:
    /// bake's docker-bake.json, docker-bake.hcl, docker-bake.override.*)
    #[arg(value_name = "FILE")]
    pub inputs: Vec<PathBuf>,
    /// Write the KDL to FILE (atomically) instead of standard output
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Targets or groups (default: group `default`)
    pub targets: Vec<String>,
    /// Report format
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
    /// Progress of the rebuild on stderr
    #[arg(long, value_enum, default_value_t = Progress::Quiet)]
    pub progress: Progress,
    /// Builder to rebuild on (default: $MYBAKE_BUILDER, else `docker`)
    #[arg(long, value_name = "NAME")]
    pub builder: Option<String>,
    /// Timestamp the release was built with (as `build --source-date-epoch`); default: $SOURCE_DATE_EPOCH
    #[arg(long, value_name = "N|git")]
    pub source_date_epoch: Option<String>,
    /// Rebuild from the digests pinned in mybake.lock (as `build --locked`)
    #[arg(long)]
    pub locked: bool,
}

#[derive(Debug, Args, Default)]
pub struct BuildArgs {
    /// Targets or groups to build (default: group `default`, else target `default`)
    pub targets: Vec<String>,
    /// Add `output "registry"` to every requested target (a `target:` dependency that is not requested is built, not published)
    #[arg(long, conflicts_with = "load")]
    pub push: bool,
    /// Add `output "docker"` to every requested target
    #[arg(long)]
    pub load: bool,
    /// Progress output (auto: tty on a terminal, plain otherwise)
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
    /// Write the build result metadata (bake's keys, per target) to FILE as JSON
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Maximum concurrent solves
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub jobs: Option<usize>,
    /// Keep building independent nodes after a failure (nothing is published if any fails)
    #[arg(long)]
    pub keep_going: bool,
    /// Do not use the build cache
    #[arg(long)]
    pub no_cache: bool,
    /// Build every target even when the registry already holds it built from the same inputs (`--push` skips unchanged targets)
    #[arg(long)]
    pub rebuild: bool,
    /// Always pull the base images (check the registry for newer ones)
    #[arg(long)]
    pub pull: bool,
    /// When to publish: after every target has built (all) or per target as soon as it is complete
    #[arg(long, value_enum, default_value_t = Publish::All)]
    pub publish: Publish,
    /// Builder: `docker`, unix:///… or tcp://… endpoint, or a builder of builders.kdl (env MYBAKE_BUILDER)
    #[arg(long, value_name = "NAME")]
    pub builder: Option<String>,
    /// Provenance attestation for every target: false, true, mode=min|max or KEY=VALUE,... (as bake)
    #[arg(long, value_name = "VALUE")]
    pub provenance: Option<String>,
    /// SBOM attestation for every target: false, true or KEY=VALUE,... (as bake)
    #[arg(long, value_name = "VALUE")]
    pub sbom: Option<String>,
    /// Record every solve (one per target and platform) in the builder's build history, as `docker buildx history` lists it (off: recording delays each solve's return)
    #[arg(long)]
    pub history: bool,
    /// Timestamp of the build (seconds since the epoch, or `git`: the commit time of HEAD); default: $SOURCE_DATE_EPOCH
    #[arg(long, value_name = "N|git")]
    pub source_date_epoch: Option<String>,
    /// Build from the digests pinned in mybake.lock; fail when it is missing or stale
    #[arg(long)]
    pub locked: bool,
}

#[derive(Debug, Subcommand)]
pub enum IndexCommand {
    /// Merge images into one index
    #[command(after_help = EXAMPLES_INDEX_CREATE)]
    Create {
        /// Reference to write (repeatable)
        #[arg(short = 't', long = "tag", value_name = "TAG")]
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
    #[command(after_help = EXAMPLES_INDEX_INSPECT)]
    Inspect {
        /// Image or index reference (tag or digest)
        reference: String,
        /// Output format
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

const EXAMPLES_TOP: &str = "\
Examples:
  mybake                          Build group `default` (same as `mybake build`)
  mybake build api --push         Build and push target `api` for all its platforms
  mybake print                    Show the resolved configuration as bake-style JSON
  mybake plan --format dot | dot -Tsvg > plan.svg
  mybake completions bash > /etc/bash_completion.d/mybake";

const EXAMPLES_BUILD: &str = "\
Examples:
  mybake build                           Build group `default`
  mybake build api worker --push         Build two targets and push them
  mybake build --load -j 2 api           Load into Docker, at most 2 solves at once
  mybake build --set '*.platforms=linux/arm64' --progress plain
  mybake build --push --provenance mode=max --metadata-file meta.json
  mybake build --push --locked --source-date-epoch git";

const EXAMPLES_PRINT: &str = "\
Examples:
  mybake print                      Group `default`
  mybake print api --var TAG=1.2    One target, with a variable set";

const EXAMPLES_LIST: &str = "\
Examples:
  mybake list
  mybake list variables --format json";

const EXAMPLES_PLAN: &str = "\
Examples:
  mybake plan api
  mybake plan --format dot | dot -Tsvg > plan.svg";

const EXAMPLES_INDEX: &str = "\
Examples:
  mybake index create -t localhost:5000/app:1 localhost:5000/app:amd64 localhost:5000/app:arm64
  mybake index inspect localhost:5000/app:1 --format json";

const EXAMPLES_COMPLETIONS: &str = "\
Examples:
  mybake completions bash > ~/.local/share/bash-completion/completions/mybake
  mybake completions zsh > ~/.zfunc/_mybake
  mybake completions fish > ~/.config/fish/completions/mybake.fish";

const EXAMPLES_LOCK: &str = "\
Examples:
  mybake lock                       Pin the bases of group `default` in mybake.lock
  mybake lock --update              Resolve every pin again
  mybake lock --update localhost:5000/busybox:latest
  mybake build --locked --push      Build from the pins; exit 2 if the lock is stale";

const EXAMPLES_VERIFY: &str = "\
Examples:
  mybake verify                      Rebuild group `default`, compare with its published tags
  mybake verify release --locked --source-date-epoch git --format json";

const EXAMPLES_MAN: &str = "\
Examples:
  mybake man > ~/.local/share/man/man1/mybake.1
  mybake man | man -l -";

const EXAMPLES_INDEX_CREATE: &str = "\
Examples:
  mybake index create -t localhost:5000/app:1 localhost:5000/app:amd64 localhost:5000/app:arm64
  mybake index create -t r/app:1 --platform linux/amd64 --dry-run r/app@sha256:...";

const EXAMPLES_INDEX_INSPECT: &str = "\
Examples:
  mybake index inspect localhost:5000/app:1
  mybake index inspect localhost:5000/app:1 --format json";
