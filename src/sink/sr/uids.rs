//! UIDs derived from the result, never random: the same study screened by
//! the same software, config and models gets the same SR Series and SOP
//! Instance UIDs, so sending it twice stores nothing new (a PACS keys
//! instances by SOP Instance UID). `nightscreen send` and the FHIR output
//! rely on this; [`sr_uids`] is the one derivation. What the document says
//! is part of its instance UID: a study whose result changed (a retry
//! screened what a server failed to deliver) gets a new SR instance in the
//! same series, never new content under a UID a PACS already holds.

use sha2::{Digest, Sha256};

use crate::sink::ModelStamp;

/// The UIDs of one study's SR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrUids {
    pub series: String,
    pub instance: String,
}

/// `2.25.` + the decimal of 128 bits of SHA-256 over `parts` (each
/// length-prefixed, so no two part lists hash alike), laid out as a UUIDv8
/// (version and variant bits set) as PS3.5 B.2 allows for `2.25` UIDs.
pub fn derived_uid(parts: &[&[u8]]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    format!("2.25.{}", u128::from_be_bytes(bytes))
}

/// The SR UIDs of a study's result: from its Study Instance UID, the
/// software version, the config's SHA-256, every model (id, version,
/// SHA-256, in config order) and shadow mode (a shadow SR is a different
/// document from a clinical one, so it never shares their UIDs); the
/// instance UID also from `content`, a digest of what the document says.
pub fn sr_uids(
    study_uid: &str,
    software_version: &str,
    config_sha256: &str,
    models: &[ModelStamp],
    shadow: bool,
    content: &[u8],
) -> SrUids {
    let mut parts: Vec<Vec<u8>> = vec![
        study_uid.as_bytes().to_vec(),
        software_version.as_bytes().to_vec(),
        config_sha256.as_bytes().to_vec(),
        vec![u8::from(shadow)],
    ];
    for model in models {
        parts.extend([
            model.id.as_bytes().to_vec(),
            model.version.as_bytes().to_vec(),
            model.sha256.as_bytes().to_vec(),
        ]);
    }
    let uid = |role: &[u8], extra: &[u8]| {
        let mut all: Vec<&[u8]> = vec![b"nightscreen sr", role];
        all.extend(parts.iter().map(Vec::as_slice));
        all.push(extra);
        derived_uid(&all)
    };
    SrUids { series: uid(b"series", b""), instance: uid(b"instance", content) }
}

/// A measurement group's Tracking UID: from its document and its tracking identifier.
pub fn tracking_uid(sr_instance_uid: &str, tracking_identifier: &str) -> String {
    derived_uid(&[b"nightscreen tracking", sr_instance_uid.as_bytes(), tracking_identifier.as_bytes()])
}

/// The Device Observer UID of this software version, when the `[sr]`
/// table gives none.
pub fn device_uid(software_version: &str) -> String {
    derived_uid(&[b"nightscreen device", software_version.as_bytes()])
}

/// Whether `text` is a valid UID: 1–64 characters, dot-separated numeric
/// components without leading zeros, under an ISO/ITU-T root (0, 1 or 2).
pub fn is_valid_uid(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && matches!(text.split('.').next(), Some("0" | "1" | "2"))
        && text
            .split('.')
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()) && (c == "0" || !c.starts_with('0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(sha: &str) -> ModelStamp {
        ModelStamp {
            id: "dr-screen".into(),
            version: "1.0".into(),
            sha256: sha.into(),
            labels: vec![],
            clinical_use: false,
            domain: None,
            second_look: None,
        }
    }

    #[test]
    fn the_same_result_gets_the_same_uids_and_any_change_new_ones() {
        let base = sr_uids("1.2.3", "0.1.0", "c0", &[model("aa")], false, b"R0");
        assert_eq!(base, sr_uids("1.2.3", "0.1.0", "c0", &[model("aa")], false, b"R0"));
        assert_ne!(base.series, base.instance);
        for other in [
            sr_uids("1.2.4", "0.1.0", "c0", &[model("aa")], false, b"R0"),
            sr_uids("1.2.3", "0.1.1", "c0", &[model("aa")], false, b"R0"),
            sr_uids("1.2.3", "0.1.0", "c1", &[model("aa")], false, b"R0"),
            sr_uids("1.2.3", "0.1.0", "c0", &[model("ab")], false, b"R0"),
            sr_uids("1.2.3", "0.1.0", "c0", &[model("aa")], true, b"R0"),
        ] {
            assert_ne!(base.instance, other.instance);
            assert_ne!(base.series, other.series);
        }
        let changed = sr_uids("1.2.3", "0.1.0", "c0", &[model("aa")], false, b"R3");
        assert_eq!(changed.series, base.series, "a changed result stays in its series");
        assert_ne!(changed.instance, base.instance, "as a new instance");
    }

    #[test]
    fn derived_uids_are_valid_2_25_uids() {
        for i in 0..200u32 {
            let uid = derived_uid(&[&i.to_be_bytes()]);
            assert!(uid.starts_with("2.25.") && is_valid_uid(&uid), "{uid}");
        }
        // Length prefixes: moving a byte between parts changes the UID.
        assert_ne!(derived_uid(&[b"ab", b"c"]), derived_uid(&[b"a", b"bc"]));
    }

    #[test]
    fn uid_validation_refuses_what_dicom_refuses() {
        assert!(is_valid_uid("1.2.840.10008.5.1.4.1.1.88.34") && is_valid_uid("2.25.0"));
        for bad in ["", "1..2", "1.02", "1.2a", ".1", &"1".repeat(65), "1.2 ", "999.999.2", "3.1"] {
            assert!(!is_valid_uid(bad), "{bad:?}");
        }
    }
}
