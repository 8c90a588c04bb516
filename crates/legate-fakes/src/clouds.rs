//! [`FakeClouds`]: the three fakes started together, each trusting one Legate target —
//! what `legate demo` (development mode) and the end-to-end tests use.

use std::net::SocketAddr;

use crate::aws::{AwsConfig, AwsFake, AwsRole, DEFAULT_CLIENT_ID};
use crate::azure::{EntraApp, EntraConfig, EntraFake};
use crate::gcp::{GcpConfig, GcpFake, GcpServiceAccount};
use crate::server::{ANY_LOOPBACK_PORT, StartError};
use crate::verify::Options;

/// The AWS account of the fake clouds.
pub const AWS_ACCOUNT_ID: &str = "123456789012";
/// The AWS role the fake clouds' AWS target assumes.
pub const AWS_ROLE_NAME: &str = "legate-demo";
/// The Google workload identity pool provider of the fake clouds.
pub const GCP_PROVIDER: &str =
    "projects/123456789/locations/global/workloadIdentityPools/legate/providers/legate";
/// The Google service account the fake clouds' Google target may impersonate.
pub const GCP_SERVICE_ACCOUNT: &str = "deployer@legate-demo.iam.gserviceaccount.com";
/// The Entra tenant of the fake clouds.
pub const ENTRA_TENANT_ID: &str = "00000000-0000-0000-0000-000000000001";
/// The Entra application of the fake clouds.
pub const ENTRA_CLIENT_ID: &str = "00000000-0000-0000-0000-000000000002";
/// The Entra scope of the fake clouds' Azure target.
pub const ENTRA_SCOPE: &str = "https://management.azure.com/.default";
/// The assertion lifetime Legate promises (issue 11: at most 5 minutes); the fake
/// clouds refuse anything longer.
pub const MAX_ASSERTION_LIFETIME_SECS: u64 = 300;

/// The Legate target names the fake clouds trust, one per cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudTargets {
    /// The `aws` target.
    pub aws: String,
    /// The `gcp` target.
    pub gcp: String,
    /// The `azure` target.
    pub azure: String,
}

impl Default for CloudTargets {
    /// `aws-deploy`, `gcp-deploy`, `azure-deploy`.
    fn default() -> Self {
        CloudTargets {
            aws: "aws-deploy".to_owned(),
            gcp: "gcp-deploy".to_owned(),
            azure: "azure-deploy".to_owned(),
        }
    }
}

/// Where [`FakeClouds::start_on`] binds each fake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakeAddrs {
    /// AWS STS.
    pub aws: SocketAddr,
    /// Google STS + IAM Credentials.
    pub gcp: SocketAddr,
    /// Entra ID.
    pub entra: SocketAddr,
}

impl FakeAddrs {
    /// A free port on `127.0.0.1` for each fake (what [`FakeClouds::start`] uses).
    pub fn any_loopback_port() -> FakeAddrs {
        FakeAddrs {
            aws: ANY_LOOPBACK_PORT,
            gcp: ANY_LOOPBACK_PORT,
            entra: ANY_LOOPBACK_PORT,
        }
    }

    /// Fixed ports on `127.0.0.1`, for a configuration written in advance (`legate
    /// demo` and the embedded development configuration).
    pub fn loopback_ports(aws: u16, gcp: u16, entra: u16) -> FakeAddrs {
        let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
        FakeAddrs {
            aws: at(aws),
            gcp: at(gcp),
            entra: at(entra),
        }
    }
}

/// The subject Legate's assertion carries for `target`: `target/<name>`.
pub fn target_subject(target: &str) -> String {
    format!("target/{target}")
}

/// The three fakes, configured to trust one issuer (Legate's `public_url`) for one
/// target each:
///
/// - AWS: account [`AWS_ACCOUNT_ID`], OIDC provider = the issuer with client ID
///   `sts.amazonaws.com`, role [`AWS_ROLE_NAME`] (one-hour maximum session) trusting
///   `sub` = `target/<aws>`, session tags and source identity allowed;
/// - Google: provider [`GCP_PROVIDER`] (default audiences), attribute condition
///   admitting `target/<gcp>` only, service account [`GCP_SERVICE_ACCOUNT`]
///   impersonable by that subject;
/// - Entra: tenant [`ENTRA_TENANT_ID`], application [`ENTRA_CLIENT_ID`] with one
///   federated credential (issuer, `target/<azure>`, `api://AzureADTokenExchange`).
///
/// All three refuse assertions living longer than [`MAX_ASSERTION_LIFETIME_SECS`].
#[derive(Debug)]
pub struct FakeClouds {
    /// AWS STS.
    pub aws: AwsFake,
    /// Google STS + IAM Credentials.
    pub gcp: GcpFake,
    /// Entra ID.
    pub entra: EntraFake,
    targets: CloudTargets,
}

impl FakeClouds {
    /// Starts the three fakes with the system clock.
    ///
    /// # Errors
    /// When the issuer is neither `https://` nor loopback `http://`, or a port cannot
    /// be bound.
    pub async fn start(issuer: &str, targets: CloudTargets) -> Result<FakeClouds, StartError> {
        FakeClouds::start_with(issuer, targets, Options::default()).await
    }

    /// Starts the three fakes with `options` (clock, extra CA).
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub async fn start_with(
        issuer: &str,
        targets: CloudTargets,
        options: Options,
    ) -> Result<FakeClouds, StartError> {
        FakeClouds::start_on(issuer, targets, options, FakeAddrs::any_loopback_port()).await
    }

    /// Starts the three fakes with `options`, each on its address in `addrs`.
    ///
    /// # Errors
    /// As [`start`](Self::start); a taken port is [`StartError::Listen`] (with
    /// [`std::io::ErrorKind::AddrInUse`]), and the fakes already started are stopped.
    pub async fn start_on(
        issuer: &str,
        targets: CloudTargets,
        options: Options,
        addrs: FakeAddrs,
    ) -> Result<FakeClouds, StartError> {
        let max = Some(MAX_ASSERTION_LIFETIME_SECS);
        let mut aws = AwsConfig::new(issuer).with_role(
            AwsRole::new(AWS_ROLE_NAME)
                .trusting(DEFAULT_CLIENT_ID, target_subject(&targets.aws))
                .allow_tags_and_source_identity(),
        );
        aws.account_id = AWS_ACCOUNT_ID.to_owned();
        aws.max_assertion_lifetime_secs = max;

        let gcp_subject = target_subject(&targets.gcp);
        let mut gcp = GcpConfig::new(issuer, GCP_PROVIDER)
            .allowing_subjects([gcp_subject.clone()])
            .with_service_account(
                GcpServiceAccount::new(GCP_SERVICE_ACCOUNT).impersonable_by(gcp_subject),
            );
        gcp.max_assertion_lifetime_secs = max;

        let mut entra = EntraConfig::new(ENTRA_TENANT_ID).with_app(
            EntraApp::new(ENTRA_CLIENT_ID).trusting(issuer, target_subject(&targets.azure)),
        );
        entra.max_assertion_lifetime_secs = max;

        Ok(FakeClouds {
            aws: AwsFake::start_on(aws, options.clone(), addrs.aws).await?,
            gcp: GcpFake::start_on(gcp, options.clone(), addrs.gcp).await?,
            entra: EntraFake::start_on(entra, options, addrs.entra).await?,
            targets,
        })
    }

    /// The target names.
    pub fn targets(&self) -> &CloudTargets {
        &self.targets
    }

    /// The ARN of the role the AWS target assumes.
    pub fn aws_role_arn(&self) -> String {
        self.aws.role_arn(AWS_ROLE_NAME)
    }

    /// Three `[[target]]` tables (issue 11's keys) pointing Legate at these fakes: the
    /// AWS target with `endpoint`, the Google target with `sts_endpoint`,
    /// `iam_credentials_endpoint` and `service_account`, the Azure target with
    /// `authority_host`.
    pub fn targets_toml(&self) -> String {
        let q = |s: &str| serde_json::Value::from(s).to_string();
        format!(
            "[[target]]\nname = {aws}\nkind = \"aws\"\nrole_arn = {role}\nendpoint = {aws_url}\n\n\
             [[target]]\nname = {gcp}\nkind = \"gcp\"\nworkload_identity_provider = {provider}\n\
             service_account = {sa}\nsts_endpoint = {gcp_url}\niam_credentials_endpoint = {gcp_url}\n\n\
             [[target]]\nname = {azure}\nkind = \"azure\"\ntenant_id = {tenant}\nclient_id = {client}\n\
             scope = {scope}\nauthority_host = {entra_url}\n",
            aws = q(&self.targets.aws),
            role = q(&self.aws_role_arn()),
            aws_url = q(self.aws.url()),
            gcp = q(&self.targets.gcp),
            provider = q(GCP_PROVIDER),
            sa = q(GCP_SERVICE_ACCOUNT),
            gcp_url = q(self.gcp.url()),
            azure = q(&self.targets.azure),
            tenant = q(ENTRA_TENANT_ID),
            client = q(ENTRA_CLIENT_ID),
            scope = q(ENTRA_SCOPE),
            entra_url = q(self.entra.url()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three ports free a moment ago (the listeners are closed before returning).
    fn free_ports() -> (u16, u16, u16) {
        let l = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (a, b, c) = (l(), l(), l());
        let port = |l: &std::net::TcpListener| l.local_addr().unwrap().port();
        (port(&a), port(&b), port(&c))
    }

    /// Stops `legate demo` from writing a configuration whose endpoints the fakes do
    /// not answer at: each fake listens on exactly the port it was given.
    #[tokio::test]
    async fn fakes_listen_on_the_fixed_ports_they_are_given() {
        let (aws, gcp, entra) = free_ports();
        let clouds = FakeClouds::start_on(
            "http://127.0.0.1:1",
            CloudTargets::default(),
            Options::default(),
            FakeAddrs::loopback_ports(aws, gcp, entra),
        )
        .await
        .unwrap();
        assert_eq!(clouds.aws.url(), format!("http://127.0.0.1:{aws}"));
        assert_eq!(clouds.gcp.url(), format!("http://127.0.0.1:{gcp}"));
        assert_eq!(clouds.entra.url(), format!("http://127.0.0.1:{entra}"));
        let (status, _) = crate::testutil::post_form(&format!("{}/", clouds.aws.url()), &[]).await;
        assert_eq!(status, 400, "the AWS fake answers on its port");
        assert!(
            clouds
                .targets_toml()
                .contains(&format!("endpoint = \"http://127.0.0.1:{aws}\""))
        );
    }

    /// Stops a taken port from being reported vaguely: the error names the address and
    /// carries `AddrInUse`, so `legate demo` can say which port to free.
    #[tokio::test]
    async fn a_taken_port_is_reported_with_its_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let (free_aws, free_gcp, _) = free_ports();
        let e = FakeClouds::start_on(
            "http://127.0.0.1:1",
            CloudTargets::default(),
            Options::default(),
            FakeAddrs::loopback_ports(free_aws, free_gcp, port),
        )
        .await
        .unwrap_err();
        match &e {
            StartError::Listen { addr, source } => {
                assert_eq!(addr.port(), port);
                assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
            }
            other => panic!("expected Listen, got {other:?}"),
        }
        assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    }
}
