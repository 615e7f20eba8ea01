//! Every integration test of `mybake-buildkit`, in one test binary (one link
//! of the dependencies instead of one per file). Each module is one former
//! `tests/NAME.rs`; `common` is the shared harness. `auth_docker_config`
//! and `secrets_service` stay binaries of their own: they set process-wide
//! environment variables, which is unsound with other tests' threads.

mod common;
mod daemon;
mod dockerfile;
mod filesync_daemon;
mod filesync_protocol;
mod gateway;
mod tcp;
