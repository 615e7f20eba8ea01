//! The target attribute table: the one place that says what a target
//! attribute is called in KDL, what shape its node has, how files merge it,
//! whether its values are paths, what `print` calls it and where it takes
//! effect ([`Reach`]). Adding a pass-through attribute (a frontend option)
//! is one row here; others need code only where they have meaning for a
//! later stage. The schemas (`schema/`) are tested against this table.

/// How the node is written and what it decodes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `context "dir"`: one string. Appears once per block.
    Str,
    /// `no-cache true`: one boolean (a string that interpolates to
    /// `true`/`false` is accepted). Appears once per block.
    Bool,
    /// `tags "a" "b"`: strings; repeated nodes append.
    List,
    /// `cache-from "type=registry,ref=x"`: like `List`; each value is a
    /// CSV of `key=value` that `print` shows as an object.
    CsvList,
    /// `arg "KEY" "VALUE"`: repeatable; a map.
    KeyValue,
    /// `contexts { name "value" }`: children whose node names are keys.
    ChildMap,
    /// `output "type" dest="…"`: repeatable; an object whose `type` is the
    /// argument and whose other fields are the properties.
    Typed,
    /// `secret id="x" src="…"`: repeatable; an object of properties.
    Props,
}

/// Whether values name files, and so resolve against the declaring file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paths {
    No,
    /// The value is a path.
    Value,
    /// Map values that are not `target:` / `docker-image://` / URLs.
    ContextValue,
    /// These object properties are paths (`dest`, `src`).
    Props(&'static [&'static str]),
}

/// Where an attribute takes effect after resolve. The exec test
/// `every_attribute_reaches_the_request_or_says_where_it_goes` checks every
/// row against the solve request it builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Passed through to the frontend as `frontend_attrs[KEY] = value`
    /// (`Str` and `List` rows; a list is joined with `,`). Such a row needs
    /// no code anywhere else: this is how a pass-through attribute is added.
    Frontend(&'static str),
    /// Passed through as `frontend_attrs[PREFIX + key] = value` for every
    /// entry (`KeyValue` rows).
    FrontendPrefix(&'static str),
    /// Turned into the solve request by code of its own in
    /// `exec::request::build` (contexts, secrets, caches, ...).
    Request,
    /// Decides the plan's build nodes (`platforms`: one solve per
    /// platform, each sent as the `platform` frontend option).
    Plan,
    /// Used by publish, not by the solve request (tags, annotations,
    /// outputs: the exporters come from the run's staging and push plan).
    Publish,
    /// Shown by `print`/`list` only.
    PrintOnly,
}

#[derive(Debug)]
pub struct AttrDef {
    /// KDL node name; also the `--set` attribute name.
    pub name: &'static str,
    /// Key in `print` JSON (bake's name).
    pub print: &'static str,
    pub shape: Shape,
    pub paths: Paths,
    /// Properties allowed on `Typed`/`Props` nodes (`None` = any).
    pub props: Option<&'static [&'static str]>,
    /// Properties one of which is required (`Props`).
    pub required: &'static [&'static str],
    /// Where the attribute takes effect.
    pub reach: Reach,
    pub doc: &'static str,
}

macro_rules! attrs {
    ($( $id:ident = $name:literal => $print:literal, $shape:ident, $paths:expr, $props:expr, $req:expr, $reach:expr, $doc:literal; )*) => {
        /// Indices into [`ATTRS`].
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(u8)]
        pub enum A { $($id),* }

        /// How many attributes there are.
        pub const COUNT: usize = [$(A::$id),*].len();

        /// Every attribute, in table order (`ALL[i].index() == i`).
        pub const ALL: [A; COUNT] = [$(A::$id),*];

        /// Every attribute, in `print` order (bake's field order).
        pub static ATTRS: &[AttrDef; COUNT] = &[
            $(AttrDef { name: $name, print: $print, shape: Shape::$shape, paths: $paths, props: $props, required: $req, reach: $reach, doc: $doc }),*
        ];
    };
}

attrs! {
    Description = "description" => "description", Str, Paths::No, None, &[], Reach::PrintOnly, "human description shown by `list`";
    Context = "context" => "context", Str, Paths::Value, None, &[], Reach::Request, "build context directory (default `.`)";
    Contexts = "contexts" => "contexts", ChildMap, Paths::ContextValue, None, &[], Reach::Request, "named contexts: `target:NAME`, `docker-image://REF`, or a directory";
    Dockerfile = "dockerfile" => "dockerfile", Str, Paths::No, None, &[], Reach::Request, "Dockerfile path relative to the context (default `Dockerfile`)";
    DockerfileInline = "dockerfile-inline" => "dockerfile-inline", Str, Paths::No, None, &[], Reach::Request, "Dockerfile text";
    Arg = "arg" => "args", KeyValue, Paths::No, None, &[], Reach::FrontendPrefix("build-arg:"), "build argument `arg KEY VALUE`";
    Annotation = "annotation" => "annotations", KeyValue, Paths::No, None, &[], Reach::Publish, "image/index annotation `annotation [index:|manifest:]KEY VALUE`";
    Attest = "attest" => "attest", Typed, Paths::No, None, &[], Reach::Request, "attestation `attest provenance|sbom [mode=…]`";
    Label = "label" => "labels", KeyValue, Paths::No, None, &[], Reach::FrontendPrefix("label:"), "image label `label KEY VALUE`";
    Tags = "tags" => "tags", List, Paths::No, None, &[], Reach::Publish, "image references to publish";
    CacheFrom = "cache-from" => "cache-from", CsvList, Paths::No, None, &[], Reach::Request, "cache import `type=…,ref=…`";
    CacheTo = "cache-to" => "cache-to", CsvList, Paths::No, None, &[], Reach::Request, "cache export `type=…`";
    Stage = "stage" => "target", Str, Paths::No, None, &[], Reach::Frontend("target"), "Dockerfile build stage";
    Secret = "secret" => "secret", Props, Paths::Props(&["src"]), Some(&["id", "src", "env"]), &["id"], Reach::Request, "build secret `secret id=… src=…|env=…`";
    Ssh = "ssh" => "ssh", List, Paths::No, None, &[], Reach::Request, "SSH agent sockets or keys to forward (`default`)";
    Platforms = "platforms" => "platforms", List, Paths::No, None, &[], Reach::Plan, "target platforms `os/arch[/variant]`";
    Output = "output" => "output", Typed, Paths::Props(&["dest"]), None, &[], Reach::Publish, "output `registry|docker|oci|local|tar|cacheonly [dest=…]`";
    Pull = "pull" => "pull", Bool, Paths::No, None, &[], Reach::Request, "always pull base images";
    NoCache = "no-cache" => "no-cache", Bool, Paths::No, None, &[], Reach::Request, "build without cache";
    Network = "network" => "network", Str, Paths::No, None, &[], Reach::Request, "network mode for RUN (`default`, `none`, `host`)";
    NoCacheFilter = "no-cache-filter" => "no-cache-filter", List, Paths::No, None, &[], Reach::Request, "stages to build without cache";
}

/// Nodes of a target block that are not attributes of the resolved target.
pub const STRUCTURAL: &[&str] = &["inherits", "matrix"];

impl A {
    pub fn def(self) -> &'static AttrDef {
        &ATTRS[self as usize]
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

pub fn by_name(name: &str) -> Option<usize> {
    ATTRS.iter().position(|a| a.name == name)
}

/// Every node name a target block accepts (for did-you-mean).
pub fn target_node_names() -> impl Iterator<Item = &'static str> {
    ATTRS
        .iter()
        .map(|a| a.name)
        .chain(STRUCTURAL.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_matches_table() {
        assert_eq!(A::Platforms.def().name, "platforms");
        assert_eq!(A::Stage.def().print, "target");
        assert_eq!(A::NoCacheFilter.index(), ATTRS.len() - 1);
        assert_eq!(by_name("cache-to"), Some(A::CacheTo.index()));
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = target_node_names().collect();
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(n, names.len());
    }
}
