//! From a resolved target and a platform to a BuildKit solve request and
//! the session that serves its files and secrets.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use mybake_buildkit::filesend::{FileSendService, Target as SendTarget};
use mybake_buildkit::filesync::{FileSyncService, LocalDir};
use mybake_buildkit::secrets::{SecretSource, SecretsService};
use mybake_buildkit::{CacheEntry, Exporter, SolveRequest};

use crate::attrs::{Reach, A};
use crate::resolve::cache::CacheSpec;
use crate::resolve::spec::{ContextSource, SecretFrom};
use crate::resolve::Target;
use crate::value::Value;

/// Where a pushed-by-digest result goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTo {
    /// Repository, e.g. `localhost:5000/app`.
    pub repository: String,
    pub insecure: bool,
}

/// Everything one solve needs besides the client.
pub struct NodeRequest {
    pub request: SolveRequest,
    pub dirs: Vec<(String, PathBuf)>,
    pub secrets: Vec<(String, SecretSource)>,
    /// SSH agents to forward: id → socket.
    pub ssh: Vec<(String, PathBuf)>,
    /// Where the daemon streams file exports back (exporter index →
    /// staging path), served by the session's FileSend.
    pub files: Vec<(u32, SendTarget)>,
    /// Keeps a generated Dockerfile directory alive for the solve.
    pub _inline: Option<tempfile::TempDir>,
}

impl NodeRequest {
    /// The session services for this solve.
    pub fn session(&self) -> Result<mybake_buildkit::session::Session, String> {
        let dirs: Vec<(String, LocalDir)> = self
            .dirs
            .iter()
            .map(|(n, p)| (n.clone(), LocalDir::new(p.clone())))
            .collect();
        // A stable shared key per context directory lets BuildKit reuse its
        // copy of the local dirs from earlier runs and request only files
        // whose metadata changed (buildx does the same).
        let key = self
            .dirs
            .first()
            .map(|(_, p)| stable_hash(&p.to_string_lossy()))
            .unwrap_or_default();
        let mut b = mybake_buildkit::session::Session::builder()
            .shared_key(format!("mybake-{key:016x}"))
            .add_service(FileSyncService::new(dirs).into_server());
        let secrets =
            SecretsService::new(self.secrets.clone()).map_err(|e| format!("secret: {e}"))?;
        b = b.add_service(secrets.into_server());
        let auth = mybake_buildkit::auth::AuthService::from_env()
            .unwrap_or_else(|_| mybake_buildkit::auth::AuthService::anonymous());
        b = b.add_service(auth.into_server());
        if !self.ssh.is_empty() {
            b = b
                .add_service(mybake_buildkit::ssh::SshService::new(self.ssh.clone()).into_server());
        }
        if !self.files.is_empty() {
            b = b.add_service(FileSendService::new(self.files.clone()).into_server());
        }
        Ok(b.build())
    }
}

/// FNV-1a: stable across builds and platforms (unlike `DefaultHasher`).
pub fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Repository part of an image reference as written (`r/app:tag` →
/// `r/app`), by the one reference parser ([`crate::oci::reference`]). Tags
/// are checked at resolve; a text that is no reference is returned whole.
pub fn repository_of(reference: &str) -> String {
    crate::oci::reference::parse(reference)
        .map(|r| r.name())
        .unwrap_or_else(|_| reference.to_string())
}

/// Registry host of a reference (`localhost:5000/app` → `localhost:5000`,
/// `library/app` → `docker.io`).
pub fn registry_of(reference: &str) -> String {
    crate::oci::reference::parse(reference)
        .map(|r| r.registry().to_string())
        .unwrap_or_else(|_| "docker.io".to_string())
}

/// Plain-HTTP registries: loopback, plus those the user marks insecure
/// (`MYBAKE_INSECURE_REGISTRIES`), by the one rule publish also uses.
pub fn is_insecure(host: &str, extra: &[String]) -> bool {
    crate::oci::is_plain_http(host, extra)
}

/// Options of the run that change requests.
#[derive(Debug, Clone, Default)]
pub struct RequestOptions {
    pub no_cache: bool,
    /// Record each solve in the builder's build history (`--history`).
    pub history: bool,
    pub pull: bool,
    /// `$SSH_AUTH_SOCK`, for `ssh "default"`.
    pub ssh_auth_sock: Option<PathBuf>,
    /// File exports per target name (requested targets with `local`,
    /// `tar`, `oci` or `docker` outputs).
    pub files: HashMap<String, Vec<FileExport>>,
    /// `SOURCE_DATE_EPOCH` and `--locked` pins ([`crate::repro::apply`]).
    pub source_date_epoch: Option<u64>,
    pub pins: Option<std::sync::Arc<crate::lock::Pins>>,
    /// The run's attestation settings (`--provenance`, `--sbom`).
    pub attest: crate::build::attest::AttestRun,
}

/// What a file exporter streams back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileExportKind {
    /// The result's filesystem as a tree (BuildKit `local` exporter).
    Local,
    /// The result's filesystem as a tarball (`tar` exporter).
    Tar,
    /// An OCI image layout tarball (`oci` exporter), merged later.
    Oci,
}

/// One file exporter of a target: each platform's solve streams its result
/// into the target's staging directory `dir` (see [`FileExport::path_for`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileExport {
    pub kind: FileExportKind,
    pub dir: PathBuf,
}

impl FileExport {
    /// Where `platform`'s result goes: `DIR/linux_amd64` (local),
    /// `DIR/linux_amd64.tar` (tar), `DIR/linux_amd64.oci.tar` (oci).
    pub fn path_for(&self, platform: &str) -> PathBuf {
        let p = platform_dir(platform);
        match self.kind {
            FileExportKind::Local => self.dir.join(p),
            FileExportKind::Tar => self.dir.join(format!("{p}.tar")),
            FileExportKind::Oci => self.dir.join(format!("{p}.oci.tar")),
        }
    }

    fn exporter(&self) -> (Exporter, bool) {
        match self.kind {
            FileExportKind::Local => (Exporter::new("local"), true),
            FileExportKind::Tar => (Exporter::new("tar"), false),
            FileExportKind::Oci => (Exporter::new("oci").attr("tar", "true"), false),
        }
    }
}

/// The `annotation` entries BuildKit writes into the image manifest of
/// `t` built for `platform`: `manifest:` keys (with a platform selector,
/// only when it selects `platform`) and un-prefixed keys, as bake sends
/// them, as exporter attributes `annotation-manifest.KEY`. The `index:` and
/// `manifest-descriptor:` ones are the publish stage's; a key that does not
/// parse is reported there.
pub fn manifest_annotations(t: &Target, platform: &str) -> Vec<(String, String)> {
    use crate::oci::annotation::{AnnotationKey, AnnotationLevel};
    let Some(map) = t.get(A::Annotation).and_then(crate::value::Value::as_map) else {
        return Vec::new();
    };
    let this = crate::oci::Platform::parse(platform).ok();
    map.iter()
        .filter_map(|(k, e)| {
            let key = AnnotationKey::parse(k).ok()?;
            if !matches!(key.level, None | Some(AnnotationLevel::Manifest)) {
                return None;
            }
            let selected = key.platforms.is_empty()
                || this
                    .as_ref()
                    .is_some_and(|p| key.platforms.iter().any(|s| s.matches(p)));
            selected.then(|| {
                (
                    format!("annotation-manifest.{}", key.key),
                    e.value.v.clone(),
                )
            })
        })
        .collect()
}

/// The per-platform directory name buildx uses (`linux/arm/v7` →
/// `linux_arm_v7`), from the normalized platform.
pub fn platform_dir(platform: &str) -> String {
    let p = crate::oci::Platform::parse(platform)
        .map(|p| p.to_string())
        .unwrap_or_else(|_| platform.to_string());
    p.replace('/', "_")
}

/// The SSH agents of `t`'s `ssh` entries: id → socket (an entry without
/// a path forwards the user's agent, `auth_sock`).
pub fn ssh_agents(t: &Target, auth_sock: Option<&Path>) -> Result<Vec<(String, PathBuf)>, String> {
    t.spec
        .ssh
        .iter()
        .map(|s| match s.socket(auth_sock) {
            Some(p) => Ok((s.id.clone(), p)),
            None => Err(format!(
                "ssh `{}` forwards your SSH agent, but SSH_AUTH_SOCK is not set",
                s.id
            )),
        })
        .collect()
}

/// A dependency's result for this platform, as a `target:` context gets it.
#[derive(Debug, Clone)]
pub enum DepResult {
    /// Pushed by digest: `repo@digest`, read back from the registry.
    Image(String),
    /// Built on the same builder node: its LLB, passed as a frontend input
    /// (see [`super::LlbInput`]).
    Llb(std::sync::Arc<super::LlbInput>),
}

/// Build the request for `t` on `platform`. `deps` maps context names to
/// dependencies' results for this platform.
pub fn build(
    t: &Target,
    platform: &str,
    deps: &HashMap<String, DepResult>,
    push: Option<&PushTo>,
    opts: &RequestOptions,
) -> Result<NodeRequest, String> {
    let mut attrs: HashMap<String, String> = HashMap::new();
    let mut dirs: Vec<(String, PathBuf)> = Vec::new();
    let context = t.context_dir();
    dirs.push(("context".into(), context.clone()));
    let mut inline = None;
    if let Some(text) = t.str(A::DockerfileInline) {
        let dir = tempfile::Builder::new()
            .prefix("mybake-dockerfile")
            .tempdir()
            .map_err(|e| format!("temporary Dockerfile: {e}"))?;
        std::fs::write(dir.path().join("Dockerfile"), text.v.as_bytes())
            .map_err(|e| format!("temporary Dockerfile: {e}"))?;
        dirs.push(("dockerfile".into(), dir.path().to_path_buf()));
        attrs.insert("filename".into(), "Dockerfile".into());
        inline = Some(dir);
    } else {
        let df = t
            .str(A::Dockerfile)
            .map(|s| s.v.clone())
            .unwrap_or_else(|| "Dockerfile".into());
        let path = crate::load::absolute(&context, Path::new(&df));
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| context.clone());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "Dockerfile".into());
        dirs.push(("dockerfile".into(), dir));
        attrs.insert("filename".into(), name);
    }
    attrs.insert("platform".into(), platform.into());
    // Pass-through attributes: the table says which frontend option each
    // one is (`stage` → `target`, `arg` → `build-arg:K`, ...).
    for (i, def) in crate::attrs::ATTRS.iter().enumerate() {
        let Some(v) = t.attrs.get(i) else {
            continue;
        };
        match (def.reach, v) {
            (Reach::Frontend(key), Value::Str(s)) => {
                attrs.insert(key.into(), s.v.clone());
            }
            (Reach::Frontend(key), Value::List(l)) => {
                let joined: Vec<&str> = l.iter().map(|s| s.v.as_str()).collect();
                attrs.insert(key.into(), joined.join(","));
            }
            (Reach::FrontendPrefix(prefix), Value::Map(m)) => {
                for (k, e) in m {
                    attrs.insert(format!("{prefix}{k}"), e.value.v.clone());
                }
            }
            _ => {}
        }
    }
    if opts.no_cache || t.bool(A::NoCache) == Some(true) {
        attrs.insert("no-cache".into(), String::new());
    } else if !t.list(A::NoCacheFilter).is_empty() {
        attrs.insert(
            "no-cache".into(),
            t.list(A::NoCacheFilter)
                .iter()
                .map(|s| s.v.as_str())
                .collect::<Vec<_>>()
                .join(","),
        );
    }
    if opts.pull || t.bool(A::Pull) == Some(true) {
        attrs.insert("image-resolve-mode".into(), "pull".into());
    }
    let mut entitlements = Vec::new();
    if let Some(n) = t.str(A::Network) {
        if n.v != "default" {
            attrs.insert("force-network-mode".into(), n.v.clone());
            if n.v == "host" {
                entitlements.push("network.host".to_string());
            }
        }
    }
    let mut frontend_inputs = HashMap::new();
    for c in &t.spec.contexts {
        let name = &c.name;
        match &c.source {
            ContextSource::Target(_) => {
                match deps
                    .get(name)
                    .ok_or_else(|| format!("context `{name}`: dependency result missing"))?
                {
                    DepResult::Image(r) => {
                        attrs.insert(format!("context:{name}"), format!("docker-image://{r}"));
                    }
                    DepResult::Llb(l) => l.input.bind(name, &mut attrs, &mut frontend_inputs),
                }
            }
            ContextSource::Remote(url) => {
                attrs.insert(format!("context:{name}"), url.clone());
            }
            ContextSource::Dir(dir) => {
                let local = format!("ctx-{name}");
                attrs.insert(format!("context:{name}"), format!("local:{local}"));
                dirs.push((local, dir.clone()));
            }
        }
    }
    // The target's `attest`, the run's flags and the default provenance.
    let files = opts.files.get(&t.name.v).map_or(&[][..], Vec::as_slice);
    attrs.extend(crate::build::attest::frontend_attrs(t, &opts.attest, files));
    let secrets: Vec<(String, SecretSource)> = t
        .spec
        .secrets
        .iter()
        .map(|s| {
            let src = match &s.source {
                SecretFrom::File(p) => SecretSource::File(p.v.clone()),
                SecretFrom::Env(e) => SecretSource::Env(e.v.clone()),
            };
            (s.id.v.clone(), src)
        })
        .collect();
    // Cache values, parsed at resolve ([`crate::resolve::cache::CacheSpec`]).
    let cache = |specs: &[CacheSpec]| -> Vec<CacheEntry> {
        specs
            .iter()
            .map(|spec| {
                spec.attrs
                    .iter()
                    .fold(CacheEntry::new(spec.kind.clone()), |e, x| {
                        e.attr(x.key.clone(), x.value.clone())
                    })
            })
            .collect()
    };
    let manifest_annotations = manifest_annotations(t, platform);
    let mut exporters = Vec::new();
    if let Some(p) = push {
        let mut e = Exporter::new("image")
            .attr("name", p.repository.clone())
            .attr("push", "true")
            .attr("push-by-digest", "true")
            .attr("oci-mediatypes", "true")
            // Docker Engine's BuildKit would also record an image named
            // `repo` in the Engine's store for every export; two platforms
            // exporting at once then collide ("already exists"). The result
            // only needs to be in the registry.
            .attr("store", "false");
        if p.insecure {
            e = e.attr("registry.insecure", "true");
        }
        for (k, v) in &manifest_annotations {
            e = e.attr(k.clone(), v.clone());
        }
        exporters.push(e);
    }
    // File exporters after the push: the daemon names each FileSend call
    // with the exporter's index in this list.
    let mut files = Vec::new();
    for f in opts.files.get(&t.name.v).into_iter().flatten() {
        let (mut e, dir) = f.exporter();
        if f.kind == FileExportKind::Oci {
            for (k, v) in &manifest_annotations {
                e = e.attr(k.clone(), v.clone());
            }
        }
        let path = f.path_for(platform);
        files.push((
            exporters.len() as u32,
            if dir {
                SendTarget::Dir(path)
            } else {
                SendTarget::File(path)
            },
        ));
        exporters.push(e);
    }
    let ssh = ssh_agents(t, opts.ssh_auth_sock.as_deref())?;
    let mut request = SolveRequest {
        frontend: "dockerfile.v0".into(),
        frontend_attrs: attrs,
        frontend_inputs,
        exporters,
        cache_imports: cache(&t.spec.cache_from),
        cache_exports: cache(&t.spec.cache_to),
        entitlements,
        internal: !opts.history,
        ..SolveRequest::default()
    };
    crate::repro::apply(
        t,
        &mut request,
        opts.source_date_epoch,
        opts.pins.as_deref(),
    );
    Ok(NodeRequest {
        request,
        dirs,
        secrets,
        ssh,
        files,
        _inline: inline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(
            repository_of("localhost:5000/app:dev"),
            "localhost:5000/app"
        );
        assert_eq!(repository_of("localhost:5000/app"), "localhost:5000/app");
        assert_eq!(
            repository_of(&format!("r/app@sha256:{}", "a".repeat(64))),
            "r/app"
        );
        assert_eq!(repository_of("localhost/app:1"), "localhost/app");
        assert_eq!(registry_of("app"), "docker.io");
        assert_eq!(registry_of("localhost:5000/app"), "localhost:5000");
        assert_eq!(registry_of("library/app"), "docker.io");
        assert!(
            is_insecure("localhost:5000", &[])
                && is_insecure("127.0.0.1:5000", &[])
                && !is_insecure("ghcr.io", &[])
        );
        assert!(is_insecure("reg.lan:5000", &["reg.lan:5000".into()]));
        // The same rule as publish: a bare host means every port.
        assert!(is_insecure("reg.lan:5000", &["reg.lan".into()]));
    }

    #[test]
    fn platform_dirs() {
        assert_eq!(platform_dir("linux/amd64"), "linux_amd64");
        assert_eq!(platform_dir("linux/arm/v7"), "linux_arm_v7");
        assert_eq!(platform_dir("linux/arm"), "linux_arm_v7");
        let f = FileExport {
            kind: FileExportKind::Oci,
            dir: PathBuf::from("/s"),
        };
        assert_eq!(
            f.path_for("linux/arm64"),
            Path::new("/s/linux_arm64.oci.tar")
        );
    }

    /// A KDL line setting attribute `a` (exhaustive: a new attribute needs
    /// a sample here, and the test below then checks its `Reach`).
    fn sample(a: A) -> &'static str {
        match a {
            A::Description => "description \"d\"",
            A::Context => "context \"sub\"",
            A::Contexts => {
                "contexts {\n img \"docker-image://localhost:5000/busybox:latest\"\n dir \"assets\"\n }"
            }
            A::Dockerfile => "dockerfile \"Dockerfile.other\"",
            A::DockerfileInline => "dockerfile-inline \"FROM scratch\"",
            A::Arg => "arg \"K\" \"V\"",
            A::Annotation => "annotation \"org.opencontainers.image.title\" \"t\"",
            A::Attest => "attest \"sbom\"",
            A::Label => "label \"k\" \"v\"",
            A::Tags => "tags \"localhost:5000/x:dev\"",
            A::CacheFrom => "cache-from \"type=registry,ref=localhost:5000/cache:x\"",
            A::CacheTo => "cache-to \"type=inline\"",
            A::Stage => "stage \"release\"",
            A::Secret => "secret id=\"s\" env=\"S\"",
            A::Ssh => "ssh \"default=/tmp/agent.sock\"",
            A::Platforms => "platforms \"linux/arm64\"",
            A::Output => "output \"registry\"",
            A::Pull => "pull true",
            A::NoCache => "no-cache true",
            A::Network => "network \"none\"",
            A::NoCacheFilter => "no-cache-filter \"deps\"",
        }
    }

    /// Everything of a node's request that a target attribute can change.
    fn fingerprint(r: &NodeRequest) -> String {
        let attrs: std::collections::BTreeMap<_, _> = r.request.frontend_attrs.iter().collect();
        format!(
            "{attrs:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
            r.request.exporters,
            r.request.cache_imports,
            r.request.cache_exports,
            r.request.entitlements,
            r.dirs,
            r.secrets,
            r.ssh
        )
    }

    /// Issue 12 item 2: every row of the attribute table reaches the solve
    /// request as its `Reach` says, or is declared to go elsewhere (print,
    /// plan, publish) and then leaves the request unchanged.
    #[test]
    fn every_attribute_reaches_the_request_or_says_where_it_goes() {
        use crate::attrs::{Reach, ATTRS};
        let request = |body: &str| {
            let r = crate::resolve::tests_support::run(&format!("target \"x\" {{\n{body}\n}}\n"))
                .unwrap_or_else(|d| panic!("{body}: {d:?}"));
            let t = &r.targets[r.index["x"]];
            build(
                t,
                "linux/amd64",
                &HashMap::new(),
                None,
                &RequestOptions::default(),
            )
            .unwrap_or_else(|e| panic!("{body}: {e}"))
        };
        let base = fingerprint(&request(""));
        for (i, def) in ATTRS.iter().enumerate() {
            let a = crate::attrs::ALL[i];
            assert_eq!(a.def().name, def.name);
            let with = request(sample(a));
            let got = fingerprint(&with);
            let attrs = &with.request.frontend_attrs;
            match def.reach {
                Reach::Frontend(key) => {
                    assert!(attrs.contains_key(key), "{}: no `{key}`", def.name)
                }
                Reach::FrontendPrefix(p) => assert!(
                    attrs.keys().any(|k| k.starts_with(p)),
                    "{}: no `{p}…`",
                    def.name
                ),
                _ => {}
            }
            match def.reach {
                Reach::Frontend(_) | Reach::FrontendPrefix(_) | Reach::Request => {
                    assert_ne!(got, base, "`{}` does not reach the request", def.name)
                }
                Reach::Plan | Reach::Publish | Reach::PrintOnly => assert_eq!(
                    got, base,
                    "`{}` is declared {:?} but changes the request",
                    def.name, def.reach
                ),
            }
        }
    }

    /// `manifest:` and un-prefixed annotations reach BuildKit's image
    /// exporter (it writes them into the image manifest, as for bake);
    /// `index:` and `manifest-descriptor:` ones are left to publish, and a
    /// platform selector picks the solves it names.
    #[test]
    fn manifest_annotations_reach_the_image_exporter() {
        let r = crate::resolve::tests_support::run(
            "target \"x\" {\n\
             annotation \"manifest:org.opencontainers.image.title\" \"t\"\n\
             annotation \"org.opencontainers.image.version\" \"1\"\n\
             annotation \"manifest[linux/arm64]:arch\" \"arm\"\n\
             annotation \"index:org.opencontainers.image.description\" \"i\"\n\
             annotation \"manifest-descriptor:d\" \"x\"\n}\n",
        )
        .unwrap();
        let t = &r.targets[r.index["x"]];
        let push = PushTo {
            repository: "localhost:5000/x".into(),
            insecure: true,
        };
        let attrs = |platform: &str| {
            let req = build(
                t,
                platform,
                &HashMap::new(),
                Some(&push),
                &RequestOptions::default(),
            )
            .unwrap();
            let e = &req.request.exporters[0];
            let mut v: Vec<String> = e
                .attrs
                .iter()
                .filter(|(k, _)| k.starts_with("annotation"))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            attrs("linux/amd64"),
            [
                "annotation-manifest.org.opencontainers.image.title=t",
                "annotation-manifest.org.opencontainers.image.version=1"
            ]
        );
        assert_eq!(
            attrs("linux/arm64"),
            [
                "annotation-manifest.arch=arm",
                "annotation-manifest.org.opencontainers.image.title=t",
                "annotation-manifest.org.opencontainers.image.version=1"
            ]
        );
    }

    #[test]
    fn cache_values_reach_the_request() {
        let r = crate::resolve::tests_support::run(
            "target \"x\" {\n cache-from \"type=registry, ref=r/c:x ,mode=max\" \"user/app:cache\"\n cache-to \"type=inline\"\n}\n",
        )
        .unwrap();
        let t = &r.targets[r.index["x"]];
        let req = build(
            t,
            "linux/amd64",
            &HashMap::new(),
            None,
            &RequestOptions::default(),
        )
        .unwrap()
        .request;
        let show = |v: &[CacheEntry]| -> Vec<String> {
            v.iter()
                .map(|e| {
                    let mut a: Vec<_> = e.attrs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    a.sort();
                    format!("{}:{}", e.kind, a.join(","))
                })
                .collect()
        };
        assert_eq!(
            show(&req.cache_imports),
            ["registry:mode=max,ref=r/c:x", "registry:ref=user/app:cache"]
        );
        assert_eq!(show(&req.cache_exports), ["inline:"]);
    }
}
