//! JSON: every serde shape, readable in the database; the default.

use super::{CustomCodec, PayloadCodec};
use serde::Serialize;
use serde::de::DeserializeOwned;

// ---------------------------------------------------------------------------
// JSON

/// JSON: reads back every serde shape, readable in the database; the
/// default. Bounded by its text (see the [module documentation](crate::codec)).
#[derive(Clone, Copy, Debug, Default)]
pub struct Json;

impl PayloadCodec for Json {
    const TAG: u8 = hydra_store::reserved::payload_tag::JSON;
    const NAME: &'static str = "json";
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
        serde_json::to_vec(value).map_err(|e| e.to_string())
    }
    fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
        serde_json::to_writer(out, value).map_err(|e| e.to_string())
    }
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

impl CustomCodec for Json {
    fn tag(&self) -> u8 {
        <Json as PayloadCodec>::TAG
    }
    fn name(&self) -> &str {
        <Json as PayloadCodec>::NAME
    }
    fn encode(&self, value: &dyn erased_serde::Serialize, out: &mut Vec<u8>) -> Result<(), String> {
        <Json as PayloadCodec>::encode_into(value, out)
    }
    fn decode(
        &self,
        bytes: &[u8],
        visit: &mut dyn FnMut(&mut dyn erased_serde::Deserializer<'_>) -> Result<(), erased_serde::Error>,
    ) -> Result<(), String> {
        let mut json = serde_json::Deserializer::from_slice(bytes);
        visit(&mut <dyn erased_serde::Deserializer<'_>>::erase(&mut json)).map_err(|e| e.to_string())?;
        json.end().map_err(|e| e.to_string())
    }
}
