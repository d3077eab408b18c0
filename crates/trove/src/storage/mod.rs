//! The chunk store as a whole, across repositories and upload paths: plain LFS uploads
//! packed into the same xorbs as Xet uploads ([`ingest`]).

pub mod ingest;
