//! Support library placeholder for the integration test crate.
