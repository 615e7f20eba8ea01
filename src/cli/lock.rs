//! `mybake lock` and the `--locked` / `--source-date-epoch` settings of
//! `mybake build` (see [`crate::lock`], [`crate::repro`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::args::{BuildArgs, LockArgs};
use super::{exit, Outcome};
use crate::diag::Diagnostics;
use crate::lock::{self, LockFile, Pins};
use crate::publish::registry::{RegistryClient, RegistryOptions};
use crate::resolve::Resolved;

/// The directory of the first build file (where `mybake.lock` lives and
/// whose git repository `--source-date-epoch git` reads).
pub fn first_file_dir(cwd: &Path, files: &[PathBuf]) -> PathBuf {
    match files.first() {
        Some(f) if f.as_os_str() != "-" => crate::load::absolute(cwd, f)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| cwd.to_path_buf()),
        _ => cwd.to_path_buf(),
    }
}

fn diags(list: Vec<crate::diag::Diag>) -> Diagnostics {
    let mut d = Diagnostics::default();
    for x in list {
        d.push(x);
    }
    d
}

fn invalid(msg: impl std::fmt::Display) -> Outcome {
    Outcome {
        code: exit::INVALID,
        stdout: Vec::new(),
        stderr: format!("error: {msg}\n"),
    }
}

/// Epoch and pins of `mybake build`; an invalid epoch, a missing or stale
/// lock is an `Outcome` with exit 2 (nothing built).
pub fn build_settings(
    r: &Resolved,
    targets: &[usize],
    b: &BuildArgs,
    env: &HashMap<String, String>,
    dir: &Path,
    render: &dyn Fn(Diagnostics) -> Outcome,
) -> Result<(Option<u64>, Option<Arc<Pins>>), Outcome> {
    let epoch = crate::repro::epoch(
        b.source_date_epoch.as_deref(),
        env.get("SOURCE_DATE_EPOCH").map(String::as_str),
        dir,
    )
    .map_err(invalid)?;
    if !b.locked {
        return Ok((epoch, None));
    }
    let path = dir.join(lock::FILE_NAME);
    let file = match LockFile::read(&path) {
        Ok(Some(l)) => l,
        Ok(None) => {
            return Err(invalid(format!(
                "--locked: {} does not exist; run `mybake lock` and commit it",
                path.display()
            )))
        }
        Err(e) => return Err(invalid(format!("--locked: {e}"))),
    };
    let uses = lock::collect(r, targets).map_err(|e| render(diags(e)))?;
    let missing = lock::missing(&file, &uses);
    if !missing.is_empty() {
        return Err(invalid(format!(
            "--locked: {} is stale: no pin for\n  {}\nrun `mybake lock` to add them",
            path.display(),
            missing.join("\n  ")
        )));
    }
    Ok((epoch, Some(Arc::new(Pins::new(&file, &uses)))))
}

/// `mybake lock [TARGETS] [--update [IMAGE...]]`.
pub fn run(
    r: &Resolved,
    targets: &[usize],
    l: &LockArgs,
    env: &HashMap<String, String>,
    dir: &Path,
    render: &dyn Fn(Diagnostics) -> Outcome,
) -> Outcome {
    let path = dir.join(lock::FILE_NAME);
    let old = match LockFile::read(&path) {
        Ok(o) => o.unwrap_or_default(),
        Err(e) => return invalid(e),
    };
    let uses = match lock::collect(r, targets) {
        Ok(u) => u,
        Err(e) => return render(diags(e)),
    };
    // Which pins to resolve again.
    let mut update_all = false;
    let mut update: Vec<String> = Vec::new();
    match &l.update {
        Some(list) if list.is_empty() => update_all = true,
        Some(list) => {
            let mut unknown = Vec::new();
            for i in list {
                match lock::normalize(i).filter(|n| uses.contains_key(n)) {
                    Some(n) => update.push(n),
                    None => unknown.push(i.clone()),
                }
            }
            if !unknown.is_empty() {
                let used: Vec<&str> = uses.keys().map(String::as_str).collect();
                return invalid(format!(
                    "--update: not used by the build: {} (images used: {})",
                    unknown.join(", "),
                    if used.is_empty() {
                        "none".to_string()
                    } else {
                        used.join(", ")
                    }
                ));
            }
        }
        None => {}
    }
    let todo: Vec<String> = uses
        .keys()
        .filter(|k| update_all || update.contains(k) || !old.images.contains_key(*k))
        .cloned()
        .collect();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return failed(format!("runtime: {e}")),
    };
    let options = RegistryOptions {
        insecure: env
            .get("MYBAKE_INSECURE_REGISTRIES")
            .map(|s| s.split(',').map(str::to_string).collect())
            .unwrap_or_default(),
        ..RegistryOptions::default()
    };
    let client = match RegistryClient::new(options, None) {
        Ok(c) => c,
        Err(e) => return failed(e.to_string()),
    };
    let resolved: Vec<(String, Result<lock::Pin, String>)> = rt.block_on(async {
        let futs = todo.iter().map(|r| {
            let client = client.clone();
            async move { (r.clone(), lock::resolve(&client, r).await) }
        });
        futures::future::join_all(futs).await
    });
    let mut errors = Vec::new();
    let mut new = LockFile::default();
    let mut report = String::new();
    for (r, res) in resolved {
        match res {
            Ok(pin) => {
                let verb = match old.images.get(&r) {
                    None => "locked",
                    Some(o) if o.digest == pin.digest => "unchanged",
                    Some(_) => "updated",
                };
                report.push_str(&format!(
                    "{verb} {r} {} ({} platforms)\n",
                    pin.digest,
                    pin.platforms.len()
                ));
                new.images.insert(r, pin);
            }
            Err(e) => errors.push(format!("{r}: {e}")),
        }
    }
    if !errors.is_empty() {
        return failed(format!(
            "cannot resolve (nothing written):\n  {}",
            errors.join("\n  ")
        ));
    }
    // The lock holds exactly the images of the selected targets: kept pins
    // for the rest, dropped pins of images no longer used.
    for r in uses.keys() {
        if !new.images.contains_key(r) {
            if let Some(p) = old.images.get(r) {
                new.images.insert(r.clone(), p.clone());
            }
        }
    }
    for r in old.images.keys().filter(|r| !new.images.contains_key(*r)) {
        report.push_str(&format!("removed {r} (no longer used)\n"));
    }
    if new != old || !path.exists() {
        if let Err(e) = new.write(&path) {
            return failed(e);
        }
        report.push_str(&format!(
            "wrote {} ({} images)\n",
            path.display(),
            new.images.len()
        ));
    } else {
        report.push_str(&format!("{} is up to date\n", path.display()));
    }
    Outcome {
        code: exit::OK,
        stdout: Vec::new(),
        stderr: report,
    }
}

fn failed(msg: impl std::fmt::Display) -> Outcome {
    Outcome {
        code: exit::FAILED,
        stdout: Vec::new(),
        stderr: format!("error: {msg}\n"),
    }
}
