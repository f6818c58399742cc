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
    /// The capture time the message carried (µs) when the receiver replaced
    /// it by the arrival time (see [`TimeWindow`]); not part of HEP.
    pub original_time_micros: Option<i64>,
}

/// Which capture times a receiver believes, relative to a message's arrival.
/// One rule for every receiver (server, ingest function), so a message lands
/// in the same hour whichever path it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    /// Older capture times than this before arrival are not believed.
    pub max_age_micros: i64,
    /// Nor capture times further ahead of arrival than this (clock skew).
    pub max_ahead_micros: i64,
    /// Believe every time (importing old captures).
    pub accept_any: bool,
}

impl Default for TimeWindow {
    fn default() -> Self {
        Self {
            max_age_micros: 7 * 24 * 3_600_000_000,
            max_ahead_micros: 3_600_000_000,
            accept_any: false,
        }
    }
}

impl TimeWindow {
    pub fn accepts(&self, capture_micros: i64, arrival_micros: i64) -> bool {
        self.accept_any
            || (capture_micros >= arrival_micros.saturating_sub(self.max_age_micros)
                && capture_micros <= arrival_micros.saturating_add(self.max_ahead_micros))
    }
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
            self.set_time_micros(micros);
        }
    }

    fn set_time_micros(&mut self, micros: i64) {
        let micros = micros.clamp(0, u32::MAX as i64 * 1_000_000);
        self.time_sec = micros.div_euclid(1_000_000) as u32;
        self.time_usec = micros.rem_euclid(1_000_000) as u32;
    }

    /// What every receiver does with a message's time on arrival: stamp an
    /// untimed one (HEPv1), and replace a time outside `window` by the
    /// arrival time, keeping the original in `original_time_micros`.
    /// Returns whether the time was replaced (receivers count it).
    pub fn settle_time(&mut self, arrival_micros: i64, window: &TimeWindow) -> bool {
        self.stamp_if_untimed(arrival_micros);
        let t = self.time_micros();
        if window.accepts(t, arrival_micros) {
            return false;
        }
        self.original_time_micros = Some(t);
        self.set_time_micros(arrival_micros);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_374_400_000_000; // 2025-11-29T00:00:00Z

    fn at(micros: i64) -> HepMessage {
        let mut m = HepMessage::default();
        m.set_time_micros(micros);
        m
    }

    #[test]
    fn times_outside_the_window_become_the_arrival_time() {
        let w = TimeWindow::default();
        let hour = 3_600_000_000;
        for (t, kept) in [
            (NOW, true),
            (NOW - 7 * 24 * hour, true),
            (NOW - 7 * 24 * hour - 1, false),
            (NOW + hour, true),
            (NOW + hour + 1, false),
            (4_102_444_800_000_000, false),
            (1, false),
        ] {
            let mut m = at(t);
            assert_eq!(m.settle_time(NOW, &w), !kept, "{t}");
            assert_eq!(m.time_micros(), if kept { t } else { NOW });
            assert_eq!(m.original_time_micros, (!kept).then_some(t));
        }
        let mut m = at(1);
        assert!(!m.settle_time(
            NOW,
            &TimeWindow {
                accept_any: true,
                ..w
            }
        ));
        assert_eq!((m.time_micros(), m.original_time_micros), (1, None));
        // HEPv1 carries no time: stamped, not counted as replaced.
        let mut m = HepMessage::default();
        assert!(!m.settle_time(NOW, &w));
        assert_eq!(m.time_micros(), NOW);
    }
}
