//! The app-facing API: HTTP on :3500 (and gRPC on :50001 in a later change).
