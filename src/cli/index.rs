//! `mybake index create|inspect`: no build file involved.

use std::collections::{BTreeMap, HashMap};

use super::args::{IndexCommand, ListFormat};
use super::{exit, Outcome};
use crate::publish::{self, CreateRequest, PublishOptions};

pub fn run(cmd: IndexCommand, env: &HashMap<String, String>) -> Outcome {
    let fail = |code: i32, msg: String| Outcome {
        code,
        stdout: Vec::new(),
        stderr: msg,
    };
    let opts = PublishOptions {
        insecure_registries: env
            .get("MYBAKE_INSECURE_REGISTRIES")
            .map(|s| s.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
        ..Default::default()
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return fail(
                exit::FAILED,
                format!("mybake: cannot start the async runtime: {e}\n"),
            )
        }
    };
    match cmd {
        IndexCommand::Create {
            tags,
            sources,
            platforms,
            annotations,
            dry_run,
        } => {
            if tags.is_empty() && !dry_run {
                return fail(
                    exit::INVALID,
                    "mybake index create: give at least one -t TAG (or --dry-run)\n".into(),
                );
            }
            let mut ann = BTreeMap::new();
            for a in &annotations {
                match publish::index_cmd::parse_key_value(a) {
                    Ok((k, v)) => {
                        ann.insert(k, v);
                    }
                    Err(e) => return fail(exit::INVALID, format!("mybake index create: {e}\n")),
                }
            }
            for p in &platforms {
                if let Err(d) = crate::resolve::platform::validate(p, crate::source::Span::NONE) {
                    return fail(
                        exit::INVALID,
                        format!("mybake index create: {}\n", d.message),
                    );
                }
            }
            let req = CreateRequest {
                tags,
                sources,
                platforms,
                annotations: ann,
                dry_run,
            };
            match rt.block_on(publish::create(req, &opts, None)) {
                Ok(rep) if rep.dry_run => Outcome {
                    code: exit::OK,
                    stdout: vec![rep.index_json + "\n"],
                    stderr: String::new(),
                },
                Ok(rep) => Outcome {
                    code: exit::OK,
                    stdout: vec![format!("{}\n", rep.digest)],
                    stderr: crate::report::index::created(&rep),
                },
                Err(e) => fail(
                    if matches!(e, publish::PublishError::Invalid { .. }) {
                        exit::INVALID
                    } else {
                        exit::FAILED
                    },
                    format!("mybake index create: {e}\n"),
                ),
            }
        }
        IndexCommand::Inspect { reference, format } => {
            match rt.block_on(publish::inspect(&reference, &opts)) {
                Ok(i) => Outcome {
                    code: exit::OK,
                    stdout: vec![if format == ListFormat::Json {
                        crate::report::index::inspect_json(&i)
                    } else {
                        crate::report::index::inspect_text(&i)
                    }],
                    stderr: String::new(),
                },
                Err(e) => fail(exit::FAILED, format!("mybake index inspect: {e}\n")),
            }
        }
    }
}
