//! Wires one sidecar.
