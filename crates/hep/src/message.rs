use std::net::IpAddr;

/// Address family numbers as HEP carries them (Linux AF_INET / AF_INET6).
pub mod ip_family {
    pub const IPV4: u8 = 2;
    pub const IPV6: u8 = 10;
}

/// One decoded HEP message, whatever version it arrived in.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HepMessage {
    /// 1, 2 or 3.
    pub version: u8,
    /// 2 (IPv4) or 10 (IPv6).
    pub ip_family: u8,
    /// IP protocol number (17 UDP, 6 TCP, 132 SCTP).
    pub protocol: u8,
    pub src_ip: Option<IpAddr>,
    pub dst_ip: Option<IpAddr>,
    pub src_port: u16,
    pub dst_port: u16,
    /// Capture time; 0 when the message carried none (HEPv1): the receiver stamps it.
    pub time_sec: u32,
    pub time_usec: u32,
    /// HEP payload type (1 SIP, 5 RTCP, 100 log, ...): it names the table.
    pub proto_type: u8,
    pub capture_id: u32,
    /// Auth key (chunk 14).
    pub capture_pass: Option<String>,
    pub payload: Vec<u8>,
    pub correlation_id: Option<String>,
    pub vlan: Option<u16>,
    pub node_name: Option<String>,
    pub keep_alive: Option<u16>,
}

impl HepMessage {
    /// Capture time in microseconds since the Unix epoch.
    pub fn time_micros(&self) -> i64 {
        self.time_sec as i64 * 1_000_000 + self.time_usec as i64
    }

    /// Gives a message that carried no capture time (HEPv1) the receiver's
    /// time, `micros` since the epoch; a timed message is left as it is.
    pub fn stamp_if_untimed(&mut self, micros: i64) {
        if self.time_sec == 0 && self.time_usec == 0 {
            self.time_sec = micros.div_euclid(1_000_000) as u32;
            self.time_usec = micros.rem_euclid(1_000_000) as u32;
        }
    }
}
