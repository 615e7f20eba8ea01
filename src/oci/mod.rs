//! The OCI vocabulary shared by exec, publish and `index`.

mod insecure;

pub use insecure::is_plain_http;
