//! The BFD control packet (RFC 5880 §4.1), in smoltcp's style: a validated
//! [`ControlPacket`] repr, [`parse`] from a UDP payload and [`emit`] into a
//! 24-byte buffer, tested against hand-computed byte fixtures.
//!
//! What it owns: the byte layout of the mandatory section and the reception
//! checks of RFC 5880 §6.8.6 that depend on the packet alone (version, length,
//! detect multiplier, multipoint bit, discriminators, authentication).
//!
//! What it does not do: the checks that need a session (which session the
//! your-discriminator names, the demand bit, the state machine) live in
//! [`super::session`]; the UDP port and TTL/hop-limit 255 checks of RFC 5881
//! §4–§5 belong to the driver, which does not exist yet. Authentication
//! (RFC 5880 §4.2–§4.4, §6.7) is not supported: a packet with the A bit is
//! refused with [`WireError::AuthenticationUnsupported`] so the caller can drop
//! and count it.
//!
//! Never panics: the only reads are of a fixed-size array obtained with
//! `first_chunk`, after the length check.

use core::fmt;

/// Length of the mandatory section, and of every packet we emit (RFC 5880 §4.1).
pub const PACKET_LEN: usize = 24;
/// The only version of the protocol (RFC 5880 §4.1).
pub const VERSION: u8 = 1;

const FLAG_POLL: u8 = 0x20;
const FLAG_FINAL: u8 = 0x10;
const FLAG_CPI: u8 = 0x08;
const FLAG_AUTH: u8 = 0x04;
const FLAG_DEMAND: u8 = 0x02;
const FLAG_MULTIPOINT: u8 = 0x01;

/// A session state as carried on the wire (RFC 5880 §4.1, "Sta").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// 0: administratively held down.
    AdminDown,
    /// 1: down.
    Down,
    /// 2: initializing (the remote end is heard, the three-way handshake is not done).
    Init,
    /// 3: up.
    Up,
}

impl State {
    fn from_bits(bits: u8) -> State {
        match bits & 0x03 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    fn bits(self) -> u8 {
        match self {
            State::AdminDown => 0,
            State::Down => 1,
            State::Init => 2,
            State::Up => 3,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::AdminDown => "AdminDown",
            State::Down => "Down",
            State::Init => "Init",
            State::Up => "Up",
        })
    }
}

/// The diagnostic code: why the sender's session last changed state
/// (RFC 5880 §4.1, "Diag").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Diag {
    /// 0: no diagnostic.
    None,
    /// 1: control detection time expired.
    ControlDetectionTimeExpired,
    /// 2: echo function failed.
    EchoFunctionFailed,
    /// 3: neighbor signaled session down.
    NeighborSignaledSessionDown,
    /// 4: forwarding plane reset.
    ForwardingPlaneReset,
    /// 5: path down.
    PathDown,
    /// 6: concatenated path down.
    ConcatenatedPathDown,
    /// 7: administratively down.
    AdministrativelyDown,
    /// 8: reverse concatenated path down.
    ReverseConcatenatedPathDown,
    /// 9–31: reserved; carried as received (the receiver does not act on Diag).
    Reserved(u8),
}

impl Diag {
    /// The 5-bit code.
    pub fn code(self) -> u8 {
        match self {
            Diag::None => 0,
            Diag::ControlDetectionTimeExpired => 1,
            Diag::EchoFunctionFailed => 2,
            Diag::NeighborSignaledSessionDown => 3,
            Diag::ForwardingPlaneReset => 4,
            Diag::PathDown => 5,
            Diag::ConcatenatedPathDown => 6,
            Diag::AdministrativelyDown => 7,
            Diag::ReverseConcatenatedPathDown => 8,
            Diag::Reserved(code) => code & 0x1f,
        }
    }

    /// The diagnostic for a 5-bit code (higher bits are ignored).
    pub fn from_code(code: u8) -> Diag {
        match code & 0x1f {
            0 => Diag::None,
            1 => Diag::ControlDetectionTimeExpired,
            2 => Diag::EchoFunctionFailed,
            3 => Diag::NeighborSignaledSessionDown,
            4 => Diag::ForwardingPlaneReset,
            5 => Diag::PathDown,
            6 => Diag::ConcatenatedPathDown,
            7 => Diag::AdministrativelyDown,
            8 => Diag::ReverseConcatenatedPathDown,
            other => Diag::Reserved(other),
        }
    }
}

/// A validated BFD control packet without authentication (RFC 5880 §4.1).
///
/// Intervals are in microseconds, as on the wire, so that parse and emit are
/// exact inverses; [`super::session`] converts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ControlPacket {
    /// Why the sender's session last changed state.
    pub diag: Diag,
    /// The sender's session state.
    pub state: State,
    /// P: the sender asks for a parameter change to be confirmed (§6.5).
    pub poll: bool,
    /// F: the answer to a Poll (§6.5).
    pub final_: bool,
    /// C: the sender's BFD does not share fate with its control plane.
    pub control_plane_independent: bool,
    /// D: the sender wishes to run in demand mode (§6.6).
    pub demand: bool,
    /// Detect multiplier: the detection time is this times the agreed interval.
    /// Never zero in a parsed packet.
    pub detect_mult: u8,
    /// The sender's discriminator. Never zero in a parsed packet.
    pub my_discriminator: u32,
    /// The discriminator of the receiving session as the sender knows it, or
    /// zero if it does not know it yet (only in Down and AdminDown).
    pub your_discriminator: u32,
    /// Desired min TX interval, µs: how fast the sender would like to send.
    pub desired_min_tx_us: u32,
    /// Required min RX interval, µs: how fast the sender can receive; zero means
    /// "send me no periodic packets".
    pub required_min_rx_us: u32,
    /// Required min echo RX interval, µs; zero means no echo (§6.4).
    pub required_min_echo_rx_us: u32,
}

/// Why a datagram is not an acceptable BFD control packet (RFC 5880 §6.8.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireError {
    /// Shorter than the 24-byte mandatory section, or than its own Length field.
    Truncated,
    /// The version is not 1.
    BadVersion(u8),
    /// The Length field is below 24.
    BadLength(u8),
    /// The detect multiplier is zero.
    ZeroDetectMult,
    /// The multipoint bit is set (reserved for RFC 8562, unsupported here).
    Multipoint,
    /// My discriminator is zero.
    ZeroMyDiscriminator,
    /// Your discriminator is zero in a state other than Down or AdminDown.
    ZeroYourDiscriminator(State),
    /// The A bit is set: authentication is not supported.
    AuthenticationUnsupported,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated => f.write_str("truncated BFD control packet"),
            WireError::BadVersion(v) => write!(f, "BFD version {v} (only 1 is spoken)"),
            WireError::BadLength(n) => write!(f, "BFD length field {n} is below 24"),
            WireError::ZeroDetectMult => f.write_str("BFD detect multiplier is zero"),
            WireError::Multipoint => f.write_str("BFD multipoint bit set"),
            WireError::ZeroMyDiscriminator => f.write_str("BFD my discriminator is zero"),
            WireError::ZeroYourDiscriminator(s) => {
                write!(f, "BFD your discriminator is zero in state {s}")
            }
            WireError::AuthenticationUnsupported => {
                f.write_str("BFD authentication is not supported")
            }
        }
    }
}

impl std::error::Error for WireError {}

/// Parses one UDP payload, applying the packet-only checks of RFC 5880 §6.8.6
/// in the RFC's order (the A bit, which needs a session's configuration in the
/// RFC, is refused outright). Bytes past the Length field are ignored.
pub fn parse(datagram: &[u8]) -> Result<ControlPacket, WireError> {
    let Some(b) = datagram.first_chunk::<PACKET_LEN>() else {
        return Err(WireError::Truncated);
    };
    let version = b[0] >> 5;
    if version != VERSION {
        return Err(WireError::BadVersion(version));
    }
    let flags = b[1];
    let length = b[3];
    // §6.8.6: the minimum is 24 with A clear, 26 with A set; A is refused below.
    if usize::from(length) < PACKET_LEN {
        return Err(WireError::BadLength(length));
    }
    if usize::from(length) > datagram.len() {
        return Err(WireError::Truncated);
    }
    let detect_mult = b[2];
    if detect_mult == 0 {
        return Err(WireError::ZeroDetectMult);
    }
    if flags & FLAG_MULTIPOINT != 0 {
        return Err(WireError::Multipoint);
    }
    let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let my_discriminator = word(4);
    if my_discriminator == 0 {
        return Err(WireError::ZeroMyDiscriminator);
    }
    let your_discriminator = word(8);
    let state = State::from_bits(flags >> 6);
    if your_discriminator == 0 && !matches!(state, State::Down | State::AdminDown) {
        return Err(WireError::ZeroYourDiscriminator(state));
    }
    if flags & FLAG_AUTH != 0 {
        return Err(WireError::AuthenticationUnsupported);
    }
    Ok(ControlPacket {
        diag: Diag::from_code(b[0]),
        state,
        poll: flags & FLAG_POLL != 0,
        final_: flags & FLAG_FINAL != 0,
        control_plane_independent: flags & FLAG_CPI != 0,
        demand: flags & FLAG_DEMAND != 0,
        detect_mult,
        my_discriminator,
        your_discriminator,
        desired_min_tx_us: word(12),
        required_min_rx_us: word(16),
        required_min_echo_rx_us: word(20),
    })
}

/// Writes the packet: version 1, no authentication, no multipoint, Length 24.
/// Emits the fields as given: what [`parse`] checks (non-zero multiplier and
/// my-discriminator, your-discriminator zero only in Down or AdminDown) and
/// RFC 5880 §6.8.7's "never both P and F" are the sender's job.
pub fn emit(packet: &ControlPacket, out: &mut [u8; PACKET_LEN]) {
    let mut flags = packet.state.bits() << 6;
    for (set, bit) in [
        (packet.poll, FLAG_POLL),
        (packet.final_, FLAG_FINAL),
        (packet.control_plane_independent, FLAG_CPI),
        (packet.demand, FLAG_DEMAND),
    ] {
        if set {
            flags |= bit;
        }
    }
    out[0] = (VERSION << 5) | packet.diag.code();
    out[1] = flags;
    out[2] = packet.detect_mult;
    out[3] = PACKET_LEN as u8;
    out[4..8].copy_from_slice(&packet.my_discriminator.to_be_bytes());
    out[8..12].copy_from_slice(&packet.your_discriminator.to_be_bytes());
    out[12..16].copy_from_slice(&packet.desired_min_tx_us.to_be_bytes());
    out[16..20].copy_from_slice(&packet.required_min_rx_us.to_be_bytes());
    out[20..24].copy_from_slice(&packet.required_min_echo_rx_us.to_be_bytes());
}

/// [`emit`] appended to a `Vec`.
pub fn emit_vec(packet: &ControlPacket, out: &mut Vec<u8>) {
    let mut buf = [0; PACKET_LEN];
    emit(packet, &mut buf);
    out.extend_from_slice(&buf);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Down, diag 1 (detection time expired), mult 3, my 1, your 0 (the peer is
    /// not known yet), desired TX 1 s (§6.8.3: at least 1 s while not Up),
    /// required RX 100 ms, no echo.
    static DOWN: [u8; 24] = [
        0x21, // version 1 (001), diag 1 (00001)
        0x40, // state Down (01), no flags
        0x03, // detect mult
        0x18, // length 24
        0x00, 0x00, 0x00, 0x01, // my discriminator
        0x00, 0x00, 0x00, 0x00, // your discriminator
        0x00, 0x0f, 0x42, 0x40, // desired min TX 1,000,000 µs
        0x00, 0x01, 0x86, 0xa0, // required min RX 100,000 µs
        0x00, 0x00, 0x00, 0x00, // required min echo RX 0
    ];

    fn down() -> ControlPacket {
        ControlPacket {
            diag: Diag::ControlDetectionTimeExpired,
            state: State::Down,
            poll: false,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_mult: 3,
            my_discriminator: 1,
            your_discriminator: 0,
            desired_min_tx_us: 1_000_000,
            required_min_rx_us: 100_000,
            required_min_echo_rx_us: 0,
        }
    }

    /// Up, diag 0, mult 3, my 0x11223344, your 0x55667788, 100 ms both ways.
    static UP: [u8; 24] = [
        0x20, // version 1, diag 0
        0xc0, // state Up (11), no flags
        0x03, 0x18, // detect mult 3, length 24
        0x11, 0x22, 0x33, 0x44, // my discriminator
        0x55, 0x66, 0x77, 0x88, // your discriminator
        0x00, 0x01, 0x86, 0xa0, // desired min TX 100,000 µs
        0x00, 0x01, 0x86, 0xa0, // required min RX 100,000 µs
        0x00, 0x00, 0x00, 0x00, // no echo
    ];

    fn up() -> ControlPacket {
        ControlPacket {
            diag: Diag::None,
            state: State::Up,
            detect_mult: 3,
            my_discriminator: 0x1122_3344,
            your_discriminator: 0x5566_7788,
            desired_min_tx_us: 100_000,
            required_min_rx_us: 100_000,
            ..down()
        }
    }

    /// A Poll (§6.5) from 0x11223344 asking for 50 ms both ways.
    static POLL: [u8; 24] = [
        0x20, // version 1, diag 0
        0xe0, // state Up (11), P (0x20)
        0x03, 0x18, // detect mult 3, length 24
        0x11, 0x22, 0x33, 0x44, // my discriminator
        0x55, 0x66, 0x77, 0x88, // your discriminator
        0x00, 0x00, 0xc3, 0x50, // desired min TX 50,000 µs
        0x00, 0x00, 0xc3, 0x50, // required min RX 50,000 µs
        0x00, 0x00, 0x00, 0x00, // no echo
    ];

    fn poll() -> ControlPacket {
        ControlPacket {
            poll: true,
            desired_min_tx_us: 50_000,
            required_min_rx_us: 50_000,
            ..up()
        }
    }

    /// Its Final from 0x55667788, which also sets C, mult 5.
    static FINAL: [u8; 24] = [
        0x20, // version 1, diag 0
        0xd8, // state Up (11), F (0x10), C (0x08)
        0x05, 0x18, // detect mult 5, length 24
        0x55, 0x66, 0x77, 0x88, // my discriminator
        0x11, 0x22, 0x33, 0x44, // your discriminator
        0x00, 0x01, 0x86, 0xa0, // desired min TX 100,000 µs
        0x00, 0x01, 0x86, 0xa0, // required min RX 100,000 µs
        0x00, 0x00, 0x00, 0x00, // no echo
    ];

    fn final_() -> ControlPacket {
        ControlPacket {
            final_: true,
            control_plane_independent: true,
            detect_mult: 5,
            my_discriminator: 0x5566_7788,
            your_discriminator: 0x1122_3344,
            ..up()
        }
    }

    fn fixtures() -> [(&'static [u8; 24], ControlPacket); 4] {
        [
            (&DOWN, down()),
            (&UP, up()),
            (&POLL, poll()),
            (&FINAL, final_()),
        ]
    }

    #[test]
    fn parse_fixtures() {
        for (bytes, repr) in fixtures() {
            assert_eq!(parse(bytes), Ok(repr));
        }
    }

    #[test]
    fn emit_fixtures() {
        for (bytes, repr) in fixtures() {
            let mut out = [0xaa; 24];
            emit(&repr, &mut out);
            assert_eq!(&out, bytes);
            let mut v = vec![0x99];
            emit_vec(&repr, &mut v);
            assert_eq!(v.get(1..), Some(&bytes[..]));
        }
    }

    #[test]
    fn longer_length_and_trailing_bytes_are_accepted() {
        // §6.8.6 only bounds Length below (24) and above (the datagram).
        let mut long = DOWN.to_vec();
        long[3] = 28;
        long.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(parse(&long), Ok(down()));
        let mut trailing = UP.to_vec();
        trailing.push(0);
        assert_eq!(parse(&trailing), Ok(up()));
    }

    #[test]
    fn every_truncation_is_refused() {
        for (bytes, _) in fixtures() {
            for n in 0..bytes.len() {
                assert_eq!(parse(&bytes[..n]), Err(WireError::Truncated), "{n}");
            }
        }
    }

    #[test]
    fn reception_checks() {
        let with = |i: usize, v: u8| {
            let mut b = UP;
            b[i] = v;
            parse(&b)
        };
        assert_eq!(with(0, 0x00), Err(WireError::BadVersion(0)));
        assert_eq!(with(0, 0x40), Err(WireError::BadVersion(2)));
        assert_eq!(with(3, 23), Err(WireError::BadLength(23)));
        assert_eq!(with(3, 25), Err(WireError::Truncated));
        assert_eq!(with(2, 0), Err(WireError::ZeroDetectMult));
        assert_eq!(with(1, 0xc1), Err(WireError::Multipoint));
        assert_eq!(with(1, 0xc4), Err(WireError::AuthenticationUnsupported));
        let mut b = UP;
        b[4..8].fill(0);
        assert_eq!(parse(&b), Err(WireError::ZeroMyDiscriminator));
        let mut b = UP;
        b[8..12].fill(0);
        assert_eq!(parse(&b), Err(WireError::ZeroYourDiscriminator(State::Up)));
        b[1] = 0x80; // Init
        assert_eq!(
            parse(&b),
            Err(WireError::ZeroYourDiscriminator(State::Init))
        );
        b[1] = 0x00; // AdminDown: a zero your-discriminator is allowed
        assert_eq!(parse(&b).map(|p| p.state), Ok(State::AdminDown));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(parse(&[]).is_err());
        assert!(parse(&[0xff; 24]).is_err());
        assert!(parse(&[0x00; 64]).is_err());
        assert!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").is_err());
    }

    #[test]
    fn diag_codes_round_trip() {
        for code in 0..32 {
            assert_eq!(Diag::from_code(code).code(), code);
        }
        assert_eq!(Diag::from_code(3), Diag::NeighborSignaledSessionDown);
        assert_eq!(Diag::from_code(9), Diag::Reserved(9));
    }

    /// Every truncation, every single-byte flip and a few thousand random
    /// datagrams: parse never panics, and whatever it accepts re-emits to bytes
    /// that parse back to the same packet.
    #[test]
    fn never_panics() {
        fn check(bytes: &[u8]) {
            if let Ok(p) = parse(bytes) {
                let mut out = [0; 24];
                emit(&p, &mut out);
                assert_eq!(parse(&out), Ok(p));
            }
        }
        for (bytes, _) in fixtures() {
            for n in 0..=bytes.len() {
                check(&bytes[..n]);
            }
            for i in 0..bytes.len() {
                for bit in 0..8 {
                    let mut b = *bytes;
                    b[i] ^= 1 << bit;
                    check(&b);
                }
                for v in [0x00, 0xff] {
                    let mut b = *bytes;
                    b[i] = v;
                    check(&b);
                }
            }
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..5000 {
            let len = (next() % 40) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Half the time, a plausible header, so the later checks are reached.
            if next() % 2 == 0 {
                if let Some(first) = b.first_mut() {
                    *first = 0x20 | (*first & 0x1f);
                }
                if let Some(l) = b.get_mut(3) {
                    *l = 24;
                }
            }
            check(&b);
        }
    }
}
