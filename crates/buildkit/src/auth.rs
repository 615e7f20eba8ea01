//! The session's Auth service (`moby.filesync.v1.Auth`): hands registry
//! credentials from the user's Docker configuration to BuildKit, like
//! buildkit's `authprovider` with docker/cli's credential stores.
//!
//! * `Credentials{host}` answers the username and secret for `host` (an
//!   identity token is answered as the secret with an empty username);
//!   no configured credentials means an empty answer: anonymous access.
//! * `FetchToken`, `GetTokenAuthority` and `VerifyTokenAuthority` answer
//!   `Unimplemented`, so BuildKit fetches registry tokens itself with the
//!   credentials from `Credentials`.
//!
//! Lookup, as the docker CLI does it:
//! * The config file is `$DOCKER_CONFIG/config.json`, else
//!   `~/.docker/config.json`; a missing file means no credentials.
//! * Docker Hub (`registry-1.docker.io`, `docker.io`, `index.docker.io`)
//!   is looked up as `https://index.docker.io/v1/`.
//! * A helper from `credHelpers[server]`, else `credsStore`, is asked with
//!   `docker-credential-<name> get` (server address on stdin, JSON
//!   `{"Username","Secret"}` on stdout, `<token>` as username for an
//!   identity token, "credentials not found in native keychain" for none).
//! * Without a helper, `auths[server]` (or the entry whose key reduces to
//!   that host name): `auth` (base64 `user:password`) or
//!   `username`/`password`, and `identitytoken`.
//! * `DOCKER_AUTH_CONFIG` (a JSON document with `auths`) takes precedence
//!   for the servers it lists.
//!
//! Secrets are never logged, and the `Debug` output of these types
//! redacts them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bollard_buildkit_proto::moby::filesync::v1::auth_server::{Auth, AuthServer};
use bollard_buildkit_proto::moby::filesync::v1::{
    CredentialsRequest, CredentialsResponse, FetchTokenRequest, FetchTokenResponse,
    GetTokenAuthorityRequest, GetTokenAuthorityResponse, VerifyTokenAuthorityRequest,
    VerifyTokenAuthorityResponse,
};
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;
use tonic::{Request, Response, Status};

/// gRPC service name of Auth.
pub const SERVICE_NAME: &str = "moby.filesync.v1.Auth";
/// Full method name of `Credentials`.
pub const CREDENTIALS_METHOD: &str = "/moby.filesync.v1.Auth/Credentials";
/// Full method name of `FetchToken`.
pub const FETCH_TOKEN_METHOD: &str = "/moby.filesync.v1.Auth/FetchToken";
/// Full method name of `GetTokenAuthority`.
pub const GET_TOKEN_AUTHORITY_METHOD: &str = "/moby.filesync.v1.Auth/GetTokenAuthority";
/// Full method name of `VerifyTokenAuthority`.
pub const VERIFY_TOKEN_AUTHORITY_METHOD: &str = "/moby.filesync.v1.Auth/VerifyTokenAuthority";
/// The methods to announce in the session headers (all four, as the Go
/// client does; three of them answer `Unimplemented`).
pub const METHODS: &[&str] = &[
    CREDENTIALS_METHOD,
    FETCH_TOKEN_METHOD,
    GET_TOKEN_AUTHORITY_METHOD,
    VERIFY_TOKEN_AUTHORITY_METHOD,
];

/// The config-file key under which Docker Hub credentials are stored.
pub const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";

/// How long a looked-up credential is reused (BuildKit's default expiry
/// of cached auth configs).
const CACHE_TTL: Duration = Duration::from_secs(4 * 60 + 50);

/// The output of a credential helper that has nothing for the server.
const HELPER_NOT_FOUND: &str = "credentials not found in native keychain";

/// The key to look credentials up under for a registry host: Docker Hub's
/// hosts map to [`DOCKER_HUB_CONFIG_KEY`], other hosts stay as they are.
pub fn config_key_for_host(host: &str) -> &str {
    match host {
        "registry-1.docker.io" | "docker.io" | "index.docker.io" => DOCKER_HUB_CONFIG_KEY,
        other => other,
    }
}

/// Why credentials could not be looked up.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The config file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The config file (or `DOCKER_AUTH_CONFIG`) is not valid.
    #[error("loading config file {origin}: {message}")]
    Invalid {
        /// Where the configuration came from.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A credential helper failed.
    #[error("error getting credentials from docker-credential-{helper}: {message}")]
    Helper {
        /// The helper's name (suffix after `docker-credential-`).
        helper: String,
        /// What went wrong (the helper's own output when it has one).
        message: String,
    },
}

/// Credentials for one registry (the subset of docker's `AuthConfig`
/// BuildKit uses). `Debug` redacts the secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// The user name.
    pub username: String,
    /// The password (or token used as a password).
    pub password: String,
    /// An OAuth refresh token (`identitytoken`), used instead of the
    /// username and password when set.
    pub identity_token: String,
    /// A static bearer token (`registrytoken`).
    pub registry_token: String,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |s: &str| if s.is_empty() { "" } else { "<redacted>" };
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("password", &redact(&self.password))
            .field("identity_token", &redact(&self.identity_token))
            .field("registry_token", &redact(&self.registry_token))
            .finish()
    }
}

impl AuthConfig {
    /// Whether there is nothing to authenticate with (anonymous access).
    pub fn is_anonymous(&self) -> bool {
        self.username.is_empty()
            && self.password.is_empty()
            && self.identity_token.is_empty()
            && self.registry_token.is_empty()
    }

    /// The `Credentials` answer, as buildkit's `toCredentials`: an identity
    /// token is the secret with an empty username.
    pub fn to_response(&self) -> CredentialsResponse {
        if self.identity_token.is_empty() {
            CredentialsResponse {
                username: self.username.clone(),
                secret: self.password.clone(),
            }
        } else {
            CredentialsResponse {
                username: String::new(),
                secret: self.identity_token.clone(),
            }
        }
    }
}

/// The parts of a Docker CLI configuration that hold credentials.
#[derive(Clone, Default)]
pub struct DockerConfig {
    origin: String,
    auths: BTreeMap<String, AuthConfig>,
    creds_store: String,
    cred_helpers: HashMap<String, String>,
    env_auths: Option<BTreeMap<String, AuthConfig>>,
    helper_dirs: Option<Vec<PathBuf>>,
}

impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerConfig")
            .field("origin", &self.origin)
            .field("auths", &self.auths.keys().collect::<Vec<_>>())
            .field("creds_store", &self.creds_store)
            .field("cred_helpers", &self.cred_helpers)
            .field(
                "env_auths",
                &self
                    .env_auths
                    .as_ref()
                    .map(|m| m.keys().collect::<Vec<_>>()),
            )
            .finish()
    }
}

/// The Docker config directory: `$DOCKER_CONFIG`, else `~/.docker`.
pub fn default_config_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".docker"))
}

impl DockerConfig {
    /// An empty configuration: no credentials at all.
    pub fn empty() -> Self {
        DockerConfig::default()
    }

    /// The user's configuration as the docker CLI finds it: the config
    /// file in [`default_config_dir`] (missing means empty) and
    /// `DOCKER_AUTH_CONFIG`.
    pub fn load_default() -> Result<Self, AuthError> {
        let mut config = match default_config_dir() {
            Some(dir) => Self::load(&dir.join("config.json"))?,
            None => Self::empty(),
        };
        if let Some(env) = std::env::var_os("DOCKER_AUTH_CONFIG").filter(|v| !v.is_empty()) {
            config = config.with_env_auth_config(&env.to_string_lossy())?;
        }
        Ok(config)
    }

    /// Loads a config file; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DockerConfig {
                origin: path.display().to_string(),
                ..Self::default()
            }),
            Err(source) => Err(AuthError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Parses the text of a config file; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, AuthError> {
        let invalid = |message: String| AuthError::Invalid {
            origin: origin.to_owned(),
            message,
        };
        let mut config = DockerConfig {
            origin: origin.to_owned(),
            ..Self::default()
        };
        if text.trim().is_empty() {
            return Ok(config);
        }
        let root: Value = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let root = match root {
            Value::Object(map) => map,
            Value::Null => return Ok(config),
            _ => return Err(invalid("not a JSON object".to_owned())),
        };
        config.auths = parse_auths(&root).map_err(invalid)?;
        config.creds_store = get_string(&root, "credsStore").map_err(invalid)?;
        if let Some(helpers) = get_ci(&root, "credHelpers") {
            match helpers {
                Value::Null => {}
                Value::Object(map) => {
                    for (k, v) in map {
                        match v {
                            Value::String(s) => {
                                config.cred_helpers.insert(k.clone(), s.clone());
                            }
                            Value::Null => {}
                            _ => return Err(invalid(format!("credHelpers.{k} is not a string"))),
                        }
                    }
                }
                _ => return Err(invalid("credHelpers is not an object".to_owned())),
            }
        }
        Ok(config)
    }

    /// Adds the credentials of a `DOCKER_AUTH_CONFIG` document, which take
    /// precedence over the config file for the servers they list.
    pub fn with_env_auth_config(mut self, json: &str) -> Result<Self, AuthError> {
        let env = Self::parse(json, "DOCKER_AUTH_CONFIG")?;
        self.env_auths = Some(env.auths);
        Ok(self)
    }

    /// Looks credential helpers up in these directories instead of `PATH`.
    pub fn with_helper_dirs(mut self, dirs: Vec<PathBuf>) -> Self {
        self.helper_dirs = Some(dirs);
        self
    }

    /// The credential helper (name suffix) in charge of `server`, if any.
    pub fn helper_for(&self, server: &str) -> Option<&str> {
        let helper = match self.cred_helpers.get(server) {
            Some(h) if !server.is_empty() => h.as_str(),
            _ => self.creds_store.as_str(),
        };
        (!helper.is_empty()).then_some(helper)
    }

    /// The credentials stored for `server` in the `auths` section: the
    /// exact key, else an entry whose key reduces to that host name.
    fn file_auth(&self, server: &str) -> AuthConfig {
        if let Some(ac) = self.auths.get(server) {
            return ac.clone();
        }
        self.auths
            .iter()
            .find(|(key, _)| convert_to_hostname(key) == server)
            .map(|(_, ac)| ac.clone())
            .unwrap_or_default()
    }

    /// The credentials for `server` (a config key such as a host name or
    /// [`DOCKER_HUB_CONFIG_KEY`]); runs a credential helper if one is
    /// configured. No credentials is an anonymous (empty) result.
    pub async fn auth_config(&self, server: &str) -> Result<AuthConfig, AuthError> {
        if let Some(ac) = self.env_auths.as_ref().and_then(|m| m.get(server)) {
            return Ok(ac.clone());
        }
        let Some(helper) = self.helper_for(server) else {
            return Ok(self.file_auth(server));
        };
        // The helper's answer replaces the file's credentials, even when
        // it has none.
        let mut ac = self.file_auth(server);
        let creds = self.run_helper(helper, server).await?;
        ac.username = creds.username;
        ac.password = creds.password;
        ac.identity_token = creds.identity_token;
        Ok(ac)
    }

    /// Runs `docker-credential-<helper> get` for `server`.
    async fn run_helper(&self, helper: &str, server: &str) -> Result<AuthConfig, AuthError> {
        let err = |message: String| AuthError::Helper {
            helper: helper.to_owned(),
            message,
        };
        let program = format!("docker-credential-{helper}");
        let program_path = match &self.helper_dirs {
            Some(dirs) => dirs
                .iter()
                .map(|d| d.join(&program))
                .find(|p| p.is_file())
                .ok_or_else(|| err(format!("{program} not found in the helper directories")))?,
            None => PathBuf::from(&program),
        };
        let mut child = tokio::process::Command::new(&program_path)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| err(format!("exec {program}: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(server.as_bytes())
                .await
                .map_err(|e| err(format!("writing to {program}: {e}")))?;
        }
        let output = child
            .wait_with_output()
            .await
            .map_err(|e| err(format!("running {program}: {e}")))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            let out = stdout.trim();
            if out == HELPER_NOT_FOUND {
                return Ok(AuthConfig::default());
            }
            return Err(err(format!("{}, out: `{out}`", output.status)));
        }
        let value: Value = serde_json::from_str(&stdout)
            .map_err(|e| err(format!("invalid answer from {program}: {e}")))?;
        let Value::Object(map) = value else {
            return Err(err(format!("invalid answer from {program}: not an object")));
        };
        let field =
            |name: &str| get_string(&map, name).map_err(|m| err(format!("invalid answer: {m}")));
        let username = field("Username")?;
        let secret = field("Secret")?;
        Ok(if username == "<token>" {
            AuthConfig {
                identity_token: secret,
                ..AuthConfig::default()
            }
        } else {
            AuthConfig {
                username,
                password: secret,
                ..AuthConfig::default()
            }
        })
    }
}

/// docker/cli's `ConvertToHostname`: strips a scheme and a path.
fn convert_to_hostname(maybe_url: &str) -> &str {
    let stripped = match maybe_url.split_once("://") {
        Some((_, rest)) => rest,
        None => maybe_url,
    };
    let host = stripped.split('/').next().unwrap_or(stripped);
    // A URL may carry user information before the host.
    match (maybe_url.contains("://"), host.rsplit_once('@')) {
        (true, Some((_, h))) => h,
        _ => host,
    }
}

/// A member of a JSON object, matched like Go's `encoding/json`: the exact
/// key, else a case-insensitive one.
fn get_ci<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    map.get(key).or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// A string member (missing or null is empty).
fn get_string(map: &Map<String, Value>, key: &str) -> Result<String, String> {
    match get_ci(map, key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("{key} is not a string")),
    }
}

/// The `auths` section, with `auth` decoded into username and password as
/// docker/cli's `LoadFromReader` does.
fn parse_auths(root: &Map<String, Value>) -> Result<BTreeMap<String, AuthConfig>, String> {
    let mut out = BTreeMap::new();
    let auths = match get_ci(root, "auths") {
        None | Some(Value::Null) => return Ok(out),
        Some(Value::Object(map)) => map,
        Some(_) => return Err("auths is not an object".to_owned()),
    };
    for (server, entry) in auths {
        let entry = match entry {
            Value::Object(map) => map,
            Value::Null => {
                out.insert(server.clone(), AuthConfig::default());
                continue;
            }
            _ => return Err(format!("auths.{server} is not an object")),
        };
        let ctx = |m: String| format!("auths.{server}: {m}");
        let mut ac = AuthConfig {
            username: get_string(entry, "username").map_err(ctx)?,
            password: get_string(entry, "password").map_err(ctx)?,
            identity_token: get_string(entry, "identitytoken").map_err(ctx)?,
            registry_token: get_string(entry, "registrytoken").map_err(ctx)?,
        };
        let auth = get_string(entry, "auth").map_err(ctx)?;
        if !auth.is_empty() {
            let (user, password) = decode_auth(&auth).map_err(ctx)?;
            ac.username = user;
            ac.password = password;
        }
        out.insert(server.clone(), ac);
    }
    Ok(out)
}

/// docker/cli's `decodeAuth`: base64 (standard alphabet, padded; line
/// breaks ignored) of `user:password`, the user not empty.
fn decode_auth(auth: &str) -> Result<(String, String), String> {
    let cleaned: String = auth.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(cleaned.as_bytes())
        .map_err(|e| format!("invalid auth: {e}"))?;
    let decoded = String::from_utf8_lossy(&decoded);
    match decoded.split_once(':') {
        Some((user, password)) if !user.is_empty() => {
            Ok((user.to_owned(), password.trim_matches('\0').to_owned()))
        }
        _ => Err("Invalid auth configuration file".to_owned()),
    }
}

/// The Auth service. Cheap to clone; clones share the credential cache.
#[derive(Clone, Debug)]
pub struct AuthService {
    config: Arc<DockerConfig>,
    cache: Arc<tokio::sync::Mutex<HashMap<String, (Instant, AuthConfig)>>>,
}

impl AuthService {
    /// A service answering from `config`.
    pub fn new(config: DockerConfig) -> Self {
        AuthService {
            config: Arc::new(config),
            cache: Arc::default(),
        }
    }

    /// A service for the user's Docker configuration
    /// ([`DockerConfig::load_default`]).
    pub fn from_env() -> Result<Self, AuthError> {
        Ok(Self::new(DockerConfig::load_default()?))
    }

    /// A service that always answers "anonymous".
    pub fn anonymous() -> Self {
        Self::new(DockerConfig::empty())
    }

    /// The tonic server wrapping this service, ready to be routed.
    pub fn into_server(self) -> AuthServer<Self> {
        AuthServer::new(self)
    }

    /// The credentials for a registry host as BuildKit names it
    /// (`registry-1.docker.io`, `ghcr.io`, `localhost:5000`), cached for a
    /// few minutes. Lookups run one at a time (credential helpers such as
    /// the macOS keychain misbehave when run concurrently).
    pub async fn credentials(&self, host: &str) -> Result<AuthConfig, AuthError> {
        let mut cache = self.cache.lock().await;
        if let Some((at, ac)) = cache.get(host) {
            if at.elapsed() < CACHE_TTL {
                return Ok(ac.clone());
            }
        }
        let ac = self.config.auth_config(config_key_for_host(host)).await?;
        cache.insert(host.to_owned(), (Instant::now(), ac.clone()));
        Ok(ac)
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn credentials(
        &self,
        request: Request<CredentialsRequest>,
    ) -> Result<Response<CredentialsResponse>, Status> {
        let host = request.into_inner().host;
        let ac = AuthService::credentials(self, &host)
            .await
            .map_err(|e| Status::unknown(e.to_string()))?;
        Ok(Response::new(ac.to_response()))
    }

    async fn fetch_token(
        &self,
        _request: Request<FetchTokenRequest>,
    ) -> Result<Response<FetchTokenResponse>, Status> {
        Err(Status::unimplemented(
            "FetchToken is not supported; use Credentials",
        ))
    }

    async fn get_token_authority(
        &self,
        _request: Request<GetTokenAuthorityRequest>,
    ) -> Result<Response<GetTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented(
            "client-side token authority is not supported",
        ))
    }

    async fn verify_token_authority(
        &self,
        _request: Request<VerifyTokenAuthorityRequest>,
    ) -> Result<Response<VerifyTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented(
            "client-side token authority is not supported",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[tokio::test]
    async fn auths_section() -> Result<(), AuthError> {
        let text = format!(
            r#"{{
              "auths": {{
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "ghcr.io": {{"username": "u", "password": "p"}},
                "https://registry.example.com/v2/": {{"auth": "{}", "username": "ignored"}},
                "idp.example.com": {{"identitytoken": "refresh"}},
                "empty.example.com": {{}}
              }}
            }}"#,
            b64("hubuser:hub:pass"),
            b64("exuser:expass"),
        );
        let config = DockerConfig::parse(&text, "test")?;
        let hub = config
            .auth_config(config_key_for_host("registry-1.docker.io"))
            .await?;
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("hubuser", "hub:pass")
        );
        let ghcr = config.auth_config("ghcr.io").await?;
        assert_eq!((ghcr.username.as_str(), ghcr.password.as_str()), ("u", "p"));
        let ex = config.auth_config("registry.example.com").await?;
        assert_eq!(
            (ex.username.as_str(), ex.password.as_str()),
            ("exuser", "expass")
        );
        let idp = config.auth_config("idp.example.com").await?;
        assert_eq!(
            idp.to_response(),
            CredentialsResponse {
                username: String::new(),
                secret: "refresh".into()
            }
        );
        assert!(config
            .auth_config("empty.example.com")
            .await?
            .is_anonymous());
        assert!(config
            .auth_config("other.example.com")
            .await?
            .is_anonymous());
        Ok(())
    }

    #[test]
    fn invalid_configs() {
        for text in [
            r#"{"auths": {"x": {"auth": "not base64!"}}}"#,
            r#"{"auths": {"x": {"auth": "dXNlcg=="}}}"#, // "user", no colon
            r#"{"auths": {"x": {"auth": "OnBhc3M="}}}"#, // ":pass", no user
            r#"{"auths": []}"#,
            r#"{"credsStore": 1}"#,
            "not json",
        ] {
            assert!(DockerConfig::parse(text, "t").is_err(), "{text}");
        }
        assert!(DockerConfig::parse("", "t").is_ok());
        assert!(DockerConfig::parse("{}", "t").is_ok());
    }

    #[test]
    fn hosts_and_helpers() -> Result<(), AuthError> {
        assert_eq!(config_key_for_host("docker.io"), DOCKER_HUB_CONFIG_KEY);
        assert_eq!(
            config_key_for_host("registry-1.docker.io"),
            DOCKER_HUB_CONFIG_KEY
        );
        assert_eq!(config_key_for_host("ghcr.io"), "ghcr.io");
        assert_eq!(
            convert_to_hostname("https://a.example.com:5000/v2/"),
            "a.example.com:5000"
        );
        assert_eq!(convert_to_hostname("a.example.com/path"), "a.example.com");
        let config = DockerConfig::parse(
            r#"{"credsStore": "desktop", "credHelpers": {"gcr.io": "gcloud", "x.io": ""}}"#,
            "t",
        )?;
        assert_eq!(config.helper_for("gcr.io"), Some("gcloud"));
        assert_eq!(config.helper_for("ghcr.io"), Some("desktop"));
        // An empty helper entry disables helpers for that server.
        assert_eq!(config.helper_for("x.io"), None);
        Ok(())
    }

    /// Writes a fake `docker-credential-<name>` that logs its stdin and
    /// answers per server.
    fn fake_helper(dir: &Path, name: &str) -> std::io::Result<()> {
        let script = r#"#!/bin/sh
[ "$1" = "get" ] || exit 2
read -r server
echo "$server" >> "$(dirname "$0")/requests.log"
case "$server" in
  https://index.docker.io/v1/) echo '{"ServerURL":"x","Username":"hubuser","Secret":"hubsecret"}' ;;
  tok.example.com) echo '{"ServerURL":"x","Username":"<token>","Secret":"refresh-token"}' ;;
  broken.example.com) echo 'keychain locked'; exit 1 ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac
"#;
        let path = dir.join(format!("docker-credential-{name}"));
        std::fs::write(&path, script)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        Ok(())
    }

    #[tokio::test]
    async fn credential_helpers() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        fake_helper(dir.path(), "fake")?;
        let text = format!(
            r#"{{"auths": {{"https://index.docker.io/v1/": {{}}, "file.example.com": {{"auth": "{}"}}}},
                "credsStore": "fake", "credHelpers": {{"helped.example.com": "fake", "file.example.com": ""}}}}"#,
            b64("fileuser:filepass")
        );
        let config = DockerConfig::parse(&text, "t")?.with_helper_dirs(vec![dir.path().to_owned()]);
        let svc = AuthService::new(config);

        let hub = svc.credentials("registry-1.docker.io").await?;
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("hubuser", "hubsecret")
        );
        let tok = svc.credentials("tok.example.com").await?;
        assert_eq!(tok.identity_token, "refresh-token");
        assert!(tok.username.is_empty());
        assert!(svc.credentials("helped.example.com").await?.is_anonymous());
        let file = svc.credentials("file.example.com").await?;
        assert_eq!(file.username, "fileuser");
        let err = svc
            .credentials("broken.example.com")
            .await
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("keychain locked")));

        // Cached: a second lookup does not run the helper again.
        svc.credentials("registry-1.docker.io").await?;
        let log = std::fs::read_to_string(dir.path().join("requests.log"))?;
        assert_eq!(log.matches("https://index.docker.io/v1/").count(), 1);

        // Through the gRPC trait.
        let resp = Auth::credentials(
            &svc,
            Request::new(CredentialsRequest {
                host: "tok.example.com".into(),
            }),
        )
        .await?
        .into_inner();
        assert_eq!(resp.secret, "refresh-token");
        let unimpl = svc
            .fetch_token(Request::new(FetchTokenRequest::default()))
            .await
            .err()
            .map(|s| s.code());
        assert_eq!(unimpl, Some(tonic::Code::Unimplemented));
        Ok(())
    }

    #[tokio::test]
    async fn missing_helper_is_an_error() -> Result<(), AuthError> {
        let config = DockerConfig::parse(r#"{"credsStore": "nope"}"#, "t")?
            .with_helper_dirs(vec![PathBuf::from("/nonexistent")]);
        assert!(config.auth_config("ghcr.io").await.is_err());
        Ok(())
    }

    #[tokio::test]
    async fn env_auth_config_wins() -> Result<(), AuthError> {
        let config = DockerConfig::parse(
            r#"{"auths": {"a.io": {"username": "file", "password": "f"}}}"#,
            "t",
        )?
        .with_env_auth_config(r#"{"auths": {"a.io": {"username": "env", "password": "e"}}}"#)?;
        assert_eq!(config.auth_config("a.io").await?.username, "env");
        assert!(config.auth_config("b.io").await?.is_anonymous());
        Ok(())
    }

    #[test]
    fn debug_redacts() -> Result<(), AuthError> {
        let ac = AuthConfig {
            username: "me".into(),
            password: "hunter2".into(),
            identity_token: "tok123".into(),
            registry_token: String::new(),
        };
        let dbg = format!("{ac:?}");
        assert!(!dbg.contains("hunter2") && !dbg.contains("tok123"));
        let config = DockerConfig::parse(
            r#"{"auths": {"a.io": {"username": "u", "password": "hunter2"}}}"#,
            "t",
        )?;
        assert!(!format!("{config:?}").contains("hunter2"));
        Ok(())
    }
}
