//! The OCI vocabulary shared by exec, publish and `index`.

mod insecure;
mod platform;
pub mod reference;

pub use insecure::is_plain_http;
pub use platform::Platform;
