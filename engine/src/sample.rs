//! Flow sampling that every observer agrees on: a flow is kept or left out
//! by its Community ID alone, so two agents that see the same connection
//! (the client's node and the server's, a tap and a host) keep or drop it
//! together, whatever their capture points, snap lengths or VLAN tags.
//!
//! With rate N, a flow is kept when the first 8 bytes of its Community ID
//! hash (the SHA-1 digest that the `1:` string encodes in base64), read as
//! a big-endian integer, are below ⌊2⁶⁴ / N⌋. That keeps a fraction 1/N of
//! flows (to within 2⁻⁶⁴), any tool can repeat the choice from the
//! `flow.community_id` attribute, and the flows kept at rate 2N are a subset
//! of those kept at N. Flows hash alike only with the same Community ID
//! seed.

use crate::community_id::CommunityId;

/// Keeps 1 in N flows by their Community ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowSampler {
    rate: u32,
    threshold: u64,
}

impl FlowSampler {
    /// Keeps 1 in `rate` flows (a rate of 0 is taken as 1: every flow).
    pub fn new(rate: u32) -> FlowSampler {
        let rate = rate.max(1);
        let threshold = if rate == 1 {
            u64::MAX
        } else {
            // ⌊2⁶⁴ / N⌋, computed without 2⁶⁴ itself.
            (u128::from(u64::MAX) + 1).div_euclid(u128::from(rate)) as u64
        };
        FlowSampler { rate, threshold }
    }

    /// N.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Whether the flow of `id` is kept.
    #[inline]
    pub fn keeps(&self, id: &CommunityId) -> bool {
        let mut head = [0u8; 8];
        head.copy_from_slice(&id.0[..8]);
        self.rate == 1 || u64::from_be_bytes(head) < self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(head: u64) -> CommunityId {
        let mut b = [0u8; 20];
        b[..8].copy_from_slice(&head.to_be_bytes());
        CommunityId(b)
    }

    #[test]
    fn the_threshold_splits_the_hash_space() {
        let s = FlowSampler::new(4);
        assert!(s.keeps(&id(0)));
        assert!(s.keeps(&id((1 << 62) - 1)));
        assert!(!s.keeps(&id(1 << 62)));
        assert!(!s.keeps(&id(u64::MAX)));
        assert!(FlowSampler::new(1).keeps(&id(u64::MAX)));
        assert_eq!(FlowSampler::new(0).rate(), 1);
    }

    #[test]
    fn flows_kept_at_a_higher_rate_are_kept_at_a_lower_one() {
        for head in (0..1000u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)) {
            if FlowSampler::new(10).keeps(&id(head)) {
                assert!(FlowSampler::new(5).keeps(&id(head)));
            }
        }
    }

    #[test]
    fn about_one_in_n_real_community_ids_is_kept() {
        use std::net::{IpAddr, Ipv4Addr};
        let s = FlowSampler::new(10);
        let n = 20_000u32;
        let kept = (0..n)
            .filter(|i| {
                let a = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
                let b = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
                s.keeps(&CommunityId::from_tuple(0, 6, a, 40000, b, 443))
            })
            .count();
        // Binomial(20000, 0.1): mean 2000, sd 42; 5 sd either way.
        assert!((1790..=2210).contains(&kept), "{kept}");
    }
}
