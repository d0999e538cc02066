//! Domain models declared with the netdb derives.
//!
//! The `tasks` and `memories` models land with the derive issue; this crate is the place
//! they will live.
