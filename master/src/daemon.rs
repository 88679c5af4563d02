//! `pmesh ca init` and `pmesh serve`: creating a mesh, and running the master.
//!
//! [`serve`] takes a bound listener and a shutdown token, so tests run it on port 0 and stop
//! it at will; `pmesh serve` (`cli::serve`) adds signals and logging around it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use pmesh_proto::identity::{Identity, Role};
use pmesh_proto::tls::{ClientAuth, ReloadableCert};
use pmesh_rt::v1::master_server::MasterServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::MasterConfig;
use crate::credentials::{self, Credentials};
use crate::error::{now_unix, unix};
use crate::identity::{self, pem_to_der, pem_to_key, Ca, PkiPaths};
use crate::policy::MasterPolicy;
use crate::service::{MasterService, MasterState};
use crate::store::Store;
use pmesh_rt::files;

/// The largest message the master accepts: a pattern bundle pushed by an operator.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// What `ca init` made.
#[derive(Debug)]
pub struct InitSummary {
    pub ca_fingerprint: String,
    pub credentials: PathBuf,
    pub config: PathBuf,
}

/// The database folder of a data directory.
pub fn db_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("db")
}

/// Creates a mesh in `data_dir`: the CA, the master's identity, the bundle-signing key, the
/// local admin credential and `master.toml`.
///
/// # Errors
/// When a CA already exists there (nothing is touched then), or on any I/O failure.
pub fn ca_init(data_dir: &Path, config: &MasterConfig) -> anyhow::Result<InitSummary> {
    let paths = PkiPaths::new(data_dir);
    identity::ensure_absent(&paths)?;
    std::fs::create_dir_all(&paths.dir).with_context(|| format!("creating {}", paths.dir.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&paths.dir, std::fs::Permissions::from_mode(0o700))?;

    let (ca, ca_key) = Ca::generate()?;
    files::write_private(&paths.ca_key(), ca_key.serialize_pem().as_bytes())?;
    files::write_public(&paths.ca_cert(), ca.cert_pem().as_bytes())?;
    identity::generate_bundle_key(&paths)?;

    let store = Store::open(&db_dir(data_dir))?;
    issue_master_cert(&ca, &paths, &store, config)?;
    let admin = Identity::new(Role::Admin, "admin")?;
    let (issued, key) = ca.issue_local(&admin, config.admin_cert_lifetime, config.clock_skew)?;
    store.record_issued(&issued.serial, &admin.uri(), unix(issued.not_after))?;
    store.flush()?;
    let credentials_path = data_dir.join(credentials::FILE_NAME);
    Credentials { master: config.advertise(), name: admin.name, ca: ca.cert_pem().to_owned(), cert: issued.pem, key: key.serialize_pem() }
        .save(&credentials_path)?;

    let config_path = MasterConfig::path(data_dir);
    let text = format!(
        "# pmesh master configuration; every setting and its default is in the README.\n{}",
        toml::to_string(config).context("encoding the configuration")?
    );
    files::write_public(&config_path, text.as_bytes())?;
    Ok(InitSummary { ca_fingerprint: ca.fingerprint(), credentials: credentials_path, config: config_path })
}

fn issue_master_cert(ca: &Ca, paths: &PkiPaths, store: &Store, config: &MasterConfig) -> anyhow::Result<()> {
    let master = Identity::master();
    let (issued, key) = ca.issue_local(&master, config.master_cert_lifetime, config.clock_skew)?;
    store.record_issued(&issued.serial, &master.uri(), unix(issued.not_after))?;
    files::write_private(&paths.master_key(), key.serialize_pem().as_bytes())?;
    files::write_public(&paths.master_cert(), issued.pem.as_bytes())?;
    Ok(())
}

/// Re-issues the master's certificate when less than a third of its lifetime remains.
fn ensure_master_cert(ca: &Ca, paths: &PkiPaths, store: &Store, config: &MasterConfig) -> anyhow::Result<()> {
    let pem = files::read_string(&paths.master_cert())?;
    let facts = pmesh_proto::identity::inspect(pem_to_der(&pem)?.as_ref())?;
    let remaining = facts.not_after - now_unix();
    if remaining < (config.master_cert_lifetime.as_secs() / 3) as i64 {
        tracing::info!(remaining_s = remaining, "re-issuing the master certificate");
        issue_master_cert(ca, paths, store, config)?;
    }
    Ok(())
}

/// Runs the master on `listener` until `shutdown` is cancelled.
///
/// # Errors
/// When the data directory has no CA, the database cannot be opened, or the server fails.
pub async fn serve(listener: TcpListener, data_dir: &Path, config: MasterConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let paths = PkiPaths::new(data_dir);
    let ca = Ca::load(&paths)?;
    let store = Store::open(&db_dir(data_dir))?;
    ensure_master_cert(&ca, &paths, &store, &config)?;
    let purged = store.purge_tokens(now_unix() - 24 * 3600)?;
    if purged > 0 {
        tracing::info!(purged, "dropped join tokens expired for over a day");
    }

    let master_cert = pem_to_der(&files::read_string(&paths.master_cert())?)?;
    let master_key = pem_to_key(&files::read_string(&paths.master_key())?)?;
    let chain = vec![master_cert.clone(), ca.cert_der().clone()];
    let server_certs = Arc::new(ReloadableCert::new(chain, master_key.clone_key())?);
    let server_tls = pmesh_proto::tls::server_config(ca.cert_der(), server_certs, ClientAuth::Optional)?;
    let client_tls = pmesh_proto::tls::client_config(ca.cert_der(), Some((vec![master_cert.clone()], master_key)))?;

    let presented = pmesh_proto::identity::inspect(master_cert.as_ref())?;
    let connections = Arc::new(
        crate::registry::Connections::new(Arc::new(client_tls), crate::dispatch::CALL_TIMEOUT)
            .presenting(presented.not_before, presented.not_after),
    );
    let dispatcher = Arc::new(crate::dispatch::Dispatcher::new(store.clone(), paths.clone(), connections.clone()));
    let depot = crate::depot::Depot::open(&crate::depot::dir(data_dir), store.clone(), pmesh_rt::fetch::FetchConfig::default())?;
    let labs = crate::labs::Labs::new(store.clone(), dispatcher.clone(), shutdown.clone());
    let state = Arc::new(MasterState {
        store: store.clone(),
        bundle_public_key: identity::bundle_public_key(&paths)?,
        ca,
        config: config.clone(),
        dispatcher: dispatcher.clone(),
        depot: Arc::new(depot),
        labs: labs.clone(),
    });
    let consumers = tokio::spawn(dispatcher.supervise(config.check_interval, shutdown.clone()));
    // Labs a killed master left coming up go on: their records say what runs and what waits.
    labs.resume()?;
    let monitor = tokio::spawn(crate::registry::monitor(store.clone(), connections, config.check_interval, shutdown.clone()));
    tracing::info!(listen = %listener.local_addr()?, data_dir = %data_dir.display(), "master serving");
    let policy = Arc::new(MasterPolicy { store: store.clone() });
    let service = MasterServer::new(MasterService::new(state)).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let result = pmesh_rt::serve(listener, Arc::new(server_tls), policy, service, shutdown, config.shutdown_grace).await;
    monitor.abort();
    consumers.abort();
    store.flush()?;
    tracing::info!("master stopped");
    result
}
