//! TLS on the cluster's gRPC channels. A worker serves with a certificate
//! and its key; the coordinator, and each worker when it reads rows from
//! another, connects to `https://` addresses and trusts only the
//! certificate authority given (a cluster's own CA, or its one self-signed
//! certificate).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use datafusion::error::DataFusionError;
use datafusion_distributed::grpc::{BoxCloneSyncChannel, create_worker_client};
use datafusion_distributed::{ChannelResolver, WorkerChannel};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity, ServerTlsConfig};
use url::Url;

use crate::ClusterError;

/// The client side: the authority trusted, and one channel per worker,
/// reused by every statement.
#[derive(Clone)]
pub struct ClientTls {
    config: ClientTlsConfig,
    channels: Arc<Mutex<HashMap<Url, Channel>>>,
}

impl ClientTls {
    /// Trusts the certificates (PEM) in the file at `ca`.
    pub fn from_ca_file(ca: &Path) -> Result<ClientTls, ClusterError> {
        let pem = read_pem(ca, "CERTIFICATE")?;
        let config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
        // Checked now rather than at the first statement.
        Channel::from_static("https://localhost")
            .tls_config(config.clone())
            .map_err(|e| ClusterError::Tls(format!("{}: {e}", ca.display())))?;
        Ok(ClientTls {
            config,
            channels: Arc::default(),
        })
    }

    fn channel(&self, url: &Url) -> Result<Channel, DataFusionError> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(url) {
            return Ok(c.clone());
        }
        let failed =
            |e: &dyn std::fmt::Display| DataFusionError::Execution(format!("worker {url}: {e}"));
        let endpoint = Channel::from_shared(url.to_string())
            .map_err(|e| failed(&e))?
            .tls_config(self.config.clone())
            .map_err(|e| failed(&e))?;
        let channel = endpoint.connect_lazy();
        channels.insert(url.clone(), channel.clone());
        Ok(channel)
    }
}

#[async_trait::async_trait]
impl ChannelResolver for ClientTls {
    async fn get_worker_client_for_url(
        &self,
        url: &Url,
    ) -> Result<Box<dyn WorkerChannel>, DataFusionError> {
        let channel = self.channel(url)?;
        Ok(create_worker_client(BoxCloneSyncChannel::new(channel)))
    }
}

/// A worker's TLS: the certificate it serves with, and the authority it
/// trusts when reading from the other workers.
#[derive(Clone)]
pub struct WorkerTls {
    pub(crate) server: ServerTlsConfig,
    pub(crate) client: ClientTls,
}

impl WorkerTls {
    /// Serves with the certificate chain `cert` and private key `key`
    /// (PEM files); trusts `ca`, by default `cert` itself.
    pub fn from_files(
        cert: &Path,
        key: &Path,
        ca: Option<&Path>,
    ) -> Result<WorkerTls, ClusterError> {
        let identity = Identity::from_pem(
            read_pem(cert, "CERTIFICATE")?,
            read_pem(key, "PRIVATE KEY")?,
        );
        let server = ServerTlsConfig::new().identity(identity);
        // Checked now rather than at the first connection.
        tonic::transport::Server::builder()
            .tls_config(server.clone())
            .map_err(|e| {
                ClusterError::Tls(format!("{} and {}: {e}", cert.display(), key.display()))
            })?;
        Ok(WorkerTls {
            server,
            client: ClientTls::from_ca_file(ca.unwrap_or(cert))?,
        })
    }
}

/// The text of a PEM file holding at least one `what` block.
fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, ClusterError> {
    let bytes =
        std::fs::read(path).map_err(|e| ClusterError::Tls(format!("{}: {e}", path.display())))?;
    let text = String::from_utf8_lossy(&bytes);
    let found = text
        .lines()
        .any(|l| l.starts_with("-----BEGIN ") && l.trim_end().ends_with(&format!("{what}-----")));
    if !found {
        return Err(ClusterError::Tls(format!(
            "{}: no PEM {} in the file",
            path.display(),
            what.to_lowercase()
        )));
    }
    Ok(bytes)
}
