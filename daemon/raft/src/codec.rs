//! postcard encoding of RPC payloads.

use serde::{de::DeserializeOwned, Serialize};

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, tonic::Status> {
    postcard::to_stdvec(value).map_err(|e| tonic::Status::internal(format!("encode: {e}")))
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, tonic::Status> {
    postcard::from_bytes(bytes).map_err(|e| tonic::Status::invalid_argument(format!("decode: {e}")))
}
