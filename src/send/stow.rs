//! One STOW-RS request: an SR into its study, and what the server's
//! answer says became of it (PS3.18 §10.5: ReferencedSOPSequence for the
//! stored, FailedSOPSequence with a FailureReason for the refused).

use crate::source::dicomweb::client::first_words;
use crate::source::dicomweb::Client;

/// Why the server did not store it.
#[derive(Debug)]
pub struct StowFailure {
    pub status: Option<u16>,
    pub reason: String,
}

fn boundary_for(sop: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("nightscreen-{}", &hex::encode(Sha256::digest(sop.as_bytes()))[..32])
}

/// The multipart/related body of one instance.
fn body(boundary: &str, dicom: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(dicom.len() + 200);
    out.extend_from_slice(format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes());
    out.extend_from_slice(dicom);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// SOP Instance UIDs listed in one sequence of a STOW answer.
fn listed(answer: &serde_json::Value, sequence: &str) -> Vec<(String, Option<i64>)> {
    answer
        .get(sequence)
        .and_then(|s| s.get("Value"))
        .and_then(|v| v.as_array())
        .map(|items| {
            items
                .iter()
                .map(|item| {
                    let sop = item
                        .get("00081155")
                        .and_then(|e| e.get("Value"))
                        .and_then(|v| v.get(0))
                        .and_then(|v| v.as_str())
                        .unwrap_or("")
                        .to_string();
                    let reason = item
                        .get("00081197")
                        .and_then(|e| e.get("Value"))
                        .and_then(|v| v.get(0))
                        .and_then(|v| v.as_i64());
                    (sop, reason)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Stores `dicom` (SOP Instance `sop`) into study `study`; the HTTP status on success.
///
/// # Errors
/// The server refused it (409 with its FailureReason, another 4xx with its
/// words), failed (5xx after retries) or could not be reached.
pub fn store(client: &Client, study: &str, sop: &str, dicom: &[u8]) -> Result<u16, StowFailure> {
    let boundary = boundary_for(sop);
    let content_type = format!("multipart/related; type=\"application/dicom\"; boundary={boundary}");
    let (status, text) = client
        .post(&format!("studies/{study}"), &content_type, &body(&boundary, dicom))
        .map_err(|e| StowFailure { status: None, reason: e.to_string() })?;
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    let stored = listed(&answer, "00081199").iter().any(|(s, _)| s == sop);
    let failed = listed(&answer, "00081198");
    if (200..300).contains(&status) && stored {
        return Ok(status);
    }
    let reason = match failed.iter().find(|(s, _)| s == sop || s.is_empty()) {
        Some((_, Some(code))) => {
            format!("HTTP {status}: refused with FailureReason {code} (0x{code:04X}){}", explain(*code))
        }
        _ if (200..300).contains(&status) => {
            format!("HTTP {status}, but the answer does not list the instance as stored")
        }
        _ => format!("HTTP {status}: {}", first_words(&text)),
    };
    Err(StowFailure { status: Some(status), reason })
}

/// PS3.4 / PS3.18 failure reasons a STOW answer may carry.
fn explain(code: i64) -> &'static str {
    match code {
        0x0110 => ": processing failure (e.g. the instance belongs to another study)",
        0x0111 => ": duplicate SOP instance",
        0x0112 => ": no such object instance",
        0x0122 => ": SOP class not supported",
        0x0124 => ": not authorised",
        0xA700 => ": out of resources",
        0xA900 => ": data set does not match SOP class",
        0xC000 => ": cannot understand",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_lists_what_was_stored_and_why_the_rest_was_not() {
        let answer = serde_json::json!({
            "00081199": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": ["1.2.3"]}}]},
            "00081198": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": ["1.2.4"]}, "00081197": {"vr": "US", "Value": [272]}}]}
        });
        assert_eq!(listed(&answer, "00081199"), [("1.2.3".to_string(), None)]);
        assert_eq!(listed(&answer, "00081198"), [("1.2.4".to_string(), Some(272))]);
        assert!(explain(272).contains("another study"));
        let body = body("b", b"DICM");
        assert!(body.starts_with(b"--b\r\nContent-Type: application/dicom\r\n\r\nDICM\r\n--b--"));
    }
}
