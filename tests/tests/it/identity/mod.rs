//! JWT verification with keys from a JWKS endpoint: RS256 and ES256, issuer,
//! audience, expiry, unknown `kid` refetch, and algorithm confusion.

mod jwks;
mod sign_in;
