//! AWS SDK clients: the process's SDK configuration (bounded retries and
//! timeouts, an HTTPS client trusting only the Amazon roots) and clients built
//! from it on first use. A leaf: it knows nothing of the stores or the wiring.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

static AWS: OnceCell<aws_config::SdkConfig> = OnceCell::const_new();

/// The AWS SDK configuration, loaded once per process: standard retries (3
/// attempts with backoff) and timeouts, so an unreachable or throttling service
/// turns into a bounded wait and then a 503, never a hung invocation.
pub async fn aws_config() -> &'static aws_config::SdkConfig {
    AWS.get_or_init(|| async {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_millis(500))
            .operation_attempt_timeout(Duration::from_secs(2))
            .operation_timeout(Duration::from_secs(5))
            .build();
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(aws_http_client())
            .timeout_config(timeouts)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3))
            .load()
            .await
    })
    .await
}

/// An AWS SDK client whose configuration ([`aws_config`]: the credential and
/// region chains, the TLS context) is built by the first call that needs it,
/// not at cold start: a request that never reaches the service (a missing
/// token, a health check) never pays for it. Building it is CPU work, not I/O,
/// so starting it in the background would gain nothing on a Lambda instance's
/// single vCPU (measured: it delayed the first response as much). Clones share
/// one client.
pub struct AwsClient<C> {
    cell: Arc<OnceCell<C>>,
}

/// The SDK clients built from the process's [`aws_config`].
pub trait SdkClient: Send + Sync + 'static {
    fn from_sdk_config(config: &aws_config::SdkConfig) -> Self;
}

impl SdkClient for aws_sdk_dynamodb::Client {
    fn from_sdk_config(config: &aws_config::SdkConfig) -> Self {
        Self::new(config)
    }
}

impl SdkClient for aws_sdk_kms::Client {
    fn from_sdk_config(config: &aws_config::SdkConfig) -> Self {
        Self::new(config)
    }
}

impl SdkClient for aws_sdk_secretsmanager::Client {
    fn from_sdk_config(config: &aws_config::SdkConfig) -> Self {
        Self::new(config)
    }
}

impl SdkClient for aws_sdk_cognitoidentityprovider::Client {
    fn from_sdk_config(config: &aws_config::SdkConfig) -> Self {
        Self::new(config)
    }
}

impl<C> Clone for AwsClient<C> {
    fn clone(&self) -> Self {
        Self { cell: self.cell.clone() }
    }
}

impl<C: SdkClient> AwsClient<C> {
    /// A client built from the process's [`aws_config`] on first use.
    pub fn lazy() -> Self {
        Self { cell: Arc::new(OnceCell::new()) }
    }

    /// The client, built on the first call (building cannot fail: credentials resolve per request).
    pub async fn get(&self) -> &C {
        self.cell.get_or_init(|| async { C::from_sdk_config(aws_config().await) }).await
    }
}

/// A client that is already built (tests, the command-line tool).
impl<C: SdkClient> From<C> for AwsClient<C> {
    fn from(client: C) -> Self {
        Self { cell: Arc::new(OnceCell::new_with(Some(client))) }
    }
}

/// The roots AWS service endpoints chain to (Amazon Trust Services, and the
/// Starfield root that cross-signs them), compiled in.
const AMAZON_TRUST_SERVICES: &[u8] = include_bytes!("../certs/amazon-trust-services.pem");

/// The HTTPS client of every AWS SDK client: rustls on aws-lc-rs trusting only
/// the Amazon Trust Services roots, plus the PEM bundle named by
/// `PORTCULLIS_AWS_CA_BUNDLE` for an endpoint behind another CA (a TLS-inspecting
/// proxy, a private emulator). Trusting a five-root list instead of the system
/// store narrows who can impersonate KMS, and skips reading and parsing every
/// file of `/etc/ssl/certs` at cold start (about 5 ms).
fn aws_http_client() -> aws_sdk_kms::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
    let mut trust = TrustStore::empty().with_native_roots(false).with_pem_certificate(AMAZON_TRUST_SERVICES);
    if let Some(path) = crate::config::aws_ca_bundle() {
        match std::fs::read(&path) {
            Ok(pem) => trust.add_pem_certificate(pem),
            // Fail closed: without the bundle, that endpoint is simply not trusted.
            Err(e) => {
                tracing::error!(path, error = %e, "PORTCULLIS_AWS_CA_BUNDLE unreadable; not trusted");
                &mut trust
            }
        };
    }
    // `build` cannot fail (it only moves its fields); a fallback to the default
    // context would mean the system store, so there is none.
    let context = TlsContext::builder().with_trust_store(trust).build().expect("TLS context");
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{pem::PemObject, CertificateDer};

    #[tokio::test]
    async fn a_lazy_client_is_built_once_on_first_use_and_shared_by_clones() {
        let lazy = AwsClient::<aws_sdk_dynamodb::Client>::lazy();
        assert!(lazy.cell.get().is_none(), "nothing is built before the first call");
        let copy = lazy.clone();
        let first: *const _ = copy.get().await;
        assert!(lazy.cell.get().is_some());
        assert!(std::ptr::eq(first, lazy.get().await), "clones share one client");
    }

    #[test]
    fn the_compiled_in_trust_store_holds_the_five_amazon_roots() {
        let certs: Vec<_> =
            CertificateDer::pem_slice_iter(AMAZON_TRUST_SERVICES).collect::<Result<_, _>>().expect("PEM");
        assert_eq!(certs.len(), 5);
        let mut roots = rustls::RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(certs);
        assert_eq!((added, ignored), (5, 0));
    }
}
