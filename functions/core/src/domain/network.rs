//! Which addresses outbound requests (model outputs, webhooks) may reach (docs/design.md,
//! "Failure rules"): only public ones, unless local URLs are allowed for a local stack.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether an address may be reached from the public internet. Every special-purpose range is
/// refused, and so is every IPv6 form that carries an IPv4 address (mapped, compatible, NAT64,
/// 6to4, Teredo): the IPv4 address inside may be one of ours.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

/// Whether an address is on this machine or a private network: what a local stack's
/// `ALLOW_LOCAL_URLS` opens besides the public ones. Never link-local, where instance metadata
/// (169.254.169.254) and the container credentials endpoint live.
pub fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_local(IpAddr::V4(v4)),
            None => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
        },
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    !(v4.is_private()
        || v4.is_loopback()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_documentation()
        || v4.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 192 && b == 88 && c == 99) // 6to4 relays
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240)
}

fn is_public_v6(v6: Ipv6Addr) -> bool {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let [first, second, ..] = v6.segments();
    !(v6.is_loopback()
        || v6.is_unspecified()
        || v6.is_multicast()
        || v6.segments()[..4] == [0; 4] // ::/64: IPv4-compatible ::a.b.c.d, translated ::ffff:0:a.b.c.d
        || (first == 0x0064 && second == 0xff9b) // NAT64, 64:ff9b::/96 and 64:ff9b:1::/48
        || (first == 0x0100 && v6.segments()[1..4] == [0; 3]) // discard, 100::/64
        || (first == 0x2001 && second == 0) // Teredo, 2001::/32
        || (first == 0x2001 && second == 0x0db8) // documentation
        || first == 0x2002 // 6to4
        || (first & 0xfe00) == 0xfc00 // unique local, fc00::/7
        || (first & 0xffc0) == 0xfe80 // link local
        || (first & 0xffc0) == 0xfec0) // site local (deprecated), fec0::/10
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_and_reserved_addresses_are_not_public() {
        for raw in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "192.0.0.8",
            "192.0.0.170",
            "192.88.99.1",
            "198.18.0.1",
            "::1",
            "::",
            "fd00::1",
            "fc00::1",
            "fe80::1",
            "fec0::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "::8.8.8.8",
            "::ffff:0:a9fe:a9fe",
            "::ffff:0:808:808",
            "64:ff9b::7f00:1",
            "64:ff9b::808:808",
            "64:ff9b:1::a00:1",
            "2002:7f00:1::",
            "2002:808:808::1",
            "2001:0:4136:e378::1",
            "2001:db8::1",
            "100::1",
            "ff02::1",
        ] {
            assert!(!is_public(raw.parse().unwrap()), "{raw}");
        }
    }

    #[test]
    fn local_addresses_are_loopback_and_private_never_link_local() {
        for raw in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "::1",
            "fd00::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_local(raw.parse().unwrap()), "{raw}");
        }
        for raw in [
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "::ffff:0:a9fe:a9fe",
            "fe80::1",
            "0.0.0.0",
            "8.8.8.8",
        ] {
            assert!(!is_local(raw.parse().unwrap()), "{raw}");
        }
    }

    #[test]
    fn public_addresses_are() {
        for raw in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(raw.parse().unwrap()), "{raw}");
        }
    }
}
