//! The cost of checking a session token, the one check every REST call and
//! `hello` makes: `cargo run --release --example token_verify`.
//!
//! Prints the median of 5 rounds of 200,000 verifications, in nanoseconds
//! per token, beside a baseline measured in the same run (a SHA-256 of the
//! same bytes with no HMAC and no decoding), so a noisy machine shows in
//! both numbers alike.

use std::time::Instant;

use imagechat::domain::auth::{anonymous_user, Actor, TokenKey};
use imagechat::ids::TenantId;
use sha2::Digest;

const N: u32 = 200_000;

fn main() {
    let key = TokenKey::new(vec![7; 32]);
    let actor = Actor {
        tenant_id: TenantId::from("acme-design"),
        user: anonymous_user(),
        moderator: false,
        expires_at: 4_000_000_000_000,
    };
    let token = key.sign(&actor);
    let mut verify = Vec::new();
    let mut floor = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..N {
            assert!(key.verify(std::hint::black_box(&token), 0).is_some());
        }
        verify.push(t.elapsed().as_nanos() / u128::from(N));
        let t = Instant::now();
        for _ in 0..N {
            std::hint::black_box(sha2::Sha256::digest(std::hint::black_box(token.as_bytes())));
        }
        floor.push(t.elapsed().as_nanos() / u128::from(N));
    }
    verify.sort_unstable();
    floor.sort_unstable();
    println!(
        "token of {} bytes: verify {} ns (median of 5), SHA-256 of it {} ns, ratio {:.2}",
        token.len(),
        verify[2],
        floor[2],
        verify[2] as f64 / floor[2].max(1) as f64
    );
}
