//! The attestations of a solve: the target's `attest` entries, the run's
//! `--provenance`/`--sbom` overrides and the default provenance, combined
//! as buildx bake combines them, into the frontend attributes
//! (`attest:provenance`, `attest:sbom`) of the solve request.
//!
//! * `--provenance VALUE` / `--sbom VALUE` replace the target's entry of
//!   that type for every target: `true` (on, BuildKit's defaults), `false`
//!   (off), or a `KEY=VALUE,...` list (`mode=max`, `generator=...`,
//!   `disabled=true`), as bake's flags.
//! * With no provenance entry after that, the solve gets bake's default,
//!   `mode=min`, unless `MYBAKE_NO_DEFAULT_ATTESTATIONS` is true (`1`,
//!   `true`). It is attached to image exports (pushed, `--load`ed, `oci`);
//!   a solve that also exports `local`/`tar` files gets `inline-only=true`
//!   (as buildx sends it always) so that no provenance file lands in those
//!   outputs. mybake's per-platform `oci` exports (also used for `--load`)
//!   get no attestation at all from Docker Engine 26's BuildKit with
//!   `inline-only=true`, hence the plain `mode=min` there.
//! * An entry with `disabled=true` sends nothing and keeps the default off.

/// The run's attestation settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttestRun {
    /// `--provenance`.
    pub provenance: Option<String>,
    /// `--sbom`.
    pub sbom: Option<String>,
    /// `MYBAKE_NO_DEFAULT_ATTESTATIONS`: no default provenance.
    pub no_default: bool,
}

/// The environment variable turning the default provenance off.
pub const NO_DEFAULT_ENV: &str = "MYBAKE_NO_DEFAULT_ATTESTATIONS";

/// bake's default provenance attributes.
pub const DEFAULT_PROVENANCE: &str = "mode=min";
/// Added to the default when the solve writes `local`/`tar` files.
pub const INLINE_ONLY: &str = "inline-only=true";

/// One attestation: its type and its other fields, in order.
pub type Attest = (String, Vec<(String, String)>);

impl AttestRun {
    /// From the flags and the environment; an invalid flag value is an
    /// error naming the flag (a command-line error, exit 2).
    pub fn new(
        provenance: Option<&str>,
        sbom: Option<&str>,
        env: &std::collections::HashMap<String, String>,
    ) -> Result<AttestRun, String> {
        for (flag, v) in [("--provenance", provenance), ("--sbom", sbom)] {
            if let Some(v) = v {
                parse_flag("x", v).map_err(|e| format!("{flag} {v:?}: {e}"))?;
            }
        }
        Ok(AttestRun {
            provenance: provenance.map(str::to_string),
            sbom: sbom.map(str::to_string),
            no_default: env
                .get(NO_DEFAULT_ENV)
                .is_some_and(|v| parse_bool(v) == Some(true)),
        })
    }
}

/// Go's `strconv.ParseBool`, which buildx uses for these values.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// A flag value as an attestation of type `ty` (bake's
/// `CanonicalizeAttest`: a boolean is `disabled=!b`).
fn parse_flag(ty: &str, v: &str) -> Result<Attest, String> {
    if let Some(b) = parse_bool(v) {
        return Ok((ty.to_string(), vec![("disabled".into(), (!b).to_string())]));
    }
    let mut fields = Vec::new();
    for part in v.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some((k, val)) if !k.is_empty() => {
                if k == "type" {
                    return Err("the type is given by the flag; drop `type=`".into());
                }
                fields.push((k.to_string(), val.to_string()));
            }
            _ => return Err("expected true, false or KEY=VALUE[,KEY=VALUE...]".into()),
        }
    }
    Ok((ty.to_string(), fields))
}

/// The frontend attributes for the attestations `declared` (the target's
/// `attest` entries) under `run`: `("attest:TYPE", "K=V,...")`, sorted by
/// type.
/// `files`: the solve also exports `local`/`tar` files.
pub fn effective(declared: &[Attest], run: &AttestRun, files: bool) -> Vec<(String, String)> {
    let mut by_type: std::collections::BTreeMap<String, Vec<(String, String)>> = declared
        .iter()
        .map(|(ty, fields)| (ty.clone(), fields.clone()))
        .collect();
    for (ty, flag) in [("provenance", &run.provenance), ("sbom", &run.sbom)] {
        if let Some(Ok((ty, fields))) = flag.as_deref().map(|v| parse_flag(ty, v)) {
            by_type.insert(ty, fields);
        }
    }
    if !run.no_default && !by_type.contains_key("provenance") {
        let default = if files {
            format!("{DEFAULT_PROVENANCE},{INLINE_ONLY}")
        } else {
            DEFAULT_PROVENANCE.to_string()
        };
        let fields = default
            .split(',')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        by_type.insert("provenance".into(), fields);
    }
    by_type
        .into_iter()
        .filter(|(_, fields)| {
            !fields
                .iter()
                .any(|(k, v)| k == "disabled" && parse_bool(v) == Some(true))
        })
        .map(|(ty, fields)| {
            let rest: Vec<String> = fields
                .iter()
                .filter(|(k, _)| k != "disabled")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            (format!("attest:{ty}"), rest.join(","))
        })
        .collect()
}

/// [`effective`] for a resolved target whose solve has the file exports
/// `files`.
pub fn frontend_attrs(
    t: &crate::resolve::Target,
    run: &AttestRun,
    files: &[crate::exec::request::FileExport],
) -> Vec<(String, String)> {
    use crate::exec::request::FileExportKind as K;
    let files = files.iter().any(|f| matches!(f.kind, K::Local | K::Tar));
    let declared: Vec<Attest> = t
        .spec
        .attest
        .iter()
        .map(|a| (a.kind.name().to_string(), a.props.clone()))
        .collect();
    effective(&declared, run, files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(ty: &str, fields: &[(&str, &str)]) -> Attest {
        (
            ty.into(),
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn run(p: Option<&str>, s: Option<&str>, no_default: bool) -> AttestRun {
        AttestRun {
            provenance: p.map(Into::into),
            sbom: s.map(Into::into),
            no_default,
        }
    }

    fn attrs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn default_provenance_unless_declared_or_turned_off() {
        let none = run(None, None, false);
        assert_eq!(
            effective(&[], &none, false),
            attrs(&[("attest:provenance", "mode=min")])
        );
        assert_eq!(effective(&[], &run(None, None, true), false), vec![]);
        // The target's own provenance replaces the default.
        assert_eq!(
            effective(&[a("provenance", &[("mode", "max")])], &none, false),
            attrs(&[("attest:provenance", "mode=max")])
        );
        // An sbom alone keeps the default provenance (as bake).
        assert_eq!(
            effective(&[a("sbom", &[])], &none, false),
            attrs(&[("attest:provenance", "mode=min"), ("attest:sbom", "")])
        );
        // With local/tar files in the solve: inline-only, as buildx.
        assert_eq!(
            effective(&[], &none, true),
            attrs(&[("attest:provenance", "mode=min,inline-only=true")])
        );
        // disabled=true sends nothing and keeps the default off.
        assert_eq!(
            effective(&[a("provenance", &[("disabled", "true")])], &none, false),
            vec![]
        );
    }

    #[test]
    fn flags_override_per_type() {
        let declared = [a("provenance", &[("mode", "max")]), a("sbom", &[])];
        assert_eq!(
            effective(&declared, &run(Some("false"), None, false), false),
            attrs(&[("attest:sbom", "")])
        );
        assert_eq!(
            effective(&[], &run(Some("true"), Some("true"), false), false),
            attrs(&[("attest:provenance", ""), ("attest:sbom", "")])
        );
        assert_eq!(
            effective(
                &declared,
                &run(Some("mode=min"), Some("false"), false),
                false
            ),
            attrs(&[("attest:provenance", "mode=min")])
        );
        assert_eq!(
            effective(
                &[],
                &run(Some("mode=max,builder-id=x"), Some("generator=img"), true),
                false
            ),
            attrs(&[
                ("attest:provenance", "mode=max,builder-id=x"),
                ("attest:sbom", "generator=img")
            ])
        );
        // `--sbom false` with no default provenance: nothing.
        assert_eq!(effective(&[], &run(None, Some("0"), true), false), vec![]);
    }

    #[test]
    fn flag_values_are_checked() {
        let env = std::collections::HashMap::new();
        assert!(AttestRun::new(Some("mode=max"), Some("true"), &env).is_ok());
        let e = AttestRun::new(Some("maybe"), None, &env).unwrap_err();
        assert!(e.starts_with("--provenance \"maybe\""), "{e}");
        assert!(AttestRun::new(None, Some("type=sbom"), &env).is_err());
        let off = [(NO_DEFAULT_ENV.to_string(), "1".to_string())].into();
        assert!(AttestRun::new(None, None, &off).unwrap().no_default);
        let on = [(NO_DEFAULT_ENV.to_string(), "0".to_string())].into();
        assert!(!AttestRun::new(None, None, &on).unwrap().no_default);
    }
}
