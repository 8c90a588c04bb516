//! Strict fakes of the cloud token services Legate exchanges its assertions at, for
//! tests and `legate demo`.
//!
//! What it does: [`AwsFake`] (STS `AssumeRoleWithWebIdentity`), [`GcpFake`] (Google STS
//! `v1/token` and IAM Credentials `generateAccessToken`) and [`EntraFake`] (the Entra ID
//! v2 token endpoint with a federated client assertion) each run an axum server on
//! `127.0.0.1:0` (or a given address: `start_on`) and verify the assertion the way the real service does — OIDC
//! discovery at its `iss`, the JWKS, the key by `kid`, the algorithm the service
//! accepts, the signature (checked by `jsonwebtoken`, independently of Legate's own
//! verifier), `exp`/`iat`/`nbf`, `aud`, `sub` — then apply the service's own rules and
//! answer in its documented shapes and error envelopes. Each fake's module comment cites
//! the protocol it follows and lists exactly what it checks. [`FakeClouds`] starts all
//! three trusting one issuer, one target each.
//!
//! Every fake exposes its `url()`, request counters ([`Stats`]), the requests it
//! received ([`RecordedRequest`]), what it issued, and a fault knob ([`Fault`]: down,
//! slow, 5xx, throttled, IdP unreachable) settable at runtime. Time comes from an
//! injected [`legate_core::Clock`] ([`Options`]), so a test can share Legate's manual
//! clock.
//!
//! What it does not do: no TLS on the fakes themselves (plain HTTP on loopback, which
//! Legate accepts for endpoint overrides only on loopback); no caching of issuer keys
//! (every assertion fetches discovery and JWKS); no session policies, delegation chains
//! or flexible federated credentials. The real services' exact wording is used where it
//! is documented or widely reported; elsewhere the messages are the fakes' own.
//!
//! Layout: `server` (listener, fault knob, gate middleware, counters), `verify` (the
//! assertion check), `aws`, `gcp`, `azure` (one service each), `clouds`
//! ([`FakeClouds`]), `issuer` ([`TestIssuer`], a tiny OIDC issuer for testing the fakes
//! without Legate), `wire` (time formats, random ids).

pub mod aws;
pub mod azure;
mod clouds;
pub mod gcp;
pub mod issuer;
mod server;
#[cfg(test)]
mod testutil;
mod verify;
mod wire;

pub use aws::{AwsConfig, AwsFake, AwsRole, AwsSession, AwsTrust};
pub use azure::{EntraApp, EntraConfig, EntraFake, EntraIssued, FederatedCredential};
pub use clouds::{
    AWS_ACCOUNT_ID, AWS_ROLE_NAME, CloudTargets, ENTRA_CLIENT_ID, ENTRA_SCOPE, ENTRA_TENANT_ID,
    FakeAddrs, FakeClouds, GCP_PROVIDER, GCP_SERVICE_ACCOUNT, MAX_ASSERTION_LIFETIME_SECS,
    target_subject,
};
pub use gcp::{GcpConfig, GcpFake, GcpFederatedToken, GcpImpersonation, GcpServiceAccount};
pub use issuer::TestIssuer;
pub use server::{Fault, FaultError, HISTORY, MAX_BODY_BYTES, RecordedRequest, StartError, Stats};
pub use verify::Options;
pub use wire::SystemClock;
