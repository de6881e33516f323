//! A test-only stand-in for the Kubernetes API server (issue 13), honest about what it is:
//! there is no real API server to be had on these machines (no registry for images; the
//! third-party fakes fail on namespaces, server-side apply and label selectors). It is built
//! up in parts, each checked against the Kubernetes documentation and against clients no one
//! here wrote: the server-side apply rules ([`ssa`]) and the HTTP API over them ([`server`]).

mod catalogue;
mod checks;
mod config;
pub mod server;
pub mod ssa;
