//! The client to the local app.
