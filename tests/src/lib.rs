//! Test support shared by every test binary: the moto server harness, backend
//! fixtures, and the conformance suites that the embedded and the AWS backends
//! both have to pass.

pub mod app;
pub mod conformance;
pub mod fixtures;
pub mod flows;
pub mod moto;
