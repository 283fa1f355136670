//! A configuration file of arbitrary text: read and checked, an error or a config, no panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

use ackscope::config::RawConfig;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(raw) = RawConfig::from_toml(text)
    {
        let _ = raw.validate();
    }
});
