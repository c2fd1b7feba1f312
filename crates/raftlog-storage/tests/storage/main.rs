//! Integration tests of the storage engine: openraft's own storage suite, recovery from torn and
//! corrupt files, SIGKILL crash loops and bad input. One binary, one module per concern.

mod bad_input;
mod crash;
mod kit;
mod recovery;
mod suite;
