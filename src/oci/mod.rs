//! The OCI vocabulary shared by exec, publish and `index`.

pub mod annotation;
pub mod descriptor;
mod insecure;
mod platform;
pub mod reference;

pub use descriptor::Descriptor;
pub use insecure::is_plain_http;
pub use platform::Platform;
