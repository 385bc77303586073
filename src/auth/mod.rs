//! Credentials and tokens: password hashing on a bounded pool, signing keys and JWKS, access
//! and refresh JWTs, and the stateless activation/reset tokens.

pub mod account_tokens;
pub mod hash_pool;
pub mod jwt;
pub mod keys;
pub mod password;
mod signer;
pub mod totp;
mod verified_cache;
