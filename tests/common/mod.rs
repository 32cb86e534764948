//! Test harness shared by the integration tests that run Backstop in the sandbox world.
#![allow(dead_code)] // each test crate uses a different part of the harness

pub mod deploy;
pub mod monitoring;
pub mod sandbox;
