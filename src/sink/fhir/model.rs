//! The FHIR R4 (4.0.1) subset nightscreen writes, as plain serde structs.
//!
//! Hand-written rather than a FHIR crate: the R4 model crates are either
//! unmaintained, R5-only or hundreds of thousands of generated lines, and
//! we write five resources. Only the elements we fill are here; empty ones
//! are left out of the JSON (`skip_serializing_if`), as FHIR requires (no
//! empty strings, arrays or objects). Tests validate the output with
//! `fhir.resources` 6.4.0 (R4).

use serde::Serialize;

/// `Bundle` of type transaction (see [`super::bundle`] for why).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase", tag = "resourceType", rename = "Bundle")]
pub struct Bundle {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub entry: Vec<Entry>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub full_url: String,
    pub resource: Resource,
    pub request: Request,
}

/// How a transaction applies an entry. Conditional, so sending the same
/// bundle twice changes nothing on the server.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    pub method: Method,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub if_none_exist: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Method {
    /// Conditional create (`ifNoneExist`): a resource the record may hold already.
    #[serde(rename = "POST")]
    Post,
    /// Conditional update by our identifier: our own resources.
    #[serde(rename = "PUT")]
    Put,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "resourceType")]
pub enum Resource {
    DiagnosticReport(DiagnosticReport),
    // Boxed: the largest by far, and a bundle holds one per eye.
    Observation(Box<Observation>),
    ImagingStudy(ImagingStudy),
    Device(Device),
}

impl Resource {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::DiagnosticReport(_) => "DiagnosticReport",
            Self::Observation(_) => "Observation",
            Self::ImagingStudy(_) => "ImagingStudy",
            Self::Device(_) => "Device",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Coding {
    pub system: String,
    pub code: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub display: String,
}

impl Coding {
    pub fn new(system: &str, code: &str, display: &str) -> Self {
        Self { system: system.into(), code: code.into(), display: display.into() }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CodeableConcept {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub coding: Vec<Coding>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub text: String,
}

impl CodeableConcept {
    pub fn coded(coding: Coding, text: &str) -> Self {
        Self { coding: vec![coding], text: text.into() }
    }

    pub fn text(text: &str) -> Self {
        Self { coding: Vec::new(), text: text.into() }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Identifier {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<CodeableConcept>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub system: String,
    pub value: String,
}

/// A reference: to an entry of the bundle (`reference`, its fullUrl) or,
/// for a resource the record holds, logically by identifier.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Reference {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reference: String,
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
}

impl Reference {
    pub fn to(full_url: &str) -> Self {
        Self { reference: full_url.into(), ..Self::default() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quantity {
    pub value: f32,
    pub unit: &'static str,
    pub system: &'static str,
    pub code: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Annotation {
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiagnosticReport {
    pub identifier: Vec<Identifier>,
    pub status: Status,
    pub category: Vec<CodeableConcept>,
    pub code: CodeableConcept,
    pub subject: Reference,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_date_time: Option<String>,
    pub issued: String,
    pub imaging_study: Vec<Reference>,
    pub result: Vec<Reference>,
    pub conclusion: String,
}

/// The one status nightscreen writes: the machine's result awaits a
/// grader. An enum, so no other value can reach a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Preliminary,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    pub identifier: Vec<Identifier>,
    pub status: Status,
    pub category: Vec<CodeableConcept>,
    pub code: CodeableConcept,
    pub subject: Reference,
    pub part_of: Vec<Reference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_date_time: Option<String>,
    pub issued: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<Reference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_site: Option<CodeableConcept>,
    pub value_codeable_concept: CodeableConcept,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub note: Vec<Annotation>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub component: Vec<Component>,
    pub derived_from: Vec<Reference>,
}

/// An Observation component: a probability (`valueQuantity`) or a coded
/// qualifier such as the eye's laterality (`valueCodeableConcept`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Component {
    pub code: CodeableConcept,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_quantity: Option<Quantity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_codeable_concept: Option<CodeableConcept>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImagingStudy {
    pub identifier: Vec<Identifier>,
    pub status: ImagingStudyStatus,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub modality: Vec<Coding>,
    pub subject: Reference,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImagingStudyStatus {
    /// The images were read from the archive: they exist.
    Available,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub identifier: Vec<Identifier>,
    pub manufacturer: String,
    pub device_name: Vec<DeviceName>,
    pub version: Vec<DeviceVersion>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub note: Vec<Annotation>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceName {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: DeviceNameType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceNameType {
    ModelName,
    ManufacturerName,
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceVersion {
    #[serde(rename = "type")]
    pub kind: CodeableConcept,
    pub value: String,
}
