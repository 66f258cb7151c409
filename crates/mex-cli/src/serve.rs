//! `mex serve`: the MCP server (mex-mcp) over the home's runtime.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use mex_envelope::EngineId;
use mex_mcp::{ConsentOptions, HttpAuth, MexServer, Options};

use crate::CliError;
use crate::exit;
use crate::home::{Home, engines};

/// File in the home holding the HTTP bearer token (used when no
/// `--token-file` is given).
pub const TOKEN_FILE: &str = "mcp-token";

/// `mex serve`
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("transport").required(true).args(["stdio", "http"])))]
pub struct ServeArgs {
    /// Speak MCP over stdin/stdout (what desktop clients spawn).
    #[arg(long)]
    pub stdio: bool,
    /// Serve streamable HTTP at http://ADDR/mcp (e.g. 127.0.0.1:8765).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// The bearer token file for --http (default: <home>/mcp-token).
    #[arg(long, value_name = "FILE", requires = "http")]
    pub token_file: Option<PathBuf>,
    /// Serve --http without a token; only on a loopback address.
    #[arg(long, requires = "http", conflicts_with = "token_file")]
    pub insecure_no_auth: bool,
}

/// Engines with an installed implementation and a valid certificate.
fn callable(home: &Home) -> Result<BTreeSet<EngineId>, CliError> {
    let registry = home.registry()?;
    let certifier = home.certifier();
    let shipped: Vec<_> = engines()
        .iter()
        .filter_map(|e| {
            let code = mex_runtime::code_digest(&**e).ok()?;
            Some((
                e.engine_id(),
                e.implementation_id().to_owned(),
                e.implementation_version(),
                code,
            ))
        })
        .collect();
    Ok(registry
        .engines()
        .filter(|engine| {
            engine.implementations.iter().any(|i| {
                shipped
                    .iter()
                    .filter(|(e, imp, v, _)| *e == engine.id && *imp == i.id && *v == i.version)
                    .any(|(_, _, _, code)| {
                        mex_runtime::Certifier::check(
                            &certifier, &engine.id, &i.id, &i.version, code,
                        )
                        .is_ok()
                    })
            })
        })
        .map(|e| e.id.clone())
        .collect())
}

fn token(home: &Home, args: &ServeArgs) -> Result<HttpAuth, CliError> {
    if args.insecure_no_auth {
        return Ok(HttpAuth::InsecureNoAuth);
    }
    let path = args
        .token_file
        .clone()
        .unwrap_or_else(|| home.root.join(TOKEN_FILE));
    let bytes = mex_envelope::json::read_file_at_most(&path, 4096).map_err(|e| {
        CliError::usage(format!(
            "no bearer token for --http: cannot read {}: {e}; write a token of at least {} characters there (or pass --token-file FILE), or use --insecure-no-auth on a loopback address",
            path.display(),
            mex_mcp::MIN_TOKEN_LEN
        ))
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        CliError::usage(format!(
            "the bearer token in {} is not UTF-8 text; write the token as plain text",
            path.display()
        ))
    })?;
    Ok(HttpAuth::Bearer(text.trim().to_owned()))
}

/// Run the server until the client disconnects (stdio) or the process is
/// stopped (HTTP).
pub fn run(home: &Home, args: &ServeArgs) -> Result<u8, CliError> {
    let auth = match args.http {
        Some(_) => Some(token(home, args)?),
        None => None,
    };
    let runtime = Arc::new(home.runtime()?);
    let callable = callable(home)?;
    if callable.is_empty() {
        tracing::warn!(
            "no engine is callable (installed and certified); run `mex conformance` first"
        );
    }
    let mut options = Options::new(callable, home.policy_path.display().to_string());
    // Consent through elicitation writes the policy file, then rebuilds the
    // runtime from the home so the new consent is in force.
    let rebuild_home = Home {
        root: home.root.clone(),
        registry_path: home.registry_path.clone(),
        registry_dirs: home.registry_dirs.clone(),
        policy_path: home.policy_path.clone(),
        policy_named: home.policy_named,
    };
    options.consent = Some(ConsentOptions::new(Arc::new(move || {
        rebuild_home.runtime().map_err(|e| e.message)
    })));
    let server = MexServer::new(runtime, options);
    let result = match (args.http, auth) {
        (Some(addr), Some(auth)) => mex_mcp::serve_http(server, addr, auth, |local| {
            eprintln!("mex: serving MCP at http://{local}/mcp");
        }),
        _ => mex_mcp::serve_stdio(server),
    };
    result.map_err(|e| match e {
        mex_mcp::McpServerError::Auth(m) => CliError::usage(m),
        mex_mcp::McpServerError::Bind { .. } => CliError::usage(e.to_string()),
        other => CliError::internal(other.to_string()),
    })?;
    Ok(exit::OK)
}
