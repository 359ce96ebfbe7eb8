//! Keying an SA where it will stay: the SA is put into its `Arc` with an
//! unkeyed cipher, and the key is expanded there. An SA built with its key
//! and then moved into the `Arc` would leave the round keys behind in the
//! dead stack frames it passed through.

use std::sync::Arc;

use crate::crypto::{AesGcm, CryptoError};

/// Keys the cipher `cipher_of` picks out of the SA in a new `sa`.
pub(super) fn keyed_in_place<T>(
    sa: &mut Arc<T>,
    cipher_of: impl FnOnce(&mut T) -> &mut AesGcm,
    key: &[u8],
) -> Result<(), CryptoError> {
    match Arc::get_mut(sa) {
        Some(s) => cipher_of(s).set_key(key),
        // Only a new, unshared SA can be keyed; the constructors pass one.
        None => Err(CryptoError::KeyLength(key.len())),
    }
}
