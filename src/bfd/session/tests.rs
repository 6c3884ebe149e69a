//! Unit tests of the BFD session under a virtual clock, against a scripted peer.

use super::*;

const LOCAL: u32 = 0x0a0b_0c0d;
const PEER: u32 = 0x7788_9900;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn config() -> Config {
    Config {
        local_discriminator: LOCAL,
        desired_min_tx: ms(100),
        required_min_rx: ms(100),
        detect_mult: 3,
        seed: 42,
    }
}

/// What the peer sends in `state`: 100 ms both ways when Up, a 1 s desired min
/// TX otherwise (RFC 5880 §6.8.3), multiplier 3.
fn peer(state: State, your: u32) -> ControlPacket {
    ControlPacket {
        diag: Diag::None,
        state,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discriminator: PEER,
        your_discriminator: your,
        desired_min_tx_us: if state == State::Up {
            100_000
        } else {
            1_000_000
        },
        required_min_rx_us: 100_000,
        required_min_echo_rx_us: 0,
    }
}

/// Down → Init → Up with a scripted peer; returns the session, Up at 20 ms,
/// with the packet that announced Up already taken.
fn up_session() -> Session {
    let mut s = Session::new(config()).unwrap();
    let first = s.poll_transmit(ms(0)).unwrap();
    assert_eq!((first.state, first.your_discriminator), (State::Down, 0));
    s.on_packet(&peer(State::Down, 0), ms(10));
    assert_eq!(s.state(), State::Init);
    let init = s.poll_transmit(ms(10)).unwrap();
    assert_eq!((init.state, init.your_discriminator), (State::Init, PEER));
    s.on_packet(&peer(State::Up, LOCAL), ms(20));
    assert_eq!(s.state(), State::Up);
    assert_eq!(s.poll_event(), Some(Event::Up));
    assert_eq!(s.poll_event(), None);
    let up = s.poll_transmit(ms(20)).unwrap();
    assert_eq!(up.state, State::Up);
    s
}

#[test]
fn handshake_down_init_up() {
    let mut s = up_session();
    assert_eq!(s.counters().transitions, 2);
    assert_eq!(s.counters().received, 2);
    assert_eq!(s.counters().sent, 3);
    assert_eq!(s.local_diag(), Diag::None);
    assert_eq!(s.remote_discriminator(), PEER);
    // The Up packet advertised 100 ms and started a Poll sequence (§6.8.3); it
    // carries P until the peer's Final.
    assert_eq!(s.tx_interval(), ms(100));
    let t = s.poll_timeout().unwrap();
    let p = s.poll_transmit(t).unwrap();
    assert!(p.poll && !p.final_);
    assert_eq!(p.desired_min_tx_us, 100_000);
    s.on_packet(
        &ControlPacket {
            final_: true,
            ..peer(State::Up, LOCAL)
        },
        t,
    );
    let t = s.poll_timeout().unwrap();
    assert!(!s.poll_transmit(t).unwrap().poll);
}

#[test]
fn down_to_up_on_peer_init() {
    let mut s = Session::new(config()).unwrap();
    s.on_packet(&peer(State::Init, LOCAL), ms(5));
    assert_eq!(s.state(), State::Up);
    assert_eq!(s.poll_event(), Some(Event::Up));
}

#[test]
fn init_stays_init_on_peer_down_and_ignores_admin_down_in_down() {
    let mut s = Session::new(config()).unwrap();
    s.on_packet(&peer(State::AdminDown, 0), ms(1));
    assert_eq!(s.state(), State::Down);
    s.on_packet(&peer(State::Down, 0), ms(2));
    s.on_packet(&peer(State::Down, 0), ms(3));
    assert_eq!(s.state(), State::Init);
    assert_eq!(s.counters().transitions, 1);
}

#[test]
fn detection_time_expires_exactly() {
    let mut s = up_session();
    // Peer multiplier 3 × max(our 100 ms, its 100 ms) (§6.8.4).
    assert_eq!(s.detection_time(), ms(300));
    let deadline = ms(20 + 300);
    let mut now = ms(20);
    while let Some(t) = s.poll_timeout() {
        if t >= deadline {
            break;
        }
        now = t;
        s.on_timeout(now);
        while s.poll_transmit(now).is_some() {}
        assert_eq!(s.state(), State::Up, "at {now:?}");
    }
    assert!(now < deadline);
    s.on_timeout(deadline - Duration::from_nanos(1));
    assert_eq!(s.state(), State::Up);
    assert_eq!(s.poll_timeout(), Some(s.next_tx.min(deadline)));
    s.on_timeout(deadline);
    assert_eq!(s.state(), State::Down);
    assert_eq!(s.local_diag(), Diag::ControlDetectionTimeExpired);
    assert_eq!(
        s.poll_event(),
        Some(Event::Down {
            diag: Diag::ControlDetectionTimeExpired
        })
    );
    // Told at once, with diag 1, the remote discriminator forgotten (§6.8.1)
    // and the slow rate back (§6.8.3).
    let p = s.poll_transmit(deadline).unwrap();
    assert_eq!(p.state, State::Down);
    assert_eq!(p.diag.code(), 1);
    assert_eq!(p.your_discriminator, 0);
    assert_eq!(p.desired_min_tx_us, 1_000_000);
    assert!(!p.poll);
}

#[test]
fn detection_time_uses_the_slower_side() {
    let mut s = Session::new(config()).unwrap();
    assert_eq!(s.detection_time(), Duration::ZERO);
    s.on_packet(
        &ControlPacket {
            detect_mult: 5,
            desired_min_tx_us: 200_000,
            ..peer(State::Init, LOCAL)
        },
        ms(0),
    );
    assert_eq!(s.detection_time(), ms(1000));
    s.on_packet(
        &ControlPacket {
            detect_mult: 2,
            desired_min_tx_us: 50_000,
            ..peer(State::Up, LOCAL)
        },
        ms(10),
    );
    assert_eq!(s.detection_time(), ms(200));
}

/// Runs an Up session for `secs` with the peer sending every 100 ms, and
/// returns the gaps between our periodic packets.
fn cadence(config: Config, secs: u64) -> Vec<Duration> {
    let mut s = Session::new(config).unwrap();
    s.on_packet(&peer(State::Init, LOCAL), ms(0));
    let mut sent = Vec::new();
    let mut next_peer = ms(0);
    let end = Duration::from_secs(secs);
    let mut now = ms(0);
    while now < end {
        if now >= next_peer {
            s.on_packet(
                &ControlPacket {
                    final_: true,
                    ..peer(State::Up, LOCAL)
                },
                now,
            );
            next_peer = now + ms(100);
        }
        s.on_timeout(now);
        while let Some(p) = s.poll_transmit(now) {
            assert!(!p.final_);
            sent.push(now);
        }
        assert_eq!(s.state(), State::Up);
        now = s.poll_timeout().unwrap().min(next_peer);
    }
    sent.windows(2).map(|w| w[1] - w[0]).collect()
}

#[test]
fn tx_cadence_within_jitter_bounds() {
    // §6.8.7: 75–100 % of the 100 ms interval.
    let gaps = cadence(config(), 10);
    assert!(gaps.len() >= 100, "{}", gaps.len());
    assert!(
        gaps.iter().all(|g| (ms(75)..=ms(100)).contains(g)),
        "{gaps:?}"
    );
    // The jitter is real, not a constant 75 or 100 ms.
    assert!(gaps.iter().any(|g| *g < ms(80)) && gaps.iter().any(|g| *g > ms(95)));
}

#[test]
fn tx_cadence_with_multiplier_one_is_at_most_90_percent() {
    let gaps = cadence(
        Config {
            detect_mult: 1,
            ..config()
        },
        10,
    );
    assert!(
        gaps.iter().all(|g| (ms(75)..=ms(90)).contains(g)),
        "{gaps:?}"
    );
}

#[test]
fn jitter_is_reproducible_from_the_seed() {
    assert_eq!(cadence(config(), 3), cadence(config(), 3));
    let other = Config {
        seed: 7,
        ..config()
    };
    assert_ne!(cadence(config(), 3), cadence(other, 3));
}

#[test]
fn slow_tx_while_down() {
    let mut s = Session::new(config()).unwrap();
    // The peer may receive fast, but we are not Up: at least 1 s (§6.8.3).
    s.on_packet(&peer(State::AdminDown, 0), ms(0));
    assert_eq!(s.tx_interval(), SLOW_TX);
    let mut sent = Vec::new();
    let mut now = ms(0);
    while now < Duration::from_secs(20) {
        while let Some(p) = s.poll_transmit(now) {
            assert_eq!(p.state, State::Down);
            assert_eq!(p.desired_min_tx_us, 1_000_000);
            sent.push(now);
        }
        s.on_timeout(now);
        now = s.poll_timeout().unwrap();
    }
    let gaps: Vec<_> = sent.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 19);
    assert!(
        gaps.iter().all(|g| (ms(750)..=ms(1000)).contains(g)),
        "{gaps:?}"
    );
}

#[test]
fn received_admin_down_means_neighbor_signaled_down() {
    let mut s = up_session();
    s.on_packet(&peer(State::AdminDown, LOCAL), ms(50));
    assert_eq!(s.state(), State::Down);
    assert_eq!(s.local_diag(), Diag::NeighborSignaledSessionDown);
    assert_eq!(
        s.poll_event(),
        Some(Event::Down {
            diag: Diag::NeighborSignaledSessionDown
        })
    );
    assert_eq!(s.poll_transmit(ms(50)).unwrap().diag.code(), 3);
}

#[test]
fn received_down_in_up_means_neighbor_signaled_down() {
    let mut s = up_session();
    s.on_packet(&peer(State::Down, LOCAL), ms(50));
    assert_eq!(s.state(), State::Down);
    assert_eq!(s.local_diag(), Diag::NeighborSignaledSessionDown);
}

#[test]
fn wrong_your_discriminator_in_up_is_dropped() {
    let mut s = up_session();
    let received = s.counters().received;
    s.on_packet(&peer(State::Down, LOCAL ^ 1), ms(50));
    assert_eq!(s.state(), State::Up);
    assert_eq!(s.counters().dropped.wrong_discriminator, 1);
    assert_eq!(s.counters().received, received);
    // It did not restart the detection timer either.
    s.on_timeout(ms(20 + 300));
    assert_eq!(s.state(), State::Down);
}

#[test]
fn poll_is_answered_with_final_at_once() {
    let mut s = up_session();
    let next = s.poll_timeout().unwrap();
    s.on_packet(
        &ControlPacket {
            poll: true,
            ..peer(State::Up, LOCAL)
        },
        ms(21),
    );
    let f = s.poll_transmit(ms(21)).unwrap();
    assert!(f.final_ && !f.poll);
    assert_eq!(f.state, State::Up);
    // The Final does not move the periodic schedule.
    assert!(s.poll_transmit(ms(21)).is_none());
    assert_eq!(s.poll_timeout(), Some(next));
}

#[test]
fn admin_down_and_up() {
    let mut s = up_session();
    s.admin_down(ms(30));
    assert_eq!(s.state(), State::AdminDown);
    assert_eq!(
        s.poll_event(),
        Some(Event::Down {
            diag: Diag::AdministrativelyDown
        })
    );
    let p = s.poll_transmit(ms(30)).unwrap();
    assert_eq!((p.state, p.diag.code()), (State::AdminDown, 7));
    assert_eq!(p.desired_min_tx_us, 1_000_000);
    // Packets are discarded while AdminDown (§6.8.6), and nothing expires.
    s.on_packet(&peer(State::Up, LOCAL), ms(40));
    assert_eq!(s.state(), State::AdminDown);
    assert_eq!(s.counters().dropped.admin_down, 1);
    s.on_timeout(Duration::from_secs(100));
    assert_eq!(s.state(), State::AdminDown);
    s.admin_up(Duration::from_secs(100));
    assert_eq!(s.state(), State::Down);
    assert_eq!(s.poll_event(), None);
}

#[test]
fn datagrams_refused_by_the_wire_are_counted() {
    let mut s = Session::new(config()).unwrap();
    let mut bytes = Vec::new();
    wire::emit_vec(&peer(State::Down, 0), &mut bytes);
    s.on_datagram(&bytes, ms(0));
    assert_eq!(s.state(), State::Init);
    s.on_datagram(&bytes[..23], ms(1));
    assert_eq!(s.counters().dropped.malformed, 1);
    bytes[1] |= 0x04; // A bit
    s.on_datagram(&bytes, ms(2));
    assert_eq!(s.counters().dropped.authentication, 1);
    s.on_packet(
        &ControlPacket {
            demand: true,
            ..peer(State::Init, LOCAL)
        },
        ms(3),
    );
    assert_eq!(s.counters().dropped.demand, 1);
    assert_eq!(s.state(), State::Init);
    assert_eq!(s.counters().received, 1);
}

#[test]
fn no_periodic_packets_when_the_peer_asks_for_none() {
    // §6.8.7: a required min RX of zero means no periodic packets.
    let mut s = up_session();
    s.on_packet(
        &ControlPacket {
            required_min_rx_us: 0,
            ..peer(State::Up, LOCAL)
        },
        ms(30),
    );
    assert!(s.poll_transmit(Duration::from_secs(5)).is_none());
    assert_eq!(s.poll_timeout(), Some(ms(330)));
}

#[test]
fn config_is_validated() {
    let bad = |c: Config| Session::new(c).err();
    assert_eq!(
        bad(Config {
            local_discriminator: 0,
            ..config()
        }),
        Some(ConfigError::ZeroDiscriminator)
    );
    assert_eq!(
        bad(Config {
            detect_mult: 0,
            ..config()
        }),
        Some(ConfigError::ZeroDetectMult)
    );
    assert_eq!(
        bad(Config {
            desired_min_tx: Duration::ZERO,
            ..config()
        }),
        Some(ConfigError::DesiredMinTx(Duration::ZERO))
    );
    let long = MAX_INTERVAL + Duration::from_micros(1);
    assert_eq!(
        bad(Config {
            required_min_rx: long,
            ..config()
        }),
        Some(ConfigError::RequiredMinRx(long))
    );
}

/// Random datagrams (half of them valid packets with random fields) at random
/// times: the session never panics and its timers stay consistent.
#[test]
fn random_input_never_panics() {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut s = Session::new(config()).unwrap();
    let mut now = Duration::ZERO;
    for _ in 0..20_000 {
        now += Duration::from_micros(next() % 200_000);
        let mut b = [0u8; 24];
        for byte in &mut b {
            *byte = next() as u8;
        }
        if next() % 2 == 0 {
            b[0] = 0x20 | (b[0] & 0x1f);
            b[1] &= !0x05;
            b[2] |= 1;
            b[3] = 24;
            b[4] |= 1;
            if next() % 2 == 0 {
                b[8..12].copy_from_slice(&LOCAL.to_be_bytes());
            }
        }
        match next() % 16 {
            0 => s.admin_down(now),
            1 => s.admin_up(now),
            _ => s.on_datagram(&b, now),
        }
        s.on_timeout(now);
        while s.poll_transmit(now).is_some() {}
        while s.poll_event().is_some() {}
        if let Some(t) = s.poll_timeout() {
            assert!(t.saturating_add(MAX_INTERVAL * 255) >= now);
        }
    }
    assert!(s.counters().received > 1000);
}

/// Two of our sessions back to back, packets delivered at once: both reach
/// Up, both Poll sequences end (each peer's Final), and when B falls silent A
/// goes Down exactly one detection time after B's last packet.
#[test]
fn pair_comes_up_and_detects_silence() {
    let mut a = Session::new(config()).unwrap();
    let mut b = Session::new(Config {
        local_discriminator: PEER,
        desired_min_tx: ms(50),
        required_min_rx: ms(50),
        seed: 9,
        ..config()
    })
    .unwrap();
    let mut now = ms(0);
    let mut b_last = None;
    let silence = Duration::from_secs(5);
    for _ in 0..10_000 {
        a.on_timeout(now);
        b.on_timeout(now);
        // Up to four rounds, so a Poll's Final goes out at the same instant.
        for _ in 0..4 {
            while let Some(p) = a.poll_transmit(now) {
                b.on_packet(&p, now);
            }
            while let Some(p) = b.poll_transmit(now) {
                if now < silence {
                    b_last = Some(now);
                    a.on_packet(&p, now);
                }
            }
        }
        if now >= ms(2500) && now < silence {
            assert_eq!((a.state(), b.state()), (State::Up, State::Up), "{now:?}");
            assert!(!a.polling && !b.polling);
            // Each side sends at the slower side's pace: max(ours, peer's RX).
            assert_eq!(a.tx_interval(), ms(100));
            assert_eq!(b.tx_interval(), ms(100));
        }
        if a.state() == State::Down && now > silence {
            break;
        }
        now = a.poll_timeout().unwrap().min(b.poll_timeout().unwrap());
    }
    // B's multiplier 3 × max(A's RX 100 ms, B's TX 50 ms).
    assert_eq!(a.detection_time(), ms(300));
    assert_eq!(now, b_last.unwrap() + ms(300));
    assert_eq!(a.local_diag(), Diag::ControlDetectionTimeExpired);
    assert_eq!(a.poll_event(), Some(Event::Up));
    assert_eq!(
        a.poll_event(),
        Some(Event::Down {
            diag: Diag::ControlDetectionTimeExpired
        })
    );
}
