//! The typed values of a resolved target: `output`, `secret`, `ssh`,
//! `attest`, `cache-from` and `cache-to`, parsed and checked once at the
//! end of resolve ([`Spec::of`]). Invalid values are located diagnostics
//! (exit 2) there, so `print`, `plan` and `build` reject the same files;
//! exec and publish read only these types and never parse configuration
//! strings. (`print` renders the attribute values, not these.)

use std::path::PathBuf;

use crate::attrs::A;
use crate::diag::{suggest, Diag, Diagnostics};
use crate::source::{Sp, Span};
use crate::value::Obj;

use super::cache::CacheSpec;
use super::Target;

/// The typed values of one target.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// `output` entries, in the order written.
    pub outputs: Vec<Output>,
    pub secrets: Vec<Secret>,
    pub ssh: Vec<Ssh>,
    /// `attest` entries, in the order written.
    pub attest: Vec<Attest>,
    pub cache_from: Vec<CacheSpec>,
    pub cache_to: Vec<CacheSpec>,
    /// `contexts` entries, by name.
    pub contexts: Vec<NamedContext>,
}

/// One `contexts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedContext {
    pub name: String,
    pub source: ContextSource,
    /// The value.
    pub span: Span,
}

/// What a named context is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextSource {
    /// `target:NAME`: another target's result.
    Target(String),
    /// A URL (`docker-image://…`, `https://…`, `git@…`), given to the
    /// builder as written.
    Remote(String),
    /// A local directory (absolute).
    Dir(PathBuf),
}

impl ContextSource {
    /// How resolve reads a `contexts` value (the same rule decides which
    /// values are paths made absolute).
    pub fn of(value: &str) -> ContextSource {
        if let Some(t) = value.strip_prefix("target:") {
            ContextSource::Target(t.to_string())
        } else if value.contains("://") || value.starts_with("git@") {
            ContextSource::Remote(value.to_string())
        } else {
            ContextSource::Dir(PathBuf::from(value))
        }
    }
}

/// One `output`, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub kind: OutputKind,
    /// The `output` node.
    pub span: Span,
}

/// An output type with its checked properties (other properties are
/// accepted and ignored, as before).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputKind {
    /// `registry` (or bake's `image`): pushed by tag.
    Registry,
    /// `docker`: loaded into the local Engine.
    Docker,
    /// `oci dest=… [tar=true|false]`: an OCI image layout, a tarball
    /// unless `tar=false`.
    Oci { dest: Sp<PathBuf>, tar: bool },
    /// `local dest=…`: the filesystem as a directory tree.
    Local { dest: Sp<PathBuf> },
    /// `tar dest=…`: the filesystem as a tarball.
    Tar { dest: Sp<PathBuf> },
    /// `cacheonly`: built for the cache, exported nowhere.
    CacheOnly,
}

impl OutputKind {
    /// The type as mybake names it.
    pub fn type_name(&self) -> &'static str {
        match self {
            OutputKind::Registry => "registry",
            OutputKind::Docker => "docker",
            OutputKind::Oci { .. } => "oci",
            OutputKind::Local { .. } => "local",
            OutputKind::Tar { .. } => "tar",
            OutputKind::CacheOnly => "cacheonly",
        }
    }
    /// The destination of a file output.
    pub fn dest(&self) -> Option<&Sp<PathBuf>> {
        match self {
            OutputKind::Oci { dest, .. }
            | OutputKind::Local { dest }
            | OutputKind::Tar { dest } => Some(dest),
            _ => None,
        }
    }
}

/// One `secret id=… src=…|env=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Secret {
    pub id: Sp<String>,
    pub source: SecretFrom,
}

/// Where a secret's value is read from when the build asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretFrom {
    /// `src=`: a file (absolute path).
    File(Sp<PathBuf>),
    /// `env=`: an environment variable.
    Env(Sp<String>),
}

/// One `ssh` entry: `ID` (the user's agent, `$SSH_AUTH_SOCK`) or
/// `ID=PATH[,PATH…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ssh {
    pub id: String,
    /// Empty: the user's agent.
    pub paths: Vec<PathBuf>,
    pub span: Span,
}

impl Ssh {
    /// The agent socket this entry forwards: its first path, else the
    /// user's agent (`None` when that is not set).
    pub fn socket(&self, auth_sock: Option<&std::path::Path>) -> Option<PathBuf> {
        match self.paths.first() {
            Some(p) => Some(p.clone()),
            None => auth_sock.map(std::path::Path::to_path_buf),
        }
    }
}

/// One `attest TYPE [key=value…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attest {
    pub kind: AttestKind,
    /// Every property but `type`, in the order written.
    pub props: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttestKind {
    Provenance,
    Sbom,
}

impl AttestKind {
    pub fn name(self) -> &'static str {
        match self {
            AttestKind::Provenance => "provenance",
            AttestKind::Sbom => "sbom",
        }
    }
}

const OUTPUT_TYPES: &[&str] = &[
    "registry",
    "image",
    "docker",
    "oci",
    "local",
    "tar",
    "cacheonly",
];
const ATTEST_TYPES: &[&str] = &["provenance", "sbom"];

impl Spec {
    /// The typed values of `t` (attributes interpolated, paths absolute);
    /// problems go to `diags` and the value is left out.
    pub fn of(t: &Target, diags: &mut Diagnostics) -> Spec {
        let mut spec = Spec::default();
        check_types(t, A::Output, OUTPUT_TYPES, diags);
        check_types(t, A::Attest, ATTEST_TYPES, diags);
        for o in t.objects(A::Output) {
            if let Some(out) = output(t, o, diags) {
                spec.outputs.push(out);
            }
        }
        for s in t.objects(A::Secret) {
            let source = match (s.get("src"), s.get("env")) {
                (Some(p), None) => Some(SecretFrom::File(Sp::new(PathBuf::from(&p.v), p.span))),
                (None, Some(e)) => Some(SecretFrom::Env(e.clone())),
                _ => {
                    diags.push(
                        Diag::new(
                            "mybake::resolve::secret-source",
                            format!(
                                "secret of `{}` needs exactly one of `src=` or `env=`",
                                t.name.v
                            ),
                        )
                        .label(s.span, "here"),
                    );
                    None
                }
            };
            // `id` is required by the loader.
            if let (Some(source), Some(id)) = (source, s.get("id")) {
                spec.secrets.push(Secret {
                    id: id.clone(),
                    source,
                });
            }
        }
        for s in t.list(A::Ssh) {
            let (id, paths) = match s.v.split_once('=') {
                Some((id, paths)) => (id, paths.split(',').map(PathBuf::from).collect()),
                None => (s.v.as_str(), Vec::new()),
            };
            let empty_path = paths.iter().any(|p: &PathBuf| p.as_os_str().is_empty());
            if id.is_empty() || empty_path {
                diags.push(
                    Diag::new(
                        "mybake::resolve::bad-value",
                        format!(
                            "ssh {:?} of `{}`: {}",
                            crate::diag::escape_controls(&s.v),
                            t.name.v,
                            if id.is_empty() {
                                "the id is empty"
                            } else {
                                "a path is empty"
                            }
                        ),
                    )
                    .label(s.span, "here")
                    .help("write `ID` (your SSH agent) or `ID=/path/to/agent.sock`"),
                );
                continue;
            }
            spec.ssh.push(Ssh {
                id: id.to_string(),
                paths,
                span: s.span,
            });
        }
        for o in t.objects(A::Attest) {
            let kind = match o.get("type").map(|s| s.v.as_str()) {
                Some("provenance") => AttestKind::Provenance,
                Some("sbom") => AttestKind::Sbom,
                // Reported by `check_types`.
                _ => continue,
            };
            spec.attest.push(Attest {
                kind,
                props: o
                    .fields
                    .iter()
                    .filter(|(k, _)| k != "type")
                    .map(|(k, v)| (k.clone(), v.v.clone()))
                    .collect(),
            });
        }
        spec.cache_from = cache(t, A::CacheFrom, diags);
        spec.cache_to = cache(t, A::CacheTo, diags);
        if let Some(m) = t.get(A::Contexts).and_then(crate::value::Value::as_map) {
            spec.contexts = m
                .iter()
                .map(|(name, e)| NamedContext {
                    name: name.clone(),
                    source: ContextSource::of(&e.value.v),
                    span: e.value.span,
                })
                .collect();
        }
        spec
    }

    /// Whether the target has an `output "registry"` (or `image`).
    pub fn pushes(&self) -> bool {
        self.outputs.iter().any(|o| o.kind == OutputKind::Registry)
    }
}

fn output(t: &Target, o: &Obj, diags: &mut Diagnostics) -> Option<Output> {
    let ty = o.get("type").map(|s| s.v.as_str()).unwrap_or("");
    let dest = o.get("dest").map(|d| Sp::new(PathBuf::from(&d.v), d.span));
    let needs_dest = matches!(ty, "oci" | "local" | "tar");
    if needs_dest && dest.is_none() {
        diags.push(
            Diag::new(
                "mybake::resolve::missing-dest",
                format!("output `{ty}` of `{}` needs `dest=`", t.name.v),
            )
            .label(o.span, "no destination"),
        );
    }
    // Issue 12 defect 2: `tar` is a boolean, checked here so `print`,
    // `plan` and `build` reject the same files.
    let mut tar = true;
    if let Some(v) = o.get("tar").filter(|_| ty == "oci") {
        match v.v.as_str() {
            "true" => {}
            "false" => tar = false,
            _ => {
                diags.push(
                    Diag::new(
                        "mybake::resolve::bad-value",
                        format!(
                            "output `oci` of `{}`: `tar` must be true or false, not {:?}",
                            t.name.v,
                            crate::diag::escape_controls(&v.v)
                        ),
                    )
                    .label(v.span, "not a boolean"),
                );
                return None;
            }
        }
    }
    let kind = match (ty, dest) {
        ("registry" | "image", _) => OutputKind::Registry,
        ("docker", _) => OutputKind::Docker,
        ("cacheonly", _) => OutputKind::CacheOnly,
        ("oci", Some(dest)) => OutputKind::Oci { dest, tar },
        ("local", Some(dest)) => OutputKind::Local { dest },
        ("tar", Some(dest)) => OutputKind::Tar { dest },
        // Reported above or by `check_types`.
        _ => return None,
    };
    Some(Output { kind, span: o.span })
}

fn cache(t: &Target, a: A, diags: &mut Diagnostics) -> Vec<CacheSpec> {
    let mut out = Vec::new();
    for s in t.list(a) {
        let spec = CacheSpec::parse(&s.v);
        if spec.kind.is_empty() {
            diags.push(
                Diag::new(
                    "mybake::resolve::bad-value",
                    format!(
                        "`{}` value {:?} of `{}` names no `type=`",
                        a.def().name,
                        crate::diag::escape_controls(&s.v),
                        t.name.v
                    ),
                )
                .label(s.span, "no type")
                .help("write `type=registry,ref=…` (or a bare image reference), `type=inline`, `type=local,src=…`, …"),
            );
            continue;
        }
        out.push(spec);
    }
    out
}

fn check_types(t: &Target, a: A, known: &[&str], diags: &mut Diagnostics) {
    for o in t.objects(a) {
        if let Some(ty) = o.get("type") {
            if !known.contains(&ty.v.as_str()) {
                diags.push(
                    Diag::new(
                        "mybake::resolve::bad-value",
                        format!("unknown {} type `{}`", a.def().name, ty.v),
                    )
                    .label(ty.span, "unknown type")
                    .help_opt(
                        suggest(&ty.v, known.iter().copied())
                            .or_else(|| Some(format!("use one of: {}", known.join(", ")))),
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn spec(body: &str) -> Spec {
        let r = crate::resolve::tests_support::run(&format!("target \"x\" {{\n{body}\n}}\n"))
            .unwrap_or_else(|d| panic!("{body}: {d:?}"));
        r.targets[r.index["x"]].spec.clone()
    }

    fn errors(body: &str) -> Vec<(String, String)> {
        let text = format!("target \"x\" {{\n{body}\n}}\n");
        match crate::resolve::tests_support::run(&text) {
            Ok(_) => panic!("{body}: accepted"),
            Err(d) => d
                .items
                .iter()
                .map(|d| {
                    let span = d.labels[0].0;
                    (
                        d.message.clone(),
                        text[span.start as usize..span.end as usize].to_string(),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn outputs() {
        let s = spec(
            "output \"registry\"\noutput \"image\"\noutput \"docker\"\noutput \"cacheonly\"\noutput \"oci\" dest=\"o.tar\"\noutput \"oci\" dest=\"lay\" tar=false\noutput \"local\" dest=\"out\"\noutput \"tar\" dest=\"t.tar\"",
        );
        let kinds: Vec<_> = s.outputs.iter().map(|o| o.kind.type_name()).collect();
        assert_eq!(
            kinds,
            [
                "registry",
                "registry",
                "docker",
                "cacheonly",
                "oci",
                "oci",
                "local",
                "tar"
            ]
        );
        assert!(s.pushes());
        assert!(
            matches!(&s.outputs[4].kind, OutputKind::Oci { dest, tar: true } if dest.v == Path::new("/w/o.tar"))
        );
        assert!(matches!(
            &s.outputs[5].kind,
            OutputKind::Oci { tar: false, .. }
        ));
        assert_eq!(s.outputs[6].kind.dest().unwrap().v, PathBuf::from("/w/out"));
        assert!(!spec("output \"docker\"").pushes());
    }

    #[test]
    fn secrets_ssh_attest_cache() {
        let s = spec(
            "secret id=\"a\" src=\"f\"\nsecret id=\"b\" env=\"B\"\nssh \"default\" \"k=/s1,/s2\"\nattest \"provenance\" mode=\"max\"\nattest \"sbom\"\ncache-from \"user/app:cache\" \"type=local,src=c\"\ncache-to \"type=inline\"",
        );
        assert_eq!(s.secrets[0].id.v, "a");
        assert!(matches!(&s.secrets[0].source, SecretFrom::File(p) if p.v == Path::new("/w/f")));
        assert!(matches!(&s.secrets[1].source, SecretFrom::Env(e) if e.v == "B"));
        assert_eq!(s.ssh[0].id, "default");
        assert!(s.ssh[0].paths.is_empty());
        assert_eq!(
            s.ssh[0].socket(Some(Path::new("/agent"))),
            Some("/agent".into())
        );
        assert_eq!(s.ssh[0].socket(None), None);
        assert_eq!(s.ssh[1].paths, [PathBuf::from("/s1"), PathBuf::from("/s2")]);
        assert_eq!(s.ssh[1].socket(None), Some("/s1".into()));
        assert_eq!(s.attest[0].kind, AttestKind::Provenance);
        assert_eq!(s.attest[0].props, [("mode".to_string(), "max".to_string())]);
        assert_eq!(s.attest[1].kind, AttestKind::Sbom);
        assert!(s.attest[1].props.is_empty());
        assert_eq!(s.cache_from[0].kind, "registry");
        assert_eq!(s.cache_from[1].kind, "local");
        assert_eq!(s.cache_to[0].kind, "inline");
        let c = spec("contexts {\n img \"docker-image://r/i:1\"\n g \"git@github.com:o/r.git\"\n dir \"assets\"\n}")
            .contexts;
        let c: Vec<_> = c.iter().map(|c| (c.name.as_str(), &c.source)).collect();
        assert_eq!(
            ContextSource::of("target:y"),
            ContextSource::Target("y".into())
        );
        assert_eq!(
            c,
            [
                ("dir", &ContextSource::Dir("/w/assets".into())),
                ("g", &ContextSource::Remote("git@github.com:o/r.git".into())),
                ("img", &ContextSource::Remote("docker-image://r/i:1".into())),
            ]
        );
    }

    #[test]
    fn invalid_values_are_located() {
        let e = errors("output \"oci\" dest=\"o\" tar=\"maybe\"");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].1, "\"maybe\"");
        let e = errors("output \"tar\"");
        assert!(e[0].0.contains("needs `dest=`"), "{e:?}");
        let e = errors("output \"ftp\"");
        assert_eq!(e[0].1, "\"ftp\"");
        let e = errors("attest \"sbomb\"");
        assert!(e[0].0.contains("unknown attest type"), "{e:?}");
        let e = errors("secret id=\"a\" src=\"f\" env=\"E\"");
        assert!(e[0].0.contains("exactly one"), "{e:?}");
        let e = errors("ssh \"=/sock\" \"k=\"");
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(e[0].1, "\"=/sock\"");
        assert!(e[1].0.contains("a path is empty"), "{e:?}");
        let e = errors("cache-from \"ref=r/c:x,mode=max\"");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].0.contains("names no `type=`"), "{e:?}");
        assert_eq!(e[0].1, "\"ref=r/c:x,mode=max\"");
    }
}
