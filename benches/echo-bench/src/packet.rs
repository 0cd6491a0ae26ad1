//! A TCP SYN in an IPv4 packet, built byte by byte: the headers of RFC 791 and RFC 9293 and
//! the Internet checksum of RFC 1071. The SYN flood of [`crate::synflood`] sends these through a
//! raw socket, so nothing of the kernel's TCP stack is involved on the sending side: what the
//! listener receives is exactly what this module wrote.
//!
//! ```text
//!  IPv4 (20 bytes, RFC 791 §3.1)            TCP (20 bytes + options, RFC 9293 §3.1)
//!  0      4      8             16      31   0              16              31
//!  |ver=4|ihl=5| tos  | total length   |    | source port   | dest port     |
//!  | identification   |flags| fragment |    | sequence number               |
//!  | ttl  | proto=6   | header checksum|    | acknowledgment number (0)     |
//!  | source address                    |    |off|  |flags=SYN| window       |
//!  | destination address               |    | checksum      | urgent (0)    |
//!                                           | options (MSS...), padded to 32 bits
//! ```
//!
//! The IPv4 checksum covers the IP header only. The TCP checksum covers a *pseudo-header*
//! (source and destination addresses, a zero, the protocol, the TCP length) followed by the
//! TCP header and data, so a segment delivered to the wrong address fails it. Both are the
//! ones' complement of the ones' complement sum of 16-bit words (RFC 1071 §1).

use std::net::{Ipv4Addr, SocketAddrV4};

/// IP protocol number of TCP (RFC 790's assigned numbers).
pub const PROTO_TCP: u8 = 6;
/// The SYN bit of the TCP flags byte.
pub const FLAG_SYN: u8 = 0x02;
/// The ACK bit.
pub const FLAG_ACK: u8 = 0x10;
/// "Don't fragment", in the flags-and-offset field: a SYN is small, and Linux sets it too.
const DONT_FRAGMENT: u16 = 0x4000;
/// Headers without options: 20 bytes each.
const IP_HEADER: usize = 20;
const TCP_HEADER: usize = 20;

/// The fields of one SYN that vary; the rest are fixed (no IP options, no data).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Syn {
    /// Source address and port (spoofed, in a flood).
    pub src: SocketAddrV4,
    /// The listener's address and port.
    pub dst: SocketAddrV4,
    /// The initial sequence number.
    pub seq: u32,
    /// The IPv4 identification field.
    pub ip_id: u16,
    /// Time to live.
    pub ttl: u8,
    /// The receive window offered.
    pub window: u16,
    /// TCP options, already encoded (a multiple of 4 bytes, at most 40): see [`mss_option`].
    pub options: Vec<u8>,
}

/// The maximum-segment-size option (RFC 9293 §3.2, kind 2, length 4): the one option every
/// SYN carries, and what a SYN cookie encodes (RFC 4987 §3.6).
pub fn mss_option(mss: u16) -> [u8; 4] {
    let [hi, lo] = mss.to_be_bytes();
    [2, 4, hi, lo]
}

impl Syn {
    /// The packet, IPv4 header first, both checksums filled in.
    pub fn encode(&self) -> Vec<u8> {
        assert!(
            self.options.len().is_multiple_of(4) && self.options.len() <= 40,
            "TCP options must be padded to 32 bits and fit in 40 bytes"
        );
        let tcp_len = TCP_HEADER + self.options.len();
        let total = IP_HEADER + tcp_len;
        let mut packet = Vec::with_capacity(total);
        // RFC 791 §3.1: version 4, header length 5 words; type of service 0.
        packet.extend_from_slice(&[0x45, 0]);
        packet.extend_from_slice(&(total as u16).to_be_bytes());
        packet.extend_from_slice(&self.ip_id.to_be_bytes());
        packet.extend_from_slice(&DONT_FRAGMENT.to_be_bytes());
        packet.extend_from_slice(&[self.ttl, PROTO_TCP, 0, 0]);
        packet.extend_from_slice(&self.src.ip().octets());
        packet.extend_from_slice(&self.dst.ip().octets());
        let ip_sum = internet_checksum(&[&packet[..IP_HEADER]]);
        packet[10..12].copy_from_slice(&ip_sum.to_be_bytes());
        // RFC 9293 §3.1: ports, sequence number, no acknowledgment on a first SYN.
        packet.extend_from_slice(&self.src.port().to_be_bytes());
        packet.extend_from_slice(&self.dst.port().to_be_bytes());
        packet.extend_from_slice(&self.seq.to_be_bytes());
        packet.extend_from_slice(&0u32.to_be_bytes());
        // Data offset in 32-bit words in the high nibble; then the flags byte.
        packet.extend_from_slice(&[((tcp_len / 4) as u8) << 4, FLAG_SYN]);
        packet.extend_from_slice(&self.window.to_be_bytes());
        packet.extend_from_slice(&[0, 0, 0, 0]); // checksum (below), urgent pointer
        packet.extend_from_slice(&self.options);
        let tcp_sum = tcp_checksum(*self.src.ip(), *self.dst.ip(), &packet[IP_HEADER..]);
        packet[IP_HEADER + 16..IP_HEADER + 18].copy_from_slice(&tcp_sum.to_be_bytes());
        packet
    }
}

/// RFC 1071: the ones' complement of the ones' complement sum of the 16-bit big-endian words of
/// `chunks`, taken as one byte string (an odd last byte is padded with a zero). A header whose
/// checksum field holds this value sums to 0xffff, which is how a receiver checks it.
pub fn internet_checksum(chunks: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for byte in chunks.iter().flat_map(|c| c.iter().copied()) {
        match odd.take() {
            None => odd = Some(byte),
            Some(hi) => sum += u32::from(u16::from_be_bytes([hi, byte])),
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    // Fold the carries back in (end-around carry), until none is left.
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The TCP checksum of `segment` (header with its checksum field, and data) between `src` and
/// `dst`: RFC 9293 §3.1's pseudo-header, then the segment.
pub fn tcp_checksum(src: Ipv4Addr, dst: Ipv4Addr, segment: &[u8]) -> u16 {
    let mut pseudo = [0u8; 12];
    pseudo[..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&dst.octets());
    pseudo[9] = PROTO_TCP;
    pseudo[10..12].copy_from_slice(&(segment.len() as u16).to_be_bytes());
    internet_checksum(&[&pseudo, segment])
}

/// Checks a received or built IPv4+TCP packet: version, lengths, protocol, and both checksums
/// (each region must sum to 0xffff with its checksum included, so the complement is 0).
pub fn verify(packet: &[u8]) -> Result<(), String> {
    if packet.len() < IP_HEADER + TCP_HEADER || packet[0] >> 4 != 4 {
        return Err(format!(
            "not an IPv4 packet with a TCP header ({} bytes)",
            packet.len()
        ));
    }
    let ihl = usize::from(packet[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    if ihl < IP_HEADER || total != packet.len() || packet[9] != PROTO_TCP {
        return Err(format!(
            "bad IPv4 header: ihl {ihl}, total length {total}, protocol {}",
            packet[9]
        ));
    }
    if internet_checksum(&[&packet[..ihl]]) != 0 {
        return Err("IPv4 header checksum is wrong".into());
    }
    let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    let segment = &packet[ihl..];
    let offset = usize::from(segment[12] >> 4) * 4;
    if offset < TCP_HEADER || offset > segment.len() {
        return Err(format!("bad TCP data offset {offset}"));
    }
    if tcp_checksum(src, dst, segment) != 0 {
        return Err("TCP checksum is wrong".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    /// A SYN that Linux sent on loopback (`connect` from 127.0.0.1:50000 to 127.0.0.1:40000,
    /// captured with tcpdump). Loopback leaves the TCP checksum to "hardware" that does not
    /// exist, so the capture held only the pseudo-header's partial sum (0xfe30); 0xaf6d is the
    /// full checksum, as tcpdump computed it independently (`cksum 0xfe30 (incorrect ->
    /// 0xaf6d)`). The IPv4 checksum (0x4a7c) is the kernel's own.
    const LINUX_SYN: &str = "4500 003c f23d 4000 4006 4a7c 7f00 0001
                             7f00 0001 c350 9c40 a675 4a32 0000 0000
                             a002 ffd7 af6d 0000 0204 ffd7 0402 080a
                             ee37 6220 0000 0000 0103 030a";

    #[test]
    fn a_syn_is_rebuilt_bit_for_bit_from_its_fields() {
        let known = hex(LINUX_SYN);
        let syn = Syn {
            src: "127.0.0.1:50000".parse().unwrap(),
            dst: "127.0.0.1:40000".parse().unwrap(),
            seq: 0xa675_4a32,
            ip_id: 0xf23d,
            ttl: 64,
            window: 0xffd7,
            // MSS 65495, SACK permitted, timestamps (3996607008, 0), NOP, window scale 10.
            options: known[40..].to_vec(),
        };
        assert_eq!(syn.encode(), known);
        assert_eq!(verify(&known), Ok(()));
    }

    #[test]
    fn the_ipv4_checksum_matches_the_textbook_example() {
        // The worked example of the IPv4 header checksum (a UDP packet, 192.168.0.1 to
        // 192.168.0.199): its checksum is 0xb861.
        let mut header = hex("4500 0073 0000 4000 4011 0000 c0a8 0001 c0a8 00c7");
        assert_eq!(internet_checksum(&[&header]), 0xb861);
        header[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert_eq!(internet_checksum(&[&header]), 0);
        // Split anywhere, even mid-word, the sum is the same.
        assert_eq!(internet_checksum(&[&header[..3], &header[3..]]), 0);
    }

    #[test]
    fn our_flood_syn_verifies_and_a_flipped_bit_does_not() {
        let syn = Syn {
            src: "127.66.1.2:4242".parse().unwrap(),
            dst: "127.0.0.1:7007".parse().unwrap(),
            seq: 1,
            ip_id: 7,
            ttl: 64,
            window: 64240,
            options: mss_option(1460).to_vec(),
        };
        let packet = syn.encode();
        assert_eq!(packet.len(), 44);
        assert_eq!(packet[33], FLAG_SYN, "flags byte");
        assert_eq!(packet[32] >> 4, 6, "data offset: 24 bytes");
        assert_eq!(verify(&packet), Ok(()));
        for bit in [8 * 13, 8 * 22 + 3, 8 * 43] {
            let mut bad = packet.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(verify(&bad).is_err(), "flipping bit {bit} went unnoticed");
        }
    }
}
