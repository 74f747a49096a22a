//! IO-free HTTP/1.1.
