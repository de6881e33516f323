//! nimbus providers.
