//! Stage 2 — `resolve`: merge files, evaluate variables, expand matrices,
//! apply inheritance (each target's `--set` overrides applied to it as
//! declared, before its children inherit it), interpolate, validate.
//!
//! Entry point: [`resolve`]. Output: [`Resolved`] — every concrete target
//! of the configuration — or all problems found. [`select`] then turns a
//! command-line request into the targets to build.

pub mod cache;
pub mod interp;
pub mod platform;
pub mod reference;
mod select;
pub mod set;
pub mod spec;
mod target;
pub mod vars;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

pub use select::{select, Selection};
pub use target::Target;
pub use vars::{Variable, Variables};

use crate::attrs::{Paths, Shape, A, ATTRS};
use crate::diag::{suggest, Diag, Diagnostics};
use crate::load::{self, FileDecls, GroupDecl, TargetDecl};
use crate::par;
use crate::source::{Sources, Sp, Span};
use crate::value::{Attrs, Value};
use crate::{FastMap, FastSet};
use interp::{Scope, Val};

/// Inputs besides the files.
#[derive(Debug, Clone, Default)]
pub struct ResolveOptions {
    pub cwd: PathBuf,
    /// `--var NAME=VALUE`, in order.
    pub vars: Vec<(String, String)>,
    /// The environment (a snapshot, so tests are hermetic).
    pub env: HashMap<String, String>,
    /// `--set` flags as given.
    pub sets: Vec<String>,
    /// `MYBAKE_LOCAL_PLATFORM`.
    pub local_platform: String,
}

/// A group after merging.
#[derive(Debug, Clone)]
pub struct Group {
    pub name: Sp<String>,
    pub targets: Vec<Sp<String>>,
    pub description: Option<String>,
}

/// Output of the resolve stage.
#[derive(Debug)]
pub struct Resolved {
    pub cwd: PathBuf,
    pub local_platform: String,
    pub variables: Variables,
    pub groups: Vec<Group>,
    pub group_index: FastMap<String, usize>,
    /// Concrete targets in declaration order (matrix expansions in place).
    pub targets: Vec<Target>,
    pub index: FastMap<String, usize>,
    /// Matrix template name → its expansions.
    pub templates: BTreeMap<String, Vec<usize>>,
}

impl Resolved {
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.index.get(name).map(|&i| &self.targets[i])
    }
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.group_index.get(name).map(|&i| &self.groups[i])
    }
}

/// Resolve the loaded files. `sources` gains a pseudo-file for `--set`.
pub fn resolve(
    files: &[FileDecls],
    sources: &mut Sources,
    opts: &ResolveOptions,
) -> Result<Resolved, Diagnostics> {
    let mut diags = Diagnostics::default();
    let sets = set::parse(&opts.sets, sources, &opts.cwd, &opts.env, &mut diags);
    // Values from `--set` are taken as written (bake does not evaluate them).
    let set_file = sets.first().map(|o| o.span.file);
    let sources: &Sources = sources;

    let budget = interp::Budget::default();
    let functions = user_functions(files, sources, &mut diags);
    let globals = Arc::new(crate::expr::Globals::new(&functions).0);
    let variables = vars::evaluate(
        files.iter().flat_map(|f| &f.variables).collect(),
        &opts.vars,
        &opts.env,
        sources,
        &mut diags,
        &budget,
        &globals,
    );
    // User functions may read the variables once they are known.
    let globals = if functions.is_empty() {
        globals
    } else {
        let mut g = crate::expr::Globals::new(&functions).0;
        g.set_vars(
            variables
                .list
                .iter()
                .map(|v| {
                    let value = v
                        .value
                        .as_ref()
                        .map_or(hcl::Value::Null, |x| vars::typed_hcl(x, v.ty));
                    (v.name.v.clone(), value)
                })
                .collect(),
        );
        Arc::new(g)
    };
    let (groups, group_index) = merge_groups(files.iter().flat_map(|f| &f.groups));
    for g in &groups {
        if !valid_name(&g.name.v) {
            diags.push(bad_name("group", &g.name.v, g.name.span, None));
        }
    }
    let raws = merge_targets(files.iter().flat_map(|f| &f.targets));
    let git = OnceLock::new();
    let first_dir = sources
        .get(0)
        .map(|f| f.dir.clone())
        .unwrap_or_else(|| opts.cwd.clone());
    let builtins = Builtins {
        local_platform: &opts.local_platform,
        git: &git,
        git_dir: &first_dir,
        budget: &budget,
        globals: &globals,
    };

    // Matrix expansion → concrete declarations.
    let mut concrete: Vec<Concrete> = Vec::new();
    let mut index: FastMap<String, usize> = FastMap::default();
    let mut templates: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (ri, raw) in raws.iter().enumerate() {
        if concrete.len() >= MAX_TARGETS {
            diags.push(
                Diag::new(
                    "mybake::resolve::too-many-targets",
                    format!("more than {MAX_TARGETS} targets (matrix expansions included)"),
                )
                .label(raw.name.span, "the limit is passed here")
                .help("split the configuration into several files built separately"),
            );
            break;
        }
        let combos = match &raw.matrix {
            None => vec![Vec::new()],
            Some(m) => expand_axes(&m.v, m.span, &variables, &builtins, sources, &mut diags),
        };
        let mut duplicates = 0usize;
        for bindings in combos {
            let scope = TargetScope {
                vars: &variables,
                builtins: &builtins,
                bindings: &bindings,
                target: None,
            };
            let name = match interp::interpolate_text(&raw.name, &scope, sources) {
                Ok(v) => v,
                Err(d) => {
                    diags.push(d);
                    continue;
                }
            };
            if !valid_name(&name) {
                let expanded = (name != raw.name.v).then_some(raw.name.v.as_str());
                diags.push(bad_name("target", &name, raw.name.span, expanded));
            }
            if let Some(&prev) = index.get(&name) {
                let p = &concrete[prev];
                let same_matrix = raw.matrix.is_some() && p.raw == ri;
                if same_matrix {
                    duplicates += 1;
                    if duplicates > 1 {
                        continue;
                    }
                }
                let d = if same_matrix {
                    Diag::new(
                        "mybake::resolve::duplicate-expansion",
                        format!(
                            "matrix of `{}` expands to `{name}` more than once",
                            raw.name.v
                        ),
                    )
                    .label(
                        raw.name.span,
                        format!("`{name}` again for {}", describe(&bindings)),
                    )
                    .help("include every axis in the target name, e.g. `svc-${svc}-${variant}`")
                } else {
                    Diag::new(
                        "mybake::resolve::duplicate-target",
                        format!("target name `{name}` is produced twice"),
                    )
                    .label(raw.name.span, format!("`{name}` here"))
                    .label(raws[p.raw].name.span, "and here")
                };
                diags.push(d);
                continue;
            }
            let i = concrete.len();
            index.insert(name.clone(), i);
            if raw.matrix.is_some() {
                templates.entry(raw.name.v.clone()).or_default().push(i);
            }
            concrete.push(Concrete {
                name: Sp::new(name, raw.name.span),
                raw: ri,
                bindings,
            });
        }
    }
    for g in &groups {
        if index.contains_key(&g.name.v) {
            diags.push(
                Diag::new(
                    "mybake::resolve::name-clash",
                    format!("`{}` is both a group and a target", g.name.v),
                )
                .label(g.name.span, "group")
                .label(concrete[index[&g.name.v]].name.span, "target"),
            );
        }
    }

    // Inheritance, in declaration order: parents are resolved and their
    // attributes memoised; unknown parents and cycles are reported at the
    // first target that meets them (once).
    let parents = raws
        .iter()
        .flat_map(|r| r.inherits.iter().copied().flatten())
        .map(|p| p.v.as_str())
        .collect();
    let mut inh = Inheritance {
        raws: &raws,
        concrete: &concrete,
        index: &index,
        memo: vec![None; concrete.len()],
        memo_all: raws
            .iter()
            .flat_map(|r| r.inherits.iter().copied().flatten())
            .any(|p| p.v.contains('$')),
        parents,
        stack: Vec::new(),
        on_stack: vec![false; concrete.len()],
        sources,
        vars: &variables,
        builtins: &builtins,
        sets: &sets,
    };
    let mut inherited: Vec<(Vec<usize>, Diagnostics)> = (0..concrete.len())
        .map(|i| {
            let mut d = Diagnostics::default();
            let parents = inh.prepare(i, &mut d);
            (parents, d)
        })
        .collect();
    // Then each target on its own (attributes with `--set`, interpolation,
    // checks), in parts at once; diagnostics are put together in target
    // order, after the target's inheritance diagnostics, as if in one pass.
    let inh = &inh;
    let inherited_parents: Vec<&[usize]> = inherited.iter().map(|(p, _)| &p[..]).collect();
    let ranges = par::ranges(concrete.len(), par::parts(), TARGETS_PER_PART_MIN);
    let built = par::map(ranges, |range| {
        range
            .map(|i| {
                let c = &concrete[i];
                let raw = &raws[c.raw];
                let mut diags = Diagnostics::default();
                let attrs = inh.merged(i, inherited_parents[i]);
                let scope = TargetScope {
                    vars: &variables,
                    builtins: &builtins,
                    bindings: &c.bindings,
                    target: Some(&c.name.v),
                };
                let attrs = interpolate_attrs(attrs, &scope, sources, set_file, &mut diags);
                let decl_dir = sources
                    .get(raw.name.span.file)
                    .map_or(opts.cwd.as_path(), |f| &f.dir);
                let size: usize = attrs.iter().map(|(_, v)| text_bytes(v)).sum();
                if budget.charge_resolved(size) == Some(true) {
                    diags.push(
                        Diag::new(
                            "mybake::resolve::too-large",
                            format!(
                                "the resolved targets hold more than {} MiB of text",
                                interp::MAX_RESOLVED_BYTES >> 20
                            ),
                        )
                        .label(c.name.span, "the limit is passed at this target")
                        .help("a large value inherited or interpolated by many targets is copied into each of them"),
                    );
                }
                finish(
                    c.name.clone(),
                    raw.matrix.as_ref().map(|_| raw.name.v.clone()),
                    attrs,
                    decl_dir,
                    sources,
                    &opts.cwd,
                    &opts.env,
                    diags,
                )
            })
            .collect::<Vec<_>>()
    });
    let mut targets = Vec::with_capacity(concrete.len());
    for (b, (_, inherit_diags)) in built.into_iter().flatten().zip(&mut inherited) {
        diags.extend(std::mem::take(inherit_diags));
        let mut own = b.diags;
        if b.first_is_echo && !diags.is_empty() {
            own.items.remove(0);
        }
        diags.extend(own);
        targets.push(b.target);
    }
    for o in &sets {
        if !concrete.iter().any(|c| o.matches(&c.name.v)) {
            diags.push(
                Diag::new(
                    "mybake::set::no-match",
                    format!("--set: no target matches `{}`", o.pattern),
                )
                .label(o.pattern_span, "matches nothing")
                .help_opt(suggest(
                    &o.pattern,
                    concrete.iter().map(|c| c.name.v.as_str()),
                )),
            );
        }
    }

    reference::check(&targets, &variables, sources, &mut diags);
    // References: deps and groups.
    for t in &targets {
        for (_, dep) in &t.deps {
            if !index.contains_key(&dep.v) {
                diags.push(unknown_target(dep, "target", &index, &templates, &budget));
            }
        }
    }
    for g in &groups {
        for n in &g.targets {
            if !index.contains_key(&n.v)
                && !group_index.contains_key(&n.v)
                && !templates.contains_key(&n.v)
            {
                let d = unknown_target(n, "target or group", &index, &templates, &budget);
                let more = budget.may_suggest(index.len() + group_index.len());
                diags.push(
                    d.help_opt(
                        more.then(|| {
                            suggest(
                                &n.v,
                                index.keys().chain(group_index.keys()).map(String::as_str),
                            )
                        })
                        .flatten(),
                    ),
                );
            }
        }
    }

    let resolved = Resolved {
        cwd: opts.cwd.clone(),
        local_platform: opts.local_platform.clone(),
        variables,
        groups,
        group_index,
        targets,
        index,
        templates,
    };
    // Group cycles, whether or not the group is requested.
    diags.extend(select::group_cycles(&resolved));
    diags.into_result(resolved)
}

/// Whether `name` is a valid target, group or variable name: bake's rule,
/// `[a-zA-Z0-9_-]+` (so a name is safe in a path, a terminal and an
/// image reference).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// The name with control characters escaped, shortened when very long (for
/// messages).
pub(crate) fn shown_name(name: &str) -> String {
    const MAX: usize = 80;
    let cut = if name.len() > MAX {
        let mut end = MAX;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        &name[..end]
    } else {
        name
    };
    let mut out = crate::diag::escape_controls(cut).into_owned();
    if cut.len() < name.len() {
        out.push_str(&format!("… ({} bytes)", name.len()));
    }
    out
}

/// A name that breaks [`valid_name`]; `template`: the matrix (or
/// interpolated) name it was expanded from.
pub(crate) fn bad_name(what: &str, name: &str, span: Span, template: Option<&str>) -> Diag {
    let first_bad = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'));
    let why = match first_bad {
        None => "a name cannot be empty".to_string(),
        Some(c) => format!(
            "`{}` is not allowed in a name",
            crate::diag::escape_controls(&c.to_string())
        ),
    };
    let message = match template {
        Some(t) => format!(
            "invalid {what} name `{}` (from `{}`): {why}",
            shown_name(name),
            shown_name(t)
        ),
        None => format!("invalid {what} name `{}`: {why}", shown_name(name)),
    };
    Diag::new("mybake::resolve::bad-name", message)
        .label(span, "invalid name")
        .help("names use only letters, digits, `_` and `-` (bake's rule)")
}

fn unknown_target(
    n: &Sp<String>,
    what: &str,
    index: &FastMap<String, usize>,
    templates: &BTreeMap<String, Vec<usize>>,
    budget: &interp::Budget,
) -> Diag {
    let d = Diag::new(
        "mybake::resolve::unknown-target",
        format!("unknown {what} `{}`", n.v),
    )
    .label(n.span, format!("no {what} of this name"));
    if !budget.may_suggest(index.len() + templates.len()) {
        return d;
    }
    d.help_opt(suggest(
        &n.v,
        index.keys().chain(templates.keys()).map(String::as_str),
    ))
}

fn describe(bindings: &[(String, Val)]) -> String {
    bindings
        .iter()
        .map(|(k, v)| match v {
            Val::Map(_) => format!("{k}={{{}}}", v.to_text()),
            v => format!("{k}={}", v.to_text()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A target after merging its declarations across files (borrowed from
/// the declaration while there is only one).
#[derive(Debug)]
struct RawTarget<'a> {
    name: Sp<String>,
    inherits: Option<&'a Vec<Sp<String>>>,
    matrix: Option<&'a Sp<Vec<load::target::Axis>>>,
    attrs: Cow<'a, Attrs>,
}

/// One concrete target before inheritance.
#[derive(Debug)]
struct Concrete {
    name: Sp<String>,
    raw: usize,
    bindings: Vec<(String, Val)>,
}

fn merge_targets<'a>(decls: impl Iterator<Item = &'a TargetDecl>) -> Vec<RawTarget<'a>> {
    let mut out: Vec<RawTarget> = Vec::new();
    let mut index: FastMap<&'a str, usize> = FastMap::default();
    for d in decls {
        match index.get(d.name.v.as_str()) {
            Some(&i) => {
                let t = &mut out[i];
                if d.inherits.is_some() {
                    t.inherits = d.inherits.as_ref();
                }
                if d.matrix.is_some() {
                    t.matrix = d.matrix.as_ref();
                }
                t.attrs.to_mut().merge(&d.attrs);
            }
            None => {
                index.insert(&d.name.v, out.len());
                out.push(RawTarget {
                    name: d.name.clone(),
                    inherits: d.inherits.as_ref(),
                    matrix: d.matrix.as_ref(),
                    attrs: Cow::Borrowed(&d.attrs),
                });
            }
        }
    }
    out
}

fn merge_groups<'a>(
    decls: impl Iterator<Item = &'a GroupDecl>,
) -> (Vec<Group>, FastMap<String, usize>) {
    let mut out: Vec<Group> = Vec::new();
    let mut index: FastMap<String, usize> = FastMap::default();
    for d in decls {
        let i = *index.entry(d.name.v.clone()).or_insert_with(|| {
            out.push(Group {
                name: d.name.clone(),
                targets: Vec::new(),
                description: None,
            });
            out.len() - 1
        });
        if let Some(t) = &d.targets {
            out[i].targets = t.clone();
        }
        if let Some(desc) = &d.description {
            out[i].description = Some(desc.v.clone());
        }
    }
    (out, index)
}

/// Most concrete targets one run may have (matrix expansions included):
/// twenty times a 5,000-service monorepo; each costs a few KiB resolved.
pub const MAX_TARGETS: usize = 100_000;

/// Most targets one matrix may expand to.
pub const MAX_EXPANSIONS: usize = 10_000;

fn expand_axes(
    axes: &[load::target::Axis],
    at: Span,
    vars: &Variables,
    builtins: &Builtins,
    sources: &Sources,
    diags: &mut Diagnostics,
) -> Vec<Vec<(String, Val)>> {
    let scope = TargetScope {
        vars,
        builtins,
        bindings: &[],
        target: None,
    };
    let mut all_vals = Vec::new();
    let mut total: usize = 1;
    for (_, values) in axes {
        let mut vals: Vec<Val> = Vec::new();
        for v in values {
            match v {
                load::target::AxisValue::Str(v) => {
                    match interp::interpolate(v, &scope, sources, true) {
                        Ok(Val::List(l)) => vals.extend(l.into_iter().map(Val::Text)),
                        // Null drops out of a list.
                        Ok(Val::Null) => {}
                        Ok(v) => vals.push(v),
                        Err(d) => diags.push(d),
                    }
                }
                load::target::AxisValue::Item(fields) => {
                    let mut out = Vec::with_capacity(fields.v.len());
                    for (k, f) in &fields.v {
                        match interp::interpolate(f, &scope, sources, false) {
                            Ok(Val::Null) => {}
                            Ok(v) => out.push((k.clone(), v.into_text())),
                            Err(d) => diags.push(d),
                        }
                    }
                    vals.push(Val::Map(out));
                }
            }
        }
        total = total.saturating_mul(vals.len());
        all_vals.push(vals);
    }
    if total > MAX_EXPANSIONS {
        diags.push(
            Diag::new(
                "mybake::resolve::matrix-too-large",
                format!(
                    "matrix expands to {} targets, more than {MAX_EXPANSIONS}",
                    if total == usize::MAX {
                        "too many".to_string()
                    } else {
                        total.to_string()
                    }
                ),
            )
            .label(at, "this matrix"),
        );
        return Vec::new();
    }
    // Every combination holds a copy of one value of each axis.
    let bytes = axes
        .iter()
        .zip(&all_vals)
        .map(|((name, _), vals)| {
            let per: usize = vals.iter().map(|v| v.to_text().len() + name.v.len()).sum();
            per.saturating_mul(total / vals.len().max(1))
        })
        .fold(0usize, usize::saturating_add);
    if bytes > interp::MAX_TOTAL_BYTES {
        diags.push(
            Diag::new(
                "mybake::resolve::matrix-too-large",
                format!(
                    "matrix combinations hold more than {} MiB of values",
                    interp::MAX_TOTAL_BYTES >> 20
                ),
            )
            .label(at, "this matrix")
            .help("every expansion gets a copy of its axis values: use shorter values or fewer combinations"),
        );
        return Vec::new();
    }
    let mut combos: Vec<Vec<(String, Val)>> = vec![Vec::new()];
    for ((axis, _), vals) in axes.iter().zip(all_vals) {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                vals.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push((axis.v.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    combos
}

/// Built-in names, computed on first use (git is only run when asked for).
struct Builtins<'a> {
    local_platform: &'a str,
    git: &'a OnceLock<(String, String)>,
    git_dir: &'a Path,
    /// The run's interpolation budget (it travels with the built-ins, which
    /// every target scope has).
    budget: &'a interp::Budget,
    /// The functions expressions may call.
    globals: &'a Arc<crate::expr::Globals>,
}

impl Builtins<'_> {
    fn git(&self) -> &(String, String) {
        self.git.get_or_init(|| {
            // `git -C` fails on a directory that does not exist: no need
            // to start it (the fuzz harness's files live nowhere).
            if !self.git_dir.is_dir() {
                return (String::new(), String::new());
            }
            let out = std::process::Command::new("git")
                .arg("-C")
                .arg(self.git_dir)
                .args(["rev-parse", "HEAD"])
                .stderr(std::process::Stdio::null())
                .output();
            let sha = match out {
                Ok(o) if o.status.success() => {
                    String::from_utf8_lossy(&o.stdout).trim().to_string()
                }
                _ => String::new(),
            };
            let short = sha.chars().take(7).collect();
            (sha, short)
        })
    }
}

pub const BUILTINS: &[&str] = &[
    "MYBAKE_LOCAL_PLATFORM",
    "MYBAKE_TARGET",
    "MYBAKE_GIT_SHA",
    "MYBAKE_GIT_SHORT_SHA",
];

struct TargetScope<'a> {
    vars: &'a Variables,
    builtins: &'a Builtins<'a>,
    bindings: &'a [(String, Val)],
    target: Option<&'a str>,
}

impl Scope for TargetScope<'_> {
    fn lookup(&self, name: &str, at: Span) -> Result<Option<Cow<'_, Val>>, Diag> {
        if let Some((_, v)) = self.bindings.iter().find(|(k, _)| k == name) {
            return Ok(Some(Cow::Borrowed(v)));
        }
        if let Some(v) = self.vars.get(name) {
            return match &v.value {
                Some(val) => Ok(Some(Cow::Borrowed(val))),
                None if v.failed => Ok(Some(Cow::Owned(Val::Text(String::new())))),
                // No value and no default: null, as in bake.
                None => Ok(Some(Cow::Owned(Val::Null))),
            };
        }
        let text = |s: &str| Some(Cow::Owned(Val::Text(s.to_string())));
        Ok(match name {
            "MYBAKE_LOCAL_PLATFORM" => text(self.builtins.local_platform),
            "MYBAKE_TARGET" => match self.target {
                Some(t) => text(t),
                None => {
                    return Err(Diag::new(
                        "mybake::resolve::builtin",
                        "`MYBAKE_TARGET` cannot be used in a target name or matrix",
                    )
                    .label(at, "not available here"))
                }
            },
            "MYBAKE_GIT_SHA" => text(&self.builtins.git().0),
            "MYBAKE_GIT_SHORT_SHA" => text(&self.builtins.git().1),
            _ => None,
        })
    }
    fn budget(&self) -> Option<&interp::Budget> {
        Some(self.builtins.budget)
    }
    fn expr_value(&self, name: &str) -> Option<hcl::Value> {
        if !self.bindings.iter().any(|(k, _)| k == name) {
            if let Some(v) = self.vars.get(name) {
                if let Some(val) = &v.value {
                    return Some(vars::typed_hcl(val, v.ty));
                }
            }
        }
        self.lookup(name, Span::NONE)
            .ok()
            .flatten()
            .map(|v| v.to_hcl())
    }
    fn globals(&self) -> Option<&Arc<crate::expr::Globals>> {
        Some(self.builtins.globals)
    }
    fn names(&self) -> Vec<String> {
        self.bindings
            .iter()
            .map(|(k, _)| k.clone())
            .chain(self.vars.names().map(String::from))
            .chain(BUILTINS.iter().map(|s| s.to_string()))
            .collect()
    }
}

struct Inheritance<'a> {
    raws: &'a [RawTarget<'a>],
    concrete: &'a [Concrete],
    index: &'a FastMap<String, usize>,
    memo: Vec<Option<Attrs>>,
    /// Raw names some target inherits from: only those are memoised.
    parents: FastSet<&'a str>,
    /// Some parent name is a template: memoise everything.
    memo_all: bool,
    stack: Vec<(usize, Span)>,
    /// Membership of `stack`.
    on_stack: Vec<bool>,
    sources: &'a Sources,
    vars: &'a Variables,
    builtins: &'a Builtins<'a>,
    /// `--set` overrides: each target's apply to it as declared, before
    /// the targets inheriting it merge it (bake's order).
    sets: &'a [set::SetOverride],
}

impl Inheritance<'_> {
    /// Whether target `i`'s attributes are kept for the targets inheriting
    /// from it.
    fn memoised(&self, i: usize) -> bool {
        self.memo_all || self.parents.contains(self.concrete[i].name.v.as_str())
    }

    /// The first pass over concrete target `i` (in declaration order): its
    /// parents, in order, with each parent's attributes memoised first
    /// (unknown parents and cycles are reported and left out); a memoised
    /// target's own attributes are memoised too.
    ///
    /// Iterative (a frame per target being prepared, parents before their
    /// children), so a long chain of `inherits` needs no deep recursion;
    /// each target is prepared once.
    fn prepare(&mut self, root: usize, diags: &mut Diagnostics) -> Vec<usize> {
        if self.memo[root].is_some() {
            return Vec::new();
        }
        // (target, next `inherits` entry, parents found so far)
        let mut frames: Vec<(usize, usize, Vec<usize>)> = vec![(root, 0, Vec::new())];
        loop {
            let Some((i, k, out)) = frames.last_mut() else {
                return Vec::new();
            };
            let i = *i;
            let list = self.raws[self.concrete[i].raw]
                .inherits
                .map_or(&[][..], |v| &v[..]);
            if let Some(parent) = list.get(*k) {
                *k += 1;
                let Some(p) = self.parent(i, parent, diags) else {
                    continue;
                };
                if self.memo[p].is_some() {
                    out.push(p);
                } else {
                    self.stack.push((i, parent.span));
                    self.on_stack[i] = true;
                    frames.push((p, 0, Vec::new()));
                }
                continue;
            }
            let Some((i, _, parents)) = frames.pop() else {
                return Vec::new();
            };
            if self.memoised(i) {
                self.memo[i] = Some(self.merged(i, &parents));
            }
            let Some((_, _, out)) = frames.last_mut() else {
                return parents;
            };
            if let Some((s, _)) = self.stack.pop() {
                self.on_stack[s] = false;
            }
            out.push(i);
        }
    }

    /// One `inherits` entry of target `i`: the parent's index, or `None`
    /// (reported) for an unknown parent or one that closes a cycle.
    fn parent(&mut self, i: usize, parent: &Sp<String>, diags: &mut Diagnostics) -> Option<usize> {
        let c = &self.concrete[i];
        let scope = TargetScope {
            vars: self.vars,
            builtins: self.builtins,
            bindings: &c.bindings,
            target: None,
        };
        let pname = match interp::interpolate_text(parent, &scope, self.sources) {
            Ok(v) => v,
            Err(d) => {
                diags.push(d);
                return None;
            }
        };
        let Some(&p) = self.index.get(&pname) else {
            diags.push(
                Diag::new(
                    "mybake::resolve::unknown-target",
                    format!("`{}` inherits from unknown target `{pname}`", c.name.v),
                )
                .label(parent.span, "no target of this name")
                .help_opt(
                    self.builtins
                        .budget
                        .may_suggest(self.index.len())
                        .then(|| suggest(&pname, self.index.keys().map(String::as_str)))
                        .flatten(),
                ),
            );
            return None;
        };
        let on_stack = if self.on_stack[p] {
            self.stack.iter().position(|(s, _)| *s == p)
        } else {
            None
        };
        if p == i || on_stack.is_some() {
            let chain: Vec<(usize, Span)> = on_stack
                .map(|k| self.stack[k..].to_vec())
                .unwrap_or_default();
            let mut names: Vec<String> = chain
                .iter()
                .map(|(s, _)| self.concrete[*s].name.v.clone())
                .collect();
            names.push(c.name.v.clone());
            names.push(pname.clone());
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let mut d = Diag::new(
                "mybake::resolve::inherit-cycle",
                format!("inheritance cycle: {}", crate::diag::elide_path(&names)),
            )
            .label(parent.span, "inherits");
            for (_, span) in chain.iter().take(crate::diag::PATH_NAMES_SHOWN) {
                d = d.label(*span, "inherits");
            }
            diags.push(d);
            return None;
        }
        Some(p)
    }

    /// Attributes of concrete target `i` with its parents' folded in, left
    /// to right, its own next, then the `--set` overrides naming it (after
    /// [`Self::prepare`] gave `parents`).
    fn merged(&self, i: usize, parents: &[usize]) -> Attrs {
        if let Some(m) = &self.memo[i] {
            return m.clone();
        }
        let mut acc = Attrs::new();
        for &p in parents {
            // Every parent met is memoised: its name is one of `parents`,
            // or `memo_all` holds.
            if let Some(m) = &self.memo[p] {
                acc.merge(m);
            }
        }
        acc.merge(&self.raws[self.concrete[i].raw].attrs);
        if !self.sets.is_empty() {
            set::apply_all(self.sets, &self.concrete[i].name.v, &mut acc);
        }
        acc
    }
}

/// Bytes of text in a value.
fn text_bytes(v: &Value) -> usize {
    let mut n = 0;
    let _ = v.any_string(|s| {
        n += s.v.len();
        false
    });
    n
}

/// Fewer targets than this are resolved in one part.
const TARGETS_PER_PART_MIN: usize = 256;

fn interpolate_attrs(
    mut attrs: Attrs,
    scope: &dyn Scope,
    sources: &Sources,
    set_file: Option<crate::source::FileId>,
    diags: &mut Diagnostics,
) -> Attrs {
    // A value from `--set` is never interpolated.
    let templated = |s: &Sp<String>| Some(s.span.file) != set_file && !interp::is_plain(&s.v);
    for (i, def) in ATTRS.iter().enumerate() {
        // Only a value with something to interpolate is changed (so a
        // value shared with a parent or declaration stays shared).
        if !attrs.get(i).is_some_and(|v| v.any_string(templated)) {
            continue;
        }
        let Some(v) = attrs.get_mut(i) else { continue };
        if let Value::List(items) = v {
            // A list variable alone in a list position expands in place.
            let mut out = Vec::with_capacity(items.len());
            for s in items.iter() {
                if !templated(s) {
                    out.push(s.clone());
                    continue;
                }
                match interp::interpolate(s, scope, sources, def.shape == Shape::List) {
                    Ok(Val::List(l)) => out.extend(l.into_iter().map(|t| Sp::new(t, s.span))),
                    // Null drops out of a list.
                    Ok(Val::Null) => {}
                    Ok(v) => out.push(Sp::new(v.into_text(), s.span)),
                    Err(d) => diags.push(d),
                }
            }
            *items = out;
            continue;
        }
        // A key/value entry (`arg`, `label`, `annotation`, `contexts`)
        // that is exactly a null expression is left out.
        if let Value::Map(m) = v {
            let mut dropped = Vec::new();
            for (k, e) in m.values_mut_keyed() {
                if !templated(&e.value) {
                    continue;
                }
                match interp::interpolate(&e.value, scope, sources, false) {
                    Ok(Val::Null) => dropped.push(k.clone()),
                    Ok(val) => e.value.v = val.into_text(),
                    Err(d) => diags.push(d),
                }
            }
            if !dropped.is_empty() {
                *m = std::mem::take(m)
                    .into_iter()
                    .filter(|(k, _)| !dropped.contains(k))
                    .collect();
            }
            continue;
        }
        let mut null = false;
        v.each_string_mut(|s| {
            if !templated(s) {
                return;
            }
            match interp::interpolate(s, scope, sources, false) {
                Ok(Val::Null) => null = true,
                Ok(val) => s.v = val.into_text(),
                Err(d) => diags.push(d),
            }
        });
        // A null scalar leaves the attribute unset; a null property of an
        // object leaves the property out.
        if null {
            match attrs.get_mut(i) {
                Some(Value::Objects(objs)) => {
                    for o in objs.iter_mut() {
                        o.fields.retain(|(_, f)| {
                            !f.v.contains('$') || {
                                !matches!(
                                    interp::interpolate(f, scope, sources, false),
                                    Ok(Val::Null)
                                )
                            }
                        });
                    }
                }
                _ => attrs.remove(i),
            }
        }
    }
    attrs
}

/// The user functions of all files (a later declaration of a name replaces
/// an earlier one), errors in their `result` reported.
fn user_functions(
    files: &[FileDecls],
    sources: &Sources,
    diags: &mut Diagnostics,
) -> Vec<crate::expr::FunctionSpec> {
    let mut decls: Vec<&load::FunctionDecl> = Vec::new();
    for f in files.iter().flat_map(|f| &f.functions) {
        match decls.iter_mut().find(|d| d.name.v == f.name.v) {
            Some(d) => *d = f,
            None => decls.push(f),
        }
    }
    if decls.len() > crate::expr::MAX_USER_FUNCS {
        diags.push(
            Diag::new(
                "mybake::resolve::too-many-functions",
                format!("more than {} user functions", crate::expr::MAX_USER_FUNCS),
            )
            .label(
                decls[crate::expr::MAX_USER_FUNCS].name.span,
                "the limit is passed here",
            ),
        );
    }
    let specs: Vec<crate::expr::FunctionSpec> = decls
        .iter()
        .map(|d| crate::expr::FunctionSpec {
            name: d.name.v.clone(),
            params: d.params.iter().map(|p| p.v.clone()).collect(),
            variadic: d.variadic.as_ref().map(|p| p.v.clone()),
            result: d.result.as_ref().map_or_else(String::new, |r| r.v.clone()),
            at: d.result.as_ref().map_or_else(
                || sources.location(d.name.span),
                |r| sources.location(r.span),
            ),
        })
        .collect();
    for e in crate::expr::Globals::new(&specs).1 {
        let d = decls[e.function];
        if let Some(r) = &d.result {
            diags.push(
                Diag::new(
                    e.error.code,
                    format!("function `{}`: {}", d.name.v, e.error.message),
                )
                .label(
                    interp::inner_span(sources, r, e.error.offset, e.error.len.max(1)),
                    e.error.label,
                )
                .help_opt(e.error.help),
            );
        }
    }
    specs
}

const NETWORKS: &[&str] = &["default", "none", "host"];

/// One target resolved on its own, with the diagnostics found on the way.
struct Built {
    target: Target,
    diags: Diagnostics,
    /// The first diagnostic is an empty boolean's, reported because nothing
    /// was reported before it for this target; the run drops it when
    /// something was reported before it in the run (see [`finish`]).
    first_is_echo: bool,
}

/// Validate values and make paths absolute. `diags`: what was reported for
/// this target so far.
#[allow(clippy::too_many_arguments)]
fn finish(
    name: Sp<String>,
    template: Option<String>,
    mut attrs: Attrs,
    decl_dir: &Path,
    sources: &Sources,
    cwd: &Path,
    env: &HashMap<String, String>,
    mut diags: Diagnostics,
) -> Built {
    let mut first_is_echo = false;
    let dir_of = |span: Span| -> &Path { sources.get(span.file).map_or(cwd, |f| &f.dir) };
    let home = env.get("HOME").map_or("", String::as_str);
    let abs = |s: &Sp<String>| -> String {
        let p = if let Some(rest) = s.v.strip_prefix("~/") {
            Path::new(home).join(rest)
        } else {
            load::absolute(dir_of(s.span), Path::new(&s.v))
        };
        p.to_string_lossy().into_owned()
    };
    // Which values name files: a `contexts` value that is not a target, an
    // image or a URL; an `output`/`secret` path property.
    let is_dir = |s: &str| matches!(spec::ContextSource::of(s), spec::ContextSource::Dir(_));
    let is_path = |props: &[&str], k: &str, s: &Sp<String>| props.contains(&k) && s.v != "-";
    for (i, def) in ATTRS.iter().enumerate() {
        let Some(v) = attrs.get(i) else { continue };
        // Values are only taken to change when they have a path in them
        // (so a value shared with a parent or declaration stays shared).
        let has_path = match (def.paths, v) {
            (Paths::No, _) => false,
            (Paths::Value, Value::Str(_)) => true,
            (Paths::ContextValue, Value::Map(m)) => m.values().any(|e| is_dir(&e.value.v)),
            (Paths::Props(props), Value::Objects(objs)) => objs
                .iter()
                .any(|o| o.fields.iter().any(|(k, s)| is_path(props, k, s))),
            _ => false,
        };
        if has_path {
            match (def.paths, attrs.get_mut(i)) {
                (Paths::Value, Some(Value::Str(s))) => s.v = abs(s),
                (Paths::ContextValue, Some(Value::Map(m))) => {
                    for e in m.values_mut() {
                        if is_dir(&e.value.v) {
                            e.value.v = abs(&e.value);
                        }
                    }
                }
                (Paths::Props(props), Some(Value::Objects(objs))) => {
                    for o in objs {
                        for (k, s) in o.fields.iter_mut() {
                            if is_path(props, k, s) {
                                s.v = abs(s);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        let Some(v) = attrs.get(i) else { continue };
        if def.shape == Shape::Bool {
            if let Value::Str(s) = v {
                // An empty value after an earlier error is that error's
                // echo (a variable whose value was rejected). Only this
                // target's diagnostics are known here: when nothing came
                // before, the caller decides ([`Built::first_is_echo`]).
                if s.v != "true" && s.v != "false" && (!s.v.is_empty() || diags.is_empty()) {
                    first_is_echo |= s.v.is_empty();
                    diags.push(
                        Diag::new(
                            "mybake::resolve::bad-value",
                            format!("`{}` must be true or false, found {:?}", def.name, s.v),
                        )
                        .label(s.span, "not a boolean"),
                    );
                }
            }
        }
    }
    if !attrs.contains(A::Context.index()) {
        attrs.set(
            A::Context.index(),
            Value::Str(Sp::none(decl_dir.to_string_lossy().into_owned())),
        );
    }
    if !attrs.contains(A::Dockerfile.index()) {
        attrs.set(
            A::Dockerfile.index(),
            Value::Str(Sp::none("Dockerfile".into())),
        );
    }
    let mut t = Target {
        is_abstract: name.v.starts_with('_'),
        name,
        template,
        attrs,
        deps: Vec::new(),
        spec: spec::Spec::default(),
    };
    for p in t.platforms() {
        if let Err(d) = platform::validate(&p.v, p.span) {
            diags.push(d);
        }
    }
    let mut seen: Vec<&str> = Vec::new();
    for p in t.platforms() {
        if seen.contains(&p.v.as_str()) {
            diags.push(
                Diag::new(
                    "mybake::resolve::duplicate-platform",
                    format!("platform `{}` is listed twice in `{}`", p.v, t.name.v),
                )
                .label(p.span, "again here"),
            );
        }
        seen.push(&p.v);
    }
    t.spec = spec::Spec::of(&t, &mut diags);
    if let Some(n) = t.str(A::Network) {
        if !NETWORKS.contains(&n.v.as_str()) {
            diags.push(
                Diag::new(
                    "mybake::resolve::bad-value",
                    format!("unknown network mode `{}`", n.v),
                )
                .label(n.span, "unknown")
                .help(format!("use one of: {}", NETWORKS.join(", "))),
            );
        }
    }
    let deps: Vec<(String, Sp<String>)> = t
        .spec
        .contexts
        .iter()
        .filter_map(|c| match &c.source {
            spec::ContextSource::Target(d) => Some((c.name.clone(), Sp::new(d.clone(), c.span))),
            _ => None,
        })
        .collect();
    t.deps = deps;
    Built {
        target: t,
        diags,
        first_is_echo,
    }
}

#[cfg(test)]
mod tests;

/// Helpers for other stages' unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    pub(crate) fn run(text: &str) -> Result<super::Resolved, crate::diag::Diagnostics> {
        super::tests::run(text, &[], &[])
    }
}
