//! Runnable netdb programs live beside this file as cargo examples
//! (`cargo run -p netdb-examples --example <name>`); this library is empty on purpose.
