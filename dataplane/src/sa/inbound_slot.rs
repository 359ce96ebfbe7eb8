//! An inbound table entry in one word: the SA's address with its SPI's
//! generation byte in the top 8 bits.
//!
//! The slot index is the low 24 bits of the SPI, so the generation byte is
//! all the lookup must compare, and it sits in the entry itself: a lookup
//! reads one table word and never the SA. One word instead of an SPI next
//! to a pointer halves the table (8 MiB at 1M SAs), which is what decides
//! how many lookups hit the cache and the TLB once there are many tunnels.
//! User-space addresses leave the top byte zero on x86-64 and AArch64;
//! an address that does not is refused, never truncated.

use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::Arc;

use super::inbound::InboundSa;
use super::spi::generation_of;

const _: () = assert!(usize::BITS == 64, "inbound slots tag 64-bit addresses");

/// Where the generation byte sits in the word.
const TAG_SHIFT: u32 = usize::BITS - 8;
const ADDRESS_MASK: usize = (1 << TAG_SHIFT) - 1;

/// Owns one strong count of an `Arc<InboundSa>`, tagged with its SPI's
/// generation.
pub struct InboundSlot {
    tagged: NonNull<InboundSa>,
    _owns: PhantomData<Arc<InboundSa>>,
}

/// What the two impls below rest on.
const _: fn() = || {
    fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<Arc<InboundSa>>();
};

// SAFETY: the slot is an `Arc<InboundSa>` in another shape, and that Arc is
// Send and Sync because InboundSa is.
unsafe impl Send for InboundSlot {}
// SAFETY: as above; `&InboundSlot` only hands out `&InboundSa`.
unsafe impl Sync for InboundSlot {}

/// The allocator placed an SA where the tag byte would overwrite its address.
#[derive(Debug, thiserror::Error)]
#[error("SA {spi:#010x} is at an address using the top byte; inbound slots cannot tag it")]
pub struct UntaggableAddress {
    pub spi: u32,
}

impl InboundSlot {
    /// Takes `sa` into a slot; refuses it if its address uses the top byte.
    pub fn new(sa: Arc<InboundSa>) -> Result<InboundSlot, UntaggableAddress> {
        if Arc::as_ptr(&sa).addr() & !ADDRESS_MASK != 0 {
            return Err(UntaggableAddress { spi: sa.spi });
        }
        let tag = (generation_of(sa.spi) as usize) << TAG_SHIFT;
        // SAFETY: `Arc::into_raw` never returns null.
        let raw = unsafe { NonNull::new_unchecked(Arc::into_raw(sa).cast_mut()) };
        Ok(InboundSlot {
            tagged: raw.map_addr(|a| a | tag),
            _owns: PhantomData,
        })
    }

    /// The generation byte of the SA's SPI, read from the word itself.
    #[inline]
    pub fn generation(&self) -> u8 {
        (self.tagged.addr().get() >> TAG_SHIFT) as u8
    }

    #[inline]
    fn address(&self) -> *const InboundSa {
        self.tagged.as_ptr().map_addr(|a| a & ADDRESS_MASK)
    }

    /// The SA.
    #[inline]
    pub fn sa(&self) -> &InboundSa {
        // SAFETY: the slot holds a strong count, so the SA lives at least as
        // long as `self`.
        unsafe { &*self.address() }
    }

    /// Gives the slot's count back as an Arc.
    pub fn into_arc(self) -> Arc<InboundSa> {
        let p = self.address();
        std::mem::forget(self);
        // SAFETY: `p` came from `Arc::into_raw`, and forgetting `self` moves
        // its count to the returned Arc.
        unsafe { Arc::from_raw(p) }
    }
}

impl Clone for InboundSlot {
    fn clone(&self) -> InboundSlot {
        // SAFETY: `self` keeps the SA alive; the new count is the clone's.
        unsafe { Arc::increment_strong_count(self.address()) };
        InboundSlot {
            tagged: self.tagged,
            _owns: PhantomData,
        }
    }
}

impl Drop for InboundSlot {
    fn drop(&mut self) {
        // SAFETY: `self` owns one count of an Arc made by `Arc::into_raw`.
        drop(unsafe { Arc::from_raw(self.address()) });
    }
}

impl fmt::Debug for InboundSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("InboundSlot").field(&self.sa().spi).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(spi: u32) -> Arc<InboundSa> {
        crate::testkit::inbound_sa(spi, 1)
    }

    #[test]
    fn a_slot_keeps_its_generation_beside_the_address() {
        for spi in [0x0000_0100, 0x01ff_ffff, 0x7f00_0001, 0xff12_3456] {
            let a = sa(spi);
            let slot = InboundSlot::new(a.clone()).unwrap();
            assert_eq!(slot.generation(), generation_of(spi));
            assert!(std::ptr::eq(slot.sa(), Arc::as_ptr(&a)));
            assert_eq!(slot.sa().spi, spi);
        }
    }

    #[test]
    fn an_entry_is_one_word_even_when_empty() {
        assert_eq!(size_of::<Option<InboundSlot>>(), size_of::<usize>());
    }

    #[test]
    fn strong_counts_follow_the_slot() {
        let a = sa(0x0300_0007);
        let slot = InboundSlot::new(a.clone()).unwrap();
        assert_eq!(Arc::strong_count(&a), 2);
        let copy = slot.clone();
        let handle = slot.clone().into_arc();
        assert_eq!(Arc::strong_count(&a), 4);
        drop(copy);
        drop(handle);
        assert_eq!(Arc::strong_count(&a), 2);
        let back = slot.into_arc();
        assert!(Arc::ptr_eq(&back, &a));
        assert_eq!(Arc::strong_count(&a), 2);
        drop(back);
        assert_eq!(Arc::strong_count(&a), 1);
    }
}
