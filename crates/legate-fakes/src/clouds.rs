//! [`FakeClouds`]: the three fakes started together, each trusting one Legate target —
//! what `legate demo` (development mode) and the end-to-end tests use.

use crate::aws::{AwsConfig, AwsFake, AwsRole, DEFAULT_CLIENT_ID};
use crate::azure::{EntraApp, EntraConfig, EntraFake};
use crate::gcp::{GcpConfig, GcpFake, GcpServiceAccount};
use crate::server::StartError;
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
            aws: AwsFake::start_with(aws, options.clone()).await?,
            gcp: GcpFake::start_with(gcp, options.clone()).await?,
            entra: EntraFake::start_with(entra, options).await?,
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
