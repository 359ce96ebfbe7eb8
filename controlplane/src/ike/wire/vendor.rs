//! Vendor ID payload (RFC 7296 §3.12).

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VendorId(pub Vec<u8>);

impl VendorId {
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}
