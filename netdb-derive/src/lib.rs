//! Derive macros for netdb models.
//!
//! The derives (`CortexModel`, `CortexEvents`, `NetDb`) arrive with the code-generation
//! issue; until then this crate only reserves its place in the workspace so the layout
//! of `DESIGN.md` holds from the first commit.
