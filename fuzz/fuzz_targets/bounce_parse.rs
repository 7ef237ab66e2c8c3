//! Any bytes into the bounce reader: it must answer (a bounce, or an
//! error naming the problem), never panic, and only ever name RFC 5321
//! addresses as recipients.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(bounce) = list_hygiene::bounce::parse(data) {
        for r in &bounce.recipients {
            assert!(
                list_hygiene::email::EmailAddress::parse(&r.address).is_ok(),
                "not an address: {:?}",
                r.address
            );
        }
    }
});
