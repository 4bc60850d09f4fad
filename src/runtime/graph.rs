//! Describing a model graph's inputs and outputs in the words of a card
//! mismatch message ("[?, 3, 224, 224]", element types).

use ort::value::{TensorElementType, ValueType};

pub(super) fn names(outlets: &[ort::value::Outlet]) -> String {
    let list: Vec<String> = outlets.iter().map(|o| format!("{:?}", o.name())).collect();
    if list.is_empty() {
        "none".into()
    } else {
        list.join(", ")
    }
}

/// `[-1, 3, 224, 224]` style, with `?` for dynamic dimensions.
pub(super) fn dims(shape: &[i64]) -> String {
    let parts: Vec<String> = shape.iter().map(|&d| if d < 0 { "?".to_string() } else { d.to_string() }).collect();
    format!("[{}]", parts.join(", "))
}

pub(super) fn f32_tensor_shape(ty: &ValueType) -> Result<Vec<i64>, String> {
    match ty {
        ValueType::Tensor { ty: TensorElementType::Float32, shape, .. } => Ok(shape.to_vec()),
        ValueType::Tensor { ty, .. } => Err(format!("has element type {ty:?}; only float32 is supported")),
        other => Err(format!("is not a tensor ({other:?})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_dimensions_print_as_question_marks() {
        assert_eq!(dims(&[-1, 3, 224, 224]), "[?, 3, 224, 224]");
    }
}
