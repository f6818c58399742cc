//! `cargo +nightly fuzz run decode` from crates/hep (on stable: `RUSTC_BOOTSTRAP=1
//! cargo fuzz run decode`; cargo install cargo-fuzz first). Every input must
//! decode or fail with a typed error; framing and SIP extraction must not
//! panic on whatever the decoder hands them.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = hep::decode(data) {
        let _ = hep::sip::extract(&m.payload);
        let again = hep::encode_v3(&m);
        if let Ok(bytes) = again {
            assert_eq!(hep::decode(&bytes).map(|d| d.payload), Ok(m.payload));
        }
    }
    let mut framer = hep::StreamFramer::new();
    for part in data.chunks(7) {
        framer.push(part);
        while let Some(frame) = framer.next_frame() {
            let _ = hep::decode(frame);
        }
    }
});
