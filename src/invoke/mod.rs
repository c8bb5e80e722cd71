//! Service invocation: outbound to peer sidecars and inbound from them.
