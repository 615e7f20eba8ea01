//! Hash and identifier functions: md5, sha1, sha256, sha512, uuidv4,
//! uuidv5, and bcrypt/rsadecrypt (declared, not supported).

use hcl::eval::{FuncArgs, FuncDef};
use hcl::Value;
use md5::Digest as _;

use super::{fixed, str_arg, unsupported, variadic, R};

pub(super) fn defs(all: &mut Vec<(&'static str, FuncDef)>) {
    all.extend([
        (
            "md5",
            fixed(1, |a| Ok(hex_value(&md5::Md5::digest(str_arg(&a, 0)?)))),
        ),
        (
            "sha1",
            fixed(1, |a| Ok(hex_value(&sha1::Sha1::digest(str_arg(&a, 0)?)))),
        ),
        (
            "sha256",
            fixed(1, |a| Ok(hex_value(&sha2::Sha256::digest(str_arg(&a, 0)?)))),
        ),
        (
            "sha512",
            fixed(1, |a| Ok(hex_value(&sha2::Sha512::digest(str_arg(&a, 0)?)))),
        ),
        (
            "uuidv4",
            fixed(0, |_| Ok(Value::String(uuid::Uuid::new_v4().to_string()))),
        ),
        ("uuidv5", fixed(2, uuidv5)),
        (
            "bcrypt",
            variadic(1, |_| {
                Err(unsupported(
                    "bcrypt",
                    "its salt is random, so its result differs on every run",
                ))
            }),
        ),
        (
            "rsadecrypt",
            fixed(2, |_| {
                Err(unsupported(
                    "rsadecrypt",
                    "mybake has no RSA implementation",
                ))
            }),
        ),
    ]);
}

fn hex_value(bytes: &[u8]) -> Value {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    Value::String(s)
}

fn uuidv5(a: FuncArgs) -> R<Value> {
    let ns = str_arg(&a, 0)?;
    let name = str_arg(&a, 1)?;
    let namespace = match ns.as_str() {
        "dns" => uuid::Uuid::NAMESPACE_DNS,
        "url" => uuid::Uuid::NAMESPACE_URL,
        "oid" => uuid::Uuid::NAMESPACE_OID,
        "x500" => uuid::Uuid::NAMESPACE_X500,
        other => uuid::Uuid::parse_str(other).map_err(|_| {
            // Go's google/uuid words it so.
            let why = match other.len() {
                32 | 36 | 38 | 45 => "invalid UUID format".to_string(),
                n => format!("invalid UUID length: {n}"),
            };
            format!("uuidv5() doesn't support namespace {other} ({why})")
        })?,
    };
    let mut h = sha1::Sha1::new();
    h.update(namespace.as_bytes());
    h.update(name.as_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Ok(Value::String(
        uuid::Builder::from_sha1_bytes(bytes)
            .into_uuid()
            .to_string(),
    ))
}
